//! What the load sends: the op mix as data, the benchmark's card numbers,
//! and the forms a worker builds (order numbers, the debits it may refund).

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

use super::World;
use crate::client::inner_form;
use crate::protocol::form::encode_form;
use crate::protocol::message::InnerForm;

/// What a run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Debits only (tender balance).
    Debit,
    /// 70 % debit, 10 % topup, 10 % query, 5 % refund, 5 % points.
    Mixed,
    /// Queries only (reads; works without the ledger's postings).
    Query,
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        match s {
            "debit" => Ok(Mix::Debit),
            "mixed" => Ok(Mix::Mixed),
            "query" => Ok(Mix::Query),
            o => Err(format!("mix must be debit, mixed or query, not {o:?}")),
        }
    }
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Debit => "debit",
            Mix::Mixed => "mixed",
            Mix::Query => "query",
        }
    }
}

/// The operations a run may send, with their weights in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadOp {
    Debit,
    Topup,
    Query,
    Refund,
    Points,
}

impl LoadOp {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadOp::Debit => "debit",
            LoadOp::Topup => "topup",
            LoadOp::Query => "query",
            LoadOp::Refund => "refund",
            LoadOp::Points => "points",
        }
    }
}

/// The op mix as data: (op, weight); weights need not sum to 100.
pub fn weights(mix: Mix) -> &'static [(LoadOp, u32)] {
    match mix {
        Mix::Debit => &[(LoadOp::Debit, 100)],
        Mix::Query => &[(LoadOp::Query, 100)],
        Mix::Mixed => &[
            (LoadOp::Debit, 70),
            (LoadOp::Topup, 10),
            (LoadOp::Query, 10),
            (LoadOp::Refund, 5),
            (LoadOp::Points, 5),
        ],
    }
}

fn pick(table: &[(LoadOp, u32)], rng: &mut StdRng) -> LoadOp {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total.max(1));
    for (op, w) in table {
        if x < *w {
            return *op;
        }
        x -= w;
    }
    table[0].0
}

/// The card numbers of the benchmark: `prefix` then 10 digits.
pub fn card_no(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:010}")
}

/// A debit of this worker that may still be refunded: (order_no, amount).
type Refundable = (String, String);

/// What a worker sends: its ops, order numbers and the debits it may
/// still refund.
pub(super) struct Orders<'a> {
    world: &'a World,
    mix: Mix,
    table: &'static [(LoadOp, u32)],
    run_no: usize,
    w: usize,
    seq: u64,
    refundable: VecDeque<Refundable>,
}

impl<'a> Orders<'a> {
    pub(super) fn new(world: &'a World, mix: Mix, run_no: usize, w: usize) -> Orders<'a> {
        Orders {
            world,
            mix,
            table: weights(mix),
            run_no,
            w,
            seq: 0,
            refundable: VecDeque::new(),
        }
    }

    /// The next op; a refund without a debit to refund or a manager to
    /// authorise it is a debit instead.
    pub(super) fn pick(&self, rng: &mut StdRng) -> LoadOp {
        let op = pick(self.table, rng);
        if op == LoadOp::Refund && (self.refundable.is_empty() || self.world.manager.is_none()) {
            return LoadOp::Debit;
        }
        op
    }

    /// The form of `op` on a random card, under a new order number.
    pub(super) fn form(&mut self, op: LoadOp, rng: &mut StdRng) -> anyhow::Result<InnerForm> {
        self.seq += 1;
        let world = self.world;
        let (run_no, w, seq) = (self.run_no, self.w, self.seq);
        let order_no = format!("{}r{run_no}w{w}n{seq}", world.run_tag);
        let card = card_no(&world.card_prefix, rng.gen_range(0..world.cards.max(1)));
        match op {
            LoadOp::Debit => {
                let amount = format!("{}.{:02}", rng.gen_range(1..20), rng.gen_range(0..100));
                if self.mix == Mix::Mixed && self.refundable.len() < 64 {
                    self.refundable
                        .push_back((order_no.clone(), amount.clone()));
                }
                build(
                    "debit",
                    Some(&amount),
                    Some(&order_no),
                    None,
                    &card,
                    &[("tender", "balance")],
                )
            }
            LoadOp::Topup => build("topup", Some("50.00"), Some(&order_no), None, &card, &[]),
            LoadOp::Query => build("query", None, None, None, &card, &[]),
            LoadOp::Points => build(
                "points",
                None,
                Some(&order_no),
                None,
                &card,
                &[("delta", "10"), ("reason", "bench")],
            ),
            LoadOp::Refund => {
                let (orig, _amount) = self.refundable.pop_front().expect("checked in pick");
                let (mgr, pin) = world.manager.clone().expect("checked in pick");
                build(
                    "refund",
                    Some("0.50"),
                    Some(&order_no),
                    Some(&mgr),
                    &orig,
                    &[("mpin", &pin)],
                )
            }
        }
    }
}

/// An inner form for `op`; `attr2` pairs are form-encoded (sent twice encoded).
pub fn build(
    op: &str,
    amount: Option<&str>,
    order_no: Option<&str>,
    operator: Option<&str>,
    attr1: &str,
    attr2: &[(&str, &str)],
) -> anyhow::Result<InnerForm> {
    let a2 = encode_form(attr2);
    inner_form(
        op,
        amount,
        order_no,
        operator,
        Some(attr1),
        (!a2.is_empty()).then_some(a2.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::SeedableRng;
    use std::collections::BTreeMap;

    #[test]
    fn mixed_weights_follow_the_issue() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut n: BTreeMap<LoadOp, u32> = BTreeMap::new();
        for _ in 0..100_000 {
            *n.entry(pick(weights(Mix::Mixed), &mut rng)).or_default() += 1;
        }
        let pct = |op| f64::from(n[&op]) / 1000.0;
        assert!((pct(LoadOp::Debit) - 70.0).abs() < 1.0);
        assert!((pct(LoadOp::Topup) - 10.0).abs() < 1.0);
        assert!((pct(LoadOp::Query) - 10.0).abs() < 1.0);
        assert!((pct(LoadOp::Refund) - 5.0).abs() < 1.0);
        assert!((pct(LoadOp::Points) - 5.0).abs() < 1.0);
    }

    #[test]
    fn every_op_builds_a_valid_form() {
        for (op, amount, order, operator, attr1, attr2) in [
            (
                "debit",
                Some("1.50"),
                Some("o1"),
                None,
                "BC0000000001",
                vec![("tender", "balance")],
            ),
            (
                "topup",
                Some("50.00"),
                Some("o2"),
                None,
                "BC0000000001",
                vec![],
            ),
            ("query", None, None, None, "BC0000000001", vec![]),
            (
                "points",
                None,
                Some("o3"),
                None,
                "BC0000000001",
                vec![("delta", "10"), ("reason", "bench")],
            ),
            (
                "refund",
                Some("0.50"),
                Some("o4"),
                Some("m1"),
                "o1",
                vec![("mpin", "1234")],
            ),
            (
                "register",
                None,
                Some("o5"),
                None,
                "BC0000000002",
                vec![
                    ("name", "Bench"),
                    ("phone", "13800000000"),
                    ("level", "bench"),
                ],
            ),
        ] {
            build(op, amount, order, operator, attr1, &attr2).unwrap();
        }
    }
}

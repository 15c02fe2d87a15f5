//! An in-memory store that applies plans the way the SQL executor must, and
//! checks the ledger's invariants after every step.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::DateTime;
use rust_decimal::Decimal;

use super::lots::{Lot, LotId, Ts};
use super::money::Money;
use super::plan::*;
use super::rules::{BonusRule, Level, Limits};

/// Card number, status, balance, points, lots holding points.
pub(super) type Snap = (String, CardStatus, Money, i64, Vec<Lot>);

pub(super) struct MCard {
    pub(super) state: CardState,
    pub(super) lots: Vec<Lot>,
    /// (balance delta, points delta) of every posting on the card.
    pub(super) postings: Vec<(Decimal, i64)>,
    /// Its holds not yet released.
    pub(super) holds: Vec<super::ops_holds::ActiveHold>,
    /// The sum of the visits deltas of its postings.
    pub(super) visits_posted: i64,
}

pub(super) struct Model {
    pub(super) cfg: LedgerConfig,
    pub(super) levels: Vec<Level>,
    pub(super) cards: BTreeMap<String, MCard>,
    pub(super) originals: BTreeMap<String, Original>,
    /// Per refunded debit: what its refunds gave back to the balance, and in cash.
    pub(super) refunds: BTreeMap<String, (Decimal, Decimal)>,
    pub(super) next_lot: LotId,
    pub(super) next_order: u64,
    pub(super) next_member: i64,
    pub(super) now: Ts,
    /// How many plans of each op were applied, so a test can say the
    /// sequences reached them.
    pub(super) seen: Seen,
}

#[derive(Default)]
pub(super) struct Seen(pub(super) BTreeMap<&'static str, u64>);

impl Seen {
    fn record(&mut self, op: OpKind) {
        *self.0.entry(op.as_str()).or_default() += 1;
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn money(s: &str) -> Money {
    Money::new(dec(s)).unwrap()
}

impl Model {
    pub(super) fn new() -> Model {
        let level = |n: &str, d: &str, r: &str| Level {
            name: n.into(),
            discount: dec(d),
            points_rate: dec(r),
            limits: Default::default(),
        };
        Model {
            cfg: LedgerConfig {
                bonus_rules: vec![
                    BonusRule {
                        min_topup: money("100"),
                        bonus: money("5"),
                    },
                    BonusRule {
                        min_topup: money("500"),
                        bonus: money("30"),
                    },
                ],
                points_expiry_months: Some(1),
                card_validity_days: 0,
            },
            levels: vec![
                level("std", "1", "1"),
                level("gold", "0.95", "0.5"),
                Level {
                    limits: Limits {
                        max_balance: Some(money("1500")),
                        daily_debit: Some(money("300")),
                    },
                    ..level("vip", "0.88", "2.25")
                },
            ],
            cards: BTreeMap::new(),
            originals: BTreeMap::new(),
            refunds: BTreeMap::new(),
            next_lot: 1,
            next_order: 1,
            next_member: 1,
            now: DateTime::from_timestamp_millis(1_795_000_000_000).unwrap(),
            seen: Seen::default(),
        }
    }

    pub(super) fn order(&mut self) -> String {
        self.next_order += 1;
        format!("o{}", self.next_order)
    }

    pub(super) fn card_no(&self, i: usize) -> String {
        let keys: Vec<&String> = self.cards.keys().collect();
        keys[i % keys.len()].clone()
    }

    pub(super) fn card(&self, no: &str) -> &CardState {
        &self.cards[no].state
    }

    pub(super) fn lots(&self, no: &str) -> &[Lot] {
        &self.cards[no].lots
    }

    /// What each card looks like, for exact before/after comparisons.
    pub(super) fn snapshot(&self) -> Vec<Snap> {
        self.cards
            .values()
            .map(|c| {
                let mut lots: Vec<Lot> = c
                    .lots
                    .iter()
                    .filter(|l| l.points_left > 0)
                    .cloned()
                    .collect();
                lots.sort_by_key(|l| l.id);
                (
                    c.state.card_no.clone(),
                    c.state.status,
                    c.state.balance,
                    c.state.points,
                    lots,
                )
            })
            .collect()
    }

    pub(super) fn refused(&mut self, r: &Refusal) {
        if let Some(w) = &r.pin_write {
            let c = &mut self.cards.get_mut(&w.card_no).unwrap().state;
            c.pin_fail_count = w.pin_fail_count;
            if w.lock {
                c.status = CardStatus::Locked;
            }
        }
    }

    /// Applies a plan as the store will, and records it as an original.
    pub(super) fn apply(&mut self, plan: &Plan, tender: Tender) {
        if let Some(n) = &plan.new_card {
            assert!(!self.cards.contains_key(&n.card_no));
            let member_id = match &n.member {
                MemberRef::Existing(id) => *id,
                MemberRef::New(_) => {
                    self.next_member += 1;
                    self.next_member
                }
            };
            let level = self
                .levels
                .iter()
                .find(|l| l.name == n.level)
                .unwrap()
                .clone();
            let state = CardState {
                card_no: n.card_no.clone(),
                member_id,
                status: CardStatus::Active,
                balance: Money::ZERO,
                points: 0,
                level,
                pin_fail_count: 0,
                has_pin: n.pin != PinSource::None,
                member_until: None,
                spent_today: crate::ledger::Money::ZERO,
                held: crate::ledger::Money::ZERO,
                active_holds: 0,
                visits: 0,
            };
            self.cards.insert(
                n.card_no.clone(),
                MCard {
                    state,
                    lots: vec![],
                    postings: vec![],
                    holds: vec![],
                    visits_posted: 0,
                },
            );
        }
        let mut effects = vec![];
        for ch in &plan.cards {
            let next_lot = &mut self.next_lot;
            let card = self.cards.get_mut(&ch.card_no).unwrap();
            let s = &mut card.state;
            assert_eq!(
                s.balance.amount() + ch.balance_delta,
                ch.new_balance.amount()
            );
            assert_eq!(s.points + ch.points_delta, ch.new_points);
            assert_eq!(ch.balance_delta.scale(), 2);
            assert_eq!(s.held.amount() + ch.held_delta, ch.new_held.amount());
            assert_eq!(s.visits + ch.visits_delta, ch.new_visits, "{:?}", plan.op);
            s.visits = ch.new_visits;
            card.visits_posted += ch.visits_delta;
            s.balance = ch.new_balance;
            s.points = ch.new_points;
            s.held = ch.new_held;
            card.holds.retain(|h| !ch.holds_expired.contains(&h.hold));
            if let Some(st) = ch.status {
                s.status = st;
            }
            if let Some(n) = ch.pin_fail_count {
                s.pin_fail_count = n;
            }
            let spent = (s.spent_today.amount() + ch.day_spend).max(Decimal::ZERO);
            s.spent_today = Money::new(spent).unwrap();
            // Each move by the kind of its lot: points lots against the
            // points delta, lots of visits against the visits delta.
            let mut moved = (0i64, 0i64);
            let mut count = |lots: &[Lot], id: LotId, n: i64| match lots
                .iter()
                .find(|l| l.id == id)
                .unwrap()
                .is_points()
            {
                true => moved.0 += n,
                false => moved.1 += n,
            };
            for t in &ch.lots_taken {
                count(&card.lots, t.lot_id, -t.points);
            }
            for t in &ch.lots_restored {
                count(&card.lots, t.lot_id, t.points);
            }
            for n in &ch.lots_created {
                match n.service {
                    None => moved.0 += n.points,
                    Some(_) => moved.1 += n.points,
                }
            }
            assert_eq!(moved, (ch.points_delta, ch.visits_delta), "{:?}", plan.op);
            for t in &ch.lots_taken {
                let l = card.lots.iter_mut().find(|l| l.id == t.lot_id).unwrap();
                assert!(t.points > 0 && l.points_left >= t.points);
                l.points_left -= t.points;
            }
            for t in &ch.lots_restored {
                card.lots
                    .iter_mut()
                    .find(|l| l.id == t.lot_id)
                    .unwrap()
                    .points_left += t.points;
            }
            let mut created = vec![];
            for n in &ch.lots_created {
                assert!(n.points > 0);
                card.lots.push(Lot {
                    id: *next_lot,
                    points_left: n.points,
                    expires_at: n.expires_at,
                    service: n.service.clone(),
                });
                created.push(*next_lot);
                *next_lot += 1;
            }
            card.postings.push((ch.balance_delta, ch.points_delta));
            effects.push(ch.effect(&created));
        }
        if let Some(u) = &plan.original {
            let o = self.originals.get_mut(&u.order_no).unwrap();
            if o.op == OpKind::Hold {
                let card = self.cards.get_mut(&o.effects[0].card_no).unwrap();
                card.holds.retain(|h| h.hold.order_no != u.order_no);
            }
            o.reversed |= u.mark_reversed;
            o.refunded = o.refunded.checked_add(u.refunded_add).unwrap();
            o.points_taken_back += u.points_taken_back_add;
            if plan.op == OpKind::Refund {
                let r = self.refunds.entry(u.order_no.clone()).or_default();
                r.0 += plan.cards[0].balance_delta;
                r.1 += plan.answer.cash_out.amount();
            }
        }
        if let (OpKind::Hold, Some(t)) = (plan.op, plan.hold) {
            let card = self.cards.get_mut(&plan.cards[0].card_no).unwrap();
            card.holds.push(super::ops_holds::ActiveHold {
                hold: HoldRef {
                    terminal: "T".into(),
                    order_no: plan.answer.order_no.clone(),
                },
                amount: plan.answer.charged,
                business_day: self.now.date_naive(),
                expires_at: t.expires_at,
            });
        }
        for c in self.cards.values_mut() {
            c.state.active_holds = c.holds.len() as u32;
        }
        self.seen.record(plan.op);
        let a = &plan.answer;
        assert_eq!(a.card, plan.cards[0].card_no);
        assert_eq!(a.balance, plan.cards[0].new_balance);
        assert_eq!(a.points, plan.cards[0].new_points);
        self.originals.insert(
            a.order_no.clone(),
            Original {
                order_no: a.order_no.clone(),
                op: plan.op,
                business_day: self.now.date_naive(),
                amount: a.amount,
                charged: a.charged,
                tender,
                points_earned: if matches!(plan.op, OpKind::Debit | OpKind::Capture) {
                    a.points_delta
                } else {
                    0
                },
                reversed: false,
                refunded: Money::ZERO,
                points_taken_back: 0,
                hold: plan.hold,
                effects,
            },
        );
    }

    /// Releases every hold past its expiry and zeroes every lapsed lot of
    /// visits, as the store's load does.
    pub(super) fn expire_holds(&mut self) {
        let today = self.now.date_naive();
        let mut plans = vec![];
        for c in self.cards.values() {
            if let Some(ch) =
                super::visits::decide_visits_expire(&c.state, &c.lots, self.now).unwrap()
            {
                plans.push(Plan::single("", OpKind::VisitsExpire, ch));
            }
        }
        for p in plans.drain(..) {
            self.apply(&p, Tender::Balance);
        }
        for c in self.cards.values() {
            if let Some(ch) =
                super::ops_holds::expire_holds(&c.state, &c.holds, self.now, today).unwrap()
            {
                plans.push(Plan::single("", OpKind::HoldExpire, ch));
            }
        }
        for p in plans {
            self.apply(&p, Tender::Balance);
        }
    }

    pub(super) fn check(&self) {
        for c in self.cards.values() {
            let s = &c.state;
            let bal: Decimal = c.postings.iter().map(|p| p.0).sum();
            assert_eq!(
                s.balance.amount(),
                bal,
                "{}: balance is the sum of its postings",
                s.card_no
            );
            let pts: i64 = c.postings.iter().map(|p| p.1).sum();
            assert_eq!(
                s.points, pts,
                "{}: points are the sum of postings",
                s.card_no
            );
            assert!(c.lots.iter().all(|l| l.points_left >= 0));
            let (points, visits) = super::lots::totals(&c.lots);
            assert_eq!(
                s.points, points,
                "{}: points are the sum of lots",
                s.card_no
            );
            assert_eq!(s.visits, visits, "{}: visits are their lots'", s.card_no);
            assert_eq!(
                s.visits, c.visits_posted,
                "{}: visits are their postings'",
                s.card_no
            );
            if s.status == CardStatus::Closed {
                assert!(s.balance.is_zero() && s.points == 0 && s.held.is_zero());
                assert_eq!(s.visits, 0);
            }
            let held: Decimal = c.holds.iter().map(|h| h.amount.amount()).sum();
            assert_eq!(s.held.amount(), held, "{}: held is its holds'", s.card_no);
            assert!(s.held <= s.balance, "{}: holds more than it has", s.card_no);
            if let Some(limit) = s.level.limits.daily_debit {
                assert!(
                    s.spent_today <= limit,
                    "{}: over its daily limit",
                    s.card_no
                );
            }
        }
        for o in self.originals.values().filter(|o| o.op == OpKind::Debit) {
            assert!(o.refunded <= o.charged);
            assert!(o.points_taken_back <= o.points_earned);
            if o.refunded == o.charged {
                assert_eq!(o.points_taken_back, o.points_earned);
            }
            assert!(
                !o.reversed || o.refunded.is_zero(),
                "never both reversed and refunded"
            );
            let from_balance = o.taken_from_balance().unwrap().amount();
            let cash_leg = o.charged.amount() - from_balance;
            match o.tender {
                Tender::Balance => assert!(cash_leg.is_zero()),
                Tender::Cash => assert!(from_balance.is_zero()),
                Tender::Split => {
                    assert!(cash_leg >= Decimal::ZERO && from_balance >= Decimal::ZERO)
                }
            }
            // Refunds go back the way the money came, the balance first.
            let (to_balance, cash) = self.refunds.get(&o.order_no).copied().unwrap_or_default();
            assert!(to_balance <= from_balance && cash <= cash_leg, "{o:?}");
            assert!(cash.is_zero() || to_balance == from_balance, "{o:?}");
        }
    }
}

/// Money that enters or leaves the cards: what a plan's balance deltas must
/// add up to, from its answer and the original alone.
pub(super) fn balance_flow(plan: &Plan, original: Option<&Original>, tender: Tender) -> Decimal {
    let a = &plan.answer;
    match plan.op {
        OpKind::Debit => {
            assert_eq!(a.discount.amount() + a.charged.amount(), a.amount.amount());
            match (tender, a.split) {
                (Tender::Balance, None) => -a.charged.amount(),
                (Tender::Cash, None) => Decimal::ZERO,
                (Tender::Split, Some(s)) => {
                    assert_eq!(
                        s.cash.amount() + s.from_balance.amount(),
                        a.charged.amount()
                    );
                    -s.from_balance.amount()
                }
                other => panic!("a debit's tender and legs disagree: {other:?}"),
            }
        }
        OpKind::Topup => a.amount.amount() + a.bonus.amount(),
        OpKind::Import => a.amount.amount(),
        OpKind::Refund => {
            match original.unwrap().tender {
                Tender::Balance => assert_eq!(a.cash_out, Money::ZERO),
                Tender::Cash => assert_eq!(a.cash_out, a.amount),
                Tender::Split => assert!(a.cash_out <= a.amount),
            }
            a.amount.amount() - a.cash_out.amount()
        }
        OpKind::Close => -a.cash_out.amount(),
        // A hold moves no money; its capture is a debit.
        OpKind::Hold | OpKind::Void | OpKind::HoldExpire => Decimal::ZERO,
        OpKind::Capture => -a.charged.amount(),
        // Visits bought at no discount: what leaves the balance is the price
        // less its cash leg.
        OpKind::VisitsAdd => {
            assert!(a.discount.is_zero() && a.charged == a.amount);
            match (tender, a.split) {
                (Tender::Balance, None) => -a.charged.amount(),
                (Tender::Cash, None) => Decimal::ZERO,
                (Tender::Split, Some(s)) => -s.from_balance.amount(),
                other => panic!("a purchase's tender and legs disagree: {other:?}"),
            }
        }
        OpKind::Reverse => {
            let o = original.unwrap();
            for (c, e) in plan.cards.iter().zip(&o.effects) {
                assert_eq!(c.balance_delta, -e.balance_delta);
                assert_eq!(c.points_delta, -e.points_delta);
                assert_eq!(c.visits_delta, -e.visits_delta);
            }
            -o.effects.iter().map(|e| e.balance_delta).sum::<Decimal>()
        }
        _ => Decimal::ZERO,
    }
}

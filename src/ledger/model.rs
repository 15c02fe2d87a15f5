//! An in-memory store that applies plans the way the SQL executor must, and
//! property tests that fuzz it with random op sequences.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Duration};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::lots::{Lot, LotId, LotTake, Ts};
use super::money::Money;
use super::ops_card::*;
use super::ops_money::*;
use super::ops_points::*;
use super::plan::*;
use super::rules::{BonusRule, Level};
use crate::protocol::errno::Errno;

struct MCard {
    state: CardState,
    lots: Vec<Lot>,
    /// (balance delta, points delta) of every posting on the card.
    postings: Vec<(Decimal, i64)>,
}

pub(super) struct Model {
    cfg: LedgerConfig,
    levels: Vec<Level>,
    cards: BTreeMap<String, MCard>,
    originals: BTreeMap<String, Original>,
    next_lot: LotId,
    next_order: u64,
    next_member: i64,
    now: Ts,
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
            },
            levels: vec![
                level("std", "1", "1"),
                level("gold", "0.95", "0.5"),
                level("vip", "0.88", "2.25"),
            ],
            cards: BTreeMap::new(),
            originals: BTreeMap::new(),
            next_lot: 1,
            next_order: 1,
            next_member: 1,
            now: DateTime::from_timestamp_millis(1_795_000_000_000).unwrap(),
        }
    }

    fn order(&mut self) -> String {
        self.next_order += 1;
        format!("o{}", self.next_order)
    }

    fn card_no(&self, i: usize) -> String {
        let keys: Vec<&String> = self.cards.keys().collect();
        keys[i % keys.len()].clone()
    }

    fn card(&self, no: &str) -> &CardState {
        &self.cards[no].state
    }

    fn lots(&self, no: &str) -> &[Lot] {
        &self.cards[no].lots
    }

    /// What each card looks like, for exact before/after comparisons.
    fn snapshot(&self) -> Vec<(String, CardStatus, Money, i64, Vec<Lot>)> {
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
            };
            self.cards.insert(
                n.card_no.clone(),
                MCard {
                    state,
                    lots: vec![],
                    postings: vec![],
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
            s.balance = ch.new_balance;
            s.points = ch.new_points;
            if let Some(st) = ch.status {
                s.status = st;
            }
            if let Some(n) = ch.pin_fail_count {
                s.pin_fail_count = n;
            }
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
                });
                created.push(LotTake {
                    lot_id: *next_lot,
                    points: n.points,
                });
                *next_lot += 1;
            }
            let lot_moves: i64 = ch.lots_created.iter().map(|n| n.points).sum::<i64>()
                + ch.lots_restored.iter().map(|t| t.points).sum::<i64>()
                - ch.lots_taken.iter().map(|t| t.points).sum::<i64>();
            assert_eq!(lot_moves, ch.points_delta, "{:?}", plan.op);
            card.postings.push((ch.balance_delta, ch.points_delta));
            effects.push(Effect {
                card_no: ch.card_no.clone(),
                balance_delta: ch.balance_delta,
                points_delta: ch.points_delta,
                lots_created: created,
                lots_taken: ch.lots_taken.clone(),
            });
        }
        if let Some(u) = &plan.original {
            let o = self.originals.get_mut(&u.order_no).unwrap();
            o.reversed |= u.mark_reversed;
            o.refunded = o.refunded.checked_add(u.refunded_add).unwrap();
            o.points_taken_back += u.points_taken_back_add;
        }
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
                points_earned: if plan.op == OpKind::Debit {
                    a.points_delta
                } else {
                    0
                },
                reversed: false,
                refunded: Money::ZERO,
                points_taken_back: 0,
                effects,
            },
        );
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
            let lots: i64 = c.lots.iter().map(|l| l.points_left).sum();
            assert_eq!(s.points, lots, "{}: points are the sum of lots", s.card_no);
            if s.status == CardStatus::Closed {
                assert!(s.balance.is_zero() && s.points == 0);
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
        }
    }
}

/// Money that enters or leaves the cards: what a plan's balance deltas must
/// add up to, from its answer and the original alone.
fn balance_flow(plan: &Plan, original: Option<&Original>, tender: Tender) -> Decimal {
    let a = &plan.answer;
    match plan.op {
        OpKind::Debit => {
            assert_eq!(a.discount.amount() + a.charged.amount(), a.amount.amount());
            match tender {
                Tender::Balance => -a.charged.amount(),
                Tender::Cash => Decimal::ZERO,
            }
        }
        OpKind::Topup => a.amount.amount() + a.bonus.amount(),
        OpKind::Refund => {
            let cash = original.unwrap().tender == Tender::Cash;
            assert_eq!(a.cash_out, if cash { a.amount } else { Money::ZERO });
            a.amount.amount() - a.cash_out.amount()
        }
        OpKind::Close => -a.cash_out.amount(),
        OpKind::Reverse => {
            let o = original.unwrap();
            for (c, e) in plan.cards.iter().zip(&o.effects) {
                assert_eq!(c.balance_delta, -e.balance_delta);
                assert_eq!(c.points_delta, -e.points_delta);
            }
            -o.effects.iter().map(|e| e.balance_delta).sum::<Decimal>()
        }
        _ => Decimal::ZERO,
    }
}

#[derive(Clone, Debug)]
pub(super) enum MOp {
    Register {
        level: usize,
        pin: bool,
    },
    Debit {
        card: usize,
        cents: i64,
        cash: bool,
        pin: Pin,
    },
    Topup {
        card: usize,
        cents: i64,
    },
    Points {
        card: usize,
        delta: i64,
    },
    Redeem {
        card: usize,
        cost: i64,
        pin: Pin,
    },
    Transfer {
        from: usize,
        to: usize,
        cents: i64,
    },
    Reverse {
        order: usize,
    },
    Refund {
        order: usize,
        cents: i64,
    },
    Status {
        card: usize,
        op: StatusOp,
    },
    Replace {
        card: usize,
    },
    Close {
        card: usize,
    },
    Expire {
        card: usize,
    },
    Wait {
        hours: i64,
    },
}

fn pin() -> impl Strategy<Value = Pin> {
    prop_oneof![8 => Just(Pin::Correct), 1 => Just(Pin::Wrong), 1 => Just(Pin::Absent)]
}

pub(super) fn mop() -> impl Strategy<Value = MOp> {
    let c = 0usize..16;
    prop_oneof![
        1 => (0usize..3, any::<bool>()).prop_map(|(level, pin)| MOp::Register { level, pin }),
        6 => (c.clone(), 0i64..60_000, any::<bool>(), pin())
            .prop_map(|(card, cents, cash, pin)| MOp::Debit { card, cents, cash, pin }),
        4 => (c.clone(), 0i64..80_000).prop_map(|(card, cents)| MOp::Topup { card, cents }),
        2 => (c.clone(), -300i64..300).prop_map(|(card, delta)| MOp::Points { card, delta }),
        2 => (c.clone(), 0i64..300, pin()).prop_map(|(card, cost, pin)| MOp::Redeem { card, cost, pin }),
        2 => (c.clone(), c.clone(), 0i64..30_000).prop_map(|(from, to, cents)| MOp::Transfer { from, to, cents }),
        3 => (0usize..64).prop_map(|order| MOp::Reverse { order }),
        3 => (0usize..64, 0i64..30_000).prop_map(|(order, cents)| MOp::Refund { order, cents }),
        2 => (c.clone(), prop_oneof![Just(StatusOp::Lost), Just(StatusOp::Found), Just(StatusOp::Lock), Just(StatusOp::Unlock)])
            .prop_map(|(card, op)| MOp::Status { card, op }),
        1 => c.clone().prop_map(|card| MOp::Replace { card }),
        1 => c.clone().prop_map(|card| MOp::Close { card }),
        1 => c.clone().prop_map(|card| MOp::Expire { card }),
        2 => (0i64..1000).prop_map(|hours| MOp::Wait { hours }),
    ]
}

impl Model {
    fn original_at(&self, i: usize) -> Option<Original> {
        let v: Vec<&Original> = self.originals.values().collect();
        (!v.is_empty()).then(|| v[i % v.len()].clone())
    }

    /// Runs one op; returns the plan if it was applied.
    pub(super) fn step(&mut self, op: &MOp) -> Option<Plan> {
        let order = self.order();
        let now = self.now;
        let mut tender = Tender::Balance;
        let mut original = None;
        let decision: Decision = match op.clone() {
            MOp::Register { level, pin } => {
                let req = RegisterReq {
                    order_no: order.clone(),
                    card_no: format!("C{order}"),
                    member: NewMember {
                        name: "n".into(),
                        phone: "1".into(),
                        birthday: None,
                        referrer: None,
                    },
                    level: self.levels[level].name.clone(),
                    pin_set: pin,
                };
                decide_register(None, Some(&self.levels[level]), &req)
            }
            MOp::Wait { hours } => {
                self.now += Duration::hours(hours);
                return None;
            }
            _ if self.cards.is_empty() => return None,
            MOp::Debit {
                card,
                cents,
                cash,
                pin,
            } => {
                let no = self.card_no(card);
                tender = if cash { Tender::Cash } else { Tender::Balance };
                let req = DebitReq {
                    order_no: order.clone(),
                    sale: Money::from_cents(cents).unwrap(),
                    tender,
                    pin,
                };
                decide_debit(&self.cfg, self.card(&no), &req, now)
            }
            MOp::Topup { card, cents } => {
                let no = self.card_no(card);
                let req = TopupReq {
                    order_no: order.clone(),
                    amount: Money::from_cents(cents).unwrap(),
                };
                decide_topup(&self.cfg, self.card(&no), &req)
            }
            MOp::Points { card, delta } => {
                let no = self.card_no(card);
                let req = PointsReq {
                    order_no: order.clone(),
                    delta,
                    reason: "r".into(),
                };
                decide_points(&self.cfg, self.card(&no), self.lots(&no), &req, now)
            }
            MOp::Redeem { card, cost, pin } => {
                let no = self.card_no(card);
                let req = RedeemReq {
                    order_no: order.clone(),
                    cost,
                    gift: "g".into(),
                    pin,
                };
                decide_redeem(self.card(&no), self.lots(&no), &req, now)
            }
            MOp::Transfer { from, to, cents } => {
                let (f, t) = (self.card_no(from), self.card_no(to));
                let req = TransferReq {
                    order_no: order.clone(),
                    amount: Money::from_cents(cents).unwrap(),
                    pin: Pin::Correct,
                };
                decide_transfer(self.card(&f), self.card(&t), &req)
            }
            MOp::Reverse { order: i } => {
                let o = self.original_at(i)?;
                let cards: Vec<CardWithLots<'_>> = o
                    .effects
                    .iter()
                    .map(|e| (self.card(&e.card_no), self.lots(&e.card_no)))
                    .collect();
                let d = decide_reverse(
                    &o,
                    &cards,
                    &ReverseReq {
                        order_no: order.clone(),
                    },
                    now.date_naive(),
                );
                original = Some(o);
                d
            }
            MOp::Refund { order: i, cents } => {
                let o = self.original_at(i)?;
                let no = o.effects.first()?.card_no.clone();
                let req = RefundReq {
                    order_no: order.clone(),
                    amount: Money::from_cents(cents).unwrap(),
                };
                let d = decide_refund(&o, self.card(&no), self.lots(&no), &req, now);
                original = Some(o);
                d
            }
            MOp::Status { card, op } => decide_status(self.card(&self.card_no(card)), op, &order),
            MOp::Replace { card } => {
                let no = self.card_no(card);
                let req = ReplaceReq {
                    order_no: order.clone(),
                    new_card_no: format!("R{order}"),
                };
                decide_replace(self.card(&no), self.lots(&no), None, &req)
            }
            MOp::Close { card } => {
                let no = self.card_no(card);
                decide_close(
                    self.card(&no),
                    self.lots(&no),
                    &CloseReq {
                        order_no: order.clone(),
                        pin: Pin::Correct,
                    },
                )
            }
            MOp::Expire { card } => {
                let no = self.card_no(card);
                match decide_expire(&order, self.card(&no), self.lots(&no), now).unwrap() {
                    Some(p) => Ok(p),
                    None => return None,
                }
            }
        };
        match decision {
            Ok(plan) => {
                let flow: Decimal = plan.cards.iter().map(|c| c.balance_delta).sum();
                assert_eq!(
                    flow,
                    balance_flow(&plan, original.as_ref(), tender),
                    "{op:?}"
                );
                assert_eq!(plan.answer.order_no, order);
                self.apply(&plan, tender);
                Some(plan)
            }
            Err(r) => {
                assert_ne!(r.errno, Errno::Internal, "{op:?}");
                assert!(r.pin_write.is_none() || r.errno == Errno::WrongPin);
                self.refused(&r);
                None
            }
        }
    }
}

fn seeded() -> Model {
    let mut m = Model::new();
    for (level, pin) in [(0, false), (1, true), (2, false), (1, false)] {
        m.step(&MOp::Register { level, pin }).unwrap();
        let n = m.cards.len() - 1;
        m.step(&MOp::Topup {
            card: n,
            cents: 50_000,
        });
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(ops in proptest::collection::vec(mop(), 1..80)) {
        let mut m = seeded();
        m.check();
        for op in &ops {
            m.step(op);
            m.check();
        }
    }

    #[test]
    fn a_reverse_restores_the_cards_exactly(
        prefix in proptest::collection::vec(mop(), 0..40),
        op in mop(),
    ) {
        let mut m = seeded();
        for p in &prefix {
            m.step(p);
        }
        let reversible = matches!(op, MOp::Debit { .. } | MOp::Topup { .. } | MOp::Points { .. }
            | MOp::Redeem { .. } | MOp::Transfer { .. });
        let before = m.snapshot();
        if let (true, Some(plan)) = (reversible, m.step(&op)) {
            let o = m.originals[&plan.answer.order_no].clone();
            let cards: Vec<CardWithLots<'_>> =
                o.effects.iter().map(|e| (m.card(&e.card_no), m.lots(&e.card_no))).collect();
            let req = ReverseReq { order_no: "rev".into() };
            let rev = decide_reverse(&o, &cards, &req, m.now.date_naive()).unwrap();
            m.apply(&rev, Tender::Balance);
            m.check();
            prop_assert_eq!(m.snapshot(), before);
            let o = m.originals[&plan.answer.order_no].clone();
            let cards: Vec<CardWithLots<'_>> =
                o.effects.iter().map(|e| (m.card(&e.card_no), m.lots(&e.card_no))).collect();
            prop_assert_eq!(
                decide_reverse(&o, &cards, &req, m.now.date_naive()).unwrap_err().errno,
                Errno::AlreadyReversed
            );
        }
    }
}

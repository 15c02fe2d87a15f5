//! One example per rule of the decide functions.

use std::str::FromStr;

use chrono::{DateTime, Duration};
use rust_decimal::Decimal;

use super::lots::{Lot, LotTake, Ts};
use super::money::Money;
use super::ops_card::*;
use super::ops_money::*;
use super::ops_points::*;
use super::plan::*;
use super::rules::{BonusRule, Level};
use crate::protocol::errno::Errno;

pub(super) fn m(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap()).unwrap()
}

pub(super) fn now() -> Ts {
    DateTime::from_timestamp_millis(1_795_000_000_000).unwrap()
}

pub(super) fn card(no: &str, balance: &str, points: i64) -> CardState {
    CardState {
        card_no: no.into(),
        member_id: 7,
        status: CardStatus::Active,
        balance: m(balance),
        points,
        level: Level {
            name: "gold".into(),
            discount: Decimal::from_str("0.95").unwrap(),
            points_rate: Decimal::ONE,
            limits: Default::default(),
        },
        pin_fail_count: 0,
        has_pin: false,
        member_until: None,
        spent_today: crate::ledger::Money::ZERO,
        held: crate::ledger::Money::ZERO,
        active_holds: 0,
        visits: 0,
    }
}

pub(super) fn with(status: CardStatus, c: CardState) -> CardState {
    CardState { status, ..c }
}

pub(super) fn debit(sale: &str, payment: Payment, pin: Pin) -> DebitReq {
    DebitReq {
        order_no: "d1".into(),
        sale: m(sale),
        payment,
        pin,
    }
}

pub(super) fn errno(d: Decision) -> Errno {
    d.unwrap_err().errno
}

pub(super) fn cfg() -> LedgerConfig {
    LedgerConfig {
        bonus_rules: vec![BonusRule {
            min_topup: m("100"),
            bonus: m("10"),
        }],
        points_expiry_months: Some(12),
        card_validity_days: 0,
    }
}

#[test]
fn debit_from_balance_and_in_cash() {
    let c = card("A1", "100", 0);
    let p = decide_debit(
        &cfg(),
        &c,
        &debit("50", Payment::Balance, Pin::Absent),
        now(),
    )
    .unwrap();
    let ch = &p.cards[0];
    assert_eq!(ch.balance_delta, Decimal::from_str("-47.50").unwrap());
    assert_eq!((ch.new_balance, ch.points_delta), (m("52.50"), 47));
    assert_eq!(ch.lots_created[0].points, 47);
    assert!(ch.lots_created[0].expires_at.unwrap() > now() + Duration::days(364));
    assert_eq!(
        (p.answer.amount, p.answer.discount, p.answer.charged),
        (m("50"), m("2.50"), m("47.50"))
    );

    let p = decide_debit(&cfg(), &c, &debit("50", Payment::Cash, Pin::Absent), now()).unwrap();
    assert_eq!(
        (p.cards[0].new_balance, p.answer.points_delta),
        (m("100"), 47)
    );

    let d = decide_debit(
        &cfg(),
        &c,
        &debit("200", Payment::Balance, Pin::Absent),
        now(),
    );
    assert_eq!(errno(d), Errno::InsufficientBalance);
    assert_eq!(
        errno(decide_debit(
            &cfg(),
            &c,
            &debit("0", Payment::Cash, Pin::Absent),
            now()
        )),
        Errno::InvalidAmount
    );
}

#[test]
fn status_refuses_postings() {
    let d = |s| {
        errno(decide_debit(
            &cfg(),
            &with(s, card("A1", "100", 0)),
            &debit("1", Payment::Cash, Pin::Absent),
            now(),
        ))
    };
    assert_eq!(d(CardStatus::Lost), Errno::CardLost);
    assert_eq!(d(CardStatus::Locked), Errno::CardLocked);
    assert_eq!(d(CardStatus::Closed), Errno::CardLocked);
}

#[test]
fn five_wrong_pins_lock_the_card() {
    let mut c = CardState {
        has_pin: true,
        member_until: None,
        spent_today: crate::ledger::Money::ZERO,
        held: crate::ledger::Money::ZERO,
        active_holds: 0,
        visits: 0,
        ..card("A1", "100", 0)
    };
    for n in 1..=5 {
        let r =
            decide_debit(&cfg(), &c, &debit("1", Payment::Balance, Pin::Wrong), now()).unwrap_err();
        assert_eq!(r.errno, Errno::WrongPin);
        let w = r.pin_write.unwrap();
        assert_eq!((w.pin_fail_count, w.lock), (n, n == 5));
        c.pin_fail_count = w.pin_fail_count;
        if w.lock {
            c.status = CardStatus::Locked;
        }
    }
    let r = decide_debit(
        &cfg(),
        &c,
        &debit("1", Payment::Balance, Pin::Correct),
        now(),
    )
    .unwrap_err();
    assert_eq!((r.errno, r.pin_write), (Errno::CardLocked, None));
    assert_eq!(
        check_read(&c, Pin::Correct).unwrap_err().errno,
        Errno::CardLocked
    );
    // unlock clears the counter; a correct PIN after a wrong one resets it too.
    let u = decide_status(&c, StatusOp::Unlock, "u").unwrap();
    assert_eq!(
        (u.cards[0].status, u.cards[0].pin_fail_count),
        (Some(CardStatus::Active), Some(0))
    );
    let c = CardState {
        pin_fail_count: 2,
        ..card("A1", "1", 0)
    };
    let c = CardState { has_pin: true, ..c };
    let p = decide_debit(
        &cfg(),
        &c,
        &debit("1", Payment::Balance, Pin::Correct),
        now(),
    )
    .unwrap();
    assert_eq!(p.cards[0].pin_fail_count, Some(0));
    let r = check_read(&c, Pin::Absent).unwrap_err();
    assert_eq!((r.errno, r.pin_write), (Errno::WrongPin, None));
}

#[test]
fn topup_bonus_and_ceiling() {
    let p = decide_topup(
        &cfg(),
        &card("A1", "0", 0),
        &TopupReq {
            order_no: "t".into(),
            amount: m("100"),
        },
    )
    .unwrap();
    assert_eq!(
        (p.cards[0].new_balance, p.answer.bonus),
        (m("110"), m("10"))
    );
    let full = card("A1", "999999999999.00", 0);
    let d = decide_topup(
        &cfg(),
        &full,
        &TopupReq {
            order_no: "t".into(),
            amount: m("1"),
        },
    );
    assert_eq!(errno(d), Errno::InvalidAmount);
    let d = decide_topup(
        &cfg(),
        &full,
        &TopupReq {
            order_no: "t".into(),
            amount: m("0"),
        },
    );
    assert_eq!(errno(d), Errno::InvalidAmount);
}

pub(super) fn lots() -> Vec<Lot> {
    vec![
        Lot {
            id: 1,
            points_left: 10,
            expires_at: Some(now() - Duration::days(1)),
            service: None,
        },
        Lot {
            id: 2,
            points_left: 5,
            expires_at: None,
            service: None,
        },
        Lot {
            id: 3,
            points_left: 5,
            expires_at: Some(now() + Duration::days(1)),
            service: None,
        },
    ]
}

#[test]
fn points_and_redeem_use_live_lots() {
    let c = card("A1", "0", 20);
    let r = |cost| {
        decide_redeem(
            &c,
            &lots(),
            &RedeemReq {
                order_no: "r".into(),
                cost,
                gift: "g".into(),
                pin: Pin::Absent,
            },
            now(),
        )
    };
    assert_eq!(errno(r(11)), Errno::InsufficientPoints);
    assert_eq!(errno(r(0)), Errno::InvalidAmount);
    let p = r(7).unwrap();
    assert_eq!(
        p.cards[0].lots_taken,
        vec![
            LotTake {
                lot_id: 3,
                points: 5
            },
            LotTake {
                lot_id: 2,
                points: 2
            }
        ]
    );
    assert_eq!(p.answer.points, 13);
    let pts = |delta| {
        decide_points(
            &cfg(),
            &c,
            &lots(),
            &PointsReq {
                order_no: "p".into(),
                delta,
                reason: String::new(),
            },
            now(),
        )
    };
    assert_eq!(pts(-7).unwrap().cards[0].lots_taken.len(), 2);
    assert_eq!(errno(pts(-11)), Errno::InsufficientPoints);
    assert_eq!(errno(pts(0)), Errno::InvalidAmount);
    assert_eq!(pts(3).unwrap().cards[0].lots_created[0].points, 3);
    let e = decide_expire("x", &c, &lots(), now()).unwrap().unwrap();
    assert_eq!((e.cards[0].points_delta, e.answer.points), (-10, 10));
    assert_eq!(decide_expire("x", &c, &lots()[1..], now()), Ok(None));
}

#[test]
fn transfer_rules() {
    let (a, b) = (card("A1", "10", 0), card("B1", "0", 0));
    let t = |amt: &str| TransferReq {
        order_no: "x".into(),
        amount: m(amt),
        pin: Pin::Absent,
    };
    let p = decide_transfer(&a, &b, &t("10")).unwrap();
    assert_eq!(
        (p.cards[0].new_balance, p.cards[1].new_balance),
        (m("0"), m("10"))
    );
    assert_eq!(
        errno(decide_transfer(&a, &b, &t("10.01"))),
        Errno::InsufficientBalance
    );
    assert_eq!(
        errno(decide_transfer(&a, &b, &t("0"))),
        Errno::InvalidAmount
    );
    assert_eq!(errno(decide_transfer(&a, &a, &t("1"))), Errno::Malformed);
    assert_eq!(
        errno(decide_transfer(
            &a,
            &with(CardStatus::Lost, b.clone()),
            &t("1")
        )),
        Errno::CardLost
    );
    assert_eq!(
        errno(decide_transfer(&a, &with(CardStatus::Closed, b), &t("1"))),
        Errno::CardLocked
    );
}

pub(super) fn original_debit(tender: Tender) -> Original {
    Original {
        order_no: "d1".into(),
        op: OpKind::Debit,
        business_day: now().date_naive(),
        amount: m("100"),
        charged: m("95"),
        tender,
        points_earned: 95,
        reversed: false,
        refunded: Money::ZERO,
        hold: None,
        points_taken_back: 0,
        effects: vec![Effect {
            card_no: "A1".into(),
            balance_delta: if tender == Tender::Balance {
                Decimal::from_str("-95.00").unwrap()
            } else {
                Decimal::ZERO
            },
            points_delta: 95,
            lots_created: vec![LotTake {
                lot_id: 9,
                points: 95,
            }],
            lots_taken: vec![],
            visits_delta: 0,
        }],
    }
}

#[test]
fn refund_rules() {
    let c = card("A1", "5", 95);
    let lots = vec![Lot {
        id: 9,
        points_left: 95,
        expires_at: None,
        service: None,
    }];
    let req = |amt: &str| RefundReq {
        order_no: "f".into(),
        amount: m(amt),
    };
    let o = original_debit(Tender::Balance);
    let p = decide_refund(&o, &c, &lots, &req("47.50"), now()).unwrap();
    assert_eq!(
        (p.cards[0].new_balance, p.cards[0].points_delta),
        (m("52.50"), -47)
    );
    assert_eq!(p.original.as_ref().unwrap().refunded_add, m("47.50"));
    assert_eq!(
        errno(decide_refund(&o, &c, &lots, &req("95.01"), now())),
        Errno::AlreadyReversed
    );
    assert_eq!(
        errno(decide_refund(&o, &c, &lots, &req("0"), now())),
        Errno::InvalidAmount
    );
    let part = Original {
        refunded: m("90"),
        points_taken_back: 90,
        ..o.clone()
    };
    assert_eq!(
        errno(decide_refund(&part, &c, &lots, &req("5.01"), now())),
        Errno::AlreadyReversed
    );
    assert_eq!(
        decide_refund(&part, &c, &lots, &req("5"), now())
            .unwrap()
            .answer
            .points_delta,
        -5
    );
    let rev = Original {
        reversed: true,
        ..o.clone()
    };
    assert_eq!(
        errno(decide_refund(&rev, &c, &lots, &req("1"), now())),
        Errno::AlreadyReversed
    );
    let topup = Original {
        op: OpKind::Topup,
        ..o.clone()
    };
    assert_eq!(
        errno(decide_refund(&topup, &c, &lots, &req("1"), now())),
        Errno::OriginalNotFound
    );
    // The points were spent: no refund that leaves them with the customer.
    assert_eq!(
        errno(decide_refund(
            &o,
            &card("A1", "5", 0),
            &[],
            &req("95"),
            now()
        )),
        Errno::InsufficientPoints
    );
    // A cash debit is refunded in cash.
    let p = decide_refund(&original_debit(Tender::Cash), &c, &lots, &req("95"), now()).unwrap();
    assert_eq!(
        (p.cards[0].balance_delta, p.answer.cash_out),
        (Decimal::ZERO.round_dp(2), m("95"))
    );
    assert_eq!(p.cards[0].points_delta, -95);
}

#[test]
fn reverse_rules() {
    let c = card("A1", "5", 95);
    let lots = vec![Lot {
        id: 9,
        points_left: 95,
        expires_at: None,
        service: None,
    }];
    let req = ReverseReq {
        order_no: "v".into(),
    };
    let today = now().date_naive();
    let o = original_debit(Tender::Balance);
    let p = decide_reverse(&o, &[(&c, &lots)], &req, today).unwrap();
    assert_eq!(
        (p.cards[0].new_balance, p.cards[0].new_points),
        (m("100"), 0)
    );
    assert_eq!(
        p.cards[0].lots_taken,
        vec![LotTake {
            lot_id: 9,
            points: 95
        }]
    );
    assert!(p.original.unwrap().mark_reversed);
    let tomorrow = today.succ_opt().unwrap();
    assert_eq!(
        errno(decide_reverse(&o, &[(&c, &lots)], &req, tomorrow)),
        Errno::AlreadyReversed
    );
    let refunded = Original {
        refunded: m("1"),
        ..o.clone()
    };
    assert_eq!(
        errno(decide_reverse(&refunded, &[(&c, &lots)], &req, today)),
        Errno::AlreadyReversed
    );
    let reversed = Original {
        reversed: true,
        ..o.clone()
    };
    assert_eq!(
        errno(decide_reverse(&reversed, &[(&c, &lots)], &req, today)),
        Errno::AlreadyReversed
    );
    let spent = vec![Lot {
        id: 9,
        points_left: 94,
        expires_at: None,
        service: None,
    }];
    assert_eq!(
        errno(decide_reverse(
            &o,
            &[(&card("A1", "5", 94), &spent)],
            &req,
            today
        )),
        Errno::InsufficientPoints
    );
    let refund = Original {
        op: OpKind::Refund,
        ..o.clone()
    };
    assert_eq!(
        errno(decide_reverse(&refund, &[(&c, &lots)], &req, today)),
        Errno::OriginalNotFound
    );
    let cash = decide_reverse(&original_debit(Tender::Cash), &[(&c, &lots)], &req, today).unwrap();
    assert_eq!(
        (cash.cards[0].new_balance, cash.answer.cash_out),
        (m("5"), m("95"))
    );
}

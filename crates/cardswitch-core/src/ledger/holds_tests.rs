//! Holds (protocol.md §6.2): reserve, then capture or void; an expired
//! hold stops counting by itself.

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;

use super::money::Money;
use super::ops_holds::*;
use super::ops_money::*;
use super::ops_tests::{card, cfg, debit, errno, m, now};
use super::plan::*;
use super::rules::Limits;
use crate::protocol::errno::Errno;

fn today() -> NaiveDate {
    business_day(now(), &chrono::Utc)
}

fn hold(sale: &str) -> HoldReq {
    HoldReq {
        order_no: "h1".into(),
        sale: m(sale),
        pin: Pin::Absent,
        expires_s: 3600,
    }
}

/// A card as it is after the plan's change: what the store would load.
fn after(c: &CardState, p: &Plan) -> CardState {
    let ch = &p.cards[0];
    let mut n = c.clone();
    n.balance = ch.new_balance;
    n.points = ch.new_points;
    n.held = ch.new_held;
    n.spent_today = m("0")
        .checked_apply(c.spent_today.amount() + ch.day_spend)
        .unwrap();
    n.active_holds = if ch.held_delta > Decimal::ZERO {
        c.active_holds + 1
    } else if ch.held_delta < Decimal::ZERO {
        c.active_holds - 1
    } else {
        c.active_holds
    };
    n
}

/// The hold's order as a later capture or void reads it.
fn order_of(p: &Plan) -> Original {
    let terms = p.hold.expect("a hold keeps its terms");
    Original {
        order_no: "h1".into(),
        op: OpKind::Hold,
        business_day: today(),
        amount: p.answer.amount,
        charged: p.answer.charged,
        tender: Tender::Balance,
        points_earned: 0,
        reversed: false,
        refunded: Money::ZERO,
        points_taken_back: 0,
        effects: vec![p.cards[0].effect(&[])],
        hold: Some(terms),
    }
}

fn capture(amount: &str) -> CaptureReq {
    CaptureReq {
        order_no: "c1".into(),
        amount: m(amount),
    }
}

#[test]
fn a_hold_keeps_its_charge_from_what_the_card_can_spend() {
    let c = card("A1", "100", 0);
    let p = decide_hold(&c, &hold("60"), now()).unwrap();
    // 5 % off, as a debit would be; the balance stays, available falls.
    assert_eq!(p.answer.charged, m("57"));
    assert_eq!(p.cards[0].new_balance, m("100"));
    assert_eq!(p.cards[0].new_held, m("57"));
    let answer = p.answer.hold.unwrap();
    assert_eq!(answer.available, m("43"));
    assert_eq!(answer.expires_at, now() + Duration::seconds(3600));
    // Every spend takes from what is left: a debit of 43 after 5 % off fits,
    // one of 46 (43.70) does not; a second hold and a transfer alike.
    let held = after(&c, &p);
    assert!(decide_debit(
        &cfg(),
        &held,
        &debit("45", Payment::Balance, Pin::Absent),
        now()
    )
    .is_ok());
    let short = decide_debit(
        &cfg(),
        &held,
        &debit("46", Payment::Balance, Pin::Absent),
        now(),
    );
    assert_eq!(errno(short), Errno::InsufficientBalance);
    assert_eq!(
        errno(decide_hold(&held, &hold("46"), now())),
        Errno::InsufficientBalance
    );
    let to = card("B2", "0", 0);
    let t = |amount: &str| TransferReq {
        order_no: "x".into(),
        amount: m(amount),
        pin: Pin::Absent,
    };
    assert!(decide_transfer(&held, &to, &t("43")).is_ok());
    assert_eq!(
        errno(decide_transfer(&held, &to, &t("43.01"))),
        Errno::InsufficientBalance
    );
}

#[test]
fn a_capture_takes_at_the_holds_terms_and_releases_all_of_it() {
    let c = card("A1", "100", 0);
    let h = decide_hold(&c, &hold("60"), now()).unwrap();
    let mut held = after(&c, &h);
    // The card's level changes after the hold: the capture keeps 5 % off.
    held.level.discount = Decimal::ONE;
    let p = decide_capture(
        &cfg(),
        &order_of(&h),
        &held,
        &capture("40"),
        (now(), today()),
    )
    .unwrap();
    let ch = &p.cards[0];
    assert_eq!(p.answer.charged, m("38"));
    assert_eq!(ch.balance_delta, Decimal::new(-3800, 2));
    assert_eq!(ch.new_held, m("0"));
    assert_eq!(ch.points_delta, 38);
    // What the hold kept and the capture did not take is given back to
    // today's count.
    assert_eq!(ch.day_spend, Decimal::new(-1900, 2));
    assert!(p.original.as_ref().unwrap().mark_reversed);
    // Past the hold's sale, or nothing: 2010.
    let over = decide_capture(
        &cfg(),
        &order_of(&h),
        &held,
        &capture("60.01"),
        (now(), today()),
    );
    assert_eq!(errno(over), Errno::InvalidAmount);
    // A lost card's hold is still honoured.
    held.status = CardStatus::Lost;
    assert!(decide_capture(
        &cfg(),
        &order_of(&h),
        &held,
        &capture("60"),
        (now(), today())
    )
    .is_ok());
}

#[test]
fn a_hold_is_released_once_and_never_after_its_expiry() {
    let c = card("A1", "100", 0);
    let h = decide_hold(&c, &hold("60"), now()).unwrap();
    let held = after(&c, &h);
    let mut spent = order_of(&h);
    spent.reversed = true;
    let void = VoidReq {
        order_no: "v1".into(),
    };
    let ok = decide_void(&order_of(&h), &held, &void, (now(), today())).unwrap();
    assert_eq!(ok.cards[0].new_held, m("0"));
    assert_eq!(ok.cards[0].balance_delta, Decimal::ZERO);
    assert_eq!(
        errno(decide_void(&spent, &held, &void, (now(), today()))),
        Errno::AlreadyReversed
    );
    let later = now() + Duration::seconds(3600);
    assert_eq!(
        errno(decide_capture(
            &cfg(),
            &order_of(&h),
            &held,
            &capture("1"),
            (later, today())
        )),
        Errno::AlreadyReversed
    );
    // Another op's order is no hold.
    let mut debit_order = order_of(&h);
    debit_order.op = OpKind::Debit;
    assert_eq!(
        errno(decide_void(&debit_order, &held, &void, (now(), today()))),
        Errno::OriginalNotFound
    );
}

#[test]
fn expired_holds_are_released_in_one_posting() {
    let c = card("A1", "100", 0);
    let h = decide_hold(&c, &hold("60"), now()).unwrap();
    let held = after(&c, &h);
    let active = |secs: i64| ActiveHold {
        hold: HoldRef {
            terminal: "T1".into(),
            order_no: "h1".into(),
        },
        amount: m("57"),
        business_day: today(),
        expires_at: now() + Duration::seconds(secs),
    };
    assert_eq!(expire_holds(&held, &[active(1)], now(), today()), Ok(None));
    let c = expire_holds(&held, &[active(0)], now(), today())
        .unwrap()
        .unwrap();
    assert_eq!(c.new_held, m("0"));
    assert_eq!(c.day_spend, Decimal::new(-5700, 2));
    assert_eq!(c.holds_expired.len(), 1);
    // Placed on another day, its count stays with that day.
    let mut old = active(0);
    old.business_day = today().pred_opt().unwrap();
    let c = expire_holds(&held, &[old], now(), today())
        .unwrap()
        .unwrap();
    assert_eq!(c.day_spend, Decimal::ZERO);
}

#[test]
fn holds_count_toward_the_daily_limit_and_block_close_and_replace() {
    let mut c = card("A1", "500", 0);
    c.level.limits = Limits {
        max_balance: None,
        daily_debit: Some(m("100")),
    };
    let p = decide_hold(&c, &hold("100"), now()).unwrap();
    assert_eq!(p.cards[0].day_spend, Decimal::new(9500, 2));
    let held = after(&c, &p);
    assert_eq!(
        errno(decide_hold(&held, &hold("10"), now())),
        Errno::OverLimit
    );
    let close = crate::ledger::CloseReq {
        order_no: "x".into(),
        pin: Pin::Absent,
    };
    assert_eq!(
        errno(crate::ledger::decide_close(&held, &[], &close)),
        Errno::HasHolds
    );
    let replace = crate::ledger::ReplaceReq {
        order_no: "r".into(),
        new_card_no: "B2".into(),
    };
    assert_eq!(
        errno(crate::ledger::decide_replace(&held, &[], None, &replace)),
        Errno::HasHolds
    );
    let mut full = card("A1", "500", 0);
    full.active_holds = MAX_ACTIVE_HOLDS;
    assert_eq!(
        errno(decide_hold(&full, &hold("1"), now())),
        Errno::OverLimit
    );
}

#[test]
fn a_capture_is_reversed_and_refunded_as_a_debit() {
    let c = card("A1", "100", 0);
    let h = decide_hold(&c, &hold("60"), now()).unwrap();
    let held = after(&c, &h);
    let p = decide_capture(
        &cfg(),
        &order_of(&h),
        &held,
        &capture("40"),
        (now(), today()),
    )
    .unwrap();
    let captured = after(&held, &p);
    let mut orig = order_of(&h);
    orig.op = OpKind::Capture;
    orig.order_no = "c1".into();
    orig.amount = m("40");
    orig.charged = m("38");
    orig.hold = None;
    orig.effects = vec![p.cards[0].effect(&[1])];
    let lots = [crate::ledger::Lot {
        id: 1,
        points_left: 38,
        expires_at: None,
        service: None,
    }];
    let rev = decide_reverse(
        &orig,
        &[(&captured, &lots[..])],
        &ReverseReq {
            order_no: "r1".into(),
        },
        today(),
    )
    .unwrap();
    assert_eq!(rev.cards[0].new_balance, m("100"));
    assert_eq!(rev.cards[0].new_held, m("0"));
    let refund = RefundReq {
        order_no: "f1".into(),
        amount: m("10"),
    };
    let f = decide_refund(&orig, &captured, &lots, &refund, now()).unwrap();
    assert_eq!(f.cards[0].balance_delta, Decimal::new(1000, 2));
}

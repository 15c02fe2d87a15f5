//! Limits per level (protocol.md §6.2): a balance cap for money coming in,
//! a daily limit on what debits and outgoing transfers take; refunds and
//! reverses are never refused by either.

use rust_decimal::Decimal;

use super::ops_money::*;
use super::ops_tests::{card, cfg, debit, errno, m, now, original_debit};
use super::plan::*;
use super::rules::Limits;
use crate::protocol::errno::Errno;

/// A gold card (5 % off) capped at 200 with 100 a day, `spent` spent today.
fn limited(balance: &str, spent: &str) -> CardState {
    let mut c = card("A1", balance, 95);
    c.level.limits = Limits {
        max_balance: Some(m("200")),
        daily_debit: Some(m("100")),
    };
    c.spent_today = m(spent);
    c
}

#[test]
fn debits_count_what_they_take_from_the_balance_toward_the_daily_limit() {
    let d = |c: &CardState, sale: &str, pay| {
        decide_debit(&cfg(), c, &debit(sale, pay, Pin::Absent), now())
    };
    // 60 spent: a charge of 38 (a sale of 40) fits, of 42.75 (45) does not.
    let p = d(&limited("150", "60"), "40", Payment::Balance).unwrap();
    assert_eq!(p.cards[0].day_spend, Decimal::new(3800, 2));
    assert_eq!(
        errno(d(&limited("150", "60"), "45", Payment::Balance)),
        Errno::OverLimit
    );
    // Cash takes nothing from the balance; a split counts its balance leg.
    let cash = d(&limited("150", "100"), "45", Payment::Cash).unwrap();
    assert_eq!(cash.cards[0].day_spend, Decimal::ZERO);
    let split = Payment::Split { cash: m("40") };
    assert!(d(&limited("150", "60"), "45", split).is_ok());
    // Short of money is 2004 first, whatever the limit.
    assert_eq!(
        errno(d(&limited("10", "100"), "45", Payment::Balance)),
        Errno::InsufficientBalance
    );
}

#[test]
fn the_cap_refuses_money_coming_in_and_never_a_refund() {
    let top = |amount: &str| TopupReq {
        order_no: "t".into(),
        amount: m(amount),
    };
    assert!(decide_topup(&cfg(), &limited("150", "0"), &top("50")).is_ok());
    assert_eq!(
        errno(decide_topup(&cfg(), &limited("150", "0"), &top("50.01"))),
        Errno::OverLimit
    );
    let t = |amount: &str| TransferReq {
        order_no: "x".into(),
        amount: m(amount),
        pin: Pin::Absent,
    };
    let from = card("B1", "500", 0);
    assert_eq!(
        errno(decide_transfer(&from, &limited("150", "0"), &t("60"))),
        Errno::OverLimit
    );
    // Outgoing transfers count toward the daily limit too.
    let to = card("B1", "0", 0);
    assert_eq!(
        errno(decide_transfer(&limited("150", "60"), &to, &t("41"))),
        Errno::OverLimit
    );
    let p = decide_transfer(&limited("150", "60"), &to, &t("40")).unwrap();
    assert_eq!(p.cards[0].day_spend, Decimal::new(4000, 2));

    // A refund may take the balance past the cap, and a reverse too.
    let full = limited("190", "100");
    let lots = [super::lots::Lot {
        id: 9,
        points_left: 95,
        expires_at: None,
        service: None,
    }];
    let o = original_debit(Tender::Balance);
    let req = RefundReq {
        order_no: "f".into(),
        amount: m("95"),
    };
    assert_eq!(
        decide_refund(&o, &full, &lots, &req, now()).unwrap().cards[0].new_balance,
        m("285")
    );
    let rev = ReverseReq {
        order_no: "v".into(),
    };
    let p = decide_reverse(&o, &[(&full, &lots)], &rev, now().date_naive()).unwrap();
    assert_eq!(p.cards[0].new_balance, m("285"));
    // The reverse gives the debit's 95 back to today's limit.
    assert_eq!(p.cards[0].day_spend, Decimal::new(-9500, 2));
}

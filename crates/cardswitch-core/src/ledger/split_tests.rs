//! Split tender (protocol.md §6.2): a sale paid part in cash, the rest from
//! the balance, and its refund and reverse.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::answer_row::{posting_row, RowContext};
use super::lots::{Lot, LotTake};
use super::money::Money;
use super::ops_money::*;
use super::ops_tests::{card, cfg, debit, errno, m, now, original_debit};
use super::plan::*;
use crate::protocol::errno::Errno;

fn split(cash: &str) -> Payment {
    Payment::Split { cash: m(cash) }
}

#[test]
fn a_split_debit_takes_the_cash_leg_at_the_counter_and_the_rest_from_the_balance() {
    let c = card("A1", "100", 0);
    let p = decide_debit(&cfg(), &c, &debit("50", split("20"), Pin::Absent), now()).unwrap();
    let ch = &p.cards[0];
    assert_eq!(ch.balance_delta, Decimal::from_str("-27.50").unwrap());
    assert_eq!(ch.new_balance, m("72.50"));
    // Points on the whole charge, as for any debit.
    assert_eq!(ch.points_delta, 47);
    assert_eq!(p.answer.charged, m("47.50"));
    let legs = p.answer.split.unwrap();
    assert_eq!((legs.cash, legs.from_balance), (m("20"), m("27.50")));

    let at = now();
    let row = posting_row(
        &p,
        &p.answer.clone().into_row(1, at, false),
        &RowContext {
            card: "A1",
            status: None,
            orig_terminal: None,
        },
    );
    assert_eq!(row.get("cash"), Some("20.00"));
    assert_eq!(row.get("from_balance"), Some("27.50"));
    assert_eq!(row.get("balance"), Some("72.50"));
}

#[test]
fn a_cash_leg_may_be_all_or_nothing_of_the_charge_but_never_more() {
    let c = card("A1", "100", 0);
    let decide =
        |cash: &str| decide_debit(&cfg(), &c, &debit("50", split(cash), Pin::Absent), now());
    let all = decide("47.50").unwrap();
    assert_eq!(all.cards[0].new_balance, m("100"));
    assert_eq!(all.answer.split.unwrap().from_balance, Money::ZERO);
    let none = decide("0").unwrap();
    assert_eq!(none.cards[0].new_balance, m("52.50"));
    assert_eq!(errno(decide("47.51")), Errno::InvalidAmount);
    // The balance pays its leg only: short of it is 2004, whatever the cash.
    let poor = card("A1", "10", 0);
    let d = decide_debit(
        &cfg(),
        &poor,
        &debit("50", split("37.49"), Pin::Absent),
        now(),
    );
    assert_eq!(errno(d), Errno::InsufficientBalance);
    let ok = decide_debit(
        &cfg(),
        &poor,
        &debit("50", split("37.50"), Pin::Absent),
        now(),
    );
    assert_eq!(ok.unwrap().cards[0].new_balance, Money::ZERO);
}

/// A debit of 95 with 35 in cash and 60 from the balance.
fn split_original() -> Original {
    let mut o = original_debit(Tender::Split);
    o.effects[0].balance_delta = Decimal::from_str("-60.00").unwrap();
    o
}

fn lots() -> Vec<Lot> {
    vec![Lot {
        id: 9,
        points_left: 95,
        expires_at: None,
        service: None,
    }]
}

fn refund(o: &Original, amount: &str) -> Plan {
    let req = RefundReq {
        order_no: "f".into(),
        amount: m(amount),
    };
    decide_refund(o, &card("A1", "5", 95), &lots(), &req, now()).unwrap()
}

#[test]
fn a_split_debit_is_refunded_to_the_balance_first() {
    let o = split_original();
    let p = refund(&o, "50");
    assert_eq!(
        (p.cards[0].new_balance, p.answer.cash_out),
        (m("55"), Money::ZERO)
    );
    // 50 of the balance's 60 already went back: 10 more, then cash.
    let later = Original {
        refunded: m("50"),
        points_taken_back: 50,
        ..o.clone()
    };
    let p = refund(&later, "30");
    assert_eq!(
        (p.cards[0].new_balance, p.answer.cash_out),
        (m("15"), m("20"))
    );
    let whole = refund(&o, "95");
    assert_eq!(
        (whole.cards[0].new_balance, whole.answer.cash_out),
        (m("65"), m("35"))
    );
    // The other tenders by the same rule: all to the balance, or all in cash.
    let b = refund(&original_debit(Tender::Balance), "95");
    assert_eq!(
        (b.cards[0].new_balance, b.answer.cash_out),
        (m("100"), Money::ZERO)
    );
    let c = refund(&original_debit(Tender::Cash), "95");
    assert_eq!(
        (c.cards[0].new_balance, c.answer.cash_out),
        (m("5"), m("95"))
    );
}

#[test]
fn a_reverse_of_a_split_debit_gives_each_leg_back_its_way() {
    let o = split_original();
    let req = ReverseReq {
        order_no: "v".into(),
    };
    let lots = lots();
    let c = card("A1", "5", 95);
    let p = decide_reverse(&o, &[(&c, &lots)], &req, now().date_naive()).unwrap();
    assert_eq!(
        (p.cards[0].new_balance, p.answer.cash_out),
        (m("65"), m("35"))
    );
    assert_eq!(
        p.cards[0].lots_taken,
        vec![LotTake {
            lot_id: 9,
            points: 95
        }]
    );
}

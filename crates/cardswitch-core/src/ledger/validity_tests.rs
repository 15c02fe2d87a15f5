//! Validity of the membership, never of the money (protocol.md §6.2): a
//! lapsed card pays from its balance at no discount and earning nothing,
//! cannot redeem, and a top-up renews it.

use chrono::Duration;

use super::ops_money::*;
use super::ops_points::*;
use super::ops_tests::{card, cfg, debit, errno, m, now};
use super::plan::*;
use crate::protocol::errno::Errno;

fn lapsed(balance: &str) -> CardState {
    CardState {
        member_until: Some(now() - Duration::days(1)),
        ..card("A1", balance, 10)
    }
}

#[test]
fn a_membership_runs_its_days_from_its_renewal() {
    let c = LedgerConfig {
        card_validity_days: 30,
        ..cfg()
    };
    assert_eq!(c.member_until(now()), Some(now() + Duration::days(30)));
    assert_eq!(cfg().member_until(now()), None, "0 days: it never lapses");
    let until = now() + Duration::days(30);
    let st = CardState {
        member_until: Some(until),
        ..card("A1", "1", 0)
    };
    assert!(!st.membership_lapsed(until - Duration::milliseconds(1)));
    assert!(st.membership_lapsed(until));
}

#[test]
fn a_lapsed_card_still_pays_from_its_balance_at_no_discount_and_earns_nothing() {
    let p = decide_debit(
        &cfg(),
        &lapsed("100"),
        &debit("50", Payment::Balance, Pin::Absent),
        now(),
    )
    .unwrap();
    assert_eq!((p.answer.discount, p.answer.charged), (m("0"), m("50")));
    assert_eq!(
        (p.cards[0].new_balance, p.cards[0].points_delta),
        (m("50"), 0)
    );
    assert!(p.cards[0].lots_created.is_empty());
    // Its money is never refused for the lapse.
    let all = decide_debit(
        &cfg(),
        &lapsed("50"),
        &debit("50", Payment::Balance, Pin::Absent),
        now(),
    );
    assert_eq!(all.unwrap().cards[0].new_balance, m("0"));
    // A live membership keeps its level.
    let live = decide_debit(
        &cfg(),
        &card("A1", "100", 0),
        &debit("50", Payment::Balance, Pin::Absent),
        now(),
    );
    assert_eq!(live.unwrap().answer.discount, m("2.50"));
}

#[test]
fn a_lapsed_card_cannot_redeem_and_a_top_up_renews_it() {
    let req = RedeemReq {
        order_no: "r".into(),
        cost: 5,
        gift: "mug".into(),
        pin: Pin::Absent,
    };
    let lots = [super::lots::Lot {
        id: 1,
        points_left: 10,
        expires_at: None,
        service: None,
    }];
    assert_eq!(
        errno(decide_redeem(&lapsed("1"), &lots, &req, now())),
        Errno::MembershipExpired
    );
    assert!(decide_redeem(&card("A1", "1", 10), &lots, &req, now()).is_ok());
    let top = TopupReq {
        order_no: "t".into(),
        amount: m("10"),
    };
    let p = decide_topup(&cfg(), &lapsed("1"), &top).unwrap();
    assert!(p.cards[0].renews_membership);
    let p = decide_debit(
        &cfg(),
        &card("A1", "100", 0),
        &debit("1", Payment::Cash, Pin::Absent),
        now(),
    );
    assert!(
        !p.unwrap().cards[0].renews_membership,
        "only a top-up renews"
    );
}

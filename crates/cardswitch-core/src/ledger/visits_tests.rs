//! Count cards (protocol.md §6.2): visits bought in lots, used soonest to
//! expire first, given back by a reverse, zeroed at expiry.

use chrono::{Duration, NaiveDate};

use super::lots::Lot;
use super::money::Money;
use super::ops_card::{decide_close, decide_replace, CloseReq, ReplaceReq};
use super::ops_money::*;
use super::ops_tests::{card, errno, m, now};
use super::plan::*;
use super::rules::Limits;
use super::visits::*;
use crate::protocol::errno::Errno;

fn today() -> NaiveDate {
    business_day(now(), &chrono::Utc)
}

fn add(price: &str, service: &str, count: u32, days: Option<u32>) -> VisitsAddReq {
    VisitsAddReq {
        order_no: "v1".into(),
        price: m(price),
        service: service.into(),
        count,
        days,
        payment: Payment::Balance,
        pin: Pin::Absent,
    }
}

fn visit(service: &str, count: u32) -> VisitReq {
    VisitReq {
        order_no: "u1".into(),
        service: service.into(),
        count,
        pin: Pin::Absent,
    }
}

fn vlot(id: i64, service: &str, left: i64, expires_in_days: Option<i64>) -> Lot {
    Lot {
        id,
        points_left: left,
        expires_at: expires_in_days.map(|d| now() + Duration::days(d)),
        service: Some(service.into()),
    }
}

fn with_visits(mut c: CardState, lots: &[Lot]) -> CardState {
    c.visits = lots
        .iter()
        .filter(|l| !l.is_points())
        .map(|l| l.points_left)
        .sum();
    c
}

#[test]
fn visits_add_pays_like_a_debit_without_discount_and_makes_one_lot() {
    let c = card("C1", "100.00", 0);
    let p = decide_visits_add(&c, &[], &add("60.00", "swim", 10, Some(30)), now()).unwrap();
    let ch = &p.cards[0];
    assert_eq!(
        ch.balance_delta,
        m("60.00").amount() * rust_decimal::Decimal::NEGATIVE_ONE
    );
    assert_eq!(
        (ch.points_delta, ch.visits_delta, ch.new_visits),
        (0, 10, 10)
    );
    assert_eq!(ch.day_spend, m("60.00").amount());
    assert_eq!(ch.lots_created.len(), 1);
    let lot = &ch.lots_created[0];
    assert_eq!(lot.service.as_deref(), Some("swim"));
    assert_eq!(lot.expires_at, Some(now() + Duration::days(30)));
    assert_eq!(
        (p.answer.amount, p.answer.charged, p.answer.discount),
        (m("60.00"), m("60.00"), m("0"))
    );
    let v = p.answer.visits.clone().unwrap();
    assert_eq!((v.service.as_str(), v.visits), ("swim", 10));
    // Free visits, and visits paid in cash, take nothing from the card.
    let free = decide_visits_add(&c, &[], &add("0.00", "swim", 2, None), now()).unwrap();
    assert!(
        free.cards[0].balance_delta.is_zero() && free.cards[0].lots_created[0].expires_at.is_none()
    );
    let mut cash = add("60.00", "swim", 10, None);
    cash.payment = Payment::Cash;
    assert!(decide_visits_add(&c, &[], &cash, now()).unwrap().cards[0]
        .balance_delta
        .is_zero());
}

#[test]
fn visits_add_spends_available_asks_the_pin_and_counts_toward_the_daily_limit() {
    let mut c = card("C1", "100.00", 0);
    c.held = m("50.00");
    assert_eq!(
        errno(decide_visits_add(
            &c,
            &[],
            &add("60.00", "swim", 1, None),
            now()
        )),
        Errno::InsufficientBalance
    );
    c.held = Money::ZERO;
    c.has_pin = true;
    assert_eq!(
        errno(decide_visits_add(
            &c,
            &[],
            &add("60.00", "swim", 1, None),
            now()
        )),
        Errno::WrongPin
    );
    // Nothing leaves the balance: no PIN asked.
    let mut cash = add("60.00", "swim", 1, None);
    cash.payment = Payment::Cash;
    assert!(decide_visits_add(&c, &[], &cash, now()).is_ok());
    c.has_pin = false;
    c.level.limits = Limits {
        max_balance: None,
        daily_debit: Some(m("50.00")),
    };
    assert_eq!(
        errno(decide_visits_add(
            &c,
            &[],
            &add("60.00", "swim", 1, None),
            now()
        )),
        Errno::OverLimit
    );
    let mut split = add("60.00", "swim", 1, None);
    split.payment = Payment::Split { cash: m("20.00") };
    let p = decide_visits_add(&c, &[], &split, now()).unwrap();
    assert_eq!(p.cards[0].day_spend, m("40.00").amount());
    split.payment = Payment::Split { cash: m("61.00") };
    assert_eq!(
        errno(decide_visits_add(&c, &[], &split, now())),
        Errno::InvalidAmount
    );
    c.status = CardStatus::Lost;
    assert_eq!(
        errno(decide_visits_add(
            &c,
            &[],
            &add("1.00", "swim", 1, None),
            now()
        )),
        Errno::CardLost
    );
}

#[test]
fn a_visit_uses_the_soonest_to_expire_of_its_service_and_2014_when_short() {
    let lots = vec![
        vlot(1, "swim", 3, None),
        vlot(2, "swim", 2, Some(5)),
        vlot(3, "gym", 9, Some(1)),
        vlot(4, "swim", 4, Some(-1)),
        Lot::points(5, 100, None),
    ];
    let c = with_visits(card("C1", "0", 100), &lots);
    let p = decide_visit(&c, &lots, &visit("swim", 4), now()).unwrap();
    let takes: Vec<(i64, i64)> = p.cards[0]
        .lots_taken
        .iter()
        .map(|t| (t.lot_id, t.points))
        .collect();
    assert_eq!(takes, vec![(2, 2), (1, 2)]);
    assert_eq!((p.cards[0].visits_delta, p.cards[0].points_delta), (-4, 0));
    assert_eq!(p.answer.visits.clone().unwrap().visits, 1);
    // The expired lot does not count, nor do another service's visits.
    assert_eq!(
        errno(decide_visit(&c, &lots, &visit("swim", 6), now())),
        Errno::NotEnoughVisits
    );
    assert_eq!(
        errno(decide_visit(&c, &lots, &visit("yoga", 1), now())),
        Errno::NotEnoughVisits
    );
    let mut locked = c.clone();
    locked.status = CardStatus::Locked;
    assert_eq!(
        errno(decide_visit(&locked, &lots, &visit("swim", 1), now())),
        Errno::CardLocked
    );
    // A lapsed membership still uses visits it paid for.
    let mut lapsed = c.clone();
    lapsed.member_until = Some(now() - Duration::days(1));
    assert!(decide_visit(&lapsed, &lots, &visit("swim", 1), now()).is_ok());
}

#[test]
fn the_read_lists_live_visits_per_service_and_expiry_zeroes_the_lapsed() {
    let lots = vec![
        vlot(1, "swim", 3, None),
        vlot(2, "swim", 2, Some(5)),
        vlot(3, "gym", 9, Some(1)),
        vlot(4, "swim", 4, Some(-1)),
        vlot(6, "gym", 0, Some(3)),
        Lot::points(5, 100, None),
    ];
    let rows = visits_by_service(&lots, now());
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].service.as_str(), rows[0].visits), ("gym", 9));
    assert_eq!(rows[0].next_expiry, Some(now() + Duration::days(1)));
    assert_eq!((rows[1].service.as_str(), rows[1].visits), ("swim", 5));
    assert_eq!(rows[1].next_expiry, Some(now() + Duration::days(5)));
    let c = with_visits(card("C1", "0", 100), &lots);
    let ch = decide_visits_expire(&c, &lots, now()).unwrap().unwrap();
    assert_eq!(
        (ch.visits_delta, ch.new_visits, ch.points_delta),
        (-4, 14, 0)
    );
    assert_eq!(ch.lots_taken.len(), 1);
    assert_eq!(decide_visits_expire(&c, &lots[..3], now()).unwrap(), None);
}

/// The purchase's order as a later reverse reads it.
fn order_of(p: &Plan, created: &[i64]) -> Original {
    Original {
        order_no: p.answer.order_no.clone(),
        op: p.op,
        business_day: today(),
        amount: p.answer.amount,
        charged: p.answer.charged,
        tender: Tender::Balance,
        points_earned: 0,
        reversed: false,
        refunded: Money::ZERO,
        points_taken_back: 0,
        effects: vec![p.cards[0].effect(created)],
        hold: None,
    }
}

#[test]
fn a_reverse_gives_visits_back_and_refunds_a_purchase_only_while_it_is_whole() {
    let c = card("C1", "100.00", 0);
    let bought = decide_visits_add(&c, &[], &add("60.00", "swim", 10, None), now()).unwrap();
    let o = order_of(&bought, &[9]);
    let after = CardState {
        balance: m("40.00"),
        visits: 10,
        spent_today: m("60.00"),
        ..c.clone()
    };
    let whole = [vlot(9, "swim", 10, None)];
    let req = ReverseReq {
        order_no: "r1".into(),
    };
    let p = decide_reverse(&o, &[(&after, &whole[..])], &req, today()).unwrap();
    let ch = &p.cards[0];
    assert_eq!(
        (ch.new_balance, ch.visits_delta, ch.new_visits),
        (m("100.00"), -10, 0)
    );
    assert_eq!(ch.day_spend, -m("60.00").amount());
    assert_eq!(ch.lots_taken[0].points, 10);
    let used = [vlot(9, "swim", 9, None)];
    let after_use = CardState {
        visits: 9,
        ..after.clone()
    };
    assert_eq!(
        errno(decide_reverse(
            &o,
            &[(&after_use, &used[..])],
            &req,
            today()
        )),
        Errno::AlreadyReversed
    );
    // A visit reversed: its visits back to the very lots it took from.
    let lots = vec![vlot(9, "swim", 10, None)];
    let st = CardState {
        visits: 10,
        ..after.clone()
    };
    let v = decide_visit(&st, &lots, &visit("swim", 3), now()).unwrap();
    let vo = order_of(&v, &[]);
    let st2 = CardState { visits: 7, ..after };
    let left = [vlot(9, "swim", 7, None)];
    let r = decide_reverse(&vo, &[(&st2, &left[..])], &req, today()).unwrap();
    assert_eq!((r.cards[0].visits_delta, r.cards[0].new_visits), (3, 10));
    assert_eq!(r.cards[0].lots_restored[0].points, 3);
}

#[test]
fn close_forfeits_visits_and_replace_carries_them_over() {
    let lots = vec![vlot(1, "swim", 3, Some(5)), Lot::points(2, 7, None)];
    let c = with_visits(card("C1", "10.00", 7), &lots);
    let closed = decide_close(
        &c,
        &lots,
        &CloseReq {
            order_no: "c1".into(),
            pin: Pin::Absent,
        },
    )
    .unwrap();
    assert_eq!(
        (closed.cards[0].visits_delta, closed.cards[0].new_visits),
        (-3, 0)
    );
    assert_eq!(closed.cards[0].lots_taken.len(), 2);
    let req = ReplaceReq {
        order_no: "x1".into(),
        new_card_no: "C2".into(),
    };
    let p = decide_replace(&c, &lots, None, &req).unwrap();
    let (into, out) = (&p.cards[0], &p.cards[1]);
    assert_eq!((into.new_visits, out.new_visits), (3, 0));
    let moved: Vec<_> = into
        .lots_created
        .iter()
        .map(|l| (l.points, l.service.clone()))
        .collect();
    assert_eq!(moved, vec![(3, Some("swim".to_string())), (7, None)]);
    // A card whose visits disagree with its lots: 3003, nothing moved.
    let wrong = CardState { visits: 4, ..c };
    assert_eq!(
        errno(decide_replace(&wrong, &lots, None, &req)),
        Errno::Internal
    );
}

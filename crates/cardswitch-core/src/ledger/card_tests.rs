//! Examples of the card ops: register, status changes, replace, close.

use chrono::FixedOffset;
use rust_decimal::Decimal;
use std::str::FromStr;

use super::ops_card::*;
use super::ops_tests::{card, errno, lots, m, now, with};
use super::plan::*;
use crate::protocol::errno::Errno;

#[test]
fn business_day_follows_the_configured_zone() {
    // 2026-11-18T11:06:40Z is the 19th in UTC+13 and the 17th in UTC-12.
    let zone = |h: i32| FixedOffset::east_opt(h * 3600).unwrap();
    assert_eq!(business_day(now(), &zone(0)).to_string(), "2026-11-18");
    assert_eq!(business_day(now(), &zone(13)).to_string(), "2026-11-19");
    assert_eq!(business_day(now(), &zone(-12)).to_string(), "2026-11-17");
}

#[test]
fn register_status_replace_close() {
    let lvl = card("x", "0", 0).level;
    let req = RegisterReq {
        order_no: "g".into(),
        card_no: "N1".into(),
        member: NewMember {
            name: "a".into(),
            phone: "1".into(),
            birthday: None,
            referrer: None,
        },
        level: "gold".into(),
        pin_set: true,
        opening: None,
        points_expire_at: None,
    };
    let p = decide_register(None, Some(&lvl), &req).unwrap();
    assert_eq!(p.new_card.unwrap().pin, PinSource::FromRequest);
    assert_eq!(
        errno(decide_register(Some(&card("N1", "0", 0)), Some(&lvl), &req)),
        Errno::CardInUse
    );
    assert_eq!(errno(decide_register(None, None, &req)), Errno::Malformed);
    // An import: the same card, its opening balance and points one lot.
    let import = RegisterReq {
        opening: Some(crate::ledger::request::Opening {
            balance: crate::ledger::Money::new("12.30".parse().unwrap()).unwrap(),
            points: 40,
        }),
        points_expire_at: None,
        ..req.clone()
    };
    let p = decide_register(None, Some(&lvl), &import).unwrap();
    assert_eq!(p.op, OpKind::Import);
    let c = &p.cards[0];
    assert_eq!(
        c.balance_delta,
        "12.30".parse::<rust_decimal::Decimal>().unwrap()
    );
    assert_eq!((c.points_delta, c.new_points), (40, 40));
    assert_eq!(c.lots_created.len(), 1);
    assert_eq!(
        p.answer.amount,
        crate::ledger::Money::new("12.30".parse().unwrap()).unwrap()
    );

    use CardStatus::*;
    let cases = [
        (StatusOp::Lost, Active, Ok(Some(Lost))),
        (StatusOp::Lost, Lost, Ok(None)),
        (StatusOp::Lost, Locked, Err(Errno::CardLocked)),
        (StatusOp::Found, Lost, Ok(Some(Active))),
        (StatusOp::Found, Active, Ok(None)),
        (StatusOp::Found, Closed, Err(Errno::CardLocked)),
        (StatusOp::Lock, Active, Ok(Some(Locked))),
        (StatusOp::Lock, Lost, Err(Errno::CardLost)),
        (StatusOp::Unlock, Locked, Ok(Some(Active))),
        (StatusOp::Unlock, Lost, Err(Errno::CardLost)),
        (StatusOp::Unlock, Closed, Err(Errno::CardLocked)),
    ];
    for (op, from, want) in cases {
        let got = decide_status(&with(from, card("A1", "1", 0)), op, "s")
            .map(|p| p.cards[0].status)
            .map_err(|r| r.errno);
        assert_eq!(got, want, "{op:?} from {from:?}");
    }

    let old = CardState {
        has_pin: true,
        member_until: None,
        spent_today: crate::ledger::Money::ZERO,
        held: crate::ledger::Money::ZERO,
        active_holds: 0,
        visits: 0,
        ..with(Lost, card("A1", "12.34", 20))
    };
    let p = decide_replace(
        &old,
        &lots(),
        None,
        &ReplaceReq {
            order_no: "r".into(),
            new_card_no: "B2".into(),
        },
    )
    .unwrap();
    assert_eq!(p.cards[0].card_no, "B2");
    assert_eq!(
        (
            p.cards[0].new_balance,
            p.cards[0].new_points,
            p.cards[0].lots_created.len()
        ),
        (m("12.34"), 20, 3)
    );
    assert_eq!(
        (
            p.cards[1].new_balance,
            p.cards[1].new_points,
            p.cards[1].status
        ),
        (m("0"), 0, Some(Closed))
    );
    assert_eq!(p.new_card.unwrap().pin, PinSource::CopyFrom("A1".into()));
    let rr = |new: &str| ReplaceReq {
        order_no: "r".into(),
        new_card_no: new.into(),
    };
    assert_eq!(
        errno(decide_replace(
            &old,
            &lots(),
            Some(&card("B2", "0", 0)),
            &rr("B2")
        )),
        Errno::CardInUse
    );
    assert_eq!(
        errno(decide_replace(&old, &lots(), None, &rr("A1"))),
        Errno::CardInUse
    );
    assert_eq!(
        errno(decide_replace(
            &with(Locked, old.clone()),
            &lots(),
            None,
            &rr("B2")
        )),
        Errno::CardLocked
    );
    assert_eq!(
        errno(decide_replace(&old, &lots()[1..], None, &rr("B2"))),
        Errno::Internal
    );

    let c = card("A1", "12.34", 20);
    let p = decide_close(
        &c,
        &lots(),
        &CloseReq {
            order_no: "c".into(),
            pin: Pin::Absent,
        },
    )
    .unwrap();
    assert_eq!(
        (p.answer.cash_out, p.answer.balance, p.answer.points),
        (m("12.34"), m("0"), 0)
    );
    assert_eq!(
        p.cards[0].balance_delta,
        Decimal::from_str("-12.34").unwrap()
    );
    let lost = with(Lost, c);
    assert_eq!(
        errno(decide_close(
            &lost,
            &lots(),
            &CloseReq {
                order_no: "c".into(),
                pin: Pin::Absent
            }
        )),
        Errno::CardLost
    );
}

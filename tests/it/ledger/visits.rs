//! Count cards (protocol.md §6.2) over the real database: `visits_add`
//! buys visits of a service as a lot (paid like a debit without discount),
//! `visit` uses them soonest-to-expire first, `visits` lists them per
//! service, a reverse gives them back, and a lapsed lot is zeroed by a
//! `visits_expire` posting when the card is next used. Concurrent visits
//! never use more than the card holds.

use cardswitch::protocol::xml::Row;
use futures_util::future::join_all;

use crate::ledger::back_office::valid;

use crate::ledger_support::*;

fn add(card: &str, price: &str, service: &str, count: &str, order: &str) -> Req {
    req("visits_add", card)
        .amount(price)
        .a2("service", service)
        .a2("count", count)
        .order(order)
}

fn visit(card: &str, service: &str, order: &str) -> Req {
    req("visit", card).a2("service", service).order(order)
}

/// The `visits` read's rows as (service, visits, has next_expiry).
async fn read(l: &Ledger, card: &str) -> Vec<(String, String, bool)> {
    let rows = l.send(&req("visits", card)).await.unwrap();
    valid(&rows);
    rows.0
        .iter()
        .map(|r| {
            (
                r.get("service").unwrap().to_owned(),
                r.get("visits").unwrap().to_owned(),
                r.get("next_expiry").is_some(),
            )
        })
        .collect()
}

#[tokio::test]
async fn visits_are_bought_used_and_listed_per_service() {
    let l = setup().await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    // No discount on visits, no points: 60 leaves the balance whole.
    let a = l
        .ok(&add("GOLD0001", "60", "swim", "10", "V1").a2("days", "30"))
        .await;
    assert_eq!(a.get("charged"), Some("60.00"));
    assert_eq!(a.get("balance"), Some("40.00"));
    assert_eq!(a.get("points_delta"), Some("0"));
    assert_eq!(
        (a.get("service"), a.get("visits")),
        (Some("swim"), Some("10"))
    );
    l.ok(&add("GOLD0001", "0.00", "gym", "2", "V2")).await;
    l.ok(&add("GOLD0001", "5", "swim", "1", "V3").a2("tender", "cash"))
        .await;
    assert_eq!(l.card_row("GOLD0001").await.balance, d("40.00"));
    let u = l
        .ok(&visit("GOLD0001", "swim", "U1").a2("count", "3"))
        .await;
    assert_eq!(u.get("visits"), Some("8"));
    assert_eq!(u.get("balance"), Some("40.00"));
    let rows = read(&l, "GOLD0001").await;
    assert_eq!(
        rows,
        vec![
            ("gym".into(), "2".into(), false),
            ("swim".into(), "8".into(), true)
        ]
    );
    // The 30-day lot went first: the one without expiry is untouched.
    let untouched = "SELECT count(*) FROM lots WHERE card_no = 'GOLD0001' AND service = 'swim'
                       AND expires_at IS NULL AND points_left = 1";
    assert_eq!(l.count(untouched).await, 1);
    l.refused(&visit("GOLD0001", "gym", "U2").a2("count", "3"), 2014)
        .await;
    l.refused(&visit("GOLD0001", "yoga", "U3"), 2014).await;
    // Points stay apart from visits.
    assert_eq!(l.card_row("GOLD0001").await.points, 0);
    l.check_books().await;
}

#[tokio::test]
async fn a_purchase_is_checked_like_a_debit() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("50"), Some("1234")).await;
    l.refused(
        &add("CARD0001", "60", "swim", "1", "V1").a2("pin", "1234"),
        2004,
    )
    .await;
    l.refused(&add("CARD0001", "10", "swim", "1", "V2"), 2009)
        .await;
    // Cash leaves nothing from the balance: no PIN asked.
    l.ok(&add("CARD0001", "10", "swim", "1", "V3").a2("tender", "cash"))
        .await;
    let s = l
        .ok(&add("CARD0001", "30", "swim", "2", "V4")
            .a2("pin", "1234")
            .a2("tender", "split")
            .a2("cash", "10"))
        .await;
    assert_eq!(
        (s.get("cash"), s.get("from_balance")),
        (Some("10.00"), Some("20.00"))
    );
    assert_eq!(l.card_row("CARD0001").await.balance, d("30.00"));
    // Out of the grammar: 1001 before anything is read.
    for (n, v) in [
        ("count", "0"),
        ("count", "10000"),
        ("days", "0"),
        ("service", ""),
    ] {
        let r = add("CARD0001", "1", "swim", "1", "V5")
            .a2(n, v)
            .a2("pin", "1234");
        assert_eq!(r.parse_errno(), 1001, "{n}={v}");
    }
    l.check_books().await;
}

#[tokio::test]
async fn a_reverse_gives_visits_back_and_refunds_only_a_whole_purchase() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("100"), None).await;
    l.ok(&add("CARD0001", "40", "swim", "4", "V1")).await;
    l.ok(&visit("CARD0001", "swim", "U1")).await;
    // Used once: the purchase cannot be undone any more.
    l.refused(&req("reverse", "V1").order("R1").mgr(), 2008)
        .await;
    let r = l.ok(&req("reverse", "U1").order("R2").mgr()).await;
    assert_eq!(r.get("balance"), Some("60.00"));
    assert_eq!(read(&l, "CARD0001").await[0].1, "4");
    // Whole again: its price comes back to the balance.
    let r = l.ok(&req("reverse", "V1").order("R3").mgr()).await;
    assert_eq!(r.get("balance"), Some("100.00"));
    assert!(read(&l, "CARD0001").await.is_empty());
    l.refused(&visit("CARD0001", "swim", "U2"), 2014).await;
    // A refund is for debits only.
    l.ok(&add("CARD0001", "10", "gym", "1", "V2")).await;
    l.refused(&req("refund", "V2").amount("10").order("F1").mgr(), 2007)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn a_lapsed_lot_is_zeroed_on_next_use_and_replace_carries_visits_over() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("10"), None).await;
    l.ok(&add("CARD0001", "0", "swim", "3", "V1").a2("days", "1"))
        .await;
    l.ok(&add("CARD0001", "0", "swim", "2", "V2")).await;
    l.age_lots(
        "SELECT lot_id FROM lots WHERE card_no = 'CARD0001' AND points = 3",
        "1 second",
    )
    .await;
    // A debit (which reads no lot) meets the lapsed lot and posts its expiry.
    l.ok(&req("debit", "CARD0001").amount("1").order("D1"))
        .await;
    let expired = "SELECT count(*) FROM postings WHERE card_no = 'CARD0001'
                     AND op = 'visits_expire' AND visits_delta = -3";
    assert_eq!(l.count(expired).await, 1);
    assert_eq!(read(&l, "CARD0001").await[0].1, "2");
    let replace = req("replace", "CARD0001")
        .order("X1")
        .mgr()
        .a2("new", "CARD0009");
    l.ok(&replace).await;
    assert_eq!(read(&l, "CARD0009").await[0].1, "2");
    l.ok(&visit("CARD0009", "swim", "U1")).await;
    // Close forfeits what is left.
    l.ok(&req("close", "CARD0009").order("X2").mgr()).await;
    l.check_books().await;
}

#[tokio::test]
async fn concurrent_visits_never_use_more_than_the_card_holds() {
    let l = setup().await;
    l.card("CARD0001", "std", None, None).await;
    l.ok(&add("CARD0001", "0", "swim", "7", "V1")).await;
    let reqs: Vec<Req> = (0..20)
        .map(|i| visit("CARD0001", "swim", &format!("U{i}")))
        .collect();
    let results = join_all(reqs.iter().map(|r| l.send(r))).await;
    let passed = results.iter().filter(|r| errno_of(r) == 0).count();
    assert_eq!(passed, 7);
    assert!(results.iter().all(|r| matches!(errno_of(r), 0 | 2014)));
    assert!(read(&l, "CARD0001").await.is_empty());
    l.check_books().await;
}

#[tokio::test]
async fn visits_show_in_history_statement_settlement_and_events() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("100"), None).await;
    l.ok(&add("CARD0001", "30", "swim", "3", "V1")).await;
    l.ok(&add("CARD0001", "12", "swim", "1", "V2").a2("tender", "cash"))
        .await;
    l.ok(&visit("CARD0001", "swim", "U1").a2("count", "2"))
        .await;
    let h = l.send(&req("history", "CARD0001")).await.unwrap();
    valid(&h);
    assert_eq!(h.0[0].get("op"), Some("visit"));
    assert_eq!(h.0[0].get("visits_delta"), Some("-2"));
    let st = l
        .send_from("O1", &req("statement", "CARD0001"))
        .await
        .unwrap();
    valid(&st);
    let deltas: Vec<(Option<&str>, Option<&str>)> =
        st.0.iter()
            .map(|r| (r.get("order_no"), r.get("visits_delta")))
            .collect();
    assert!(deltas.contains(&(Some("V1"), Some("3"))), "{deltas:?}");
    assert!(deltas.contains(&(Some("U1"), Some("-2"))), "{deltas:?}");
    // The settlement counts what was paid for visits, by tender.
    let day = crate::ledger::back_office::day(&l).await;
    let set = l.send_from("O1", &req("settlement", &day)).await.unwrap();
    valid(&set);
    let bought = |tender: &str| -> Row {
        set.0
            .iter()
            .find(|r| r.get("op") == Some("visits_add") && r.get("tender") == Some(tender))
            .unwrap_or_else(|| panic!("no {tender} visits_add row in {set:?}"))
            .clone()
    };
    assert_eq!(bought("balance").get("balance_delta"), Some("-30.00"));
    assert_eq!(bought("cash").get("cash"), Some("12.00"));
    let c = l.client().await;
    let body: serde_json::Value = c
        .query_one(
            "SELECT body FROM events WHERE op = 'visit' AND body->>'order_no' = 'U1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (&body["service"], &body["visits"], &body["visits_delta"]),
        (&"swim".into(), &2.into(), &(-2).into())
    );
}

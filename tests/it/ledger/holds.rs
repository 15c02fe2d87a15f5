//! Holds (protocol.md §6.2) over the real database: `hold` keeps money
//! from `available`, `capture` takes part of it at the hold's terms and
//! releases the rest, `void` releases it, and a hold past its expiry stops
//! counting by itself (`hold_expire` posted when the card is next used).
//! Concurrent holds and debits on one card never spend more than it has.

use futures_util::future::join_all;

use crate::ledger_support::*;

fn hold(card: &str, sale: &str, order: &str) -> Req {
    req("hold", card).amount(sale).order(order)
}

#[tokio::test]
async fn a_hold_is_captured_in_part_and_the_rest_released() {
    let l = setup().await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    // gold: 5 % off. A hold of a sale of 60 keeps 57.
    let h = l
        .ok(&hold("GOLD0001", "60", "H1").a2("expires", "3600"))
        .await;
    assert_eq!(h.get("charged"), Some("57.00"));
    assert_eq!(h.get("balance"), Some("100.00"));
    assert_eq!(h.get("available"), Some("43.00"));
    assert!(h.get("hold_expires_at").is_some());
    let q = l.ok(&req("query", "GOLD0001")).await;
    assert_eq!(q.get("available"), Some("43.00"));
    assert_eq!(q.get("holds"), Some("1"));
    // Spends take from what is available: 45 (42.75) fits, 46 (43.70) not.
    l.refused(&req("debit", "GOLD0001").amount("46").order("D1"), 2004)
        .await;
    l.refused(&hold("GOLD0001", "46", "H2"), 2004).await;
    // The capture is priced at the hold's terms, earns points as a debit,
    // and leaves nothing held.
    let c = l.ok(&req("capture", "H1").amount("40").order("C1")).await;
    assert_eq!(c.get("charged"), Some("38.00"));
    assert_eq!(c.get("balance"), Some("62.00"));
    // gold earns 2 points a yuan.
    assert_eq!(c.get("points_delta"), Some("76"));
    let q = l.ok(&req("query", "GOLD0001")).await;
    assert_eq!(q.get("available"), Some("62.00"));
    assert_eq!(q.get("holds"), Some("0"));
    // Once per hold: captured, it can be neither captured nor voided.
    l.refused(&req("capture", "H1").amount("1").order("C2"), 2008)
        .await;
    l.refused(&req("void", "H1").order("V1"), 2008).await;
    // A capture is undone as a debit.
    l.ok(&req("reverse", "C1").order("R1").mgr()).await;
    assert_eq!(l.card_row("GOLD0001").await.balance, d("100.00"));
    l.check_books().await;
}

#[tokio::test]
async fn void_releases_and_unknown_or_other_orders_are_no_holds() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("50"), None).await;
    l.ok(&hold("CARD0001", "50", "H1")).await;
    l.refused(&req("debit", "CARD0001").amount("0.01").order("D1"), 2004)
        .await;
    let v = l.ok(&req("void", "H1").order("V1")).await;
    assert_eq!(v.get("amount"), Some("50.00"));
    l.ok(&req("debit", "CARD0001").amount("50").order("D2"))
        .await;
    l.refused(&req("void", "NOPE").order("V2"), 2007).await;
    l.refused(&req("capture", "D2").amount("1").order("C1"), 2007)
        .await;
    // A hold is undone by void, never by reverse or refund.
    l.card("CARD0002", "std", Some("50"), None).await;
    l.ok(&hold("CARD0002", "10", "H2")).await;
    l.refused(&req("reverse", "H2").order("R1").mgr(), 2007)
        .await;
    l.refused(&req("capture", "H2").amount("10.01").order("C2"), 2010)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn an_expired_hold_stops_counting_and_is_released_on_next_use() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("80"), None).await;
    l.ok(&hold("CARD0001", "70", "H1")).await;
    l.ok(&hold("CARD0001", "5", "H2")).await;
    l.age_hold("H1", 1_000).await;
    // The query sees it gone and posts its release.
    let q = l.ok(&req("query", "CARD0001")).await;
    assert_eq!(q.get("available"), Some("75.00"));
    assert_eq!(q.get("holds"), Some("1"));
    let released =
        "SELECT count(*) FROM postings WHERE card_no = 'CARD0001' AND op = 'hold_expire'";
    assert_eq!(l.count(released).await, 1);
    l.refused(&req("capture", "H1").amount("1").order("C1"), 2008)
        .await;
    l.ok(&req("debit", "CARD0001").amount("74.99").order("D1"))
        .await;
    // An expired hold the card has not met yet is released by the capture
    // of another, in the same transaction.
    l.ok(&hold("CARD0001", "0.01", "H3")).await;
    l.age_hold("H3", 1_000).await;
    l.ok(&req("capture", "H2").amount("5").order("C2")).await;
    assert_eq!(l.count(released).await, 2);
    assert_eq!(l.card_row("CARD0001").await.balance, d("0.01"));
    let q = l.ok(&req("query", "CARD0001")).await;
    assert_eq!(q.get("available"), Some("0.01"));
    l.check_books().await;
}

#[tokio::test]
async fn a_card_with_active_holds_is_neither_closed_nor_replaced() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("20"), None).await;
    l.ok(&hold("CARD0001", "5", "H1")).await;
    l.refused(&req("close", "CARD0001").order("X1").mgr(), 2017)
        .await;
    let replace = req("replace", "CARD0001")
        .order("X2")
        .mgr()
        .a2("new", "CARD0009");
    l.refused(&replace, 2017).await;
    // A lost card's hold is still honoured by its capture.
    l.ok(&req("lost", "CARD0001").order("L1").mgr()).await;
    l.ok(&req("capture", "H1").amount("5").order("C1")).await;
    l.ok(&replace.order("X3")).await;
    l.check_books().await;
}

#[tokio::test]
async fn concurrent_holds_and_debits_never_spend_more_than_the_card_has() {
    let l = setup().await;
    l.card("CARD0001", "std", Some("100"), None).await;
    // 30 requests of 10 each, half holds and half debits: exactly 10 pass.
    let reqs: Vec<Req> = (0..30)
        .map(|i| {
            let op = if i % 2 == 0 { "hold" } else { "debit" };
            req(op, "CARD0001").amount("10").order(&format!("N{i}"))
        })
        .collect();
    let results = join_all(reqs.iter().map(|r| l.send(r))).await;
    let passed = results.iter().filter(|r| errno_of(r) == 0).count();
    assert_eq!(passed, 10);
    assert!(results.iter().all(|r| matches!(errno_of(r), 0 | 2004)));
    // Nothing left to spend: what the debits took and the holds keep is
    // all the card had.
    let spent = "SELECT count(*) FROM cards WHERE card_no = 'CARD0001'
                    AND coalesce(held, 0) = balance
                    AND balance = 100 - 10 * (SELECT count(*) FROM postings
                                               WHERE card_no = 'CARD0001' AND op = 'debit')";
    assert_eq!(l.count(spent).await, 1);
    l.check_books().await;
}

#[tokio::test]
async fn a_hold_counts_toward_the_daily_limit_and_gives_back_what_it_did_not_take() {
    let l = setup().await;
    let mut c = l.client().await;
    let tx = c.transaction().await.unwrap();
    let limits = cardswitch::integrity::LevelLimits {
        max_balance: None,
        daily_debit_limit: Some(d("100")),
    };
    cardswitch::store::operators::set_level_limits(&tx, &l.env.row_keys, "std", |_| limits)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    l.card("CARD0001", "std", Some("500"), None).await;
    l.ok(&hold("CARD0001", "90", "H1")).await;
    l.refused(&req("debit", "CARD0001").amount("20").order("D1"), 2016)
        .await;
    // Captured at 30: the 60 it did not take count no more today.
    l.ok(&req("capture", "H1").amount("30").order("C1")).await;
    l.ok(&req("debit", "CARD0001").amount("70").order("D2"))
        .await;
    l.refused(&req("debit", "CARD0001").amount("0.01").order("D3"), 2016)
        .await;
    l.check_books().await;
}

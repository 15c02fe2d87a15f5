//! Members and their cards through the ledger: register, query, member and
//! history (with their refusals), and the card PIN: wrong guesses counted,
//! a right one resetting the count, five locking the card, stored only as a
//! keyed hash.

use crate::ledger_support::CardSnapshot;
use crate::ledger_support::*;

#[tokio::test]
async fn register_query_member() {
    let l = setup().await;
    let row = l
        .ok(&req("register", "CARD0001")
            .order("R1")
            .a2("name", "Li Wei")
            .a2("phone", "13800001234")
            .a2("level", "gold")
            .a2("birthday", "1990-05-01"))
        .await;
    assert_eq!(row.get("status"), Some("active"));
    assert_eq!(row.get("balance"), Some("0.00"));
    assert_eq!(row.get("replayed"), Some("0"));
    assert_eq!(l.card_row("CARD0001").await.balance, d("0"));
    assert_eq!(l.count("SELECT count(*) FROM members").await, 1);
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE op = 'register'")
            .await,
        1
    );
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE answer IS NOT NULL")
            .await,
        1
    );
    // 2012: number in use; unknown level: 1001.
    l.refused(
        &req("register", "CARD0001")
            .order("R2")
            .a2("name", "X")
            .a2("phone", "13800001234")
            .a2("level", "gold"),
        2012,
    )
    .await;
    l.refused(
        &req("register", "CARD0002")
            .order("R3")
            .a2("name", "X")
            .a2("phone", "13800001234")
            .a2("level", "platinum"),
        1001,
    )
    .await;
    assert_eq!(l.count("SELECT count(*) FROM cards").await, 1);
    assert_eq!(l.count("SELECT count(*) FROM orders").await, 1);

    let q = l.ok(&req("query", "CARD0001")).await;
    assert_eq!(q.get("level"), Some("gold"));
    assert_eq!(q.get("points"), Some("0"));
    l.refused(&req("query", "NOPE0001"), 2001).await;
    let m = l.ok(&req("member", "CARD0001")).await;
    assert_eq!(m.get("phone"), Some("*******1234"));
    assert_eq!(m.get("birthday"), Some("1990-05-01"));
    assert_eq!(m.get("name"), Some("Li Wei"));
    l.check_books().await;
}

#[tokio::test]
async fn card_pin_counts_and_locks() {
    let l = setup().await;
    let ts0 = l.next_ts();
    l.card("CARD0002", "std", None, Some("1234")).await;
    l.refused(&req("query", "CARD0002"), 2009).await;
    assert_eq!(
        l.card_row("CARD0002").await.pin_fail_count,
        0,
        "a missing PIN is no guess"
    );
    for i in 1..=4 {
        l.refused(&req("query", "CARD0002").a2("pin", "9999"), 2009)
            .await;
        assert_eq!(l.card_row("CARD0002").await.pin_fail_count, i);
    }
    let q = l.ok(&req("query", "CARD0002").a2("pin", "1234")).await;
    assert_eq!(q.get("status"), Some("active"));
    assert_eq!(
        l.card_row("CARD0002").await.pin_fail_count,
        0,
        "a right PIN resets"
    );
    for _ in 0..5 {
        l.refused(
            &req("debit", "CARD0002")
                .amount("1")
                .order("D")
                .a2("pin", "0000"),
            2009,
        )
        .await;
    }
    let CardSnapshot {
        status,
        pin_fail_count: count,
        ..
    } = l.card_row("CARD0002").await;
    assert_eq!((status.as_str(), count), ("locked", 5));
    l.refused(&req("query", "CARD0002").a2("pin", "1234"), 2003)
        .await;
    // Refused requests spent their ts all the same.
    let sent = l.next_ts() - ts0 - 1;
    assert_eq!(l.count("SELECT count(*) FROM seen_ts").await, sent);
    // A manager unlocks: active, counter cleared.
    let u = l.ok(&req("unlock", "CARD0002").order("U1").mgr()).await;
    assert_eq!(u.get("status"), Some("active"));
    assert_eq!(l.card_row("CARD0002").await.pin_fail_count, 0);
    l.ok(&req("query", "CARD0002").a2("pin", "1234")).await;
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE pin_hash IS NULL OR pin_hash = convert_to('1234', 'UTF8')")
            .await,
        0,
        "PINs are stored only as keyed hashes"
    );
    l.check_books().await;
}

#[tokio::test]
async fn history_newest_first() {
    let l = setup().await;
    l.card("CARD0012", "std", Some("10"), None).await;
    l.ok(&req("debit", "CARD0012").amount("1").order("D1"))
        .await;
    l.ok(&req("debit", "CARD0012").amount("2").order("D2"))
        .await;
    let rows = l
        .send(&req("history", "CARD0012").a2("limit", "2"))
        .await
        .unwrap()
        .0;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get("order_no"), Some("D2"));
    assert_eq!(rows[0].get("balance"), Some("7.00"));
    assert_eq!(rows[0].get("terminal"), Some("T1"));
    assert_eq!(rows[1].get("order_no"), Some("D1"));
    assert!(rows[0].get("replayed").is_none());
    let all = l.send(&req("history", "CARD0012")).await.unwrap().0;
    assert_eq!(all.len(), 4);
    l.refused(&req("history", "NOPE0001"), 2001).await;
}

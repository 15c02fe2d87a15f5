//! The ledger through `store::txn::run`: every op's success path and its
//! errnos, asserting the database afterwards; idempotency; expiry.

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
    assert_eq!(l.card_row("CARD0001").await.0, d("0"));
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

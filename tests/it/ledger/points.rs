//! Points through the ledger: adjustments and redeem, lots expiring lazily,
//! and a card whose points disagree with its lots refused (3001).

use crate::ledger_support::*;

#[tokio::test]
async fn points_and_redeem() {
    let l = setup().await;
    l.card("CARD0004", "std", None, Some("1234")).await;
    let r = l
        .ok(&req("points", "CARD0004")
            .order("P1")
            .a2("delta", "100")
            .a2("reason", "promo"))
        .await;
    assert_eq!(r.get("points"), Some("100"));
    l.ok(&req("points", "CARD0004")
        .order("P2")
        .a2("delta", "-30")
        .a2("reason", "fix"))
        .await;
    l.refused(
        &req("points", "CARD0004")
            .order("P3")
            .a2("delta", "-71")
            .a2("reason", "fix"),
        2005,
    )
    .await;
    l.refused(
        &req("points", "CARD0004")
            .order("P4")
            .a2("delta", "0")
            .a2("reason", "fix"),
        2010,
    )
    .await;
    let r = l
        .ok(&req("redeem", "CARD0004")
            .order("G1")
            .a2("cost", "50")
            .a2("gift", "mug")
            .a2("pin", "1234"))
        .await;
    assert_eq!(r.get("points"), Some("20"));
    assert_eq!(r.get("points_delta"), Some("-50"));
    for (cost, pin, errno) in [
        ("21", "1234", 2005),
        ("0", "1234", 2010),
        ("1", "1111", 2009),
    ] {
        l.refused(
            &req("redeem", "CARD0004")
                .order("G2")
                .a2("cost", cost)
                .a2("gift", "mug")
                .a2("pin", pin),
            errno,
        )
        .await;
    }
    assert_eq!(l.card_row("CARD0004").await.points, 20);
    assert_eq!(
        l.count("SELECT sum(points_left)::bigint FROM lots WHERE card_no = 'CARD0004'")
            .await,
        20
    );
    l.check_books().await;
}

#[tokio::test]
async fn points_expire_lazily() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(6)).await;
    l.card("CARD0011", "std", None, None).await;
    l.ok(&req("points", "CARD0011")
        .order("P1")
        .a2("delta", "100")
        .a2("reason", "x"))
        .await;
    l.ok(&req("points", "CARD0011")
        .order("P2")
        .a2("delta", "5")
        .a2("reason", "x"))
        .await;
    assert_eq!(
        l.count("SELECT count(*) FROM lots WHERE card_no = 'CARD0011' AND expires_at > now() + interval '5 months'")
            .await,
        2
    );
    l.age_lots("SELECT lot_id FROM lots WHERE points = 100", "1 day")
        .await;
    let q = l.ok(&req("query", "CARD0011")).await;
    assert_eq!(q.get("points"), Some("5"));
    assert_eq!(l.card_row("CARD0011").await.points, 5);
    assert_eq!(
        l.count("SELECT points_delta FROM postings WHERE op = 'expire'")
            .await,
        -100
    );
    l.refused(
        &req("redeem", "CARD0011")
            .order("G1")
            .a2("cost", "6")
            .a2("gift", "x"),
        2005,
    )
    .await;
    l.check_books().await;
}

#[tokio::test]
async fn points_out_of_step_with_lots_is_3001() {
    let l = setup().await;
    l.card("CARD0014", "std", Some("10"), None).await;
    l.ok(&req("points", "CARD0014")
        .order("P1")
        .a2("delta", "10")
        .a2("reason", "x"))
        .await;
    l.client()
        .await
        .execute(
            "UPDATE cards SET points = 1000 WHERE card_no = 'CARD0014'",
            &[],
        )
        .await
        .unwrap();
    let postings = l.count("SELECT count(*) FROM postings").await;
    l.refused(&req("debit", "CARD0014").amount("1").order("D1"), 3001)
        .await;
    assert_eq!(l.count("SELECT count(*) FROM postings").await, postings);
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'D1'")
            .await,
        0
    );
    assert_eq!(l.card_row("CARD0014").await.balance, d("10"));
}

/// A debit's decision reads no lot, so its load reads only the lots expired
/// by now (issue 14): it still expires those, and the card's points still
/// equal its lots.
#[tokio::test]
async fn a_debit_expires_what_has_expired() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(6)).await;
    l.card("CARD0012", "std", Some("100"), None).await;
    for (order, delta) in [("P1", "100"), ("P2", "5")] {
        l.ok(&req("points", "CARD0012")
            .order(order)
            .a2("delta", delta)
            .a2("reason", "x"))
            .await;
    }
    l.age_lots("SELECT lot_id FROM lots WHERE points = 100", "1 day")
        .await;
    l.ok(&req("debit", "CARD0012").amount("10").order("D1"))
        .await;
    let expired = "SELECT points_delta FROM postings WHERE op = 'expire' AND card_no = 'CARD0012'";
    assert_eq!(l.count(expired).await, -100);
    let in_lots = "SELECT sum(points_left)::bigint FROM lots WHERE card_no = 'CARD0012'";
    let points = l.card_row("CARD0012").await.points;
    assert!(points > 5, "the debit earned points: {points}");
    assert_eq!(l.count(in_lots).await, points);
    l.check_books().await;
}

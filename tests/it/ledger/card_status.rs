//! Card status ops through the ledger: lost and found, lock and unlock,
//! replace (balance, points and lots move to the new card) and close (the
//! balance paid out in cash).

use crate::ledger_support::CardSnapshot;
use crate::ledger_support::*;

#[tokio::test]
async fn lost_found_lock_unlock() {
    let l = setup().await;
    l.card("CARD0007", "std", Some("10"), None).await;
    let st = |op: &str, o: &str| req(op, "CARD0007").order(o).mgr();
    assert_eq!(l.ok(&st("lost", "S1")).await.get("status"), Some("lost"));
    assert_eq!(l.card_row("CARD0007").await.status, "lost");
    assert_eq!(l.ok(&st("lost", "S2")).await.get("status"), Some("lost"));
    l.refused(&req("query", "CARD0007"), 2002).await;
    l.refused(&st("lock", "S3"), 2002).await;
    assert_eq!(l.ok(&st("found", "S4")).await.get("status"), Some("active"));
    assert_eq!(l.ok(&st("lock", "S5")).await.get("status"), Some("locked"));
    l.refused(&req("query", "CARD0007"), 2003).await;
    l.refused(&st("found", "S6"), 2003).await;
    assert_eq!(
        l.ok(&st("unlock", "S7")).await.get("status"),
        Some("active")
    );
    assert_eq!(l.card_row("CARD0007").await.status, "active");
    l.refused(&req("lost", "NOPE0001").order("S8").mgr(), 2001)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn replace_moves_everything() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(12)).await;
    l.card("OLDC0001", "std", Some("100"), Some("1234")).await;
    l.ok(&req("debit", "OLDC0001")
        .amount("10")
        .order("D1")
        .a2("pin", "1234"))
        .await;
    l.card("USED0001", "std", None, None).await;
    l.refused(
        &req("replace", "OLDC0001")
            .order("R1")
            .mgr()
            .a2("new", "USED0001"),
        2012,
    )
    .await;
    let r = l
        .ok(&req("replace", "OLDC0001")
            .order("R1")
            .mgr()
            .a2("new", "NEWC0001"))
        .await;
    assert_eq!(r.get("card"), Some("OLDC0001"));
    assert_eq!(r.get("new_card"), Some("NEWC0001"));
    assert_eq!(r.get("balance"), Some("90.00"));
    assert_eq!(r.get("points"), Some("10"));
    let CardSnapshot {
        balance: b,
        points: p,
        status: s,
        ..
    } = l.card_row("OLDC0001").await;
    assert_eq!((b, p, s.as_str()), (d("0"), 0, "closed"));
    let CardSnapshot {
        balance: b,
        points: p,
        status: s,
        ..
    } = l.card_row("NEWC0001").await;
    assert_eq!((b, p, s.as_str()), (d("90"), 10, "active"));
    assert_eq!(
        l.count(
            "SELECT count(*) FROM lots n JOIN lots o ON o.expires_at = n.expires_at
              WHERE n.card_no = 'NEWC0001' AND o.card_no = 'OLDC0001' AND n.points_left = 10"
        )
        .await,
        1,
        "the lot moved with its expiry"
    );
    assert_eq!(
        l.count(
            "SELECT count(DISTINCT member_id) FROM cards WHERE card_no IN ('OLDC0001', 'NEWC0001')"
        )
        .await,
        1
    );
    l.ok(&req("query", "NEWC0001").a2("pin", "1234")).await;
    l.refused(&req("query", "NEWC0001").a2("pin", "9999"), 2009)
        .await;
    l.refused(
        &req("replace", "OLDC0001")
            .order("R2")
            .mgr()
            .a2("new", "NEWC0002"),
        2003,
    )
    .await;
    l.check_books().await;
}

#[tokio::test]
async fn close_pays_out() {
    let l = setup().await;
    l.card("CARD0008", "std", Some("55.50"), None).await;
    l.ok(&req("points", "CARD0008")
        .order("P1")
        .a2("delta", "7")
        .a2("reason", "x"))
        .await;
    let r = l.ok(&req("close", "CARD0008").order("C1").mgr()).await;
    assert_eq!(r.get("cash_refund"), Some("55.50"));
    assert_eq!(r.get("status"), Some("closed"));
    assert_eq!(r.get("balance"), Some("0.00"));
    let CardSnapshot {
        balance: b,
        points: p,
        status: s,
        ..
    } = l.card_row("CARD0008").await;
    assert_eq!((b, p, s.as_str()), (d("0"), 0, "closed"));
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE closed_at IS NOT NULL")
            .await,
        1
    );
    l.refused(&req("query", "CARD0008"), 2003).await;
    l.refused(&req("topup", "CARD0008").amount("1").order("T1"), 2003)
        .await;
    l.refused(&req("close", "CARD0008").order("C2").mgr(), 2003)
        .await;
    l.check_books().await;
}

//! The errnos the area tests leave out: unknown cards, missing or wrong
//! PINs, reversals of money or points already spent, and lost or locked
//! cards refused; no refusal leaves an order claim behind.

use crate::ledger_support::*;

#[tokio::test]
async fn remaining_errnos() {
    let l = setup().await;
    l.card("CARD0016", "std", Some("20"), Some("1234")).await;
    l.refused(&req("member", "NOPE0001"), 2001).await;
    l.refused(&req("member", "CARD0016"), 2009).await;
    l.refused(&req("history", "CARD0016"), 2009).await;
    l.refused(&req("topup", "NOPE0001").amount("1").order("T1"), 2001)
        .await;
    l.refused(
        &req("redeem", "NOPE0001")
            .order("G1")
            .a2("cost", "1")
            .a2("gift", "x"),
        2001,
    )
    .await;
    l.refused(&req("close", "CARD0016").order("C1").mgr(), 2009)
        .await;
    l.refused(
        &req("close", "CARD0016").order("C1").mgr().a2("pin", "9999"),
        2009,
    )
    .await;
    l.refused(&req("refund", "NOSUCH").amount("1").order("F1").mgr(), 2007)
        .await;
    l.refused(
        &req("refund", "NOSUCH")
            .amount("1")
            .order("F1")
            .by("c1")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    // A top-up already spent cannot be reversed: 2004, nothing moves.
    l.ok(&req("topup", "CARD0016").amount("30").order("T2"))
        .await;
    l.ok(&req("debit", "CARD0016")
        .amount("45")
        .order("D1")
        .a2("pin", "1234"))
        .await;
    l.refused(&req("reverse", "T2").order("V1").mgr(), 2004)
        .await;
    // Points earned and already spent cannot be reversed: 2005.
    l.ok(&req("redeem", "CARD0016")
        .order("G2")
        .a2("cost", "45")
        .a2("gift", "x")
        .a2("pin", "1234"))
        .await;
    l.refused(&req("reverse", "D1").order("V2").mgr(), 2005)
        .await;
    assert_eq!(l.card_row("CARD0016").await.balance, d("5"));
    // A lost card cannot be closed (replace it) nor debited; a locked one not debited.
    l.ok(&req("lost", "CARD0016").order("L1").mgr()).await;
    l.refused(
        &req("close", "CARD0016").order("C2").mgr().a2("pin", "1234"),
        2002,
    )
    .await;
    l.refused(
        &req("transfer", "CARD0016")
            .amount("1")
            .order("X1")
            .mgr()
            .a2("to", "CARD0016"),
        1001,
    )
    .await;
    l.ok(&req("found", "CARD0016").order("L2").mgr()).await;
    l.ok(&req("lock", "CARD0016").order("L3").mgr()).await;
    l.refused(
        &req("debit", "CARD0016")
            .amount("1")
            .order("D2")
            .a2("pin", "1234"),
        2003,
    )
    .await;
    l.refused(
        &req("redeem", "CARD0016")
            .order("G3")
            .a2("cost", "1")
            .a2("gift", "x")
            .a2("pin", "1234"),
        2003,
    )
    .await;
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE answer IS NULL")
            .await,
        0,
        "no refusal left a claim"
    );
    l.check_books().await;
}

//! Undoing postings: reverse (the whole posting, manager PIN checked, only
//! on its business day and from its store) and refunds in parts (card or
//! cash, points taken back).

use crate::ledger_support::*;

#[tokio::test]
async fn reverse_undoes_whole() {
    let l = setup().await;
    l.card("CARD0005", "std", Some("100"), None).await;
    l.ok(&req("debit", "CARD0005").amount("10").order("D1"))
        .await;
    l.refused(
        &req("reverse", "D1").order("V0").by("c1").a2("mpin", MPIN),
        2011,
    )
    .await;
    l.refused(
        &req("reverse", "D1").order("V0").by("m1").a2("mpin", "0000"),
        2011,
    )
    .await;
    l.refused(
        &req("reverse", "D1")
            .order("V0")
            .by("nobody")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    let fails = l
        .count("SELECT pin_fail_count::bigint FROM operators WHERE operator_id = 'm1'")
        .await;
    assert_eq!(fails, 1);
    let r = l.ok(&req("reverse", "D1").order("V1").mgr()).await;
    assert_eq!(r.get("balance"), Some("100.00"));
    assert_eq!(r.get("points"), Some("0"));
    assert_eq!(r.get("terminal"), Some("T1"));
    assert_eq!(r.get("card"), Some("CARD0005"));
    assert_eq!(
        l.count("SELECT pin_fail_count::bigint FROM operators WHERE operator_id = 'm1'")
            .await,
        0,
        "a right manager PIN resets the count"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'D1' AND reversed")
            .await,
        1
    );
    assert_eq!(
        l.count(
            "SELECT coalesce(sum(points_left), 0)::bigint FROM lots WHERE card_no = 'CARD0005'"
        )
        .await,
        0
    );
    l.refused(&req("reverse", "D1").order("V2").mgr(), 2008)
        .await;
    l.refused(&req("refund", "D1").amount("1").order("V3").mgr(), 2008)
        .await;
    l.refused(&req("reverse", "NOSUCH").order("V4").mgr(), 2007)
        .await;
    l.refused(&req("reverse", "reg-CARD0005").order("V5").mgr(), 2007)
        .await;

    // A redeem reversed gives the points back to the lots they came from.
    l.ok(&req("points", "CARD0005")
        .order("P1")
        .a2("delta", "50")
        .a2("reason", "x"))
        .await;
    l.ok(&req("redeem", "CARD0005")
        .order("G1")
        .a2("cost", "30")
        .a2("gift", "x"))
        .await;
    let r = l.ok(&req("reverse", "G1").order("V6").mgr()).await;
    assert_eq!(r.get("points"), Some("50"));
    assert_eq!(
        l.count("SELECT sum(points_left)::bigint FROM lots WHERE card_no = 'CARD0005'")
            .await,
        50
    );

    // Only on the original's business day.
    l.ok(&req("topup", "CARD0005").amount("5").order("T9"))
        .await;
    l.backdate_order("T9").await;
    l.refused(&req("reverse", "T9").order("V7").mgr(), 2008)
        .await;

    // Another terminal of the same store may name the original; another store may not.
    l.send_from("T2", &req("topup", "CARD0005").amount("7").order("X1"))
        .await
        .unwrap();
    l.refused_from(
        "T3",
        &req("reverse", "X1")
            .order("V8")
            .by("m3")
            .a2("mpin", MPIN)
            .a2("terminal", "T2"),
        2007,
    )
    .await;
    l.refused(&req("reverse", "X1").order("V8").mgr(), 2007)
        .await;
    let r = l
        .ok(&req("reverse", "X1").order("V8").mgr().a2("terminal", "T2"))
        .await;
    assert_eq!(r.get("terminal"), Some("T2"));
    assert_eq!(l.card_row("CARD0005").await.balance, d("105.00"));
    l.check_books().await;
}

#[tokio::test]
async fn refunds_in_parts() {
    let l = setup().await;
    l.card("GOLD0002", "gold", Some("200"), None).await;
    let r = l
        .ok(&req("debit", "GOLD0002").amount("100").order("D1"))
        .await;
    assert_eq!(r.get("charged"), Some("95.00"));
    assert_eq!(r.get("points"), Some("190"));
    let r = l
        .ok(&req("refund", "D1").amount("50").order("F1").mgr())
        .await;
    assert_eq!(r.get("balance"), Some("155.00"));
    assert_eq!(r.get("points_delta"), Some("-100"));
    assert_eq!(r.get("cash_refund"), Some("0.00"));
    assert_eq!(r.get("charged"), Some("50.00"));
    l.refused(&req("refund", "D1").amount("45.01").order("F2").mgr(), 2008)
        .await;
    let r = l
        .ok(&req("refund", "D1").amount("45").order("F2").mgr())
        .await;
    assert_eq!(r.get("points"), Some("0"));
    assert_eq!(r.get("balance"), Some("200.00"));
    l.refused(&req("refund", "D1").amount("0.01").order("F3").mgr(), 2008)
        .await;
    l.refused(&req("reverse", "D1").order("F3").mgr(), 2008)
        .await;
    let top = l
        .count("SELECT count(*) FROM orders WHERE op = 'topup'")
        .await;
    assert_eq!(top, 1);
    let top_order: String = l
        .client()
        .await
        .query_one("SELECT order_no FROM orders WHERE op = 'topup'", &[])
        .await
        .unwrap()
        .get(0);
    l.refused(
        &req("refund", &top_order).amount("1").order("F4").mgr(),
        2007,
    )
    .await;
    l.refused(&req("refund", "D1").amount("0").order("F5").mgr(), 2010)
        .await;
    // A cash debit is refunded in cash.
    l.ok(&req("debit", "GOLD0002")
        .amount("10")
        .order("D2")
        .a2("tender", "cash"))
        .await;
    let r = l
        .ok(&req("refund", "D2").amount("9.50").order("F6").mgr())
        .await;
    assert_eq!(r.get("cash_refund"), Some("9.50"));
    assert_eq!(r.get("balance"), Some("200.00"));
    // Points already spent: the refund is refused rather than leaving them.
    l.ok(&req("debit", "GOLD0002").amount("100").order("D3"))
        .await;
    l.ok(&req("redeem", "GOLD0002")
        .order("G1")
        .a2("cost", "190")
        .a2("gift", "x"))
        .await;
    l.refused(&req("refund", "D3").amount("95").order("F7").mgr(), 2005)
        .await;
    assert_eq!(
        l.count("SELECT refunded::bigint FROM orders WHERE order_no = 'D1'")
            .await,
        95
    );
    l.check_books().await;
}

//! Money ops through the ledger: debit (discount, points earned, balance or
//! cash tender), top-up with its bonus rules, and transfer between cards,
//! each with its refusals.

use crate::ledger_support::*;

#[tokio::test]
async fn debit_balance_and_cash() {
    let l = setup().await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    let r = l
        .ok(&req("debit", "GOLD0001").amount("10").order("D1"))
        .await;
    assert_eq!(r.get("discount"), Some("0.50"));
    assert_eq!(r.get("charged"), Some("9.50"));
    assert_eq!(r.get("balance"), Some("90.50"));
    assert_eq!(r.get("points_delta"), Some("19"));
    assert_eq!(r.get("points"), Some("19"));
    let r = l
        .ok(&req("debit", "GOLD0001")
            .amount("20")
            .order("D2")
            .a2("tender", "cash"))
        .await;
    assert_eq!(r.get("charged"), Some("19.00"));
    assert_eq!(r.get("balance"), Some("90.50"));
    assert_eq!(r.get("points"), Some("57"));
    assert_eq!(l.card_row("GOLD0001").await.balance, d("90.50"));
    assert_eq!(
        l.count("SELECT count(*) FROM lots WHERE card_no = 'GOLD0001'")
            .await,
        2
    );
    l.refused(&req("debit", "GOLD0001").amount("1000").order("D3"), 2004)
        .await;
    l.refused(&req("debit", "GOLD0001").amount("0").order("D4"), 2010)
        .await;
    l.refused(&req("debit", "NOPE0001").amount("1").order("D5"), 2001)
        .await;
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE op = 'debit'")
            .await,
        2
    );
    assert_eq!(l.card_row("GOLD0001").await.balance, d("90.50"));
    l.ok(&req("lost", "GOLD0001").order("L1").mgr()).await;
    l.refused(&req("debit", "GOLD0001").amount("1").order("D6"), 2002)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn topup_bonus_rules() {
    let l = setup_with(|c| {
        c.ledger.bonus_rules = vec![bonus("100", "5"), bonus("500", "50")];
    })
    .await;
    l.card("CARD0003", "std", None, None).await;
    let r = l
        .ok(&req("topup", "CARD0003").amount("500").order("T1"))
        .await;
    assert_eq!(r.get("bonus"), Some("50.00"));
    assert_eq!(r.get("charged"), Some("500.00"));
    assert_eq!(r.get("balance"), Some("550.00"));
    let r = l
        .ok(&req("topup", "CARD0003").amount("99.99").order("T2"))
        .await;
    assert_eq!(r.get("balance"), Some("649.99"));
    l.refused(&req("topup", "CARD0003").amount("0").order("T3"), 2010)
        .await;
    l.refused(
        &req("topup", "CARD0003").amount("999999999999").order("T4"),
        2010,
    )
    .await;
    l.ok(&req("lock", "CARD0003").order("K1").mgr()).await;
    l.refused(&req("topup", "CARD0003").amount("1").order("T5"), 2003)
        .await;
    assert_eq!(l.card_row("CARD0003").await.balance, d("649.99"));
    l.check_books().await;
}

#[tokio::test]
async fn transfer_between_cards() {
    let l = setup().await;
    l.card("CARDA001", "std", Some("100"), Some("1234")).await;
    l.card("CARDB001", "std", None, None).await;
    let r = l
        .ok(&req("transfer", "CARDA001")
            .amount("30")
            .order("X1")
            .mgr()
            .a2("to", "CARDB001")
            .a2("pin", "1234"))
        .await;
    assert_eq!(r.get("balance"), Some("70.00"));
    assert_eq!(r.get("to_card"), Some("CARDB001"));
    assert_eq!(r.get("to_balance"), Some("30.00"));
    assert_eq!(r.get("charged"), Some("30.00"));
    assert_eq!(l.card_row("CARDB001").await.balance, d("30"));
    let t = |amount: &str, to: &str, pin: &str| {
        req("transfer", "CARDA001")
            .amount(amount)
            .order("X2")
            .mgr()
            .a2("to", to)
            .a2("pin", pin)
    };
    l.refused(&t("1000", "CARDB001", "1234"), 2004).await;
    l.refused(&t("1", "NOPE0001", "1234"), 2001).await;
    l.refused(&t("1", "CARDA001", "1234"), 1001).await;
    l.refused(&t("1", "CARDB001", "9999"), 2009).await;
    l.refused(&t("0", "CARDB001", "1234"), 2010).await;
    l.ok(&req("lock", "CARDB001").order("K1").mgr()).await;
    l.refused(&t("1", "CARDB001", "1234"), 2003).await;
    assert_eq!(l.card_row("CARDA001").await.balance, d("70"));
    // A transfer reversed moves the money back.
    l.ok(&req("unlock", "CARDB001").order("K2").mgr()).await;
    l.ok(&req("reverse", "X1").order("V1").mgr()).await;
    assert_eq!(l.card_row("CARDA001").await.balance, d("100"));
    assert_eq!(l.card_row("CARDB001").await.balance, d("0"));
    l.check_books().await;
}

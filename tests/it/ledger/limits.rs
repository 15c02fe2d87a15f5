//! Limits per level (protocol.md §6.2): a balance cap on money coming in,
//! a daily limit on what debits and outgoing transfers take, both 2016,
//! enforced under the card's lock (concurrent debits cannot pass the limit
//! together); refunds and reverses are never refused by them; `level add`
//! and `level set` with their limits, under the level's MAC.

use futures_util::future::join_all;

use crate::ledger_cli::{cli, out};
use crate::ledger_support::*;
use cardswitch::integrity::LevelLimits;

async fn limit(l: &Ledger, level: &str, max_balance: Option<&str>, daily: Option<&str>) {
    let mut c = l.client().await;
    let tx = c.transaction().await.unwrap();
    let limits = LevelLimits {
        max_balance: max_balance.map(d),
        daily_debit_limit: daily.map(d),
    };
    cardswitch::store::operators::set_level_limits(&tx, &l.env.row_keys, level, |_| limits)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn debits_and_outgoing_transfers_count_toward_the_daily_limit() {
    let l = setup().await;
    limit(&l, "gold", None, Some("100")).await;
    l.card("GOLD0001", "gold", Some("500"), None).await;
    l.card("CARD0002", "std", None, None).await;
    // 5 % off: a sale of 60 takes 57.
    l.ok(&req("debit", "GOLD0001").amount("60").order("D1"))
        .await;
    l.refused(&req("debit", "GOLD0001").amount("50").order("D2"), 2016)
        .await;
    // Cash takes nothing from the balance; a split counts its balance leg.
    l.ok(&req("debit", "GOLD0001")
        .amount("50")
        .order("D3")
        .a2("tender", "cash"))
        .await;
    let split = req("debit", "GOLD0001")
        .amount("50")
        .order("D4")
        .a2("tender", "split")
        .a2("cash", "45");
    l.ok(&split).await;
    // 57 + 2.50 spent: a transfer of 40.51 would pass 100, one of 40 not.
    let t = |amount: &str, order: &str| {
        req("transfer", "GOLD0001")
            .amount(amount)
            .order(order)
            .mgr()
            .a2("to", "CARD0002")
    };
    l.refused(&t("40.51", "X1"), 2016).await;
    l.ok(&t("40", "X2")).await;
    // A reverse gives its debit back to the day's limit; a refund does not.
    l.ok(&req("reverse", "D1").order("V1").mgr()).await;
    l.ok(&req("debit", "GOLD0001").amount("60").order("D5"))
        .await;
    l.ok(&req("refund", "D5").amount("57").order("F1").mgr())
        .await;
    l.refused(&req("debit", "GOLD0001").amount("1").order("D6"), 2016)
        .await;
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE card_no = 'GOLD0001' AND spent_today = 99.50")
            .await,
        1
    );
    l.check_books().await;
}

#[tokio::test]
async fn the_cap_refuses_money_coming_in_but_never_a_refund() {
    let l = setup().await;
    limit(&l, "std", Some("100"), None).await;
    l.card("CARD0001", "std", Some("80"), None).await;
    l.refused(&req("topup", "CARD0001").amount("20.01").order("T1"), 2016)
        .await;
    l.ok(&req("topup", "CARD0001").amount("20").order("T2"))
        .await;
    l.card("GOLD0002", "gold", Some("50"), None).await;
    let into = req("transfer", "GOLD0002")
        .amount("1")
        .order("X1")
        .mgr()
        .a2("to", "CARD0001");
    l.refused(&into, 2016).await;
    l.ok(&req("debit", "CARD0001").amount("10").order("D1"))
        .await;
    l.ok(&req("topup", "CARD0001").amount("10").order("T3"))
        .await;
    // Back to the balance it came from, past the cap.
    let f = l
        .ok(&req("refund", "D1").amount("10").order("F1").mgr())
        .await;
    assert_eq!(f.get("balance"), Some("110.00"));
    l.check_books().await;
}

#[tokio::test]
async fn concurrent_debits_cannot_pass_the_daily_limit_together() {
    let l = setup().await;
    limit(&l, "std", None, Some("100")).await;
    l.card("CARD0001", "std", Some("1000"), None).await;
    let sends = (0..24).map(|i| {
        let r = req("debit", "CARD0001")
            .amount("10")
            .order(&format!("C{i}"));
        let l = &l;
        async move { l.send(&r).await.map(|_| ()).map_err(|e| e.errno().code()) }
    });
    let outcomes = join_all(sends).await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(ok, 10, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(o, Ok(()) | Err(2016))),
        "{outcomes:?}"
    );
    assert_eq!(l.card_row("CARD0001").await.balance, d("900"));
    l.check_books().await;
}

#[tokio::test]
async fn level_limits_are_set_by_the_cli_and_covered_by_the_levels_mac() {
    let l = setup().await;
    let keys = l.config.keys_dir.clone();
    let o = cli(
        &l.url,
        &keys,
        &[
            "level",
            "add",
            "silver",
            "--discount",
            "0.9",
            "--points-rate",
            "1",
            "--max-balance",
            "300",
            "--daily-debit-limit",
            "50",
        ],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let o = cli(
        &l.url,
        &keys,
        &["level", "set", "silver", "--daily-debit-limit", "none"],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let listed = out(&cli(&l.url, &keys, &["level", "list"], None));
    assert!(
        listed.contains(
            "silver\tdiscount=0.9\tpoints_rate=1\tmax_balance=300\tdaily_debit_limit=none"
        ),
        "{listed}"
    );
    l.card("SILV0001", "silver", Some("300"), None).await;
    l.refused(&req("topup", "SILV0001").amount("1").order("T1"), 2016)
        .await;
    // The daily limit is gone: 270 in one day.
    l.ok(&req("debit", "SILV0001").amount("300").order("D1"))
        .await;
    // A limit lifted by SQL alone fails the level's MAC.
    let c = l.client().await;
    c.execute(
        "UPDATE levels SET max_balance = NULL WHERE level = 'silver'",
        &[],
    )
    .await
    .unwrap();
    l.refused(&req("topup", "SILV0001").amount("1").order("T2"), 3001)
        .await;
}

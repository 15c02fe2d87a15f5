//! The `orders` rows changed by SQL (issue 12): what a replay answers, what
//! decides between a replay and 2006, and what a refund may still give back
//! are all under the row's MAC — found by `verify` and refused (3001) on
//! use, audited, nothing changed.

use crate::ledger_support::*;

use super::{assert_clean, assert_found, busy_card, exec, tampered_audits};

#[tokio::test]
async fn a_stored_answer_changed_by_sql_is_never_replayed() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let debit = req("debit", "CARD0001").amount("30").order("D-CARD0001");
    // The replay answers as the ledger wrote it.
    let r = l.ok(&debit).await;
    assert_eq!(r.get("replayed"), Some("1"));
    assert_clean(&l).await;
    exec(
        &l,
        "UPDATE orders SET answer = replace(answer::text, '\"70.00\"', '\"1000.00\"')::jsonb
          WHERE order_no = 'D-CARD0001'",
    )
    .await;
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE answer::text LIKE '%1000.00%'")
            .await,
        1
    );
    assert_found(&l, "orders", "", "mac").await;
    let audits = tampered_audits(&l).await;
    l.refused(&debit, 3001).await;
    assert_eq!(tampered_audits(&l).await, audits + 1, "3001 not audited");
}

#[tokio::test]
async fn a_digest_changed_by_sql_is_refused_not_answered_2006() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    exec(
        &l,
        "UPDATE orders SET digest = sha256('another request'::bytea) WHERE order_no = 'D-CARD0001'",
    )
    .await;
    l.refused(
        &req("debit", "CARD0001").amount("30").order("D-CARD0001"),
        3001,
    )
    .await;
}

#[tokio::test]
async fn a_refund_counter_reset_by_sql_gives_nothing_back_twice() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("refund", "D-CARD0001").amount("30").order("R1").mgr())
        .await;
    // A re-MACed original verifies: the refund wrote its new counters' MAC.
    assert_clean(&l).await;
    exec(
        &l,
        "UPDATE orders SET refunded = 0 WHERE order_no = 'D-CARD0001'",
    )
    .await;
    assert_found(&l, "orders", "", "mac").await;
    let before = l.card_row("CARD0001").await;
    l.refused(
        &req("refund", "D-CARD0001").amount("30").order("R2").mgr(),
        3001,
    )
    .await;
    assert_eq!(l.card_row("CARD0001").await, before);
}

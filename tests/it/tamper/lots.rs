//! Points lots changed by SQL (issue 12): points moved between a card's
//! lots, or a lot's expiry pushed back, keep the card's total — only the
//! lots' MACs show it; a lot deleted does not. Found by `verify`; refused
//! (3001) by the next posting that reads the lots, nothing changed (an op
//! that reads none, a debit, relies on none: issue 14).

use crate::ledger_support::*;

use super::{assert_clean, assert_found, busy_card, exec, tampered_audits};

/// A redemption of more than either lot holds (so it spends from both) is
/// refused 3001 and audited; the card is as it was.
async fn spending_refused(l: &Ledger) {
    let before = l.card_row("CARD0001").await;
    let audits = tampered_audits(l).await;
    let redeem = req("redeem", "CARD0001")
        .order("RD2")
        .a2("cost", "35")
        .a2("gift", "pen");
    l.refused(&redeem, 3001).await;
    assert_eq!(l.card_row("CARD0001").await, before);
    assert_eq!(tampered_audits(l).await, audits + 1, "3001 not audited");
}

async fn two_lots(l: &Ledger) -> (i64, i64) {
    busy_card(l, "CARD0001").await;
    l.ok(&req("debit", "CARD0001").amount("20").order("D2"))
        .await;
    assert_clean(l).await;
    let c = l.client().await;
    let ids = c
        .query(
            "SELECT lot_id FROM lots WHERE card_no = 'CARD0001' ORDER BY lot_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2, "a lot per debit");
    (ids[0].get(0), ids[1].get(0))
}

#[tokio::test]
async fn points_moved_between_lots_are_found_and_refused() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(12)).await;
    let (a, b) = two_lots(&l).await;
    // Room in the older lot: a redemption takes from it first.
    l.ok(&req("redeem", "CARD0001")
        .order("RD1")
        .a2("cost", "10")
        .a2("gift", "mug"))
        .await;
    assert_clean(&l).await;
    exec(
        &l,
        &format!(
            "UPDATE lots SET points_left = points_left + 5 WHERE lot_id = {a};
             UPDATE lots SET points_left = points_left - 5 WHERE lot_id = {b};"
        ),
    )
    .await;
    assert_found(&l, "lots", &a.to_string(), "mac").await;
    spending_refused(&l).await;
}

#[tokio::test]
async fn an_expiry_pushed_back_is_found_and_refused() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(12)).await;
    let (a, _) = two_lots(&l).await;
    exec(
        &l,
        &format!(
            "UPDATE lots SET expires_at = expires_at + interval '10 years' WHERE lot_id = {a}"
        ),
    )
    .await;
    assert_found(&l, "lots", &a.to_string(), "mac").await;
    spending_refused(&l).await;
}

#[tokio::test]
async fn a_deleted_lot_is_found_and_refused_by_the_next_op_that_reads_the_lots() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(12)).await;
    let (a, _) = two_lots(&l).await;
    exec(&l, &format!("DELETE FROM lots WHERE lot_id = {a}")).await;
    assert_found(&l, "cards", "CARD0001", "lots").await;
    spending_refused(&l).await;
}

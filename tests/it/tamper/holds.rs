//! Holds changed by SQL (issue 15): a hold's order keeps its terms and
//! whether it was released under the order's MAC, and the card keeps what
//! its holds keep under the card's; a hold released, reopened or made
//! bigger by SQL is found by `verify` and refused (3001) on use, nothing
//! changed.

use crate::ledger_support::*;

use super::{assert_clean, assert_found, exec};

async fn held_card(l: &Ledger) {
    l.card("CARD0001", "std", Some("100"), None).await;
    l.ok(&req("hold", "CARD0001").amount("60").order("H1"))
        .await;
    assert_clean(l).await;
}

#[tokio::test]
async fn a_hold_released_by_sql_frees_nothing() {
    let l = setup().await;
    held_card(&l).await;
    // Marked released without its MAC: the money it keeps is not spendable.
    exec(
        &l,
        "UPDATE orders SET reversed = true WHERE order_no = 'H1'",
    )
    .await;
    assert_found(&l, "cards", "", "held").await;
    let before = l.card_row("CARD0001").await;
    l.refused(&req("debit", "CARD0001").amount("50").order("D1"), 3001)
        .await;
    assert_eq!(l.card_row("CARD0001").await, before);
}

#[tokio::test]
async fn a_holds_terms_or_the_cards_held_changed_by_sql_are_refused() {
    let l = setup().await;
    held_card(&l).await;
    exec(
        &l,
        "UPDATE orders SET hold_discount = 0.5 WHERE order_no = 'H1'",
    )
    .await;
    assert_found(&l, "orders", "", "mac").await;
    l.refused(&req("capture", "H1").amount("60").order("C1"), 3001)
        .await;
    let l = setup().await;
    held_card(&l).await;
    exec(&l, "UPDATE cards SET held = 0 WHERE card_no = 'CARD0001'").await;
    assert_found(&l, "cards", "", "mac").await;
    l.refused(&req("debit", "CARD0001").amount("50").order("D1"), 3001)
        .await;
}

//! Card rows changed by SQL (balance, points, status, a MAC or a sealed copy
//! taken from another card): found by `verify`, refused (3001) by the next
//! posting, and repaired when the sealed copy and the postings chain agree.

use crate::ledger_support::*;

use super::{assert_clean, assert_found, busy_card, exec, next_posting_refused, verify_report};

async fn repaired_exactly(l: &Ledger, no: &str, was: CardSnapshot) {
    let r = verify_report(l, true).await;
    assert!(
        r.repaired.iter().any(|x| x.table == "cards" && x.key == no),
        "not repaired: {r:#?}"
    );
    assert_eq!(l.card_row(no).await, was, "repair did not restore the card");
    assert_eq!(
        l.count("SELECT count(*) FROM audit WHERE kind = 'verify.repair'")
            .await,
        1
    );
    assert_clean(l).await;
    l.ok(&req("topup", no).amount("1").order(&format!("after-{no}")))
        .await;
    assert_clean(l).await;
}

#[tokio::test]
async fn a_balance_changed_by_sql_is_found_refused_and_repaired() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let was = l.card_row("CARD0001").await;
    exec(
        &l,
        "UPDATE cards SET balance = balance + 1000 WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    assert_found(&l, "cards", "CARD0001", "balance").await;
    next_posting_refused(&l, "CARD0001").await;
    repaired_exactly(&l, "CARD0001", was).await;
}

#[tokio::test]
async fn points_changed_by_sql_are_found_refused_and_repaired() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let was = l.card_row("CARD0001").await;
    assert_eq!(was.points, 30);
    exec(
        &l,
        "UPDATE cards SET points = 5000 WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    assert_found(&l, "cards", "CARD0001", "points").await;
    assert_found(&l, "cards", "CARD0001", "lots").await;
    next_posting_refused(&l, "CARD0001").await;
    repaired_exactly(&l, "CARD0001", was).await;
}

#[tokio::test]
async fn a_status_changed_by_sql_is_found_refused_and_repaired() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("lost", "CARD0001").order("L1").mgr()).await;
    let was = l.card_row("CARD0001").await;
    assert_eq!(was.status, "lost");
    exec(
        &l,
        "UPDATE cards SET status = 'active' WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    next_posting_refused(&l, "CARD0001").await;
    let r = verify_report(&l, true).await;
    assert_eq!(r.repaired.len(), 1);
    assert_eq!(l.card_row("CARD0001").await, was);
    assert_clean(&l).await;
    // Lost again, as it should be.
    l.refused(&req("topup", "CARD0001").amount("1").order("Y1"), 2002)
        .await;
}

#[tokio::test]
async fn a_mac_copied_onto_another_row_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    l.ok(&req("topup", "CARD0002").amount("900").order("T9"))
        .await;
    let was = l.card_row("CARD0001").await;
    // The richer card's MAC, sealed copy and values onto the poorer one.
    exec(
        &l,
        "UPDATE cards c SET balance = o.balance, row_mac = o.row_mac, sealed = o.sealed
           FROM cards o WHERE c.card_no = 'CARD0001' AND o.card_no = 'CARD0002'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    assert_found(&l, "cards", "CARD0001", "sealed").await;
    next_posting_refused(&l, "CARD0001").await;
    // Its own sealed copy is gone: not repaired, still reported.
    let r = verify_report(&l, true).await;
    assert!(r.repaired.is_empty());
    assert_ne!(l.card_row("CARD0001").await, was);

    // Only the MAC copied: the values are genuine, so repair re-MACs them.
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    let was = l.card_row("CARD0001").await;
    exec(
        &l,
        "UPDATE cards c SET row_mac = o.row_mac
           FROM cards o WHERE c.card_no = 'CARD0001' AND o.card_no = 'CARD0002'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    next_posting_refused(&l, "CARD0001").await;
    repaired_exactly(&l, "CARD0001", was).await;
}

#[tokio::test]
async fn a_changed_sealed_copy_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    exec(
        &l,
        "UPDATE cards SET sealed = overlay(sealed PLACING '\\xff'::bytea FROM 20 FOR 1)
          WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "sealed").await;
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn a_card_naming_a_row_key_that_does_not_exist_is_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    // A key id no rotation ever made: the ledger loads the row keys once
    // more, still does not know it, and refuses 3001 with nothing changed.
    exec(
        &l,
        "UPDATE cards SET mac_key_id = 'ffffffffffffffff' WHERE card_no = 'CARD0001'",
    )
    .await;
    next_posting_refused(&l, "CARD0001").await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
}

#[tokio::test]
async fn a_cards_store_changed_by_sql_is_found_and_set_back() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    assert_clean(&l).await;
    // Moving a card's liability to another store: not MAC-covered (it is
    // derived), so verify checks it against the card's first posting.
    exec(
        &l,
        "UPDATE cards SET store_id = 'S2' WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "store").await;
    verify_report(&l, true).await;
    assert_clean(&l).await;
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE store_id = 'S1'")
            .await,
        1
    );
}

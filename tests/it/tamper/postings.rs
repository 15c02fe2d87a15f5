//! The postings chain changed by SQL (a posting deleted, forged or with
//! amounts swapped): found by `verify` and refused (3001) by the card's next
//! posting.

use crate::ledger_support::*;

use super::{assert_found, busy_card, exec, next_posting_refused, verify_report};

#[tokio::test]
async fn a_deleted_posting_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    // The top-up, in the middle of the chain.
    exec(
        &l,
        "DELETE FROM postings WHERE card_no = 'CARD0001' AND op = 'topup'",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    assert_found(&l, "cards", "CARD0001", "balance").await;
    next_posting_refused(&l, "CARD0001").await;
    // The sealed copy agrees with the card, not with the postings: no repair.
    let r = verify_report(&l, true).await;
    assert!(r.repaired.is_empty());
}

#[tokio::test]
async fn a_forged_posting_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    // A copy of the top-up, with its MAC, as a new posting at the end.
    exec(
        &l,
        "INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta,
                points_delta, balance, points, amount, discount, charged, business_day,
                posted_at, row_mac, mac_key_id)
         SELECT txn_id, card_no, terminal_id, order_no, op, balance_delta, points_delta,
                balance + balance_delta, points, amount, discount, charged, business_day,
                now(), row_mac, mac_key_id
           FROM postings WHERE card_no = 'CARD0001' AND op = 'topup'",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn swapped_posting_amounts_are_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("topup", "CARD0001").amount("7").order("T2"))
        .await;
    // Swap the amounts of the debit and the last top-up.
    exec(
        &l,
        "WITH a AS (SELECT posting_id, amount FROM postings WHERE card_no = 'CARD0001'
                     AND op = 'debit'),
              b AS (SELECT posting_id, amount FROM postings WHERE card_no = 'CARD0001'
                     AND order_no = 'T2')
         UPDATE postings p SET amount = CASE WHEN p.posting_id = (SELECT posting_id FROM a)
                                             THEN (SELECT amount FROM b)
                                             ELSE (SELECT amount FROM a) END
          WHERE p.posting_id IN ((SELECT posting_id FROM a), (SELECT posting_id FROM b))",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

/// The posting before the last reaches a posting's checks by its MAC alone,
/// the MAC the last one chains to: that MAC changed is refused on use.
#[tokio::test]
async fn the_mac_of_the_posting_before_the_last_changed_is_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    exec(
        &l,
        "UPDATE postings SET row_mac = sha256(row_mac)
          WHERE posting_id = (SELECT posting_id FROM postings WHERE card_no = 'CARD0001'
                               ORDER BY posting_id DESC OFFSET 1 LIMIT 1)",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

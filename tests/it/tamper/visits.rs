//! Count-card visits changed by SQL (issue 15): a lot of visits is a lot
//! under a row MAC that covers its service, the card keeps its visits under
//! its own MAC, and each posting its visits under the chain. Visits moved
//! to another service, added to a lot, or a lot deleted are found by
//! `verify` and refused (3001) on use, nothing changed.

use crate::ledger_support::*;

use super::{assert_clean, assert_found, exec};

async fn card_with_visits(l: &Ledger) -> i64 {
    l.card("CARD0001", "std", Some("100"), None).await;
    l.ok(&req("visits_add", "CARD0001")
        .amount("30")
        .a2("service", "swim")
        .a2("count", "3")
        .order("V1"))
        .await;
    assert_clean(l).await;
    l.count("SELECT lot_id FROM lots WHERE card_no = 'CARD0001' AND service = 'swim'")
        .await
}

async fn visit_refused(l: &Ledger, service: &str) {
    let before = l.card_row("CARD0001").await;
    let visits =
        "SELECT coalesce(sum(points_left), 0)::bigint FROM lots WHERE card_no = 'CARD0001'";
    let left = l.count(visits).await;
    l.refused(
        &req("visit", "CARD0001").a2("service", service).order("U9"),
        3001,
    )
    .await;
    assert_eq!(l.card_row("CARD0001").await, before);
    assert_eq!(l.count(visits).await, left);
}

#[tokio::test]
async fn visits_moved_to_another_service_are_found_and_refused() {
    let l = setup().await;
    let lot = card_with_visits(&l).await;
    exec(
        &l,
        &format!("UPDATE lots SET service = 'gym' WHERE lot_id = {lot}"),
    )
    .await;
    assert_found(&l, "lots", &lot.to_string(), "mac").await;
    visit_refused(&l, "gym").await;
}

#[tokio::test]
async fn visits_added_or_a_lot_deleted_by_sql_are_refused() {
    let l = setup().await;
    let lot = card_with_visits(&l).await;
    // More visits in the lot than the card (and its postings) say.
    exec(
        &l,
        &format!("UPDATE lots SET points_left = 9, points = 9 WHERE lot_id = {lot}"),
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "visits").await;
    visit_refused(&l, "swim").await;
    let l = setup().await;
    let lot = card_with_visits(&l).await;
    exec(&l, &format!("DELETE FROM lots WHERE lot_id = {lot}")).await;
    assert_found(&l, "cards", "CARD0001", "visits").await;
    visit_refused(&l, "swim").await;
    // The card's own count changed: its MAC shows it.
    let l = setup().await;
    card_with_visits(&l).await;
    exec(
        &l,
        "UPDATE cards SET visits = 30 WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    visit_refused(&l, "swim").await;
}

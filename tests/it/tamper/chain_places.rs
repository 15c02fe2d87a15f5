//! Each posting's place in its card's chain (migration 0016, issue 14): a
//! posting's checks read the chain's last two rows and trust the last one's
//! place, under its MAC, instead of counting the card's postings; chains
//! from before places are counted until a row-key rotation gives them
//! their places.

use cardswitch::store::protected::{card_values, posting_values, CARD_COLUMNS, POSTING_COLUMNS};

use super::*;

/// Each card's postings' places, in posting order.
async fn places(l: &Ledger, card: &str) -> Vec<Option<i64>> {
    let c = l.client().await;
    c.query(
        "SELECT chain_pos FROM postings WHERE card_no = $1 ORDER BY posting_id",
        &[&card],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Card CARD0001's last posting, as a `WHERE` clause.
const LAST_OF_CARD0001: &str = "card_no = 'CARD0001'
    AND posting_id = (SELECT max(posting_id) FROM postings WHERE card_no = 'CARD0001')";

#[tokio::test]
async fn every_posting_is_placed_one_after_the_one_before() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.card("CARD0002", "std", Some("5"), None).await;
    l.ok(&req("transfer", "CARD0001")
        .amount("10")
        .order("TR1")
        .mgr()
        .a2("to", "CARD0002"))
        .await;
    assert_eq!(places(&l, "CARD0001").await, [1, 2, 3, 4].map(Some));
    assert_eq!(places(&l, "CARD0002").await, [1, 2, 3].map(Some));
    assert_clean(&l).await;
}

#[tokio::test]
async fn the_last_postings_place_is_under_its_mac() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let sql = format!("UPDATE postings SET chain_pos = NULL WHERE {LAST_OF_CARD0001}");
    exec(&l, &sql).await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn the_last_posting_deleted_is_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    exec(
        &l,
        &format!("DELETE FROM postings WHERE {LAST_OF_CARD0001}"),
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

/// The trade: a posting deleted deeper than the last two is not seen by the
/// next posting (it reads no more than two), only by `verify`, which walks
/// every chain whole.
#[tokio::test]
async fn a_posting_deleted_deep_in_the_chain_is_found_by_verify() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("topup", "CARD0001").amount("5").order("T2"))
        .await;
    exec(
        &l,
        "DELETE FROM postings WHERE card_no = 'CARD0001' AND op = 'register'",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
}

/// Rewrites card `no`'s chain as a database from before migration 0016 has
/// it: no places, each MAC over the placeless image, the card ending there.
async fn make_placeless(l: &Ledger, no: &str) {
    let keys = &l.env.row_keys;
    let c = l.client().await;
    let ps = c
        .query(
            &format!(
                "SELECT {POSTING_COLUMNS} FROM postings WHERE card_no = $1 ORDER BY posting_id"
            ),
            &[&no],
        )
        .await
        .unwrap();
    let mut head: Option<Vec<u8>> = None;
    for p in &ps {
        let v = posting_values(p);
        let v = cardswitch::integrity::PostingValues {
            chain_pos: None,
            ..v
        };
        let mac = keys.mac(&v.image(), head.as_deref());
        let id: i64 = p.get(16);
        c.execute(
            "UPDATE postings SET chain_pos = NULL, row_mac = $2 WHERE posting_id = $1",
            &[&id, &mac],
        )
        .await
        .unwrap();
        head = Some(mac);
    }
    let card = c
        .query_one(
            &format!("SELECT {CARD_COLUMNS} FROM cards c WHERE c.card_no = $1"),
            &[&no],
        )
        .await
        .unwrap();
    let mut v = card_values(&card);
    v.last_mac = head;
    let img = v.image();
    c.execute(
        "UPDATE cards SET last_mac = $2, row_mac = $3, sealed = $4 WHERE card_no = $1",
        &[&no, &v.last_mac, &keys.mac(&img, None), &keys.seal(&img)],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_chain_without_places_is_counted_until_a_rotation_places_it() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    make_placeless(&l, "CARD0001").await;
    make_placeless(&l, "CARD0002").await;
    assert_clean(&l).await;
    // Counted: a posting goes on where the count says, placed.
    l.ok(&req("topup", "CARD0001").amount("1").order("P1"))
        .await;
    assert_eq!(places(&l, "CARD0001").await, [None, None, None, Some(4)]);
    assert_clean(&l).await;
    // Counted, so a deleted first posting is refused while the chain ends
    // in a placeless posting.
    exec(
        &l,
        "DELETE FROM postings WHERE card_no = 'CARD0002' AND op = 'register'",
    )
    .await;
    next_posting_refused(&l, "CARD0002").await;
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert!(r.refused.iter().any(|x| x == "cards CARD0002"), "{r:?}");
    assert_eq!(places(&l, "CARD0001").await, [1, 2, 3, 4].map(Some));
    l.ok(&req("debit", "CARD0001").amount("1").order("P2"))
        .await;
    assert_eq!(places(&l, "CARD0001").await, [1, 2, 3, 4, 5].map(Some));
}

//! Validity of the membership, never of the money (protocol.md §6.2): with
//! `business.card_validity_days` set, a card lapses that many days after its
//! registration or last top-up; a lapsed card still pays from its balance,
//! at no discount and earning nothing, cannot redeem (2015), and a top-up
//! renews it. `query` shows `expires_at`; `report expiring` lists the cards
//! about to lapse.

use std::process::Command;

use cardswitch::protocol::xml::Row;
use cardswitch::store::protected::{card_values, CARD_COLUMNS};

use crate::ledger_support::*;

const DAY_MS: i64 = 86_400_000;

async fn setup_days(days: u32) -> Ledger {
    setup_with(|c| c.business.card_validity_days = days).await
}

/// Moves the card's last renewal `days` back, as time passing would, its
/// MAC and sealed copy written anew (an UPDATE alone is tampering).
async fn age_membership(l: &Ledger, card: &str, days: i64) {
    let mut c = l.client().await;
    let tx = c.transaction().await.unwrap();
    let r = tx
        .query_one(
            &format!(
                "UPDATE cards c SET renewed_at = coalesce(c.renewed_at, c.opened_at)
                                    - $2::bigint * interval '24 hours'
                  WHERE card_no = $1 RETURNING {CARD_COLUMNS}"
            ),
            &[&card, &days],
        )
        .await
        .unwrap();
    let img = card_values(&r).image();
    let (mac, kid) = l.env.row_keys.mac_with_id(&img, None);
    let sealed = l.env.row_keys.seal(&img);
    tx.execute(
        "UPDATE cards SET row_mac = $2, mac_key_id = $3, sealed = $4 WHERE card_no = $1",
        &[&card, &mac, &kid, &sealed],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn expires_at(l: &Ledger, card: &str) -> i64 {
    let q: Row = l.ok(&req("query", card)).await;
    q.get("expires_at")
        .expect("a card with validity shows it")
        .parse()
        .unwrap()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn a_lapsed_card_pays_at_no_discount_cannot_redeem_and_a_top_up_renews_it() {
    let l = setup_days(30).await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    let left = expires_at(&l, "GOLD0001").await - now_ms();
    assert!((29 * DAY_MS..=30 * DAY_MS).contains(&left), "{left}");
    let live = l
        .ok(&req("debit", "GOLD0001").amount("10").order("D1"))
        .await;
    assert_eq!(
        (live.get("discount"), live.get("points_delta")),
        (Some("0.50"), Some("19"))
    );

    age_membership(&l, "GOLD0001", 31).await;
    assert!(expires_at(&l, "GOLD0001").await < now_ms());
    let lapsed = l
        .ok(&req("debit", "GOLD0001").amount("10").order("D2"))
        .await;
    assert_eq!(lapsed.get("discount"), Some("0.00"));
    assert_eq!(lapsed.get("charged"), Some("10.00"));
    assert_eq!(lapsed.get("points_delta"), Some("0"));
    assert_eq!(lapsed.get("balance"), Some("80.50"));
    let redeem = req("redeem", "GOLD0001")
        .order("R1")
        .a2("cost", "5")
        .a2("gift", "mug");
    l.refused(&redeem, 2015).await;
    assert_eq!(l.card_row("GOLD0001").await.points, 19);

    // A top-up renews it: the level's price again, and the redemption.
    l.ok(&req("topup", "GOLD0001").amount("10").order("T1"))
        .await;
    let left = expires_at(&l, "GOLD0001").await - now_ms();
    assert!((29 * DAY_MS..=30 * DAY_MS).contains(&left), "{left}");
    let again = l
        .ok(&req("debit", "GOLD0001").amount("10").order("D3"))
        .await;
    assert_eq!(again.get("discount"), Some("0.50"));
    l.ok(&redeem).await;
    l.check_books().await;
}

#[tokio::test]
async fn without_validity_a_card_never_lapses_and_query_shows_no_expiry() {
    let l = setup_days(0).await;
    l.card("GOLD0001", "gold", Some("10"), None).await;
    age_membership(&l, "GOLD0001", 4000).await;
    let q = l.ok(&req("query", "GOLD0001")).await;
    assert_eq!(q.get("expires_at"), None);
    let d = l
        .ok(&req("debit", "GOLD0001").amount("2").order("D1"))
        .await;
    assert_eq!(d.get("discount"), Some("0.10"));
}

/// A card with a balance written as before migration 0019: no renewal stored.
async fn old_card(l: &Ledger, card: &str) {
    let c = l.client().await;
    let keys = &l.env.row_keys;
    cardswitch::store::fixtures::cards::insert_fixture(&c, keys, card, "std", d("5"))
        .await
        .unwrap();
}

async fn verify_clean(l: &Ledger) {
    let v = cardswitch::store::verify::verify(&l.pool, &l.env.row_keys, Default::default())
        .await
        .unwrap();
    assert!(v.clean(), "{:#?}", v.findings);
}

#[tokio::test]
async fn a_replacement_card_keeps_the_membership_and_an_old_card_gets_one_stored() {
    let l = setup_days(30).await;
    l.card("CARD0001", "std", Some("10"), None).await;
    age_membership(&l, "CARD0001", 31).await;
    let before = expires_at(&l, "CARD0001").await;
    l.ok(&req("replace", "CARD0001")
        .order("P1")
        .mgr()
        .a2("new", "CARD0002"))
        .await;
    assert_eq!(expires_at(&l, "CARD0002").await, before, "still lapsed");
    verify_clean(&l).await;

    // A card from before migration 0019 (no renewal stored) runs from its
    // opening, and has it stored under its MAC by its next posting (which
    // the next read checks). A fixture card has a balance without postings,
    // which `verify` would report: it is checked above, before this one.
    old_card(&l, "OLDC0001").await;
    let first = expires_at(&l, "OLDC0001").await;
    assert!(first > now_ms() + 29 * DAY_MS);
    l.ok(&req("debit", "OLDC0001").amount("1").order("D1"))
        .await;
    let stored = l
        .count("SELECT count(*) FROM cards WHERE card_no = 'OLDC0001' AND renewed_at IS NOT NULL")
        .await;
    assert_eq!(stored, 1);
    assert_eq!(expires_at(&l, "OLDC0001").await, first);
}

#[tokio::test]
async fn report_expiring_lists_the_cards_about_to_lapse_soonest_first() {
    let l = setup_days(30).await;
    for (card, aged) in [
        ("SOON0001", 27),
        ("SOON0002", 25),
        ("LATE0001", 10),
        ("GONE0001", 31),
    ] {
        l.card(card, "std", None, None).await;
        age_membership(&l, card, aged).await;
    }
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[business]\ncard_validity_days = 30\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .arg("--config")
        .arg(cfg.path())
        .arg("--database-url")
        .arg(&l.url)
        .arg("--keys-dir")
        .arg(&l.config.keys_dir)
        .args(["report", "expiring", "--days", "7", "--format", "csv"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cards: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(cards, ["SOON0001", "SOON0002"], "{text}");
    assert!(text.contains("13800001234"), "phones in full: {text}");
}

#[tokio::test]
async fn a_membership_renewed_by_sql_alone_is_tampering() {
    let l = setup_days(30).await;
    l.card("CARD0001", "std", Some("10"), None).await;
    age_membership(&l, "CARD0001", 31).await;
    let c = l.client().await;
    c.execute(
        "UPDATE cards SET renewed_at = now() WHERE card_no = 'CARD0001'",
        &[],
    )
    .await
    .unwrap();
    l.refused(&req("query", "CARD0001"), 3001).await;
    l.refused(&req("debit", "CARD0001").amount("1").order("D1"), 3001)
        .await;
}

//! Tamper evidence (issue 5): each change an attacker with SQL access could
//! make is found by `verify` and refused (3001) by the next posting that
//! relies on the row; repair restores what the sealed copies and the
//! postings chain agree on; key rotation keeps `verify` clean. One module
//! per kind of row; the helpers below (`verify` run on the ledger, the next
//! posting refused, a card with postings) serve all of them but `key_rows`,
//! which runs a daemon and has its own.

mod audit;
mod cards;
mod chain_places;
mod holds;
mod key_rows;
mod lots;
mod orders;
mod postings;
mod reference_rows;
mod rotations;
mod verify;
mod visits;

use cardswitch::store::verify::{Options, Report};

use crate::ledger_support::*;

pub(crate) async fn verify_report(l: &Ledger, repair: bool) -> Report {
    // Keys made by a rotation since (as `cardswitch verify` would load them).
    cardswitch::keys::refresh_row_keys(&l.client().await, &l.config.keys_dir, &l.env.row_keys)
        .await
        .unwrap();
    cardswitch::store::verify::verify(
        &l.pool,
        &l.env.row_keys,
        Options {
            repair,
            progress: false,
        },
    )
    .await
    .expect("verify runs")
}

pub(crate) async fn assert_clean(l: &Ledger) {
    let r = verify_report(l, false).await;
    assert!(r.clean(), "verify found {:#?}", r.findings);
}

/// `verify` finds `check` on `table`/`key`.
pub(super) async fn assert_found(l: &Ledger, table: &str, key_prefix: &str, check: &str) -> Report {
    let r = verify_report(l, false).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.table == table && f.key.starts_with(key_prefix) && f.check == check),
        "no {table} {key_prefix} {check} in {:#?}",
        r.findings
    );
    r
}

pub(super) async fn exec(l: &Ledger, sql: &str) {
    l.client().await.batch_execute(sql).await.unwrap();
}

pub(super) async fn tampered_audits(l: &Ledger) -> i64 {
    l.count("SELECT count(*) FROM audit WHERE kind = 'integrity.tampered'")
        .await
}

/// The next posting on `card` is refused with 3001, changes nothing and is
/// audited.
pub(super) async fn next_posting_refused(l: &Ledger, card: &str) {
    let before = l.card_row(card).await;
    let postings = l
        .count(&format!(
            "SELECT count(*) FROM postings WHERE card_no = '{card}'"
        ))
        .await;
    let audits = tampered_audits(l).await;
    let order = format!("X-{}", l.next_ts());
    l.refused(&req("topup", card).amount("1").order(&order), 3001)
        .await;
    assert_eq!(l.card_row(card).await, before, "a 3001 changed the card");
    assert_eq!(
        l.count(&format!(
            "SELECT count(*) FROM postings WHERE card_no = '{card}'"
        ))
        .await,
        postings
    );
    assert_eq!(
        l.count(&format!(
            "SELECT count(*) FROM orders WHERE order_no = '{order}'"
        ))
        .await,
        0,
        "the order claim was rolled back"
    );
    assert_eq!(tampered_audits(l).await, audits + 1, "3001 not audited");
}

/// A card with a few postings: register, top-up 100, debit 30 (30 points).
pub(super) async fn busy_card(l: &Ledger, no: &str) {
    l.card(no, "std", Some("100"), None).await;
    l.ok(&req("debit", no).amount("30").order(&format!("D-{no}")))
        .await;
}

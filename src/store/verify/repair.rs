//! `verify --repair`: a card restored from its sealed copy when that copy
//! agrees with the verified chain, audited.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;

use super::{CardScan, Repair, Report};
use crate::integrity::{CardValues, RowKeys};

fn card_json(v: &CardValues) -> serde_json::Value {
    serde_json::json!({
        "status": v.status, "balance": v.balance.to_string(), "points": v.points,
        "pin_set": v.pin_hash.is_some(), "pin_fail_count": v.pin_fail_count,
        "chain_len": v.chain_len,
    })
}

/// Restores each card whose sealed copy is intact and agrees with its
/// postings chain (intact, same length, same last MAC, same sums, points in
/// its lots); audits each restore. A card changed since the scan is left.
pub(super) async fn repair(
    pool: &Pool,
    keys: &RowKeys,
    report: &mut Report,
    scans: &BTreeMap<String, CardScan>,
) -> anyhow::Result<()> {
    for (no, s) in scans {
        if let Some(store) = &s.issued_at {
            set_issued_store(pool, no, store.as_deref()).await?;
        }
        let Some(sealed) = &s.sealed else { continue };
        let agrees = s.chain_ok
            && sealed.chain_len == s.postings
            && sealed.last_mac == s.head
            && sealed.balance == s.balance_sum
            && sealed.points == s.points_sum
            && sealed.points == s.live_lots;
        // Values equal to the sealed copy with only the MAC wrong (a MAC
        // copied from another row) are restored too: the MAC is rewritten.
        if !agrees {
            continue;
        }
        let img = sealed.image();
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE cards SET member_id = $2, status = $3, balance = $4, points = $5,
                        pin_hash = $6, pin_salt = $7, pin_fail_count = $8, chain_len = $9,
                        last_mac = $10, row_mac = $11, mac_key_id = $12, sealed = $13
                  WHERE card_no = $1 AND status = $14 AND balance = $15 AND points = $16
                    AND chain_len = $17 AND last_mac IS NOT DISTINCT FROM $18",
                &[
                    no,
                    &sealed.member_id,
                    &sealed.status,
                    &sealed.balance,
                    &sealed.points,
                    &sealed.pin_hash,
                    &sealed.pin_salt,
                    &(sealed.pin_fail_count as i32),
                    &sealed.chain_len,
                    &sealed.last_mac,
                    &keys.mac(&img, None),
                    &keys.current_id(),
                    &keys.seal(&img),
                    &s.values.status,
                    &s.values.balance,
                    &s.values.points,
                    &s.values.chain_len,
                    &s.values.last_mac,
                ],
            )
            .await?;
        if n != 1 {
            tx.rollback().await?;
            continue;
        }
        let r = Repair {
            card_no: no.clone(),
            restored: card_json(sealed),
            was: card_json(&s.values),
        };
        crate::store::audit::insert(
            &tx,
            keys,
            crate::store::audit::AuditKind::Repair,
            None,
            std::env::var("USER").ok().as_deref(),
            Some("cli"),
            &serde_json::json!({"table": "cards", "key": no, "restored": r.restored, "was": r.was}),
        )
        .await?;
        tx.commit().await?;
        report.repaired.push(r);
    }
    Ok(())
}

/// A card's store, derived from its first posting (which the scan found
/// intact or reported): set as the postings say.
async fn set_issued_store(pool: &Pool, card_no: &str, store: Option<&str>) -> anyhow::Result<()> {
    pool.get()
        .await?
        .execute(
            "UPDATE cards SET store_id = $2 WHERE card_no = $1",
            &[&card_no, &store],
        )
        .await?;
    Ok(())
}

//! `verify --repair`: a card restored from its sealed copy when that copy
//! agrees with the verified chain; a member, terminal, operator or level
//! whose MAC failed restored from its sealed copy when it opens; each
//! restore audited.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use super::{CardScan, Repair, Report};
use crate::crypto::row::{RowImage, Value};
use crate::integrity::{CardValues, RowKeys};

fn card_json(v: &CardValues) -> serde_json::Value {
    serde_json::json!({
        "status": v.status, "balance": v.balance.to_string(), "points": v.points,
        "pin_set": v.pin_hash.is_some(), "pin_fail_count": v.pin_fail_count,
        "chain_len": v.chain_len, "renewed_at": v.renewed_at_ms,
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
            && sealed.points == s.live_lots
            && sealed.visits.unwrap_or(0) == s.visits_sum
            && sealed.visits.unwrap_or(0) == s.visit_lots;
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
                        last_mac = $10, row_mac = $11, mac_key_id = $12, sealed = $13,
                        renewed_at = 'epoch'::timestamptz + $19::bigint * interval '1 millisecond',
                        spent_day = $20::text::date, spent_today = $21, held = $22,
                        visits = $23
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
                    &sealed.renewed_at_ms,
                    &sealed.spent.as_ref().map(|s| s.0.as_str()),
                    &sealed.spent.as_ref().map(|s| s.1),
                    &sealed.held,
                    &sealed.visits,
                ],
            )
            .await?;
        if n != 1 {
            tx.rollback().await?;
            continue;
        }
        let r = Repair {
            table: "cards".into(),
            key: no.clone(),
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

/// The tables beside the cards whose rows carry a sealed copy (migration
/// 0014), and how a row is set back from the image it seals: one statement
/// each, `$1` the key as text, then the values, then the MAC and its key id.
fn restore_sql(table: &str) -> Option<&'static str> {
    Some(match table {
        "members" => {
            "UPDATE members SET name = $2, phone = $3, birthday = $4::text::date, referrer = $5,
                    level = $6, row_mac = $7, mac_key_id = $8 WHERE member_id = $1::text::bigint"
        }
        "terminals" => {
            "UPDATE terminals SET store_id = NULLIF($2, '*'), kind = $3, status = $4, pw_hash = $5,
                    pw_salt = $6, row_mac = $7, mac_key_id = $8 WHERE terminal_id = $1"
        }
        "operators" => {
            "UPDATE operators SET role = $3, status = $4, pin_hash = $5, pin_salt = $6,
                    row_mac = $7, mac_key_id = $8 WHERE store_id || '/' || operator_id = $1
                                                    AND store_id = $2"
        }
        "levels" => {
            "UPDATE levels SET discount = $2::text::numeric, points_rate = $3::text::numeric,
                    max_balance = $4::text::numeric, daily_debit_limit = $5::text::numeric,
                    row_mac = $6, mac_key_id = $7 WHERE level = $1"
        }
        _ => return None,
    })
}

/// The statement's values from the sealed image, in its order (after `$1`).
fn restore_values(table: &str, img: &RowImage) -> Option<Vec<Option<Field>>> {
    let f = |n: &str| img.get(n).cloned().map(Field::from);
    // A hash or salt that is not set is a NULL of bytea, not of text.
    let b = |n: &str| match img.get(n) {
        Some(Value::Null) => Some(Field::Bytes(None)),
        other => other.cloned().map(Field::from),
    };
    Some(match table {
        "members" => vec![
            f("name"),
            f("phone"),
            f("birthday"),
            f("referrer"),
            f("level"),
        ],
        "terminals" => {
            // A till's image leaves its kind out (as it was before kinds).
            let kind = f("kind").or(Some(Field::Text(Some("pos".into()))));
            vec![f("store_id"), kind, f("status"), b("pw_hash"), b("pw_salt")]
        }
        "operators" => {
            let store = img
                .key
                .split_once('/')
                .map(|(s, _)| Field::Text(Some(s.into())));
            vec![store, f("role"), f("status"), b("pin_hash"), b("pin_salt")]
        }
        "levels" => {
            // A limit the image leaves out is no limit (migration 0020).
            let limit = |n: &str| f(n).or(Some(Field::Text(None)));
            vec![
                f("discount"),
                f("points_rate"),
                limit("max_balance"),
                limit("daily_debit_limit"),
            ]
        }
        _ => return None,
    })
}

/// One value of an image, as a statement parameter.
#[derive(Debug)]
enum Field {
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl From<Value> for Field {
    fn from(v: Value) -> Field {
        match v {
            Value::Null => Field::Text(None),
            Value::Text(t) => Field::Text(Some(t)),
            Value::Int(i) => Field::Text(Some(i.to_string())),
            Value::Money(d) => Field::Text(Some(d.to_string())),
            Value::Bool(b) => Field::Text(Some(b.to_string())),
            Value::Bytes(b) => Field::Bytes(Some(b)),
        }
    }
}

impl Field {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Field::Text(t) => t,
            Field::Bytes(b) => b,
        }
    }
}

/// Restores each member, terminal, operator and level whose MAC failed and
/// whose sealed copy opens (bound to its table and key); audits each. A row
/// without a sealed copy (from before migration 0014) is only reported.
pub(super) async fn restore_rows(
    pool: &Pool,
    keys: &RowKeys,
    report: &mut Report,
) -> anyhow::Result<()> {
    let failed: Vec<(String, String)> = report
        .findings
        .iter()
        .filter(|f| f.check == "mac" && restore_sql(&f.table).is_some())
        .map(|f| (f.table.clone(), f.key.clone()))
        .collect();
    for (table, key) in failed {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(r) = restore_one(&tx, keys, &table, &key).await? {
            audit_restore(&tx, keys, &r).await?;
            tx.commit().await?;
            report.repaired.push(r);
        } else {
            tx.rollback().await?;
        }
    }
    Ok(())
}

async fn restore_one(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &RowKeys,
    table: &str,
    key: &str,
) -> anyhow::Result<Option<Repair>> {
    let (Some(sql), key_expr) = (restore_sql(table), sealed_key_expr(table)) else {
        return Ok(None);
    };
    let row = tx
        .query_opt(
            &format!("SELECT sealed FROM {table} WHERE {key_expr} = $1 FOR UPDATE"),
            &[&key],
        )
        .await?;
    let Some(sealed) = row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)) else {
        return Ok(None);
    };
    let Ok(img) = keys.open(table, key, &sealed) else {
        return Ok(None);
    };
    let Some(values) = restore_values(table, &img) else {
        return Ok(None);
    };
    let (mac, kid) = keys.mac_with_id(&img, None);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key];
    let values: Vec<Field> = values
        .into_iter()
        .map(|v| v.unwrap_or(Field::Text(None)))
        .collect();
    params.extend(values.iter().map(Field::param));
    params.push(&mac);
    params.push(&kid);
    if tx.execute(sql, &params).await? != 1 {
        return Ok(None);
    }
    Ok(Some(Repair {
        table: table.to_owned(),
        key: key.to_owned(),
        restored: image_json(&img),
        was: serde_json::json!("failed its MAC"),
    }))
}

/// The key of a table's rows, as findings name it.
fn sealed_key_expr(table: &str) -> &'static str {
    match table {
        "members" => "member_id::text",
        "terminals" => "terminal_id",
        "operators" => "store_id || '/' || operator_id",
        _ => "level",
    }
}

/// What was restored, for the report and the audit row: the values, with
/// hashes and salts shown only as set or not.
fn image_json(img: &RowImage) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = img
        .fields
        .iter()
        .map(|(n, v)| {
            let v = match v {
                Value::Null => serde_json::Value::Null,
                Value::Text(t) => t.clone().into(),
                Value::Int(i) => (*i).into(),
                Value::Money(d) => d.to_string().into(),
                Value::Bool(b) => (*b).into(),
                Value::Bytes(_) => "(set)".into(),
            };
            (n.clone(), v)
        })
        .collect();
    serde_json::Value::Object(fields)
}

async fn audit_restore(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &RowKeys,
    r: &Repair,
) -> anyhow::Result<()> {
    crate::store::audit::insert(
        tx,
        keys,
        crate::store::audit::AuditKind::Repair,
        None,
        std::env::var("USER").ok().as_deref(),
        Some("cli"),
        &serde_json::json!({"table": r.table, "key": r.key, "restored": r.restored}),
    )
    .await?;
    Ok(())
}

//! Day keys: inserted, found, re-sealed, destroyed and revoked, each status
//! change re-MACed in the statement that makes it.

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;

use crate::integrity::{day_key_image, session_image, RowKeys};

use super::PgResult;

#[derive(Clone, Debug)]
pub struct DayKeyRow {
    pub key_id: String,
    pub terminal_id: String,
    pub business_day: NaiveDate,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub public_der: Vec<u8>,
    pub sealed_private: Option<Vec<u8>>,
    pub sealed_k_day: Option<Vec<u8>>,
    pub master_key_id: String,
    pub signer_id: String,
    pub day_sig: Vec<u8>,
    pub status: String,
    /// Written with the row (issue 5); `None` before it is stored.
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
}

/// A day key's status (migration 0003's CHECK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayKeyStatus {
    Active,
    Revoked,
    Destroyed,
}

impl DayKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DayKeyStatus::Active => "active",
            DayKeyStatus::Revoked => "revoked",
            DayKeyStatus::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<DayKeyStatus> {
        [
            DayKeyStatus::Active,
            DayKeyStatus::Revoked,
            DayKeyStatus::Destroyed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl DayKeyRow {
    /// The status as the code asks for it (the row keeps the stored text,
    /// which its MAC covers).
    pub fn key_status(&self) -> Option<DayKeyStatus> {
        DayKeyStatus::parse(&self.status)
    }

    /// The row's image, with `status` as given (a status change re-MACs).
    pub fn image_with(&self, status: &str) -> crate::crypto::row::RowImage {
        day_key_image(
            &self.key_id,
            &self.terminal_id,
            &self.business_day.to_string(),
            self.not_before_ms,
            self.not_after_ms,
            &self.public_der,
            &self.signer_id,
            &self.day_sig,
            status,
        )
    }
}

pub const DAY_COLS: &str = "key_id, terminal_id, business_day, not_before, not_after, public_der,
    sealed_private, sealed_k_day, master_key_id, signer_id, day_sig, status, row_mac, mac_key_id";

/// A [`DayKeyRow`] from a row selected as [`DAY_COLS`].
pub fn day_row(r: &tokio_postgres::Row) -> DayKeyRow {
    DayKeyRow {
        key_id: r.get(0),
        terminal_id: r.get(1),
        business_day: r.get(2),
        not_before_ms: r.get(3),
        not_after_ms: r.get(4),
        public_der: r.get(5),
        sealed_private: r.get(6),
        sealed_k_day: r.get(7),
        master_key_id: r.get(8),
        signer_id: r.get(9),
        day_sig: r.get(10),
        status: r.get(11),
        row_mac: r.get(12),
        mac_key_id: r.get(13),
    }
}

/// Stores a new active day key; `Ok(false)` when the terminal already has
/// an active one for that day (another instance was quicker), or when the
/// key is sealed under a master key that is no longer current (a
/// `keys rotate-master` ran meanwhile: its row lock on the hash key orders
/// the two, so no blob under a retired master key can slip in).
pub async fn insert_day_key<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    k: &DayKeyRow,
) -> PgResult<bool> {
    let (mac, mac_key_id) = keys.mac_with_id(&k.image_with(DayKeyStatus::Active.as_str()), None);
    let n = c
        .execute(
            "INSERT INTO day_keys (key_id, terminal_id, business_day, not_before, not_after,
                 public_der, sealed_private, sealed_k_day, master_key_id, signer_id, day_sig,
                 row_mac, mac_key_id)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
               FROM sealed_secrets WHERE name = 'hash_key' AND master_key_id = $9
                FOR SHARE
             ON CONFLICT (terminal_id, business_day) WHERE status = 'active' DO NOTHING",
            &[
                &k.key_id,
                &k.terminal_id,
                &k.business_day,
                &k.not_before_ms,
                &k.not_after_ms,
                &k.public_der,
                &k.sealed_private,
                &k.sealed_k_day,
                &k.master_key_id,
                &k.signer_id,
                &k.day_sig,
                &mac,
                &mac_key_id,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The terminal's active day key for `day`.
pub async fn active_day_key<C: GenericClient>(
    c: &C,
    terminal: &str,
    day: NaiveDate,
) -> PgResult<Option<DayKeyRow>> {
    Ok(c.query_opt(
        &format!(
            "SELECT {DAY_COLS} FROM day_keys
                  WHERE terminal_id = $1 AND business_day = $2 AND status = 'active'"
        ),
        &[&terminal, &day],
    )
    .await?
    .map(|r| day_row(&r)))
}

pub async fn day_key<C: GenericClient>(c: &C, key_id: &str) -> PgResult<Option<DayKeyRow>> {
    Ok(c.query_opt(
        &format!("SELECT {DAY_COLS} FROM day_keys WHERE key_id = $1"),
        &[&key_id],
    )
    .await?
    .map(|r| day_row(&r)))
}

/// Every day key still holding sealed material (for `keys rotate-master`).
pub async fn live_day_keys<C: GenericClient>(c: &C) -> PgResult<Vec<DayKeyRow>> {
    Ok(c.query(
        &format!("SELECT {DAY_COLS} FROM day_keys WHERE status <> 'destroyed' FOR UPDATE"),
        &[],
    )
    .await?
    .iter()
    .map(day_row)
    .collect())
}

pub async fn update_day_key_seal<C: GenericClient>(
    c: &C,
    key_id: &str,
    sealed_private: &[u8],
    sealed_k_day: &[u8],
    master_key_id: &str,
) -> PgResult<()> {
    c.execute(
        "UPDATE day_keys SET sealed_private = $2, sealed_k_day = $3, master_key_id = $4
          WHERE key_id = $1",
        &[&key_id, &sealed_private, &sealed_k_day, &master_key_id],
    )
    .await?;
    Ok(())
}

/// Active terminals without an active day key for `day`.
pub async fn terminals_without_day_key<C: GenericClient>(
    c: &C,
    day: NaiveDate,
) -> PgResult<Vec<String>> {
    Ok(c.query(
        "SELECT t.terminal_id FROM terminals t
              WHERE t.status = 'active' AND NOT EXISTS (
                    SELECT 1 FROM day_keys d WHERE d.terminal_id = t.terminal_id
                       AND d.business_day = $1 AND d.status = 'active')
              ORDER BY t.terminal_id",
        &[&day],
    )
    .await?
    .into_iter()
    .map(|r| r.get(0))
    .collect())
}

/// Destroys the key material of every day key past its end, and drops the
/// sessions that used them. Returns the number of keys destroyed.
pub async fn destroy_expired<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    now_ms: i64,
) -> PgResult<u64> {
    c.execute(
        "DELETE FROM sessions s USING day_keys d
          WHERE s.key_id = d.key_id AND d.not_after <= $1",
        &[&now_ms],
    )
    .await?;
    let rows = c
        .query(
            &format!(
                "SELECT {DAY_COLS} FROM day_keys
                  WHERE not_after <= $1 AND status <> 'destroyed' FOR UPDATE"
            ),
            &[&now_ms],
        )
        .await?;
    set_day_key_status(
        c,
        keys,
        &rows.iter().map(day_row).collect::<Vec<_>>(),
        DayKeyStatus::Destroyed.as_str(),
    )
    .await
}

/// Sets the status of the day keys `rows` (read `FOR UPDATE`) and re-MACs
/// them; `destroyed` also drops their sealed material.
async fn set_day_key_status<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    rows: &[DayKeyRow],
    status: &str,
) -> PgResult<u64> {
    let (mut ids, mut macs, mut kid) = (vec![], vec![], keys.current_id());
    for k in rows {
        let (mac, id) = keys.mac_with_id(&k.image_with(status), None);
        ids.push(k.key_id.clone());
        macs.push(mac);
        kid = id;
    }
    c.execute(
        "UPDATE day_keys d SET status = $3, row_mac = x.mac, mac_key_id = $4,
                sealed_private = CASE WHEN $3 = 'destroyed' THEN NULL ELSE d.sealed_private END,
                sealed_k_day = CASE WHEN $3 = 'destroyed' THEN NULL ELSE d.sealed_k_day END
           FROM unnest($1::text[], $2::bytea[]) AS x(id, mac) WHERE d.key_id = x.id",
        &[&ids, &macs, &status, &kid],
    )
    .await
}

/// Revokes every usable day key of the terminal and all its sessions.
/// Returns the number of sessions ended.
pub async fn revoke_terminal<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    terminal: &str,
) -> PgResult<u64> {
    let rows = c
        .query(
            &format!(
                "SELECT {DAY_COLS} FROM day_keys
                  WHERE terminal_id = $1 AND status = 'active' FOR UPDATE"
            ),
            &[&terminal],
        )
        .await?;
    set_day_key_status(
        c,
        keys,
        &rows.iter().map(day_row).collect::<Vec<_>>(),
        DayKeyStatus::Revoked.as_str(),
    )
    .await?;
    let rows = c
        .query(
            "SELECT sid, key_id, not_after FROM sessions
              WHERE terminal_id = $1 AND revoked_at IS NULL FOR UPDATE",
            &[&terminal],
        )
        .await?;
    let (mut sids, mut macs, mut kid) = (vec![], vec![], keys.current_id());
    for r in &rows {
        let sid: String = r.get(0);
        let (mac, id) = keys.mac_with_id(
            &session_image(&sid, terminal, r.get(1), r.get(2), true),
            None,
        );
        sids.push(sid);
        macs.push(mac);
        kid = id;
    }
    c.execute(
        "UPDATE sessions s SET revoked_at = now(), row_mac = x.mac, mac_key_id = $3
           FROM unnest($1::text[], $2::bytea[]) AS x(sid, mac) WHERE s.sid = x.sid",
        &[&sids, &macs, &kid],
    )
    .await
}

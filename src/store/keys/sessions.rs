//! Sessions and what `keys status` and `keys rotate-master` read.

use crate::store::protected::{Protected, SessionRow};
use deadpool_postgres::GenericClient;

use crate::integrity::{session_image, RowKeys};

use super::{day_row, DayKeyRow, PgResult};

pub async fn insert_session<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    sid: &str,
    terminal: &str,
    key_id: &str,
    not_after_ms: i64,
) -> PgResult<()> {
    let (mac, mac_key_id) = keys.mac_with_id(
        &session_image(sid, terminal, key_id, not_after_ms, false),
        None,
    );
    c.execute(
        "INSERT INTO sessions (sid, terminal_id, key_id, not_after, row_mac, mac_key_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&sid, &terminal, &key_id, &not_after_ms, &mac, &mac_key_id],
    )
    .await?;
    Ok(())
}

/// A session usable now: not revoked, not expired, its day key active.
#[derive(Clone, Debug)]
pub struct LiveSession {
    pub terminal_id: String,
    pub key_id: String,
    pub not_after_ms: i64,
    pub sealed_k_day: Vec<u8>,
    pub master_key_id: String,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
    /// Its day key, whose MAC is checked with the session's.
    pub day_key: DayKeyRow,
    /// The terminal's store and whether it is active, read in the same
    /// query so a txn needs no second one for its terminal.
    pub store_id: String,
    pub terminal_active: bool,
}

pub async fn live_session<C: GenericClient>(
    c: &C,
    sid: &str,
    now_ms: i64,
) -> PgResult<Option<LiveSession>> {
    let st = c
        .prepare_cached(
            "SELECT d.key_id, d.terminal_id, d.business_day, d.not_before, d.not_after,
                    d.public_der, d.sealed_private, d.sealed_k_day, d.master_key_id, d.signer_id,
                    d.day_sig, d.status, d.row_mac, d.mac_key_id,
                    s.terminal_id, s.not_after, s.row_mac, s.mac_key_id,
                    coalesce(t.store_id, '*'), t.status = 'active'
               FROM sessions s JOIN day_keys d USING (key_id)
               JOIN terminals t ON t.terminal_id = s.terminal_id
              WHERE s.sid = $1 AND s.revoked_at IS NULL AND s.not_after > $2
                AND d.status = 'active' AND d.not_after > $2 AND d.sealed_k_day IS NOT NULL",
        )
        .await?;
    Ok(c.query_opt(&st, &[&sid, &now_ms]).await?.map(|r| {
        let day_key = day_row(&r);
        LiveSession {
            terminal_id: r.get(14),
            key_id: day_key.key_id.clone(),
            not_after_ms: r.get(15),
            sealed_k_day: r.get(7),
            master_key_id: day_key.master_key_id.clone(),
            row_mac: r.get(16),
            mac_key_id: r.get(17),
            store_id: r.get(18),
            terminal_active: r.get(19),
            day_key,
        }
    }))
}

impl LiveSession {
    /// Whether the session's MAC and its day key's hold under `keys` (the
    /// query read it unrevoked).
    pub fn mac_ok(&self, keys: &RowKeys, sid: &str) -> bool {
        let img = session_image(
            sid,
            &self.terminal_id,
            &self.key_id,
            self.not_after_ms,
            false,
        );
        keys.verify(
            self.mac_key_id.as_deref(),
            &img,
            None,
            self.row_mac.as_deref(),
        ) && self.day_key.mac_ok(keys)
    }
}

/// Per terminal: its newest active day key and its open sessions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TerminalKeyStatus {
    pub terminal: String,
    pub status: String,
    pub key_id: Option<String>,
    pub business_day: Option<String>,
    #[serde(rename = "not_after")]
    pub not_after_ms: Option<i64>,
    pub open_sessions: i64,
}

pub async fn terminal_key_status<C: GenericClient>(
    c: &C,
    now_ms: i64,
) -> PgResult<Vec<TerminalKeyStatus>> {
    Ok(c.query(
        "SELECT t.terminal_id, t.status, d.key_id, d.business_day::text, d.not_after,
                    (SELECT count(*) FROM sessions s WHERE s.terminal_id = t.terminal_id
                        AND s.revoked_at IS NULL AND s.not_after > $1)
               FROM terminals t
               LEFT JOIN LATERAL (
                    SELECT key_id, business_day, not_after FROM day_keys
                     WHERE terminal_id = t.terminal_id AND status = 'active' AND not_after > $1
                       AND not_before <= $1
                     ORDER BY business_day DESC LIMIT 1) d ON true
              ORDER BY t.terminal_id",
        &[&now_ms],
    )
    .await?
    .into_iter()
    .map(|r| TerminalKeyStatus {
        terminal: r.get(0),
        status: r.get(1),
        key_id: r.get(2),
        business_day: r.get(3),
        not_after_ms: r.get(4),
        open_sessions: r.get(5),
    })
    .collect())
}

/// Every sealed server secret (name, blob), locked for re-sealing.
pub async fn sealed_secrets_for_update<C: GenericClient>(
    c: &C,
) -> PgResult<Vec<(String, String, Vec<u8>)>> {
    Ok(c.query(
        "SELECT name, master_key_id, sealed FROM sealed_secrets ORDER BY name FOR UPDATE",
        &[],
    )
    .await?
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

pub async fn update_sealed_secret<C: GenericClient>(
    c: &C,
    name: &str,
    sealed: &[u8],
    master_key_id: &str,
) -> PgResult<()> {
    c.execute(
        "UPDATE sealed_secrets SET sealed = $2, master_key_id = $3 WHERE name = $1",
        &[&name, &sealed, &master_key_id],
    )
    .await?;
    Ok(())
}

/// The rows of sessions `sids` (those that still exist), as `verify` reads
/// them, for the cache's sweep.
pub async fn session_rows<C: GenericClient>(c: &C, sids: &[String]) -> PgResult<Vec<SessionRow>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {} FROM sessions WHERE sid = ANY ($1)",
            SessionRow::COLUMNS
        ))
        .await?;
    Ok(c.query(&st, &[&sids])
        .await?
        .iter()
        .map(SessionRow::decode)
        .collect())
}

//! The key tables of migration 0003: roots, signers and their certificates,
//! day keys, sessions. Blobs only: `keys` seals, opens and signs.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;

use crate::integrity::{day_key_image, session_image, RowKeys};

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// The channel every instance listens on: payload `revoke:{terminal}`,
/// `master` (reload the master key file) or `flush`.
pub const NOTIFY_CHANNEL: &str = "cardswitch_keys";

#[derive(Clone, Debug)]
pub struct RootRow {
    pub root_id: String,
    pub public_der: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub overlap_until: Option<DateTime<Utc>>,
}

pub async fn insert_root<C: GenericClient>(c: &C, root_id: &str, der: &[u8]) -> PgResult<()> {
    c.execute(
        "INSERT INTO root_keys (root_id, public_der) VALUES ($1, $2)",
        &[&root_id, &der],
    )
    .await?;
    Ok(())
}

/// Every root, newest first. The current one has no `overlap_until`.
pub async fn roots<C: GenericClient>(c: &C) -> PgResult<Vec<RootRow>> {
    Ok(c.query(
        "SELECT root_id, public_der, created_at, overlap_until FROM root_keys
              ORDER BY created_at DESC, root_id",
        &[],
    )
    .await?
    .into_iter()
    .map(|r| RootRow {
        root_id: r.get(0),
        public_der: r.get(1),
        created_at: r.get(2),
        overlap_until: r.get(3),
    })
    .collect())
}

/// Ends the current root's tenure: it keeps certifying until `until`.
pub async fn retire_current_roots<C: GenericClient>(c: &C, until: DateTime<Utc>) -> PgResult<u64> {
    c.execute(
        "UPDATE root_keys SET overlap_until = $1 WHERE overlap_until IS NULL",
        &[&until],
    )
    .await
}

#[derive(Clone, Debug)]
pub struct SignerRow {
    pub signer_id: String,
    pub public_der: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub master_key_id: String,
    pub not_after: i64,
    pub created_at: DateTime<Utc>,
}

fn signer_row(r: &tokio_postgres::Row) -> SignerRow {
    SignerRow {
        signer_id: r.get(0),
        public_der: r.get(1),
        sealed_private: r.get(2),
        master_key_id: r.get(3),
        not_after: r.get(4),
        created_at: r.get(5),
    }
}

const SIGNER_COLS: &str =
    "signer_id, public_der, sealed_private, master_key_id, not_after, created_at";

pub async fn insert_signer<C: GenericClient>(c: &C, s: &SignerRow) -> PgResult<()> {
    c.execute(
        "INSERT INTO signer_keys (signer_id, public_der, sealed_private, master_key_id, not_after)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &s.signer_id,
            &s.public_der,
            &s.sealed_private,
            &s.master_key_id,
            &s.not_after,
        ],
    )
    .await?;
    Ok(())
}

pub async fn insert_signer_cert<C: GenericClient>(
    c: &C,
    signer_id: &str,
    root_id: &str,
    sig: &[u8],
) -> PgResult<()> {
    c.execute(
        "INSERT INTO signer_certs (signer_id, root_id, sig) VALUES ($1, $2, $3)
         ON CONFLICT (signer_id, root_id) DO UPDATE SET sig = EXCLUDED.sig",
        &[&signer_id, &root_id, &sig],
    )
    .await?;
    Ok(())
}

/// The newest signer: the one the daemon signs day keys with.
pub async fn current_signer<C: GenericClient>(c: &C) -> PgResult<Option<SignerRow>> {
    Ok(c.query_opt(
        &format!(
            "SELECT {SIGNER_COLS} FROM signer_keys ORDER BY created_at DESC, signer_id LIMIT 1"
        ),
        &[],
    )
    .await?
    .map(|r| signer_row(&r)))
}

pub async fn signer<C: GenericClient>(c: &C, signer_id: &str) -> PgResult<Option<SignerRow>> {
    Ok(c.query_opt(
        &format!("SELECT {SIGNER_COLS} FROM signer_keys WHERE signer_id = $1"),
        &[&signer_id],
    )
    .await?
    .map(|r| signer_row(&r)))
}

pub async fn signers<C: GenericClient>(c: &C) -> PgResult<Vec<SignerRow>> {
    Ok(c.query(
        &format!("SELECT {SIGNER_COLS} FROM signer_keys ORDER BY created_at DESC"),
        &[],
    )
    .await?
    .iter()
    .map(signer_row)
    .collect())
}

pub async fn signer_cert<C: GenericClient>(
    c: &C,
    signer_id: &str,
    root_id: &str,
) -> PgResult<Option<Vec<u8>>> {
    Ok(c.query_opt(
        "SELECT sig FROM signer_certs WHERE signer_id = $1 AND root_id = $2",
        &[&signer_id, &root_id],
    )
    .await?
    .map(|r| r.get(0)))
}

pub async fn update_signer_seal<C: GenericClient>(
    c: &C,
    signer_id: &str,
    sealed: &[u8],
    master_key_id: &str,
) -> PgResult<()> {
    c.execute(
        "UPDATE signer_keys SET sealed_private = $2, master_key_id = $3 WHERE signer_id = $1",
        &[&signer_id, &sealed, &master_key_id],
    )
    .await?;
    Ok(())
}

#[derive(Clone, Debug)]
pub struct DayKeyRow {
    pub key_id: String,
    pub terminal_id: String,
    pub business_day: NaiveDate,
    pub not_before: i64,
    pub not_after: i64,
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

impl DayKeyRow {
    /// The row's image, with `status` as given (a status change re-MACs).
    pub fn image_with(&self, status: &str) -> crate::crypto::row::RowImage {
        day_key_image(
            &self.key_id,
            &self.terminal_id,
            &self.business_day.to_string(),
            self.not_before,
            self.not_after,
            &self.public_der,
            &self.signer_id,
            &self.day_sig,
            status,
        )
    }

    /// Whether the row's MAC holds under `keys`.
    pub fn mac_ok(&self, keys: &RowKeys) -> bool {
        keys.verify(
            self.mac_key_id.as_deref(),
            &self.image_with(&self.status),
            None,
            self.row_mac.as_deref(),
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
        not_before: r.get(3),
        not_after: r.get(4),
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
    let (mac, mac_key_id) = keys.mac_with_id(&k.image_with("active"), None);
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
                &k.not_before,
                &k.not_after,
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
        "destroyed",
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
        "revoked",
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

pub async fn insert_session<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    sid: &str,
    terminal: &str,
    key_id: &str,
    not_after: i64,
) -> PgResult<()> {
    let (mac, mac_key_id) = keys.mac_with_id(
        &session_image(sid, terminal, key_id, not_after, false),
        None,
    );
    c.execute(
        "INSERT INTO sessions (sid, terminal_id, key_id, not_after, row_mac, mac_key_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&sid, &terminal, &key_id, &not_after, &mac, &mac_key_id],
    )
    .await?;
    Ok(())
}

/// A session usable now: not revoked, not expired, its day key active.
#[derive(Clone, Debug)]
pub struct LiveSession {
    pub terminal_id: String,
    pub key_id: String,
    pub not_after: i64,
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
                    t.store_id, t.status = 'active'
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
            not_after: r.get(15),
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
        let img = session_image(sid, &self.terminal_id, &self.key_id, self.not_after, false);
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
    pub not_after: Option<i64>,
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
        not_after: r.get(4),
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

pub async fn notify<C: GenericClient>(c: &C, payload: &str) -> PgResult<()> {
    c.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// How often the listener proves to itself that notifications arrive.
const PING_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// A listener that has not seen its own ping for this long is "down".
const PING_LOST: std::time::Duration = std::time::Duration::from_secs(2);

/// LISTENs on [`NOTIFY_CHANNEL`] on a connection of its own, for ever:
/// `on_state(true)` once listening works, `on_state(false)` when it stops
/// (then it reconnects after a second), `on_notify(payload)` for each
/// notification.
///
/// "Works" is proven, not assumed: the listener NOTIFYs itself every 500 ms
/// and counts as down when its own ping has not come back for 2 s. So a
/// connection that silently stopped delivering (a pooler in transaction
/// mode, which does not carry LISTEN, or a half-open TCP connection) makes
/// the daemon fall back to checking the database on every request instead
/// of trusting a cache no notification can reach.
pub async fn listen_forever(
    pg: tokio_postgres::Config,
    on_state: impl Fn(bool),
    on_notify: impl Fn(&str),
) {
    let nonce = format!("ping:{:016x}", rand::random::<u64>());
    loop {
        match pg.connect(tokio_postgres::NoTls).await {
            Err(e) => tracing::warn!(error = %e, "key listener cannot connect; retrying"),
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "key listener connection lost");
                                break;
                            }
                            None => break,
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                    .await
                {
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                    Ok(()) => {
                        let mut up = false;
                        let mut last_seen = tokio::time::Instant::now();
                        let mut tick = tokio::time::interval(PING_EVERY);
                        loop {
                            tokio::select! {
                                got = rx.recv() => match got {
                                    None => break,
                                    Some(p) if p == nonce => {
                                        last_seen = tokio::time::Instant::now();
                                        if !up {
                                            up = true;
                                            on_state(true);
                                        }
                                    }
                                    // Other instances' pings.
                                    Some(p) if p.starts_with("ping:") => {}
                                    Some(p) => on_notify(&p),
                                },
                                _ = tick.tick() => {
                                    if last_seen.elapsed() > PING_LOST {
                                        tracing::warn!("key notifications stopped arriving; reconnecting");
                                        break;
                                    }
                                    if let Err(e) = client
                                        .execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &nonce])
                                        .await
                                    {
                                        tracing::warn!(error = %e, "key listener ping failed");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
                on_state(false);
                driver.abort();
                drop(client);
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Opens a session and uses up the login's `ts`, in one transaction.
/// `Ok(false)`: the `ts` was used before (1006), nothing stored.
pub async fn open_session(
    pool: &deadpool_postgres::Pool,
    keys: &RowKeys,
    sid: &str,
    terminal: &str,
    key_id: &str,
    not_after: i64,
    ts: i64,
) -> Result<bool, crate::error::Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if !super::seen_ts::record(&tx, terminal, ts).await? {
        return Ok(false);
    }
    insert_session(&tx, keys, sid, terminal, key_id, not_after).await?;
    super::terminals::login_succeeded(&tx, terminal).await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether `root_id` may certify now: current, or within its overlap.
pub async fn root_usable<C: GenericClient>(
    c: &C,
    root_id: Option<&str>,
    now: DateTime<Utc>,
) -> PgResult<Option<String>> {
    Ok(c
        .query_opt(
            "SELECT root_id FROM root_keys
              WHERE ($1::text IS NULL AND overlap_until IS NULL)
                 OR ($1::text IS NOT NULL AND root_id = $1 AND (overlap_until IS NULL OR overlap_until > $2))
              ORDER BY created_at DESC LIMIT 1",
            &[&root_id, &now],
        )
        .await?
        .map(|r| r.get(0)))
}

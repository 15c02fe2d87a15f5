//! The key tables of migration 0003: roots, signers and their certificates,
//! day keys, sessions. Blobs only: `keys` seals, opens and signs.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::integrity::RowKeys;

type PgResult<T> = Result<T, tokio_postgres::Error>;

mod day;
mod listen;
mod sessions;

pub use day::*;
pub use listen::*;
pub use sessions::*;

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
    pub not_after_ms: i64,
    pub created_at: DateTime<Utc>,
}

fn signer_row(r: &tokio_postgres::Row) -> SignerRow {
    SignerRow {
        signer_id: r.get(0),
        public_der: r.get(1),
        sealed_private: r.get(2),
        master_key_id: r.get(3),
        not_after_ms: r.get(4),
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
            &s.not_after_ms,
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

/// Opens a session and uses up the login's `ts`, in one transaction.
/// `Ok(false)`: the `ts` was used before (1006), nothing stored.
pub async fn open_session(
    pool: &deadpool_postgres::Pool,
    keys: &RowKeys,
    sid: &str,
    terminal: &str,
    key_id: &str,
    not_after_ms: i64,
    ts: i64,
) -> Result<bool, crate::error::Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if !super::seen_ts::record(&tx, terminal, ts).await? {
        return Ok(false);
    }
    insert_session(&tx, keys, sid, terminal, key_id, not_after_ms).await?;
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

//! The audit trail: ops actions, refused requests, failed logins, integrity
//! failures. Chained (issue 5): each row's MAC covers the MAC of the row
//! before it, and `audit_head` keeps the last one, so a deleted, changed,
//! inserted or reordered row breaks the chain.
//!
//! Two ways in, one chain. [`insert`] appends one row inside the caller's
//! transaction (an ops action and its audit row commit together) by a
//! compare-and-swap on `audit_head`: read the head, take an id (after the
//! read, so ids follow chain order), MAC the row, and insert it in the
//! statement that moves the head, only if the head has not moved meanwhile;
//! else read again. [`append_batch`] is the daemon's audit writer's way
//! (issue 12): it locks the head, takes its ids after the lock, and appends
//! many rows in one statement, so a flood of refusals waits on one
//! connection of its own instead of many pooled ones racing for the head.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::integrity::{audit_image, RowKeys};

const HEAD_SQL: &str = "SELECT last_id, last_mac, nextval('audit_audit_id_seq'),
        date_trunc('milliseconds', clock_timestamp()) FROM audit_head";

const INSERT_SQL: &str = "
WITH h AS (
    UPDATE audit_head SET last_id = $1, last_mac = $9
     WHERE last_id IS NOT DISTINCT FROM $10 AND last_mac IS NOT DISTINCT FROM $11
    RETURNING 1
)
INSERT INTO audit (audit_id, at, kind, terminal_id, actor, source, detail, row_mac, mac_key_id)
SELECT $1, $2, $3, $4, $5, $6, $7, $9, $8 FROM h";

const LOCK_HEAD_SQL: &str = "SELECT last_id, last_mac,
        date_trunc('milliseconds', clock_timestamp()) FROM audit_head FOR UPDATE";

const IDS_SQL: &str = "SELECT nextval('audit_audit_id_seq') FROM generate_series(1, $1::int)";

const BATCH_SQL: &str = "
INSERT INTO audit (audit_id, at, kind, terminal_id, actor, source, detail, row_mac, mac_key_id)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::jsonb[], $8::bytea[], $9::text[])";

const SET_HEAD_SQL: &str = "UPDATE audit_head SET last_id = $1, last_mac = $2";

/// The whole chain in chain order, as `verify` and `keys rotate-row-key`
/// walk it: the columns [`chain_row`] reads, then `row_mac` (7) and
/// `mac_key_id` (8).
pub const CHAIN_SQL: &str =
    "SELECT audit_id, at, kind, terminal_id, actor, source, detail, row_mac, mac_key_id
       FROM audit ORDER BY audit_id";

/// A row of [`CHAIN_SQL`]: its id and the image its MAC covers.
pub fn chain_row(r: &tokio_postgres::Row) -> (i64, crate::crypto::row::RowImage) {
    let id: i64 = r.get(0);
    let at: DateTime<Utc> = r.get(1);
    let detail: serde_json::Value = r.get(6);
    let img = audit_image(
        id,
        at.timestamp_millis(),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        &detail,
    );
    (id, img)
}

/// What an audit row records; stored as its text (`cardswitch audit`
/// lists it), so a kind's text never changes once written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// A request refused (protocol.md §5), with its errno, after it proved
    /// its terminal's key (or a refusal of integrity, 3001).
    Refused,
    /// The refusals of requests that proved no key, from one source address
    /// in one minute, counted by errno (issue 12): one row, not one each.
    RefusedUnproved,
    /// A row failed its integrity check on use (3001).
    Tampered,
    /// An office terminal read a card (protocol.md §6.1).
    OfficeRead,
    /// `verify --repair` restored a card from its sealed copy.
    Repair,
    KeysInit,
    StoreAdd,
    TerminalAdd,
    TerminalEnable,
    TerminalDisable,
    TerminalResetPassword,
    RotateSigner,
    RotateRoot,
    RotateMaster,
    RotateRowKey,
    Revoke,
    RotateTerminal,
    WebhookAdd,
    WebhookDisable,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Refused => "refused",
            AuditKind::RefusedUnproved => "refused.unproved",
            AuditKind::Tampered => "integrity.tampered",
            AuditKind::OfficeRead => "office.read",
            AuditKind::Repair => "verify.repair",
            AuditKind::KeysInit => "keys.init",
            AuditKind::StoreAdd => "store.add",
            AuditKind::TerminalAdd => "terminal.add",
            AuditKind::TerminalEnable => "terminal.enable",
            AuditKind::TerminalDisable => "terminal.disable",
            AuditKind::TerminalResetPassword => "terminal.reset_password",
            AuditKind::RotateSigner => "keys.rotate_signer",
            AuditKind::RotateRoot => "keys.rotate_root",
            AuditKind::RotateMaster => "keys.rotate_master",
            AuditKind::RotateRowKey => "keys.rotate_row_key",
            AuditKind::Revoke => "keys.revoke",
            AuditKind::RotateTerminal => "keys.rotate_terminal",
            AuditKind::WebhookAdd => "webhook.add",
            AuditKind::WebhookDisable => "webhook.disable",
        }
    }
}

/// Appends one audit row. `source` is the client address for requests, the
/// OS user (if known) for ops actions.
pub async fn insert<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    kind: AuditKind,
    terminal: Option<&str>,
    actor: Option<&str>,
    source: Option<&str>,
    detail: &serde_json::Value,
) -> crate::Result<()> {
    let kind = kind.as_str();
    for _ in 0..MAX_APPEND_ATTEMPTS {
        let h = c.query_one(HEAD_SQL, &[]).await?;
        let last_id: Option<i64> = h.get(0);
        let last_mac: Option<Vec<u8>> = h.get(1);
        let id: i64 = h.get(2);
        let at: DateTime<Utc> = h.get(3);
        let img = audit_image(
            id,
            at.timestamp_millis(),
            kind,
            terminal,
            actor,
            source,
            detail,
        );
        let (mac, key_id) = keys.mac_with_id(&img, last_mac.as_deref());
        let n = c
            .execute(
                INSERT_SQL,
                &[
                    &id, &at, &kind, &terminal, &actor, &source, &detail, &key_id, &mac, &last_id,
                    &last_mac,
                ],
            )
            .await?;
        if n == 1 {
            return Ok(());
        }
    }
    Err(crate::Error::Contended("audit head"))
}

/// One audit row to append, as the daemon's audit writer queues it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: AuditKind,
    pub terminal: Option<String>,
    pub actor: Option<String>,
    pub source: Option<String>,
    pub detail: serde_json::Value,
}

/// Appends `entries` in order in the caller's transaction (which commits
/// them): the head locked, ids drawn after the lock, one chain through all
/// of them, one insert. The lock is held to the caller's commit, so the
/// caller keeps that short; [`insert`]s meanwhile wait on the head's row and
/// then retry past the new head.
pub async fn append_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &RowKeys,
    entries: &[Entry],
) -> crate::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let h = tx.query_one(LOCK_HEAD_SQL, &[]).await?;
    let mut last_mac: Option<Vec<u8>> = h.get(1);
    let at: DateTime<Utc> = h.get(2);
    let n = i32::try_from(entries.len()).unwrap_or(i32::MAX);
    let mut ids: Vec<i64> = tx
        .query(IDS_SQL, &[&n])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort_unstable();
    let mut cols = BatchColumns::default();
    for (id, e) in ids.iter().zip(entries) {
        let img = audit_image(
            *id,
            at.timestamp_millis(),
            e.kind.as_str(),
            e.terminal.as_deref(),
            e.actor.as_deref(),
            e.source.as_deref(),
            &e.detail,
        );
        let (mac, key_id) = keys.mac_with_id(&img, last_mac.as_deref());
        cols.push(*id, at, e, mac.clone(), key_id);
        last_mac = Some(mac);
    }
    let c = &cols;
    tx.execute(
        BATCH_SQL,
        &[
            &c.ids,
            &c.ats,
            &c.kinds,
            &c.terminals,
            &c.actors,
            &c.sources,
            &c.details,
            &c.macs,
            &c.key_ids,
        ],
    )
    .await?;
    tx.execute(SET_HEAD_SQL, &[&ids.last(), &last_mac]).await?;
    Ok(())
}

/// [`BATCH_SQL`]'s arrays, one per column.
#[derive(Default)]
struct BatchColumns {
    ids: Vec<i64>,
    ats: Vec<DateTime<Utc>>,
    kinds: Vec<&'static str>,
    terminals: Vec<Option<String>>,
    actors: Vec<Option<String>>,
    sources: Vec<Option<String>>,
    details: Vec<serde_json::Value>,
    macs: Vec<Vec<u8>>,
    key_ids: Vec<String>,
}

impl BatchColumns {
    fn push(&mut self, id: i64, at: DateTime<Utc>, e: &Entry, mac: Vec<u8>, key_id: String) {
        self.ids.push(id);
        self.ats.push(at);
        self.kinds.push(e.kind.as_str());
        self.terminals.push(e.terminal.clone());
        self.actors.push(e.actor.clone());
        self.sources.push(e.source.clone());
        self.details.push(e.detail.clone());
        self.macs.push(mac);
        self.key_ids.push(key_id);
    }
}

/// How often an append re-reads a head that moved under it before giving
/// up: each lost race means another append landed, so the trail advances,
/// but one writer must not spin for ever behind a flood of others.
const MAX_APPEND_ATTEMPTS: usize = 64;

/// One audit row as `cardswitch audit` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub audit_id: i64,
    /// RFC 3339, milliseconds, UTC.
    pub at: String,
    pub kind: String,
    pub terminal_id: Option<String>,
    pub actor: Option<String>,
    pub source: Option<String>,
    pub detail: serde_json::Value,
}

/// The audit trail since `since` (all when `None`), oldest first.
pub async fn list<C: GenericClient>(
    c: &C,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<AuditRow>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT audit_id, at, kind, terminal_id, actor, source, detail FROM audit
              WHERE $1::timestamptz IS NULL OR at >= $1 ORDER BY audit_id",
        &[&since],
    )
    .await?
    .iter()
    .map(|r| AuditRow {
        audit_id: r.get(0),
        at: r
            .get::<_, DateTime<Utc>>(1)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind: r.get(2),
        terminal_id: r.get(3),
        actor: r.get(4),
        source: r.get(5),
        detail: r.get(6),
    })
    .collect())
}

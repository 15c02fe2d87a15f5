//! The audit trail: ops actions, refused requests, failed logins, integrity
//! failures. Chained (issue 5): each row's MAC covers the MAC of the row
//! before it, and `audit_head` keeps the last one, so a deleted, changed,
//! inserted or reordered row breaks the chain.
//!
//! Inserts are serialised by a compare-and-swap on `audit_head`: read the
//! head, take an id (after the read, so ids follow chain order), MAC the row,
//! and insert it in the statement that moves the head, only if the head has
//! not moved meanwhile; else read again.

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
    /// A request refused (protocol.md §5), with its errno.
    Refused,
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

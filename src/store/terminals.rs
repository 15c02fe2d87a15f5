//! Stores and terminals: provisioning, status, password hashes, and the
//! failed-login counter that slows logins down.

use crate::ledger::{Standing, TerminalKind};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::integrity::{terminal_image, RowKeys};

type PgResult<T> = Result<T, tokio_postgres::Error>;

pub async fn add_store<C: GenericClient>(c: &C, store_id: &str, name: &str) -> PgResult<bool> {
    let n = c
        .execute(
            "INSERT INTO stores (store_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&store_id, &name],
        )
        .await?;
    Ok(n == 1)
}

pub async fn store_exists<C: GenericClient>(c: &C, store_id: &str) -> PgResult<bool> {
    Ok(
        c.query_opt("SELECT 1 FROM stores WHERE store_id = $1", &[&store_id])
            .await?
            .is_some(),
    )
}

/// A new active terminal with its password hash; `Ok(false)` if the id is taken.
pub async fn add_terminal<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    terminal: &str,
    store_id: &str,
    kind: TerminalKind,
    pw_hash: &[u8],
    pw_salt: &[u8],
) -> PgResult<bool> {
    let img = terminal_image(
        terminal,
        store_id,
        kind.as_str(),
        Standing::Active.as_str(),
        Some(pw_hash),
        Some(pw_salt),
    );
    let (mac, _) = keys.mac_with_id(&img, None);
    let n = c
        .execute(
            "INSERT INTO terminals (terminal_id, store_id, status, pw_hash, pw_salt, pw_key_id,
                 row_mac, mac_key_id, kind, sealed)
             VALUES ($1, NULLIF($2, '*'), 'active', $3, $4, 'hash_key', $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
            &[
                &terminal,
                &store_id,
                &pw_hash,
                &pw_salt,
                &mac,
                &keys.current_id(),
                &kind.as_str(),
                &keys.seal(&img),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// A terminal without a password (tests of the ledger, which never log in).
pub async fn add_terminal_without_password<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    terminal: &str,
    store_id: &str,
    kind: TerminalKind,
) -> PgResult<bool> {
    let active = Standing::Active.as_str();
    let img = terminal_image(terminal, store_id, kind.as_str(), active, None, None);
    let n = c
        .execute(
            "INSERT INTO terminals (terminal_id, store_id, status, row_mac, mac_key_id, kind, sealed)
             VALUES ($1, NULLIF($2, '*'), 'active', $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &terminal,
                &store_id,
                &keys.mac(&img, None),
                &keys.current_id(),
                &kind.as_str(),
                &keys.seal(&img),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Rewrites a terminal's MAC-covered values under its row lock, the MAC with them.
async fn rewrite<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    terminal: &str,
    status: Option<&str>,
    pw: Option<(&[u8], &[u8])>,
) -> PgResult<bool> {
    let Some(r) = c
        .query_opt(
            "SELECT coalesce(store_id, '*'), status, pw_hash, pw_salt, kind FROM terminals
              WHERE terminal_id = $1 FOR UPDATE",
            &[&terminal],
        )
        .await?
    else {
        return Ok(false);
    };
    let store_id: String = r.get(0);
    let kind: String = r.get(4);
    let status = status.map_or_else(|| r.get::<_, String>(1), str::to_owned);
    let (hash, salt): (Option<Vec<u8>>, Option<Vec<u8>>) = match pw {
        Some((h, s)) => (Some(h.to_vec()), Some(s.to_vec())),
        None => (r.get(2), r.get(3)),
    };
    let img = terminal_image(
        terminal,
        &store_id,
        &kind,
        &status,
        hash.as_deref(),
        salt.as_deref(),
    );
    Ok(c.execute(
        "UPDATE terminals SET status = $2, pw_hash = $3, pw_salt = $4, row_mac = $5,
                mac_key_id = $6, sealed = $7
          WHERE terminal_id = $1",
        &[
            &terminal,
            &status,
            &hash,
            &salt,
            &keys.mac(&img, None),
            &keys.current_id(),
            &keys.seal(&img),
        ],
    )
    .await?
        == 1)
}

#[derive(Clone, Debug)]
pub struct TerminalRow {
    pub terminal_id: String,
    pub store_id: String,
    pub status: String,
    pub pw_hash: Option<Vec<u8>>,
    pub pw_salt: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
    /// As stored (the MAC covers it); [`TerminalRow::kind`] is the typed value.
    pub kind_text: String,
}

impl TerminalRow {
    /// What the terminal is; `None` for a value the schema does not allow.
    pub fn kind(&self) -> Option<TerminalKind> {
        TerminalKind::parse(&self.kind_text)
    }

    /// The status as the code asks for it (the row keeps the stored text,
    /// which its MAC covers); `None` for a value the schema does not allow.
    pub fn standing(&self) -> Option<Standing> {
        Standing::parse(&self.status)
    }

    /// What the row's MAC covers.
    pub fn image(&self) -> crate::crypto::row::RowImage {
        terminal_image(
            &self.terminal_id,
            &self.store_id,
            &self.kind_text,
            &self.status,
            self.pw_hash.as_deref(),
            self.pw_salt.as_deref(),
        )
    }
}

pub(crate) const COLS: &str =
    "terminal_id, coalesce(store_id, '*'), status, pw_hash, pw_salt, created_at, row_mac,
     mac_key_id, kind";

pub(crate) fn row(r: &tokio_postgres::Row) -> TerminalRow {
    TerminalRow {
        terminal_id: r.get(0),
        store_id: r.get(1),
        status: r.get(2),
        pw_hash: r.get(3),
        pw_salt: r.get(4),
        created_at: r.get(5),
        row_mac: r.get(6),
        mac_key_id: r.get(7),
        kind_text: r.get(8),
    }
}

pub async fn get<C: GenericClient>(c: &C, terminal: &str) -> PgResult<Option<TerminalRow>> {
    Ok(c.query_opt(
        &format!("SELECT {COLS} FROM terminals WHERE terminal_id = $1"),
        &[&terminal],
    )
    .await?
    .map(|r| row(&r)))
}

pub async fn list<C: GenericClient>(c: &C) -> PgResult<Vec<TerminalRow>> {
    Ok(c.query(
        &format!("SELECT {COLS} FROM terminals ORDER BY terminal_id"),
        &[],
    )
    .await?
    .iter()
    .map(row)
    .collect())
}

/// Sets `active` or `disabled`; `Ok(false)` if there is no such terminal.
pub async fn set_status<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    terminal: &str,
    status: &str,
) -> PgResult<bool> {
    rewrite(c, keys, terminal, Some(status), None).await
}

pub async fn set_password<C: GenericClient>(
    c: &C,
    keys: &RowKeys,
    terminal: &str,
    pw_hash: &[u8],
    pw_salt: &[u8],
) -> PgResult<bool> {
    rewrite(c, keys, terminal, None, Some((pw_hash, pw_salt))).await
}

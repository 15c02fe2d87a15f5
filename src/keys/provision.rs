//! Stores and terminals: `store add`, `terminal add|disable|enable|
//! reset-password|list` (passwords made here, kept only as keyed hashes).

use crate::ledger::{Standing, TerminalKind};
use crate::store::audit::AuditKind;
use anyhow::{anyhow, bail};
use deadpool_postgres::{GenericClient, Pool};

use crate::config::Config;
use crate::crypto::keyed_hash::{self, DOMAIN_TERMINAL_PASSWORD};
use crate::crypto::Secret32;
use crate::protocol::grammar;
use crate::store::{keys as sk, terminals};

use super::admin::{audit_ops, row_keys};

pub async fn add_store(
    config: &Config,
    pool: &Pool,
    store_id: &str,
    name: &str,
) -> anyhow::Result<()> {
    grammar::terminal(store_id).map_err(|_| anyhow!("store ids are [A-Za-z0-9_-]{{1,32}}"))?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    if !terminals::add_store(&tx, store_id, name).await? {
        bail!("store {store_id} exists");
    }
    audit_ops(
        &tx,
        &rk,
        AuditKind::StoreAdd,
        None,
        serde_json::json!({"store": store_id, "name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A new random terminal password: 24 bytes from the OS CSPRNG (192 bits),
/// base64url without padding (32 characters).
pub fn random_password() -> zeroize::Zeroizing<String> {
    use base64::Engine;
    let s = Secret32::random();
    zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&s.expose()[..24]),
    )
}

fn check_password(pw: &str) -> anyhow::Result<()> {
    if pw.is_empty() || pw.len() > crate::protocol::message::MAX_PASSWORD {
        bail!("a terminal password is 1 to 128 bytes of UTF-8");
    }
    if pw.len() < 16 {
        bail!("a terminal password set by hand must be at least 16 characters (use the generated one)");
    }
    Ok(())
}

async fn hash_key(config: &Config, pool: &Pool) -> anyhow::Result<Secret32> {
    let client = pool.get().await?;
    Ok(super::load_secrets(&config.keys_dir, &client)
        .await?
        .hash_key)
}

fn hash_password(key: &Secret32, pw: &str) -> ([u8; 32], [u8; keyed_hash::SALT_LEN]) {
    let salt = keyed_hash::random_salt();
    (
        keyed_hash::keyed_hash(key, DOMAIN_TERMINAL_PASSWORD, &salt, pw.as_bytes()),
        salt,
    )
}

/// The password `given` (checked) or a generated one, and its keyed hash
/// and salt as `terminals` stores them.
async fn new_password(
    config: &Config,
    pool: &Pool,
    given: Option<String>,
) -> anyhow::Result<(
    zeroize::Zeroizing<String>,
    [u8; 32],
    [u8; keyed_hash::SALT_LEN],
)> {
    let pw = match given {
        Some(p) => {
            check_password(&p)?;
            zeroize::Zeroizing::new(p)
        }
        None => random_password(),
    };
    let key = hash_key(config, pool).await?;
    let (hash, salt) = hash_password(&key, &pw);
    Ok((pw, hash, salt))
}

/// `terminal add`: returns the password (generated unless `password` given).
pub async fn add_terminal(
    config: &Config,
    pool: &Pool,
    terminal: &str,
    store_id: &str,
    kind: TerminalKind,
    password: Option<String>,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    grammar::terminal(terminal).map_err(|_| anyhow!("terminal ids are [A-Za-z0-9_-]{{1,32}}"))?;
    let (pw, hash, salt) = new_password(config, pool, password).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    if store_id == crate::ledger::ALL_STORES {
        if kind != TerminalKind::Office {
            bail!("only an office terminal belongs to every store");
        }
    } else if !terminals::store_exists(&tx, store_id).await? {
        bail!("no store {store_id}: add it with `cardswitch store add`");
    }
    if !terminals::add_terminal(&tx, &rk, terminal, store_id, kind, &hash, &salt).await? {
        bail!("terminal {terminal} exists");
    }
    audit_ops(
        &tx,
        &rk,
        AuditKind::TerminalAdd,
        Some(terminal),
        serde_json::json!({"store": store_id, "kind": kind.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(pw)
}

pub async fn set_terminal_status(
    config: &Config,
    pool: &Pool,
    terminal: &str,
    enable: bool,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    let status = if enable {
        Standing::Active
    } else {
        Standing::Disabled
    }
    .as_str();
    if !terminals::set_status(&tx, &rk, terminal, status).await? {
        bail!("no terminal {terminal}");
    }
    if !enable {
        sk::revoke_terminal(&tx, &rk, terminal).await?;
        sk::notify(&tx, &format!("revoke:{terminal}")).await?;
    }
    audit_ops(
        &tx,
        &rk,
        if enable {
            AuditKind::TerminalEnable
        } else {
            AuditKind::TerminalDisable
        },
        Some(terminal),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `terminal reset-password`: a new password; the terminal's sessions end.
pub async fn reset_password(
    config: &Config,
    pool: &Pool,
    terminal: &str,
    password: Option<String>,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let (pw, hash, salt) = new_password(config, pool, password).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    if !terminals::set_password(&tx, &rk, terminal, &hash, &salt).await? {
        bail!("no terminal {terminal}");
    }
    sk::revoke_terminal(&tx, &rk, terminal).await?;
    sk::notify(&tx, &format!("revoke:{terminal}")).await?;
    audit_ops(
        &tx,
        &rk,
        AuditKind::TerminalResetPassword,
        Some(terminal),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(pw)
}

pub async fn list_terminals(pool: &Pool) -> anyhow::Result<Vec<terminals::TerminalRow>> {
    let client = pool.get().await?;
    Ok(terminals::list(&client).await?)
}

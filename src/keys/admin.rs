//! What `cardswitch keys …`, `store …` and `terminal …` do: provisioning and
//! rotation. Each change is one database transaction, audited.

use crate::store::audit::AuditKind;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};

use super::day::{self, random_hex};
use super::ring::Keyring;
use crate::config::Config;
use crate::crypto::rsa::{RsaPrivate, RsaPublic};
use crate::crypto::seal::MasterKey;
use crate::protocol::canonical;
use crate::protocol::grammar::base64_encode;
use crate::store::{audit, keys as sk, terminals};

pub use super::init::{init, InitReport};
pub use super::provision::{
    add_store, add_terminal, list_terminals, random_password, reset_password, set_terminal_status,
};
pub use super::rotate::{rotate_master, rotate_root, rotate_row_key, rotate_signer};
pub use super::status::{status, KeyStatus, RootStatus, SignerStatus};

/// Days before its expiry from which the signer is reported as due.
pub const SIGNER_WARN_DAYS: i64 = 14;

pub(super) fn actor() -> Option<String> {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .ok()
}

/// The row keys, opened with the master key file of `config`.
pub async fn row_keys<C: GenericClient>(
    config: &Config,
    c: &C,
) -> anyhow::Result<crate::integrity::RowKeys> {
    let master = super::load_master(&config.keys_dir)?;
    super::load_row_keys(c, &master).await
}

pub(super) async fn audit_ops<C: GenericClient>(
    c: &C,
    keys: &crate::integrity::RowKeys,
    kind: AuditKind,
    terminal: Option<&str>,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    audit::insert(
        c,
        keys,
        kind,
        terminal,
        actor().as_deref(),
        Some("cli"),
        &detail,
    )
    .await?;
    Ok(())
}

pub fn root_key_path(keys_dir: &Path, root_id: &str) -> PathBuf {
    keys_dir.join(format!("root-{root_id}.pem"))
}

/// Writes a private key file with mode 0600; refuses to overwrite.
pub fn write_private_file(path: &Path, key: &RsaPrivate) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    f.write_all(key.to_pkcs8_pem().as_bytes())?;
    f.sync_all()?;
    Ok(())
}

pub fn read_private_file(path: &Path) -> anyhow::Result<RsaPrivate> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    RsaPrivate::from_pkcs8_pem(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Signs the signer statement of protocol.md §3.1 with `root`.
pub fn certify(
    root: &RsaPrivate,
    signer_id: &str,
    not_after: i64,
    signer_pub: &RsaPublic,
) -> Vec<u8> {
    let st = canonical::signer_statement(
        signer_id,
        not_after as u64,
        &base64_encode(signer_pub.spki_der()),
    );
    root.sign_pss_sha256(st.as_bytes())
}

pub(super) fn new_signer_row(
    signer: &RsaPrivate,
    master: &MasterKey,
    now: DateTime<Utc>,
    validity_days: u32,
) -> sk::SignerRow {
    let signer_id = format!("s.{}.{}", now.format("%Y%m%d"), random_hex(4));
    sk::SignerRow {
        sealed_private: master.seal(&day::signer_aad(&signer_id), signer.to_pkcs8_der().expose()),
        signer_id,
        public_der: signer.public().spki_der().to_vec(),
        master_key_id: master.id().to_owned(),
        not_after_ms: (now + chrono::TimeDelta::days(i64::from(validity_days))).timestamp_millis(),
        created_at: now,
    }
}

/// Whether keys exist at all (the master key file in the keys dir).
pub fn keys_exist(config: &Config) -> bool {
    super::master_key_path(&config.keys_dir).exists()
}

/// The current root's public key.
pub async fn root_public(pool: &Pool) -> anyhow::Result<RsaPublic> {
    let client = pool.get().await?;
    let roots = sk::roots(&client).await?;
    let cur = roots
        .iter()
        .find(|r| r.overlap_until.is_none())
        .ok_or_else(|| anyhow!("no root key; run `cardswitch keys init`"))?;
    RsaPublic::from_spki_der(&cur.public_der).map_err(|e| anyhow!("root key: {e}"))
}

/// `keys revoke ID`: every day key and session of the terminal ends now, on
/// every instance (NOTIFY, delivered at commit). Returns sessions ended.
pub async fn revoke(config: &Config, pool: &Pool, terminal: &str) -> anyhow::Result<u64> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    if terminals::get(&tx, terminal).await?.is_none() {
        bail!("no terminal {terminal}");
    }
    let n = sk::revoke_terminal(&tx, &rk, terminal).await?;
    sk::notify(&tx, &format!("revoke:{terminal}")).await?;
    audit_ops(
        &tx,
        &rk,
        AuditKind::Revoke,
        Some(terminal),
        serde_json::json!({"sessions": n}),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// `keys rotate-terminal ID`: revoke, then a new day key for today.
pub async fn rotate_terminal(
    config: &Config,
    pool: &Pool,
    terminal: &str,
) -> anyhow::Result<String> {
    let n = revoke(config, pool, terminal).await?;
    let ring = {
        let client = pool.get().await?;
        Keyring::load(config, &client).await?
    };
    let day = day::business_day(Utc::now(), config.business.offset());
    let row = ring.day_key_for(pool, config, terminal, day).await?;
    let client = pool.get().await?;
    let rk = &ring.row_keys;
    audit_ops(
        &client,
        rk,
        AuditKind::RotateTerminal,
        Some(terminal),
        serde_json::json!({"key_id": row.key_id, "sessions_ended": n}),
    )
    .await?;
    Ok(row.key_id)
}

/// `keys pregen --days N`: day keys for today and the next N days.
pub async fn pregen(config: &Config, pool: &Pool, days: u32) -> anyhow::Result<usize> {
    let ring = {
        let client = pool.get().await?;
        Keyring::load(config, &client).await?
    };
    ring.pregen(pool, config, Utc::now(), days).await
}

//! Webhook endpoints' signing secrets (protocol.md §8): sealed under the
//! master key at rest, as `sealed_secrets` row `webhook:{name}`, so that
//! `keys rotate-master` re-seals them with every other secret.

use anyhow::{anyhow, bail};
use deadpool_postgres::Pool;
use zeroize::Zeroizing;

use super::admin::{audit_ops, row_keys};
use super::secret_aad;
use crate::config::Config;
use crate::crypto::seal::MasterKey;
use crate::crypto::SecretVec;
use crate::store::audit::AuditKind;
use crate::store::events::{self, secret_name, Webhook};
use crate::store::{secrets, terminals};

/// A signing secret's shortest and longest length (bytes of UTF-8).
pub const SECRET_MIN_BYTES: usize = 16;
pub const SECRET_MAX_BYTES: usize = 256;

/// Registers `w` with its secret, in one transaction, audited.
pub async fn add(
    config: &Config,
    pool: &Pool,
    w: &Webhook,
    secret: Zeroizing<String>,
) -> anyhow::Result<()> {
    check(w, &secret)?;
    let master = super::load_master(&config.keys_dir)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    if let Some(s) = &w.store_id {
        if !terminals::store_exists(&tx, s).await? {
            bail!("no store {s}");
        }
    }
    if !events::add_webhook(&tx, w).await? {
        bail!("webhook {} exists", w.name);
    }
    let name = secret_name(&w.name);
    let sealed = master.seal(&secret_aad(&name), secret.as_bytes());
    if !secrets::insert(&tx, &name, master.id(), &sealed).await? {
        bail!("a secret for webhook {} exists", w.name);
    }
    let detail = serde_json::json!({"webhook": w.name, "url": w.url, "ops": w.ops,
        "store": w.store_id, "include_phone": w.include_phone});
    audit_ops(&tx, &rk, AuditKind::WebhookAdd, None, detail).await?;
    tx.commit().await?;
    Ok(())
}

fn check(w: &Webhook, secret: &str) -> anyhow::Result<()> {
    let name_ok = (1..=32).contains(&w.name.len())
        && w.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        bail!("webhook names are [A-Za-z0-9_-]{{1,32}}");
    }
    let uri: hyper::Uri = w
        .url
        .parse()
        .map_err(|_| anyhow!("{} is not a URL", w.url))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!("the URL must be http(s)://host[:port]/path");
    }
    for op in w.ops.iter().flatten() {
        if crate::ledger::OpKind::from_stored(op).is_none() {
            bail!("{op} is not an op");
        }
    }
    if !(SECRET_MIN_BYTES..=SECRET_MAX_BYTES).contains(&secret.len()) {
        bail!("the secret must be {SECRET_MIN_BYTES}-{SECRET_MAX_BYTES} bytes");
    }
    Ok(())
}

/// Disables an endpoint, audited.
pub async fn disable(config: &Config, pool: &Pool, name: &str) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rk = row_keys(config, &tx).await?;
    if !events::disable_webhook(&tx, name).await? {
        bail!("no webhook {name}");
    }
    let detail = serde_json::json!({"webhook": name});
    audit_ops(&tx, &rk, AuditKind::WebhookDisable, None, detail).await?;
    tx.commit().await?;
    Ok(())
}

/// An endpoint's signing secret, opened with the master key it is sealed
/// under.
pub fn open_secret(
    master: &MasterKey,
    webhook: &str,
    sealed_under: &str,
    sealed: &[u8],
) -> anyhow::Result<SecretVec> {
    if sealed_under != master.id() {
        bail!("the secret of webhook {webhook} is sealed under another master key");
    }
    master
        .open(&secret_aad(&secret_name(webhook)), sealed)
        .map_err(|e| anyhow!("cannot open the secret of webhook {webhook}: {e}"))
}

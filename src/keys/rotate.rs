//! The rotations of the key hierarchy: `keys rotate-signer`, `rotate-root`,
//! `rotate-master` and `rotate-row-key`, each audited.

use crate::store::audit::AuditKind;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::admin::{
    audit_ops, certify, new_signer_row, read_private_file, root_key_path, write_private_file,
};
use super::day;
use super::ring::open_signer;
use crate::config::Config;
use crate::crypto::rsa::{RsaPrivate, RsaPublic};
use crate::crypto::seal::MasterKey;
use crate::store::keys as sk;

fn valid_roots(roots: &[sk::RootRow], now: DateTime<Utc>) -> Vec<&sk::RootRow> {
    roots
        .iter()
        .filter(|r| r.overlap_until.map_or(true, |u| u > now))
        .collect()
}

/// `keys rotate-signer`: a new signer certified by every valid root whose key
/// file is at hand (`root_files`, or every `root-*.pem` in the keys dir).
/// Returns the new signer id and warnings.
pub async fn rotate_signer(
    config: &Config,
    pool: &Pool,
    root_files: &[PathBuf],
) -> anyhow::Result<(String, Vec<String>)> {
    let master = super::load_master(&config.keys_dir)?;
    let mut client = pool.get().await?;
    let now = Utc::now();
    let roots = sk::roots(&client).await?;
    let valid = valid_roots(&roots, now);
    let files: Vec<PathBuf> = if root_files.is_empty() {
        valid
            .iter()
            .map(|r| root_key_path(&config.keys_dir, &r.root_id))
            .filter(|p| p.exists())
            .collect()
    } else {
        root_files.to_vec()
    };
    let mut keys = Vec::new();
    for f in &files {
        let k = read_private_file(f)?;
        let id = k.public().short_id();
        let Some(r) = valid.iter().find(|r| r.root_id == id) else {
            bail!("{} is not a current or overlapping root key", f.display());
        };
        if r.public_der != k.public().spki_der() {
            bail!("{} does not match root {id}", f.display());
        }
        keys.push((id, k));
    }
    let current = valid
        .iter()
        .find(|r| r.overlap_until.is_none())
        .ok_or_else(|| anyhow!("no current root key"))?;
    if !keys.iter().any(|(id, _)| *id == current.root_id) {
        bail!(
            "the current root key {} is needed: pass --root-key FILE",
            current.root_id
        );
    }
    let mut warnings = Vec::new();
    for r in &valid {
        if !keys.iter().any(|(id, _)| *id == r.root_id) {
            warnings.push(format!(
                "root {} (overlapping) does not certify the new signer: terminals pinning it \
                 get 1004 from hello until re-provisioned",
                r.root_id
            ));
        }
    }
    let signer = tokio::task::spawn_blocking(|| RsaPrivate::generate(3072))
        .await?
        .map_err(|e| anyhow!("RSA-3072: {e}"))?;
    let row = new_signer_row(&signer, &master, now, config.keys.signer_validity_days);
    let tx = client.transaction().await?;
    let rk = super::load_row_keys(&tx, &master).await?;
    sk::insert_signer(&tx, &row).await?;
    for (id, k) in &keys {
        let sig = certify(k, &row.signer_id, row.not_after_ms, &signer.public());
        sk::insert_signer_cert(&tx, &row.signer_id, id, &sig).await?;
    }
    audit_ops(
        &tx,
        &rk,
        AuditKind::RotateSigner,
        None,
        serde_json::json!({"signer": row.signer_id, "roots": keys.iter().map(|(i, _)| i).collect::<Vec<_>>()}),
    )
    .await?;
    sk::notify(&tx, "flush").await?;
    tx.commit().await?;
    Ok((row.signer_id, warnings))
}

/// `keys rotate-root`: a new root key file; the old root keeps certifying for
/// `keys.root_overlap_days`. The new root certifies every unexpired signer.
pub async fn rotate_root(config: &Config, pool: &Pool) -> anyhow::Result<(String, PathBuf)> {
    let master = super::load_master(&config.keys_dir)?;
    let mut client = pool.get().await?;
    let signer_row = sk::current_signer(&client)
        .await?
        .ok_or_else(|| anyhow!("no signer key; run `cardswitch keys init`"))?;
    // Proves the master key file opens the signer before anything changes.
    open_signer(&signer_row, &master)?;
    let root = tokio::task::spawn_blocking(|| RsaPrivate::generate(3072))
        .await?
        .map_err(|e| anyhow!("RSA-3072: {e}"))?;
    let root_id = root.public().short_id();
    let file = root_key_path(&config.keys_dir, &root_id);
    write_private_file(&file, &root)?;
    let until = Utc::now() + chrono::TimeDelta::days(i64::from(config.keys.root_overlap_days));
    let result = async {
        let tx = client.transaction().await?;
        let rk = super::load_row_keys(&tx, &master).await?;
        sk::retire_current_roots(&tx, until).await?;
        sk::insert_root(&tx, &root_id, root.public().spki_der()).await?;
        // Every signer still valid, not only the current one: today's day
        // keys may have been signed by an older signer.
        let now_ms = Utc::now().timestamp_millis();
        for s in sk::signers(&tx).await? {
            if s.not_after_ms <= now_ms {
                continue;
            }
            let public = RsaPublic::from_spki_der(&s.public_der)
                .map_err(|e| anyhow!("signer {}: {e}", s.signer_id))?;
            let sig = certify(&root, &s.signer_id, s.not_after_ms, &public);
            sk::insert_signer_cert(&tx, &s.signer_id, &root_id, &sig).await?;
        }
        audit_ops(
            &tx,
            &rk,
            AuditKind::RotateRoot,
            None,
            serde_json::json!({"root": root_id, "overlap_until": until.to_rfc3339()}),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&file);
        return Err(e);
    }
    Ok((root_id, file))
}

/// `keys rotate-master`: a new master key; every sealed secret re-sealed in
/// one transaction; the key file replaced atomically (written beside, synced,
/// renamed over the old one only once the database has committed).
pub async fn rotate_master(config: &Config, pool: &Pool) -> anyhow::Result<(String, String)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let keys_dir = &config.keys_dir;
    let old = super::load_master(keys_dir)?;
    let new = MasterKey::generate();
    let path = super::master_key_path(keys_dir);
    let tmp = keys_dir.join("master.key.new");
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(new.to_file_text().as_bytes())?;
        f.sync_all()?;
    }
    let mut client = pool.get().await?;
    let result = async {
        let tx = client.transaction().await?;
        // Opened before the re-seal (row keys sealed under the old key).
        let rk = super::load_row_keys(&tx, &old).await?;
        let check = |id: &str, what: &str| -> anyhow::Result<()> {
            if id != old.id() {
                bail!("{what} is sealed under master key {id}, not {}", old.id());
            }
            Ok(())
        };
        let mut count = 0usize;
        for (name, id, blob) in sk::sealed_secrets_for_update(&tx).await? {
            check(&id, &name)?;
            let aad = super::secret_aad(&name);
            let plain = old.open(&aad, &blob).map_err(|e| anyhow!("{name}: {e}"))?;
            sk::update_sealed_secret(&tx, &name, &new.seal(&aad, plain.expose()), new.id()).await?;
            count += 1;
        }
        for s in sk::signers(&tx).await? {
            check(&s.master_key_id, &s.signer_id)?;
            let aad = day::signer_aad(&s.signer_id);
            let plain = old
                .open(&aad, &s.sealed_private)
                .map_err(|e| anyhow!("{}: {e}", s.signer_id))?;
            sk::update_signer_seal(&tx, &s.signer_id, &new.seal(&aad, plain.expose()), new.id())
                .await?;
            count += 1;
        }
        for k in sk::live_day_keys(&tx).await? {
            check(&k.master_key_id, &k.key_id)?;
            let (Some(p), Some(d)) = (&k.sealed_private, &k.sealed_k_day) else {
                continue;
            };
            let pa = day::day_private_aad(&k.key_id);
            let da = day::day_secret_aad(&k.key_id);
            let p = old.open(&pa, p).map_err(|e| anyhow!("{}: {e}", k.key_id))?;
            let d = old.open(&da, d).map_err(|e| anyhow!("{}: {e}", k.key_id))?;
            sk::update_day_key_seal(
                &tx,
                &k.key_id,
                &new.seal(&pa, p.expose()),
                &new.seal(&da, d.expose()),
                new.id(),
            )
            .await?;
            count += 2;
        }
        audit_ops(
            &tx,
            &rk,
            AuditKind::RotateMaster,
            None,
            serde_json::json!({"old": old.id(), "new": new.id(), "resealed": count}),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).with_context(|| {
        format!(
            "the database is re-sealed under {}, but renaming {} to {} failed: rename it by hand",
            new.id(),
            tmp.display(),
            path.display()
        )
    })?;
    if let Ok(dir) = std::fs::File::open(keys_dir) {
        let _ = dir.sync_all();
    }
    // After the rename, so an instance reloading on this reads the new file.
    sk::notify(&client, "master").await?;
    Ok((old.id().to_owned(), new.id().to_owned()))
}

/// `keys rotate-row-key`: a new row key (unless an interrupted rotation is
/// being resumed), then every row re-MACed under it (`store::rekey`).
/// Repeats while a pass still finds rows a daemon wrote under an older key
/// (at most a few passes). Returns the report of the last pass.
pub async fn rotate_row_key(
    config: &Config,
    pool: &Pool,
    progress: bool,
    adopt: bool,
) -> anyhow::Result<crate::store::rekey::RekeyReport> {
    use crate::store::rekey;
    let master = super::load_master(&config.keys_dir)?;
    let keys = {
        let c = pool.get().await?;
        let keys = super::load_row_keys(&c, &master).await?;
        if rekey::rows_behind(pool, &keys.current_id()).await? == 0 {
            super::add_row_key(&c, &master).await?;
            super::load_row_keys(&c, &master).await?
        } else {
            keys
        }
    };
    let mut total = crate::store::rekey::RekeyReport::default();
    for _pass in 0..5 {
        let behind = rekey::rows_behind(pool, &keys.current_id()).await?;
        let pb = {
            use std::io::IsTerminal;
            if progress && std::io::stderr().is_terminal() {
                let pb = indicatif::ProgressBar::new(behind.max(0) as u64);
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "re-MAC [{bar:40}] {pos}/{len} rows, {per_sec}, eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                pb
            } else {
                indicatif::ProgressBar::hidden()
            }
        };
        let r = rekey::rekey(pool, &keys, adopt, &pb).await?;
        pb.finish_and_clear();
        let again = r.rewritten > 0 && rekey::rows_behind(pool, &keys.current_id()).await? > 0;
        total.key_id = r.key_id;
        total.rewritten += r.rewritten;
        total.already = r.already;
        total.refused = r.refused;
        if !again {
            break;
        }
    }
    let c = pool.get().await?;
    audit_ops(
        &c,
        &keys,
        AuditKind::RotateRowKey,
        None,
        serde_json::json!({"key": total.key_id, "rewritten": total.rewritten,
                           "refused": total.refused.len(), "adopted_unmaced": adopt}),
    )
    .await?;
    Ok(total)
}

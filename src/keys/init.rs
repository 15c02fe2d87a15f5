//! `keys init`: the first keys of a database (master key file, root key
//! file, first signer, hash key and row keys), made once.

use crate::store::audit::AuditKind;
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use chrono::Utc;
use deadpool_postgres::Pool;

use super::admin::{audit_ops, certify, new_signer_row, root_key_path, write_private_file};
use crate::config::Config;
use crate::crypto::rsa::RsaPrivate;
use crate::crypto::seal::MasterKey;
use crate::store::{keys as sk, secrets};

/// What `keys init` made.
pub struct InitReport {
    pub master_id: String,
    pub root_id: String,
    pub root_file: PathBuf,
    pub signer_id: String,
}

/// `keys init`: master key file, root key (RSA-3072) file, first signer
/// certified by it, hash key. Refuses when any of them exists. `root` and
/// `signer` may be given (tests share pre-generated keys); else generated.
pub async fn init(
    config: &Config,
    pool: &Pool,
    root: Option<RsaPrivate>,
    signer: Option<RsaPrivate>,
) -> anyhow::Result<InitReport> {
    let keys_dir = &config.keys_dir;
    if super::master_key_path(keys_dir).exists() {
        bail!(
            "{} exists: keys are already initialised (nothing changed)",
            super::master_key_path(keys_dir).display()
        );
    }
    let mut client = pool.get().await?;
    if !sk::roots(&client).await?.is_empty()
        || sk::current_signer(&client).await?.is_some()
        || secrets::get(&client, super::HASH_KEY).await?.is_some()
    {
        bail!("the database already holds keys: refusing to overwrite them (nothing changed)");
    }
    let (root, signer) = match (root, signer) {
        (Some(r), Some(s)) => (r, s),
        (r, s) => {
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let r = match r {
                    Some(r) => r,
                    None => RsaPrivate::generate(3072).map_err(|e| anyhow!("RSA-3072: {e}"))?,
                };
                let s = match s {
                    Some(s) => s,
                    None => RsaPrivate::generate(3072).map_err(|e| anyhow!("RSA-3072: {e}"))?,
                };
                Ok((r, s))
            })
            .await??
        }
    };
    let master = MasterKey::generate();
    let root_pub = root.public();
    let root_id = root_pub.short_id();
    let now = Utc::now();
    let row = new_signer_row(&signer, &master, now, config.keys.signer_validity_days);
    let cert = certify(&root, &row.signer_id, row.not_after_ms, &signer.public());

    let root_file = root_key_path(keys_dir, &root_id);
    super::write_master(keys_dir, &master)?;
    let written = (|| -> anyhow::Result<()> {
        write_private_file(&root_file, &root)?;
        Ok(())
    })();
    let committed = match written {
        Err(e) => Err(e),
        Ok(()) => async {
            let tx = client.transaction().await?;
            sk::insert_root(&tx, &root_id, root_pub.spki_der()).await?;
            sk::insert_signer(&tx, &row).await?;
            sk::insert_signer_cert(&tx, &row.signer_id, &root_id, &cert).await?;
            if !super::create_hash_key(&tx, &master).await? {
                bail!("the database already has a hash key");
            }
            super::create_row_keys(&tx, &master).await?;
            let rk = super::load_row_keys(&tx, &master).await?;
            audit_ops(
                &tx,
                &rk,
                AuditKind::KeysInit,
                None,
                serde_json::json!({"root": root_id, "signer": row.signer_id, "master": master.id()}),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await,
    };
    if let Err(e) = committed {
        let _ = std::fs::remove_file(super::master_key_path(keys_dir));
        let _ = std::fs::remove_file(&root_file);
        return Err(e);
    }
    Ok(InitReport {
        master_id: master.id().to_owned(),
        root_id,
        root_file,
        signer_id: row.signer_id,
    })
}

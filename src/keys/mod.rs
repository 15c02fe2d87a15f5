//! Key lifecycle: the master key file and the secrets sealed under it
//! (this file), business days and day keys (`day`), the daemon's keys at run
//! time (`ring`), and what ops do with them (`admin`).

pub mod admin;
pub mod day;
mod init;
pub mod listener;
mod provision;
pub mod ring;
mod rotate;
mod status;
pub mod webhooks;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use deadpool_postgres::GenericClient;

use crate::crypto::seal::MasterKey;
use crate::crypto::Secret32;
use crate::integrity::{row_key_id, RowKeys, DATA_KEY, ROW_KEY_PREFIX};
use crate::store::secrets;

pub const MASTER_KEY_FILE: &str = "master.key";
/// Name of the sealed secret that keys every password and PIN hash.
pub const HASH_KEY: &str = "hash_key";

/// What the daemon needs from key material to run transactions.
pub struct Secrets {
    pub master: MasterKey,
    /// Keys the hashes of terminal passwords, card PINs and manager PINs. It
    /// is not derived from the master key, so rotating the master key re-seals
    /// it and every stored hash stays valid.
    pub hash_key: Secret32,
    /// The row keys and the data key of tamper evidence.
    pub row_keys: RowKeys,
}

pub fn master_key_path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(MASTER_KEY_FILE)
}

/// Reads the master key file; refuses one readable by group or others.
pub fn load_master(keys_dir: &Path) -> anyhow::Result<MasterKey> {
    use std::os::unix::fs::PermissionsExt;
    let path = master_key_path(keys_dir);
    let meta = std::fs::metadata(&path).map_err(|e| {
        anyhow!(
            "cannot read the master key {}: {e}; create keys with `cardswitch keys init`",
            path.display()
        )
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the master key {} is readable by others: chmod 600 it",
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    MasterKey::from_file_text(&text).map_err(|e| anyhow!("master key {}: {e}", path.display()))
}

/// Writes a new master key file with mode 0600; refuses to overwrite.
pub fn write_master(keys_dir: &Path, master: &MasterKey) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(keys_dir)
        .with_context(|| format!("cannot create {}", keys_dir.display()))?;
    let path = master_key_path(keys_dir);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    f.write_all(master.to_file_text().as_bytes())?;
    f.sync_all()?;
    Ok(path)
}

/// The associated data binding a sealed secret to its name.
pub(crate) fn secret_aad(name: &str) -> Vec<u8> {
    format!("cardswitch v1 sealed secret\n{name}").into_bytes()
}

/// Creates the hash key if there is none. Returns whether it made one.
pub async fn create_hash_key<C: GenericClient>(c: &C, master: &MasterKey) -> anyhow::Result<bool> {
    let key = Secret32::random();
    let sealed = master.seal(&secret_aad(HASH_KEY), key.expose());
    Ok(secrets::insert(c, HASH_KEY, master.id(), &sealed).await?)
}

/// Opens the hash key with the master key.
pub async fn load_hash_key<C: GenericClient>(
    c: &C,
    master: &MasterKey,
) -> anyhow::Result<Secret32> {
    let (key_id, sealed) = secrets::get(c, HASH_KEY)
        .await?
        .ok_or_else(|| anyhow!("no hash key in the database; run `cardswitch keys init`"))?;
    if key_id != master.id() {
        bail!(
            "the hash key is sealed under master key {key_id}, but the master key file is {}",
            master.id()
        );
    }
    let plain = master
        .open(&secret_aad(HASH_KEY), &sealed)
        .map_err(|e| anyhow!("cannot open the hash key: {e}"))?;
    Ok(plain.to_secret32()?)
}

/// Loads everything the daemon needs: the master key file and the hash key.
pub async fn load_secrets<C: GenericClient>(keys_dir: &Path, c: &C) -> anyhow::Result<Secrets> {
    let master = load_master(keys_dir)?;
    let hash_key = load_hash_key(c, &master).await?;
    let row_keys = load_row_keys(c, &master).await?;
    Ok(Secrets {
        master,
        hash_key,
        row_keys,
    })
}

/// Creates the data key and the first row key if there are none (a
/// database from before issue 5 gets them on the daemon's first start).
pub async fn create_row_keys<C: GenericClient>(c: &C, master: &MasterKey) -> anyhow::Result<bool> {
    let data = Secret32::random();
    let row = Secret32::random();
    let name = format!("{ROW_KEY_PREFIX}{}", row_key_id(&row));
    Ok(secrets::insert_row_keys(
        c,
        master.id(),
        &master.seal(&secret_aad(DATA_KEY), data.expose()),
        &name,
        &master.seal(&secret_aad(&name), row.expose()),
    )
    .await?)
}

/// Adds a new row key, which signs from now on (`keys rotate-row-key`).
pub async fn add_row_key<C: GenericClient>(c: &C, master: &MasterKey) -> anyhow::Result<String> {
    let row = Secret32::random();
    let id = row_key_id(&row);
    let name = format!("{ROW_KEY_PREFIX}{id}");
    if !secrets::insert(
        c,
        &name,
        master.id(),
        &master.seal(&secret_aad(&name), row.expose()),
    )
    .await?
    {
        bail!("row key {id} exists");
    }
    Ok(id)
}

fn open_secret(
    master: &MasterKey,
    name: &str,
    key_id: &str,
    sealed: &[u8],
) -> anyhow::Result<Secret32> {
    if key_id != master.id() {
        bail!(
            "{name} is sealed under master key {key_id}, but the master key file is {}",
            master.id()
        );
    }
    let plain = master
        .open(&secret_aad(name), sealed)
        .map_err(|e| anyhow!("cannot open {name}: {e}"))?;
    Ok(plain.to_secret32()?)
}

/// Opens the row keys (oldest first; the newest signs) and the data key,
/// creating them first if the database has none.
pub async fn load_row_keys<C: GenericClient>(c: &C, master: &MasterKey) -> anyhow::Result<RowKeys> {
    if secrets::get(c, DATA_KEY).await?.is_none() {
        create_row_keys(c, master).await?;
    }
    let (key_id, sealed) = secrets::get(c, DATA_KEY)
        .await?
        .ok_or_else(|| anyhow!("no data key in the database"))?;
    let data = open_secret(master, DATA_KEY, &key_id, &sealed)?;
    let mut macs = Vec::new();
    for (name, key_id, sealed) in secrets::list_prefix(c, ROW_KEY_PREFIX).await? {
        let k = open_secret(master, &name, &key_id, &sealed)?;
        if name[ROW_KEY_PREFIX.len()..] != row_key_id(&k) {
            bail!("the row key {name} does not match its name");
        }
        macs.push(k);
    }
    if macs.is_empty() {
        bail!("no row key in the database; run `cardswitch keys init`");
    }
    Ok(RowKeys::new(macs, data))
}

/// Adds to `keys` the row keys created since they were loaded (by
/// `keys rotate-row-key` in another process); the newest signs from then on.
/// Called when a row names a key id this process does not know.
pub async fn refresh_row_keys<C: GenericClient>(
    c: &C,
    keys_dir: &Path,
    keys: &RowKeys,
) -> anyhow::Result<()> {
    let master = load_master(keys_dir)?;
    let all = secrets::list_prefix(c, ROW_KEY_PREFIX).await?;
    let newest = all.last().map(|(n, _, _)| n.clone());
    for (name, key_id, sealed) in all {
        let id = &name[ROW_KEY_PREFIX.len()..];
        if keys.knows(id) && Some(&name) != newest.as_ref() {
            continue;
        }
        let k = open_secret(&master, &name, &key_id, &sealed)?;
        if row_key_id(&k) != id {
            bail!("the row key {name} does not match its name");
        }
        if keys.current_id() != id {
            keys.add(k);
        }
    }
    Ok(())
}

/// Runs a txn (`store::txn::run`); should a row name a row key this process
/// has not loaded (a `keys rotate-row-key` running), loads the new keys from
/// the database and runs it once more. The store never reads key files, so
/// this is the ledger's entry point for every caller that posts.
pub async fn run_txn(
    pool: &deadpool_postgres::Pool,
    env: &crate::store::txn::TxnEnv,
    ctx: &crate::store::txn::TxnContext,
    form: &crate::protocol::InnerForm,
) -> crate::Result<crate::store::txn::Committed> {
    use crate::store::txn;
    use crate::Error;
    let id = match txn::run(pool, env, ctx, form).await {
        Err(Error::UnknownRowKey(id)) => id,
        other => return other,
    };
    tracing::info!(
        key_id = id,
        "a row names a new row key: loading the row keys"
    );
    let client = pool.get().await?;
    refresh_row_keys(&client, &env.config.keys_dir, &env.row_keys)
        .await
        .map_err(|e| Error::internal(format!("cannot load the row keys: {e:#}")))?;
    drop(client);
    match txn::run(pool, env, ctx, form).await {
        Err(Error::UnknownRowKey(id)) => {
            // No such key even now: the row's key id was forged.
            let what = format!("a row names row key {id}, which does not exist");
            txn::tampered(pool, env, ctx, form, &what).await;
            Err(Error::Tampered(what))
        }
        other => other,
    }
}

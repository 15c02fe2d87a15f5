//! The daemon's keys at run time: the master key, the hash key, the signer,
//! opened day keys and resolved sessions, with the caches that keep RSA and
//! key openings off the hot path.
//!
//! The database is the source of truth for revocation. The session cache is
//! used only while this instance's LISTEN connection is up: `keys revoke`
//! and `keys rotate-terminal` NOTIFY every instance, which drop the
//! terminal's entries at once; while the listener is down (or reconnecting)
//! every request checks the database, so a lost notification can never keep
//! a revoked session alive.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, bail};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Pool};

use super::day::{self, Signer};
use crate::config::Config;
use crate::crypto::kdf::{self, SessionKeys};
use crate::crypto::rsa::{RsaPrivate, RsaPublic};
use crate::crypto::seal::MasterKey;
use crate::crypto::Secret32;
use crate::store::keys as sk;

/// A day key opened for use: its private key and `K_day`.
pub struct OpenDayKey {
    pub key_id: String,
    pub terminal: String,
    pub business_day: NaiveDate,
    pub not_after_ms: i64,
    pub private: RsaPrivate,
    pub k_day: Secret32,
}

/// A resolved session: who it belongs to and its two keys.
pub struct Session {
    pub sid: String,
    pub terminal: String,
    pub not_after_ms: i64,
    pub keys: SessionKeys,
    /// The terminal's store, and whether the terminal was active when the
    /// session was read (disabling a terminal revokes its sessions and
    /// notifies every instance, which drops them from the cache).
    pub store_id: String,
    pub terminal_active: bool,
    /// The listener generation the entry was cached under.
    generation: u64,
}

pub struct Keyring {
    keys_dir: PathBuf,
    master: RwLock<Arc<MasterKey>>,
    pub hash_key: Secret32,
    pub row_keys: Arc<crate::integrity::RowKeys>,
    signer: RwLock<Arc<Signer>>,
    day_keys: Mutex<HashMap<String, Arc<OpenDayKey>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// The last sid [`Keyring::sweep_sessions`] checked.
    swept_to: Mutex<String>,
    /// 0: not listening (bypass the session cache); else bumped on every
    /// (re)connection of the listener.
    generation: AtomicU64,
    /// Bumped by every notification, before it takes effect: a session read
    /// from the database while a revocation was on its way is not cached.
    epoch: AtomicU64,
}

/// Most sessions a cache holds before it is cleared (a crude bound).
const CACHE_MAX: usize = 100_000;
/// Cached sessions one sweep re-checks (one query).
pub const SWEEP_MAX: usize = 2_000;
/// How often the daemon sweeps its session cache.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Keyring {
    /// Loads the master key file, the hash key and the current signer;
    /// fails with a message naming `cardswitch keys init` when keys are missing.
    pub async fn load<C: GenericClient>(config: &Config, c: &C) -> anyhow::Result<Keyring> {
        let secrets = super::load_secrets(&config.keys_dir, c).await?;
        let signer = load_signer(c, &secrets.master).await?;
        Ok(Keyring {
            keys_dir: config.keys_dir.clone(),
            master: RwLock::new(Arc::new(secrets.master)),
            hash_key: secrets.hash_key,
            row_keys: Arc::new(secrets.row_keys),
            signer: RwLock::new(Arc::new(signer)),
            day_keys: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            swept_to: Mutex::new(String::new()),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        })
    }

    pub fn master(&self) -> Arc<MasterKey> {
        self.master.read().expect("lock").clone()
    }

    /// The master key with id `id`: the one in memory, or the file re-read
    /// (after `keys rotate-master` on another host or process).
    pub fn master_for(&self, id: &str) -> anyhow::Result<Arc<MasterKey>> {
        let m = self.master();
        if m.id() == id {
            return Ok(m);
        }
        let fresh = Arc::new(super::load_master(&self.keys_dir)?);
        if fresh.id() != id {
            bail!(
                "data sealed under master key {id}, but the key file holds {}",
                fresh.id()
            );
        }
        *self.master.write().expect("lock") = fresh.clone();
        Ok(fresh)
    }

    pub fn reload_master(&self) -> anyhow::Result<()> {
        let fresh = super::load_master(&self.keys_dir)?;
        *self.master.write().expect("lock") = Arc::new(fresh);
        Ok(())
    }

    /// The signer new day keys are signed by; re-read from the database when
    /// ops rotated it.
    pub async fn signer<C: GenericClient>(&self, c: &C) -> anyhow::Result<Arc<Signer>> {
        let cached = self.signer.read().expect("lock").clone();
        let current = sk::current_signer(c)
            .await?
            .ok_or_else(|| anyhow!("no signer key"))?;
        if current.signer_id == cached.id {
            return Ok(cached);
        }
        let master = self.master_for(&current.master_key_id)?;
        let fresh = Arc::new(open_signer(&current, &master)?);
        *self.signer.write().expect("lock") = fresh.clone();
        Ok(fresh)
    }

    /// Opens (and caches) the private half and `K_day` of a day key row.
    pub fn open_day_key(&self, row: &sk::DayKeyRow) -> anyhow::Result<Arc<OpenDayKey>> {
        if let Some(k) = self.day_keys.lock().expect("lock").get(&row.key_id) {
            return Ok(k.clone());
        }
        let (Some(sp), Some(sk_day)) = (&row.sealed_private, &row.sealed_k_day) else {
            bail!("day key {} is destroyed", row.key_id);
        };
        let master = self.master_for(&row.master_key_id)?;
        let der = master
            .open(&day::day_private_aad(&row.key_id), sp)
            .map_err(|e| anyhow!("day key {}: {e}", row.key_id))?;
        let private = RsaPrivate::from_pkcs8_der(der.expose())
            .map_err(|e| anyhow!("day key {}: {e}", row.key_id))?;
        let k_day = master
            .open(&day::day_secret_aad(&row.key_id), sk_day)
            .map_err(|e| anyhow!("day secret {}: {e}", row.key_id))?
            .to_secret32()
            .map_err(|e| anyhow!("day secret {}: {e}", row.key_id))?;
        let open = Arc::new(OpenDayKey {
            key_id: row.key_id.clone(),
            terminal: row.terminal_id.clone(),
            business_day: row.business_day,
            not_after_ms: row.not_after_ms,
            private,
            k_day,
        });
        let mut cache = self.day_keys.lock().expect("lock");
        let now = Utc::now().timestamp_millis();
        cache.retain(|_, k| k.not_after_ms > now);
        cache.insert(row.key_id.clone(), open.clone());
        Ok(open)
    }

    /// The session `sid` if it is usable now; `None` for unknown, expired or
    /// revoked (errno 1004).
    pub async fn session(
        &self,
        pool: &Pool,
        sid: &str,
    ) -> crate::error::Result<Option<Arc<Session>>> {
        let now = Utc::now().timestamp_millis();
        let generation = self.generation.load(Ordering::Acquire);
        if generation != 0 {
            if let Some(s) = self.sessions.lock().expect("lock").get(sid) {
                if s.generation == generation && s.not_after_ms > now {
                    return Ok(Some(s.clone()));
                }
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let (client, found) = read_live_session(pool, sid, now).await?;
        let Some(live) = found else {
            return Ok(None);
        };
        // Checked on use (issue 5): a session or day key written by SQL
        // (un-revoked, moved to another terminal, extended) is refused.
        for id in [&live.mac_key_id, &live.day_key.mac_key_id]
            .into_iter()
            .flatten()
        {
            self.know_row_key(&client, id).await;
        }
        if !live.mac_ok(&self.row_keys, sid) {
            return Err(crate::error::Error::Tampered(format!(
                "session {sid} or its day key {} failed its integrity check",
                live.key_id
            )));
        }
        drop(client);
        let master = self
            .master_for(&live.master_key_id)
            .map_err(crate::error::Error::internal)?;
        let k_day = master
            .open(&day::day_secret_aad(&live.key_id), &live.sealed_k_day)
            .and_then(|p| p.to_secret32())
            .map_err(|e| {
                crate::error::Error::internal(format!("day secret {}: {e}", live.key_id))
            })?;
        let k_sid = kdf::session_key(&k_day, &live.terminal_id, sid);
        let s = Arc::new(Session {
            sid: sid.to_owned(),
            terminal: live.terminal_id,
            not_after_ms: live.not_after_ms,
            keys: SessionKeys::derive(&k_sid),
            store_id: live.store_id,
            terminal_active: live.terminal_active,
            generation,
        });
        if generation != 0 {
            let mut cache = self.sessions.lock().expect("lock");
            // Checked under the lock that forgetting takes: a notification
            // either bumped the epoch before this (not cached) or will
            // forget this entry after it.
            if self.epoch.load(Ordering::Acquire) == epoch
                && self.generation.load(Ordering::Acquire) == generation
            {
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(sid.to_owned(), s.clone());
            }
        }
        Ok(Some(s))
    }

    /// Loads the row keys when `id` is one met for the first time (a
    /// `keys rotate-row-key` running); errors are only logged.
    pub async fn know_row_key<C: GenericClient>(&self, c: &C, id: &str) {
        if self.row_keys.knows(id) {
            return;
        }
        if let Err(e) = super::refresh_row_keys(c, &self.keys_dir, &self.row_keys).await {
            tracing::error!(error = %e, "cannot load the new row keys");
        }
    }

    /// Re-checks up to [`SWEEP_MAX`] cached sessions, round the cache in
    /// turn, against their rows (issue 12): one whose row was changed by
    /// SQL since it was cached (its MAC fails) is dropped at once and
    /// reported, as is one revoked, expired or gone. The cache never served
    /// a changed row's values (it keeps those it checked), but a session
    /// whose row is tampered with is not to be trusted at all. Returns how
    /// many failed their MAC.
    pub async fn sweep_sessions(&self, pool: &Pool) -> crate::error::Result<usize> {
        let sids: Vec<String> = {
            let cache = self.sessions.lock().expect("lock");
            let after = self.swept_to.lock().expect("lock").clone();
            let mut all: Vec<&String> = cache.keys().collect();
            all.sort();
            let start = all.partition_point(|s| **s <= after);
            let mut pick: Vec<String> = all[start..]
                .iter()
                .take(SWEEP_MAX)
                .map(|s| (*s).clone())
                .collect();
            if pick.len() < SWEEP_MAX {
                pick.extend(
                    all[..start]
                        .iter()
                        .take(SWEEP_MAX - pick.len())
                        .map(|s| (*s).clone()),
                );
            }
            pick
        };
        if sids.is_empty() {
            return Ok(0);
        }
        let rows = sk::session_rows(&pool.get().await?, &sids).await?;
        let now = Utc::now().timestamp_millis();
        let mut tampered = Vec::new();
        let mut gone: std::collections::HashSet<&String> = sids.iter().collect();
        for r in &rows {
            if !crate::store::protected::Protected::mac_ok(r, &self.row_keys) {
                tampered.push(r.sid.clone());
            } else if !r.revoked && r.not_after_ms > now {
                gone.remove(&r.sid);
            }
        }
        let mut cache = self.sessions.lock().expect("lock");
        for sid in &tampered {
            tracing::error!(
                sid = sid.as_str(),
                "integrity check failed: a cached session's row was changed; dropped (3001)"
            );
        }
        cache.retain(|sid, _| !gone.contains(sid) && !tampered.contains(sid));
        drop(cache);
        *self.swept_to.lock().expect("lock") = sids.iter().max().cloned().unwrap_or_default();
        Ok(tampered.len())
    }

    /// Forgets everything cached about `terminal` (after a revoke).
    pub fn forget_terminal(&self, terminal: &str) {
        self.sessions
            .lock()
            .expect("lock")
            .retain(|_, s| s.terminal != terminal);
        self.day_keys
            .lock()
            .expect("lock")
            .retain(|_, k| k.terminal != terminal);
    }

    pub fn forget_all(&self) {
        self.sessions.lock().expect("lock").clear();
        self.day_keys.lock().expect("lock").clear();
    }

    /// Called by the listener: `Some(n)` once LISTEN is in place, `None` when
    /// its connection is lost.
    pub fn set_listening(&self, on: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if on {
            self.forget_all();
            let next = self
                .generation
                .load(Ordering::Acquire)
                .wrapping_add(1)
                .max(1);
            self.generation.store(next, Ordering::Release);
        } else {
            self.generation.store(0, Ordering::Release);
            self.forget_all();
        }
    }

    /// Applies one notification payload.
    pub fn on_notify(&self, payload: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(t) = payload.strip_prefix("revoke:") {
            self.forget_terminal(t);
        } else if payload == "master" {
            if let Err(e) = self.reload_master() {
                tracing::error!(error = %e, "cannot reload the master key after rotation");
            }
            self.forget_all();
        } else {
            self.forget_all();
        }
    }

    /// The active day key of `terminal` for `day`, made now (off the async
    /// runtime) if pregeneration has not made it yet.
    pub async fn day_key_for(
        &self,
        pool: &Pool,
        config: &Config,
        terminal: &str,
        day: NaiveDate,
    ) -> anyhow::Result<sk::DayKeyRow> {
        let client = pool.get().await?;
        if let Some(row) = sk::active_day_key(&client, terminal, day).await? {
            return Ok(row);
        }
        let signer = self.signer(&client).await?;
        drop(client);
        for _ in 0..2 {
            let row = self
                .make_day_key(config, terminal, day, signer.clone())
                .await?;
            let client = pool.get().await?;
            sk::insert_day_key(&client, &self.row_keys, &row).await?;
            if let Some(row) = sk::active_day_key(&client, terminal, day).await? {
                return Ok(row);
            }
            // Sealed under a master key rotated meanwhile: re-read the file.
            self.reload_master()?;
        }
        bail!("cannot store a day key for {terminal}")
    }

    async fn make_day_key(
        &self,
        config: &Config,
        terminal: &str,
        day: NaiveDate,
        signer: Arc<Signer>,
    ) -> anyhow::Result<sk::DayKeyRow> {
        let window = day::day_window(day, config.business.offset(), config.business.grace);
        let master = self.master();
        let terminal = terminal.to_owned();
        tokio::task::spawn_blocking(move || {
            day::make_day_key(&terminal, day, window, &signer, &master)
        })
        .await
        .map_err(|e| anyhow!("day key task: {e}"))?
    }

    /// Makes the day keys of every active terminal for the business days of
    /// `now` and the next `days_ahead` days; returns how many it made.
    /// RSA key generation is CPU work: up to one key per available core is
    /// made at a time, each on a blocking thread; every key is inserted as
    /// soon as it is made (a key another instance made first is not counted).
    pub async fn pregen(
        &self,
        pool: &Pool,
        config: &Config,
        now: DateTime<Utc>,
        days_ahead: u32,
    ) -> anyhow::Result<usize> {
        let today = day::business_day(now, config.business.offset());
        let width = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut made = 0;
        for d in 0..=days_ahead {
            let day = today + chrono::TimeDelta::days(i64::from(d));
            let client = pool.get().await?;
            let missing = sk::terminals_without_day_key(&client, day).await?;
            let signer = self.signer(&client).await?;
            drop(client);
            let window = day::day_window(day, config.business.offset(), config.business.grace);
            let mut missing = missing.into_iter();
            let mut running = tokio::task::JoinSet::new();
            loop {
                while running.len() < width {
                    let Some(terminal) = missing.next() else {
                        break;
                    };
                    let (signer, master) = (signer.clone(), self.master());
                    running.spawn_blocking(move || {
                        day::make_day_key(&terminal, day, window, &signer, &master)
                    });
                }
                let Some(row) = running.join_next().await else {
                    break;
                };
                let row = row.map_err(|e| anyhow!("day key task: {e}"))??;
                let client = pool.get().await?;
                if sk::insert_day_key(&client, &self.row_keys, &row).await? {
                    made += 1;
                }
            }
        }
        Ok(made)
    }
}

pub fn open_signer(row: &sk::SignerRow, master: &MasterKey) -> anyhow::Result<Signer> {
    if row.master_key_id != master.id() {
        bail!(
            "the signer is sealed under master key {}, but the key file is {}",
            row.master_key_id,
            master.id()
        );
    }
    let der = master
        .open(&day::signer_aad(&row.signer_id), &row.sealed_private)
        .map_err(|e| anyhow!("cannot open signer {}: {e}", row.signer_id))?;
    let private = RsaPrivate::from_pkcs8_der(der.expose())
        .map_err(|e| anyhow!("signer {}: {e}", row.signer_id))?;
    let public = RsaPublic::from_spki_der(&row.public_der)
        .map_err(|e| anyhow!("signer {}: {e}", row.signer_id))?;
    if public.spki_der() != private.public().spki_der() {
        bail!("signer {}: public and private halves differ", row.signer_id);
    }
    Ok(Signer {
        id: row.signer_id.clone(),
        public_b64: crate::protocol::grammar::base64_encode(public.spki_der()),
        private,
        not_after_ms: row.not_after_ms,
    })
}

async fn load_signer<C: GenericClient>(c: &C, master: &MasterKey) -> anyhow::Result<Signer> {
    let row = sk::current_signer(c)
        .await?
        .ok_or_else(|| anyhow!("no signer key in the database; run `cardswitch keys init`"))?;
    open_signer(&row, master)
}

/// The session's rows, on a pooled connection that is then kept for the
/// row key look-ups. A connection the server ended (a restart, a failover)
/// is met here first: the read runs again on a new one.
async fn read_live_session(
    pool: &Pool,
    sid: &str,
    now_ms: i64,
) -> crate::error::Result<(deadpool_postgres::Object, Option<sk::LiveSession>)> {
    let client = pool.get().await?;
    match sk::live_session(&client, sid, now_ms).await {
        Err(e) if crate::store::is_connection_lost(&e) => {
            drop(client);
            crate::store::forget_idle_connections(pool);
            let client = pool.get().await?;
            let found = sk::live_session(&client, sid, now_ms).await?;
            Ok((client, found))
        }
        other => Ok((client, other?)),
    }
}

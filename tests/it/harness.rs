//! The test harness: one private PostgreSQL cluster per test binary in a temp
//! dir (initdb + pg_ctl, as the embedded default does), a fresh database per
//! test, and daemons on port 0. A watchdog process removes the cluster when
//! this test process ends, however it ends.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use cardswitch::config::{Config, FileConfig, Overrides};
use cardswitch::store::embedded::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Shared {
    cluster: Cluster,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// A temp dir the `postgres` user can enter (tests may run as root), removed
/// by a watchdog once this process is gone.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir")
        .keep();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    watch_and_remove(&dir);
    dir
}

/// Spawns a detached shell that waits for this process to exit, then stops
/// any postmaster under `dir` (immediate mode: SIGQUIT) and deletes `dir`.
// The watchdog must outlive this process, so it is never waited for.
#[allow(clippy::zombie_processes)]
fn watch_and_remove(dir: &Path) {
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        for pidfile in $(find "$2" -name postmaster.pid 2>/dev/null); do
            kill -QUIT "$(head -n 1 "$pidfile")" 2>/dev/null
        done
        sleep 1
        rm -rf "$2"
    "#;
    std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Out of our process group, so a Ctrl-C of the tests does not kill it.
        .process_group(0)
        .spawn()
        .expect("spawn watchdog");
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let dir = temp_dir("cs-it-");
        let cluster = Cluster::new(&dir).expect("find postgres").without_fsync();
        cluster.ensure_running().expect("start test cluster");
        Shared { cluster }
    })
}

/// A cluster of its own, for tests that stop and start it.
pub fn private_cluster() -> Cluster {
    let dir = temp_dir("cs-pc-");
    let cluster = Cluster::new(&dir).expect("find postgres").without_fsync();
    cluster.ensure_running().expect("start private cluster");
    cluster
}

/// The libpq-style connection string for `db` in `cluster`.
pub fn url_for(cluster: &Cluster, db: &str) -> String {
    format!(
        "host={} port=5432 user={} dbname={db}",
        cluster.socket_dir().display(),
        cardswitch::store::embedded::SUPERUSER
    )
}

/// A new, empty database in the shared cluster; returns its URL.
pub async fn fresh_database() -> String {
    let cluster = &shared().cluster;
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    create_database(cluster, &name).await;
    url_for(cluster, &name)
}

/// A pool of 2 on a new database with every migration run: for tests of
/// one store module's SQL, without keys or a daemon.
pub async fn migrated_pool() -> deadpool_postgres::Pool {
    let url = fresh_database().await;
    let pool =
        cardswitch::store::make_pool(url.parse().unwrap(), 2, Duration::from_secs(5)).unwrap();
    let mut client = pool.get().await.unwrap();
    cardswitch::store::migrate::run(&mut client).await.unwrap();
    pool
}

pub async fn create_database(cluster: &Cluster, name: &str) {
    let (client, conn) = cluster
        .pg_config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to test cluster");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
}

/// A daemon configuration on `url`, listening on an ephemeral port.
pub fn config_for(url: &str) -> Config {
    let mut c = Config::merge(
        FileConfig::default(),
        Overrides {
            database_url: Some(url.to_string()),
            ..Default::default()
        },
    );
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.db.pool_size = 8;
    c.db.connect_timeout = Duration::from_secs(2);
    c
}

/// A daemon running in this process on port 0.
pub struct Daemon {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    /// Starts a daemon; a configuration without keys gets test keys first
    /// (in a temp keys dir: never the crate's `./keys`).
    pub async fn start(mut config: Config) -> Daemon {
        ensure_keys(&mut config).await;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(cardswitch::app::serve(config, listener, async {
            let _ = rx.await;
        }));
        let d = Daemon {
            addr,
            stop: Some(tx),
            task: Some(task),
        };
        // serve() opens the database and migrates before it accepts; wait for it.
        for _ in 0..200 {
            if let Ok(r) = d.get("/healthz").await {
                if r.status == 200 {
                    return d;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("daemon did not become healthy");
    }

    /// Signals shutdown without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.signal_stop();
        self.task
            .take()
            .unwrap()
            .await
            .expect("serve task panicked")
    }

    pub async fn get(&self, path: &str) -> std::io::Result<RawAnswer> {
        raw_request(
            self.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends `bytes` as they are and reads the answer until the server closes.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<RawAnswer> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    read_answer(&mut s).await
}

pub async fn read_answer(s: &mut TcpStream) -> std::io::Result<RawAnswer> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("answer timed out"))??;
    parse_answer(&buf)
}

pub fn parse_answer(buf: &[u8]) -> std::io::Result<RawAnswer> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no HTTP head in {:?}",
                String::from_utf8_lossy(buf)
            ))
        })?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok(RawAnswer {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    })
}

// --- keys and provisioning (protocol tests) ---

/// RSA-3072 root and signer keys generated once per test process (PKCS#8
/// DER), shared by every test database: generation is the slow part.
fn shared_rsa() -> &'static (Vec<u8>, Vec<u8>) {
    static KEYS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let g = || {
            cardswitch::crypto::rsa::RsaPrivate::generate(3072)
                .unwrap()
                .to_pkcs8_der()
                .expose()
                .to_vec()
        };
        (g(), g())
    })
}

/// Runs `keys init` (with the shared RSA keys) for `config` unless its keys
/// dir already has a master key; a default keys dir is replaced by a temp dir.
pub async fn ensure_keys(config: &mut Config) {
    if config.keys_dir == Path::new("./keys") {
        config.keys_dir = temp_dir("cs-keys-").join("keys");
    }
    if cardswitch::keys::admin::keys_exist(config) {
        return;
    }
    let db = cardswitch::store::open(config)
        .await
        .expect("open test database");
    let (root, signer) = shared_rsa();
    let parse = |d: &[u8]| cardswitch::crypto::rsa::RsaPrivate::from_pkcs8_der(d).unwrap();
    cardswitch::keys::admin::init(config, &db.pool, Some(parse(root)), Some(parse(signer)))
        .await
        .expect("keys init");
    db.close().await.unwrap();
}

/// A fresh database with keys, a pool on it, and the root public key.
pub struct Fixture {
    pub config: Config,
    pub db: cardswitch::store::Database,
    pub root: cardswitch::crypto::rsa::RsaPublic,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let mut config = config_for(&fresh_database().await);
        ensure_keys(&mut config).await;
        let db = cardswitch::store::open(&config).await.unwrap();
        let root = cardswitch::keys::admin::root_public(&db.pool)
            .await
            .unwrap();
        Fixture { config, db, root }
    }

    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.db.pool
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.db.pool.get().await.unwrap()
    }

    /// Adds the terminal (and its store if new); returns its password.
    pub async fn terminal(&self, id: &str, store: &str) -> String {
        let _ = cardswitch::keys::admin::add_store(&self.config, self.pool(), store, "Test store")
            .await;
        cardswitch::keys::admin::add_terminal(
            &self.config,
            self.pool(),
            id,
            store,
            cardswitch::ledger::TerminalKind::Pos,
            None,
        )
        .await
        .unwrap()
        .to_string()
    }

    /// A card without a PIN, outside the ledger (no `register` needed).
    pub async fn card(&self, card_no: &str, balance: &str) {
        let c = self.client().await;
        let keys = cardswitch::keys::admin::row_keys(&self.config, &c)
            .await
            .unwrap();
        let has_std = c
            .query_opt("SELECT 1 FROM levels WHERE level = 'std'", &[])
            .await
            .unwrap()
            .is_some();
        if !has_std {
            cardswitch::store::operators::add_level(&c, &keys, "std", 1.into(), 1.into())
                .await
                .unwrap();
        }
        cardswitch::store::fixtures::cards::insert_fixture(
            &c,
            &keys,
            card_no,
            "std",
            balance.parse().unwrap(),
        )
        .await
        .unwrap();
    }

    /// A digest of everything in the database but the audit trail (and its
    /// chain head), the
    /// once-only values and the failed-login counter, to prove a refusal
    /// wrote nothing else.
    pub async fn fingerprint(&self) -> String {
        let c = self.client().await;
        let tables: Vec<String> = c
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                    AND c.relname NOT IN ('audit', 'audit_head', 'seen_ts', 'schema_migrations', 'terminals')
                  ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = String::new();
        for t in tables {
            let row = c
                .query_one(
                    &format!("SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM \"{t}\" x"),
                    &[],
                )
                .await
                .unwrap();
            out.push_str(&format!("{t}={};", row.get::<_, String>(0)));
        }
        let row = c
            .query_one(
                "SELECT coalesce(md5(string_agg(terminal_id || store_id || status || encode(pw_hash, 'hex'), ',' ORDER BY terminal_id)), '') FROM terminals",
                &[],
            )
            .await
            .unwrap();
        out.push_str(&format!("terminals={}", row.get::<_, String>(0)));
        out
    }

    /// Audit rows of refusals after `after_id`: those with a row of their
    /// own, and the sum of the per-address tallies of unproved ones.
    pub async fn refusals_audited(&self, after_id: i64) -> AuditedRefusals {
        let r = self
            .client()
            .await
            .query_one(
                "SELECT count(*) FILTER (WHERE kind = 'refused'),
                        coalesce(sum((detail->>'count')::bigint)
                                 FILTER (WHERE kind = 'refused.unproved'), 0)::bigint
                   FROM audit WHERE audit_id > $1",
                &[&after_id],
            )
            .await
            .unwrap();
        AuditedRefusals {
            own_rows: r.get(0),
            tallied: r.get(1),
        }
    }

    pub async fn last_audit_id(&self) -> i64 {
        self.client()
            .await
            .query_one("SELECT coalesce(max(audit_id), 0) FROM audit", &[])
            .await
            .unwrap()
            .get(0)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct AuditedRefusals {
    pub own_rows: i64,
    pub tallied: i64,
}

/// Validates `doc` against `proto-spec/xsd/{xsd}` with xmllint (a missing
/// xmllint fails the test: CI installs libxml2-utils).
pub fn assert_valid(xsd: &str, doc: &[u8]) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let path = format!("{}/proto-spec/xsd/{xsd}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema", &path, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint not found: install libxml2-utils");
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{xsd}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(doc)
    );
}

/// A shop for the tests that run on a cluster of their own (crash, backup,
/// replica): store S1, the terminals `(id, kind)` with their passwords in
/// that order (an office terminal belongs to every store), the level `std`
/// (no discount, no points), and the root public key.
pub async fn shop(
    config: &Config,
    terminals: &[(&str, cardswitch::ledger::TerminalKind)],
) -> (cardswitch::crypto::rsa::RsaPublic, Vec<String>) {
    use cardswitch::keys::admin;
    use cardswitch::ledger::TerminalKind;
    let db = cardswitch::store::open(config).await.unwrap();
    admin::add_store(config, &db.pool, "S1", "Test shop")
        .await
        .unwrap();
    let mut passwords = Vec::new();
    for (id, kind) in terminals {
        let store = match kind {
            TerminalKind::Office => cardswitch::ledger::ALL_STORES,
            _ => "S1",
        };
        let pw = admin::add_terminal(config, &db.pool, id, store, *kind, None)
            .await
            .unwrap();
        passwords.push(pw.to_string());
    }
    let c = db.pool.get().await.unwrap();
    let rk = admin::row_keys(config, &c).await.unwrap();
    cardswitch::store::operators::add_level(&c, &rk, "std", 1.into(), 0.into())
        .await
        .unwrap();
    let root = admin::root_public(&db.pool).await.unwrap();
    drop(c);
    db.close().await.unwrap();
    (root, passwords)
}

/// A connection of the test's own to `db` in `cluster`.
pub async fn connect(cluster: &Cluster, db: &str) -> tokio_postgres::Client {
    let (c, conn) = cluster
        .pg_config(db)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to a test cluster");
    tokio::spawn(conn);
    c
}

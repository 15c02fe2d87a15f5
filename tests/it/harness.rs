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
    pub async fn start(config: Config) -> Daemon {
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

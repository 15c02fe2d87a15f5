//! The daemon under load: a `cardswitch serve` child process (so its RSS and
//! CPU are its own, not the load generator's), or one already running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::config::{Config, ProtocolConfig};
use crate::store::fixtures::bench::WalCounters;

pub fn bench_protocol(p: &ProtocolConfig) -> ProtocolConfig {
    ProtocolConfig {
        addr_rate: 1_000_000,
        addr_burst: 1_000_000,
        terminal_rate: 1_000_000,
        terminal_burst: 1_000_000,
        ..p.clone()
    }
}

pub struct ChildDaemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl ChildDaemon {
    /// Starts `exe serve` on a free loopback port with `config` (its
    /// database at `database_url`) and waits until `/healthz` answers 200.
    pub async fn start(
        exe: &Path,
        config: &Config,
        database_url: &str,
        work_dir: &Path,
    ) -> anyhow::Result<ChildDaemon> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // The caller's settings, on this port, with the throttles opened
        // (every load client comes from 127.0.0.1, so the per-address
        // bucket would cap the whole benchmark).
        let mut file = config.file_view(database_url.to_owned());
        file.server.to_mut().listen = addr;
        file.protocol = std::borrow::Cow::Owned(bench_protocol(&config.protocol));
        let conf_path = work_dir.join("daemon.toml");
        std::fs::write(&conf_path, toml::to_string_pretty(&file)?)
            .with_context(|| format!("cannot write {}", conf_path.display()))?;
        let log = work_dir.join("daemon.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(exe)
            .arg("--config")
            .arg(&conf_path)
            .arg("serve")
            // The caller's environment must not override the file.
            .env_remove("CARDSWITCH_DATABASE_URL")
            .env_remove("CARDSWITCH_DATA_DIR")
            .env_remove("CARDSWITCH_KEYS_DIR")
            .env_remove("CARDSWITCH_LISTEN")
            .env_remove("CARDSWITCH_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut d = ChildDaemon { child, addr, log };
        d.wait_healthy().await?;
        Ok(d)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let client = crate::client::Client::new(&format!("http://{}", self.addr));
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the daemon exited ({status}) before it was healthy; its log: {}",
                    self.log.display()
                );
            }
            if let Ok(true) = healthz(&client).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the daemon was not healthy within 30 s; its log: {}",
            self.log.display()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 15 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // `unsafe` is forbidden crate-wide, so the signal goes through kill(1).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..150 {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn healthz(client: &crate::client::Client) -> anyhow::Result<bool> {
    let r = client.get_raw("/healthz").await?;
    Ok(r.status == 200)
}

/// A process's resident set and its peak, in MiB, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rss {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

pub fn rss(pid: u32) -> Option<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((kb / 1024.0 * 10.0).round() / 10.0)
    };
    Some(Rss {
        rss_mib: field("VmRSS:")?,
        peak_mib: field("VmHWM:")?,
    })
}

/// CPU seconds (user + system) of a process, and of the children it has
/// waited for, from `/proc/PID/stat` (clock ticks of 1/100 s, Linux's
/// USER_HZ everywhere it runs).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // After the name and state: ppid (0), ... utime (10), stime (11), cutime (12), cstime (13).
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

const TICKS: f64 = 100.0;

/// CPU seconds a process has used so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    Some((f.get(10)? + f.get(11)?) as f64 / TICKS)
}

/// The parent of `pid` (a backend's parent is the postmaster).
pub fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.first().map(|&p| p as u32)
}

/// CPU seconds used by a PostgreSQL server: the postmaster, every live
/// child (backends, walwriter, checkpointer, ...), and the children it
/// already reaped.
pub fn server_cpu_secs(postmaster: u32) -> Option<f64> {
    let f = stat_fields(postmaster)?;
    let mut ticks = f.get(10)? + f.get(11)? + f.get(12)? + f.get(13)?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(c) = stat_fields(pid) {
            if c.first() == Some(&u64::from(postmaster)) {
                ticks += c.get(10).unwrap_or(&0) + c.get(11).unwrap_or(&0);
            }
        }
    }
    Some(ticks as f64 / TICKS)
}

/// CPU used over a stretch of time by the daemon, the database server and
/// this process (the load generator).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuMark {
    daemon: Option<f64>,
    server: Option<f64>,
    loadgen: Option<f64>,
}

/// CPU milliseconds per successful txn, each side.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuPerTxn {
    pub daemon_ms: Option<f64>,
    pub postgres_ms: Option<f64>,
    pub loadgen_ms: Option<f64>,
}

impl CpuMark {
    pub fn now(daemon: Option<u32>, postmaster: Option<u32>) -> CpuMark {
        CpuMark {
            daemon: daemon.and_then(cpu_secs),
            server: postmaster.and_then(server_cpu_secs),
            loadgen: cpu_secs(std::process::id()),
        }
    }

    pub fn per_txn(&self, later: &CpuMark, txns: u64) -> CpuPerTxn {
        let per = |a: Option<f64>, b: Option<f64>| -> Option<f64> {
            let d = b? - a?;
            (txns > 0).then(|| (d * 1000.0 / txns as f64 * 1000.0).round() / 1000.0)
        };
        CpuPerTxn {
            daemon_ms: per(self.daemon, later.daemon),
            postgres_ms: per(self.server, later.server),
            loadgen_ms: per(self.loadgen, later.loadgen),
        }
    }
}

/// What a run cost the server in WAL per successful txn, and the
/// checkpoints that began inside it (after one, every page's first change
/// writes the whole page: a run's cost moves with where checkpoints fall).
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalPerTxn {
    pub bytes: f64,
    pub records: f64,
    pub full_page_images: f64,
    /// Database commits per successful txn (refusals' commits included).
    pub commits: f64,
    pub checkpoints: i64,
}

impl WalPerTxn {
    pub fn between(a: &WalCounters, b: &WalCounters, txns: u64) -> Option<WalPerTxn> {
        let n = txns as f64;
        let per = |d: f64| (d / n * 100.0).round() / 100.0;
        (txns > 0).then(|| WalPerTxn {
            bytes: per(b.bytes - a.bytes),
            records: per((b.records - a.records) as f64),
            full_page_images: per((b.full_page_images - a.full_page_images) as f64),
            commits: per((b.commits - a.commits) as f64),
            checkpoints: b.checkpoints - a.checkpoints,
        })
    }
}

/// The daemon's group-commit histogram as `/metrics` shows it: txns
/// committed (`sum`), the transactions they went in (`count`), and the
/// count of transactions with at most `le` txns, bucket by bucket.
#[derive(Clone, Debug, Default)]
pub struct BatchMark {
    sum: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

/// What one run's transactions held (issue 14's "batch sizes seen").
#[derive(Clone, Debug, Default, Serialize)]
pub struct BatchSizes {
    /// Txns per database transaction, on average.
    pub mean: f64,
    pub transactions: u64,
    /// Transactions by their size's bucket: `"<=4": 120`.
    pub by_size: std::collections::BTreeMap<String, u64>,
}

impl BatchMark {
    pub async fn read(client: &crate::client::Client) -> Option<BatchMark> {
        let r = client.get_raw("/metrics").await.ok()?;
        Some(BatchMark::parse(std::str::from_utf8(&r.body).ok()?))
    }

    fn parse(text: &str) -> BatchMark {
        let mut m = BatchMark::default();
        let name = "cardswitch_txn_batch_size";
        for line in text.lines().filter(|l| l.starts_with(name)) {
            let (key, value) = line.rsplit_once(' ').unwrap_or((line, ""));
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if key.ends_with("_sum") {
                m.sum = v;
            } else if key.ends_with("_count") {
                m.count = v;
            } else if let Some(le) = key.split("le=\"").nth(1) {
                let le = le.trim_end_matches("\"}");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(0.0)
                };
                m.buckets.push((le, v));
            }
        }
        m
    }

    pub fn since(&self, earlier: &BatchMark) -> BatchSizes {
        let n = self.count - earlier.count;
        let mut by_size = std::collections::BTreeMap::new();
        let mut below = 0.0;
        for (le, v) in &self.buckets {
            let before = earlier
                .buckets
                .iter()
                .find(|b| b.0 == *le)
                .map_or(0.0, |b| b.1);
            let here = v - before - below;
            below += here;
            if here > 0.0 {
                by_size.insert(format!("<={le}"), here as u64);
            }
        }
        BatchSizes {
            mean: if n > 0.0 {
                ((self.sum - earlier.sum) / n * 100.0).round() / 100.0
            } else {
                0.0
            },
            transactions: n as u64,
            by_size,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_sizes_are_the_histogram_between_two_reads() {
        let at = |sum: f64, one: f64, four: f64, all: f64| {
            super::BatchMark::parse(&format!(
                "cardswitch_txn_batch_size_sum {sum}\ncardswitch_txn_batch_size_count {all}\n\
                 cardswitch_txn_batch_size_bucket{{le=\"1.0\"}} {one}\n\
                 cardswitch_txn_batch_size_bucket{{le=\"4.0\"}} {four}\n\
                 cardswitch_txn_batch_size_bucket{{le=\"+Inf\"}} {all}\n"
            ))
        };
        let s = at(40.0, 5.0, 7.0, 9.0).since(&at(10.0, 3.0, 4.0, 4.0));
        assert_eq!(s.transactions, 5);
        assert_eq!(s.mean, 6.0);
        assert_eq!(s.by_size.get("<=1"), Some(&2));
        assert_eq!(s.by_size.get("<=4"), Some(&1));
        assert_eq!(s.by_size.get("<=inf"), Some(&2));
    }

    #[test]
    fn reads_its_own_cpu_and_parent() {
        let me = std::process::id();
        assert!(super::cpu_secs(me).is_some());
        assert_eq!(super::parent(me), Some(std::os::unix::process::parent_id()));
    }
}

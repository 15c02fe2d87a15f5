//! The daemon under load: a `cardswitch serve` child process (so its RSS and
//! CPU are its own, not the load generator's), or one already running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::config::{
    BusinessConfig, Config, DbConfig, KeysConfig, LedgerSettings, LogFormat, ProtocolConfig,
    ServerConfig,
};

/// The configuration file the child daemon is started with: the caller's
/// settings, with the throttles opened (every load client comes from
/// 127.0.0.1, so the per-address bucket would cap the whole benchmark).
#[derive(Serialize)]
struct ChildConfig<'a> {
    database_url: &'a str,
    data_dir: &'a Path,
    keys_dir: &'a Path,
    log_format: LogFormat,
    server: &'a ServerConfig,
    db: &'a DbConfig,
    business: &'a BusinessConfig,
    protocol: &'a ProtocolConfig,
    keys: &'a KeysConfig,
    ledger: &'a LedgerSettings,
}

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
        let mut server = config.server.clone();
        server.listen = addr;
        let protocol = bench_protocol(&config.protocol);
        let file = ChildConfig {
            database_url,
            data_dir: &config.data_dir,
            keys_dir: &config.keys_dir,
            log_format: config.log_format,
            server: &server,
            db: &config.db,
            business: &config.business,
            protocol: &protocol,
            keys: &config.keys,
            ledger: &config.ledger,
        };
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

//! `cardswitch bench`: the end-to-end load benchmark of issue 6. On one
//! PostgreSQL cluster it provisions terminals and cards through the real code
//! paths, starts the daemon as a child process (or uses a running one), logs
//! every terminal in, drives encrypted txns over real HTTP with C concurrent
//! clients, then runs pgbench's TPC-B-like script with the same C for the
//! same time on the same cluster, and prints a JSON summary followed by one
//! line `ratio=<cardswitch tps / pgbench tps>`.

pub mod chaos;
pub mod daemon;
mod drive;
mod flood;
pub mod load;
pub mod pgbench;
mod provision;
mod report;
pub mod resend;
pub mod seed;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Config;
use drive::{drive, Driven};
use load::Mix;
use provision::provision;
use report::{ratio, setup};
pub use report::{IdleStats, LoginStats, Report, Setup};

/// What to run; the flags of `cardswitch bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub terminals: usize,
    pub cards: usize,
    pub clients: usize,
    pub duration: Duration,
    /// Before each timed run, the same load for this long, not counted: the
    /// daemon's pooled connections are new (their backends load catalogs,
    /// the ledger prepares its statements), and one such stall of all
    /// clients is the whole p99 of a short run.
    pub warmup: Duration,
    /// One timed run per entry, in order (default: debit, then mixed).
    pub runs: Vec<Mix>,
    /// Paces every run at this many txns/s in all (default: as fast as it goes).
    pub rate: Option<f64>,
    /// Skip pgbench (then `ratio=n/a`).
    pub pgbench: bool,
    pub pgbench_scale: u32,
    /// A daemon already running (on the configured database); else one is
    /// started from `daemon_exe`.
    pub url: Option<String>,
    /// Its pid, to read its RSS, when `url` is given.
    pub daemon_pid: Option<u32>,
    pub daemon_exe: Option<PathBuf>,
    /// After the runs, hold this many idle keep-alive connections open and
    /// read the daemon's RSS.
    pub idle_connections: usize,
    /// Where the child daemon's config and log go.
    pub work_dir: PathBuf,
    /// Day keys made before the daemon starts: today and this many days
    /// ahead (1: tomorrow's too, so the daemon's own upkeep makes none
    /// during the runs).
    pub pregen_days: u32,
    /// Cards seeded in bulk after the registered ones (`--seed-cards`; see
    /// [`seed`]); the timed runs draw from registered and seeded alike.
    pub seed_cards: usize,
    /// Register an endpoint that answers at once and report the delivery
    /// of the runs' events (`webhook::EventFigures`).
    pub webhook: bool,
    /// Junk flood connections beside the runs (0: none; see [`flood`]).
    pub junk_flood: usize,
    /// The flood's requests per second in all.
    pub junk_rate: f64,
    /// Debit runs after the others, one per client count (`--sweep-clients`).
    pub sweep_clients: Vec<usize>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            terminals: 64,
            cards: 100_000,
            clients: 32,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(3),
            runs: vec![Mix::Debit, Mix::Mixed],
            rate: None,
            pgbench: true,
            pgbench_scale: 10,
            url: None,
            daemon_pid: None,
            daemon_exe: None,
            idle_connections: 0,
            work_dir: PathBuf::from("."),
            pregen_days: 1,
            seed_cards: 0,
            webhook: false,
            junk_flood: 0,
            junk_rate: 150.0,
            sweep_clients: Vec::new(),
        }
    }
}

impl BenchOptions {
    /// The most clients any run has: the seats to log in.
    pub fn most_clients(&self) -> usize {
        self.sweep_clients
            .iter()
            .copied()
            .fold(self.clients, usize::max)
    }
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// Runs the whole benchmark and returns its report (nothing printed to
/// stdout; progress goes to stderr).
pub async fn run(config: &Config, opts: &BenchOptions) -> anyhow::Result<Report> {
    let most = opts.most_clients();
    if opts.clients == 0 || opts.sweep_clients.contains(&0) || opts.terminals < most {
        bail!(
            "--terminals ({}) must be at least --clients and every --sweep-clients ({most}): \
             each client is its own terminal",
            opts.terminals
        );
    }
    let machine = machine_facts();
    let db = crate::store::open(config).await?;
    let result = run_on(config, opts, &db, machine).await;
    db.close().await?;
    result
}

async fn run_on(
    config: &Config,
    opts: &BenchOptions,
    db: &crate::store::Database,
    machine: serde_json::Value,
) -> anyhow::Result<Report> {
    let pool = &db.pool;
    let database = {
        let c = pool.get().await?;
        crate::store::fixtures::bench::server_facts(&c).await?
    };
    let provisioned = provision(config, pool, opts).await?;
    let receiver = match opts.webhook {
        true => Some(webhook::start(config, pool).await?),
        false => None,
    };
    let daemon = start_daemon(config, opts, db).await?;
    let pids = Pids {
        daemon: daemon.pid,
        postmaster: postmaster_pid(pool).await?,
    };
    let flood = (opts.junk_flood > 0)
        .then(|| flood::Flood::start(&daemon.base, opts.junk_flood, opts.junk_rate));
    let outcome = drive(
        config,
        opts,
        pool,
        &daemon.base,
        pids,
        provisioned.passwords,
        provisioned.manager,
    )
    .await;
    let flood = match flood {
        Some(f) => Some(f.stop().await),
        None => None,
    };
    let events = match receiver {
        Some(r) => Some(r.figures(pool).await?),
        None => None,
    };
    if let Some(d) = daemon.child {
        d.stop().await?;
    }
    let Driven {
        login,
        cards,
        seeded,
        runs,
        sweep,
        daemon_rss,
        idle,
    } = outcome?;
    let pgbench = if opts.pgbench {
        Some(run_pgbench(opts, db, pids.postmaster).await?)
    } else {
        None
    };
    let ratio = ratio(pgbench.as_ref(), runs.first());
    Ok(Report {
        machine,
        database,
        setup: setup(opts, &provisioned.times, cards, seeded, &daemon.base),
        login,
        runs,
        sweep,
        daemon_rss,
        idle,
        pgbench,
        events,
        flood,
        ratio,
    })
}

/// The daemon under test: a child this run started (and stops), or one
/// already running at `--url`.
struct Daemon {
    child: Option<daemon::ChildDaemon>,
    base: String,
    pid: Option<u32>,
}

async fn start_daemon(
    config: &Config,
    opts: &BenchOptions,
    db: &crate::store::Database,
) -> anyhow::Result<Daemon> {
    let database_url = match &config.database_url {
        Some(u) => u.clone(),
        None => libpq_string(&db.pg),
    };
    match (&opts.url, &opts.daemon_exe) {
        (Some(url), _) => Ok(Daemon {
            child: None,
            base: url.trim_end_matches('/').to_owned(),
            pid: opts.daemon_pid,
        }),
        (None, Some(exe)) => {
            say("starting the daemon");
            std::fs::create_dir_all(&opts.work_dir)?;
            let d = daemon::ChildDaemon::start(exe, config, &database_url, &opts.work_dir).await?;
            let base = format!("http://{}", d.addr);
            let pid = Some(d.pid());
            Ok(Daemon {
                child: Some(d),
                base,
                pid,
            })
        }
        (None, None) => bail!("no daemon: give --url or a daemon executable"),
    }
}

/// The processes whose CPU the runs measure.
#[derive(Clone, Copy)]
struct Pids {
    daemon: Option<u32>,
    postmaster: Option<u32>,
}

/// The cluster's postmaster: the parent of a backend of ours.
async fn postmaster_pid(pool: &deadpool_postgres::Pool) -> anyhow::Result<Option<u32>> {
    let c = pool.get().await?;
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok(daemon::parent(backend as u32))
}

/// pgbench on the same cluster, in a database of its own.
async fn run_pgbench(
    opts: &BenchOptions,
    db: &crate::store::Database,
    postmaster: Option<u32>,
) -> anyhow::Result<pgbench::PgbenchStats> {
    let dbname = format!(
        "{}_pgbench",
        db.pg
            .get_dbname()
            .unwrap_or(crate::store::embedded::DATABASE)
    );
    say(format!(
        "pgbench: initialising {dbname} at scale {}",
        opts.pgbench_scale
    ));
    crate::store::fixtures::bench::recreate_database(&db.pg, &dbname).await?;
    let pg = db.pg.clone();
    let (scale, clients, duration) = (opts.pgbench_scale, opts.clients, opts.duration);
    tokio::task::spawn_blocking(move || {
        pgbench::init(&pg, &dbname, scale)?;
        say(format!(
            "pgbench: -M prepared, {clients} clients, {} s",
            duration.as_secs()
        ));
        let before = postmaster.and_then(daemon::server_cpu_secs);
        let mut stats = pgbench::bench(&pg, &dbname, scale, clients, duration)?;
        let after = postmaster.and_then(daemon::server_cpu_secs);
        if let Some(ms) = cpu_ms_per_txn(before, after, stats.transactions) {
            stats.postgres_cpu_ms_per_txn = Some(ms);
        }
        Ok::<_, anyhow::Error>(stats)
    })
    .await?
}

/// Server CPU between two readings, in ms per txn (to the microsecond).
fn cpu_ms_per_txn(before: Option<f64>, after: Option<f64>, txns: Option<u64>) -> Option<f64> {
    match (before, after, txns) {
        (Some(a), Some(b), Some(n)) if n > 0 => {
            Some(((b - a) * 1000.0 / n as f64 * 1000.0).round() / 1000.0)
        }
        _ => None,
    }
}

/// A libpq key=value string for `pg` (Unix socket or TCP host).
fn libpq_string(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let mut parts = Vec::new();
    if let Some(h) = pg.get_hosts().first() {
        parts.push(format!(
            "host={}",
            match h {
                Host::Tcp(n) => n.clone(),
                Host::Unix(p) => p.display().to_string(),
            }
        ));
    }
    if let Some(p) = pg.get_ports().first() {
        parts.push(format!("port={p}"));
    }
    if let Some(u) = pg.get_user() {
        parts.push(format!("user={u}"));
    }
    if let Some(d) = pg.get_dbname() {
        parts.push(format!("dbname={d}"));
    }
    parts.join(" ")
}

/// CPUs and the load average before the benchmark: the machine is shared,
/// and the figures mean little without this.
fn machine_facts() -> serde_json::Value {
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    serde_json::json!({
        "cpus": pgbench::num_cpus(),
        "loadavg_before": loadavg,
    })
}

/// Parses `--mix debit,mixed`.
pub fn parse_runs(s: &str) -> anyhow::Result<Vec<Mix>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<Mix>().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--mix")
}

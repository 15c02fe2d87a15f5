//! `cardswitch bench`: the end-to-end load benchmark of issue 6. On one
//! PostgreSQL cluster it provisions terminals and cards through the real code
//! paths, starts the daemon as a child process (or uses a running one), logs
//! every terminal in, drives encrypted txns over real HTTP with C concurrent
//! clients, then runs pgbench's TPC-B-like script with the same C for the
//! same time on the same cluster, and prints a JSON summary followed by one
//! line `ratio=<cardswitch tps / pgbench tps>`.

pub mod daemon;
pub mod load;
pub mod pgbench;
pub mod seed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::client::{Client, Session};
use crate::config::Config;
use crate::crypto::rsa::RsaPublic;
use crate::protocol::errno::Errno;
use load::{Mix, RunStats, Seat, World};

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
        }
    }
}

/// The JSON summary.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: serde_json::Value,
    pub database: serde_json::Value,
    pub setup: Setup,
    pub login: LoginStats,
    pub runs: Vec<RunStats>,
    pub daemon_rss: Option<daemon::Rss>,
    pub idle: Option<IdleStats>,
    pub pgbench: Option<pgbench::PgbenchStats>,
    /// First run's tps over pgbench's.
    pub ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Setup {
    pub terminals: usize,
    pub cards: usize,
    pub clients: usize,
    pub duration_s: f64,
    pub terminals_s: f64,
    pub day_keys_made: usize,
    pub day_keys_s: f64,
    pub cards_registered: u64,
    pub cards_s: f64,
    /// `--seed-cards`: cards seeded in bulk (not through the protocol).
    pub seed: Option<seed::SeedStats>,
    pub daemon: String,
}

#[derive(Debug, Serialize)]
pub struct LoginStats {
    pub terminals: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub failed: usize,
}

#[derive(Debug, Serialize)]
pub struct IdleStats {
    pub connections: usize,
    pub opened: usize,
    pub rss_before: Option<daemon::Rss>,
    pub rss_with_idle: Option<daemon::Rss>,
}

impl Report {
    /// The summary as printed: pretty JSON, then the `ratio=` line last.
    /// The JSON summary alone (what `--json-out` writes).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn render(&self) -> String {
        let json = self.json();
        let ratio = match self.ratio {
            Some(r) => format!("{r:.3}"),
            None => "n/a".into(),
        };
        format!("{json}\nratio={ratio}\n")
    }

    /// Errors of every run (errno ≠ 0 or no valid answer), summed.
    pub fn error_count(&self) -> u64 {
        self.runs.iter().map(RunStats::error_count).sum()
    }
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

const STORE_SIZE: usize = 16;
const CARD_PREFIX: &str = "BC";
const LEVEL: &str = "bench";
const MANAGER: (&str, &str) = ("bench-mgr", "246810");
const START_BALANCE: &str = "100000.00";

fn terminal_id(i: usize) -> String {
    format!("BT{i:06}")
}

fn store_id(i: usize) -> String {
    format!("BS{:04}", i / STORE_SIZE)
}

/// Runs the whole benchmark and returns its report (nothing printed to
/// stdout; progress goes to stderr).
pub async fn run(config: &Config, opts: &BenchOptions) -> anyhow::Result<Report> {
    if opts.clients == 0 || opts.terminals < opts.clients {
        bail!(
            "--terminals ({}) must be at least --clients ({}): each client is its own terminal",
            opts.terminals,
            opts.clients
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
    let daemon = start_daemon(config, opts, db).await?;
    let pids = Pids {
        daemon: daemon.pid,
        postmaster: postmaster_pid(pool).await?,
    };
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
    if let Some(d) = daemon.child {
        d.stop().await?;
    }
    let Driven {
        login,
        cards,
        seeded,
        runs,
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
        daemon_rss,
        idle,
        pgbench,
        ratio,
    })
}

/// What provisioning hands the daemon's part of the run.
struct Provisioned {
    /// (terminal, password) of every terminal, in order.
    passwords: Vec<(String, String)>,
    manager: Option<(String, String)>,
    times: ProvisionTimes,
}

struct ProvisionTimes {
    terminals_s: f64,
    day_keys_made: usize,
    day_keys_s: f64,
}

/// Terminals, their day keys, the ledger's level and manager.
async fn provision(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    opts: &BenchOptions,
) -> anyhow::Result<Provisioned> {
    let t0 = Instant::now();
    say(format!("provisioning {} terminals", opts.terminals));
    let passwords = provision_terminals(config, pool, opts.terminals).await?;
    let terminals_s = secs(t0.elapsed());
    let t0 = Instant::now();
    say(format!(
        "making day keys for today and {} days ahead (RSA-2048 each; made ahead in production)",
        opts.pregen_days
    ));
    let day_keys_made = crate::keys::admin::pregen(config, pool, opts.pregen_days).await?;
    let day_keys_s = secs(t0.elapsed());
    let manager = provision_ledger(config, pool, opts.terminals).await?;
    Ok(Provisioned {
        passwords,
        manager,
        times: ProvisionTimes {
            terminals_s,
            day_keys_made,
            day_keys_s,
        },
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

/// The first run's tps over pgbench's.
fn ratio(pgbench: Option<&pgbench::PgbenchStats>, first: Option<&RunStats>) -> Option<f64> {
    match (pgbench, first) {
        (Some(p), Some(r)) if p.tps > 0.0 => Some((r.tps / p.tps * 1000.0).round() / 1000.0),
        _ => None,
    }
}

fn setup(
    opts: &BenchOptions,
    times: &ProvisionTimes,
    cards: CardsMade,
    seeded: Option<seed::SeedStats>,
    base: &str,
) -> Setup {
    Setup {
        terminals: opts.terminals,
        cards: opts.cards,
        clients: opts.clients,
        duration_s: opts.duration.as_secs_f64(),
        terminals_s: times.terminals_s,
        day_keys_made: times.day_keys_made,
        day_keys_s: times.day_keys_s,
        cards_registered: cards.registered,
        cards_s: cards.seconds,
        seed: seeded,
        daemon: if opts.url.is_some() {
            format!("running at {base}")
        } else {
            "child process".into()
        },
    }
}

/// What the daemon's part of the run measured.
struct Driven {
    login: LoginStats,
    cards: CardsMade,
    seeded: Option<seed::SeedStats>,
    runs: Vec<RunStats>,
    daemon_rss: Option<daemon::Rss>,
    idle: Option<IdleStats>,
}

async fn drive(
    config: &Config,
    opts: &BenchOptions,
    pool: &deadpool_postgres::Pool,
    base: &str,
    pids: Pids,
    passwords: Vec<(String, String)>,
    manager: Option<(String, String)>,
) -> anyhow::Result<Driven> {
    let root = crate::keys::admin::root_public(pool).await?;
    let (login, seats) = log_in(opts, base, &root, passwords).await?;
    let world = Arc::new(World {
        card_prefix: CARD_PREFIX.into(),
        cards: opts.cards,
        manager,
        run_tag: run_tag(),
    });

    // --- cards, through the protocol: register, then a topup ---
    let cards = provision_cards(pool, &seats, &world).await?;

    // --- more cards in bulk (`--seed-cards`), then draw from them all ---
    let seeded = seed_cards(config, pool, opts, &world.run_tag).await?;
    let world = Arc::new(World {
        card_prefix: world.card_prefix.clone(),
        cards: opts.cards + opts.seed_cards,
        manager: world.manager.clone(),
        run_tag: world.run_tag.clone(),
    });

    let mut runs = Vec::new();
    for (n, mix) in opts.runs.iter().enumerate() {
        runs.push(timed_run(opts, &seats, &world, pids, n, *mix).await);
    }
    let daemon_rss = pids.daemon.and_then(daemon::rss);
    let idle = if opts.idle_connections > 0 {
        Some(hold_idle(base, pids.daemon, opts.idle_connections).await?)
    } else {
        None
    };
    Ok(Driven {
        login,
        cards,
        seeded,
        runs,
        daemon_rss,
        idle,
    })
}

/// How logging every terminal in went: a seat per terminal that got in.
struct Logins {
    seats: Vec<Option<Seat>>,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
}

/// Logs every terminal in; the first `--clients` of them are the seats of
/// the runs.
async fn log_in(
    opts: &BenchOptions,
    base: &str,
    root: &RsaPublic,
    passwords: Vec<(String, String)>,
) -> anyhow::Result<(LoginStats, Vec<Arc<Seat>>)> {
    say(format!("logging {} terminals in", passwords.len()));
    let logins = log_in_all(opts, base, root, passwords).await?;
    let (failed, login_s) = (logins.failed, logins.seconds);
    let login = LoginStats {
        terminals: opts.terminals,
        seconds: (login_s * 100.0).round() / 100.0,
        per_second: ((opts.terminals - failed) as f64 / login_s).round(),
        failed,
    };
    say(format!(
        "{} logins in {:.2} s ({} per second)",
        opts.terminals - failed,
        login_s,
        login.per_second
    ));
    if let Some(e) = logins.first_error {
        bail!("{failed} logins failed; the first: {e}");
    }
    let seats = logins
        .seats
        .into_iter()
        .take(opts.clients)
        .map(|s| Arc::new(s.expect("every login succeeded")))
        .collect();
    Ok((login, seats))
}

/// The handshakes, `--clients` at a time, timed.
async fn log_in_all(
    opts: &BenchOptions,
    base: &str,
    root: &RsaPublic,
    passwords: Vec<(String, String)>,
) -> anyhow::Result<Logins> {
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.clients));
    for (i, (terminal, password)) in passwords.into_iter().enumerate() {
        let (root, base, sem) = (root.clone(), base.to_owned(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let client = Client::new(&base);
            let r = client.handshake(&terminal, &password, &root).await;
            (i, client, r)
        });
    }
    let mut logins = Logins {
        seats: (0..opts.terminals).map(|_| None).collect(),
        failed: 0,
        first_error: None,
        seconds: 0.0,
    };
    while let Some(r) = set.join_next().await {
        let (i, client, r) = r?;
        match r {
            Ok(session) => logins.seats[i] = Some(Seat { client, session }),
            Err(e) => {
                logins.failed += 1;
                logins.first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    logins.seconds = t0.elapsed().as_secs_f64();
    Ok(logins)
}

/// `--seed-cards`: that many cards in bulk after the registered ones.
async fn seed_cards(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    opts: &BenchOptions,
    run_tag: &str,
) -> anyhow::Result<Option<seed::SeedStats>> {
    if opts.seed_cards == 0 {
        return Ok(None);
    }
    say(format!(
        "seeding {} cards in bulk after the {} registered (register + topup {START_BALANCE} rows, MACed; not through the protocol)",
        opts.seed_cards, opts.cards
    ));
    let stats = seed::seed(
        config,
        pool,
        seed::SeedSpec {
            prefix: CARD_PREFIX.into(),
            from: opts.cards,
            count: opts.seed_cards,
            terminals: opts.terminals,
            terminal: terminal_id,
            level: LEVEL.into(),
            start_balance: seed::money(START_BALANCE)?,
            run_tag: run_tag.to_owned(),
        },
    )
    .await?;
    say(format!(
        "{} cards seeded in {} s",
        stats.cards, stats.seconds
    ));
    Ok(Some(stats))
}

/// Timed run `n` (from 0) of `mix`, after its warmup.
async fn timed_run(
    opts: &BenchOptions,
    seats: &[Arc<Seat>],
    world: &Arc<World>,
    pids: Pids,
    n: usize,
    mix: Mix,
) -> RunStats {
    say(format!(
        "run {}: {} for {} s with {} clients{}",
        n + 1,
        mix.as_str(),
        opts.duration.as_secs(),
        seats.len(),
        opts.rate
            .map(|r| format!(" paced at {r} txn/s"))
            .unwrap_or_default()
    ));
    if !opts.warmup.is_zero() {
        // Its own order numbers (run numbers from 1000 on).
        load::run(
            seats.to_vec(),
            world.clone(),
            mix,
            1000 + n,
            opts.warmup,
            opts.rate,
        )
        .await;
    }
    let before = daemon::CpuMark::now(pids.daemon, pids.postmaster);
    let mut stats = load::run(
        seats.to_vec(),
        world.clone(),
        mix,
        n,
        opts.duration,
        opts.rate,
    )
    .await;
    let after = daemon::CpuMark::now(pids.daemon, pids.postmaster);
    stats.cpu_per_txn = before.per_txn(&after, stats.ok);
    say(format!(
        "run {}: {} txn/s, p50 {} ms, p99 {} ms, {} errors",
        n + 1,
        stats.tps,
        stats.latency_ms.p50,
        stats.latency_ms.p99,
        stats.error_count()
    ));
    stats
}

/// Opens `n` keep-alive connections, sends one health check on each, and
/// reads the daemon's RSS while they are all open and idle.
async fn hold_idle(base: &str, pid: Option<u32>, n: usize) -> anyhow::Result<IdleStats> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    say(format!("holding {n} idle connections"));
    let addr = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/')
        .to_owned();
    let rss_before = pid.and_then(daemon::rss);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            break;
        };
        let req = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
        if s.write_all(req).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_with_idle = pid.and_then(daemon::rss);
    let opened = conns.len();
    drop(conns);
    Ok(IdleStats {
        connections: n,
        opened,
        rss_before,
        rss_with_idle,
    })
}

/// Stores of 16 terminals each, and the terminals with fresh passwords
/// (an existing terminal of an earlier run gets a new one).
async fn provision_terminals(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    n: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::keys::admin;
    for s in (0..n).step_by(STORE_SIZE) {
        let c = pool.get().await?;
        crate::store::terminals::add_store(&c, &store_id(s), "Bench store").await?;
    }
    let existing: std::collections::HashSet<String> = admin::list_terminals(pool)
        .await?
        .into_iter()
        .map(|t| t.terminal_id)
        .collect();
    let existing = Arc::new(existing);
    let config = Arc::new(config.clone());
    let mut set = JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..n {
        let (config, pool, sem, existing) =
            (config.clone(), pool.clone(), sem.clone(), existing.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let id = terminal_id(i);
            let pw = admin::random_password().to_string();
            if existing.contains(&id) {
                admin::reset_password(&config, &pool, &id, Some(pw.clone())).await?;
            } else {
                admin::add_terminal(&config, &pool, &id, &store_id(i), Some(pw.clone())).await?;
            }
            Ok::<_, anyhow::Error>((i, id, pw))
        });
    }
    let mut out: Vec<Option<(String, String)>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, id, pw) = r??;
        out[i] = Some((id, pw));
    }
    Ok(out
        .into_iter()
        .map(|x| x.expect("every terminal"))
        .collect())
}

/// The ledger's side of provisioning, through its own store functions (as
/// `cardswitch level add` and `operator add` do): a level for the cards
/// (5 % discount, 1 point per unit) and a manager in every store (refunds
/// are manager ops). Both are kept from an earlier run.
async fn provision_ledger(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    terminals: usize,
) -> anyhow::Result<Option<(String, String)>> {
    use crate::store::operators;
    let c = pool.get().await?;
    let secrets = crate::keys::load_secrets(&config.keys_dir, &c).await?;
    let have_level = operators::list_levels(&c)
        .await?
        .iter()
        .any(|l| l.0 == LEVEL);
    if !have_level {
        operators::add_level(
            &c,
            &secrets.row_keys,
            LEVEL,
            rust_decimal::Decimal::new(95, 2),
            rust_decimal::Decimal::ONE,
        )
        .await?;
    }
    let (mgr, pin) = MANAGER;
    for s in (0..terminals).step_by(STORE_SIZE) {
        let store = store_id(s);
        let have = operators::list_operators(&c, Some(&store))
            .await?
            .iter()
            .any(|o| o.operator_id == mgr);
        if !have {
            operators::add_operator(
                &c,
                &secrets.hash_key,
                &secrets.row_keys,
                &store,
                mgr,
                "manager",
                Some(pin),
            )
            .await?;
        }
    }
    Ok(Some((mgr.to_owned(), pin.to_owned())))
}

/// The cards `provision_cards` registered, and how long it took.
struct CardsMade {
    registered: u64,
    seconds: f64,
}

/// Registers the missing benchmark cards and tops each up, through the
/// protocol (`register`, then `topup`), spread over the seats.
async fn provision_cards(
    pool: &deadpool_postgres::Pool,
    seats: &[Arc<Seat>],
    world: &Arc<World>,
) -> anyhow::Result<CardsMade> {
    let have = {
        let c = pool.get().await?;
        let below = load::card_no(CARD_PREFIX, world.cards);
        crate::store::fixtures::bench::count_cards_below(&c, CARD_PREFIX, &below).await?
    };
    if have as usize >= world.cards {
        return Ok(CardsMade {
            registered: 0,
            seconds: 0.0,
        });
    }
    say(format!(
        "registering {} cards through the protocol (register + topup {START_BALANCE})",
        world.cards - have as usize
    ));
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for seat in seats {
        let (seat, world, next) = (seat.clone(), world.clone(), next.clone());
        set.spawn(async move {
            let mut made = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= world.cards {
                    return Ok::<_, anyhow::Error>(made);
                }
                if register_card(&seat.client, &seat.session, &world, i).await? {
                    made += 1;
                }
            }
        });
    }
    let mut made = 0;
    while let Some(r) = set.join_next().await {
        made += r??;
    }
    let s = secs(t0.elapsed());
    say(format!("{made} cards registered in {s} s"));
    Ok(CardsMade {
        registered: made,
        seconds: s,
    })
}

/// One card: `register` (2012, card in use, means an earlier run made it)
/// and, when it was new, a `topup`. Returns whether it was new.
async fn register_card(
    client: &Client,
    session: &Session,
    world: &World,
    i: usize,
) -> anyhow::Result<bool> {
    let card = load::card_no(&world.card_prefix, i);
    let reg = load::build(
        "register",
        None,
        Some(&format!("{}reg{i}", world.run_tag)),
        None,
        &card,
        &[
            ("name", "Bench"),
            ("phone", "13800000000"),
            ("level", LEVEL),
        ],
    )?;
    let out = client.txn(session, &reg).await?;
    match out.errno {
        Errno::Ok => {}
        Errno::CardInUse => return Ok(false),
        e => bail!(
            "register {card}: errno {} ({}){}",
            e.code(),
            e.message(),
            if e == Errno::Internal {
                " — is the ledger in this build?"
            } else {
                ""
            }
        ),
    }
    let top = load::build(
        "topup",
        Some(START_BALANCE),
        Some(&format!("{}top{i}", world.run_tag)),
        None,
        &card,
        &[],
    )?;
    let out = client.txn(session, &top).await?;
    if out.errno != Errno::Ok {
        bail!("topup {card}: errno {}", out.errno.code());
    }
    Ok(true)
}

/// A tag that makes order numbers unique across runs on one database.
fn run_tag() -> String {
    let ms = chrono::Utc::now().timestamp_millis();
    format!("b{ms:x}")
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

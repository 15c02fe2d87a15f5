//! The daemon's part of the run: every terminal logged in, the cards
//! provisioned, the timed runs (each after its warmup) and the idle
//! connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::task::JoinSet;

use super::load::{self, Mix, RunStats, Seat, World};
use super::provision::{provision_cards, seed_cards, CardsMade, CARD_PREFIX};
use super::report::{IdleStats, LoginStats};
use super::{daemon, say, seed, BenchOptions, Pids};
use crate::client::Client;
use crate::config::Config;
use crate::crypto::rsa::RsaPublic;

/// What the daemon's part of the run measured.
pub(super) struct Driven {
    pub(super) login: LoginStats,
    pub(super) cards: CardsMade,
    pub(super) seeded: Option<seed::SeedStats>,
    pub(super) runs: Vec<RunStats>,
    pub(super) sweep: Vec<RunStats>,
    pub(super) daemon_rss: Option<daemon::Rss>,
    pub(super) idle: Option<IdleStats>,
}

pub(super) async fn drive(
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
    let main_seats = &seats[..opts.clients.min(seats.len())];
    for (n, mix) in opts.runs.iter().enumerate() {
        runs.push(timed_run(opts, pool, main_seats, &world, pids, n, *mix).await);
    }
    let mut sweep = Vec::new();
    for (i, c) in opts.sweep_clients.iter().enumerate() {
        // Run numbers of their own (100 on), so their orders are new.
        let some = &seats[..(*c).min(seats.len())];
        sweep.push(timed_run(opts, pool, some, &world, pids, 100 + i, Mix::Debit).await);
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
        sweep,
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
        .take(opts.most_clients())
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

/// Timed run `n` (from 0) of `mix`, after its warmup.
async fn timed_run(
    opts: &BenchOptions,
    pool: &deadpool_postgres::Pool,
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
    let probe = &seats[0].client;
    let batches_before = daemon::BatchMark::read(probe).await;
    let wal_before = wal_counters(pool).await;
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
    if let (Some(a), Some(b)) = (batches_before, daemon::BatchMark::read(probe).await) {
        stats.batches = Some(b.since(&a));
    }
    if let (Some(a), Some(b)) = (wal_before, wal_counters(pool).await) {
        stats.wal = daemon::WalPerTxn::between(&a, &b, stats.ok);
    }
    say(format!(
        "run {}: {} txn/s, p50 {} ms, p99 {} ms, {} errors, {} txns per commit{}",
        n + 1,
        stats.tps,
        stats.latency_ms.p50,
        stats.latency_ms.p99,
        stats.error_count(),
        stats.batches.as_ref().map_or(0.0, |b| b.mean),
        stats.wal.as_ref().map_or(String::new(), |w| format!(
            ", WAL {} B and {} full pages per txn, {} checkpoints",
            w.bytes, w.full_page_images, w.checkpoints
        ))
    ));
    stats
}

/// The server's WAL counters now (`None` when they cannot be read: the
/// figures are then left out, the run still counts).
async fn wal_counters(
    pool: &deadpool_postgres::Pool,
) -> Option<crate::store::fixtures::bench::WalCounters> {
    let c = pool.get().await.ok()?;
    crate::store::fixtures::bench::wal_counters(&c).await.ok()
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

/// A tag that makes order numbers unique across runs on one database.
fn run_tag() -> String {
    let ms = chrono::Utc::now().timestamp_millis();
    format!("b{ms:x}")
}

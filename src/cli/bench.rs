//! `bench`: the end-to-end load benchmark (README, Performance).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;

#[derive(Args)]
pub struct BenchArgs {
    /// Terminals provisioned and logged in (each client is one of them).
    #[arg(long, default_value_t = 64)]
    terminals: usize,
    /// Cards registered (through the protocol) and used by the load.
    #[arg(long, default_value_t = 100_000)]
    cards: usize,
    /// Concurrent clients, and pgbench's client count.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of each timed run, and of pgbench.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of the same load before each timed run, not counted (fresh
    /// pooled connections prepare their statements then).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Timed runs in order, comma-separated: debit, mixed (70 % debit, 10 % topup,
    /// 10 % query, 5 % refund, 5 % points), query.
    #[arg(long, default_value = "debit,mixed")]
    mix: String,
    /// Pace the runs at this many txns/s in all (default: as fast as it goes).
    #[arg(long)]
    rate: Option<f64>,
    /// Skip pgbench (the last line is then `ratio=n/a`).
    #[arg(long)]
    no_pgbench: bool,
    /// pgbench's scale (its database is `<database>_pgbench`, recreated).
    #[arg(long, default_value_t = 10)]
    pgbench_scale: u32,
    /// Use this running daemon (on the same database) instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// The running daemon's pid, to report its RSS (with --url).
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// After the runs, hold this many idle connections open and report the daemon's RSS.
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Day keys made before the daemon starts: today and this many days ahead.
    #[arg(long, default_value_t = 1)]
    pregen_days: u32,
    /// After registering --cards through the protocol, seed this many more in
    /// bulk SQL (member, card, register and topup postings, MACed as the
    /// ledger writes them; no orders rows) for the table-size figure; the
    /// timed runs then draw cards from all of them.
    #[arg(long, default_value_t = 0)]
    seed_cards: usize,
    /// Register an endpoint that answers every event at once, and report
    /// events delivered per second and the lag from posting to arrival.
    #[arg(long)]
    webhook: bool,
    /// Beside the runs, this many connections from 127.0.0.2 POST junk to
    /// /v1/txn (issue 12's flood), and /healthz is probed 10 times a second.
    #[arg(long, default_value_t = 0)]
    junk_flood: usize,
    /// The junk flood's requests per second, in all.
    #[arg(long, default_value_t = 150.0)]
    junk_rate: f64,
    /// After the runs, a debit run at each of these client counts
    /// (comma-separated; --terminals must cover the largest), reported
    /// under `sweep`; `ratio=` stays the first run's.
    #[arg(long, value_delimiter = ',')]
    sweep_clients: Vec<usize>,
}

pub async fn bench_command(a: BenchArgs, config: &Config) -> anyhow::Result<ExitCode> {
    use crate::bench;
    let opts = bench::BenchOptions {
        terminals: a.terminals,
        cards: a.cards,
        clients: a.clients,
        duration: std::time::Duration::from_secs(a.duration),
        warmup: std::time::Duration::from_secs(a.warmup),
        runs: bench::parse_runs(&a.mix)?,
        rate: a.rate,
        pgbench: !a.no_pgbench,
        pgbench_scale: a.pgbench_scale,
        url: a.url,
        daemon_pid: a.daemon_pid,
        daemon_exe: Some(std::env::current_exe()?),
        idle_connections: a.idle_connections,
        work_dir: config.data_dir.join("bench"),
        pregen_days: a.pregen_days,
        seed_cards: a.seed_cards,
        webhook: a.webhook,
        junk_flood: a.junk_flood,
        junk_rate: a.junk_rate,
        sweep_clients: a.sweep_clients,
    };
    let report = bench::run(config, &opts).await?;
    let text = report.render();
    if let Some(path) = a.json_out {
        std::fs::write(&path, report.json() + "\n")?;
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

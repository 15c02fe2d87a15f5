//! The report of a run: the JSON summary, its parts, the `ratio=` line
//! that `render` prints last, and the figures they are built from.

use serde::Serialize;

use super::load::RunStats;
use super::provision::{CardsMade, ProvisionTimes};
use super::{daemon, pgbench, seed, BenchOptions};

/// The JSON summary.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: serde_json::Value,
    pub database: serde_json::Value,
    pub setup: Setup,
    pub login: LoginStats,
    pub runs: Vec<RunStats>,
    /// `--sweep-clients`: a debit run per client count.
    pub sweep: Vec<RunStats>,
    pub daemon_rss: Option<daemon::Rss>,
    pub idle: Option<IdleStats>,
    pub pgbench: Option<pgbench::PgbenchStats>,
    /// With `--webhook`: the runs' events as an endpoint received them.
    pub events: Option<super::webhook::EventFigures>,
    /// With `--junk-flood`: what the junk got and how health fared.
    pub flood: Option<super::flood::FloodStats>,
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
    /// The JSON summary alone (what `--json-out` writes).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The summary as printed: pretty JSON, then the `ratio=` line last.
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

/// The first run's tps over pgbench's.
pub(super) fn ratio(
    pgbench: Option<&pgbench::PgbenchStats>,
    first: Option<&RunStats>,
) -> Option<f64> {
    match (pgbench, first) {
        (Some(p), Some(r)) if p.tps > 0.0 => Some((r.tps / p.tps * 1000.0).round() / 1000.0),
        _ => None,
    }
}

pub(super) fn setup(
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

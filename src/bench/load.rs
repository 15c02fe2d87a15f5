//! The load itself: C workers, each with its own terminal, session and HTTP
//! connection, sending encrypted txns back to back (or paced) for a fixed
//! time; latencies and errnos counted per worker and merged at the end.

mod mix;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{Client, Session, TxnOutcome};
use crate::protocol::errno::Errno;
use mix::Orders;
pub use mix::{build, card_no, weights, LoadOp, Mix};

/// Who the load may act as, and on what.
pub struct World {
    pub card_prefix: String,
    pub cards: usize,
    /// A manager of every benchmark store, for refunds: (operator, PIN).
    pub manager: Option<(String, String)>,
    /// Makes order numbers unique across runs on one database.
    pub run_tag: String,
}

/// One worker's terminal: its client (connection, `ts` clock) and session.
pub struct Seat {
    pub client: Client,
    pub session: Session,
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
pub struct RunStats {
    pub mix: String,
    pub seconds: f64,
    pub clients: usize,
    /// Requests answered (any errno), and those answered errno 0.
    pub requests: u64,
    pub ok: u64,
    /// Successful txns per second: `ok / seconds`.
    pub tps: f64,
    /// Target rate when paced (`--rate`), else none.
    pub target_rate: Option<f64>,
    pub latency_ms: Latency,
    /// Errors by errno (or `transport` for no valid answer).
    pub errors: BTreeMap<String, u64>,
    /// Requests sent per op.
    pub ops: BTreeMap<String, u64>,
    /// CPU per successful txn of the daemon, the database server and the
    /// load generator: robust to a shared machine, unlike tps.
    pub cpu_per_txn: super::daemon::CpuPerTxn,
    /// The daemon's group commit over the run (`None`: no `/metrics`).
    pub batches: Option<super::daemon::BatchSizes>,
    /// The server's WAL per successful txn (`None`: not readable).
    pub wal: Option<super::daemon::WalPerTxn>,
}

impl RunStats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From latencies in microseconds (sorted here).
    pub fn of(mut micros: Vec<u32>) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[i]) / 1000.0
        };
        let mean = micros.iter().map(|&m| f64::from(m)).sum::<f64>() / micros.len() as f64;
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
            mean: (mean / 10.0).round() / 100.0,
        }
    }
}

#[derive(Default)]
struct WorkerStats {
    micros: Vec<u32>,
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    ops: BTreeMap<String, u64>,
}

/// Runs `mix` on every seat for `duration`; `rate` (txns/s over all
/// workers) paces the workers instead of sending back to back.
pub async fn run(
    seats: Vec<Arc<Seat>>,
    world: Arc<World>,
    mix: Mix,
    run_no: usize,
    duration: Duration,
    rate: Option<f64>,
) -> RunStats {
    let clients = seats.len();
    let started = Instant::now();
    let deadline = started + duration;
    let per_worker_interval = rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(clients as f64 / r));
    let mut tasks = Vec::new();
    for (w, seat) in seats.into_iter().enumerate() {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            worker(seat, world, mix, run_no, w, deadline, per_worker_interval).await
        }));
    }
    let mut all = WorkerStats::default();
    for t in tasks {
        let s = t.await.unwrap_or_default();
        all.micros.extend(s.micros);
        all.requests += s.requests;
        all.ok += s.ok;
        for (k, v) in s.errors {
            *all.errors.entry(k).or_default() += v;
        }
        for (k, v) in s.ops {
            *all.ops.entry(k).or_default() += v;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    RunStats {
        mix: mix.as_str().into(),
        seconds: (seconds * 100.0).round() / 100.0,
        clients,
        requests: all.requests,
        ok: all.ok,
        tps: (all.ok as f64 / seconds * 10.0).round() / 10.0,
        target_rate: rate,
        latency_ms: Latency::of(all.micros),
        errors: all.errors,
        ops: all.ops,
        cpu_per_txn: Default::default(),
        batches: None,
        wal: None,
    }
}

async fn worker(
    seat: Arc<Seat>,
    world: Arc<World>,
    mix: Mix,
    run_no: usize,
    w: usize,
    deadline: Instant,
    interval: Option<Duration>,
) -> WorkerStats {
    let mut rng = StdRng::seed_from_u64((run_no as u64) << 32 | w as u64);
    let mut pacer = Pacer::new(interval, &mut rng);
    let mut orders = Orders::new(&world, mix, run_no, w);
    let mut stats = WorkerStats::default();
    while Instant::now() < deadline {
        let ControlFlow::Continue(scheduled) = pacer.wait(&mut rng, deadline).await else {
            break;
        };
        let op = orders.pick(&mut rng);
        let form = orders.form(op, &mut rng);
        *stats.ops.entry(op.as_str().into()).or_default() += 1;
        let form = match form {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "bench built a malformed form");
                *stats.errors.entry("client".into()).or_default() += 1;
                continue;
            }
        };
        // Paced, a request that goes out late (its worker still waiting for
        // the previous answer) counts the wait: latency from the schedule.
        let t0 = scheduled.unwrap_or_else(Instant::now);
        let result = seat.client.txn(&seat.session, &form).await;
        let micros = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        stats.record(micros, result);
    }
    stats
}

/// Open-loop pacing: each worker keeps its own schedule, a Poisson
/// process (exponential gaps of mean `iv`) from a random phase, as
/// customers reach tills; workers started in step would send in bursts.
struct Pacer {
    /// The mean gap; none: back to back.
    interval: Option<Duration>,
    next_at: Instant,
}

impl Pacer {
    fn new(interval: Option<Duration>, rng: &mut StdRng) -> Pacer {
        let phase = interval.map_or(Duration::ZERO, |iv| iv.mul_f64(rng.gen()));
        Pacer {
            interval,
            next_at: Instant::now() + phase,
        }
    }

    /// Waits for the next slot; continues with the time it was scheduled
    /// for (none when unpaced), breaks when the wait reached `deadline`.
    async fn wait(
        &mut self,
        rng: &mut StdRng,
        deadline: Instant,
    ) -> ControlFlow<(), Option<Instant>> {
        let Some(iv) = self.interval else {
            return ControlFlow::Continue(None);
        };
        let now = Instant::now();
        if self.next_at > now {
            tokio::time::sleep_until(self.next_at.into()).await;
        }
        let scheduled = self.next_at;
        self.next_at += iv.mul_f64(-(1.0 - rng.gen::<f64>()).ln());
        if Instant::now() >= deadline {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(Some(scheduled))
    }
}

impl WorkerStats {
    /// One request: its latency in µs and how it ended.
    fn record(&mut self, micros: u32, result: anyhow::Result<TxnOutcome>) {
        self.micros.push(micros);
        self.requests += 1;
        match result {
            Ok(out) if out.errno == Errno::Ok => self.ok += 1,
            Ok(out) => *self.errors.entry(out.errno.code().to_string()).or_default() += 1,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "txn failed");
                *self.errors.entry("transport".into()).or_default() += 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=100).map(|i| i * 1000).collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Latency::of(vec![]).p99, 0.0);
    }
}

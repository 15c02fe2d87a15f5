//! The load itself: C workers, each with its own terminal, session and HTTP
//! connection, sending encrypted txns back to back (or paced) for a fixed
//! time; latencies and errnos counted per worker and merged at the end.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{inner_form, Client, Session, TxnOutcome};
use crate::protocol::errno::Errno;
use crate::protocol::form::encode_form;
use crate::protocol::message::InnerForm;

/// What a run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Debits only (tender balance).
    Debit,
    /// 70 % debit, 10 % topup, 10 % query, 5 % refund, 5 % points.
    Mixed,
    /// Queries only (reads; works without the ledger's postings).
    Query,
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        match s {
            "debit" => Ok(Mix::Debit),
            "mixed" => Ok(Mix::Mixed),
            "query" => Ok(Mix::Query),
            o => Err(format!("mix must be debit, mixed or query, not {o:?}")),
        }
    }
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Debit => "debit",
            Mix::Mixed => "mixed",
            Mix::Query => "query",
        }
    }
}

/// The operations a run may send, with their weights in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadOp {
    Debit,
    Topup,
    Query,
    Refund,
    Points,
}

impl LoadOp {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadOp::Debit => "debit",
            LoadOp::Topup => "topup",
            LoadOp::Query => "query",
            LoadOp::Refund => "refund",
            LoadOp::Points => "points",
        }
    }
}

/// The op mix as data: (op, weight); weights need not sum to 100.
pub fn weights(mix: Mix) -> &'static [(LoadOp, u32)] {
    match mix {
        Mix::Debit => &[(LoadOp::Debit, 100)],
        Mix::Query => &[(LoadOp::Query, 100)],
        Mix::Mixed => &[
            (LoadOp::Debit, 70),
            (LoadOp::Topup, 10),
            (LoadOp::Query, 10),
            (LoadOp::Refund, 5),
            (LoadOp::Points, 5),
        ],
    }
}

fn pick(table: &[(LoadOp, u32)], rng: &mut StdRng) -> LoadOp {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total.max(1));
    for (op, w) in table {
        if x < *w {
            return *op;
        }
        x -= w;
    }
    table[0].0
}

/// The card numbers of the benchmark: `prefix` then 10 digits.
pub fn card_no(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:010}")
}

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
    }
}

/// A debit of this worker that may still be refunded: (order_no, amount).
type Refundable = (String, String);

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

/// What a worker sends: its ops, order numbers and the debits it may
/// still refund.
struct Orders<'a> {
    world: &'a World,
    mix: Mix,
    table: &'static [(LoadOp, u32)],
    run_no: usize,
    w: usize,
    seq: u64,
    refundable: VecDeque<Refundable>,
}

impl<'a> Orders<'a> {
    fn new(world: &'a World, mix: Mix, run_no: usize, w: usize) -> Orders<'a> {
        Orders {
            world,
            mix,
            table: weights(mix),
            run_no,
            w,
            seq: 0,
            refundable: VecDeque::new(),
        }
    }

    /// The next op; a refund without a debit to refund or a manager to
    /// authorise it is a debit instead.
    fn pick(&self, rng: &mut StdRng) -> LoadOp {
        let op = pick(self.table, rng);
        if op == LoadOp::Refund && (self.refundable.is_empty() || self.world.manager.is_none()) {
            return LoadOp::Debit;
        }
        op
    }

    /// The form of `op` on a random card, under a new order number.
    fn form(&mut self, op: LoadOp, rng: &mut StdRng) -> anyhow::Result<InnerForm> {
        self.seq += 1;
        let world = self.world;
        let (run_no, w, seq) = (self.run_no, self.w, self.seq);
        let order_no = format!("{}r{run_no}w{w}n{seq}", world.run_tag);
        let card = card_no(&world.card_prefix, rng.gen_range(0..world.cards.max(1)));
        match op {
            LoadOp::Debit => {
                let amount = format!("{}.{:02}", rng.gen_range(1..20), rng.gen_range(0..100));
                if self.mix == Mix::Mixed && self.refundable.len() < 64 {
                    self.refundable
                        .push_back((order_no.clone(), amount.clone()));
                }
                build(
                    "debit",
                    Some(&amount),
                    Some(&order_no),
                    None,
                    &card,
                    &[("tender", "balance")],
                )
            }
            LoadOp::Topup => build("topup", Some("50.00"), Some(&order_no), None, &card, &[]),
            LoadOp::Query => build("query", None, None, None, &card, &[]),
            LoadOp::Points => build(
                "points",
                None,
                Some(&order_no),
                None,
                &card,
                &[("delta", "10"), ("reason", "bench")],
            ),
            LoadOp::Refund => {
                let (orig, _amount) = self.refundable.pop_front().expect("checked in pick");
                let (mgr, pin) = world.manager.clone().expect("checked in pick");
                build(
                    "refund",
                    Some("0.50"),
                    Some(&order_no),
                    Some(&mgr),
                    &orig,
                    &[("mpin", &pin)],
                )
            }
        }
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

/// An inner form for `op`; `attr2` pairs are form-encoded (sent twice encoded).
pub fn build(
    op: &str,
    amount: Option<&str>,
    order_no: Option<&str>,
    operator: Option<&str>,
    attr1: &str,
    attr2: &[(&str, &str)],
) -> anyhow::Result<InnerForm> {
    let a2 = encode_form(attr2);
    inner_form(
        op,
        amount,
        order_no,
        operator,
        Some(attr1),
        (!a2.is_empty()).then_some(a2.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_weights_follow_the_issue() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut n: BTreeMap<LoadOp, u32> = BTreeMap::new();
        for _ in 0..100_000 {
            *n.entry(pick(weights(Mix::Mixed), &mut rng)).or_default() += 1;
        }
        let pct = |op| f64::from(n[&op]) / 1000.0;
        assert!((pct(LoadOp::Debit) - 70.0).abs() < 1.0);
        assert!((pct(LoadOp::Topup) - 10.0).abs() < 1.0);
        assert!((pct(LoadOp::Query) - 10.0).abs() < 1.0);
        assert!((pct(LoadOp::Refund) - 5.0).abs() < 1.0);
        assert!((pct(LoadOp::Points) - 5.0).abs() < 1.0);
    }

    #[test]
    fn every_op_builds_a_valid_form() {
        for (op, amount, order, operator, attr1, attr2) in [
            (
                "debit",
                Some("1.50"),
                Some("o1"),
                None,
                "BC0000000001",
                vec![("tender", "balance")],
            ),
            (
                "topup",
                Some("50.00"),
                Some("o2"),
                None,
                "BC0000000001",
                vec![],
            ),
            ("query", None, None, None, "BC0000000001", vec![]),
            (
                "points",
                None,
                Some("o3"),
                None,
                "BC0000000001",
                vec![("delta", "10"), ("reason", "bench")],
            ),
            (
                "refund",
                Some("0.50"),
                Some("o4"),
                Some("m1"),
                "o1",
                vec![("mpin", "1234")],
            ),
            (
                "register",
                None,
                Some("o5"),
                None,
                "BC0000000002",
                vec![
                    ("name", "Bench"),
                    ("phone", "13800000000"),
                    ("level", "bench"),
                ],
            ),
        ] {
            build(op, amount, order, operator, attr1, &attr2).unwrap();
        }
    }

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=100).map(|i| i * 1000).collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Latency::of(vec![]).p99, 0.0);
    }
}

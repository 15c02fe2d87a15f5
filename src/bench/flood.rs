//! `--junk-flood N`: the attack of issue 12 beside the timed runs. N
//! connections from another loopback address (127.0.0.2, so the runs' own
//! address budget is untouched) POST the body `junk=1` to `/v1/txn` at
//! `--junk-rate` requests/s in all, while a prober GETs `/healthz` ten times
//! a second. The report says what the junk got back and whether health
//! stayed green; the runs' latency beside a run without the flood is the
//! figure (deploy/bench-flood.sh runs both).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::load::Latency;
use crate::client::Client;

const JUNK_SOURCE: [u8; 4] = [127, 0, 0, 2];
const PROBE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
pub struct FloodStats {
    pub connections: usize,
    pub rate_per_s: f64,
    pub sent: u64,
    /// The junk's answers by HTTP status (0: no answer).
    pub statuses: BTreeMap<u16, u64>,
    pub healthz_checks: u64,
    pub healthz_not_200: u64,
    pub healthz_ms: Latency,
}

#[derive(Default)]
struct Counts {
    statuses: BTreeMap<u16, u64>,
    healthz: Vec<u32>,
    healthz_not_200: u64,
}

pub(super) struct Flood {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
    counts: Arc<Mutex<Counts>>,
    connections: usize,
    rate: f64,
}

impl Flood {
    pub(super) fn start(base: &str, connections: usize, rate: f64) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let mut tasks = JoinSet::new();
        let junk = Arc::new(Client::bound(base, JUNK_SOURCE.into()));
        // Each connection sends at its share of the rate.
        let every = Duration::from_secs_f64(connections as f64 / rate.max(0.001));
        for n in 0..connections {
            let (stop, counts, junk) = (stop.clone(), counts.clone(), junk.clone());
            let offset = every.mul_f64(n as f64 / connections as f64);
            tasks.spawn(async move {
                tokio::time::sleep(offset).await;
                let mut tick = tokio::time::interval(every);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let status = match junk.post_form("/v1/txn", "junk=1", &[]).await {
                        Ok(r) => r.status,
                        Err(_) => 0,
                    };
                    *counts
                        .lock()
                        .expect("lock")
                        .statuses
                        .entry(status)
                        .or_default() += 1;
                }
            });
        }
        let probe = Client::new(base);
        let (stop2, counts2) = (stop.clone(), counts.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = Instant::now();
                let ok = matches!(probe.get_raw("/healthz").await, Ok(r) if r.status == 200);
                let mut c = counts2.lock().expect("lock");
                c.healthz.push(t.elapsed().as_micros() as u32);
                if !ok {
                    c.healthz_not_200 += 1;
                }
            }
        });
        Flood {
            stop,
            tasks,
            counts,
            connections,
            rate,
        }
    }

    pub(super) async fn stop(mut self) -> FloodStats {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        let c = std::mem::take(&mut *self.counts.lock().expect("lock"));
        FloodStats {
            connections: self.connections,
            rate_per_s: self.rate,
            sent: c.statuses.values().sum(),
            statuses: c.statuses,
            healthz_checks: c.healthz.len() as u64,
            healthz_not_200: c.healthz_not_200,
            healthz_ms: Latency::of(c.healthz),
        }
    }
}

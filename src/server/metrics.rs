//! Prometheus metrics, kept in the server state (no global recorder), so two
//! daemons in one test process count separately.

use prometheus_client::encoding::{text::encode, EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The paths we label by; anything else is `Other`, so a scanner cannot blow
/// up the number of series.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PathLabel {
    v1_hello,
    v1_login,
    v1_txn,
    healthz,
    metrics,
    other,
}

impl PathLabel {
    pub fn of(path: &str) -> PathLabel {
        match path {
            "/v1/hello" => PathLabel::v1_hello,
            "/v1/login" => PathLabel::v1_login,
            "/v1/txn" => PathLabel::v1_txn,
            "/healthz" => PathLabel::healthz,
            "/metrics" => PathLabel::metrics,
            _ => PathLabel::other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: PathLabel,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: PathLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrnoLabels {
    errno: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<PathLabels, Histogram>,
    pool_size: Gauge,
    pool_available: Gauge,
    pool_waiting: Gauge,
    tampered: Counter,
    refusals: Family<ErrnoLabels, Counter>,
    pub events: EventMetrics,
    pub group: GroupMetrics,
}

/// Group commit (issue 14).
#[derive(Clone)]
pub struct GroupMetrics {
    /// Txns per committed transaction (1: run alone).
    pub batch_size: Histogram,
    /// Batches rolled back for their txns to run alone.
    pub rolled_back: Counter,
}

impl GroupMetrics {
    fn new() -> GroupMetrics {
        GroupMetrics {
            // 1, 2, 4 .. 128
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            rolled_back: Counter::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "txn_batch_size",
            "Txns committed per database transaction (group commit)",
            self.batch_size.clone(),
        );
        r.register(
            "txn_batches_rolled_back",
            "Group-commit batches rolled back so that each txn ran alone",
            self.rolled_back.clone(),
        );
    }
}

/// Webhook delivery (protocol.md §8).
pub struct EventMetrics {
    pub delivered: Counter,
    /// Attempts that did not get a 2xx in time.
    pub attempts_failed: Counter,
    /// Deliveries given up after the whole retry schedule.
    pub failed: Counter,
    /// Deliveries waiting, as last seen by this daemon's deliverer.
    pub queued: Gauge,
    /// Age of the oldest waiting delivery's event (ms).
    pub oldest_queued_ms: Gauge,
    /// From the posting's commit to its event's 2xx.
    pub lag: Histogram,
}

impl EventMetrics {
    fn new() -> EventMetrics {
        EventMetrics {
            // 1 ms .. ~30 min
            lag: Histogram::new(exponential_buckets(0.001, 2.0, 22)),
            delivered: Counter::default(),
            attempts_failed: Counter::default(),
            failed: Counter::default(),
            queued: Gauge::default(),
            oldest_queued_ms: Gauge::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "events_delivered",
            "Event deliveries acknowledged",
            self.delivered.clone(),
        );
        r.register(
            "events_attempts_failed",
            "Event delivery attempts without a 2xx answer in time",
            self.attempts_failed.clone(),
        );
        r.register(
            "events_failed",
            "Event deliveries given up after the retry schedule",
            self.failed.clone(),
        );
        r.register(
            "events_queued",
            "Event deliveries waiting",
            self.queued.clone(),
        );
        r.register(
            "events_oldest_queued_ms",
            "Age of the oldest waiting event delivery",
            self.oldest_queued_ms.clone(),
        );
        r.register(
            "events_delivery_lag_seconds",
            "Time from a posting's commit to its event's acknowledgement",
            self.lag.clone(),
        );
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cardswitch");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<PathLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let pool_size = Gauge::default();
        let pool_available = Gauge::default();
        let pool_waiting = Gauge::default();
        let tampered = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by path and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to answer, by path",
            latency.clone(),
        );
        registry.register(
            "db_pool_size",
            "Open database connections",
            pool_size.clone(),
        );
        registry.register(
            "db_pool_available",
            "Idle database connections",
            pool_available.clone(),
        );
        registry.register(
            "db_pool_waiting",
            "Requests waiting for a database connection",
            pool_waiting.clone(),
        );
        registry.register(
            "integrity_failures",
            "Requests refused with 3001 because a stored row failed its integrity check",
            tampered.clone(),
        );
        let events = EventMetrics::new();
        events.register(&mut registry);
        let group = GroupMetrics::new();
        group.register(&mut registry);
        let refusals = Family::<ErrnoLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests refused before the ledger, by errno (each also audited)",
            refusals.clone(),
        );
        Metrics {
            tampered,
            refusals,
            events,
            group,
            registry,
            requests,
            latency,
            pool_size,
            pool_available,
            pool_waiting,
        }
    }
}

impl Metrics {
    /// The audit writer's count of rows it could not write.
    pub fn register_audit_lost(&mut self, lost: Counter) {
        self.registry.register(
            "audit_lost",
            "Audit rows that could not be written (each logged at error level instead)",
            lost,
        );
    }

    /// One request refused by the protocol layer, with its errno.
    pub fn refused(&self, errno: u16) {
        self.refusals.get_or_create(&ErrnoLabels { errno }).inc();
    }

    /// One request refused because a row failed its MAC (3001).
    pub fn tampered(&self) {
        self.tampered.inc();
    }

    pub fn observe(&self, path: PathLabel, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { path, status })
            .inc();
        self.latency
            .get_or_create(&PathLabels { path })
            .observe(seconds);
    }

    /// Renders the text exposition, with pool gauges read at scrape time.
    pub fn render(&self, pool: &deadpool_postgres::Pool) -> String {
        let s = pool.status();
        self.pool_size.set(s.size as i64);
        self.pool_available.set(s.available as i64);
        self.pool_waiting.set(s.waiting as i64);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(PathLabel::of("/etc/passwd"), PathLabel::other);
        assert_eq!(PathLabel::of("/v1/txn"), PathLabel::v1_txn);
    }
}

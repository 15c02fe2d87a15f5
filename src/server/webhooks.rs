//! The deliverer (protocol.md §8). New events are taken from the outbox
//! under row locks (`SKIP LOCKED`) in a transaction held while they are
//! POSTed to every endpoint that wants them, then marked sent in it: the
//! lock is the lease, so with several daemons each event has one sender,
//! and a daemon killed mid-delivery leaves its events to the next at once.
//! Only a first attempt that fails leaves a delivery row, which is retried
//! on the configured schedule under a lease of its own (twice the attempt's
//! timeout). Nothing is lost, and a receiver dedupes by `id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

use super::AppState;
use crate::crypto::SecretVec;
use crate::protocol::events as wire;
use crate::store::events::{self, Due};

type Http = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// New events taken per round.
const NEW_BATCH: i64 = 256;
/// How often the queue gauges are read and old events purged.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until the task is aborted: new events and retries in two loops of
/// their own, so that retries to an endpoint that is down never hold up
/// the first attempts to the others.
pub async fn deliver_forever(state: Arc<AppState>) {
    let http = match client(&state.config.events) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "event delivery cannot start");
            return;
        }
    };
    tokio::join!(
        new_loop(state.clone(), http.clone()),
        retry_loop(state.clone(), http)
    );
}

/// First attempts of new events, round after round (at once while rounds
/// are full), skipping endpoints that just failed (see [`Failing`]).
async fn new_loop(state: Arc<AppState>, http: Http) {
    let poll = Duration::from_millis(state.config.events.poll_ms.max(1));
    let mut secrets: HashMap<String, Arc<SecretVec>> = HashMap::new();
    let mut failing = Failing::default();
    let mut full = false;
    loop {
        if !full {
            tokio::time::sleep(poll).await;
        }
        full = match send_new(&state, &http, &mut secrets, &mut failing).await {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "event delivery: new events");
                false
            }
        };
    }
}

/// Retries of failed first attempts, and the gauges and purge.
async fn retry_loop(state: Arc<AppState>, http: Http) {
    let cfg = state.config.events.clone();
    let poll = Duration::from_millis(cfg.poll_ms.max(1));
    let mut secrets: HashMap<String, Arc<SecretVec>> = HashMap::new();
    let mut gauged = Instant::now() - GAUGE_EVERY;
    let mut purged = Instant::now();
    let mut full = false;
    loop {
        if !full {
            tokio::time::sleep(poll).await;
        }
        let retries = match lease(&state, &cfg).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "event delivery: cannot read the retries");
                vec![]
            }
        };
        full = retries.len() as i64 >= cfg.batch.max(1);
        if !retries.is_empty() {
            send_all(&state, &http, &mut secrets, retries).await;
        }
        if gauged.elapsed() >= GAUGE_EVERY {
            gauged = Instant::now();
            gauge(&state).await;
        }
        if purged.elapsed() >= PURGE_EVERY {
            purged = Instant::now();
            purge(&state, cfg.keep_days).await;
        }
    }
}

/// Endpoints whose first attempt failed lately. For [`FAILING_FOR`] their
/// new events go to the retries unattempted (a delivery row due now), so an
/// endpoint that is down or slow holds up a round of first attempts at most
/// once in that time, not every round.
#[derive(Default)]
struct Failing(HashMap<String, Instant>);

const FAILING_FOR: Duration = Duration::from_secs(30);

impl Failing {
    fn now(&self, endpoint: &str) -> bool {
        self.0
            .get(endpoint)
            .is_some_and(|t| t.elapsed() < FAILING_FOR)
    }

    /// After a round: an endpoint with a failed attempt is failing from
    /// now; one attempted without a failure is not.
    fn note(
        &mut self,
        endpoints: &[events::Endpoint],
        dues: &[Due],
        failed: &[events::FirstFailure],
    ) {
        for w in endpoints {
            if failed.iter().any(|f| f.webhook == w.name) {
                self.0.insert(w.name.clone(), Instant::now());
            } else if dues.iter().any(|d| d.webhook == w.name) {
                self.0.remove(&w.name);
            }
        }
    }
}

/// hyper's client for `http://` and `https://` endpoints: TLS (rustls,
/// aws-lc-rs) verified against the public web's roots and `ca_file`'s.
fn client(cfg: &crate::config::EventsConfig) -> anyhow::Result<Http> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.ca_file {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            roots.add(cert)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_millis(cfg.timeout_ms)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Deliveries due for a retry, leased for one attempt.
async fn lease(state: &AppState, cfg: &crate::config::EventsConfig) -> anyhow::Result<Vec<Due>> {
    let c = state.pool.get().await?;
    // Twice an attempt's limit: a live daemon always records its attempt
    // before another may take the delivery over.
    let lease_ms = 2 * cfg.timeout_ms as i64 + 1_000;
    Ok(events::lease_due(&c, cfg.batch.max(1), lease_ms).await?)
}

/// Every leased delivery attempted at once (at most `batch`), then all
/// their outcomes recorded in one statement.
async fn send_all(
    state: &Arc<AppState>,
    http: &Http,
    secrets: &mut HashMap<String, Arc<SecretVec>>,
    due: Vec<Due>,
) {
    let tried = attempt_each(state, http, secrets, &due).await;
    for (i, e) in &tried.unopened {
        tracing::error!(webhook = %due[*i].webhook, error = %e,
            "event delivery: cannot open the endpoint's secret");
    }
    let done: Vec<events::Attempt<'_>> = tried
        .results
        .into_iter()
        .map(|(i, r)| outcome(state, &due[i], r))
        .collect();
    record(state, &done).await;
}

/// What [`attempt_each`] did: each attempt's result, and the deliveries not
/// attempted because their endpoint's secret would not open (by index).
struct Tried {
    results: Vec<(usize, Result<(), String>)>,
    unopened: Vec<(usize, String)>,
}

/// One attempt per delivery, at most `batch` in flight.
async fn attempt_each(
    state: &Arc<AppState>,
    http: &Http,
    secrets: &mut HashMap<String, Arc<SecretVec>>,
    dues: &[Due],
) -> Tried {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        state.config.events.batch.max(1) as usize,
    ));
    let mut set = JoinSet::new();
    let mut unopened = Vec::new();
    for (i, d) in dues.iter().enumerate() {
        let secret = match secret(state, secrets, &d.webhook).await {
            Ok(s) => s,
            Err(e) => {
                unopened.push((i, format!("{e:#}")));
                continue;
            }
        };
        let (state, http, d, limit) = (state.clone(), http.clone(), d.clone(), limit.clone());
        set.spawn(async move {
            let _slot = limit.acquire_owned().await;
            (i, attempt(&state, &http, &secret, &d).await)
        });
    }
    let mut results = Vec::with_capacity(dues.len());
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            results.push(r);
        }
    }
    Tried { results, unopened }
}

/// One round of new events (with no endpoint, only passed: the cursor
/// moves, no body is read): taken, sent to each endpoint that wants them
/// ([`EventsConfig::batch`] requests at a time), marked sent with a
/// delivery row per failed attempt, committed. Whether the round was full.
async fn send_new(
    state: &Arc<AppState>,
    http: &Http,
    secrets: &mut HashMap<String, Arc<SecretVec>>,
    failing: &mut Failing,
) -> anyhow::Result<bool> {
    let mut client = state.pool.get().await?;
    let endpoints = events::active_endpoints(&client).await?;
    let tx = client.transaction().await?;
    if endpoints.is_empty() {
        let passed = events::pass_new(&tx, NEW_BATCH).await?;
        tx.commit().await?;
        return Ok(passed >= NEW_BATCH);
    }
    let with_phone = endpoints.iter().any(|e| e.include_phone);
    let taken = events::take_new(&tx, NEW_BATCH, with_phone).await?;
    if taken.is_empty() {
        tx.commit().await?;
        return Ok(false);
    }
    let mut dues = Vec::new();
    let mut skipped = Vec::new();
    for e in &taken {
        for w in endpoints
            .iter()
            .filter(|w| w.wants(&e.op, e.store_id.as_deref()))
        {
            if failing.now(&w.name) {
                skipped.push(events::FirstFailure {
                    event_id: e.event_id,
                    webhook: w.name.clone(),
                    attempts: 0,
                    retry_in_ms: Some(0),
                    error: "not attempted: the endpoint failed just before".into(),
                });
            } else {
                dues.push(first_attempt(e, w));
            }
        }
    }
    let mut failed = attempt_all(state, http, secrets, &dues).await;
    failing.note(&endpoints, &dues, &failed);
    failed.extend(skipped);
    if let Some(last) = taken.last() {
        events::finish_new(&tx, last, &failed).await?;
    }
    tx.commit().await?;
    Ok(taken.len() as i64 >= NEW_BATCH)
}

fn first_attempt(e: &events::NewEvent, w: &events::Endpoint) -> Due {
    let mut body = e.body.clone();
    if let (true, Some(p)) = (w.include_phone, &e.phone) {
        body["phone"] = p.clone().into();
    }
    Due {
        event_id: e.event_id,
        webhook: w.name.clone(),
        url: w.url.clone(),
        attempt: 1,
        created_at: e.created_at,
        body,
    }
}

/// First attempts, at most `batch` in flight; the failures, counted.
async fn attempt_all(
    state: &Arc<AppState>,
    http: &Http,
    secrets: &mut HashMap<String, Arc<SecretVec>>,
    dues: &[Due],
) -> Vec<events::FirstFailure> {
    let tried = attempt_each(state, http, secrets, dues).await;
    let mut failed: Vec<events::FirstFailure> = tried
        .unopened
        .into_iter()
        .map(|(i, e)| first_failure(state, &dues[i], e))
        .collect();
    for (i, result) in tried.results {
        let a = outcome(state, &dues[i], result);
        if !a.delivered {
            failed.push(first_failure(state, &dues[i], a.error.unwrap_or_default()));
        }
    }
    failed
}

fn first_failure(state: &AppState, d: &Due, error: String) -> events::FirstFailure {
    events::FirstFailure {
        event_id: d.event_id,
        webhook: d.webhook.clone(),
        attempts: 1,
        retry_in_ms: state
            .config
            .events
            .retry_delays_s
            .first()
            .map(|s| *s as i64 * 1000),
        error,
    }
}

async fn secret(
    state: &AppState,
    cache: &mut HashMap<String, Arc<SecretVec>>,
    webhook: &str,
) -> anyhow::Result<Arc<SecretVec>> {
    if let Some(s) = cache.get(webhook) {
        return Ok(s.clone());
    }
    let c = state.pool.get().await?;
    let (under, sealed) = crate::store::secrets::get(&c, &events::secret_name(webhook))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no secret for webhook {webhook}"))?;
    let master = state.keys.master_for(&under)?;
    let s = Arc::new(crate::keys::webhooks::open_secret(
        &master, webhook, &under, &sealed,
    )?);
    cache.insert(webhook.to_owned(), s.clone());
    Ok(s)
}

/// One POST: `Ok` on a 2xx within the timeout, else why not.
async fn attempt(state: &AppState, http: &Http, secret: &SecretVec, d: &Due) -> Result<(), String> {
    let body = wire::body(d.event_id, d.body.clone());
    let t_ms = chrono::Utc::now().timestamp_millis();
    let req = Request::post(&d.url)
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len())
        .header(wire::EVENT_HEADER, d.event_id.to_string())
        .header(
            wire::SIGNATURE_HEADER,
            wire::signature(secret.expose(), t_ms, &body),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    let timeout = Duration::from_millis(state.config.events.timeout_ms);
    match tokio::time::timeout(timeout, http.request(req)).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(e)) => Err(chain(&e)),
        Ok(Ok(r)) if r.status().is_success() => Ok(()),
        Ok(Ok(r)) => Err(format!("HTTP {}", r.status().as_u16())),
    }
}

/// What an attempt's result means for its delivery, counted.
fn outcome<'a>(state: &AppState, d: &'a Due, result: Result<(), String>) -> events::Attempt<'a> {
    let m = &state.metrics.events;
    match result {
        Ok(()) => {
            m.delivered.inc();
            let lag = chrono::Utc::now() - d.created_at;
            m.lag.observe(lag.num_milliseconds().max(0) as f64 / 1000.0);
            events::Attempt {
                due: d,
                delivered: true,
                retry_in_ms: None,
                error: None,
            }
        }
        Err(e) => {
            m.attempts_failed.inc();
            let delays = &state.config.events.retry_delays_s;
            let next = delays.get((d.attempt.max(1) - 1) as usize);
            if next.is_none() {
                m.failed.inc();
            }
            events::Attempt {
                due: d,
                delivered: false,
                retry_in_ms: next.map(|s| *s as i64 * 1000),
                error: Some(e),
            }
        }
    }
}

async fn record(state: &AppState, done: &[events::Attempt<'_>]) {
    if done.is_empty() {
        return;
    }
    let written = async {
        let c = state.pool.get().await.map_err(|e| e.to_string())?;
        events::record_attempts(&c, done)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = written {
        // The leases end and the deliveries are attempted again: at least once.
        tracing::warn!(deliveries = done.len(), error = %e,
            "event delivery: cannot record the attempts");
    }
}

async fn gauge(state: &AppState) {
    let Ok(c) = state.pool.get().await else {
        return;
    };
    if let Ok((queued, oldest_ms)) = events::backlog(&c).await {
        state.metrics.events.queued.set(queued);
        state.metrics.events.oldest_queued_ms.set(oldest_ms);
    }
}

async fn purge(state: &AppState, keep_days: i64) {
    let Ok(c) = state.pool.get().await else {
        return;
    };
    match events::purge(&c, keep_days).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "old events removed"),
        Err(e) => tracing::warn!(error = %e, "purging old events failed"),
    }
}

/// An error with its causes (hyper's client error says "Connect"; the
/// cause says which: refused, a certificate not trusted, …).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

//! The only module that touches sockets: a hyper 1 service on tokio, with
//! routing, limits, health, metrics and graceful shutdown.

pub mod audit;
pub mod group;
mod handshake;
pub mod http;
pub mod metrics;
mod proto;
mod routes;
pub mod throttle;
mod txn;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::keys::ring::Keyring;
use metrics::Metrics;

/// Everything a request handler may use; shared by all connections.
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: deadpool_postgres::Pool,
    pub metrics: Metrics,
    pub keys: Arc<Keyring>,
    pub txn_env: Arc<crate::store::txn::TxnEnv>,
    /// Where `/v1/txn` runs its txn: batched when it may be (issue 14).
    pub group: group::Group,
    pub addr_buckets: throttle::Buckets,
    pub terminal_buckets: throttle::Buckets,
    /// Failed logins per (terminal, source address), for the slow-down.
    pub login_failures: throttle::LoginFailures,
    pub audit: audit::AuditLog,
    next_request_id: AtomicU64,
    id_prefix: u32,
}

impl AppState {
    /// The state and the audit writer's end, for [`audit::run`].
    pub fn new(
        config: Arc<Config>,
        pool: deadpool_postgres::Pool,
        keys: Arc<Keyring>,
        replica: Option<Arc<crate::store::replica::Replica>>,
    ) -> (AppState, audit::Writer) {
        let p = &config.protocol;
        let (audit, writer) = audit::AuditLog::new();
        let mut metrics = Metrics::default();
        metrics.register_audit_lost(audit.lost.clone());
        let txn_env = Arc::new(crate::store::txn::TxnEnv {
            config: config.clone(),
            hash_key: keys.hash_key.clone(),
            row_keys: keys.row_keys.clone(),
            replica,
            statements: Default::default(),
        });
        let limits = group::GroupLimits::of(&config.db);
        let group =
            group::Group::start(pool.clone(), txn_env.clone(), limits, metrics.group.clone());
        let state = AppState {
            txn_env,
            group,
            addr_buckets: throttle::Buckets::new(p.addr_rate, p.addr_burst),
            terminal_buckets: throttle::Buckets::new(p.terminal_rate, p.terminal_burst),
            login_failures: throttle::LoginFailures::default(),
            audit,
            keys,
            config,
            pool,
            metrics,
            next_request_id: AtomicU64::new(1),
            // Distinguishes the request ids of instances sharing one log sink.
            id_prefix: rand::random(),
        };
        (state, writer)
    }

    fn request_id(&self) -> String {
        let n = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:x}", self.id_prefix)
    }
}

/// Serves `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish within `shutdown_grace`, and returns.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.server.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        state.config.server.max_connections.max(1),
    ));
    loop {
        // A slot first: at the limit, new connections wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(state, peer, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let grace = state.config.server.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; dropping connections"),
    }
    Ok(())
}

async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> http::Answer {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let peer = http::client_addr(&state.config.server.trusted_proxies, peer, req.headers());
    let rid = state.request_id();
    let path = metrics::PathLabel::of(req.uri().path());
    let span = tracing::info_span!("request", id = %rid, %peer, method = %req.method(), path = req.uri().path());
    let mut answer = routes::route(&state, peer, req)
        .instrument(span.clone())
        .await;
    let status = answer.status().as_u16();
    state
        .metrics
        .observe(path, status, started.elapsed().as_secs_f64());
    // A refusal is counted in /metrics (by status, and by errno) and
    // audited; one log line each would let a flood write the log at its own
    // rate (issue 12), so refusals log at debug, failures at warn.
    let micros = started.elapsed().as_micros() as u64;
    span.in_scope(|| match status {
        400..=499 => tracing::debug!(status, micros, "answered"),
        500..=599 => tracing::warn!(status, micros, "answered"),
        _ => tracing::info!(status, micros, "answered"),
    });
    if let Ok(v) = hyper::header::HeaderValue::from_str(&rid) {
        answer.headers_mut().insert("x-request-id", v);
    }
    answer
}

//! `bench --webhook`: an endpoint that answers every event at once, so the
//! figures are the daemon's delivery alone: events delivered per second,
//! the lag from a posting to its event's arrival, and what the outbox
//! costs the debit rate (compare a run without `--webhook`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::store::events::Webhook;

/// The longest the bench waits, after the runs, for the queue to empty.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Each arrival: when (Unix ms) and its event's `created_at` and `id`.
#[derive(Default)]
struct Arrivals(Vec<(i64, i64, String)>);

pub struct Receiver {
    got: Arc<Mutex<Arrivals>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Serialize)]
pub struct EventFigures {
    /// Events the runs wrote (one per posting row).
    pub events: i64,
    pub delivered: usize,
    /// Delivered more than once (at least once is the contract).
    pub duplicates: usize,
    /// Deliveries still waiting when the bench stopped waiting.
    pub pending: i64,
    pub delivered_per_s: f64,
    pub lag_p50_ms: i64,
    pub lag_p99_ms: i64,
    pub lag_max_ms: i64,
}

/// Starts the endpoint and registers it for every event.
pub async fn start(config: &Config, pool: &deadpool_postgres::Pool) -> anyhow::Result<Receiver> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    let got = Arc::new(Mutex::new(Arrivals::default()));
    let g = got.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r: Request<Incoming>| {
                    let g = g.clone();
                    async move { Ok::<_, hyper::Error>(arrive(r, &g).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    let w = Webhook {
        name: "bench".into(),
        url: url.clone(),
        ops: None,
        store_id: None,
        include_phone: false,
        status: "active".into(),
        pending: 0,
        delivered: 0,
        failed: 0,
    };
    let secret = Zeroizing::new(hex::encode(crate::crypto::Secret32::random().expose()));
    crate::keys::webhooks::add(config, pool, &w, secret).await?;
    Ok(Receiver { got, task })
}

async fn arrive(r: Request<Incoming>, got: &Mutex<Arrivals>) -> Response<Full<Bytes>> {
    let now = chrono::Utc::now().timestamp_millis();
    if let Ok(body) = r.into_body().collect().await {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) {
            let created = v["created_at"].as_i64().unwrap_or(now);
            let id = v["id"].as_str().unwrap_or("").to_owned();
            got.lock().expect("arrivals").0.push((now, created, id));
        }
    }
    Response::new(Full::new(Bytes::new()))
}

impl Receiver {
    /// Waits for the queue to empty (or [`DRAIN_LIMIT`]), then the figures.
    pub async fn figures(self, pool: &deadpool_postgres::Pool) -> anyhow::Result<EventFigures> {
        let c = pool.get().await?;
        let started = std::time::Instant::now();
        let pending = loop {
            let r = c
                .query_one(
                    "SELECT (SELECT count(*) FROM events e WHERE e.xid IS NOT NULL AND (e.xid, e.event_id) > ((SELECT xid FROM events_cursor), (SELECT event_id FROM events_cursor)))
                          + (SELECT count(*) FROM deliveries WHERE status = 'pending')",
                    &[],
                )
                .await?;
            let n: i64 = r.get(0);
            if n == 0 || started.elapsed() > DRAIN_LIMIT {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let events: i64 = c
            .query_one("SELECT count(*) FROM events", &[])
            .await?
            .get(0);
        self.task.abort();
        let arrivals = std::mem::take(&mut self.got.lock().expect("arrivals").0);
        Ok(summarise(events, pending, &arrivals))
    }
}

fn summarise(events: i64, pending: i64, a: &[(i64, i64, String)]) -> EventFigures {
    let ids: std::collections::HashSet<&str> = a.iter().map(|x| x.2.as_str()).collect();
    let mut lags: Vec<i64> = a.iter().map(|x| (x.0 - x.1).max(0)).collect();
    lags.sort_unstable();
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    let first = a.iter().map(|x| x.0).min().unwrap_or(0);
    let last = a.iter().map(|x| x.0).max().unwrap_or(0);
    let span_s = ((last - first) as f64 / 1000.0).max(0.001);
    EventFigures {
        events,
        delivered: ids.len(),
        duplicates: a.len() - ids.len(),
        pending,
        delivered_per_s: (a.len() as f64 / span_s).round(),
        lag_p50_ms: pct(0.50),
        lag_p99_ms: pct(0.99),
        lag_max_ms: lags.last().copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_arrivals() {
        let a: Vec<(i64, i64, String)> = (0..100)
            .map(|i| (1_000 + i * 10, 1_000 + i * 10 - i, i.to_string()))
            .chain([(2_000, 1_990, "5".to_owned())])
            .collect();
        let f = summarise(100, 0, &a);
        assert_eq!((f.delivered, f.duplicates), (100, 1));
        assert_eq!(f.lag_p50_ms, 49);
        assert_eq!(f.lag_p99_ms, 98);
        assert_eq!(f.lag_max_ms, 99);
        assert_eq!(f.delivered_per_s, 101.0);
    }
}

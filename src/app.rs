//! The composition root: opens the database, builds the server state, serves,
//! and tears down in order. `main.rs` and the tests both start daemons here.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{Config, LogFormat};
use crate::server::{self, AppState};
use crate::store;

/// Runs the daemon on `listener` until `shutdown` resolves. Stops the embedded
/// cluster afterwards only if this call started it.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    store::ledger::ledger_config(&config.ledger)
        .map_err(|e| anyhow::anyhow!("invalid [ledger] configuration: {e}"))?;
    let db = store::open(&config).await?;
    let state = Arc::new(AppState::new(config.clone(), db.pool.clone()));
    tracing::info!(
        addr = %listener.local_addr()?,
        embedded = db.cluster.is_some(),
        "cardswitch serving"
    );
    let upkeep = tokio::spawn(upkeep(db.pool.clone(), config.protocol.ts_window));
    let served = server::run(listener, state, shutdown).await;
    upkeep.abort();
    let closed = db.close().await;
    served.context("server failed")?;
    closed.context("closing the database failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Hourly housekeeping: once-only partitions made ahead and old ones dropped;
/// postings partitions made months ahead.
async fn upkeep(pool: deadpool_postgres::Pool, ts_window: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let result = async {
            let mut client = pool.get().await.map_err(|e| e.to_string())?;
            let now = chrono::Utc::now();
            store::seen_ts::ensure_partitions(&mut client, now)
                .await
                .map_err(|e| e.to_string())?;
            store::postings::ensure_partitions(&mut client, now)
                .await
                .map_err(|e| e.to_string())?;
            store::seen_ts::drop_expired(&mut client, now, ts_window)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(?dropped, "dropped old seen_ts partitions")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "seen_ts upkeep failed; will retry"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("cannot install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("cannot install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

/// Installs the log subscriber; `RUST_LOG` refines the default `info`.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

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
    store::ledger::ledger_config(&config.ledger, &config.business)
        .map_err(|e| anyhow::anyhow!("invalid [ledger] configuration: {e}"))?;
    // Keys are an explicit ops step (`cardswitch keys init`): the daemon never
    // makes them itself, and refuses to start without them.
    if !crate::keys::admin::keys_exist(&config) {
        anyhow::bail!(
            "no keys in {}: run `cardswitch keys init` first (see README, Operations)",
            config.keys_dir.display()
        );
    }
    let db = store::open(&config).await?;
    let ring = {
        let client = db
            .pool
            .get()
            .await
            .context("cannot connect to the database")?;
        crate::keys::ring::Keyring::load(&config, &client)
            .await
            .context("cannot load the keys")?
    };
    let ring = Arc::new(ring);
    let replica = match &config.read_database_url {
        Some(url) => Some(Arc::new(store::replica::Replica::new(url, &config.db)?)),
        None => None,
    };
    let (state, audit_writer) =
        AppState::new(config.clone(), db.pool.clone(), ring.clone(), replica);
    let state = Arc::new(state);
    // The audit writer's own connection: refusals never wait for, nor hold,
    // one of the pool's (issue 12).
    let audit_pool = store::make_pool(db.pg.clone(), 1, config.db.connect_timeout)?;
    let audit_task = {
        let (state, keys) = (state.clone(), ring.row_keys.clone());
        tokio::spawn(async move {
            server::audit::run(audit_writer, &state.audit, audit_pool, keys).await
        })
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        embedded = db.cluster.is_some(),
        "cardswitch serving"
    );
    let background = spawn_background(&db, &config, &ring, &state);
    let served = server::run(listener, state.clone(), shutdown).await;
    for task in background {
        task.abort();
    }
    // The audit writer last: it writes what the requests queued, and the
    // minute's tallies.
    state.audit.stop().await;
    let _ = audit_task.await;
    let closed = db.close().await;
    served.context("server failed")?;
    closed.context("closing the database failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// The daemon's background tasks: upkeep of the once-only partitions, the
/// key listener, the key upkeep, the session-cache sweep, and the event
/// deliverer when it is on. Each runs until aborted.
fn spawn_background(
    db: &store::Database,
    config: &Arc<Config>,
    ring: &Arc<crate::keys::ring::Keyring>,
    state: &Arc<AppState>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (r1, r2) = (ring.clone(), ring.clone());
    let mut tasks = vec![
        tokio::spawn(upkeep(db.pool.clone(), config.protocol.ts_window)),
        tokio::spawn(crate::keys::listener::listen_forever(
            db.pg.clone(),
            move |on| r1.set_listening(on),
            move |payload| r2.on_notify(payload),
        )),
        tokio::spawn(key_upkeep(db.pool.clone(), config.clone(), ring.clone())),
        tokio::spawn(sweep_sessions(state.clone())),
    ];
    if config.events.deliver {
        tasks.push(tokio::spawn(server::webhooks::deliver_forever(
            state.clone(),
        )));
    }
    if let (Some(cluster), true) = (&db.cluster, config.backup.keep > 0) {
        tasks.push(tokio::spawn(backup_daily(
            cluster.clone(),
            config.backup.clone(),
        )));
    }
    tasks
}

/// The embedded cluster's base backups, into `<data-dir>/backup` beside
/// its archived WAL: checked hourly (and at start), taken when the newest is
/// `every_hours` old, pruned to the newest `keep`.
async fn backup_daily(cluster: store::embedded::Cluster, b: crate::config::BackupConfig) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    let every_ms = i64::try_from(b.every_hours.max(1) * 3_600_000).unwrap_or(i64::MAX);
    loop {
        tick.tick().await;
        let (c, keep) = (cluster.clone(), b.keep);
        let done = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
            let dir = c.backup_dir();
            let newest = store::backup::list(&dir)?.last().map(|b| b.ended_at_ms);
            if newest.is_some_and(|t| chrono::Utc::now().timestamp_millis() - t < every_ms) {
                return Ok(None);
            }
            let info = store::backup::take(store::backup::Source::Embedded(&c), &dir)?;
            let pruned = store::backup::prune(&dir, keep)?;
            Ok(Some(format!(
                "{} ({} bytes; pruned {} older, {} WAL files)",
                info.name, info.bytes, pruned.bases, pruned.wal_files
            )))
        })
        .await;
        match done {
            Ok(Ok(Some(what))) => tracing::info!(backup = what, "base backup taken"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "base backup failed; will retry in an hour")
            }
            Err(e) => tracing::error!(error = %e, "base backup task failed"),
        }
    }
}

/// Every [`crate::keys::ring::SWEEP_EVERY`]: cached sessions re-checked
/// against their rows, the tampered dropped and counted.
async fn sweep_sessions(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(crate::keys::ring::SWEEP_EVERY);
    loop {
        tick.tick().await;
        match state.keys.sweep_sessions(&state.pool).await {
            Ok(n) => (0..n).for_each(|_| state.metrics.tampered()),
            Err(e) => tracing::warn!(error = %e, "session cache sweep failed; will retry"),
        }
    }
}

/// Hourly housekeeping: once-only partitions made ahead and old ones dropped;
/// postings partitions made a month ahead.
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

/// Every minute: today's and tomorrow's day keys made ahead (so RSA key
/// generation stays off the request path and tomorrow's keys exist before
/// midnight), expired day keys and their sessions destroyed, and a warning
/// while the signer is within 14 days of its expiry.
async fn key_upkeep(
    pool: deadpool_postgres::Pool,
    config: Arc<Config>,
    ring: Arc<crate::keys::ring::Keyring>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    let mut warned_at: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        // A master key rotated by `keys rotate-master` is picked up here even
        // if its notification was missed.
        if let Err(e) = ring.reload_master() {
            tracing::warn!(error = %format!("{e:#}"), "cannot re-read the master key file");
        }
        match ring.pregen(&pool, &config, now, 1).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(made = n, "day keys made ahead"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "day key pregeneration failed"),
        }
        match pool.get().await {
            Ok(mut c) => {
                let destroyed = async {
                    let tx = c.transaction().await?;
                    let n =
                        store::keys::destroy_expired(&tx, &ring.row_keys, now.timestamp_millis())
                            .await?;
                    tx.commit().await?;
                    Ok::<_, tokio_postgres::Error>(n)
                }
                .await;
                match destroyed {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(destroyed = n, "expired day keys destroyed"),
                    Err(e) => tracing::warn!(error = %e, "destroying expired day keys failed"),
                }
                if let Ok(Some(s)) = store::keys::current_signer(&c).await {
                    let days = (s.not_after_ms - now.timestamp_millis()).div_euclid(86_400_000);
                    let due = days < crate::keys::admin::SIGNER_WARN_DAYS;
                    if due && warned_at.map_or(true, |t| t.elapsed().as_secs() >= 3600) {
                        warned_at = Some(std::time::Instant::now());
                        tracing::warn!(
                            signer = %s.signer_id,
                            days_left = days,
                            "the signer key expires soon: run `cardswitch keys rotate-signer`"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "key upkeep: no database connection"),
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

/// Installs the log subscriber; `RUST_LOG` refines the default `info`
/// (tokio_postgres at `warn`: its INFO lines are server NOTICEs such as
/// "relation already exists, skipping" from idempotent DDL).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    // Colours only for a terminal: a log file gets plain text (and fewer bytes
    // written per request).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

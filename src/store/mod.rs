//! PostgreSQL: the only module that speaks SQL. It owns the pool, the
//! migrations, the embedded cluster of the default setup, and (as the ledger
//! and protocol land) the queries.

pub mod audit;
pub mod backup;
pub mod embedded;
pub mod events;
pub mod fixtures;
pub mod keys;
pub mod ledger;
pub mod migrate;
pub mod operators;
pub mod postings;
pub mod protected;
pub mod rekey;
pub mod replica;
pub mod reports;
pub mod secrets;
pub mod seen_ts;
pub mod terminals;
pub mod txn;
pub mod verify;

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Config;
use embedded::Cluster;

/// An open database: the pool, and the embedded cluster if we use one.
pub struct Database {
    pub pool: Pool,
    pub cluster: Option<Cluster>,
    /// Whether opening it started the cluster (and so closing it should stop it).
    pub started_cluster: bool,
    /// Where it is, for connections outside the pool (the key listener).
    pub pg: tokio_postgres::Config,
}

/// Where the database is: the URL given, or the embedded cluster (started if
/// needed, and the `cardswitch` database created in it on first use).
pub async fn locate(
    config: &Config,
) -> anyhow::Result<(tokio_postgres::Config, Option<Cluster>, bool)> {
    match &config.database_url {
        Some(url) => {
            let pg: tokio_postgres::Config = url
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid --database-url: {e}"))?;
            Ok((pg, None, false))
        }
        None => {
            let cluster = Cluster::new(&config.data_dir)?;
            let c2 = cluster.clone();
            let started = tokio::task::spawn_blocking(move || c2.ensure_running())
                .await
                .context("cluster start task failed")??;
            create_database_if_missing(&cluster, embedded::DATABASE).await?;
            Ok((
                cluster.pg_config(embedded::DATABASE),
                Some(cluster),
                started,
            ))
        }
    }
}

/// Opens the database and applies pending migrations.
pub async fn open(config: &Config) -> anyhow::Result<Database> {
    let (pg, cluster, started_cluster) = locate(config).await?;
    let pool = make_pool(pg.clone(), config.db.pool_size, config.db.connect_timeout)?;
    let mut client = pool.get().await.context("cannot connect to the database")?;
    migrate::run(&mut client)
        .await
        .context("migrations failed")?;
    seen_ts::ensure_partitions(&mut client, chrono::Utc::now())
        .await
        .context("cannot create seen_ts partitions")?;
    postings::ensure_partitions(&mut client, chrono::Utc::now())
        .await
        .context("cannot create postings partitions")?;
    drop(client);
    Ok(Database {
        pool,
        cluster,
        started_cluster,
        pg,
    })
}

impl Database {
    /// Closes the pool, then stops the embedded cluster if we started it.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close();
        if let (Some(cluster), true) = (self.cluster, self.started_cluster) {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .context("cluster stop task failed")??;
        }
        Ok(())
    }
}

pub fn make_pool(
    mut pg: tokio_postgres::Config,
    size: usize,
    connect_timeout: Duration,
) -> anyhow::Result<Pool> {
    pg.connect_timeout(connect_timeout);
    // The ledger's statements are prepared once per connection. PostgreSQL's
    // default (`auto`) kept re-planning them on every execution because their
    // custom plans looked cheaper than the generic one: planning was 1.9 ms of
    // a debit's 3.3 ms in the database (pg_stat_statements, issue 6). Every
    // statement of ours names its rows by key, so the generic plan is the plan.
    // No JIT: a generic plan's row guesses can cost it past `jit_above_cost`,
    // and a plan is compiled again at every execution. The event outbox's
    // read of 256 rows (0.3 ms) was compiled on each call (14 ms), a fifth
    // of PostgreSQL's CPU in a debit run (issue 14). The reports, which scan
    // whole days, turn it back on with their custom plans.
    const OPTIONS: &str = "-c plan_cache_mode=force_generic_plan -c jit=off";
    let options = match pg.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} {OPTIONS}"),
        _ => OPTIONS.to_owned(),
    };
    pg.options(&options);
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            // Fast recycling checks only `is_closed`; a connection broken by a
            // database restart is closed by then and gets replaced.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        // Last in, first out: the few connections a load keeps busy are
        // the ones reused, so their backends' plans and caches stay warm.
        // First in, first out rotated every request through all of them,
        // and every ANALYZE made each one re-plan each statement shape.
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(connect_timeout))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .context("cannot build the connection pool")
}

async fn create_database_if_missing(cluster: &Cluster, name: &str) -> anyhow::Result<()> {
    let (client, conn) = cluster
        .pg_config("postgres")
        .connect(NoTls)
        .await
        .context("cannot connect to the embedded cluster")?;
    let conn = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        // Identifiers cannot be bound; `name` is our own constant or a test's
        // generated name, quoted all the same.
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&sql).await {
            // Two processes racing to create it: the loser sees 42P04.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e.into());
            }
        }
    }
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// Whether `e` is a write refused because the node is read-only: a replica,
/// or a primary that Patroni restarts as a standby first, reached through a
/// proxy during a failover (SQLSTATE 25006).
pub fn is_read_only(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Whether `e` says the connection itself is gone (closed, or ended by the
/// server: a restart, a terminated backend, a failover), so that a read may
/// simply run again on another one.
pub fn is_connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || c.starts_with("57P")
        })
}

/// Closes every idle pooled connection. Called when one of them turned out
/// to reach a read-only node, or to have been ended by the server: its
/// siblings were opened through the same proxy to the same node and are
/// likely in the same state, and the next ones should be opened afresh, to
/// whichever node is the primary now. Connections in use meet the same
/// failure themselves and call this again.
pub fn forget_idle_connections(pool: &Pool) {
    let dropped = pool.retain(|_, _| false).removed.len();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "connection lost or read-only: idle connections dropped"
        );
    }
}

/// Answers whether the database responds and takes writes, within `timeout`.
/// A pooled connection to a read-only node is dropped and the check made
/// again on a new one, so the answer is about the node reached now.
pub async fn ping(pool: &Pool, timeout: Duration) -> Result<(), String> {
    let fut = async {
        let mut verdict = Ok(());
        for _ in 0..2 {
            let client = pool.get().await.map_err(|e| format!("pool: {e}"))?;
            let rows = match client.simple_query("SHOW transaction_read_only").await {
                Ok(rows) => rows,
                Err(e) if is_connection_lost(&e) => {
                    drop(client);
                    forget_idle_connections(pool);
                    verdict = Err(format!("query: {e}"));
                    continue;
                }
                Err(e) => return Err(format!("query: {e}")),
            };
            let read_only = rows.iter().any(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("on"),
                _ => false,
            });
            if !read_only {
                return Ok(());
            }
            drop(client);
            forget_idle_connections(pool);
            verdict = Err("read-only: the node reached is not the primary".to_owned());
        }
        verdict
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

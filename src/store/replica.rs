//! Reads that may lag (issue 13, item 3): a second pool on
//! `read_database_url`, used while the replica is within
//! `db.replica_max_lag` of the primary, for the reads that lock nothing —
//! settlement, liability, reports, `verify` without `--repair`. Over the
//! bound, or with the replica down, they go to the primary; postings and
//! anything that locks never come here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

/// How long one lag reading is trusted before it is taken again.
const LAG_FRESH_FOR: Duration = Duration::from_secs(1);
/// A replica that does not answer within this is passed over.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Replica {
    pool: Pool,
    max_lag: Duration,
    /// The last reading: when, and the lag (`None`: unusable).
    last: Mutex<Option<(Instant, Option<Duration>)>>,
}

impl Replica {
    pub fn new(url: &str, db: &crate::config::DbConfig) -> anyhow::Result<Replica> {
        let pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid read_database_url: {e}"))?;
        Ok(Replica {
            pool: super::make_pool(pg, db.pool_size.clamp(1, 8), db.connect_timeout)?,
            max_lag: db.replica_max_lag,
            last: Mutex::new(None),
        })
    }

    /// A connection to the replica if it is within the bound now; else why
    /// not, and the caller reads from the primary. A fresh reading that
    /// says "not within" answers at once, without asking the pool for a
    /// connection (to a replica that may be down).
    pub async fn connection(&self) -> Result<(Object, Duration), String> {
        let fresh = self
            .last
            .lock()
            .expect("lock")
            .filter(|(at, _)| at.elapsed() < LAG_FRESH_FOR)
            .map(|(_, lag)| lag);
        if let Some(lag) = fresh {
            self.within(lag)?;
        }
        let conn = tokio::time::timeout(PROBE_TIMEOUT, self.pool.get())
            .await
            .map_err(|_| "replica: no connection in time".to_owned())?
            .map_err(|e| format!("replica: {e}"))?;
        let lag = match fresh {
            Some(lag) => lag,
            None => {
                let lag = match tokio::time::timeout(PROBE_TIMEOUT, lag_of(&conn)).await {
                    Ok(Ok(lag)) => lag,
                    Ok(Err(e)) if super::is_connection_lost(&e) => {
                        super::forget_idle_connections(&self.pool);
                        None
                    }
                    _ => None,
                };
                *self.last.lock().expect("lock") = Some((Instant::now(), lag));
                lag
            }
        };
        Ok((conn, self.within(lag)?))
    }

    /// The lag if it is within the bound; else why not.
    fn within(&self, lag: Option<Duration>) -> Result<Duration, String> {
        match lag {
            Some(lag) if lag <= self.max_lag => Ok(lag),
            Some(lag) => Err(format!(
                "replica lags {:.1} s (bound {:?})",
                lag.as_secs_f64(),
                self.max_lag
            )),
            None => Err("replica not streaming or not answering".to_owned()),
        }
    }

    /// The replica's pool itself, for a one-shot command's reads, if the
    /// replica is current now.
    pub async fn current_pool(&self) -> Result<(Pool, Duration), String> {
        let (conn, lag) = self.connection().await?;
        drop(conn);
        Ok((self.pool.clone(), lag))
    }
}

/// How far behind the primary the replica's data is. Zero when it has
/// replayed all it received (an idle primary sends nothing, and the last
/// replayed commit grows old without the replica falling behind); else
/// the age of the last commit replayed (`pg_last_xact_replay_timestamp`).
/// `None` for a standby that receives nothing. A primary reached through the
/// read URL (a one-node setup) is current by definition.
async fn lag_of(c: &Object) -> Result<Option<Duration>, tokio_postgres::Error> {
    let r = c
        .query_one(
            "SELECT pg_is_in_recovery(),
                    pg_last_wal_receive_lsn() IS NOT NULL,
                    coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false),
                    coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, 0)",
            &[],
        )
        .await?;
    let (in_recovery, receiving, caught_up, age_s): (bool, bool, bool, f64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    Ok(match (in_recovery, receiving, caught_up) {
        (false, _, _) => Some(Duration::ZERO),
        (true, false, _) => None,
        (true, true, true) => Some(Duration::ZERO),
        (true, true, false) => Some(Duration::from_secs_f64(age_s.max(0.0))),
    })
}

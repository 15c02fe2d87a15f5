//! Once-only `ts` values. A partition per UTC day of `ts`: made ahead of time,
//! dropped whole once every value in it is older than twice the time window.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;

const DAY_MS: i64 = 86_400_000;
/// An arbitrary constant naming the lock that serialises partition DDL.
const LOCK_KEY: i64 = 0x6361_7264_7374_7370; // "cardstsp"

/// Records `(terminal, ts)`. `Ok(false)`: it was used before (errno 1006).
/// Run it inside the transaction of the request's work, so the value is used
/// up exactly when that work commits.
pub async fn record<C: GenericClient>(
    c: &C,
    terminal: &str,
    ts: i64,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "INSERT INTO seen_ts (terminal_id, ts) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&terminal, &ts],
        )
        .await?;
    Ok(n == 1)
}

fn partition_name(day: NaiveDate) -> String {
    format!("seen_ts_{}", day.format("%Y%m%d"))
}

fn day_start_ms(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
}

/// Makes the partitions from yesterday to three days ahead (UTC), so every
/// `ts` inside the window has one, with a day to spare if this job is late.
pub async fn ensure_partitions(
    c: &mut tokio_postgres::Client,
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let today = now.date_naive();
    for offset in -1..=3 {
        let day = today + chrono::TimeDelta::days(offset);
        let from = day_start_ms(day);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF seen_ts FOR VALUES FROM ({from}) TO ({})",
            partition_name(day),
            from + DAY_MS
        );
        tx.batch_execute(&sql).await?;
    }
    tx.commit().await
}

/// Drops partitions whose every value is older than `2 × window` (plus a
/// day, so a clock step cannot reopen a window we dropped). Returns their names.
pub async fn drop_expired(
    c: &mut tokio_postgres::Client,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let keep_from = now.timestamp_millis() - 2 * window.as_millis() as i64 - DAY_MS;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let rows = tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'seen_ts'::regclass",
            &[],
        )
        .await?;
    let mut dropped = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let Some(day) = name
            .strip_prefix("seen_ts_")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        else {
            continue;
        };
        if day_start_ms(day) + DAY_MS <= keep_from {
            tx.batch_execute(&format!("DROP TABLE {name}")).await?;
            dropped.push(name);
        }
    }
    tx.commit().await?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_bounds_are_utc_days() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(partition_name(d), "seen_ts_20261122");
        assert_eq!(day_start_ms(d) % DAY_MS, 0);
        assert_eq!(day_start_ms(d), 1_795_305_600_000);
    }
}

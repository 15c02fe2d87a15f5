//! Partitions of `postings`, one per UTC month of `posted_at`, made ahead of
//! time: at startup and by the daemon's hourly upkeep, this month's and
//! the next. The DEFAULT partition of migration 0004 catches a posting only
//! if that job has failed for a month, so an insert never fails for lack of
//! a partition.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

/// An arbitrary constant naming the lock that serialises partition DDL.
const LOCK_KEY: i64 = 0x6361_7264_706f_7374; // "cardpost"

fn month_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("first of a month exists")
}

pub fn partition_name(month: NaiveDate) -> String {
    format!("postings_{}", month.format("%Y%m"))
}

/// The DDL of the partition holding `month` (any day of it). A new
/// partition does not take its parent's per-column statistics targets, so
/// it is given migration 0024's: none for the JSON columns.
pub fn partition_sql(month: NaiveDate) -> String {
    let from = month_start(month);
    let to = from + Months::new(1);
    let name = partition_name(from);
    format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF postings \
         FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00'); \
         ALTER TABLE {name} ALTER COLUMN detail SET STATISTICS 0, \
         ALTER COLUMN lots_created SET STATISTICS 0, \
         ALTER COLUMN lots_taken SET STATISTICS 0, \
         ALTER COLUMN lots_restored SET STATISTICS 0",
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d"),
    )
}

/// Makes this month's partition and next month's (the daemon's hourly
/// upkeep calls this, so a month is always made well ahead). Every
/// partition costs each card-keyed read (chains, history) an index scan
/// to start, so none is made further ahead than needed.
pub async fn ensure_partitions(
    c: &mut tokio_postgres::Client,
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    let this = month_start(now.date_naive());
    for i in 0..2 {
        let month = this + Months::new(i);
        // Only a missing one: the ALTER would rewrite the catalog rows
        // (and invalidate every backend's plans on postings) each hour.
        let exists: bool = tx
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&partition_name(month)],
            )
            .await?
            .get(0);
        if !exists {
            tx.batch_execute(&partition_sql(month)).await?;
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(partition_name(month_start(d)), "postings_202612");
        assert!(partition_sql(d)
            .contains("FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"));
    }
}

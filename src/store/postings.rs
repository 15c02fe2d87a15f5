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

/// The DDL of the partition holding `month` (any day of it).
pub fn partition_sql(month: NaiveDate) -> String {
    let from = month_start(month);
    let to = from + Months::new(1);
    format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF postings \
         FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00')",
        partition_name(from),
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
        tx.batch_execute(&partition_sql(this + Months::new(i)))
            .await?;
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

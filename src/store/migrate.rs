//! Numbered plain-SQL migrations, embedded in the binary. Each runs in its own
//! transaction under an advisory lock, so two daemons starting together apply
//! each exactly once, and running them again changes nothing.

use tokio_postgres::Client;

/// (version, name, SQL). Versions increase and are never reused.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("migrations/0001_foundation.sql"),
    ),
    (
        2,
        "seen_ts_secrets",
        include_str!("migrations/0002_seen_ts_secrets.sql"),
    ),
    (3, "keys", include_str!("migrations/0003_keys.sql")),
    (4, "ledger", include_str!("migrations/0004_ledger.sql")),
    (5, "tamper", include_str!("migrations/0005_tamper.sql")),
    (6, "key_macs", include_str!("migrations/0006_key_macs.sql")),
    (
        7,
        "write_check",
        include_str!("migrations/0007_write_check.sql"),
    ),
    (
        8,
        "postings_one_index_less",
        include_str!("migrations/0008_postings_one_index_less.sql"),
    ),
    (
        9,
        "terminal_kind",
        include_str!("migrations/0009_terminal_kind.sql"),
    ),
    (
        10,
        "members_phone",
        include_str!("migrations/0010_members_phone.sql"),
    ),
    (
        11,
        "office_scope",
        include_str!("migrations/0011_office_scope.sql"),
    ),
    (12, "events", include_str!("migrations/0012_events.sql")),
    (
        13,
        "login_failures",
        include_str!("migrations/0013_login_failures.sql"),
    ),
    (
        14,
        "sealed_copies",
        include_str!("migrations/0014_sealed_copies.sql"),
    ),
    (15, "lot_macs", include_str!("migrations/0015_lot_macs.sql")),
    (
        16,
        "chain_pos",
        include_str!("migrations/0016_chain_pos.sql"),
    ),
    (
        17,
        "lots_by_expiry",
        include_str!("migrations/0017_lots_by_expiry.sql"),
    ),
    (
        18,
        "split_tender",
        include_str!("migrations/0018_split_tender.sql"),
    ),
    (
        19,
        "membership_renewal",
        include_str!("migrations/0019_membership_renewal.sql"),
    ),
    (20, "limits", include_str!("migrations/0020_limits.sql")),
    (21, "holds", include_str!("migrations/0021_holds.sql")),
    (22, "visits", include_str!("migrations/0022_visits.sql")),
    (
        23,
        "events_cursor",
        include_str!("migrations/0023_events_cursor.sql"),
    ),
    (
        24,
        "jsonb_statistics",
        include_str!("migrations/0024_jsonb_statistics.sql"),
    ),
];

/// An arbitrary constant naming our advisory lock.
const LOCK_KEY: i64 = 0x6361_7264_7377_6d67; // "cardswmg"

/// Applies every migration not yet applied. Returns the versions applied now.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied_now = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            applied_now.push(version);
        }
        tx.commit().await?;
    }
    Ok(applied_now)
}

/// The highest applied version, if any.
pub async fn current_version(client: &Client) -> Result<Option<i32>, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await;
    match row {
        Ok(r) => Ok(r.get(0)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        let mut last = 0;
        for (v, _, sql) in MIGRATIONS {
            assert!(*v > last, "migration {v} out of order");
            last = *v;
            assert!(!sql.trim().is_empty());
        }
    }

    /// A migration file that is not listed never runs (0008 once sat
    /// unlisted for a week): every file in `migrations/` is in the list,
    /// under its own number and name.
    #[test]
    fn every_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
            .collect();
        assert_eq!(files, listed);
    }
}

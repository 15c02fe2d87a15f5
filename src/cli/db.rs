//! `db …` and `config …`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::store::backup;
use crate::store::embedded::Cluster;

#[derive(Subcommand)]
pub enum DbAction {
    /// Create (on first use) and start the embedded cluster.
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Say whether the embedded cluster runs.
    Status,
    /// Take a base backup (with the WAL it needs) into DIR/base/<time>
    /// [default: <data-dir>/backup, beside the archived WAL]; of the
    /// embedded cluster, or of --database-url (a role with REPLICATION).
    Backup {
        dir: Option<PathBuf>,
        /// Then keep only the newest N base backups in DIR (and the WAL
        /// the oldest needs).
        #[arg(long)]
        keep: Option<usize>,
    },
    /// List the base backups in DIR [default: <data-dir>/backup].
    Backups { dir: Option<PathBuf> },
    /// Restore the embedded cluster from FROM [default: <data-dir>/backup]
    /// to a point in time: the newest base backup finished before it, then
    /// archived WAL replayed up to it. The cluster must be stopped; its data
    /// directory is moved aside, not deleted.
    Restore {
        from: Option<PathBuf>,
        /// RFC 3339 (2026-12-01T18:30:00Z); default: all the WAL there is.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration, secrets redacted.
    Show,
}

pub async fn db_command(action: DbAction, config: &Config) -> anyhow::Result<ExitCode> {
    match action {
        DbAction::Backup { dir, keep } => return backup(config, dir, keep).await,
        DbAction::Backups { dir } => return list(config, dir),
        DbAction::Restore { from, to } => return restore(config, from, to).await,
        _ => {}
    }
    if config.database_url.is_some() {
        anyhow::bail!("a database URL is configured: there is no embedded cluster to manage");
    }
    let cluster = Cluster::new(&config.data_dir)?;
    let where_ = cluster.root().display().to_string();
    match action {
        DbAction::Start => {
            if cluster.ensure_running()? {
                println!("started ({where_})");
            } else {
                println!("already running ({where_})");
            }
        }
        DbAction::Stop => {
            if cluster.is_running()? {
                cluster.stop()?;
                println!("stopped ({where_})");
            } else {
                println!("not running ({where_})");
            }
        }
        DbAction::Status => {
            let state = if !cluster.is_initialized() {
                "not initialized"
            } else if cluster.is_running()? {
                "running"
            } else {
                "stopped"
            };
            println!("{state} ({where_})");
            if state != "running" {
                return Ok(ExitCode::from(3));
            }
        }
        DbAction::Backup { .. } | DbAction::Backups { .. } | DbAction::Restore { .. } => {
            unreachable!("handled above")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn backup_dir(config: &Config, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| config.data_dir.join("backup"))
}

async fn backup(
    config: &Config,
    dir: Option<PathBuf>,
    keep: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let dir = backup_dir(config, dir);
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    // A copy of the backup must not carry the keys that verify it.
    if let Ok(keys) = config.keys_dir.canonicalize() {
        if keys.starts_with(&dir) {
            anyhow::bail!(
                "the keys dir {} is inside {}: back up elsewhere",
                keys.display(),
                dir.display()
            );
        }
    }
    let info = match &config.database_url {
        Some(url) => {
            let (url, bin_dir) = (url.clone(), crate::store::embedded::find_bin_dir()?);
            let d = dir.clone();
            tokio::task::spawn_blocking(move || {
                backup::take(
                    backup::Source::Url {
                        url: &url,
                        bin_dir: &bin_dir,
                    },
                    &d,
                )
            })
            .await??
        }
        None => {
            let cluster = Cluster::new(&config.data_dir)?;
            let (c, d) = (cluster.clone(), dir.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<backup::BaseInfo> {
                let started = c.ensure_running()?;
                let taken = backup::take(backup::Source::Embedded(&c), &d);
                if started {
                    c.stop()?;
                }
                taken
            })
            .await??
        }
    };
    println!(
        "base backup {} in {}: {} bytes, from WAL {}",
        info.name,
        dir.display(),
        info.bytes,
        info.start_wal
    );
    if let Some(keep) = keep {
        let p = backup::prune(&dir, keep)?;
        println!(
            "pruned {} base backups and {} WAL files",
            p.bases, p.wal_files
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(config: &Config, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = backup_dir(config, dir);
    for b in backup::list(&dir)? {
        let ended = chrono::DateTime::from_timestamp_millis(b.ended_at_ms).unwrap_or_default();
        println!(
            "{}  consistent from {}  {} bytes  WAL from {}",
            b.name,
            ended.to_rfc3339(),
            b.bytes,
            b.start_wal
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn restore(
    config: &Config,
    from: Option<PathBuf>,
    to: Option<String>,
) -> anyhow::Result<ExitCode> {
    if config.database_url.is_some() {
        anyhow::bail!(
            "restore rebuilds the embedded cluster under --data-dir: run it without a database \
             URL (an HA backup restores the same way; deploy/ha/README.md, Backups)"
        );
    }
    let to = match to {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| {
                    anyhow::anyhow!("--to {t}: {e} (RFC 3339, e.g. 2026-12-01T18:30:00Z)")
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let from = backup_dir(config, from);
    let cluster = Cluster::new(&config.data_dir)?;
    let r = backup::restore(&cluster, &from, to).await?;
    println!(
        "restored from base backup {} to {}",
        r.base.name,
        to.map_or("the end of the WAL".to_owned(), |t| t.to_rfc3339())
    );
    if let Some(aside) = r.set_aside {
        println!("the data directory it replaced is in {}", aside.display());
    }
    println!("then: `cardswitch verify`, and start the daemon");
    Ok(ExitCode::SUCCESS)
}

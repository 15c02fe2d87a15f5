//! `db …` and `config …`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::store::embedded::Cluster;

#[derive(Subcommand)]
pub enum DbAction {
    /// Create (on first use) and start the embedded cluster.
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Say whether the embedded cluster runs.
    Status,
}

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration, secrets redacted.
    Show,
}

pub fn db_command(action: DbAction, config: &Config) -> anyhow::Result<ExitCode> {
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
    }
    Ok(ExitCode::SUCCESS)
}

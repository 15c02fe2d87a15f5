//! `import members`: a chain's member file brought over (README, Import).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::store;

#[derive(Subcommand)]
pub enum ImportAction {
    /// Members and their cards from a .csv (UTF-8 or GB18030) or .xlsx file
    /// with the columns card,name,phone,level,balance,points[,pin][,birthday].
    Members {
        file: PathBuf,
        /// The store they are registered at.
        #[arg(long)]
        store: String,
        /// Check every row and say what would happen; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object: rows, imported, skipped, rejected [{row, reason}].
        #[arg(long)]
        json: bool,
    },
}

pub async fn import_command(action: ImportAction, config: &Config) -> anyhow::Result<ExitCode> {
    let ImportAction::Members {
        file,
        store: store_id,
        dry_run,
        json,
    } = action;
    let db = store::open(config).await?;
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let b = bar.clone();
    let result =
        crate::import::members(config, &db.pool, &file, &store_id, dry_run, move |d, t| {
            b.set_length(t as u64);
            b.set_position(d as u64);
        })
        .await;
    bar.finish_and_clear();
    db.close().await?;
    let s = result?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        for r in &s.rejected {
            println!("row {}: {}", r.row, r.reason);
        }
        let verb = if dry_run { "would import" } else { "imported" };
        println!(
            "{} rows: {verb} {}, skipped {} (imported before), rejected {}",
            s.rows,
            s.imported,
            s.skipped,
            s.rejected.len()
        );
    }
    Ok(if s.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

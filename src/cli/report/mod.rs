//! `cardswitch report …`: the back office's numbers for people, from the
//! same functions as the office ops (`store::reports`), so a printed
//! settlement and a terminal's `settlement` never differ.

use std::path::PathBuf;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use clap::{Subcommand, ValueEnum};

use crate::config::Config;
use crate::ledger::request::SettlementBy;
use crate::store::{self, reports};

mod out;
mod trend;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Xlsx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum By {
    Op,
    Terminal,
}

#[derive(Subcommand)]
pub enum ReportAction {
    /// A business day's postings summed by store, (terminal,) op and tender.
    Settlement {
        /// The business day, YYYY-MM-DD.
        #[arg(long)]
        day: NaiveDate,
        /// One store's; every store's by default.
        #[arg(long)]
        store: Option<String>,
        #[arg(long, value_enum, default_value = "op")]
        by: By,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write here instead of stdout (required for xlsx).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// What the chain owes its card holders: every card's, or one store's.
    Liability {
        #[arg(long)]
        store: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cards whose membership lapses within the next N days
    /// (`business.card_validity_days`), soonest first, phones in full: the
    /// SMS gateway's reminder list.
    Expiring {
        #[arg(long)]
        days: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A chart of the daily totals (sales, top-ups, new cards) as SVG.
    Trend {
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn report_command(action: ReportAction, config: &Config) -> anyhow::Result<()> {
    let db = store::open(config).await?;
    let replica = read_pool(config).await?;
    let result = run(action, config, replica.as_ref().unwrap_or(&db.pool)).await;
    db.close().await?;
    result
}

/// The replica's pool while it is within `db.replica_max_lag` (issue 13);
/// `None`: the primary's.
pub async fn read_pool(config: &Config) -> anyhow::Result<Option<deadpool_postgres::Pool>> {
    let Some(url) = &config.read_database_url else {
        return Ok(None);
    };
    let replica = store::replica::Replica::new(url, &config.db)?;
    match replica.current_pool().await {
        Ok((pool, lag)) => {
            eprintln!(
                "reading from the replica ({:.1} s behind)",
                lag.as_secs_f64()
            );
            Ok(Some(pool))
        }
        Err(why) => {
            eprintln!("reading from the primary: {why}");
            Ok(None)
        }
    }
}

async fn run(
    action: ReportAction,
    config: &Config,
    pool: &deadpool_postgres::Pool,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    // One snapshot for the whole report (and the settlement's plan setting).
    let c = client.build_transaction().read_only(true).start().await?;
    match action {
        ReportAction::Settlement {
            day,
            store,
            by,
            format,
            out,
        } => {
            let by = match by {
                By::Op => SettlementBy::Op,
                By::Terminal => SettlementBy::Terminal,
            };
            let store = store.unwrap_or_else(|| crate::ledger::ALL_STORES.to_owned());
            let lines = reports::settlement(&c, day, &store, by).await?;
            let table = out::settlement_table(&lines, by == SettlementBy::Terminal);
            write(&table, format, out, &format!("settlement {day}"))
        }
        ReportAction::Liability { store, format, out } => {
            let store = store.unwrap_or_else(|| crate::ledger::ALL_STORES.to_owned());
            let l = reports::liability(&c, &store).await?;
            write(&out::liability_table(&store, &l), format, out, "liability")
        }
        ReportAction::Expiring { days, format, out } => {
            let validity = config.business.card_validity_days;
            if validity == 0 {
                bail!("business.card_validity_days is 0: memberships never lapse");
            }
            let cards = reports::expiring(&c, validity, days).await?;
            let table = out::expiring_table(&cards, config.business.offset());
            write(&table, format, out, "expiring")
        }
        ReportAction::Trend { from, to, out } => {
            if to < from {
                bail!("--to is before --from");
            }
            let days = reports::daily(&c, from, to).await?;
            trend::draw(&days, from, to, &out)?;
            println!("{} days drawn to {}", days.len(), out.display());
            Ok(())
        }
    }
}

fn write(t: &out::Table, format: Format, to: Option<PathBuf>, title: &str) -> anyhow::Result<()> {
    match (format, to) {
        (Format::Xlsx, None) => bail!("xlsx needs --out FILE"),
        (Format::Xlsx, Some(p)) => out::xlsx(t, title, &p),
        (Format::Csv, Some(p)) => {
            std::fs::write(&p, out::csv(t)).with_context(|| format!("writing {}", p.display()))
        }
        (Format::Csv, None) => {
            use std::io::Write;
            Ok(std::io::stdout().write_all(&out::csv(t))?)
        }
        (Format::Table, Some(p)) => {
            std::fs::write(&p, out::text(t)).with_context(|| format!("writing {}", p.display()))
        }
        (Format::Table, None) => {
            print!("{}", out::text(t));
            Ok(())
        }
    }
}

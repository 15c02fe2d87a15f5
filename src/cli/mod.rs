//! The command line: clap types, and one function per command family that
//! calls into the library. `main.rs` only parses and hands over.

mod bench;
mod chaos;
mod client;
mod db;
mod events;
mod import;
mod integrity;
mod keys;
mod ledger;
mod report;
mod terminals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat, Overrides};
use crate::store::{self};

#[derive(Parser)]
#[command(name = "cardswitch", version, about = "Member-card transaction switch")]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
pub struct Global {
    /// TOML configuration file.
    #[arg(long, global = true, env = "CARDSWITCH_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL URL; without it, the embedded cluster in <data-dir>/pg.
    #[arg(
        long,
        global = true,
        env = "CARDSWITCH_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// A replica's URL, for reads that may lag (settlement, liability,
    /// reports, verify); within db.replica_max_lag, else the primary.
    #[arg(
        long,
        global = true,
        env = "CARDSWITCH_READ_DATABASE_URL",
        hide_env_values = true
    )]
    read_database_url: Option<String>,
    /// Where the embedded cluster and other state live [default: ./var].
    #[arg(long, global = true, env = "CARDSWITCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where key files live [default: ./keys].
    #[arg(long, global = true, env = "CARDSWITCH_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, global = true, env = "CARDSWITCH_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "CARDSWITCH_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Manage the embedded PostgreSQL cluster.
    Db {
        #[command(subcommand)]
        action: db::DbAction,
    },
    /// Show configuration.
    Config {
        #[command(subcommand)]
        action: db::ConfigAction,
    },
    /// Key management: master, root, signer, day keys, sessions.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Stores.
    Store {
        #[command(subcommand)]
        action: terminals::StoreAction,
    },
    /// Terminals.
    Terminal {
        #[command(subcommand)]
        action: terminals::TerminalAction,
    },
    /// Reference client: handshake (cached for the day), one operation, its rows.
    Client(client::ClientArgs),
    /// Manage the operators of a store (cashiers and managers).
    Operator {
        #[command(subcommand)]
        action: ledger::OperatorAction,
    },
    /// Manage membership levels (discount and points rate).
    Level {
        #[command(subcommand)]
        action: ledger::LevelAction,
    },
    /// Check every protected row (MACs, chains, sealed copies, balances and
    /// points against postings and lots); exits 1 when anything is found.
    Verify {
        /// Restore tampered cards from their sealed copies where the copy is
        /// intact and agrees with the postings chain (audited).
        #[arg(long)]
        repair: bool,
        /// One JSON report on stdout (no progress bar).
        #[arg(long)]
        json: bool,
    },
    /// List the audit trail, oldest first.
    Audit {
        /// Only entries at or after this time (RFC 3339, or YYYY-MM-DD in UTC).
        #[arg(long)]
        since: Option<String>,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Webhook endpoints that events are delivered to (protocol.md §8).
    Webhook {
        #[command(subcommand)]
        action: events::WebhookAction,
    },
    /// List events (one per posting row), oldest first, with their deliveries.
    Events {
        /// Only events with a larger id.
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// JSON lines: the event as delivered, and its deliveries.
        #[arg(long)]
        json: bool,
    },
    /// Bring members over from a chain's old system.
    Import {
        #[command(subcommand)]
        action: import::ImportAction,
    },
    /// Reports for people: settlement, liability, a trend chart.
    Report {
        #[command(subcommand)]
        action: report::ReportAction,
    },
    /// End-to-end load benchmark against pgbench on the same cluster (README, Performance).
    Bench(bench::BenchArgs),
    /// The load and the checks of the fault script `deploy/ha/chaos.sh`.
    Chaos {
        #[command(subcommand)]
        action: chaos::ChaosAction,
    },
}

/// Runs a parsed command line to its exit code.
pub fn run(cli: Cli) -> ExitCode {
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let g = cli.global;
    let config = Config::load(
        g.config.as_deref(),
        Overrides {
            database_url: g.database_url,
            read_database_url: g.read_database_url,
            data_dir: g.data_dir,
            keys_dir: g.keys_dir,
            log_format: g.log_format,
            listen,
        },
    );
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    crate::app::init_logging(config.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(e.into()),
    };
    match rt.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { .. } => {
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
            crate::app::serve(config, listener, crate::app::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let db = store::open(&config).await?;
            let client = db.pool.get().await?;
            let v = store::migrate::current_version(&client).await?;
            drop(client);
            println!("schema at version {}", v.unwrap_or(0));
            db.close().await?;
        }
        Command::Db { action } => return db::db_command(action, &config).await,
        Command::Config {
            action: db::ConfigAction::Show,
        } => print!("{}", config.to_redacted_toml()),
        Command::Keys { action } => return keys::keys_command(action, &config).await,
        Command::Store { action } => {
            let db = store::open(&config).await?;
            let r = match action {
                terminals::StoreAction::Add { store, name } => {
                    crate::keys::admin::add_store(&config, &db.pool, &store, &name).await
                }
            };
            db.close().await?;
            r?;
            println!("ok");
        }
        Command::Terminal { action } => return terminals::terminal_command(action, &config).await,
        Command::Client(args) => return client::client_command(args, &config).await,
        Command::Operator { action } => ledger::operator_command(action, &config).await?,
        Command::Level { action } => ledger::level_command(action, &config).await?,
        Command::Bench(args) => return bench::bench_command(args, &config).await,
        Command::Chaos { action } => return chaos::run(action, &config).await,
        Command::Verify { repair, json } => {
            return integrity::verify_command(&config, repair, json).await
        }
        Command::Audit { since, json } => integrity::audit_command(&config, since, json).await?,
        Command::Webhook { action } => events::webhook_command(action, &config).await?,
        Command::Report { action } => report::report_command(action, &config).await?,
        Command::Import { action } => return import::import_command(action, &config).await,
        Command::Events { since, json } => {
            return events::events_command(&config, since, json).await
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("cardswitch: {e:#}");
    ExitCode::FAILURE
}

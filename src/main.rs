//! The `cardswitch` binary: parses the command line and calls into the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cardswitch::config::{Config, LogFormat, Overrides};
use cardswitch::store::{self, embedded::Cluster};

#[derive(Parser)]
#[command(name = "cardswitch", version, about = "Member-card transaction switch")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
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
enum Command {
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
        action: DbAction,
    },
    /// Show configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage the operators of a store (cashiers and managers).
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// Manage membership levels (discount and points rate).
    Level {
        #[command(subcommand)]
        action: LevelAction,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Add an operator to a store; a manager needs a PIN (--pin-stdin).
    Add {
        id: String,
        #[arg(long)]
        store: String,
        /// cashier or manager.
        #[arg(long)]
        role: String,
        /// Read the operator's PIN (4-12 digits) from the first line of stdin.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// List operators (of one store with --store).
    List {
        #[arg(long)]
        store: Option<String>,
    },
    /// Disable an operator.
    Disable {
        id: String,
        #[arg(long)]
        store: String,
    },
    /// Enable an operator (and clear its wrong-PIN count).
    Enable {
        id: String,
        #[arg(long)]
        store: String,
    },
    /// Set a new PIN, read from the first line of stdin; re-enables the operator.
    ResetPin {
        id: String,
        #[arg(long)]
        store: String,
    },
}

#[derive(Subcommand)]
enum LevelAction {
    /// Add a level: --discount is the share paid (0.95 = 5 % off).
    Add {
        name: String,
        #[arg(long)]
        discount: rust_decimal::Decimal,
        /// Points per currency unit charged.
        #[arg(long)]
        points_rate: rust_decimal::Decimal,
    },
    /// List levels.
    List,
}

#[derive(Subcommand)]
enum DbAction {
    /// Create (on first use) and start the embedded cluster.
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Say whether the embedded cluster runs.
    Status,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration, secrets redacted.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let g = cli.global;
    let config = Config::load(
        g.config.as_deref(),
        Overrides {
            database_url: g.database_url,
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
    cardswitch::app::init_logging(config.log_format);
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
            cardswitch::app::serve(config, listener, cardswitch::app::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let db = store::open(&config).await?;
            let client = db.pool.get().await?;
            let v = store::migrate::current_version(&client).await?;
            drop(client);
            println!("schema at version {}", v.unwrap_or(0));
            db.close().await?;
        }
        Command::Db { action } => return db_command(action, &config),
        Command::Operator { action } => operator_command(action, &config).await?,
        Command::Level { action } => level_command(action, &config).await?,
        Command::Config {
            action: ConfigAction::Show,
        } => print!("{}", config.to_redacted_toml()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The first line of stdin, without its line end.
fn read_pin_line() -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let pin = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    Ok(pin)
}

async fn operator_command(action: OperatorAction, config: &Config) -> anyhow::Result<()> {
    use cardswitch::store::operators;
    let db = store::open(config).await?;
    let client = db.pool.get().await?;
    let result = async {
        match action {
            OperatorAction::Add {
                id,
                store,
                role,
                pin_stdin,
            } => {
                let pin = if pin_stdin {
                    Some(read_pin_line()?)
                } else {
                    None
                };
                let secrets = cardswitch::keys::load_secrets(&config.keys_dir, &client).await?;
                operators::add_operator(
                    &client,
                    &secrets.hash_key,
                    &store,
                    &id,
                    &role,
                    pin.as_deref().map(|p| p.as_str()),
                )
                .await?;
                println!("operator {id} added to store {store} as {role}");
            }
            OperatorAction::List { store } => {
                for o in operators::list_operators(&client, store.as_deref()).await? {
                    println!(
                        "{}\t{}\t{}\t{}\tpin={}\twrong_pins={}",
                        o.store_id,
                        o.operator_id,
                        o.role,
                        o.status,
                        if o.has_pin { "set" } else { "none" },
                        o.pin_fail_count
                    );
                }
            }
            OperatorAction::Disable { id, store } => {
                operators::set_operator_status(&client, &store, &id, false).await?;
                println!("operator {id} of store {store} disabled");
            }
            OperatorAction::Enable { id, store } => {
                operators::set_operator_status(&client, &store, &id, true).await?;
                println!("operator {id} of store {store} enabled");
            }
            OperatorAction::ResetPin { id, store } => {
                let pin = read_pin_line()?;
                let secrets = cardswitch::keys::load_secrets(&config.keys_dir, &client).await?;
                operators::reset_pin(&client, &secrets.hash_key, &store, &id, &pin).await?;
                println!("operator {id} of store {store}: PIN reset, enabled");
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    drop(client);
    db.close().await?;
    result
}

async fn level_command(action: LevelAction, config: &Config) -> anyhow::Result<()> {
    use cardswitch::store::operators;
    let db = store::open(config).await?;
    let client = db.pool.get().await?;
    let result = async {
        match action {
            LevelAction::Add {
                name,
                discount,
                points_rate,
            } => {
                operators::add_level(&client, &name, discount, points_rate).await?;
                println!("level {name} added: pays {discount}, {points_rate} points per unit");
            }
            LevelAction::List => {
                for (name, d, r) in operators::list_levels(&client).await? {
                    println!("{name}\tdiscount={d}\tpoints_rate={r}");
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    drop(client);
    db.close().await?;
    result
}

fn db_command(action: DbAction, config: &Config) -> anyhow::Result<ExitCode> {
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

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("cardswitch: {e:#}");
    ExitCode::FAILURE
}

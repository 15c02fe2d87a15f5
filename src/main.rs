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
    /// Key management: master, root, signer, day keys, sessions.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Stores.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Terminals.
    Terminal {
        #[command(subcommand)]
        action: TerminalAction,
    },
    /// Reference client: handshake (cached for the day), one operation, its rows.
    Client(ClientArgs),
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
    /// End-to-end load benchmark against pgbench on the same cluster (README, Performance).
    Bench(BenchArgs),
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

#[derive(Args)]
struct BenchArgs {
    /// Terminals provisioned and logged in (each client is one of them).
    #[arg(long, default_value_t = 64)]
    terminals: usize,
    /// Cards registered (through the protocol) and used by the load.
    #[arg(long, default_value_t = 100_000)]
    cards: usize,
    /// Concurrent clients, and pgbench's client count.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of each timed run, and of pgbench.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Timed runs in order, comma-separated: debit, mixed (70 % debit, 10 % topup,
    /// 10 % query, 5 % refund, 5 % points), query.
    #[arg(long, default_value = "debit,mixed")]
    mix: String,
    /// Pace the runs at this many txns/s in all (default: as fast as it goes).
    #[arg(long)]
    rate: Option<f64>,
    /// Skip pgbench (the last line is then `ratio=n/a`).
    #[arg(long)]
    no_pgbench: bool,
    /// pgbench's scale (its database is `<database>_pgbench`, recreated).
    #[arg(long, default_value_t = 10)]
    pgbench_scale: u32,
    /// Use this running daemon (on the same database) instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// The running daemon's pid, to report its RSS (with --url).
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// After the runs, hold this many idle connections open and report the daemon's RSS.
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Day keys made before the daemon starts: today and this many days ahead.
    #[arg(long, default_value_t = 1)]
    pregen_days: u32,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create the master key file, the root key file and a first signer; refuses to overwrite.
    Init,
    /// Print the current root public key (PEM), for provisioning terminals.
    RootPublic,
    /// Show roots, signer, master key id, and per terminal its day key and sessions.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// New signer key certified by the root (key file from the keys dir, or --root-key).
    RotateSigner {
        /// Root private key file(s) (PEM); default: root-*.pem in the keys dir.
        #[arg(long = "root-key")]
        root_key: Vec<PathBuf>,
    },
    /// New root key; the old one keeps certifying for keys.root_overlap_days.
    RotateRoot,
    /// End a terminal's sessions and day key; make a new day key for today.
    RotateTerminal { terminal: String },
    /// End a terminal's sessions and day keys now, on every instance.
    Revoke { terminal: String },
    /// New master key: every sealed secret re-sealed in one transaction.
    RotateMaster,
    /// Make day keys for today and the next N days.
    Pregen {
        #[arg(long, default_value_t = 1)]
        days: u32,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Add a store.
    Add {
        store: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum TerminalAction {
    /// Add a terminal; prints its password once.
    Add {
        terminal: String,
        #[arg(long)]
        store: String,
        #[arg(long)]
        json: bool,
        /// Read the password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List terminals.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a terminal (its requests get 1002; its sessions end).
    Disable { terminal: String },
    /// Enable a terminal again.
    Enable { terminal: String },
    /// New password (printed once); the terminal's sessions end.
    ResetPassword {
        terminal: String,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Args)]
struct ClientArgs {
    /// Daemon URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    #[arg(long)]
    terminal: String,
    /// File holding the terminal's password (one line).
    #[arg(long)]
    password_file: PathBuf,
    /// The root public key PEM (`cardswitch keys root-public`).
    #[arg(long)]
    root_public: PathBuf,
    /// Operation: query, member, history, register, debit, topup, ...
    op: String,
    #[arg(long)]
    amount: Option<String>,
    #[arg(long)]
    order_no: Option<String>,
    #[arg(long)]
    operator: Option<String>,
    #[arg(long)]
    attr1: Option<String>,
    #[arg(long)]
    attr2: Option<String>,
    #[arg(long)]
    json: bool,
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
        Command::Config {
            action: ConfigAction::Show,
        } => print!("{}", config.to_redacted_toml()),
        Command::Keys { action } => return keys_command(action, &config).await,
        Command::Store { action } => {
            let db = store::open(&config).await?;
            let r = match action {
                StoreAction::Add { store, name } => {
                    cardswitch::keys::admin::add_store(&db.pool, &store, &name).await
                }
            };
            db.close().await?;
            r?;
            println!("ok");
        }
        Command::Terminal { action } => return terminal_command(action, &config).await,
        Command::Client(args) => return client_command(args, &config).await,
        Command::Operator { action } => operator_command(action, &config).await?,
        Command::Level { action } => level_command(action, &config).await?,
        Command::Bench(args) => return bench_command(args, &config).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn keys_command(action: KeysAction, config: &Config) -> anyhow::Result<ExitCode> {
    use cardswitch::keys::admin;
    if matches!(action, KeysAction::Init) && admin::keys_exist(config) {
        anyhow::bail!(
            "{} holds a master key: keys are already initialised (nothing changed)",
            config.keys_dir.display()
        );
    }
    let db = store::open(config).await?;
    let pool = &db.pool;
    let result: anyhow::Result<()> = async {
        match action {
            KeysAction::Init => {
                let r = admin::init(config, pool, None, None).await?;
                println!(
                    "master key {} in {}",
                    r.master_id,
                    config.keys_dir.display()
                );
                println!(
                    "root key {} in {} (the daemon does not need it: keep it offline)",
                    r.root_id,
                    r.root_file.display()
                );
                println!("signer {} certified by root {}", r.signer_id, r.root_id);
            }
            KeysAction::RootPublic => print!("{}", admin::root_public(pool).await?.to_pem()),
            KeysAction::Status { json } => {
                let s = admin::status(config, pool).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    print_status(&s);
                }
            }
            KeysAction::RotateSigner { root_key } => {
                let (id, warnings) = admin::rotate_signer(config, pool, &root_key).await?;
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!("signer {id}: new day keys are signed by it");
            }
            KeysAction::RotateRoot => {
                let (id, file) = admin::rotate_root(config, pool).await?;
                println!(
                    "root {id} in {}; the old root keeps certifying for {} days: \
                     re-provision terminals with `cardswitch keys root-public`",
                    file.display(),
                    config.keys.root_overlap_days
                );
            }
            KeysAction::RotateTerminal { terminal } => {
                let key = admin::rotate_terminal(config, pool, &terminal).await?;
                println!("terminal {terminal}: sessions ended, new day key {key}");
            }
            KeysAction::Revoke { terminal } => {
                let n = admin::revoke(pool, &terminal).await?;
                println!("terminal {terminal}: day keys revoked, {n} sessions ended");
            }
            KeysAction::RotateMaster => {
                let (old, new) = admin::rotate_master(config, pool).await?;
                println!("master key {old} replaced by {new}; every secret re-sealed");
            }
            KeysAction::Pregen { days } => {
                let n = admin::pregen(config, pool, days).await?;
                println!("{n} day keys made");
            }
        }
        Ok(())
    }
    .await;
    db.close().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &cardswitch::keys::admin::KeyStatus) {
    println!(
        "master key: {}",
        s.master_key_id
            .as_deref()
            .unwrap_or("(key file not readable)")
    );
    for r in &s.roots {
        println!(
            "root {}: {}, {} days old{}{}",
            r.root_id,
            if r.current { "current" } else { "overlapping" },
            r.age_days,
            r.overlap_until
                .as_deref()
                .map(|u| format!(", certifies until {u}"))
                .unwrap_or_default(),
            if r.key_file_here {
                ", key file in keys dir"
            } else {
                ""
            }
        );
    }
    if let Some(sg) = &s.signer {
        println!(
            "signer {}: expires {} ({} days), certified by {}",
            sg.signer_id,
            sg.not_after,
            sg.days_left,
            sg.certified_by.join(", ")
        );
    }
    for t in &s.terminals {
        println!(
            "terminal {} ({}): day key {} until {}, {} open sessions",
            t.terminal,
            t.status,
            t.key_id.as_deref().unwrap_or("-"),
            t.not_after
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| "-".into()),
            t.open_sessions
        );
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn terminal_command(action: TerminalAction, config: &Config) -> anyhow::Result<ExitCode> {
    use cardswitch::keys::admin;
    let db = store::open(config).await?;
    let pool = &db.pool;
    let result: anyhow::Result<()> = async {
        match action {
            TerminalAction::Add {
                terminal,
                store,
                json,
                password_stdin,
            } => {
                let given = if password_stdin {
                    Some(read_password_stdin()?)
                } else {
                    None
                };
                let generated = given.is_none();
                let pw = admin::add_terminal(config, pool, &terminal, &store, given).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"terminal": terminal, "store": store,
                            "password": if generated { Some(pw.as_str()) } else { None }})
                    );
                } else if generated {
                    println!("terminal {terminal} added to store {store}");
                    println!("password (shown once): {}", pw.as_str());
                } else {
                    println!("terminal {terminal} added to store {store}");
                }
            }
            TerminalAction::List { json } => {
                let list = admin::list_terminals(pool).await?;
                if json {
                    let v: Vec<_> = list
                        .iter()
                        .map(|t| {
                            serde_json::json!({"terminal": t.terminal_id, "store": t.store_id,
                                "status": t.status, "failed_logins": t.failed_logins,
                                "created_at": t.created_at.to_rfc3339()})
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for t in list {
                        println!(
                            "{}\tstore {}\t{}\tfailed logins {}",
                            t.terminal_id, t.store_id, t.status, t.failed_logins
                        );
                    }
                }
            }
            TerminalAction::Disable { terminal } => {
                admin::set_terminal_status(pool, &terminal, false).await?;
                println!("terminal {terminal} disabled");
            }
            TerminalAction::Enable { terminal } => {
                admin::set_terminal_status(pool, &terminal, true).await?;
                println!("terminal {terminal} enabled");
            }
            TerminalAction::ResetPassword {
                terminal,
                json,
                password_stdin,
            } => {
                let given = if password_stdin {
                    Some(read_password_stdin()?)
                } else {
                    None
                };
                let generated = given.is_none();
                let pw = admin::reset_password(config, pool, &terminal, given).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"terminal": terminal,
                            "password": if generated { Some(pw.as_str()) } else { None }})
                    );
                } else if generated {
                    println!("password (shown once): {}", pw.as_str());
                } else {
                    println!("password set");
                }
            }
        }
        Ok(())
    }
    .await;
    db.close().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn client_command(a: ClientArgs, config: &Config) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let password = zeroize::Zeroizing::new(
        std::fs::read_to_string(&a.password_file)
            .with_context(|| format!("cannot read {}", a.password_file.display()))?,
    );
    let password = zeroize::Zeroizing::new(password.trim_end_matches(['\r', '\n']).to_owned());
    let pem = std::fs::read_to_string(&a.root_public)
        .with_context(|| format!("cannot read {}", a.root_public.display()))?;
    let root = cardswitch::crypto::rsa::RsaPublic::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.root_public.display()))?;
    let inner = cardswitch::client::inner_form(
        &a.op,
        a.amount.as_deref(),
        a.order_no.as_deref(),
        a.operator.as_deref(),
        a.attr1.as_deref(),
        a.attr2.as_deref(),
    )?;
    let req = cardswitch::client::CliRequest {
        url: a.url,
        terminal: a.terminal,
        password,
        root,
        inner,
        data_dir: config.data_dir.clone(),
    };
    let out = cardswitch::client::run_cli(&req).await?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = out
        .rows
        .0
        .iter()
        .map(|r| {
            r.0.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"errno": out.errno.code(), "errmsg": out.errno.message(), "rows": rows})
        );
    } else if out.errno == cardswitch::protocol::Errno::Ok {
        for (i, r) in out.rows.0.iter().enumerate() {
            if i > 0 {
                println!();
            }
            for (k, v) in &r.0 {
                println!("{k}={v}");
            }
        }
    }
    if out.errno != cardswitch::protocol::Errno::Ok {
        eprintln!("errno {}: {}", out.errno.code(), out.errno.message());
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_command(a: BenchArgs, config: &Config) -> anyhow::Result<ExitCode> {
    use cardswitch::bench;
    let opts = bench::BenchOptions {
        terminals: a.terminals,
        cards: a.cards,
        clients: a.clients,
        duration: std::time::Duration::from_secs(a.duration),
        runs: bench::parse_runs(&a.mix)?,
        rate: a.rate,
        pgbench: !a.no_pgbench,
        pgbench_scale: a.pgbench_scale,
        url: a.url,
        daemon_pid: a.daemon_pid,
        daemon_exe: Some(std::env::current_exe()?),
        idle_connections: a.idle_connections,
        work_dir: config.data_dir.join("bench"),
        pregen_days: a.pregen_days,
    };
    let report = bench::run(config, &opts).await?;
    let text = report.render();
    if let Some(path) = a.json_out {
        std::fs::write(&path, &text)?;
    }
    print!("{text}");
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

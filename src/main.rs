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
    /// New row key: every protected row re-MACed in batches (progress on
    /// stderr); safe to interrupt and run again; the daemon keeps serving.
    RotateRowKey {
        /// Also MAC rows that have none yet (a database from before tamper
        /// evidence), trusting them as they are. Audited.
        #[arg(long)]
        adopt_unmaced: bool,
    },
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
                    cardswitch::keys::admin::add_store(&config, &db.pool, &store, &name).await
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
        Command::Verify { repair, json } => return verify_command(&config, repair, json).await,
        Command::Audit { since, json } => audit_command(&config, since, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_command(config: &Config, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    use cardswitch::store::verify;
    let db = store::open(config).await?;
    let keys = {
        let c = db.pool.get().await?;
        cardswitch::keys::admin::row_keys(config, &c).await?
    };
    let report = verify::verify(
        &db.pool,
        &keys,
        verify::Options {
            repair,
            progress: !json,
        },
    )
    .await;
    db.close().await?;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            println!("{} {}: {} ({})", f.table, f.key, f.check, f.detail);
        }
        for r in &report.repaired {
            println!(
                "repaired cards {}: {} (was {})",
                r.card_no, r.restored, r.was
            );
        }
        let rows = report.total_rows();
        println!(
            "{rows} rows checked in {:.2} s ({:.0} rows/s): {} findings, {} repaired",
            report.seconds,
            rows as f64 / report.seconds.max(1e-9),
            report.findings.len(),
            report.repaired.len()
        );
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn audit_command(config: &Config, since: Option<String>, json: bool) -> anyhow::Result<()> {
    let since = match since {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|d| d.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
                })
                .map_err(|_| anyhow::anyhow!("--since takes RFC 3339 or YYYY-MM-DD, not {s:?}"))?,
        ),
    };
    let db = store::open(config).await?;
    let rows = {
        let c = db.pool.get().await?;
        cardswitch::store::audit::list(&c, since).await
    };
    db.close().await?;
    for r in rows? {
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{} {} {} terminal={} actor={} source={} {}",
                r.audit_id,
                r.at,
                r.kind,
                r.terminal_id.as_deref().unwrap_or("-"),
                r.actor.as_deref().unwrap_or("-"),
                r.source.as_deref().unwrap_or("-"),
                r.detail
            );
        }
    }
    Ok(())
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
                let n = admin::revoke(config, pool, &terminal).await?;
                println!("terminal {terminal}: day keys revoked, {n} sessions ended");
            }
            KeysAction::RotateMaster => {
                let (old, new) = admin::rotate_master(config, pool).await?;
                println!("master key {old} replaced by {new}; every secret re-sealed");
            }
            KeysAction::RotateRowKey { adopt_unmaced } => {
                let r = admin::rotate_row_key(config, pool, true, adopt_unmaced).await?;
                println!(
                    "row key {}: {} rows re-MACed, {} already under it, {} left as they failed their check",
                    r.key_id,
                    r.rewritten,
                    r.already,
                    r.refused.len()
                );
                for x in &r.refused {
                    println!("not re-MACed (run `cardswitch verify`): {x}");
                }
                if !r.refused.is_empty() {
                    anyhow::bail!("{} rows failed their check and were left", r.refused.len());
                }
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
                admin::set_terminal_status(config, pool, &terminal, false).await?;
                println!("terminal {terminal} disabled");
            }
            TerminalAction::Enable { terminal } => {
                admin::set_terminal_status(config, pool, &terminal, true).await?;
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
                    &secrets.row_keys,
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
                let keys = cardswitch::keys::admin::row_keys(config, &client).await?;
                operators::set_operator_status(&client, &keys, &store, &id, false).await?;
                println!("operator {id} of store {store} disabled");
            }
            OperatorAction::Enable { id, store } => {
                let keys = cardswitch::keys::admin::row_keys(config, &client).await?;
                operators::set_operator_status(&client, &keys, &store, &id, true).await?;
                println!("operator {id} of store {store} enabled");
            }
            OperatorAction::ResetPin { id, store } => {
                let pin = read_pin_line()?;
                let secrets = cardswitch::keys::load_secrets(&config.keys_dir, &client).await?;
                operators::reset_pin(
                    &client,
                    &secrets.hash_key,
                    &secrets.row_keys,
                    &store,
                    &id,
                    &pin,
                )
                .await?;
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
                let keys = cardswitch::keys::admin::row_keys(config, &client).await?;
                operators::add_level(&client, &keys, &name, discount, points_rate).await?;
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

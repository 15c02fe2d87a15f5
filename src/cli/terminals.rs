//! `store …` and `terminal …`: provisioning.

use crate::ledger::TerminalKind;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::store::{self};

#[derive(Subcommand)]
pub enum StoreAction {
    /// Add a store.
    Add {
        store: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TerminalAction {
    /// Add a terminal; prints its password once.
    Add {
        terminal: String,
        /// The store it belongs to.
        #[arg(
            long,
            required_unless_present = "all_stores",
            conflicts_with = "all_stores"
        )]
        store: Option<String>,
        /// A head-office terminal: office kind, every store (protocol.md §6.1).
        #[arg(long, requires = "kind")]
        all_stores: bool,
        /// `pos`, a till (the default), or `office`, a back-office system
        /// that reads and never posts (protocol.md §6.1).
        #[arg(long, default_value = "pos", value_parser = parse_kind)]
        kind: TerminalKind,
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

fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn scope_text(store: &str) -> String {
    if store == crate::ledger::ALL_STORES {
        "every store (head office)".to_owned()
    } else {
        format!("store {store}")
    }
}

fn parse_kind(s: &str) -> Result<TerminalKind, String> {
    TerminalKind::parse(s).ok_or_else(|| format!("{s:?} is not a terminal kind (pos, office)"))
}

pub async fn terminal_command(action: TerminalAction, config: &Config) -> anyhow::Result<ExitCode> {
    use crate::keys::admin;
    let db = store::open(config).await?;
    let pool = &db.pool;
    let result: anyhow::Result<()> = async {
        match action {
            TerminalAction::Add {
                terminal,
                store,
                all_stores,
                kind,
                json,
                password_stdin,
            } => {
                // clap lets `--store` be absent only with `--all-stores`.
                let _ = all_stores;
                let store = store.unwrap_or_else(|| crate::ledger::ALL_STORES.to_owned());
                let given = password_stdin.then(read_password_stdin).transpose()?;
                let generated = given.is_none();
                let pw = admin::add_terminal(config, pool, &terminal, &store, kind, given).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"terminal": terminal, "store": store,
                            "kind": kind.as_str(),
                            "password": if generated { Some(pw.as_str()) } else { None }})
                    );
                } else {
                    println!("terminal {terminal} added to {}", scope_text(&store));
                    if generated {
                        println!("password (shown once): {}", pw.as_str());
                    }
                }
            }
            TerminalAction::List { json } => {
                let list = admin::list_terminals(pool).await?;
                if json {
                    let v: Vec<_> = list
                        .iter()
                        .map(|t| {
                            serde_json::json!({"terminal": t.terminal_id, "store": t.store_id,
                                "kind": t.kind_text,
                                "status": t.status,
                                "created_at": t.created_at.to_rfc3339()})
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    for t in list {
                        println!(
                            "{}\tstore {}\t{}\t{}",
                            t.terminal_id, t.store_id, t.status, t.kind_text
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
                let given = password_stdin.then(read_password_stdin).transpose()?;
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

//! `keys …`: key life cycle.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::store::{self};

#[derive(Subcommand)]
pub enum KeysAction {
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
    /// stderr), postings from before migration 0016 given their places in
    /// the chain; safe to interrupt and run again; the daemon keeps serving.
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

pub async fn keys_command(action: KeysAction, config: &Config) -> anyhow::Result<ExitCode> {
    use crate::keys::admin;
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

fn print_status(s: &crate::keys::admin::KeyStatus) {
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
            t.not_after_ms
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

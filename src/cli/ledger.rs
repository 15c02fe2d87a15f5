//! `operator …` and `level …`.

use clap::Subcommand;

use crate::config::Config;
use crate::integrity::LevelLimits;
use crate::store::{self};

#[derive(Subcommand)]
pub enum OperatorAction {
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
pub enum LevelAction {
    /// Add a level: --discount is the share paid (0.95 = 5 % off).
    Add {
        name: String,
        #[arg(long)]
        discount: rust_decimal::Decimal,
        /// Points per currency unit charged.
        #[arg(long)]
        points_rate: rust_decimal::Decimal,
        /// No top-up or incoming transfer takes a card's balance above this.
        #[arg(long)]
        max_balance: Option<rust_decimal::Decimal>,
        /// What one business day's debits and outgoing transfers may take
        /// from a card's balance.
        #[arg(long)]
        daily_debit_limit: Option<rust_decimal::Decimal>,
    },
    /// Change a level's limits (an absent flag leaves that limit; `none`
    /// lifts it). Postings decided after the change obey it.
    Set {
        name: String,
        #[arg(long, value_parser = limit_arg)]
        max_balance: Option<LimitArg>,
        #[arg(long, value_parser = limit_arg)]
        daily_debit_limit: Option<LimitArg>,
    },
    /// List levels.
    List,
}

/// A limit on the command line: an amount, or `none` (no limit).
#[derive(Clone, Copy, Debug)]
pub struct LimitArg(Option<rust_decimal::Decimal>);

fn limit_arg(s: &str) -> Result<LimitArg, String> {
    if s == "none" {
        return Ok(LimitArg(None));
    }
    s.parse()
        .map(|d| LimitArg(Some(d)))
        .map_err(|_| format!("{s:?} is neither an amount nor `none`"))
}

fn limits_text(l: LevelLimits) -> String {
    let show = |v: Option<rust_decimal::Decimal>| {
        v.map_or("none".to_owned(), |d| d.normalize().to_string())
    };
    format!(
        "max_balance={}\tdaily_debit_limit={}",
        show(l.max_balance),
        show(l.daily_debit_limit)
    )
}

/// The first line of stdin, without its line end.
fn read_pin_line() -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let pin = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    Ok(pin)
}

pub async fn operator_command(action: OperatorAction, config: &Config) -> anyhow::Result<()> {
    use crate::store::operators;
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
                let secrets = crate::keys::load_secrets(&config.keys_dir, &client).await?;
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
                let keys = crate::keys::admin::row_keys(config, &client).await?;
                operators::set_operator_status(&client, &keys, &store, &id, false).await?;
                println!("operator {id} of store {store} disabled");
            }
            OperatorAction::Enable { id, store } => {
                let keys = crate::keys::admin::row_keys(config, &client).await?;
                operators::set_operator_status(&client, &keys, &store, &id, true).await?;
                println!("operator {id} of store {store} enabled");
            }
            OperatorAction::ResetPin { id, store } => {
                let pin = read_pin_line()?;
                let secrets = crate::keys::load_secrets(&config.keys_dir, &client).await?;
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

pub async fn level_command(action: LevelAction, config: &Config) -> anyhow::Result<()> {
    use crate::store::operators;
    let db = store::open(config).await?;
    let mut client = db.pool.get().await?;
    let result = async {
        match action {
            LevelAction::Add {
                name,
                discount,
                points_rate,
                max_balance,
                daily_debit_limit,
            } => {
                let keys = crate::keys::admin::row_keys(config, &client).await?;
                let tx = client.transaction().await?;
                operators::add_level(&tx, &keys, &name, discount, points_rate).await?;
                let limits = LevelLimits {
                    max_balance,
                    daily_debit_limit,
                };
                if limits != LevelLimits::default() {
                    operators::set_level_limits(&tx, &keys, &name, |_| limits).await?;
                }
                tx.commit().await?;
                println!("level {name} added: pays {discount}, {points_rate} points per unit");
            }
            LevelAction::Set {
                name,
                max_balance,
                daily_debit_limit,
            } => {
                let keys = crate::keys::admin::row_keys(config, &client).await?;
                let tx = client.transaction().await?;
                let limits = operators::set_level_limits(&tx, &keys, &name, |now| LevelLimits {
                    max_balance: max_balance.map_or(now.max_balance, |a| a.0),
                    daily_debit_limit: daily_debit_limit.map_or(now.daily_debit_limit, |a| a.0),
                })
                .await?;
                tx.commit().await?;
                println!("level {name}: {}", limits_text(limits));
            }
            LevelAction::List => {
                for l in operators::levels(&client).await? {
                    println!(
                        "{}\tdiscount={}\tpoints_rate={}\t{}",
                        l.level,
                        l.discount.normalize(),
                        l.points_rate.normalize(),
                        limits_text(l.limits)
                    );
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

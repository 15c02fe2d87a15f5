//! `webhook …` and `events`: the endpoints events go to, and the events as
//! ops read them (protocol.md §8).

use std::process::ExitCode;

use clap::Subcommand;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::store::events::{self, Webhook};
use crate::store::{self};

#[derive(Subcommand)]
pub enum WebhookAction {
    /// Register an endpoint; its signing secret is the first line of stdin.
    Add {
        name: String,
        #[arg(long)]
        url: String,
        /// Only these ops' events (comma-separated); every op by default.
        #[arg(long, value_delimiter = ',')]
        ops: Option<Vec<String>>,
        /// Only this store's events; every store's by default.
        #[arg(long)]
        store: Option<String>,
        /// Send the member's phone in full (an SMS gateway's endpoint).
        #[arg(long)]
        include_phone: bool,
        /// Required: the secret is read from stdin, never from the command line.
        #[arg(long, required = true)]
        secret_stdin: bool,
    },
    /// List endpoints with their deliveries pending, delivered and failed.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering to an endpoint.
    Disable { name: String },
    /// Deliver failed deliveries again: one event's, or every one.
    Retry {
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        event_id: Option<i64>,
        #[arg(long)]
        failed: bool,
    },
}

/// The secret: stdin's first line without its line ending.
fn read_secret_stdin() -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

pub async fn webhook_command(action: WebhookAction, config: &Config) -> anyhow::Result<()> {
    let db = store::open(config).await?;
    let pool = &db.pool;
    let result = async {
        match action {
            WebhookAction::Add {
                name,
                url,
                ops,
                store,
                include_phone,
                secret_stdin: _,
            } => {
                let w = Webhook {
                    name: name.clone(),
                    url,
                    ops,
                    store_id: store,
                    include_phone,
                    status: "active".into(),
                    pending: 0,
                    delivered: 0,
                    failed: 0,
                };
                crate::keys::webhooks::add(config, pool, &w, read_secret_stdin()?).await?;
                println!("webhook {name} added");
            }
            WebhookAction::List { json } => list(pool, json).await?,
            WebhookAction::Disable { name } => {
                crate::keys::webhooks::disable(config, pool, &name).await?;
                println!("webhook {name} disabled");
            }
            WebhookAction::Retry {
                event_id,
                failed: _,
            } => {
                let n = events::retry(&pool.get().await?, event_id).await?;
                println!("{n} deliveries due again");
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    db.close().await?;
    result
}

async fn list(pool: &deadpool_postgres::Pool, json: bool) -> anyhow::Result<()> {
    let list = events::list_webhooks(&pool.get().await?).await?;
    if json {
        let v: Vec<_> = list
            .iter()
            .map(|w| {
                serde_json::json!({"name": w.name, "url": w.url, "ops": w.ops,
                    "store": w.store_id, "include_phone": w.include_phone, "status": w.status,
                    "pending": w.pending, "delivered": w.delivered, "failed": w.failed})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for w in list {
        let ops = w.ops.map_or("every op".to_owned(), |o| o.join(","));
        let store = w.store_id.unwrap_or_else(|| "every store".into());
        println!(
            "{}\t{}\t{}\t{ops}\t{store}\tphone {}\tpending {} delivered {} failed {}",
            w.name,
            w.status,
            w.url,
            if w.include_phone { "yes" } else { "no" },
            w.pending,
            w.delivered,
            w.failed
        );
    }
    Ok(())
}

/// Events after `since`, oldest first, with their deliveries.
pub async fn events_command(config: &Config, since: i64, json: bool) -> anyhow::Result<ExitCode> {
    let db = store::open(config).await?;
    let rows = events::list_events(&db.pool.get().await?, since, 10_000).await;
    db.close().await?;
    for e in rows? {
        if json {
            let mut v = e.body.clone();
            v["id"] = e.event_id.to_string().into();
            v["sent"] = e.sent.into();
            v["deliveries"] = e.deliveries.clone();
            println!("{v}");
        } else {
            let b = &e.body;
            let text = |n: &str| b[n].as_str().unwrap_or("").to_owned();
            println!(
                "{}\t{}\t{}\t{}\tcard {} #{}\tbalance {}\t{}\t{}",
                e.event_id,
                e.created_at.to_rfc3339(),
                text("op"),
                text("terminal"),
                text("card"),
                b["card_seq"],
                text("balance"),
                if e.sent { "sent" } else { "waiting" },
                e.deliveries
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `cardswitch import members FILE --store S`: a chain's members brought
//! over from its old system. Each good row goes through the ledger as an
//! `import` (a register with an opening balance and points: one posting,
//! chained, MACed and sealed like any other, with its event), posted by the
//! store's import terminal `import-{S}` (which has no password, so it can
//! never log in) under order number `import-{card}`. So a second run of the
//! same file finds every row's order and replays it (`skipped`), a row
//! whose card was imported with other values is 2006 and one whose card
//! exists otherwise is 2012 (both `rejected`, with the reason).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::op::Op;
use crate::store::txn::{Committed, TxnContext, TxnEnv};

pub mod read;
pub mod row;

use row::ImportRow;

/// Rows posted at once (each is its own transaction).
const WORKERS: usize = 8;

/// What became of a file.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub rows: usize,
    pub imported: usize,
    pub skipped: usize,
    pub rejected: Vec<Rejected>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct Rejected {
    pub row: usize,
    pub reason: String,
}

/// The import terminal of `store`.
pub fn terminal_of(store: &str) -> anyhow::Result<String> {
    let t = format!("import-{store}");
    if t.len() > 32 {
        bail!("store ids up to 25 characters can be imported into");
    }
    Ok(t)
}

/// Imports `path` into `store`; `progress` is told of each row done.
pub async fn members(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    path: &Path,
    store: &str,
    dry_run: bool,
    progress: impl Fn(usize, usize) + Send + Sync + 'static,
) -> anyhow::Result<Summary> {
    let sheet = read::read(path)?;
    let mut summary = Summary {
        rows: sheet.rows.len(),
        dry_run,
        ..Summary::default()
    };
    let mut good: Vec<(usize, ImportRow)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (n, cells) in &sheet.rows {
        match row::check(cells) {
            Err(reason) => summary.rejected.push(Rejected { row: *n, reason }),
            Ok(r) if !seen.insert(r.card.clone()) => summary.rejected.push(Rejected {
                row: *n,
                reason: format!(
                    "card {} is repeated: only its first row is imported",
                    r.card
                ),
            }),
            Ok(r) => good.push((*n, r)),
        }
    }
    let terminal = terminal_of(store)?;
    if dry_run {
        summary.imported = good.len();
    } else {
        let env = Arc::new(prepare(config, pool, store, &terminal).await?);
        post_all(pool, env, store, &terminal, good, &mut summary, progress).await?;
    }
    summary.rejected.sort_by_key(|r| r.row);
    Ok(summary)
}

/// The store exists; its import terminal exists (made now if not); the
/// keys the ledger needs are open.
async fn prepare(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    store: &str,
    terminal: &str,
) -> anyhow::Result<TxnEnv> {
    let c = pool.get().await?;
    if !crate::store::terminals::store_exists(&c, store).await? {
        bail!("no store {store}: add it with `cardswitch store add`");
    }
    let secrets = crate::keys::load_secrets(&config.keys_dir, &c)
        .await
        .context("opening the keys")?;
    crate::store::terminals::add_terminal_without_password(
        &c,
        &secrets.row_keys,
        terminal,
        store,
        crate::ledger::TerminalKind::Pos,
    )
    .await?;
    Ok(TxnEnv {
        config: Arc::new(config.clone()),
        hash_key: secrets.hash_key,
        row_keys: Arc::new(secrets.row_keys),
        replica: None,
        statements: Default::default(),
    })
}

/// Every good row through the ledger, [`WORKERS`] at a time.
async fn post_all(
    pool: &deadpool_postgres::Pool,
    env: Arc<TxnEnv>,
    store: &str,
    terminal: &str,
    good: Vec<(usize, ImportRow)>,
    summary: &mut Summary,
    progress: impl Fn(usize, usize) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let total = good.len();
    let clock = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_millis()));
    let progress = Arc::new(progress);
    let mut set: JoinSet<(usize, anyhow::Result<Posted>)> = JoinSet::new();
    let mut rows = good.into_iter();
    let mut done = 0;
    loop {
        while set.len() < WORKERS {
            let Some((n, r)) = rows.next() else { break };
            let (pool, env, clock) = (pool.clone(), env.clone(), clock.clone());
            let ctx = (terminal.to_owned(), store.to_owned());
            set.spawn(async move { (n, post(&pool, &env, &ctx, &clock, &r).await) });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (n, posted) = joined?;
        match posted? {
            Posted::Imported => summary.imported += 1,
            Posted::Skipped => summary.skipped += 1,
            Posted::Refused(reason) => summary.rejected.push(Rejected { row: n, reason }),
        }
        done += 1;
        progress(done, total);
    }
    Ok(())
}

enum Posted {
    Imported,
    Skipped,
    Refused(String),
}

/// One row as an `import` posting; a `ts` already used (another import
/// at the same moment) is retried with the next one.
async fn post(
    pool: &deadpool_postgres::Pool,
    env: &TxnEnv,
    (terminal, store): &(String, String),
    clock: &AtomicI64,
    r: &ImportRow,
) -> anyhow::Result<Posted> {
    let form = form_of(r);
    for _ in 0..100 {
        let ctx = TxnContext {
            terminal: terminal.clone(),
            store_id: store.clone(),
            ts: clock.fetch_add(1, Ordering::Relaxed),
            now: chrono::Utc::now(),
        };
        return Ok(match crate::keys::run_txn(pool, env, &ctx, &form).await {
            Ok(Committed::Answered(rows)) => {
                let replayed = rows.0.first().and_then(|row| row.get("replayed"));
                if replayed == Some("1") {
                    Posted::Skipped
                } else {
                    Posted::Imported
                }
            }
            Ok(Committed::Refused(errno)) => Posted::Refused(reason(errno, r)),
            Err(e) if e.errno() == Errno::TsUsed => continue,
            Err(e) => Posted::Refused(reason(e.errno(), r)),
        });
    }
    bail!("no free ts for the import terminal")
}

/// What a refusal means for a row of a member file.
fn reason(errno: Errno, r: &ImportRow) -> String {
    let why = match errno {
        Errno::OrderReused => format!(
            "card {} was imported before with other values (nothing changed)",
            r.card
        ),
        Errno::CardInUse => format!("card {} already exists", r.card),
        Errno::Malformed => format!(
            "level {} is not a level (see `cardswitch level list`)",
            r.level
        ),
        Errno::InvalidAmount => "balance or points too large".to_owned(),
        e => format!("refused, errno {}", e.code()),
    };
    format!("{why} (errno {})", errno.code())
}

/// The row as the ledger's inner form (`Op::Import`, which only this
/// builds: no terminal can send it).
fn form_of(r: &ImportRow) -> InnerForm {
    let mut a2 = form_urlencoded::Serializer::new(String::new());
    a2.append_pair("name", &r.name)
        .append_pair("phone", &r.phone)
        .append_pair("level", &r.level)
        .append_pair("balance", &r.balance)
        .append_pair("points", &r.points.to_string());
    if let Some(p) = &r.pin {
        a2.append_pair("pin", p);
    }
    if let Some(b) = &r.birthday {
        a2.append_pair("birthday", b);
    }
    InnerForm {
        op: Op::Import,
        amount: None,
        order_no: Some(format!("import-{}", r.card)),
        operator: None,
        attr1: Some(r.card.clone()),
        attr2: Some(a2.finish()),
    }
}

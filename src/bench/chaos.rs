//! `cardswitch chaos`: the load and the checks of `deploy/ha/chaos.sh`
//! (issue 13). `setup` provisions tills and cards once; each `load` phase
//! runs resending clients through the proxy while the script injects one
//! fault, and logs every acknowledgement; `check` then asks, through the
//! protocol, whether every card's balance is its start plus what was
//! acknowledged, and, in the books, whether every acknowledged order was
//! posted exactly once and nothing else was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::resend::{self, Acked, ClientLog, Load, Till};
use crate::client::Client;
use crate::config::Config;
use crate::crypto::rsa::RsaPublic;

/// What every card holds after setup, in cents.
const START_CENTS: i64 = 100_000;
/// The orders of the chaos load start with this, and only they do.
const ORDER_PREFIX: &str = "CH";

/// What `setup` leaves for `load` and `check`: secrets of test tills, so
/// the file is written mode 0600.
#[derive(Serialize, Deserialize)]
struct State {
    root_pem: String,
    tills: Vec<Till>,
    cards: Vec<String>,
}

/// Provisions `terminals` tills (in the database) and `cards` cards
/// (registered and topped up through the protocol at `url`).
pub async fn setup(
    config: &Config,
    url: &str,
    dir: &Path,
    terminals: usize,
    cards: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (tills, root) = provision(config, terminals).await?;
    let cards: Vec<String> = (0..cards).map(|i| format!("CHAOS{i:04}")).collect();
    let c = Client::new(url);
    let mut s = resend::login(&c, &root, &tills[0]).await?;
    let mut log = ClientLog::default();
    for (i, card) in cards.iter().enumerate() {
        for inner in [
            format!("op=register&order_no=SETUP-CH-R{i}&attr1={card}&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd"),
            format!("op=topup&amount={}&order_no=SETUP-CH-T{i}&attr1={card}", START_CENTS / 100),
        ] {
            let answer = resend::until_answered(&c, &mut s, &tills[0], &root, &inner, &mut log).await?;
            if answer.is_err() {
                bail!("setup refused: {inner}: {answer:?}");
            }
        }
    }
    let state = State {
        root_pem: root.to_pem(),
        tills,
        cards,
    };
    write_private(&dir.join("state.json"), &serde_json::to_vec(&state)?)
}

async fn provision(config: &Config, terminals: usize) -> anyhow::Result<(Vec<Till>, RsaPublic)> {
    use crate::keys::admin;
    let db = crate::store::open(config).await?;
    // A second setup on the same database adds nothing twice.
    let _ = admin::add_store(config, &db.pool, "CHAOS", "Chaos shop").await;
    let mut tills = Vec::new();
    for t in 0..terminals {
        let id = format!("CH{t:03}");
        let kind = crate::ledger::TerminalKind::Pos;
        let password = admin::add_terminal(config, &db.pool, &id, "CHAOS", kind, None)
            .await
            .with_context(|| format!("adding terminal {id} (a fresh database is needed)"))?;
        tills.push(Till {
            terminal: id,
            password: password.to_string(),
        });
    }
    let c = db.pool.get().await?;
    let rk = admin::row_keys(config, &c).await?;
    let _ = crate::store::operators::add_level(&c, &rk, "std", 1.into(), 0.into()).await;
    let root = admin::root_public(&db.pool).await?;
    drop(c);
    db.close().await?;
    Ok((tills, root))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

fn read_state(dir: &Path) -> anyhow::Result<(State, RsaPublic)> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path)
        .with_context(|| format!("{}: run `cardswitch chaos setup` first", path.display()))?;
    let state: State = serde_json::from_slice(&bytes)?;
    let root = RsaPublic::from_pem(&state.root_pem).map_err(|e| anyhow::anyhow!("root: {e}"))?;
    Ok((state, root))
}

/// What one load phase saw.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub phase: String,
    pub clients: usize,
    pub seconds: f64,
    pub acked: usize,
    pub replayed: usize,
    /// Orders refused for good (2004 when a card ran low), by errno.
    pub refused: std::collections::BTreeMap<u16, usize>,
    pub resends: u64,
    /// The longest stretch in which no client was told of a posting.
    pub longest_gap_s: f64,
}

/// Runs `clients` resending clients for `seconds` and logs every
/// acknowledgement into `acked-<phase>.json`.
pub async fn load(
    url: &str,
    dir: &Path,
    phase: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<PhaseReport> {
    if phase.is_empty() || !phase.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("--phase must be letters and digits");
    }
    let (state, root) = read_state(dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load {
        cards: Arc::new(state.cards.clone()),
        prefix: format!("{ORDER_PREFIX}{phase}"),
        // As many top-ups as debits, so the cards do not run dry in a long
        // run and nearly every order posts.
        debit_percent: 50,
        stop: stop.clone(),
    });
    // One client (one ts clock) per till, shared by its tasks.
    let per_till: Vec<Arc<Client>> = state
        .tills
        .iter()
        .map(|_| Arc::new(Client::new(url)))
        .collect();
    let start_ms = now_ms();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let k = n % state.tills.len();
            let (c, till) = (per_till[k].clone(), state.tills[k].clone());
            tokio::spawn(resend::client(c, root.clone(), till, n, load.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::with_capacity(clients);
    for t in tasks {
        logs.push(t.await.context("a client task panicked")??);
    }
    let end_ms = now_ms();
    let acked: Vec<Acked> = logs.iter().flat_map(|l| l.acked.iter().cloned()).collect();
    let path = dir.join(format!("acked-{phase}.json"));
    std::fs::write(&path, serde_json::to_vec(&acked)?)?;
    let mut at: Vec<u64> = acked.iter().map(|a| a.at_ms).collect();
    Ok(PhaseReport {
        phase: phase.to_owned(),
        clients,
        seconds: (end_ms - start_ms) as f64 / 1000.0,
        acked: acked.len(),
        replayed: acked.iter().filter(|a| a.replayed).count(),
        refused: refused_by_errno(&logs),
        resends: logs.iter().map(|l| l.resends).sum(),
        longest_gap_s: resend::longest_gap_secs(&mut at, start_ms, end_ms),
    })
}

fn refused_by_errno(logs: &[ClientLog]) -> std::collections::BTreeMap<u16, usize> {
    let mut by = std::collections::BTreeMap::new();
    for (_, errno) in logs.iter().flat_map(|l| l.refused.iter()) {
        *by.entry(errno.code()).or_insert(0) += 1;
    }
    by
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

/// What `check` found; `problems` empty means it passed.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub acked: usize,
    pub postings: usize,
    pub cards: usize,
    pub total_cents: i64,
    pub problems: Vec<String>,
}

/// Every phase's log against the protocol's balances and the books.
pub async fn check(config: &Config, url: &str, dir: &Path) -> anyhow::Result<CheckReport> {
    let (state, root) = read_state(dir)?;
    let acked = read_acked(dir)?;
    let effects = resend::expected_effects(&acked)?;
    let mut problems = Vec::new();
    let balances = balances_by_protocol(url, &state, &root).await?;
    let mut total_cents = 0;
    for card in &state.cards {
        let want = START_CENTS + effects.get(card).copied().unwrap_or(0);
        let got = balances.get(card).copied();
        total_cents += got.unwrap_or(0);
        if got != Some(want) {
            problems.push(format!(
                "{card}: balance {got:?} cents, acknowledged postings say {want}"
            ));
        }
    }
    let posted = postings_per_order(config).await?;
    for a in &acked {
        match posted.get(&a.order) {
            Some(1) => {}
            n => problems.push(format!(
                "acknowledged {} is in the books {n:?} times",
                a.order
            )),
        }
    }
    let acked_orders: std::collections::HashSet<&str> =
        acked.iter().map(|a| a.order.as_str()).collect();
    for order in posted.keys().filter(|o| !acked_orders.contains(o.as_str())) {
        problems.push(format!(
            "{order} is in the books but no client was told of it"
        ));
    }
    Ok(CheckReport {
        acked: acked.len(),
        postings: posted.values().map(|&n| n as usize).sum(),
        cards: state.cards.len(),
        total_cents,
        problems,
    })
}

fn read_acked(dir: &Path) -> anyhow::Result<Vec<Acked>> {
    let mut all = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("acked-") && name.ends_with(".json")
        })
        .collect();
    paths.sort();
    for p in paths {
        let mut phase: Vec<Acked> = serde_json::from_slice(&std::fs::read(&p)?)?;
        all.append(&mut phase);
    }
    Ok(all)
}

/// Each card's balance in cents, from `query` answers.
async fn balances_by_protocol(
    url: &str,
    state: &State,
    root: &RsaPublic,
) -> anyhow::Result<HashMap<String, i64>> {
    let c = Client::new(url);
    let till = &state.tills[0];
    let mut s = resend::login(&c, root, till).await?;
    let mut log = ClientLog::default();
    let mut out = HashMap::new();
    for card in &state.cards {
        let inner = format!("op=query&attr1={card}");
        let rows = match resend::until_answered(&c, &mut s, till, root, &inner, &mut log).await? {
            Ok(rows) => rows,
            Err(e) => bail!("query {card}: {e:?}"),
        };
        let text = rows
            .0
            .first()
            .and_then(|r| r.get("balance"))
            .context("query answer without a balance")?;
        out.insert(card.clone(), cents_of(text)?);
    }
    Ok(out)
}

fn cents_of(text: &str) -> anyhow::Result<i64> {
    let d: rust_decimal::Decimal = text.parse()?;
    (d * rust_decimal::Decimal::from(100))
        .trunc()
        .to_string()
        .parse()
        .context("balance out of range")
}

/// Postings per order of the chaos load, from the books (a direct read).
async fn postings_per_order(config: &Config) -> anyhow::Result<HashMap<String, i64>> {
    let db = crate::store::open(config).await?;
    let c = db.pool.get().await?;
    let rows = c
        .query(
            "SELECT order_no, count(*) FROM postings
              WHERE op IN ('debit', 'topup') AND order_no LIKE $1 GROUP BY order_no",
            &[&format!("{ORDER_PREFIX}%")],
        )
        .await?;
    let out = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    drop(c);
    db.close().await?;
    Ok(out)
}

//! Provisioning: the benchmark's terminals (and their stores), day keys,
//! the ledger's level and managers, and the cards, registered through the
//! protocol or seeded in bulk (`--seed-cards`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use tokio::task::JoinSet;

use super::load::{self, Seat, World};
use super::{say, secs, seed, BenchOptions};
use crate::client::{Client, Session};
use crate::config::Config;
use crate::protocol::errno::Errno;

const STORE_SIZE: usize = 16;
pub(super) const CARD_PREFIX: &str = "BC";
const LEVEL: &str = "bench";
const MANAGER: (&str, &str) = ("bench-mgr", "246810");
const START_BALANCE: &str = "100000.00";

fn terminal_id(i: usize) -> String {
    format!("BT{i:06}")
}

fn store_id(i: usize) -> String {
    format!("BS{:04}", i / STORE_SIZE)
}

/// What provisioning hands the daemon's part of the run.
pub(super) struct Provisioned {
    /// (terminal, password) of every terminal, in order.
    pub(super) passwords: Vec<(String, String)>,
    pub(super) manager: Option<(String, String)>,
    pub(super) times: ProvisionTimes,
}

pub(super) struct ProvisionTimes {
    pub(super) terminals_s: f64,
    pub(super) day_keys_made: usize,
    pub(super) day_keys_s: f64,
}

/// Terminals, their day keys, the ledger's level and manager.
pub(super) async fn provision(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    opts: &BenchOptions,
) -> anyhow::Result<Provisioned> {
    let t0 = Instant::now();
    say(format!("provisioning {} terminals", opts.terminals));
    let passwords = provision_terminals(config, pool, opts.terminals).await?;
    let terminals_s = secs(t0.elapsed());
    let t0 = Instant::now();
    say(format!(
        "making day keys for today and {} days ahead (RSA-2048 each; made ahead in production)",
        opts.pregen_days
    ));
    let day_keys_made = crate::keys::admin::pregen(config, pool, opts.pregen_days).await?;
    let day_keys_s = secs(t0.elapsed());
    let manager = provision_ledger(config, pool, opts.terminals).await?;
    Ok(Provisioned {
        passwords,
        manager,
        times: ProvisionTimes {
            terminals_s,
            day_keys_made,
            day_keys_s,
        },
    })
}

/// Stores of 16 terminals each, and the terminals with fresh passwords
/// (an existing terminal of an earlier run gets a new one).
async fn provision_terminals(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    n: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    use crate::keys::admin;
    for s in (0..n).step_by(STORE_SIZE) {
        let c = pool.get().await?;
        crate::store::terminals::add_store(&c, &store_id(s), "Bench store").await?;
    }
    let existing: std::collections::HashSet<String> = admin::list_terminals(pool)
        .await?
        .into_iter()
        .map(|t| t.terminal_id)
        .collect();
    let existing = Arc::new(existing);
    let config = Arc::new(config.clone());
    let mut set = JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..n {
        let (config, pool, sem, existing) =
            (config.clone(), pool.clone(), sem.clone(), existing.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let id = terminal_id(i);
            let pw = admin::random_password().to_string();
            if existing.contains(&id) {
                admin::reset_password(&config, &pool, &id, Some(pw.clone())).await?;
            } else {
                admin::add_terminal(
                    &config,
                    &pool,
                    &id,
                    &store_id(i),
                    crate::ledger::TerminalKind::Pos,
                    Some(pw.clone()),
                )
                .await?;
            }
            Ok::<_, anyhow::Error>((i, id, pw))
        });
    }
    let mut out: Vec<Option<(String, String)>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, id, pw) = r??;
        out[i] = Some((id, pw));
    }
    Ok(out
        .into_iter()
        .map(|x| x.expect("every terminal"))
        .collect())
}

/// The ledger's side of provisioning, through its own store functions (as
/// `cardswitch level add` and `operator add` do): a level for the cards
/// (5 % discount, 1 point per unit) and a manager in every store (refunds
/// are manager ops). Both are kept from an earlier run.
async fn provision_ledger(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    terminals: usize,
) -> anyhow::Result<Option<(String, String)>> {
    use crate::store::operators;
    let c = pool.get().await?;
    let secrets = crate::keys::load_secrets(&config.keys_dir, &c).await?;
    let have_level = operators::levels(&c)
        .await?
        .iter()
        .any(|l| l.level == LEVEL);
    if !have_level {
        operators::add_level(
            &c,
            &secrets.row_keys,
            LEVEL,
            rust_decimal::Decimal::new(95, 2),
            rust_decimal::Decimal::ONE,
        )
        .await?;
    }
    let (mgr, pin) = MANAGER;
    for s in (0..terminals).step_by(STORE_SIZE) {
        let store = store_id(s);
        let have = operators::list_operators(&c, Some(&store))
            .await?
            .iter()
            .any(|o| o.operator_id == mgr);
        if !have {
            operators::add_operator(
                &c,
                &secrets.hash_key,
                &secrets.row_keys,
                &store,
                mgr,
                "manager",
                Some(pin),
            )
            .await?;
        }
    }
    Ok(Some((mgr.to_owned(), pin.to_owned())))
}

/// The cards `provision_cards` registered, and how long it took.
pub(super) struct CardsMade {
    pub(super) registered: u64,
    pub(super) seconds: f64,
}

/// Registers the missing benchmark cards and tops each up, through the
/// protocol (`register`, then `topup`), spread over the seats.
pub(super) async fn provision_cards(
    pool: &deadpool_postgres::Pool,
    seats: &[Arc<Seat>],
    world: &Arc<World>,
) -> anyhow::Result<CardsMade> {
    let have = {
        let c = pool.get().await?;
        let below = load::card_no(CARD_PREFIX, world.cards);
        crate::store::fixtures::bench::count_cards_below(&c, CARD_PREFIX, &below).await?
    };
    if have as usize >= world.cards {
        return Ok(CardsMade {
            registered: 0,
            seconds: 0.0,
        });
    }
    say(format!(
        "registering {} cards through the protocol (register + topup {START_BALANCE})",
        world.cards - have as usize
    ));
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for seat in seats {
        let (seat, world, next) = (seat.clone(), world.clone(), next.clone());
        set.spawn(async move {
            let mut made = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= world.cards {
                    return Ok::<_, anyhow::Error>(made);
                }
                if register_card(&seat.client, &seat.session, &world, i).await? {
                    made += 1;
                }
            }
        });
    }
    let mut made = 0;
    while let Some(r) = set.join_next().await {
        made += r??;
    }
    let s = secs(t0.elapsed());
    say(format!("{made} cards registered in {s} s"));
    // The registrations' tables vacuumed and their WAL checkpointed before
    // the timed runs: else autovacuum and the checkpoint land in the first
    // run (issue 14: the same binary's first debit run measured 1,060 and
    // 2,035 txn/s).
    say("after the registrations: VACUUM (ANALYZE) and CHECKPOINT");
    crate::store::fixtures::bench::settle_after_seed(&pool.get().await?).await?;
    Ok(CardsMade {
        registered: made,
        seconds: s,
    })
}

/// One card: `register` (2012, card in use, means an earlier run made it)
/// and, when it was new, a `topup`. Returns whether it was new.
async fn register_card(
    client: &Client,
    session: &Session,
    world: &World,
    i: usize,
) -> anyhow::Result<bool> {
    let card = load::card_no(&world.card_prefix, i);
    let reg = load::build(
        "register",
        None,
        Some(&format!("{}reg{i}", world.run_tag)),
        None,
        &card,
        &[
            ("name", "Bench"),
            ("phone", "13800000000"),
            ("level", LEVEL),
        ],
    )?;
    let out = client.txn(session, &reg).await?;
    match out.errno {
        Errno::Ok => {}
        Errno::CardInUse => return Ok(false),
        e => bail!(
            "register {card}: errno {} ({}){}",
            e.code(),
            e.message(),
            if e == Errno::Internal {
                " — is the ledger in this build?"
            } else {
                ""
            }
        ),
    }
    let top = load::build(
        "topup",
        Some(START_BALANCE),
        Some(&format!("{}top{i}", world.run_tag)),
        None,
        &card,
        &[],
    )?;
    let out = client.txn(session, &top).await?;
    if out.errno != Errno::Ok {
        bail!("topup {card}: errno {}", out.errno.code());
    }
    Ok(true)
}

/// `--seed-cards`: that many cards in bulk after the registered ones.
pub(super) async fn seed_cards(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    opts: &BenchOptions,
    run_tag: &str,
) -> anyhow::Result<Option<seed::SeedStats>> {
    if opts.seed_cards == 0 {
        return Ok(None);
    }
    say(format!(
        "seeding {} cards in bulk after the {} registered (register + topup {START_BALANCE} rows, MACed; not through the protocol)",
        opts.seed_cards, opts.cards
    ));
    let stats = seed::seed(
        config,
        pool,
        seed::SeedSpec {
            prefix: CARD_PREFIX.into(),
            from: opts.cards,
            count: opts.seed_cards,
            terminals: opts.terminals,
            terminal: terminal_id,
            level: LEVEL.into(),
            start_balance: seed::money(START_BALANCE)?,
            run_tag: run_tag.to_owned(),
        },
    )
    .await?;
    say(format!(
        "{} cards seeded in {} s",
        stats.cards, stats.seconds
    ));
    Ok(Some(stats))
}

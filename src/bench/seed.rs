//! `cardswitch bench --seed-cards N`: grows the ledger in bulk for the
//! flatness figure (debit TPS with 10,000 vs 1,000,000 cards), where
//! registering every card through the protocol would take hours.
//!
//! A seeded card is what `register` followed by a `topup` of the bench's
//! start balance writes: its member, the card, and its two postings (the
//! register's, zero, and the topup's, which is where its balance comes from),
//! chained and MACed, the card's MAC, sealed copy, `chain_len` and
//! `last_mac` naming the end of that chain. The values come from the
//! ledger's own pure decisions (`decide_register`, `decide_topup`, so a
//! configured topup bonus is applied as the ledger would), the MACs and
//! sealed copies from the same `integrity` images the ledger writes and
//! `cardswitch verify` checks; ids come from the ledger's sequences. Only the
//! `orders` rows (the idempotency record of the two requests) are not
//! written: no request was sent, so there is no form digest nor answer to
//! keep. Rows go in by multi-row INSERT, a batch per transaction.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::integrity::{member_image, CardValues, PostingValues, RowKeys};
use crate::ledger::answer_row::status_text;
use crate::ledger::{
    business_day, decide_register, decide_topup, CardChange, CardState, CardStatus, LedgerConfig,
    Level, Money, NewMember, Plan, RegisterReq, TopupReq,
};
use crate::store::fixtures::bench::{self as sb, SeedRows};

/// Cards a batch (one transaction) holds.
const BATCH: usize = 5_000;
/// Batches in flight: one computing its MACs while another is inserted.
const WORKERS: usize = 2;

/// What seeding did.
#[derive(Debug, Default, Serialize)]
pub struct SeedStats {
    pub cards: u64,
    pub seconds: f64,
    /// Whether the checkpoint after the seed ran (it needs the right role).
    pub checkpointed: bool,
}

/// The fixed parts of every seeded card.
pub struct SeedSpec {
    pub prefix: String,
    /// Card indexes `[from, from + count)`; those that exist are skipped.
    pub from: usize,
    pub count: usize,
    /// Postings name terminals `terminal(i % terminals)`.
    pub terminals: usize,
    pub terminal: fn(usize) -> String,
    pub level: String,
    pub start_balance: Money,
    pub run_tag: String,
}

struct Ctx {
    spec: SeedSpec,
    keys: RowKeys,
    cfg: LedgerConfig,
    level: Level,
    offset: chrono::FixedOffset,
    existing: HashSet<String>,
}

/// Seeds the cards of `spec` on `pool`; see the module comment.
pub async fn seed(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    spec: SeedSpec,
) -> anyhow::Result<SeedStats> {
    let t0 = Instant::now();
    let c = pool.get().await?;
    let secrets = crate::keys::load_secrets(&config.keys_dir, &c).await?;
    let stored = crate::store::operators::levels(&c)
        .await?
        .into_iter()
        .find(|l| l.level == spec.level)
        .ok_or_else(|| anyhow!("no level {}", spec.level))?;
    let (discount, points_rate) = (stored.discount, stored.points_rate);
    let card = |i: usize| super::load::card_no(&spec.prefix, i);
    let existing: HashSet<String> =
        sb::cards_between(&c, &card(spec.from), &card(spec.from + spec.count))
            .await?
            .into_iter()
            .collect();
    drop(c);
    let ctx = Arc::new(Ctx {
        cfg: crate::store::ledger::ledger_config(&config.ledger, &config.business)?,
        level: Level {
            name: spec.level.clone(),
            discount,
            points_rate,
            limits: Default::default(),
        },
        offset: config.business.offset(),
        keys: secrets.row_keys,
        existing,
        spec,
    });
    let batches = ctx.spec.count.div_ceil(BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..WORKERS {
        let (ctx, pool, next, done) = (ctx.clone(), pool.clone(), next.clone(), done.clone());
        set.spawn(async move {
            let mut made = 0u64;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<_, anyhow::Error>(made);
                }
                let lo = ctx.spec.from + b * BATCH;
                let hi = (lo + BATCH).min(ctx.spec.from + ctx.spec.count);
                let todo: Vec<usize> = (lo..hi)
                    .filter(|&i| !ctx.existing.contains(&card_of(&ctx, i)))
                    .collect();
                if todo.is_empty() {
                    continue;
                }
                let mut c = pool.get().await?;
                let ids = sb::take_seed_ids(&c, todo.len()).await?;
                let ctx2 = ctx.clone();
                let n = todo.len();
                let rows = tokio::task::spawn_blocking(move || build(&ctx2, &todo, ids))
                    .await
                    .map_err(|e| anyhow!("seed task: {e}"))??;
                sb::insert_seed(&mut c, &rows).await?;
                made += n as u64;
                let total = done.fetch_add(n, Ordering::Relaxed) + n;
                if total / 100_000 != (total - n) / 100_000 {
                    super::say(format!("seeded {total} cards"));
                }
            }
        });
    }
    let mut cards = 0;
    while let Some(r) = set.join_next().await {
        cards += r??;
    }
    let checkpointed = if cards > 0 {
        super::say("seed: ANALYZE and CHECKPOINT");
        sb::settle_after_seed(&pool.get().await?).await?
    } else {
        false
    };
    Ok(SeedStats {
        cards,
        seconds: super::secs(t0.elapsed()),
        checkpointed,
    })
}

fn card_of(ctx: &Ctx, i: usize) -> String {
    super::load::card_no(&ctx.spec.prefix, i)
}

/// The rows of the cards `todo`, with ids `(members, txns, postings)`.
fn build(
    ctx: &Ctx,
    todo: &[usize],
    (members, txns, postings): (Vec<i64>, Vec<i64>, Vec<i64>),
) -> anyhow::Result<SeedRows> {
    let now = crate::ledger::lots::truncate_ms(Utc::now());
    let mut r = SeedRows::default();
    for (k, &i) in todo.iter().enumerate() {
        let ids = CardIds {
            member: members[k],
            txns: [txns[2 * k], txns[2 * k + 1]],
            postings: [postings[2 * k], postings[2 * k + 1]],
        };
        let card_no = card_of(ctx, i);
        let terminal = (ctx.spec.terminal)(i % ctx.spec.terminals.max(1));
        let member = NewMember {
            name: "Bench".into(),
            phone: "13800000000".into(),
            birthday: None,
            referrer: None,
        };
        let plans = decide(ctx, i, &card_no, ids.member, &member)?;
        let head = push_postings(&mut r, ctx, &plans, &terminal, &ids, now);
        let card = card_values(card_no, ids.member, &plans.top.cards[0], (head, now));
        push_card(&mut r, ctx, card, now);
        push_member(&mut r, ctx, ids.member, member);
    }
    Ok(r)
}

/// The ids one seeded card takes from the ledger's sequences.
struct CardIds {
    member: i64,
    /// The register's, then the topup's.
    txns: [i64; 2],
    postings: [i64; 2],
}

/// What the ledger decides for a seeded card.
struct Plans {
    register: Plan,
    top: Plan,
}

/// The ledger's own decisions for card `i`: its `register`, then the
/// `topup` of the start balance on the card that made.
fn decide(
    ctx: &Ctx,
    i: usize,
    card_no: &str,
    member_id: i64,
    member: &NewMember,
) -> anyhow::Result<Plans> {
    let s = &ctx.spec;
    let refused = |what: &str, e: crate::ledger::Refusal| {
        anyhow!("{what} {card_no}: errno {}", e.errno.code())
    };
    let register = decide_register(
        None,
        Some(&ctx.level),
        &RegisterReq {
            order_no: format!("{}sreg{i}", s.run_tag),
            card_no: card_no.to_owned(),
            member: member.clone(),
            level: ctx.level.name.clone(),
            pin_set: false,
            opening: None,
            points_expire_at: None,
        },
    )
    .map_err(|e| refused("register", e))?;
    let after = &register.cards[0];
    let state = CardState {
        card_no: card_no.to_owned(),
        member_id,
        status: CardStatus::Active,
        balance: after.new_balance,
        points: after.new_points,
        level: ctx.level.clone(),
        pin_fail_count: 0,
        has_pin: false,
        member_until: None,
        spent_today: crate::ledger::Money::ZERO,
        held: crate::ledger::Money::ZERO,
        active_holds: 0,
        visits: 0,
    };
    let top = decide_topup(
        &ctx.cfg,
        &state,
        &TopupReq {
            order_no: format!("{}stop{i}", s.run_tag),
            amount: s.start_balance,
        },
    )
    .map_err(|e| refused("topup", e))?;
    Ok(Plans { register, top })
}

/// Pushes the card's two postings; returns the MAC at the chain's head.
fn push_postings(
    r: &mut SeedRows,
    ctx: &Ctx,
    plans: &Plans,
    terminal: &str,
    ids: &CardIds,
    now: DateTime<Utc>,
) -> Option<Vec<u8>> {
    // The chain: the register's posting, then the topup's.
    let mut head: Option<Vec<u8>> = None;
    for (j, (plan, detail)) in [
        (&plans.register, "{}"),
        (&plans.top, r#"{"tender":"balance"}"#),
    ]
    .into_iter()
    .enumerate()
    {
        let pos = j as i64 + 1;
        let v = posting(ctx, plan, terminal, ids.txns[j], now, pos);
        let (mac, key) = ctx.keys.mac_with_id(&v.image(), head.as_deref());
        r.p_id.push(ids.postings[j]);
        r.p_txn.push(v.txn_id);
        r.p_card.push(v.card_no);
        r.p_terminal.push(v.terminal_id);
        r.p_order.push(v.order_no.unwrap_or_default());
        r.p_op.push(v.op);
        r.p_bdelta.push(v.balance_delta);
        r.p_pdelta.push(v.points_delta);
        r.p_balance.push(v.balance);
        r.p_points.push(v.points);
        r.p_amount.push(v.amount);
        r.p_discount.push(v.discount);
        r.p_charged.push(v.charged);
        r.p_day.push(business_day(now, &ctx.offset));
        r.p_at.push(now);
        r.p_detail.push(detail.into());
        r.p_mac.push(mac.clone());
        r.p_key.push(key);
        r.p_pos.push(pos);
        head = Some(mac);
    }
    head
}

/// The card as its last change left it, its chain ending at `head`, its
/// membership renewed (registered) at `at`.
fn card_values(
    card_no: String,
    member_id: i64,
    last: &CardChange,
    (head, at): (Option<Vec<u8>>, DateTime<Utc>),
) -> CardValues {
    CardValues {
        card_no,
        member_id,
        status: status_text(last.status.unwrap_or(CardStatus::Active)).into(),
        balance: last.new_balance.amount(),
        points: last.new_points,
        pin_hash: None,
        pin_salt: None,
        pin_fail_count: 0,
        chain_len: 2,
        last_mac: head,
        renewed_at_ms: Some(at.timestamp_millis()),
        spent: None,
        held: None,
        visits: None,
    }
}

/// Pushes the card, MACed and sealed.
fn push_card(r: &mut SeedRows, ctx: &Ctx, card: CardValues, now: DateTime<Utc>) {
    let img = card.image();
    let (mac, key) = ctx.keys.mac_with_id(&img, None);
    r.c_sealed.push(ctx.keys.seal(&img));
    r.c_mac.push(mac);
    r.c_key.push(key);
    r.c_no.push(card.card_no);
    r.c_member.push(card.member_id);
    r.c_status.push(card.status);
    r.c_balance.push(card.balance);
    r.c_points.push(card.points);
    r.c_at.push(now);
    r.c_last.push(card.last_mac.unwrap_or_default());
    r.c_len.push(card.chain_len);
}

/// Pushes the member, MACed.
fn push_member(r: &mut SeedRows, ctx: &Ctx, member_id: i64, member: NewMember) {
    let level = &ctx.spec.level;
    let img = member_image(member_id, &member.name, &member.phone, None, None, level);
    let (mac, key) = ctx.keys.mac_with_id(&img, None);
    r.m_id.push(member_id);
    r.m_name.push(member.name);
    r.m_phone.push(member.phone);
    r.m_level.push(level.clone());
    r.m_mac.push(mac);
    r.m_key.push(key);
}

/// The posting the ledger writes for a one-card plan (`Writes::posting`).
fn posting(
    ctx: &Ctx,
    plan: &Plan,
    terminal: &str,
    txn_id: i64,
    now: DateTime<Utc>,
    chain_pos: i64,
) -> PostingValues {
    let c = &plan.cards[0];
    let a = &plan.answer;
    PostingValues {
        card_no: c.card_no.clone(),
        txn_id,
        terminal_id: terminal.to_owned(),
        order_no: Some(a.order_no.clone()),
        op: plan.op.as_str().to_owned(),
        balance_delta: c.balance_delta,
        points_delta: c.points_delta,
        balance: c.new_balance.amount(),
        points: c.new_points,
        amount: a.amount.amount(),
        discount: a.discount.amount(),
        charged: a.charged.amount(),
        business_day: business_day(now, &ctx.offset).to_string(),
        posted_at_ms: now.timestamp_millis(),
        chain_pos: Some(chain_pos),
        visits_delta: None,
    }
}

/// The start balance as money (`"100000.00"`).
pub fn money(text: &str) -> anyhow::Result<Money> {
    let d: Decimal = text.parse()?;
    Money::new(d).map_err(|e| anyhow!("{text}: errno {}", e.code()))
}

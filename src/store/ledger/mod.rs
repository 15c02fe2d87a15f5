//! The ledger's SQL: runs one txn request inside the transaction `txn::run`
//! opened, applying the pure decisions of [`crate::ledger`].
//!
//! Three statements at most (and a posting's order lock ahead of its
//! claim), each prepared and cached per connection and shape (only the
//! sections the request needs), none in a loop; BEGIN goes with the first
//! and COMMIT with the write (`txn::TxnConn`), so a debit is two round
//! trips:
//!
//! 1. **claim and lock**: for a posting, its order number locked first
//!    (an advisory lock, [`sql::ORDER_LOCK_SQL`], sent just ahead of the
//!    claim: two identical requests racing, the second waits for the first
//!    and then sees its answer); then the once-only `ts` inserted; the order
//!    number found new, or its previous answer read; the operator read; the
//!    original of a reverse/refund locked; a card number about to be
//!    created serialised (advisory lock); the card rows locked `FOR UPDATE`
//!    in card-number order (so no two transactions can wait on each other's
//!    cards).
//! 2. **load**: the cards' live lots and chains, whether a new card number
//!    exists, the level of a register, ids for new lots and the posting, a
//!    history; folded into the claim when its snapshot is provably fresh,
//!    else a statement of its own in a fresh snapshot (see [`load`]).
//! 3. **write**: every row of the plan in one statement of CTEs fed by one
//!    JSON document, checking its own row counts — or, for a refusal, the
//!    PIN counters written. The `orders` row is written once, here, with
//!    its answer.
//!
//! Row MACs (issue 5): every card and posting row written here goes
//! through [`Writes`], and every card read through [`CardRow`]; a mismatch
//! is `Error::Tampered` (3001).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::crypto::keyed_hash::{verify_keyed_hash, DOMAIN_MANAGER_PIN};
use crate::error::{Error, Result};
use crate::ledger::answer_row::{mask_phone, money_text, ms, status_text};
use crate::ledger::request::{Body, OfficeReq, Operator, ReadOp, ReadReq, Request};
use crate::ledger::{
    authorize, check_read, decide_expire, expire_holds, BonusRule, CardChange, CardState,
    LedgerConfig, Lot, Money, OpKind, Original, Role, Standing, TerminalKind,
};
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::xml::{Row, Rows};
use crate::store::txn::{TxnConn, TxnContext, TxnEnv};

mod check;
mod claim;
mod find;
mod holds;
mod load;
mod office;
mod posting;
mod rows;
mod sql;
mod statement;
mod write_rows;
mod writes;

use claim::{Claim, Claimed};
use load::LoadArgs;
use posting::{decide_posting, plan_writes, Loaded};
use rows::{from_json, hex_bytes, money, CardRow, HistoryRow, OperatorRow, OrigRow};
use writes::{OperatorCount, Writes};

pub(crate) use claim::BatchClaim;
pub(crate) use writes::{RefusalWrites, WriteRows};

#[doc(hidden)]
pub use sql::{statement_shapes, StatementShape};

/// How a request's transaction ends when it commits. (An `Err` rolls it
/// back: nothing of it stays, not even its `ts`.)
pub(crate) enum Outcome {
    /// The op ran; its answer rows (a replay's stored row included).
    Answered(Rows),
    /// Refused: the `ts` is spent, and `writes` (a PIN
    /// counted) are applied before the commit.
    Refused {
        errno: Errno,
        writes: Box<RefusalWrites>,
    },
}

/// The ledger rules of the configuration.
pub fn ledger_config(
    s: &crate::config::LedgerSettings,
    b: &crate::config::BusinessConfig,
) -> Result<LedgerConfig> {
    let bonus_rules = s
        .bonus_rules
        .iter()
        .map(|r| {
            Ok(BonusRule {
                min_topup: Money::new(r.min_topup).map_err(|_| {
                    Error::internal("bonus rule min_topup must be an amount >= 0 in cents")
                })?,
                bonus: Money::new(r.bonus).map_err(|_| {
                    Error::internal("bonus rule bonus must be an amount >= 0 in cents")
                })?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LedgerConfig {
        bonus_rules,
        points_expiry_months: s.points_expiry_months,
        card_validity_days: b.card_validity_days,
    })
}

/// Runs one request (see the module doc): claim, check, load, expire,
/// then read or decide and write.
pub(crate) async fn execute(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Outcome> {
    let req = match Request::from_form(form) {
        Ok(r) => r,
        Err(errno) => return refused_before_work(tx, ctx, errno).await,
    };
    execute_request(tx, env, ctx, form, &req, None).await
}

/// The claims of a batch's txns, before each runs ([`claim::run_set`]):
/// each txn's claim row, or `None` for one that claims alone.
pub(crate) async fn claim_batch(
    tx: &TxnConn,
    items: &[BatchClaim<'_>],
) -> Result<Vec<Option<tokio_postgres::Row>>> {
    claim::run_set(tx, items).await
}

/// [`execute`] for a request already parsed from `form`; `batched`: its
/// claim row from [`claim_batch`].
pub(crate) async fn execute_request(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
    req: &Request,
    batched: Option<tokio_postgres::Row>,
) -> Result<Outcome> {
    let args = LoadArgs::of(req, ctx.now);
    let keys = (&*env.row_keys, &form.digest()[..]);
    let claimed = match claim::run(tx, ctx, req, &args, keys, batched).await? {
        Claim::Settled(outcome) => return Ok(outcome),
        Claim::Locked(c) => c,
    };
    check::claimed(&env.row_keys, ctx, req.operator.id(), &claimed)?;
    let mut refuse = RefusalWrites::default();
    // protocol.md §4: the terminal's kind before the operator.
    let kind = claimed
        .terminal
        .as_ref()
        .map_or(TerminalKind::Pos, |t| t.kind);
    if let Err(errno) = allowed_for(kind, &ctx.store_id, req) {
        return Ok(refuse.refused(errno));
    }
    // protocol.md §4: the operator before the operation.
    let (allowed, count) = check_operator(env, ctx, req, claimed.operator.as_ref())?;
    let operator_reset = count.as_ref().is_some_and(|c| c.reset);
    refuse.count_operator(count);
    if let Err(errno) = allowed {
        return Ok(refuse.refused(errno));
    }
    check::cards(&env.row_keys, claimed.cards.values())?;
    // The office ops read no locked card: nothing to load or expire.
    let then = match &req.body {
        Body::Office(o) => return office::run(tx, env, ctx, o).await,
        Body::Read(r) => Then::Read(r),
        Body::Posting(p) => Then::Post(p),
    };
    let Claimed {
        orig,
        cards,
        folded,
        ..
    } = *claimed;
    let orig = match original(req, orig)? {
        Ok(o) => o,
        Err(errno) => return Ok(refuse.refused(errno)),
    };
    let named = named_lots(orig.as_ref().map(|o| &o.1));
    let fetched = load::run(tx, &args, &named, folded, &cards).await?;
    check::fetched(&env.row_keys, &cards, &fetched)?;
    let holds = holds::Holds::load(tx, &env.row_keys, &cards).await?;
    let found = Found {
        rows: cards,
        fetched,
        holds,
        orig,
    };
    let x = expire(env, req, ctx, found, kind, form.digest())?;
    match then {
        Then::Read(r) => read(tx, ctx, &x, r, refuse).await,
        Then::Post(p) => post(tx, ctx, &x, p, refuse, operator_reset).await,
    }
}

/// What a card request does once its cards are loaded.
enum Then<'a> {
    Read(&'a ReadReq),
    Post(&'a crate::ledger::request::PostingReq),
}

/// Refused before any work (a value the ledger cannot hold): the `ts` is
/// used up all the same.
async fn refused_before_work(tx: &TxnConn, ctx: &TxnContext, errno: Errno) -> Result<Outcome> {
    if !crate::store::seen_ts::record(tx.in_txn().await?, &ctx.terminal, ctx.ts).await? {
        return Err(Errno::TsUsed.into());
    }
    Ok(RefusalWrites::default().refused(errno))
}

/// The original a `reverse`/`refund` names, decoded; 2007 when there is none.
fn original(
    req: &Request,
    orig: Option<OrigRow>,
) -> Result<std::result::Result<Option<(OrigRow, Original)>, Errno>> {
    match (req.original(""), orig) {
        (Some(_), None) => Ok(Err(Errno::OriginalNotFound)),
        (Some(_), Some(o)) => {
            let decoded = o.original()?;
            // An opening balance brought over is no order a till can undo.
            if decoded.op == OpKind::Import {
                return Ok(Err(Errno::OriginalNotFound));
            }
            Ok(Ok(Some((o, decoded))))
        }
        (None, _) => Ok(Ok(None)),
    }
}

/// A reverse needs the very lots its original created and took, spent or
/// not.
fn named_lots(original: Option<&Original>) -> Vec<i64> {
    original
        .iter()
        .flat_map(|o| &o.effects)
        .flat_map(|e| e.lots_created.iter().chain(&e.lots_taken))
        .map(|t| t.lot_id)
        .collect()
}

/// What a card request read under its locks, checked.
struct Found {
    rows: BTreeMap<String, CardRow>,
    fetched: load::Fetched,
    holds: holds::Holds,
    orig: Option<(OrigRow, Original)>,
}

/// Points and holds expired since each card was last used, posted first
/// so the decision and the answer see live points and holds only
/// (`member` and `history` read the card as it is).
fn expire<'a>(
    env: &'a TxnEnv,
    req: &'a Request,
    ctx: &TxnContext,
    found: Found,
    kind: TerminalKind,
    digest: [u8; 32],
) -> Result<Loaded<'a>> {
    let Found {
        rows,
        mut fetched,
        holds,
        orig,
    } = found;
    let now = crate::ledger::lots::truncate_ms(ctx.now);
    let cfg = ledger_config(&env.config.ledger, &env.config.business)?;
    let today = crate::ledger::business_day(now, &env.config.business.offset());
    let mut lots = std::mem::take(&mut fetched.lots);
    let mut states: BTreeMap<String, CardState> = BTreeMap::new();
    let mut expiries: Vec<CardChange> = Vec::new();
    let expires = !matches!(req.op(), OpKind::Member | OpKind::History);
    for (no, row) in &rows {
        let mut st = row.state(&cfg, today)?;
        let card_lots = lots.entry(no.clone()).or_default();
        if let Some(p) = expires
            .then(|| decide_expire("", &st, card_lots, now))
            .transpose()?
            .flatten()
        {
            for c in p.cards {
                take_from(card_lots, &c);
                st.points = c.new_points;
                expiries.push(c);
            }
        }
        if let Some(c) = expires
            .then(|| crate::ledger::decide_visits_expire(&st, card_lots, now))
            .transpose()?
            .flatten()
        {
            take_from(card_lots, &c);
            st.visits = c.new_visits;
            expiries.push(c);
        }
        let card_holds = holds.by_card.get(no).map_or(&[][..], Vec::as_slice);
        st.active_holds = u32::try_from(card_holds.len()).unwrap_or(u32::MAX);
        if expires {
            if let Some(c) = expire_holds(&st, card_holds, now, today)? {
                st.held = c.new_held;
                st.active_holds -= c.holds_expired.len() as u32;
                st.spent_today = Money::new((st.spent_today.amount() + c.day_spend).max(0.into()))
                    .map_err(|_| Error::internal("spending after an expiry"))?;
                expiries.push(c);
            }
        }
        states.insert(no.clone(), st);
    }
    Ok(Loaded {
        env,
        req,
        cfg,
        now,
        rows,
        states,
        lots,
        expiries,
        fetched,
        orig,
        kind,
        digest,
        holds,
    })
}

/// What a terminal's kind and store allow (protocol.md §6.1): an office
/// terminal reads and never posts; a till does not send the office ops; a
/// store's office terminal names no other store (a head office's store is
/// `*`). Each refusal is 2013.
fn allowed_for(
    kind: TerminalKind,
    own_store: &str,
    req: &Request,
) -> std::result::Result<(), Errno> {
    let named = match &req.body {
        Body::Office(OfficeReq::Settlement(s)) => s.store.as_deref(),
        Body::Office(OfficeReq::Liability { store }) => Some(store.as_str()),
        _ => None,
    };
    match (kind, &req.body) {
        (TerminalKind::Office, Body::Posting(_)) | (TerminalKind::Pos, Body::Office(_)) => {
            Err(Errno::NotForThisTerminal)
        }
        _ if named.is_some_and(|s| !crate::store::reports::in_scope(own_store, s)) => {
            Err(Errno::NotForThisTerminal)
        }
        _ => Ok(()),
    }
}

fn take_from(lots: &mut [Lot], c: &CardChange) {
    for t in &c.lots_taken {
        if let Some(l) = lots.iter_mut().find(|l| l.id == t.lot_id) {
            l.points_left -= t.points;
        }
    }
}

/// `query`, `member`, `history`: the card's rows, with the expiries and a
/// PIN counter reset the read caused written.
async fn read(
    tx: &TxnConn,
    ctx: &TxnContext,
    x: &Loaded<'_>,
    r: &ReadReq,
    refuse: RefusalWrites,
) -> Result<Outcome> {
    let (st, row) = match (x.card(&r.card), x.rows.get(&r.card)) {
        (Ok(st), Some(row)) => (st, row),
        _ => return Ok(refuse.refused(Errno::CardNotFound)),
    };
    let pin_reset = match check_read(st, x.pin_of(&r.card)?) {
        Ok(n) => n,
        Err(rf) => return refuse.refusal(rf, &x.rows, &x.env.row_keys),
    };
    let rows = read_rows(r.op, st, row, x)?;
    if x.kind == TerminalKind::Office {
        let detail = serde_json::json!({"op": x.req.op().as_str(), "card": r.card});
        audit_office_read(tx, x.env, ctx, detail).await?;
    }
    if pin_reset.is_some() || !x.expiries.is_empty() {
        let txn_id = x.fetched.txn_id.unwrap_or_default();
        let mut w = Writes::new(ctx, x.now, txn_id, x.env).with_lots(&x.fetched.lot_rows);
        posting::write_expiries(&mut w, x)?;
        w.fold_cards(&x.expiries, &x.rows, None)?;
        if let Some(n) = pin_reset {
            w.set_pin_count(st, &x.rows, n)?;
        }
        w.run(tx, 0, &x.env.row_keys).await?;
    }
    Ok(Outcome::Answered(Rows(rows)))
}

fn read_rows(op: ReadOp, st: &CardState, cr: &CardRow, x: &Loaded<'_>) -> Result<Vec<Row>> {
    Ok(match op {
        ReadOp::Query => {
            let mut r = Row::new()
                .with("card", &st.card_no)
                .with("balance", money_text(st.balance))
                .with("points", st.points.to_string())
                .with("level", &st.level.name)
                .with("status", status_text(st.status));
            if let Some(until) = st.member_until {
                r.push("expires_at", ms(until).to_string());
            }
            r.push("available", money_text(st.available()));
            r.push("holds", st.active_holds.to_string());
            vec![r]
        }
        ReadOp::Member => vec![Row::new()
            .with("card", &st.card_no)
            .with("name", &cr.name)
            .with("phone", phone_for(x.kind, &cr.phone))
            .with("level", &st.level.name)
            .with("birthday", cr.birthday.clone().unwrap_or_default())
            .with("status", status_text(st.status))
            .with("registered_at", cr.opened_at.to_string())],
        ReadOp::History { .. } => history_rows(x.fetched.history.clone().unwrap_or_default())?,
        ReadOp::Visits => crate::ledger::visits_by_service(x.lots_of(&st.card_no), x.now)
            .into_iter()
            .map(|v| {
                let mut r = Row::new()
                    .with("service", &v.service)
                    .with("visits", v.visits.to_string());
                if let Some(e) = v.next_expiry {
                    r.push("next_expiry", ms(e).to_string());
                }
                r
            })
            .collect(),
    })
}

/// Office terminals see phone numbers in full (protocol.md §6.1); tills
/// see all but the last four digits masked.
fn phone_for(kind: TerminalKind, phone: &str) -> String {
    match kind {
        TerminalKind::Office => phone.to_owned(),
        TerminalKind::Pos => mask_phone(phone),
    }
}

/// Every office read is on the audit trail (protocol.md §6.1): the
/// terminal and what it read (`detail`), in the read's own transaction.
pub(super) async fn audit_office_read(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    detail: serde_json::Value,
) -> Result<()> {
    crate::store::audit::insert(
        tx.in_txn().await?,
        &env.row_keys,
        crate::store::audit::AuditKind::OfficeRead,
        Some(&ctx.terminal),
        None,
        None,
        &detail,
    )
    .await
}

/// A posting: decide, then write the plan (the write carries the COMMIT).
async fn post(
    tx: &TxnConn,
    ctx: &TxnContext,
    x: &Loaded<'_>,
    p: &crate::ledger::request::PostingReq,
    refuse: RefusalWrites,
    operator_reset: bool,
) -> Result<Outcome> {
    let plan = match decide_posting(x, p)? {
        Ok(plan) => plan,
        Err(rf) => return refuse.refusal(rf, &x.rows, &x.env.row_keys),
    };
    let (w, row) = plan_writes(x, ctx, p, &plan, operator_reset)?;
    w.run(tx, 1, &x.env.row_keys).await?;
    Ok(Outcome::Answered(Rows(vec![row])))
}

fn history_rows(v: Value) -> Result<Vec<Row>> {
    let mut hs: Vec<HistoryRow> = from_json(v, "history")?;
    hs.sort_by_key(|h| std::cmp::Reverse((h.posted_at, h.posting_id)));
    hs.into_iter()
        .map(|h| {
            let mut r = Row::new();
            // The store's own expiry postings have no order number.
            if let Some(o) = h.order_no {
                r.push("order_no", o);
            }
            let mut r = r
                .with("op", h.op)
                .with("txn_id", h.txn_id.to_string())
                .with("card", h.card_no)
                .with("amount", money_text(money(&h.amount)?))
                .with("discount", money_text(money(&h.discount)?))
                .with("charged", money_text(money(&h.charged)?))
                .with("points_delta", h.points_delta.to_string())
                .with("balance", money_text(money(&h.balance)?))
                .with("points", h.points.to_string())
                .with("posted_at", h.posted_at.to_string())
                .with("terminal", h.terminal_id);
            if let Some(v) = h.visits_delta {
                r.push("visits_delta", v.to_string());
            }
            Ok(r)
        })
        .collect()
}

/// Checks the operator: absent is fine for a cashier op; unknown, disabled,
/// a cashier on an M op, or a wrong `mpin` is 2011. Also says what to write
/// of the manager's PIN counter: a wrong `mpin` counted (toward disabling
/// the manager), a right one resetting a run of wrong ones.
fn check_operator(
    env: &TxnEnv,
    ctx: &TxnContext,
    req: &Request,
    operator: Option<&OperatorRow>,
) -> Result<(std::result::Result<(), Errno>, Option<OperatorCount>)> {
    let op = req.op();
    if req.operator == Operator::Unnamed {
        // Only an op not marked M parses without an operator.
        return Ok((Ok(()), None));
    }
    let active = operator.filter(|o| o.status == Standing::Active);
    let role = active.map(|o| o.role);
    let (Operator::Manager { id, mpin }, Some(o), Some(Role::Manager)) =
        (&req.operator, active, role)
    else {
        return Ok((authorize(op, role, false), None));
    };
    let hash = hex_bytes(&o.pin_hash)?;
    let salt = hex_bytes(&o.pin_salt)?;
    let mpin_ok = match (hash, salt) {
        (Some(h), Some(s)) => verify_keyed_hash(
            &env.hash_key,
            DOMAIN_MANAGER_PIN,
            &s,
            mpin.expose().as_bytes(),
            &h,
        ),
        _ => false,
    };
    let count = (!mpin_ok || o.pin_fail_count > 0).then(|| OperatorCount {
        store_id: ctx.store_id.clone(),
        operator_id: id.clone(),
        reset: mpin_ok,
        disabled_mac: (!mpin_ok)
            .then(|| check::operator_disabled_mac(&env.row_keys, &ctx.store_id, id, o).ok())
            .flatten(),
    });
    Ok((authorize(op, role, mpin_ok), count))
}

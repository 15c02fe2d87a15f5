//! The ledger's SQL: runs one txn request inside the transaction `txn::run`
//! opened, applying the pure decisions of [`crate::ledger`].
//!
//! Three statements at most, each prepared and cached per connection and
//! shape (only the sections the request needs), none in a loop; BEGIN goes
//! with the first and COMMIT with the write (`txn::TxnConn`), so a debit is
//! two round trips:
//!
//! 1. **claim and lock**: the once-only `ts` inserted; for a posting, its
//!    `orders` row claimed (`INSERT … ON CONFLICT DO NOTHING` on the unique
//!    (terminal, order_no): two identical requests racing, the second waits
//!    for the first and then sees its answer); the previous answer of a used
//!    order_no read; the operator read; the original of a reverse/refund
//!    locked; a card number about to be created serialised (advisory lock);
//!    the card rows locked `FOR UPDATE` in card-number order (so no two
//!    transactions can wait on each other's cards).
//! 2. **load**: the cards' live lots and chains, whether a new card number
//!    exists, the level of a register, ids for new lots and the posting, a
//!    history; folded into the claim when its snapshot is provably fresh,
//!    else a statement of its own in a fresh snapshot (see [`load`]).
//! 3. **write**: every row of the plan in one statement of CTEs fed by one
//!    JSON document, checking its own row counts — or, for a refusal, the
//!    claim dropped and the PIN counters written.
//!
//! Row MACs (issue 5): every card and posting row written here goes
//! through [`Writes`], and every card read through [`CardRow`]; a mismatch
//! is `Error::Tampered` (3001).

use std::collections::BTreeMap;

use crate::store::txn::TxnConn;
use serde_json::Value;

use crate::crypto::keyed_hash::{verify_keyed_hash, DOMAIN_MANAGER_PIN};
use crate::error::{Error, Result};
use crate::ledger::request::{mask_phone, money_text, status_text, Request};
use crate::ledger::{
    authorize, check_read, decide_expire, BonusRule, CardChange, CardState, LedgerConfig, Lot,
    Money, OpKind, Pin, Role,
};
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::xml::{Row, Rows};
use crate::store::txn::{TxnContext, TxnEnv};

mod check;
mod load;
mod posting;
mod rows;
mod sql;
mod writes;

use posting::{decide_posting, plan_writes, Loaded};
use rows::*;
use sql::*;
use writes::{RefusalWrites, Writes};

/// The ledger rules of the configuration.
pub fn ledger_config(s: &crate::config::LedgerSettings) -> Result<LedgerConfig> {
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
    })
}

/// Runs one request; see the module doc.
pub async fn execute(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Rows> {
    let req = match Request::from_form(form) {
        Ok(r) => r,
        Err(e) => {
            // Refused before any work: the ts is used up all the same.
            if !crate::store::seen_ts::record(tx.in_txn().await?, &ctx.terminal, ctx.ts).await? {
                return Err(Errno::TsUsed.into());
            }
            return Err(e.into());
        }
    };
    let now = crate::ledger::lots::truncate_ms(ctx.now);
    let posting = req.op.is_posting();
    let digest = form.digest().to_vec();
    let orig_key = req.original(&ctx.terminal);
    let lock_cards = req.cards_to_lock();

    // 1. Claim and lock.
    let load_args = load::LoadArgs::of(&req);
    let mut shape = ClaimShape {
        order: req.order_no.is_some(),
        create: load_args.card_to_create.is_some(),
        orig: orig_key.is_some(),
        operator: req.operator.is_some(),
        cards: !lock_cards.is_empty() || orig_key.is_some(),
        fold: None,
    };
    shape.fold = load_args.fold(&shape);
    let no_lots: Vec<i64> = Vec::new();
    let stmt = tx
        .prepare_typed_cached(&claim_sql(shape), claim_types())
        .await?;
    let r = tx
        .query_one(
            &stmt,
            &[
                &ctx.terminal,
                &ctx.ts,
                &ctx.store_id,
                &req.operator,
                &req.order_no,
                &posting.then_some(digest.as_slice()),
                &req.op.as_str(),
                &lock_cards,
                &orig_key.map(|o| o.0),
                &orig_key.map(|o| o.1),
                &load_args.card_to_create,
                &load_args.wants_lots,
                &load_args.level,
                &load_args.want_txn,
                &load_args.hist_card,
                &load_args.limit,
                &no_lots,
                &load_args.register,
            ],
        )
        .await?;
    if r.get::<_, i64>("ts_ok") == 0 {
        return Err(Errno::TsUsed.into());
    }
    if posting && r.get::<_, i64>("claimed") == 0 {
        let mut prior: Option<(Vec<u8>, Option<Value>)> = r
            .get::<_, Option<Vec<u8>>>("prior_digest")
            .map(|d| (d, r.get("prior_answer")));
        if prior.is_none() {
            // The claim waited for a racing twin that committed after this
            // statement's snapshot: read its row now.
            let stmt = tx.prepare_cached(PRIOR_SQL).await?;
            prior = tx
                .query_opt(&stmt, &[&ctx.terminal, &req.order_no])
                .await?
                .map(|row| (row.get(0), row.get(1)));
        }
        return match prior {
            Some((d, Some(answer))) if d == digest => Ok(Rows(vec![replayed_row(answer)?])),
            Some(_) => Err(Errno::OrderReused.into()),
            None => Err(Error::internal("order claim failed but no order found")),
        };
    }
    let operator: Option<OperatorRow> = json_col_opt(&r, "operator", "operator row")?;
    let orig: Option<OrigRow> = json_col_opt(&r, "orig", "original row")?;
    let card_rows: Vec<CardRow> = json_col(&r, "cards", "card rows")?;
    let terminal: Option<check::TerminalRow> = json_col_opt(&r, "terminal", "terminal row")?;
    // Checked on use: the terminal, the cards and their members, before
    // anything is decided (issue 5).
    let ids = terminal
        .iter()
        .map(|t| t.mac_key_id.as_deref())
        .chain(operator.iter().map(|o| o.mac_key_id.as_deref()))
        .chain(card_rows.iter().map(|c| c.level_key_id.as_deref()))
        .chain(card_rows.iter().map(|c| c.mac_key_id.as_deref()))
        .chain(card_rows.iter().map(|c| c.member_key_id.as_deref()));
    check::learn_keys(tx, env, ids).await?;
    check::check_terminal(&env.row_keys, &ctx.terminal, terminal.as_ref())?;
    if let (Some(o), Some(id)) = (&operator, &req.operator) {
        check::check_operator_row(&env.row_keys, &ctx.store_id, id, o)?;
    }
    let mut refuse = RefusalWrites {
        order_no: req.order_no.clone(),
        keys: Some(env.row_keys.clone()),
        ..Default::default()
    };

    // Operator allowed (protocol.md §4: before the operation).
    let mut operator_reset = false;
    if let Err(e) = check_operator(env, ctx, &req, operator.as_ref(), &mut refuse) {
        return refuse.apply(tx, ctx, e).await;
    }
    if let Some(o) = &operator {
        operator_reset = req.op.is_manager_op() && o.pin_fail_count > 0;
    }

    let rows: BTreeMap<String, CardRow> = card_rows
        .into_iter()
        .map(|c| (c.card_no.clone(), c))
        .collect();
    check::check_cards(&env.row_keys, &rows)?;
    refuse.rows = rows.clone();
    let original = match (&orig_key, &orig) {
        (Some(_), None) => return refuse.apply(tx, ctx, Errno::OriginalNotFound).await,
        (Some(_), Some(o)) => Some(o.original()?),
        _ => None,
    };

    // 2. Load (see `load`).
    // A reverse needs the very lots its original created and took, spent
    // or not.
    let named_lots: Vec<i64> = original
        .iter()
        .flat_map(|o| &o.effects)
        .flat_map(|e| e.lots_created.iter().chain(&e.lots_taken))
        .map(|t| t.lot_id)
        .collect();
    let folded = shape.fold.is_some().then_some(r);
    let (l, chains) = load::run(tx, &load_args, &named_lots, folded, &rows).await?;
    let ids = chains
        .iter()
        .flat_map(|c| c.last.iter().flatten())
        .map(|p| p.mac_key_id.as_deref());
    check::learn_keys(tx, env, ids).await?;
    check::check_chains(&env.row_keys, &rows, &chains)?;
    let new_member_id: Option<i64> = l.get("member_id");
    let lot_rows: Vec<LotRow> = json_col(&l, "lots", "lots")?;
    let new_exists: bool = l.get("new_exists");
    let lot_ids: Vec<i64> = l.get("lot_ids");
    let level: Option<LevelRow> = json_col_opt(&l, "level", "level")?;
    if let Some(lv) = &level {
        let known = lv.mac_key_id.as_deref();
        check::learn_keys(tx, env, std::iter::once(known)).await?;
        check::check_level(
            &env.row_keys,
            &lv.level,
            &lv.discount,
            &lv.points_rate,
            &lv.row_mac,
            &lv.mac_key_id,
        )?;
    }
    let txn_id: Option<i64> = l.get("txn_id");
    let mut lots: BTreeMap<String, Vec<Lot>> = BTreeMap::new();
    for lr in lot_rows {
        lots.entry(lr.card_no).or_default().push(Lot {
            id: lr.id,
            points_left: lr.left,
            expires_at: lr.exp.map(at_ms).transpose()?,
        });
    }
    for v in lots.values_mut() {
        v.sort_by_key(|l| l.id);
    }

    // Hook for row MACs (issue 5): a card whose points disagree with its
    // lots was changed outside the ledger. 3001, nothing changed.
    for (no, row) in &rows {
        let in_lots: i64 = lots
            .get(no)
            .map_or(0, |v| v.iter().map(|l| l.points_left).sum());
        if in_lots != row.points {
            return Err(Error::Tampered(format!(
                "card {no}: points {} but its lots hold {in_lots}",
                row.points
            )));
        }
    }

    // Points expired since the card was last used: posted first, so the
    // decision and the answer see live points only.
    let mut states: BTreeMap<String, CardState> = BTreeMap::new();
    let mut expiries: Vec<CardChange> = Vec::new();
    for (no, row) in &rows {
        let mut st = row.state()?;
        let card_lots = lots.entry(no.clone()).or_default();
        if !matches!(req.op, OpKind::Member | OpKind::History) {
            if let Some(p) = decide_expire("", &st, card_lots, now)? {
                for c in p.cards {
                    for t in &c.lots_taken {
                        if let Some(l) = card_lots.iter_mut().find(|l| l.id == t.lot_id) {
                            l.points_left -= t.points;
                        }
                    }
                    st.points = c.new_points;
                    expiries.push(c);
                }
            }
        }
        states.insert(no.clone(), st);
    }

    let cfg = ledger_config(&env.config.ledger)?;
    let card = |no: &str| states.get(no).ok_or(Errno::CardNotFound);
    let order_no = req.order_no.clone().unwrap_or_default();
    let pin_of = |no: &str| -> Result<Pin> {
        match rows.get(no) {
            Some(r) => r.pin(env, req.pin.as_deref()),
            None => Ok(Pin::Absent),
        }
    };

    // Reads.
    if !posting {
        let st = match card(&req.attr1) {
            Ok(s) => s,
            Err(e) => return refuse.apply(tx, ctx, e).await,
        };
        let pin_reset = match check_read(st, pin_of(&req.attr1)?) {
            Ok(r) => r,
            Err(rf) => return refuse.refusal(tx, ctx, rf).await,
        };
        let cr = need(rows.get(&req.attr1))?;
        let rows_out = match req.op {
            OpKind::Query => vec![Row::new()
                .with("card", &st.card_no)
                .with("balance", money_text(st.balance))
                .with("points", st.points.to_string())
                .with("level", &st.level.name)
                .with("status", status_text(st.status))],
            OpKind::Member => vec![Row::new()
                .with("card", &st.card_no)
                .with("name", &cr.name)
                .with("phone", mask_phone(&cr.phone))
                .with("level", &st.level.name)
                .with("birthday", cr.birthday.clone().unwrap_or_default())
                .with("status", status_text(st.status))
                .with("registered_at", cr.opened_at.to_string())],
            _ => history_rows(l.get::<_, Value>("history"))?,
        };
        if pin_reset.is_some() || !expiries.is_empty() {
            let mut w = Writes::new(ctx, now, txn_id.unwrap_or_default(), env);
            let st = st.clone();
            for c in &expiries {
                w.posting(c, OpKind::Expire, None, None, &[]);
            }
            w.fold_cards(&expiries, &rows, None)?;
            if let Some(n) = pin_reset {
                w.set_pin_count(&st, &rows, n)?;
            }
            w.run(tx, 0, &env.row_keys).await?;
        }
        return Ok(Rows(rows_out));
    }

    // Postings: decide.
    let loaded = Loaded {
        env,
        req: &req,
        cfg: &cfg,
        now,
        rows: &rows,
        states: &states,
        lots: &lots,
        new_exists,
        level: level.as_ref(),
        original: original.as_ref(),
        order_no: &order_no,
        new_member_id,
    };
    let decision = decide_posting(&loaded)?;
    let plan = match decision {
        Ok(p) => p,
        Err(rf) => return refuse.refusal(tx, ctx, rf).await,
    };

    // 3. Write.
    let txn_id = txn_id.ok_or_else(|| Error::internal("no txn id for a posting"))?;
    let (w, row) = plan_writes(
        &loaded,
        ctx,
        txn_id,
        &plan,
        &expiries,
        lot_ids,
        orig.as_ref(),
        operator_reset,
    )?;
    w.run(tx, 1, &env.row_keys).await?;
    Ok(Rows(vec![row]))
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
            Ok(r.with("op", h.op)
                .with("txn_id", h.txn_id.to_string())
                .with("card", h.card_no)
                .with("amount", money_text(money(&h.amount)?))
                .with("discount", money_text(money(&h.discount)?))
                .with("charged", money_text(money(&h.charged)?))
                .with("points_delta", h.points_delta.to_string())
                .with("balance", money_text(money(&h.balance)?))
                .with("points", h.points.to_string())
                .with("posted_at", h.posted_at.to_string())
                .with("terminal", h.terminal_id))
        })
        .collect()
}

/// Checks the operator: absent is fine for a cashier op; unknown, disabled,
/// a cashier on an M op, or a wrong `mpin` is 2011 (a wrong `mpin` counts
/// toward disabling the manager).
fn check_operator(
    env: &TxnEnv,
    ctx: &TxnContext,
    req: &Request,
    operator: Option<&OperatorRow>,
    refuse: &mut RefusalWrites,
) -> std::result::Result<(), Errno> {
    if req.operator.is_none() && !req.op.is_manager_op() {
        return Ok(());
    }
    let active = operator.filter(|o| o.status == "active");
    let role = active.map(|o| {
        if o.role == "manager" {
            Role::Manager
        } else {
            Role::Cashier
        }
    });
    let mut mpin_ok = false;
    if let (Some(o), Some(Role::Manager), true) = (active, role, req.op.is_manager_op()) {
        let hash = hex_bytes(&o.pin_hash).ok().flatten();
        let salt = hex_bytes(&o.pin_salt).ok().flatten();
        mpin_ok = match (hash, salt, req.mpin.as_deref()) {
            (Some(h), Some(s), Some(p)) => {
                verify_keyed_hash(&env.hash_key, DOMAIN_MANAGER_PIN, &s, p.as_bytes(), &h)
            }
            _ => false,
        };
        let who = (
            ctx.store_id.clone(),
            req.operator.clone().unwrap_or_default(),
        );
        if !mpin_ok {
            refuse.operator_disabled_mac =
                check::operator_disabled_mac(&env.row_keys, &who.0, &who.1, o).ok();
            refuse.operator = Some((who.0, who.1, false));
        } else if o.pin_fail_count > 0 {
            // A right PIN ends the run of wrong ones even if the op is then
            // refused for another reason.
            refuse.operator = Some((who.0, who.1, true));
        }
    }
    authorize(req.op, role, mpin_ok)
}

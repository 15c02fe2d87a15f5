//! Step 1, the claim: the order number locked ([`ORDER_LOCK_SQL`], sent
//! just ahead), then one statement ([`claim_sql`]): the once-only `ts`
//! spent, the order number found new (or its earlier answer found), the
//! operator and the original read, a card number about to be created
//! serialised, and the cards locked in card-number order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::check::TerminalRow;
use super::load::LoadArgs;
use super::rows::{json_col, json_col_opt, replayed_row, CardRow, OperatorRow, OrigRow};
use super::sql::{
    claim_set_sql, claim_sql, claim_types, order_row_sql, ClaimShape, CLAIM_SET_TYPES,
    ORDER_LOCK_SQL,
};
use super::writes::RefusalWrites;
use super::Outcome;
use crate::error::{Error, Result};
use crate::integrity::RowKeys;
use crate::ledger::request::Request;
use crate::protocol::errno::Errno;
use crate::protocol::xml::Rows;
use crate::store::txn::{TxnConn, TxnContext};

/// What the claim found.
pub(super) enum Claim {
    /// The order number was used before: its answer again, or 2005.
    Settled(Outcome),
    /// The order is this request's and its rows are locked.
    Locked(Box<Claimed>),
}

/// The rows the claim read and locked, not yet checked.
pub(super) struct Claimed {
    pub(super) terminal: Option<TerminalRow>,
    pub(super) operator: Option<OperatorRow>,
    pub(super) orig: Option<OrigRow>,
    pub(super) cards: BTreeMap<String, CardRow>,
    /// The claim's row when it carries the folded load's columns.
    pub(super) folded: Option<tokio_postgres::Row>,
}

/// The claim of one txn; `batched`: its row from its batch's claim
/// ([`run_set`]), else its own statement's.
pub(super) async fn run(
    tx: &TxnConn,
    ctx: &TxnContext,
    req: &Request,
    args: &LoadArgs<'_>,
    (keys, digest): (&RowKeys, &[u8]),
    batched: Option<tokio_postgres::Row>,
) -> Result<Claim> {
    let shape = shape_of(req, &ctx.terminal, args);
    let in_batch = batched.is_some();
    let row = match batched {
        Some(row) => row,
        None => claim_row(tx, ctx, req, args, shape, digest).await?,
    };
    if row.get::<_, i64>("ts_ok") == 0 {
        return Err(Errno::TsUsed.into());
    }
    if req.order_no().is_some() && row.get::<_, i64>("claimed") == 0 {
        return Ok(Claim::Settled(settle(tx, ctx, req, keys, digest).await?));
    }
    let cards: Vec<CardRow> = if in_batch {
        CardRow::from_columns(&row)?.into_iter().collect()
    } else {
        json_col(&row, "cards", "card rows")?
    };
    Ok(Claim::Locked(Box::new(Claimed {
        terminal: json_col_opt(&row, "terminal", "terminal row")?,
        operator: json_col_opt(&row, "operator", "operator row")?,
        orig: json_col_opt(&row, "orig", "original row")?,
        cards: cards.into_iter().map(|c| (c.card_no.clone(), c)).collect(),
        folded: shape.fold.is_some().then_some(row),
    })))
}

/// Only the sections this request needs (each costs executor start-up).
fn shape_of(req: &Request, own_terminal: &str, args: &LoadArgs<'_>) -> ClaimShape {
    let orig = req.original(own_terminal).is_some();
    let mut shape = ClaimShape {
        order: req.order_no().is_some(),
        create: args.card_to_create.is_some(),
        orig,
        operator: req.operator.id().is_some(),
        cards: !req.cards_to_lock().is_empty() || orig,
        fold: None,
    };
    shape.fold = args.fold(&shape);
    shape
}

async fn claim_row(
    tx: &TxnConn,
    ctx: &TxnContext,
    req: &Request,
    args: &LoadArgs<'_>,
    shape: ClaimShape,
    digest: &[u8],
) -> Result<tokio_postgres::Row> {
    let digest = req.order_no().map(|_| digest);
    let orig = req.original(&ctx.terminal);
    let no_lots: Vec<i64> = Vec::new();
    let stmt = tx.prepare_kept(claim_sql(shape), claim_types()).await?;
    let (operator, order_no, op) = (req.operator.id(), req.order_no(), req.op().as_str());
    let (cards, orig_terminal, orig_order) =
        (req.cards_to_lock(), orig.map(|o| o.0), orig.map(|o| o.1));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &ctx.terminal,
        &ctx.ts,
        &ctx.store_id,
        &operator,
        &order_no,
        &digest,
        &op,
        &cards,
        &orig_terminal,
        &orig_order,
    ];
    // $11 on: the folded load's, the card to create first.
    params.extend(args.params(&no_lots));
    if order_no.is_none() {
        return tx.query_one(&stmt, &params).await;
    }
    let lock = tx.prepare_kept(Cow::Borrowed(ORDER_LOCK_SQL), &[]).await?;
    let (terminals, orders) = (vec![ctx.terminal.as_str()], vec![order_no]);
    let lock_params: [&(dyn ToSql + Sync); 2] = [&terminals, &orders];
    tx.query_one_after((&lock, &lock_params), &stmt, &params)
        .await
}

/// One txn of a batch, as its claim needs it.
pub(crate) struct BatchClaim<'a> {
    pub(crate) ctx: &'a TxnContext,
    pub(crate) req: &'a Request,
}

/// The claims of a batch's txns: one statement for all those of one shape
/// a batch claim can take ([`claim_set_sql`]), the statements pipelined.
/// Each txn's row, in `items`' order; `None` for a txn left to claim alone.
pub(super) async fn run_set(
    tx: &TxnConn,
    items: &[BatchClaim<'_>],
) -> Result<Vec<Option<tokio_postgres::Row>>> {
    let mut groups: Vec<(ClaimShape, std::borrow::Cow<'static, str>, Vec<usize>)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let args = LoadArgs::of(it.req, it.ctx.now);
        let shape = shape_of(it.req, &it.ctx.terminal, &args);
        if it.req.cards_to_lock().len() != 1 {
            continue;
        }
        match groups.iter_mut().find(|(s, _, _)| *s == shape) {
            Some((_, _, at)) => at.push(i),
            None => {
                if let Some(sql) = claim_set_sql(shape) {
                    groups.push((shape, sql, vec![i]));
                }
            }
        }
    }
    // Every statement prepared first, so that the order lock goes out
    // ahead of the claims and nothing between them.
    let lock = tx.prepare_kept(Cow::Borrowed(ORDER_LOCK_SQL), &[]).await?;
    let mut prepared = Vec::with_capacity(groups.len());
    for (_, sql, at) in groups {
        let stmt = tx.prepare_kept(sql, &CLAIM_SET_TYPES).await?;
        prepared.push((stmt, at));
    }
    let terminals: Vec<&str> = items.iter().map(|it| it.ctx.terminal.as_str()).collect();
    let orders: Vec<Option<&str>> = items.iter().map(|it| it.req.order_no()).collect();
    let locked = async {
        if orders.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        tx.query(&lock, &[&terminals, &orders]).await
    };
    let runs = prepared
        .iter()
        .map(|(stmt, at)| async move { (set_rows(tx, items, stmt, at).await, at) });
    let (locked, claimed) = tokio::join!(locked, futures_util::future::join_all(runs));
    locked?;
    let mut out: Vec<Option<tokio_postgres::Row>> = items.iter().map(|_| None).collect();
    for (rows, at) in claimed {
        for (row, &i) in rows?.into_iter().zip(at) {
            out[i] = Some(row);
        }
    }
    Ok(out)
}

/// One batch claim `stmt`: the txns `at` of `items`, all of its shape.
async fn set_rows(
    tx: &TxnConn,
    items: &[BatchClaim<'_>],
    stmt: &tokio_postgres::Statement,
    at: &[usize],
) -> Result<Vec<tokio_postgres::Row>> {
    let its: Vec<&BatchClaim<'_>> = at.iter().map(|&i| &items[i]).collect();
    let args: Vec<LoadArgs<'_>> = its
        .iter()
        .map(|it| LoadArgs::of(it.req, it.ctx.now))
        .collect();
    let col = |f: &dyn Fn(usize) -> Option<String>| (0..its.len()).map(f).collect::<Vec<_>>();
    let terminal = col(&|k| Some(its[k].ctx.terminal.clone()));
    let store = col(&|k| Some(its[k].ctx.store_id.clone()));
    let operator = col(&|k| its[k].req.operator.id().map(str::to_owned));
    let order_no = col(&|k| its[k].req.order_no().map(str::to_owned));
    let card = col(&|k| its[k].req.cards_to_lock().pop());
    let level = col(&|k| args[k].level.map(str::to_owned));
    let hist = col(&|k| args[k].hist_card.map(str::to_owned));
    let ts: Vec<i64> = its.iter().map(|it| it.ctx.ts).collect();
    let wants_lots: Vec<bool> = args.iter().map(|a| a.wants_lots).collect();
    let want_txn: Vec<bool> = args.iter().map(|a| a.want_txn).collect();
    let limit: Vec<i64> = args.iter().map(|a| a.limit).collect();
    let register: Vec<bool> = args.iter().map(|a| a.register).collect();
    let upto: Vec<Option<i64>> = args.iter().map(|a| a.lots_upto_ms).collect();
    let params: [&(dyn ToSql + Sync); 13] = [
        &terminal,
        &ts,
        &store,
        &operator,
        &order_no,
        &card,
        &wants_lots,
        &level,
        &want_txn,
        &hist,
        &limit,
        &register,
        &upto,
    ];
    let rows = tx.query(stmt, &params).await?;
    let in_order = rows.len() == at.len()
        && rows
            .iter()
            .enumerate()
            .all(|(k, r)| r.get::<_, i64>("i") == k as i64 + 1);
    if !in_order {
        return Err(Error::internal(
            "a batch claim's rows do not match its txns",
        ));
    }
    Ok(rows)
}

/// An order number used before: the same request gets the stored answer
/// (marked replayed), any other 2006. Nothing was claimed, so the refusal
/// writes nothing but the `ts`. What decides between the two, and what a
/// replay answers, must be what the ledger wrote (issue 12): the row's MAC
/// is checked first.
async fn settle(
    tx: &TxnConn,
    ctx: &TxnContext,
    req: &Request,
    keys: &RowKeys,
    digest: &[u8],
) -> Result<Outcome> {
    let order = order_row(tx, ctx, req)
        .await?
        .ok_or_else(|| Error::internal("order claim failed but no order found"))?;
    super::check::check_order(keys, &order)?;
    match (hex::decode(&order.digest), order.answer) {
        (Ok(d), Some(answer)) if d == digest => {
            Ok(Outcome::Answered(Rows(vec![replayed_row(answer)?])))
        }
        _ => Ok(RefusalWrites::default().refused(Errno::OrderReused)),
    }
}

/// The whole `orders` row of this request's order number.
async fn order_row(tx: &TxnConn, ctx: &TxnContext, req: &Request) -> Result<Option<OrigRow>> {
    let stmt = tx.prepare_cached(&order_row_sql()).await?;
    let Some(row) = tx
        .query_opt(&stmt, &[&ctx.terminal, &req.order_no()])
        .await?
    else {
        return Ok(None);
    };
    let json: Value = row.get(0);
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| Error::internal(format!("order row: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::request::Request;
    use crate::protocol::message::InnerForm;
    use crate::store::ledger::sql::LoadColumn;

    /// What each op's claim holds and which load columns it asks for: a
    /// change here changes the SQL that op runs, so it must be meant.
    #[test]
    fn each_op_claims_and_loads_what_it_needs() {
        let forms = [
            "op=query&attr1=CARD1",
            "op=member&attr1=CARD1",
            "op=history&attr1=CARD1&attr2=limit%3D5",
            "op=register&order_no=O1&attr1=CARD1&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd",
            "op=debit&amount=1&order_no=O1&attr1=CARD1",
            "op=debit&amount=1&order_no=O1&operator=c1&attr1=CARD1",
            "op=topup&amount=1&order_no=O1&attr1=CARD1",
            "op=points&order_no=O1&attr1=CARD1&attr2=delta%3D5%26reason%3Dfix",
            "op=redeem&order_no=O1&attr1=CARD1&attr2=cost%3D5%26gift%3Dmug",
            "op=reverse&order_no=O2&operator=m1&attr1=O1&attr2=mpin%3D1234",
            "op=refund&amount=1&order_no=O2&operator=m1&attr1=O1&attr2=mpin%3D1234",
            "op=transfer&amount=1&order_no=O1&operator=m1&attr1=CARD1&attr2=mpin%3D1234%26to%3DCARD2",
            "op=lock&order_no=O1&operator=m1&attr1=CARD1&attr2=mpin%3D1234",
            "op=replace&order_no=O1&operator=m1&attr1=CARD1&attr2=mpin%3D1234%26new%3DCARD2",
            "op=close&order_no=O1&operator=m1&attr1=CARD1&attr2=mpin%3D1234",
        ];
        let names = |m: crate::store::ledger::sql::LoadColumns| {
            LoadColumn::ALL
                .iter()
                .filter(|c| m.has(**c))
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut got = String::new();
        for f in forms {
            let req = Request::from_form(&InnerForm::parse(f.as_bytes()).unwrap()).unwrap();
            let args = LoadArgs::of(&req, chrono::Utc::now());
            let s = shape_of(&req, "T1", &args);
            let flags = [
                ("order", s.order),
                ("create", s.create),
                ("orig", s.orig),
                ("operator", s.operator),
                ("cards", s.cards),
            ];
            let claim: Vec<&str> = flags.iter().filter(|f| f.1).map(|f| f.0).collect();
            let load = match s.fold {
                Some(m) => format!("folded {}", names(m)),
                None => format!("load {}", names(args.mask(s.cards))),
            };
            got.push_str(&format!(
                "{}: claim {}; {load}\n",
                req.op().as_str(),
                claim.join(",")
            ));
        }
        let want = "\
query: claim cards; folded lots,txn_id,chains
member: claim cards; folded lots,chains
history: claim cards; folded lots,history,chains
register: claim order,create; load new_exists,level,txn_id,member_id
debit: claim order,cards; folded lots,lot_ids,txn_id,chains
debit: claim order,operator,cards; folded lots,lot_ids,txn_id,chains
topup: claim order,cards; folded lots,txn_id,chains
points: claim order,cards; folded lots,lot_ids,txn_id,chains
redeem: claim order,cards; folded lots,txn_id,chains
reverse: claim order,orig,operator,cards; load lots,txn_id,chains
refund: claim order,orig,operator,cards; load lots,txn_id,chains
transfer: claim order,operator,cards; folded lots,txn_id,chains
lock: claim order,operator,cards; folded lots,txn_id,chains
replace: claim order,create,operator,cards; load lots,new_exists,lot_ids,txn_id,chains
close: claim order,operator,cards; folded lots,txn_id,chains
";
        assert_eq!(got, want, "\n{got}");
    }
}

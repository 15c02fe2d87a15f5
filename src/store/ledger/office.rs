//! The back-office ops of protocol.md §6.1. None locks or changes a card;
//! each is written to the audit trail.

use super::{audit_office_read, find, statement, Outcome};
use crate::error::Result;
use crate::ledger::answer_row::signed_money_text;
use crate::ledger::request::{OfficeReq, SettlementReq};
use crate::protocol::xml::{Row, Rows};
use crate::store::reports::{self, SettlementLine};
use crate::store::txn::{TxnConn, TxnContext, TxnEnv};

pub(super) async fn run(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    o: &OfficeReq,
) -> Result<Outcome> {
    // A settlement or a liability sums a day's postings or a store's cards:
    // there a scan may be the plan (the ledger's transactions forbid them).
    tx.in_txn()
        .await?
        .batch_execute("SET LOCAL enable_seqscan = on")
        .await?;
    match o {
        OfficeReq::Find { key, limit } => find::run(tx, env, ctx, key, *limit).await,
        OfficeReq::Statement(s) => statement::run(tx, env, ctx, s).await,
        OfficeReq::Settlement(s) => settlement(tx, env, ctx, s).await,
        OfficeReq::Liability { store } => liability(tx, env, ctx, store).await,
    }
}

/// A replica connection for a read that locks nothing, while the replica
/// is within its bound (the answer's `as_of` says how current it is);
/// `None`: read in the request's own transaction on the primary.
async fn replica(env: &TxnEnv) -> Option<deadpool_postgres::Object> {
    match env.replica.as_ref()?.connection().await {
        Ok((conn, _lag)) => Some(conn),
        Err(why) => {
            tracing::debug!(why, "office read on the primary");
            None
        }
    }
}

async fn settlement(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    s: &SettlementReq,
) -> Result<Outcome> {
    let store = s.store.as_deref().unwrap_or(&ctx.store_id);
    let lines = match replica(env).await {
        Some(mut r) => {
            // Its own transaction, which its plan setting needs.
            let t = r.build_transaction().read_only(true).start().await?;
            let lines = reports::settlement(&t, s.day, store, s.by).await?;
            t.commit().await?;
            lines
        }
        None => reports::settlement(tx.in_txn().await?, s.day, store, s.by).await?,
    };
    let detail = serde_json::json!({"op": "settlement", "day": s.day.to_string(), "store": store});
    audit_office_read(tx, env, ctx, detail).await?;
    Ok(Outcome::Answered(Rows(
        lines.iter().map(settlement_row).collect(),
    )))
}

fn settlement_row(l: &SettlementLine) -> Row {
    let mut r = Row::new().with("store", &l.store);
    if let Some(t) = &l.terminal {
        r.push("terminal", t);
    }
    r.with("op", &l.op)
        .with("tender", &l.tender)
        .with("count", l.count.to_string())
        .with("amount", signed_money_text(l.amount))
        .with("discount", signed_money_text(l.discount))
        .with("charged", signed_money_text(l.charged))
        .with("cash", signed_money_text(l.cash))
        .with("balance_delta", signed_money_text(l.balance_delta))
        .with("points_delta", l.points_delta.to_string())
}

async fn liability(tx: &TxnConn, env: &TxnEnv, ctx: &TxnContext, store: &str) -> Result<Outcome> {
    let l = match replica(env).await {
        Some(r) => reports::liability(&r, store).await?,
        None => reports::liability(tx.in_txn().await?, store).await?,
    };
    let detail = serde_json::json!({"op": "liability", "store": store});
    audit_office_read(tx, env, ctx, detail).await?;
    let row = Row::new()
        .with("store", store)
        .with("cards", l.cards.to_string())
        .with("balance", signed_money_text(l.balance))
        .with("held", signed_money_text(l.held))
        .with("points", l.points.to_string())
        .with("as_of", l.as_of_ms.to_string());
    Ok(Outcome::Answered(Rows(vec![row])))
}

//! `find` (protocol.md §6.1): an office terminal looks members up by phone,
//! or by one of their cards, and gets every card of each, checked as any
//! card the ledger reads is. Nothing is locked: it changes nothing.

use super::check;
use super::rows::{json_col, CardRow};
use super::sql::find_sql;
use super::Outcome;
use crate::error::Result;
use crate::ledger::answer_row::{money_text, status_text};
use crate::protocol::xml::{Row, Rows};
use crate::store::txn::{TxnConn, TxnContext, TxnEnv};

pub(super) async fn run(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    key: &str,
    limit: u32,
) -> Result<Outcome> {
    let stmt = tx.prepare_cached(&find_sql()).await?;
    let row = tx.query_one(&stmt, &[&key, &i64::from(limit)]).await?;
    let found: Vec<CardRow> = json_col(&row, "cards", "found cards")?;
    check::known(&env.row_keys, found.iter().flat_map(CardRow::key_ids))?;
    check::cards(&env.row_keys, &found)?;
    let detail = serde_json::json!({"op": "find", "key": key, "cards": found.len()});
    super::audit_office_read(tx, env, ctx, detail).await?;
    let rows = found.iter().map(found_row).collect::<Result<Vec<_>>>()?;
    Ok(Outcome::Answered(Rows(rows)))
}

/// One card of a matching member; the phone in full (office terminals only
/// send `find`).
fn found_row(c: &CardRow) -> Result<Row> {
    Ok(Row::new()
        .with("member", c.member_id.to_string())
        .with("name", &c.name)
        .with("phone", &c.phone)
        .with("level", &c.level)
        .with("card", &c.card_no)
        .with("status", status_text(c.status))
        .with("balance", money_text(super::rows::money(&c.balance)?))
        .with("points", c.points.to_string())
        .with("registered_at", c.opened_at.to_string()))
}

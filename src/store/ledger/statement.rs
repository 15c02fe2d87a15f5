//! `statement` (protocol.md §6.1): one card's postings in posting order, a
//! page at a time.
//!
//! Paging is by position, not by time or by `txn_id`: a card's postings are
//! written under its row lock, so their `posting_id`s grow in commit order
//! and a posting committed while a client pages always lands after the
//! page it is reading. `txn_id`s do not (one is drawn before the lock), and
//! a txn may post twice to a card (its points expiry, then its op), so
//! `after` means "after the last posting of that txn on this card", and a
//! page never ends inside a txn. Each row's chained MAC is checked (3001),
//! its chain predecessor read for the first.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{audit_office_read, Outcome, RefusalWrites};
use crate::error::{Error, Result};
use crate::integrity::PostingValues;
use crate::ledger::answer_row::signed_money_text;
use crate::ledger::request::StatementReq;
use crate::protocol::errno::Errno;
use crate::protocol::xml::{Row, Rows};
use crate::store::protected::{posting_values, POSTING_COLUMNS};
use crate::store::txn::{TxnConn, TxnContext, TxnEnv};

/// A posting as the statement reads it: its MAC-covered values, its MAC,
/// and the request details beside them.
struct Line {
    values: PostingValues,
    posting_id: i64,
    row_mac: Option<Vec<u8>>,
    key_id: Option<String>,
    tender: Option<String>,
    cash: Decimal,
}

pub(super) async fn run(
    tx: &TxnConn,
    env: &TxnEnv,
    ctx: &TxnContext,
    s: &StatementReq,
) -> Result<Outcome> {
    let c = tx.in_txn().await?;
    let head = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM cards WHERE card_no = $1),
                    (SELECT max(posting_id) FROM postings WHERE card_no = $1 AND txn_id = $2)",
            &[&s.card, &s.after_txn_id],
        )
        .await?;
    if !head.get::<_, bool>(0) {
        return Ok(RefusalWrites::default().refused(Errno::CardNotFound));
    }
    let after_id: i64 = match (s.after_txn_id, head.get::<_, Option<i64>>(1)) {
        (None, _) => 0,
        (Some(_), Some(id)) => id,
        // `after` names no txn of this card: not a page this card has.
        (Some(_), None) => return Ok(RefusalWrites::default().refused(Errno::Malformed)),
    };
    let lines = page(c, s, after_id).await?;
    check_chain(c, env, &s.card, &lines).await?;
    let detail = serde_json::json!({"op": "statement", "card": s.card, "rows": lines.len()});
    audit_office_read(tx, env, ctx, detail).await?;
    Ok(Outcome::Answered(Rows(
        lines.iter().map(line_row).collect(),
    )))
}

/// Up to `limit` postings after position `after_id` in the time range,
/// and the rest of the last one's txn when `limit` cut through it.
async fn page(c: &tokio_postgres::Client, s: &StatementReq, after_id: i64) -> Result<Vec<Line>> {
    let ms = |v: Option<i64>| v.and_then(DateTime::<Utc>::from_timestamp_millis);
    let rows = c
        .query(
            &format!(
                "SELECT {POSTING_COLUMNS}, detail->>'tender', coalesce((detail->>'cash')::numeric, 0)
                   FROM postings
                  WHERE card_no = $1 AND posting_id > $2
                    AND posted_at >= coalesce($3::timestamptz, '-infinity')
                    AND posted_at < coalesce($4::timestamptz, 'infinity')
                  ORDER BY posting_id LIMIT $5"
            ),
            &[
                &s.card,
                &after_id,
                &ms(s.from_ms),
                &ms(s.to_ms),
                &(i64::from(s.limit) + 1),
            ],
        )
        .await?;
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|r| Line {
            values: posting_values(r),
            row_mac: r.get(14),
            key_id: r.get(15),
            posting_id: r.get(16),
            tender: r.get(19),
            cash: r.get(20),
        })
        .collect();
    let limit = s.limit as usize;
    if lines.len() > limit {
        let same_txn = lines[limit - 1].values.txn_id == lines[limit].values.txn_id;
        lines.truncate(if same_txn { limit + 1 } else { limit });
    }
    Ok(lines)
}

/// Each posting's MAC, chained on the one before it on the card.
async fn check_chain(
    c: &tokio_postgres::Client,
    env: &TxnEnv,
    card: &str,
    lines: &[Line],
) -> Result<()> {
    let Some(first) = lines.first() else {
        return Ok(());
    };
    super::check::known(&env.row_keys, lines.iter().map(|l| l.key_id.as_deref()))?;
    let prev: Option<Vec<u8>> = c
        .query_opt(
            "SELECT row_mac FROM postings WHERE card_no = $1 AND posting_id < $2
              ORDER BY posting_id DESC LIMIT 1",
            &[&card, &first.posting_id],
        )
        .await?
        .and_then(|r| r.get(0));
    let mut prev = prev;
    for l in lines {
        if !env.row_keys.verify(
            l.key_id.as_deref(),
            &l.values.image(),
            prev.as_deref(),
            l.row_mac.as_deref(),
        ) {
            return Err(Error::Tampered(format!(
                "postings {card}/{}: chained MAC does not match",
                l.values.txn_id
            )));
        }
        prev.clone_from(&l.row_mac);
    }
    Ok(())
}

fn line_row(l: &Line) -> Row {
    let v = &l.values;
    let mut r = Row::new()
        .with("txn_id", v.txn_id.to_string())
        .with("posted_at", v.posted_at_ms.to_string())
        .with("op", &v.op);
    // The store's own expiry postings have no order number.
    if let Some(o) = &v.order_no {
        r.push("order_no", o);
    }
    r = r
        .with("terminal", &v.terminal_id)
        .with("amount", signed_money_text(v.amount))
        .with("discount", signed_money_text(v.discount))
        .with("charged", signed_money_text(v.charged))
        .with("balance_delta", signed_money_text(v.balance_delta))
        .with("points_delta", v.points_delta.to_string())
        .with("balance", signed_money_text(v.balance))
        .with("points", v.points.to_string());
    if let Some(t) = &l.tender {
        r.push("tender", t);
    }
    r.push("cash", signed_money_text(l.cash));
    // Under the posting's MAC, so a count card's statement is checked too.
    if let Some(n) = v.visits_delta {
        r.push("visits_delta", n.to_string());
    }
    r
}

//! A locked card's active holds (protocol.md §6.2): their orders, read in a
//! statement of their own, after the locks, and only for a card that holds
//! money (most cards never do, and pay nothing for holds).
//!
//! Each order's MAC is checked, and together they must keep exactly what
//! the card says it holds (its `held`, under the card's MAC): an order
//! deleted, added or released by SQL is 3001.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::rows::{from_json, CardRow, OrigRow, ORDER_JSON_COLUMNS};
use crate::error::{Error, Result};
use crate::integrity::RowKeys;
use crate::ledger::answer_row::money_text;
use crate::ledger::{ActiveHold, HoldRef, OriginalUpdate, MAX_ACTIVE_HOLDS};
use crate::store::txn::TxnConn;
use rust_decimal::Decimal;

/// The active holds of the locked cards, as read and checked.
#[derive(Default)]
pub(super) struct Holds {
    pub(super) by_card: BTreeMap<String, Vec<ActiveHold>>,
    /// Their order rows, for the new MAC of a release.
    orders: BTreeMap<HoldRef, OrigRow>,
}

fn active_sql() -> String {
    format!(
        "SELECT coalesce(json_agg(row_to_json(h)), '[]'::json) FROM (
           SELECT {ORDER_JSON_COLUMNS} FROM orders o
            WHERE o.card_no = ANY ($1::text[]) AND o.op = 'hold' AND NOT o.reversed
            ORDER BY o.card_no, o.hold_expires_at LIMIT $2::bigint) h"
    )
}

impl Holds {
    /// The active holds of every locked card whose row says it holds money.
    pub(super) async fn load(
        tx: &TxnConn,
        keys: &RowKeys,
        cards: &BTreeMap<String, CardRow>,
    ) -> Result<Holds> {
        let mut holding = Vec::new();
        for (no, row) in cards {
            if row.held()?.is_some_and(|h| !h.is_zero()) {
                holding.push(no.clone());
            }
        }
        if holding.is_empty() {
            return Ok(Holds::default());
        }
        // One more than the cards may hold between them: a sign of rows
        // added by SQL, not a page to read on.
        let limit = holding.len() as i64 * i64::from(MAX_ACTIVE_HOLDS) + 1;
        let stmt = tx.prepare_cached(&active_sql()).await?;
        let r = tx.query_one(&stmt, &[&holding, &limit]).await?;
        let rows: Vec<OrigRow> = from_json(r.get(0), "holds")?;
        if rows.len() as i64 == limit {
            return Err(Error::Tampered(
                "orders: more active holds than allowed".into(),
            ));
        }
        let holds = Holds::decode(keys, rows)?;
        holds.check_sums(cards, &holding)?;
        Ok(holds)
    }

    fn decode(keys: &RowKeys, rows: Vec<OrigRow>) -> Result<Holds> {
        let mut holds = Holds::default();
        for o in rows {
            if !o.mac_ok(keys)? {
                let what = format!("orders {}/{}: mac", o.terminal, o.order_no);
                return Err(Error::Tampered(what));
            }
            let card = o.card_no.clone().unwrap_or_default();
            let original = o.original()?;
            let terms = original
                .hold
                .ok_or_else(|| Error::Tampered(format!("orders {}: hold terms", o.order_no)))?;
            let hold = HoldRef {
                terminal: o.terminal.clone(),
                order_no: o.order_no.clone(),
            };
            holds.by_card.entry(card).or_default().push(ActiveHold {
                hold: hold.clone(),
                amount: original.charged,
                business_day: original.business_day,
                expires_at: terms.expires_at,
            });
            holds.orders.insert(hold, o);
        }
        Ok(holds)
    }

    /// Each card's holds keep what its row says it holds.
    fn check_sums(&self, cards: &BTreeMap<String, CardRow>, holding: &[String]) -> Result<()> {
        for no in holding {
            let held = cards[no].held()?.unwrap_or_default();
            let sum: Decimal = self.by_card.get(no).map_or(Decimal::ZERO, |hs| {
                hs.iter().map(|h| h.amount.amount()).sum()
            });
            if sum != held {
                return Err(Error::Tampered(format!(
                    "cards {no}: held {held}, its holds {sum}"
                )));
            }
        }
        Ok(())
    }

    /// The order update that marks hold `h` released, with its new MAC.
    pub(super) fn release(&self, h: &HoldRef, keys: &RowKeys) -> Result<Value> {
        let o = self
            .orders
            .get(h)
            .ok_or_else(|| Error::internal("a hold released that was not loaded"))?;
        let u = OriginalUpdate {
            order_no: h.order_no.clone(),
            mark_reversed: true,
            refunded_add: crate::ledger::Money::ZERO,
            points_taken_back_add: 0,
        };
        order_update(o, &u, keys)
    }
}

/// An order's counters moved by a later posting, re-MACed (issue 12).
pub(super) fn order_update(o: &OrigRow, u: &OriginalUpdate, keys: &RowKeys) -> Result<Value> {
    let mut v = o.values()?;
    v.reversed |= u.mark_reversed;
    v.refunded += u.refunded_add.amount();
    v.points_taken_back += u.points_taken_back_add;
    let (mac, key_id) = keys.mac_with_id(&v.image(), None);
    Ok(json!({
        "terminal_id": o.terminal, "order_no": u.order_no,
        "reversed": u.mark_reversed, "refunded_add": money_text(u.refunded_add),
        "taken_add": u.points_taken_back_add,
        "row_mac": hex::encode(mac), "mac_key_id": key_id,
    }))
}

//! What a request writes: the plan's rows as one JSON document for the write
//! statement, or a refusal's counters.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Transaction;
use serde_json::{json, Value};

use super::rows::CardRow;
use super::sql::{REFUSE_SQL, WRITE_SQL};
use crate::error::{Error, Result};
use crate::ledger::request::{money_text, status_text};
use crate::ledger::{
    business_day, CardChange, CardState, CardStatus, LotTake, Money, OpKind, Plan, Refusal,
    PIN_TRIES,
};
use crate::protocol::errno::Errno;
use crate::protocol::xml::Rows;
use crate::store::txn::{TxnContext, TxnEnv};

/// What a refused request still writes: its order claim dropped, a wrong
/// card PIN counted (and the card locked at the 5th), a wrong manager PIN
/// counted (and the manager disabled at the 5th).
#[derive(Default)]
pub(super) struct RefusalWrites {
    pub(super) order_no: Option<String>,
    /// `(store, operator, reset)`: count a wrong PIN, or reset the count.
    pub(super) operator: Option<(String, String, bool)>,
    pub(super) card: Option<(String, u32, bool)>,
}

impl RefusalWrites {
    pub(super) async fn refusal(
        mut self,
        tx: &Transaction<'_>,
        ctx: &TxnContext,
        rf: Refusal,
    ) -> Result<Rows> {
        if let Some(p) = rf.pin_write {
            self.card = Some((p.card_no, p.pin_fail_count, p.lock));
        }
        self.apply(tx, ctx, rf.errno).await
    }

    pub(super) async fn apply(
        self,
        tx: &Transaction<'_>,
        ctx: &TxnContext,
        errno: Errno,
    ) -> Result<Rows> {
        if self.order_no.is_some() || self.operator.is_some() || self.card.is_some() {
            let stmt = tx.prepare_cached(REFUSE_SQL).await?;
            let (card, count, lock) = match &self.card {
                Some((c, n, l)) => (Some(c.as_str()), Some(*n as i32), *l),
                None => (None, None, false),
            };
            let (store, op, reset) = match &self.operator {
                Some((s, o, r)) => (Some(s.as_str()), Some(o.as_str()), *r),
                None => (None, None, false),
            };
            tx.query_one(
                &stmt,
                &[
                    &ctx.terminal,
                    &self.order_no,
                    &card,
                    &count,
                    &lock,
                    &store,
                    &op,
                    &(PIN_TRIES as i32),
                    &reset,
                ],
            )
            .await?;
        }
        Err(errno.into())
    }
}

/// The rows one posting writes, as the JSON document [`WRITE_SQL`] expands.
pub(super) struct Writes {
    pub(super) terminal: String,
    pub(super) now: DateTime<Utc>,
    pub(super) business_day: NaiveDate,
    pub(super) txn_id: i64,
    pub(super) members: Vec<Value>,
    pub(super) new_cards: Vec<Value>,
    pub(super) cards: Vec<Value>,
    pub(super) postings: Vec<Value>,
    pub(super) lot_moves: BTreeMap<(i64, String), i64>,
    pub(super) new_lots: Vec<Value>,
    pub(super) order: Option<Value>,
    pub(super) orig: Option<Value>,
    pub(super) operator_reset: Option<Value>,
}

impl Writes {
    pub(super) fn new(ctx: &TxnContext, now: DateTime<Utc>, txn_id: i64, env: &TxnEnv) -> Writes {
        Writes {
            terminal: ctx.terminal.clone(),
            now,
            business_day: business_day(now, &env.config.business.offset()),
            txn_id,
            members: vec![],
            new_cards: vec![],
            cards: vec![],
            postings: vec![],
            lot_moves: BTreeMap::new(),
            new_lots: vec![],
            order: None,
            orig: None,
            operator_reset: None,
        }
    }

    /// One postings row for a card change; its lot moves recorded.
    pub(super) fn posting(
        &mut self,
        c: &CardChange,
        op: OpKind,
        order_no: Option<&str>,
        plan: Option<&Plan>,
        created: &[i64],
    ) {
        let pairs = |v: &[LotTake]| -> Value {
            v.iter()
                .map(|t| json!([t.lot_id, t.points]))
                .collect::<Vec<_>>()
                .into()
        };
        let a = plan.map(|p| &p.answer);
        self.postings.push(json!({
            "txn_id": self.txn_id,
            "card_no": c.card_no,
            "terminal_id": self.terminal,
            "order_no": order_no,
            "op": op.as_str(),
            "balance_delta": c.balance_delta.to_string(),
            "points_delta": c.points_delta,
            "balance": money_text(c.new_balance),
            "points": c.new_points,
            "amount": money_text(a.map_or(Money::ZERO, |a| a.amount)),
            "discount": money_text(a.map_or(Money::ZERO, |a| a.discount)),
            "charged": money_text(a.map_or(Money::ZERO, |a| a.charged)),
            "business_day": self.business_day.to_string(),
            "posted_at": self.now.to_rfc3339(),
            "lots_created": created.iter().zip(&c.lots_created)
                .map(|(id, n)| json!([id, n.points])).collect::<Vec<_>>(),
            "lots_taken": pairs(&c.lots_taken),
            "lots_restored": pairs(&c.lots_restored),
            "detail": {},
        }));
        for t in &c.lots_taken {
            *self
                .lot_moves
                .entry((t.lot_id, c.card_no.clone()))
                .or_default() -= t.points;
        }
        for t in &c.lots_restored {
            *self
                .lot_moves
                .entry((t.lot_id, c.card_no.clone()))
                .or_default() += t.points;
        }
    }

    pub(super) fn posting_detail(&mut self, d: Value) {
        if let Some(p) = self.postings.last_mut() {
            p["detail"] = d;
        }
    }

    pub(super) fn new_lot(
        &mut self,
        card_no: &str,
        id: i64,
        points: i64,
        exp: Option<DateTime<Utc>>,
    ) {
        self.new_lots.push(json!({
            "lot_id": id, "card_no": card_no, "points": points,
            "expires_at": exp.map(|e| e.to_rfc3339()), "txn_id": self.txn_id,
            "at": self.now.to_rfc3339(),
        }));
    }

    /// One update per existing card with the final values of its changes in
    /// order, guarded by the values read under lock.
    pub(super) fn fold_cards(
        &mut self,
        changes: &[CardChange],
        rows: &BTreeMap<String, CardRow>,
        pin: Option<u32>,
    ) -> Result<()> {
        let mut finals: BTreeMap<&str, (Money, i64, CardStatus, u32)> = BTreeMap::new();
        for c in changes {
            let row = rows
                .get(&c.card_no)
                .ok_or_else(|| Error::internal("change of a card not locked"))?;
            let st = row.state()?;
            let e = finals.entry(c.card_no.as_str()).or_insert((
                st.balance,
                st.points,
                st.status,
                st.pin_fail_count,
            ));
            e.0 = c.new_balance;
            e.1 = c.new_points;
            if let Some(s) = c.status {
                e.2 = s;
            }
            if let Some(n) = c.pin_fail_count.or(pin) {
                e.3 = n;
            }
        }
        for (no, (b, p, s, n)) in finals {
            let row = &rows[no];
            self.cards.push(json!({
                "card_no": no,
                "old_balance": row.balance, "old_points": row.points,
                "balance": money_text(b), "points": p, "status": status_text(s),
                "pin_fail_count": n, "at": self.now.to_rfc3339(),
            }));
        }
        Ok(())
    }

    /// A read that clears a card's PIN counter.
    pub(super) fn set_pin_count(
        &mut self,
        st: &CardState,
        rows: &BTreeMap<String, CardRow>,
        n: u32,
    ) -> Result<()> {
        if let Some(c) = self
            .cards
            .iter_mut()
            .find(|c| c["card_no"] == st.card_no.as_str())
        {
            c["pin_fail_count"] = n.into();
            return Ok(());
        }
        let mut c = CardChange::unchanged(st);
        c.pin_fail_count = Some(n);
        self.fold_cards(&[c], rows, Some(n))
    }

    /// Writes it all in one statement; checks every row landed.
    pub(super) async fn run(self, tx: &Transaction<'_>, orders: i64) -> Result<()> {
        let lot_moves: Vec<Value> = self
            .lot_moves
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|((id, card), d)| json!({"lot_id": id, "card_no": card, "delta": d}))
            .collect();
        let doc = json!({
            "members": self.members,
            "new_cards": self.new_cards,
            "cards": self.cards,
            "postings": self.postings,
            "lot_moves": lot_moves,
            "new_lots": self.new_lots,
            "order": self.order.iter().collect::<Vec<_>>(),
            "orig": self.orig.iter().collect::<Vec<_>>(),
            "operator_reset": self.operator_reset.iter().collect::<Vec<_>>(),
        });
        let stmt = tx.prepare_cached(WRITE_SQL).await?;
        let r = tx.query_one(&stmt, &[&doc]).await?;
        let got: Vec<i64> = (0..9).map(|i| r.get::<_, i64>(i)).collect();
        let want = [
            self.members.len() as i64,
            self.new_cards.len() as i64,
            self.cards.len() as i64,
            self.postings.len() as i64,
            lot_moves.len() as i64,
            self.new_lots.len() as i64,
            orders,
            i64::from(self.orig.is_some()),
        ];
        if got[..8] != want {
            // A card row that changed under our lock, or a lot that is not
            // the card's: the rows disagree with what was read. Roll back.
            return Err(Error::internal(format!(
                "posting wrote {got:?}, expected {want:?}"
            )));
        }
        Ok(())
    }
}

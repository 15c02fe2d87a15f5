//! What a request writes: the plan's rows as one JSON document for the write
//! statement, or a refusal's counters.

use std::collections::BTreeMap;

use crate::store::txn::TxnConn;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::rows::{hex_bytes, hex_text, money, CardRow, LotRow};
use super::sql::{write_sql, WriteSection, WriteSections, REFUSE_SQL};
use super::write_rows::{
    pairs, place_blobs, Blob, CardWrite, Detail, EventBody, EventWrite, LotMoveWrite, NewLotWrite,
    OrderWrite, PostingWrite,
};
use crate::error::{Error, Result};
use crate::integrity::{lot_image, member_image, CardValues, OrderValues, PostingValues, RowKeys};
use crate::ledger::answer_row::status_text;
use crate::ledger::{
    business_day, CardChange, CardState, CardStatus, Money, OpKind, Plan, Refusal, PIN_TRIES,
};
use crate::protocol::errno::Errno;
use crate::store::txn::{TxnContext, TxnEnv};
use rust_decimal::Decimal;

use super::Outcome;

/// What a refused request still writes: a wrong card PIN counted (and the
/// card locked at the 5th), a wrong manager PIN counted (and the manager
/// disabled at the 5th). Its order number was never written (that is the
/// write's), so a refused order number may be used again. Applied by
/// `txn::run` before it commits the refusal with its `ts`.
#[derive(Default)]
pub(crate) struct RefusalWrites {
    operator: Option<OperatorCount>,
    card: Option<CardCount>,
}

/// A manager PIN tried: counted when wrong, the count reset when right.
pub(super) struct OperatorCount {
    pub(super) store_id: String,
    pub(super) operator_id: String,
    pub(super) reset: bool,
    /// The operator's MAC, its key id and its sealed copy should this wrong
    /// PIN disable it.
    pub(super) disabled_mac: Option<(Vec<u8>, String, Vec<u8>)>,
}

/// A card's PIN counter as the refusal leaves it, with the card re-MACed.
struct CardCount {
    card_no: String,
    pin_fail_count: u32,
    lock: bool,
    mac: Vec<u8>,
    key_id: String,
    sealed: Vec<u8>,
}

impl RefusalWrites {
    pub(super) fn count_operator(&mut self, c: Option<OperatorCount>) {
        self.operator = c;
    }

    pub(super) fn refused(self, errno: Errno) -> Outcome {
        Outcome::Refused {
            errno,
            writes: Box::new(self),
        }
    }

    /// A decision's refusal, with the PIN count it must still write.
    pub(super) fn refusal(
        mut self,
        rf: Refusal,
        rows: &BTreeMap<String, CardRow>,
        keys: &RowKeys,
    ) -> Result<Outcome> {
        if let Some(p) = rf.pin_write {
            let row = rows
                .get(&p.card_no)
                .ok_or_else(|| Error::internal("PIN count of a card not locked"))?;
            let mut v = row.values()?;
            v.pin_fail_count = i64::from(p.pin_fail_count);
            if p.lock {
                v.status = status_text(CardStatus::Locked).into();
            }
            let img = v.image();
            let (mac, key_id) = keys.mac_with_id(&img, None);
            self.card = Some(CardCount {
                card_no: p.card_no,
                pin_fail_count: p.pin_fail_count,
                lock: p.lock,
                mac,
                key_id,
                sealed: keys.seal(&img),
            });
        }
        Ok(self.refused(rf.errno))
    }

    pub(crate) async fn apply(self, tx: &TxnConn) -> Result<()> {
        if self.operator.is_none() && self.card.is_none() {
            return Ok(());
        }
        let stmt = tx.prepare_cached(REFUSE_SQL).await?;
        let card = self.card.as_ref();
        let op = self.operator.as_ref();
        let disabled = op.and_then(|o| o.disabled_mac.as_ref());
        tx.query_one(
            &stmt,
            &[
                &card.map(|c| c.card_no.as_str()),
                &card.map(|c| c.pin_fail_count as i32),
                &card.is_some_and(|c| c.lock),
                &op.map(|o| o.store_id.as_str()),
                &op.map(|o| o.operator_id.as_str()),
                &(PIN_TRIES as i32),
                &op.is_some_and(|o| o.reset),
                &card.map(|c| c.mac.as_slice()),
                &card.map(|c| c.key_id.as_str()),
                &card.map(|c| c.sealed.as_slice()),
                &disabled.map(|m| m.0.as_slice()),
                &disabled.map(|m| m.1.as_str()),
                &disabled.map(|m| m.2.as_slice()),
            ],
        )
        .await?;
        Ok(())
    }
}

/// The document [`write_sql`] expands: each section's rows, in jsonb's
/// key order (see [`super::write_rows`]).
#[derive(serde::Serialize)]
struct WriteDoc<'a> {
    orig: &'a [Value],
    cards: &'a [CardWrite],
    order: &'a [OrderWrite],
    events: &'a [EventWrite],
    members: &'a [Value],
    new_lots: &'a [NewLotWrite],
    postings: &'a [PostingWrite],
    lot_moves: &'a [LotMoveWrite],
    new_cards: &'a [CardWrite],
    operator_reset: &'a [Value],
}

/// The document as the statement's `jsonb` parameter, serialized into one
/// buffer and copied into the message once: `postgres_types::Json` wrote
/// straight into the message, one `BytesMut::put_slice` per token (some 950
/// a txn, 5 % of the daemon's instructions; issue 14).
impl postgres_types::ToSql for WriteDoc<'_> {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mut text = Vec::with_capacity(4096 * (1 + self.postings.len()));
        serde_json::to_writer(&mut text, self)?;
        if *ty == postgres_types::Type::JSONB {
            // jsonb's binary form: its version, then the text.
            bytes::BufMut::put_u8(out, 1);
        }
        bytes::BufMut::put_slice(out, &text);
        Ok(postgres_types::IsNull::No)
    }

    postgres_types::accepts!(JSON, JSONB);
    postgres_types::to_sql_checked!();
}

/// `ToSql` wants `Debug`: the rows' counts, never their values.
impl std::fmt::Debug for WriteDoc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteDoc")
            .field("cards", &self.cards.len())
            .field("postings", &self.postings.len())
            .finish_non_exhaustive()
    }
}

/// The rows one posting writes, as the JSON document [`write_sql`] expands.
pub(super) struct Writes {
    pub(super) terminal: String,
    pub(super) now: DateTime<Utc>,
    /// `now` as the statement reads a timestamp, made once.
    pub(super) now_text: String,
    /// The posting's business day as the rows carry it (`YYYY-MM-DD`),
    /// made once.
    pub(super) business_day: String,
    pub(super) txn_id: i64,
    pub(super) members: Vec<Value>,
    pub(super) new_cards: Vec<CardWrite>,
    pub(super) cards: Vec<CardWrite>,
    pub(super) postings: Vec<PostingWrite>,
    /// One per posting, in the same order (protocol.md §8); `card_seq` is
    /// filled in when the chain is sealed.
    pub(super) events: Vec<EventWrite>,
    store: String,
    pub(super) lot_moves: BTreeMap<(i64, String), i64>,
    /// Each loaded lot as read: what a move checks (its MAC) and what its
    /// new MAC is computed from (points left, expiry in Unix ms).
    pub(super) lot_states: BTreeMap<i64, LotRow>,
    pub(super) new_lots: Vec<NewLotWrite>,
    pub(super) order: Option<OrderWrite>,
    /// The orders a posting updates: the original of a reverse, refund,
    /// capture or void, and the holds an expiry releases.
    pub(super) orig: Vec<Value>,
    pub(super) operator_reset: Option<Value>,
}

/// A new member's row MAC and sealed copy, from its JSON row.
fn mac_member(m: &mut Value, keys: &RowKeys) -> Result<()> {
    let t = |n: &str| m[n].as_str().map(str::to_owned);
    let img = member_image(
        m["member_id"]
            .as_i64()
            .ok_or_else(|| Error::internal("member without id"))?,
        &t("name").unwrap_or_default(),
        &t("phone").unwrap_or_default(),
        t("birthday").as_deref(),
        t("referrer").as_deref(),
        &t("level").unwrap_or_default(),
    );
    let (mac, id) = keys.mac_with_id(&img, None);
    m["row_mac"] = hex_text(&mac).into();
    m["mac_key_id"] = id.into();
    m["sealed"] = hex_text(&keys.seal(&img)).into();
    Ok(())
}

/// A card's chain end: the last posting's MAC and the chain's length.
type ChainHead = (Option<Vec<u8>>, i64);

/// A new lot's MAC (issue 12): all its points left.
fn mac_new_lot(l: &mut NewLotWrite, keys: &RowKeys) {
    let img = lot_image(
        l.lot_id,
        &l.card_no,
        l.points,
        l.exp_ms,
        l.service.as_deref(),
    );
    let (mac, id) = keys.mac_with_id(&img, None);
    l.row_mac = Blob::new(mac);
    l.mac_key_id = id;
}

/// The order row's MAC (issue 12): nothing reversed or refunded yet.
fn mac_order(o: &mut OrderWrite, keys: &RowKeys) -> Result<()> {
    let v = OrderValues {
        terminal_id: o.terminal_id.clone(),
        order_no: o.order_no.clone(),
        digest: o.digest.bytes().to_vec(),
        op: o.op.to_owned(),
        card_no: o.card_no.clone(),
        cards: o.cards.clone(),
        txn_id: Some(o.txn_id),
        business_day: Some(o.business_day.clone()),
        posted_at_ms: Some(o.posted_at_ms),
        amount: o.amount,
        charged: o.charged,
        tender: o.tender.to_owned(),
        points_earned: o.points_earned,
        effects: Some(o.effects.get().to_owned()),
        answer: Some(o.answer.get().to_owned()),
        reversed: false,
        refunded: Decimal::ZERO,
        points_taken_back: 0,
        hold: match (o.hold_exp_ms, o.hold_discount, o.hold_points_rate) {
            (Some(at), Some(d), Some(r)) => Some((at, d, r)),
            _ => None,
        },
    };
    let (mac, id) = keys.mac_with_id(&v.image(), None);
    o.row_mac = Blob::new(mac);
    o.mac_key_id = id;
    Ok(())
}

/// A card's values after all of one request's changes to it.
struct CardFinal {
    balance: Money,
    points: i64,
    status: CardStatus,
    pin_fail_count: u32,
    renewed_ms: i64,
    /// The stored spending (day, amount) as it will be written.
    spent: Option<(String, Decimal)>,
    /// The held sum as it will be written: left as stored (`None` too)
    /// unless a change holds or releases money.
    held: Option<Decimal>,
    /// The visits as they will be written: as stored unless a change
    /// moves some.
    visits: Option<i64>,
}

impl CardFinal {
    /// The card's values as the load read them under lock.
    fn read(row: &CardRow) -> Result<CardFinal> {
        Ok(CardFinal {
            balance: money(&row.balance)?,
            points: row.points,
            status: row.status,
            pin_fail_count: u32::try_from(row.pin_fail_count).unwrap_or(0),
            renewed_ms: row.renewed_ms,
            spent: row.spent()?,
            held: row.held()?,
            visits: row.visits,
        })
    }
}

/// A written card's MAC and sealed copy, over its values and its chain's
/// new end.
fn seal_card(c: &mut CardWrite, last: Option<Vec<u8>>, len: i64, keys: &RowKeys) -> Result<()> {
    let v = CardValues {
        card_no: c.card_no.clone(),
        member_id: c.member_id,
        status: c.status.to_owned(),
        balance: c.balance,
        points: c.points,
        pin_hash: hex_bytes(&c.pin_hash)?,
        pin_salt: hex_bytes(&c.pin_salt)?,
        pin_fail_count: i64::from(c.pin_fail_count),
        chain_len: len,
        last_mac: last,
        renewed_at_ms: Some(c.renewed_at_ms),
        spent: c.spent_day.clone().zip(c.spent_today),
        held: c.held,
        visits: c.visits,
    };
    let img = v.image();
    c.last_mac = v.last_mac.map(Blob::new);
    c.chain_len = len;
    let (mac, id) = keys.mac_with_id(&img, None);
    c.row_mac = Blob::new(mac);
    c.mac_key_id = id;
    c.sealed = Blob::new(keys.seal(&img));
    Ok(())
}

impl Writes {
    pub(super) fn new(ctx: &TxnContext, now: DateTime<Utc>, txn_id: i64, env: &TxnEnv) -> Writes {
        Writes {
            terminal: ctx.terminal.clone(),
            now,
            now_text: now.to_rfc3339(),
            business_day: business_day(now, &env.config.business.offset()).to_string(),
            txn_id,
            members: vec![],
            new_cards: vec![],
            cards: vec![],
            postings: vec![],
            events: vec![],
            store: ctx.store_id.clone(),
            lot_moves: BTreeMap::new(),
            lot_states: BTreeMap::new(),
            new_lots: vec![],
            order: None,
            orig: vec![],
            operator_reset: None,
        }
    }

    /// The lots as the load read them, for the MACs of their moves.
    pub(super) fn with_lots(mut self, lots: &[LotRow]) -> Writes {
        self.lot_states = lots.iter().map(|l| (l.id, l.clone())).collect();
        self
    }

    /// One postings row for a card change, and its event; its lot moves
    /// recorded.
    pub(super) fn posting(
        &mut self,
        c: &CardChange,
        op: OpKind,
        order_no: Option<&str>,
        plan: Option<&Plan>,
        created: &[i64],
    ) {
        let (amount, discount, charged) =
            plan.map_or((Decimal::ZERO, Decimal::ZERO, Decimal::ZERO), |p| {
                let a = &p.answer;
                (a.amount.amount(), a.discount.amount(), a.charged.amount())
            });
        let visits_delta = (c.visits_delta != 0).then_some(c.visits_delta);
        self.postings.push(PostingWrite {
            txn_id: self.txn_id,
            card_no: c.card_no.clone(),
            terminal_id: self.terminal.clone(),
            order_no: order_no.map(str::to_owned),
            op: op.as_str(),
            balance_delta: c.balance_delta,
            points_delta: c.points_delta,
            balance: c.new_balance.amount(),
            points: c.new_points,
            amount,
            discount,
            charged,
            business_day: self.business_day.clone(),
            posted_at: self.now_text.clone(),
            lots_created: created
                .iter()
                .zip(&c.lots_created)
                .map(|(id, n)| [*id, n.points])
                .collect(),
            lots_taken: pairs(&c.lots_taken),
            lots_restored: pairs(&c.lots_restored),
            visits_delta,
            detail: Detail::default(),
            row_mac: Blob::default(),
            mac_key_id: String::new(),
            chain_pos: 0,
        });
        self.events.push(EventWrite {
            created_at: self.now_text.clone(),
            card_no: c.card_no.clone(),
            op: op.as_str(),
            store_id: self.store.clone(),
            body: EventBody {
                kind: "posting",
                op: op.as_str(),
                created_at: self.now.timestamp_millis(),
                store: self.store.clone(),
                terminal: self.terminal.clone(),
                order_no: order_no.map(str::to_owned),
                txn_id: self.txn_id.to_string(),
                card: c.card_no.clone(),
                amount,
                discount,
                charged,
                balance_delta: c.balance_delta,
                points_delta: c.points_delta,
                balance: c.new_balance.amount(),
                points: c.new_points,
                visits_delta,
                ..EventBody::default()
            },
        });
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

    /// The last posting's detail; its tender and cash are its event's too.
    pub(super) fn posting_detail(&mut self, d: Detail) {
        if let Some(e) = self.events.last_mut() {
            e.body.tender = d.tender.clone();
            e.body.cash = d.cash.clone();
        }
        if let Some(p) = self.postings.last_mut() {
            p.detail = d;
        }
    }

    /// The last posting's event, for the op's own fields (`to_card`,
    /// `new_card`, `status`, …; protocol.md §8).
    pub(super) fn last_event(&mut self) -> Option<&mut EventBody> {
        self.events.last_mut().map(|e| &mut e.body)
    }

    pub(super) fn new_lot(&mut self, card_no: &str, id: i64, lot: &crate::ledger::NewLot) {
        let exp = lot.expires_at;
        self.new_lots.push(NewLotWrite {
            lot_id: id,
            card_no: card_no.to_owned(),
            points: lot.points,
            service: lot.service.clone(),
            expires_at: exp.map(|e| e.to_rfc3339()),
            txn_id: self.txn_id,
            at: self.now_text.clone(),
            exp_ms: exp.map(|e| e.timestamp_millis()),
            row_mac: Blob::default(),
            mac_key_id: String::new(),
        });
    }

    /// One update per existing card with the final values of its changes in
    /// order, guarded by the values read under lock.
    pub(super) fn fold_cards(
        &mut self,
        changes: &[CardChange],
        rows: &BTreeMap<String, CardRow>,
        pin: Option<u32>,
    ) -> Result<()> {
        let mut finals: BTreeMap<&str, CardFinal> = BTreeMap::new();
        for c in changes {
            let row = rows
                .get(&c.card_no)
                .ok_or_else(|| Error::internal("change of a card not locked"))?;
            let e = match finals.entry(c.card_no.as_str()) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(CardFinal::read(row)?),
            };
            self.fold_change(e, c, pin);
        }
        for (no, f) in finals {
            let row = &rows[no];
            self.cards.push(CardWrite {
                card_no: no.to_owned(),
                old_balance: Some(row.balance.clone()),
                old_points: Some(row.points),
                balance: f.balance.amount(),
                points: f.points,
                status: status_text(f.status),
                pin_fail_count: f.pin_fail_count,
                at: self.now_text.clone(),
                // A card from before migration 0019 gets its renewal stored.
                renewed_at_ms: f.renewed_ms,
                spent_day: f.spent.as_ref().map(|s| s.0.clone()),
                spent_today: f.spent.as_ref().map(|s| s.1),
                held: f.held,
                visits: f.visits,
                store_id: None,
                member_id: row.member_id,
                pin_hash: row.pin_hash.clone(),
                pin_salt: row.pin_salt.clone(),
                last_mac: hex_bytes(&row.last_mac)?.map(Blob::new),
                chain_len: row.chain_len,
                row_mac: Blob::default(),
                mac_key_id: String::new(),
                sealed: Blob::default(),
            });
        }
        Ok(())
    }

    /// One change folded into its card's final values.
    fn fold_change(&self, e: &mut CardFinal, c: &CardChange, pin: Option<u32>) {
        e.balance = c.new_balance;
        e.points = c.new_points;
        if let Some(s) = c.status {
            e.status = s;
        }
        if let Some(n) = c.pin_fail_count.or(pin) {
            e.pin_fail_count = n;
        }
        if !c.held_delta.is_zero() {
            e.held = Some(c.new_held.amount());
        }
        if c.visits_delta != 0 {
            e.visits = Some(c.new_visits);
        }
        if c.renews_membership {
            e.renewed_ms = self.now.timestamp_millis();
        }
        if !c.day_spend.is_zero() {
            // Today's count, from nothing on a new day; a reverse never
            // takes it below zero.
            let base = match &e.spent {
                Some((day, amount)) if *day == self.business_day => *amount,
                _ => Decimal::ZERO,
            };
            e.spent = Some((
                self.business_day.clone(),
                (base + c.day_spend).max(Decimal::ZERO),
            ));
        }
    }

    /// A read that clears a card's PIN counter.
    pub(super) fn set_pin_count(
        &mut self,
        st: &CardState,
        rows: &BTreeMap<String, CardRow>,
        n: u32,
    ) -> Result<()> {
        if let Some(c) = self.cards.iter_mut().find(|c| c.card_no == st.card_no) {
            c.pin_fail_count = n;
            return Ok(());
        }
        let mut c = CardChange::unchanged(st);
        c.pin_fail_count = Some(n);
        self.fold_cards(&[c], rows, Some(n))
    }

    /// The MACs and sealed copies of every row written: each posting chained
    /// to the one before it on its card (in the order they are inserted,
    /// which is the order of their ids), each card keeping the last.
    fn seal(&mut self, keys: &RowKeys) -> Result<()> {
        let mut heads = self.chain_heads()?;
        for (p, e) in self.postings.iter_mut().zip(self.events.iter_mut()) {
            let head = heads
                .get_mut(&p.card_no)
                .ok_or_else(|| Error::internal("a posting of a card not written"))?;
            let pos = head.1 + 1;
            let v = PostingValues {
                card_no: p.card_no.clone(),
                txn_id: p.txn_id,
                terminal_id: p.terminal_id.clone(),
                order_no: p.order_no.clone(),
                op: p.op.to_owned(),
                balance_delta: p.balance_delta,
                points_delta: p.points_delta,
                balance: p.balance,
                points: p.points,
                amount: p.amount,
                discount: p.discount,
                charged: p.charged,
                business_day: p.business_day.clone(),
                posted_at_ms: self.now.timestamp_millis(),
                chain_pos: Some(pos),
                visits_delta: p.visits_delta,
            };
            let (mac, id) = keys.mac_with_id(&v.image(), head.0.as_deref());
            p.row_mac = Blob::new(mac.clone());
            p.mac_key_id = id;
            p.chain_pos = pos;
            *head = (Some(mac), pos);
            e.body.card_seq = pos;
        }
        for c in self.cards.iter_mut().chain(self.new_cards.iter_mut()) {
            let (last, len) = heads.remove(&c.card_no).unwrap_or((None, 0));
            seal_card(c, last, len, keys)?;
        }
        for m in &mut self.members {
            mac_member(m, keys)?;
        }
        if let Some(o) = &mut self.order {
            mac_order(o, keys)?;
        }
        for l in &mut self.new_lots {
            mac_new_lot(l, keys);
        }
        Ok(())
    }

    /// The lot moves as the statement applies them, each with the lot's
    /// new MAC (its points left as read plus the move). Each moved lot's
    /// MAC is checked first (issue 12): the lots a posting spends, expires
    /// or restores are the ones whose points and expiry decide it. (Checking
    /// every live lot on every load would cost an HMAC per lot a card ever
    /// earned and still holds; `verify` checks them all.)
    fn lot_move_rows(&self, keys: &RowKeys) -> Result<Vec<LotMoveWrite>> {
        let mut out = Vec::new();
        for ((id, card), d) in self.lot_moves.iter().filter(|(_, d)| **d != 0) {
            let lot = self
                .lot_states
                .get(id)
                .ok_or_else(|| Error::internal("a lot moved that was not loaded"))?;
            if !lot.mac_ok(keys) || lot.card_no != *card {
                return Err(Error::Tampered(format!("lots {id}: mac")));
            }
            let img = lot_image(*id, card, lot.left + d, lot.exp, lot.service.as_deref());
            let (mac, key_id) = keys.mac_with_id(&img, None);
            out.push(LotMoveWrite {
                lot_id: *id,
                card_no: card.clone(),
                delta: *d,
                row_mac: Blob::new(mac),
                mac_key_id: key_id,
            });
        }
        Ok(out)
    }

    /// Each written card's chain end as it is before this posting: its last
    /// MAC and length (a new card's chain is empty).
    fn chain_heads(&self) -> Result<BTreeMap<String, ChainHead>> {
        let mut heads = BTreeMap::new();
        for c in &self.cards {
            let last = c.last_mac.as_ref().map(|b| b.bytes().to_vec());
            heads.insert(c.card_no.clone(), (last, c.chain_len));
        }
        for c in &self.new_cards {
            heads.insert(c.card_no.clone(), (None, 0));
        }
        Ok(heads)
    }

    /// Writes it all in the transaction's last statement, which commits it
    /// (in a batch, the rows join the batch's one write, [`WriteRows`]).
    pub(super) async fn run(mut self, tx: &TxnConn, orders: i64, keys: &RowKeys) -> Result<()> {
        self.seal(keys)?;
        let rows = WriteRows {
            lot_moves: self.lot_move_rows(keys)?,
            members: self.members,
            new_cards: self.new_cards,
            cards: self.cards,
            postings: self.postings,
            events: self.events,
            new_lots: self.new_lots,
            order: self.order.into_iter().collect(),
            orig: self.orig,
            operator_reset: self.operator_reset.into_iter().collect(),
            orders,
        };
        match tx.batch_writes() {
            Some(batch) => {
                batch
                    .lock()
                    .map_err(|_| Error::internal("a batch's writes were poisoned"))?
                    .append(rows);
                Ok(())
            }
            None => rows.execute(tx).await,
        }
    }
}

/// Every row of one write statement, sealed: one txn's, or (group commit,
/// issue 14) a batch's, appended txn by txn. The txns of a batch write
/// disjoint cards, lots and orders, so their rows go in one statement as
/// they would in several, each card's postings still in their order.
#[derive(Default)]
pub(crate) struct WriteRows {
    members: Vec<Value>,
    new_cards: Vec<CardWrite>,
    cards: Vec<CardWrite>,
    postings: Vec<PostingWrite>,
    events: Vec<EventWrite>,
    lot_moves: Vec<LotMoveWrite>,
    new_lots: Vec<NewLotWrite>,
    order: Vec<OrderWrite>,
    orig: Vec<Value>,
    operator_reset: Vec<Value>,
    /// Order rows the statement must find answered.
    orders: i64,
}

impl WriteRows {
    fn append(&mut self, mut more: WriteRows) {
        self.members.append(&mut more.members);
        self.new_cards.append(&mut more.new_cards);
        self.cards.append(&mut more.cards);
        self.postings.append(&mut more.postings);
        self.events.append(&mut more.events);
        self.lot_moves.append(&mut more.lot_moves);
        self.new_lots.append(&mut more.new_lots);
        self.order.append(&mut more.order);
        self.orig.append(&mut more.orig);
        self.operator_reset.append(&mut more.operator_reset);
        self.orders += more.orders;
    }

    fn rows(&self, section: WriteSection) -> usize {
        match section {
            WriteSection::Members => self.members.len(),
            WriteSection::NewCards => self.new_cards.len(),
            WriteSection::Cards => self.cards.len(),
            WriteSection::Postings => self.postings.len(),
            WriteSection::Events => self.events.len(),
            WriteSection::LotMoves => self.lot_moves.len(),
            WriteSection::NewLots => self.new_lots.len(),
            WriteSection::Order => self.order.len(),
            WriteSection::Orig => self.orig.len(),
            WriteSection::OperatorReset => self.operator_reset.len(),
        }
    }

    /// The one statement (its COMMIT with it, outside a batch).
    pub(crate) async fn execute(mut self, tx: &TxnConn) -> Result<()> {
        let sections = WriteSection::ALL
            .iter()
            .fold(WriteSections::default(), |m, &s| {
                m.with(s, self.rows(s) > 0)
            });
        if sections == WriteSections::default() && self.orders == 0 {
            return Ok(());
        }
        // Each section's rows, as the statement must find them written.
        let want: Vec<i64> = WriteSection::ALL
            .iter()
            .filter(|s| s.counted())
            .map(|&s| match s {
                WriteSection::Order => self.orders,
                s => self.rows(s) as i64,
            })
            .collect();
        let blobs = self.place_blobs();
        // Borrowed and serialized once, for the parameter itself: `json!`
        // copied every row into a second tree first (issue 14).
        let doc = WriteDoc {
            members: &self.members,
            new_cards: &self.new_cards,
            cards: &self.cards,
            postings: &self.postings,
            events: &self.events,
            lot_moves: &self.lot_moves,
            new_lots: &self.new_lots,
            order: &self.order,
            orig: &self.orig,
            operator_reset: &self.operator_reset,
        };
        // A card row that changed under our lock, or a lot that is not the
        // card's, lands fewer rows: the statement raises, and nothing of
        // the request stays.
        let stmt = tx.prepare_kept(write_sql(sections), &[]).await?;
        tx.query_one_and_commit(&stmt, &[&doc, &want, &blobs])
            .await?;
        Ok(())
    }

    /// Every row's MACs, sealed copies and digests, in one array.
    fn place_blobs(&mut self) -> Vec<Vec<u8>> {
        let cards = self.cards.iter_mut().chain(self.new_cards.iter_mut());
        let cards = cards.flat_map(|c| {
            [
                Some(&mut c.row_mac),
                Some(&mut c.sealed),
                c.last_mac.as_mut(),
            ]
            .into_iter()
            .flatten()
        });
        let orders = self
            .order
            .iter_mut()
            .flat_map(|o| [&mut o.row_mac, &mut o.digest]);
        place_blobs(
            cards
                .chain(self.postings.iter_mut().map(|p| &mut p.row_mac))
                .chain(self.lot_moves.iter_mut().map(|l| &mut l.row_mac))
                .chain(self.new_lots.iter_mut().map(|l| &mut l.row_mac))
                .chain(orders),
        )
    }
}

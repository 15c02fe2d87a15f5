//! The check on use (issue 5): before a request changes anything, the MACs
//! of the rows it relies on, computed in Rust over the rows the claim and
//! load statements already returned (no extra round trip). A mismatch is
//! `Error::Tampered` (3001): the transaction rolls back, and `txn::run`
//! audits and logs it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::claim::Claimed;
use super::load::Fetched;
use super::rows::{dec, hex_bytes, CardRow};
use crate::error::{Error, Result};
use crate::integrity::{member_image, terminal_image, CardValues, PostingValues, RowKeys};
use crate::ledger::answer_row::status_text;
use crate::ledger::{Lot, Standing, TerminalKind};
use crate::store::protected::{self, Protected};
use crate::store::txn::TxnContext;

#[derive(Deserialize)]
pub(super) struct TerminalRow {
    pub(super) store_id: String,
    pub(super) kind: TerminalKind,
    pub(super) status: Standing,
    pub(super) pw_hash: Option<String>,
    pub(super) pw_salt: Option<String>,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
}

/// A card's last posting, the MAC of the one before it (hex) and how many
/// it has: the last one's place when it has one, else a count.
#[derive(Deserialize)]
pub(super) struct ChainRow {
    pub(super) card_no: String,
    pub(super) count: i64,
    pub(super) last: Option<PostingRow>,
    pub(super) prev_mac: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PostingRow {
    pub(super) txn_id: i64,
    pub(super) card_no: String,
    pub(super) terminal_id: String,
    pub(super) order_no: Option<String>,
    pub(super) op: String,
    pub(super) balance_delta: String,
    pub(super) points_delta: i64,
    pub(super) balance: String,
    pub(super) points: i64,
    pub(super) amount: String,
    pub(super) discount: String,
    pub(super) charged: String,
    pub(super) business_day: String,
    pub(super) posted_at: i64,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
    /// Absent on postings from before migration 0016.
    #[serde(default)]
    pub(super) chain_pos: Option<i64>,
    /// Absent on postings that moved no visits.
    #[serde(default)]
    pub(super) visits_delta: Option<i64>,
}

impl PostingRow {
    pub(super) fn values(&self) -> Result<PostingValues> {
        Ok(PostingValues {
            card_no: self.card_no.clone(),
            txn_id: self.txn_id,
            terminal_id: self.terminal_id.clone(),
            order_no: self.order_no.clone(),
            op: self.op.clone(),
            balance_delta: dec(&self.balance_delta)?,
            points_delta: self.points_delta,
            balance: dec(&self.balance)?,
            points: self.points,
            amount: dec(&self.amount)?,
            discount: dec(&self.discount)?,
            charged: dec(&self.charged)?,
            business_day: self.business_day.clone(),
            posted_at_ms: self.posted_at,
            chain_pos: self.chain_pos,
            visits_delta: self.visits_delta,
        })
    }
}

/// A row MACed under a key this process does not know yet (a
/// `keys rotate-row-key` running) is `Error::UnknownRowKey`: the caller rolls
/// back, loads the new keys and runs the request again, so the row is
/// checked under its key rather than refused. The store never reads key
/// files itself.
pub(super) fn known<'a>(keys: &RowKeys, ids: impl Iterator<Item = Option<&'a str>>) -> Result<()> {
    match ids.flatten().find(|id| !keys.knows(id)) {
        Some(id) => Err(Error::UnknownRowKey(id.to_owned())),
        None => Ok(()),
    }
}

/// What the claim read, before anything is decided: every row key named
/// known, the terminal and the operator (the cards are checked by [`cards`]
/// once the operator is allowed, protocol.md §4's order).
pub(super) fn claimed(
    keys: &RowKeys,
    ctx: &TxnContext,
    operator_id: Option<&str>,
    c: &Claimed,
) -> Result<()> {
    let ids = c
        .terminal
        .iter()
        .map(|t| t.mac_key_id.as_deref())
        .chain(c.operator.iter().map(|o| o.mac_key_id.as_deref()))
        .chain(c.cards.values().flat_map(CardRow::key_ids))
        .chain(c.orig.iter().map(|o| o.mac_key_id.as_deref()));
    known(keys, ids)?;
    check_terminal(keys, &ctx.terminal, c.terminal.as_ref())?;
    if let (Some(o), Some(id)) = (&c.operator, operator_id) {
        check_operator_row(keys, &ctx.store_id, id, o)?;
    }
    if let Some(o) = &c.orig {
        check_order(keys, o)?;
    }
    Ok(())
}

/// An order a reverse or refund names, or a replay answers (issue 12): its
/// figures, effects, answer and counters as the ledger wrote them.
pub(super) fn check_order(keys: &RowKeys, o: &super::rows::OrigRow) -> Result<()> {
    if o.mac_ok(keys)? {
        return Ok(());
    }
    Err(tampered(format!(
        "orders {}/{}: mac",
        o.terminal, o.order_no
    )))
}

/// What the load read: each card's chain end, the level of a register,
/// and every card's points equal to what its lots hold.
pub(super) fn fetched(
    keys: &RowKeys,
    cards: &BTreeMap<String, CardRow>,
    f: &Fetched,
) -> Result<()> {
    let ids = f
        .chains
        .iter()
        .flat_map(|c| c.last.iter())
        .map(|p| p.mac_key_id.as_deref())
        .chain(f.level.iter().map(|l| l.mac_key_id.as_deref()))
        .chain(f.lot_rows.iter().map(|l| l.mac_key_id.as_deref()));
    known(keys, ids)?;
    check_chains(keys, cards, &f.chains)?;
    if let Some(lv) = &f.level {
        check_level(keys, lv.protected()?)?;
    }
    if !f.lots_complete {
        return Ok(());
    }
    check_lots(cards, &f.lots)
}

/// A card whose points disagree with its lots was changed outside the
/// ledger. Checked by the ops that read every live lot (those that spend,
/// move or give back points); an op that reads none (a debit) relies on
/// no lot, so a lot deleted or added by SQL is found by the next op that
/// does, and by `verify` (issue 14: a debit's check reads a constant
/// number of rows, as with the chain).
fn check_lots(cards: &BTreeMap<String, CardRow>, lots: &BTreeMap<String, Vec<Lot>>) -> Result<()> {
    for (no, row) in cards {
        let (points, visits) =
            crate::ledger::lots::totals(lots.get(no).map_or(&[][..], Vec::as_slice));
        if points != row.points || visits != row.visits.unwrap_or(0) {
            return Err(Error::Tampered(format!(
                "card {no}: points {}, visits {:?} but its lots hold {points}, {visits}",
                row.points, row.visits
            )));
        }
    }
    Ok(())
}

fn tampered(what: String) -> Error {
    Error::Tampered(what)
}

impl CardRow {
    /// The row keys its card, member and level MACs name.
    pub(super) fn key_ids(&self) -> [Option<&str>; 3] {
        [
            self.level_key_id.as_deref(),
            self.mac_key_id.as_deref(),
            self.member_key_id.as_deref(),
        ]
    }

    /// The card's MAC-covered values as read.
    pub(super) fn values(&self) -> Result<CardValues> {
        Ok(CardValues {
            card_no: self.card_no.clone(),
            member_id: self.member_id,
            status: status_text(self.status).to_owned(),
            balance: dec(&self.balance)?,
            points: self.points,
            pin_hash: hex_bytes(&self.pin_hash)?,
            pin_salt: hex_bytes(&self.pin_salt)?,
            pin_fail_count: i64::from(self.pin_fail_count),
            chain_len: self.chain_len,
            last_mac: hex_bytes(&self.last_mac)?,
            renewed_at_ms: self.renewed_at,
            spent: self.spent()?,
            held: self.held()?,
            visits: self.visits,
        })
    }
}

/// The terminal the request comes from.
fn check_terminal(keys: &RowKeys, terminal_id: &str, t: Option<&TerminalRow>) -> Result<()> {
    let Some(t) = t else {
        return Err(tampered(format!("terminals {terminal_id}: row missing")));
    };
    let img = terminal_image(
        terminal_id,
        &t.store_id,
        t.kind.as_str(),
        t.status.as_str(),
        hex_bytes(&t.pw_hash)?.as_deref(),
        hex_bytes(&t.pw_salt)?.as_deref(),
    );
    if !keys.verify(
        t.mac_key_id.as_deref(),
        &img,
        None,
        hex_bytes(&t.row_mac)?.as_deref(),
    ) {
        return Err(tampered(format!("terminals {terminal_id}: mac")));
    }
    Ok(())
}

/// Every locked card and its member.
pub(super) fn cards<'a>(keys: &RowKeys, rows: impl IntoIterator<Item = &'a CardRow>) -> Result<()> {
    for r in rows {
        let no = &r.card_no;
        let values = r.values()?;
        if !keys.verify(
            r.mac_key_id.as_deref(),
            &values.image(),
            None,
            hex_bytes(&r.row_mac)?.as_deref(),
        ) {
            return Err(tampered(format!("cards {no}: mac")));
        }
        // The sealed copy must open and hold the same values, or a later
        // repair would have nothing to restore from.
        let sealed = hex_bytes(&r.sealed)?
            .and_then(|b| keys.open("cards", no, &b).ok())
            .and_then(|img| CardValues::from_image(&img));
        if sealed.as_ref() != Some(&values) {
            return Err(tampered(format!("cards {no}: sealed copy")));
        }
        let m = member_image(
            r.member_id,
            &r.name,
            &r.phone,
            r.birthday.as_deref(),
            r.referrer.as_deref(),
            &r.level,
        );
        if !keys.verify(
            r.member_key_id.as_deref(),
            &m,
            None,
            hex_bytes(&r.member_mac)?.as_deref(),
        ) {
            return Err(tampered(format!("members {}: mac", r.member_id)));
        }
        let level = super::rows::protected_level(
            &r.level,
            (&r.discount, &r.points_rate),
            (&r.max_balance, &r.daily_debit_limit),
            (&r.level_mac, &r.level_key_id),
        )?;
        check_level(keys, level)?;
    }
    Ok(())
}

/// Each card's chain as far as one load can see it cheaply: its last
/// posting's place (under that posting's MAC) is the length the card's MAC
/// says, its MAC (chained to the one before) is the card's `last_mac`, and
/// its balance and points are the card's. The last posting deleted, one
/// added at the end, a change to it or to the MAC of the one before it
/// (which it chains to) is caught here;
/// a posting deleted, added or changed deeper in the chain by `verify`,
/// which walks it whole (reading a constant number of rows here, not a
/// count that grows with the card's history, is issue 14's trade).
fn check_chains(
    keys: &RowKeys,
    rows: &BTreeMap<String, CardRow>,
    chains: &[ChainRow],
) -> Result<()> {
    for ch in chains {
        let Some(r) = rows.get(&ch.card_no) else {
            continue;
        };
        let no = &ch.card_no;
        if ch.count != r.chain_len {
            return Err(tampered(format!(
                "postings {no}: chain has {} postings, the card says {}",
                ch.count, r.chain_len
            )));
        }
        let card_last = hex_bytes(&r.last_mac)?;
        match &ch.last {
            None => {
                if card_last.is_some() {
                    return Err(tampered(format!("postings {no}: chain")));
                }
            }
            Some(p) => {
                let prev = hex_bytes(&ch.prev_mac)?;
                let mac = hex_bytes(&p.row_mac)?;
                let v = p.values()?;
                let ok = keys.verify(
                    p.mac_key_id.as_deref(),
                    &v.image(),
                    prev.as_deref(),
                    mac.as_deref(),
                ) && mac == card_last
                    && v.balance == dec(&r.balance)?
                    && v.points == r.points;
                if !ok {
                    return Err(tampered(format!("postings {no}: chain")));
                }
            }
        }
    }
    Ok(())
}

/// A level a card (or a register) relies on.
fn check_level(keys: &RowKeys, row: protected::LevelRow) -> Result<()> {
    if !row.mac_ok(keys) {
        return Err(tampered(format!("levels {}: mac", row.level)));
    }
    Ok(())
}

/// The operator row as the protected table describes it, with `status`.
fn operator_row(
    store_id: &str,
    operator_id: &str,
    o: &super::rows::OperatorRow,
    status: Standing,
) -> Result<protected::OperatorRow> {
    Ok(protected::OperatorRow {
        store_id: store_id.to_owned(),
        operator_id: operator_id.to_owned(),
        role: o.role.as_str().to_owned(),
        status: status.as_str().to_owned(),
        pin_hash: hex_bytes(&o.pin_hash)?,
        pin_salt: hex_bytes(&o.pin_salt)?,
        row_mac: hex_bytes(&o.row_mac)?,
        mac_key_id: o.mac_key_id.clone(),
    })
}

/// The operator a request names.
fn check_operator_row(
    keys: &RowKeys,
    store_id: &str,
    operator_id: &str,
    o: &super::rows::OperatorRow,
) -> Result<()> {
    if !operator_row(store_id, operator_id, o, o.status)?.mac_ok(keys) {
        return Err(tampered(format!("operators {store_id}/{operator_id}: mac")));
    }
    Ok(())
}

/// The MAC and sealed copy of the operator once disabled (a 5th wrong
/// manager PIN), for the refusal's write to use if it disables it.
pub(super) fn operator_disabled_mac(
    keys: &RowKeys,
    store_id: &str,
    operator_id: &str,
    o: &super::rows::OperatorRow,
) -> Result<(Vec<u8>, String, Vec<u8>)> {
    let img = operator_row(store_id, operator_id, o, Standing::Disabled)?.image();
    let (mac, kid) = keys.mac_with_id(&img, None);
    Ok((mac, kid, keys.seal(&img)))
}

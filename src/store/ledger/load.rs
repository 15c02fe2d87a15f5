//! Step 2, the load: what a request reads once its rows are locked (the
//! cards' live lots and chains, ids for what it will create, a level, a
//! history), in a snapshot that sees every change committed before the
//! locks were granted.
//!
//! Most requests get it without a statement of their own: the claim computes
//! the same columns (folded, [`ClaimShape::fold`]) in its own snapshot,
//! which was taken before its row locks were granted. That snapshot is the
//! right one unless a transaction that changed a locked card committed while
//! the claim waited for it; every such transaction (a posting) adds to the
//! card's chain, and the locked card row is the newest version, so the claim
//! saw everything exactly when each card's chain, as the snapshot shows it,
//! is as long as the card says and ends in the card's last MAC. Otherwise
//! (or when the folded columns were not asked for) the load runs as a
//! statement of its own in a fresh snapshot, where a chain that still
//! disagrees is tampering (`check::check_chains`).
//!
//! Not folded: a request that creates a card number (its existence must be
//! read after the advisory lock, which the claim's snapshot predates) and a
//! reverse or refund (the lots its original names come from the original,
//! read by the claim itself).

use std::collections::BTreeMap;

use crate::store::txn::TxnConn;

use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::check::ChainRow;
use super::rows::{at_ms, json_col, json_col_opt, CardRow, LevelRow, LotRow};
use super::sql::{load_sql, ClaimShape, LoadColumn, LoadColumns, LOAD_TYPES};
use crate::error::Result;
use crate::ledger::request::{Body, PostingOp, PostingReq, ReadOp, ReadReq, Request};
use crate::ledger::{Lot, OpKind};
use crate::protocol::attr2::DEFAULT_HISTORY_LIMIT;

/// What the load reads for a request, decided before the claim.
pub(super) struct LoadArgs<'a> {
    pub(super) card_to_create: Option<&'a str>,
    pub(super) wants_lots: bool,
    pub(super) level: Option<&'a str>,
    pub(super) want_txn: bool,
    pub(super) hist_card: Option<&'a str>,
    pub(super) limit: i64,
    pub(super) register: bool,
    /// `Some(now)`: the op's decision reads no lot, so only the lots the
    /// expiry step zeroes (expired by `now`, ms) are read; `None`: all.
    pub(super) lots_upto_ms: Option<i64>,
}

impl<'a> LoadArgs<'a> {
    pub(super) fn of(req: &'a Request, now: chrono::DateTime<chrono::Utc>) -> LoadArgs<'a> {
        let op = req.op();
        let (level, hist) = match &req.body {
            Body::Posting(PostingReq {
                op: PostingOp::Register { level, .. },
                ..
            }) => (Some(level.as_str()), None),
            Body::Read(ReadReq {
                card,
                op: ReadOp::History { limit },
                ..
            }) => (None, Some((card.as_str(), *limit))),
            _ => (None, None),
        };
        LoadArgs {
            card_to_create: req.card_to_create(),
            wants_lots: matches!(
                op,
                OpKind::Debit
                    | OpKind::Points
                    | OpKind::Replace
                    | OpKind::Import
                    | OpKind::Capture
                    | OpKind::VisitsAdd
            ),
            level,
            want_txn: op.is_posting() || op == OpKind::Query,
            hist_card: hist.map(|h| h.0),
            limit: i64::from(hist.map_or(DEFAULT_HISTORY_LIMIT, |h| h.1)),
            register: matches!(op, OpKind::Register | OpKind::Import),
            lots_upto_ms: reads_no_lot(op).then(|| now.timestamp_millis()),
        }
    }

    /// The load's columns this request needs.
    pub(super) fn mask(&self, has_cards: bool) -> LoadColumns {
        LoadColumns::default()
            .with(LoadColumn::Lots, has_cards)
            .with(LoadColumn::NewExists, self.card_to_create.is_some())
            .with(LoadColumn::LotIds, self.wants_lots)
            .with(LoadColumn::Level, self.level.is_some())
            .with(LoadColumn::TxnId, self.want_txn)
            .with(LoadColumn::History, self.hist_card.is_some())
            .with(LoadColumn::MemberId, self.register)
            .with(LoadColumn::Chains, has_cards)
    }

    /// The load's parameters after the locked cards, in [`LOAD_TYPES`]'
    /// order (the load statement's $2–$10, the claim's $11–$19).
    pub(super) fn params<'b>(&'b self, named_lots: &'b Vec<i64>) -> [&'b (dyn ToSql + Sync); 9] {
        [
            &self.card_to_create,
            &self.wants_lots,
            &self.level,
            &self.want_txn,
            &self.hist_card,
            &self.limit,
            named_lots,
            &self.register,
            &self.lots_upto_ms,
        ]
    }

    /// The mask of the columns to fold into a claim of `shape`, if any.
    pub(super) fn fold(&self, shape: &ClaimShape) -> Option<LoadColumns> {
        (shape.cards && !shape.create && !shape.orig).then(|| self.mask(true))
    }
}

/// Whether `op`'s decision reads none of the card's lots (it may earn
/// one): then its load reads only those the expiry step zeroes.
fn reads_no_lot(op: OpKind) -> bool {
    matches!(
        op,
        OpKind::Debit
            | OpKind::Topup
            | OpKind::Transfer
            | OpKind::Lost
            | OpKind::Found
            | OpKind::Lock
            | OpKind::Unlock
            | OpKind::Hold
            | OpKind::Capture
            | OpKind::Void
            | OpKind::Query
            | OpKind::Member
            | OpKind::History
    )
}

/// What the load read, decoded (not yet checked: `check::fetched`).
pub(super) struct Fetched {
    pub(super) chains: Vec<ChainRow>,
    /// Each locked card's live lots its op reads ([`LoadArgs::lots_upto_ms`];
    /// and those a reverse names), by id.
    pub(super) lots: BTreeMap<String, Vec<Lot>>,
    /// Whether `lots` holds every live lot of each locked card: only then
    /// can the card's points be checked against them.
    pub(super) lots_complete: bool,
    /// The same lots as read, with their MACs: checked on use, and what a
    /// move's new MAC starts from.
    pub(super) lot_rows: Vec<LotRow>,
    pub(super) new_exists: bool,
    pub(super) lot_ids: Vec<i64>,
    pub(super) level: Option<LevelRow>,
    pub(super) txn_id: Option<i64>,
    /// Taken for a register, so the member's MAC can cover it.
    pub(super) new_member_id: Option<i64>,
    /// A history's postings (JSON), for a `history` read only.
    pub(super) history: Option<Value>,
}

/// The load's row: the claim's when it folded the load and its snapshot
/// was fresh for every locked card, else a load statement's.
pub(super) async fn run(
    tx: &TxnConn,
    args: &LoadArgs<'_>,
    named_lots: &Vec<i64>,
    claim: Option<tokio_postgres::Row>,
    rows: &BTreeMap<String, CardRow>,
) -> Result<Fetched> {
    if let Some(r) = claim {
        let chains: Vec<ChainRow> = match ChainRow::from_columns(&r)? {
            Some(c) => c,
            None => json_col(&r, "chains", "chains")?,
        };
        if fresh(&chains, rows) {
            return decode(&r, args, chains);
        }
    }
    let locked_nos: Vec<String> = rows.keys().cloned().collect();
    let stmt = tx
        .prepare_kept(load_sql(args.mask(!locked_nos.is_empty())), &LOAD_TYPES)
        .await?;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&locked_nos];
    params.extend(args.params(named_lots));
    let l = tx.query_one(&stmt, &params).await?;
    let chains = json_col(&l, "chains", "chains")?;
    decode(&l, args, chains)
}

fn decode(l: &tokio_postgres::Row, args: &LoadArgs<'_>, chains: Vec<ChainRow>) -> Result<Fetched> {
    let lot_rows: Vec<LotRow> = json_col(l, "lots", "lots")?;
    let mut lots: BTreeMap<String, Vec<Lot>> = BTreeMap::new();
    for lr in lot_rows.iter().cloned() {
        lots.entry(lr.card_no).or_default().push(Lot {
            id: lr.id,
            points_left: lr.left,
            expires_at: lr.exp.map(at_ms).transpose()?,
            service: lr.service,
        });
    }
    for v in lots.values_mut() {
        v.sort_by_key(|l| l.id);
    }
    Ok(Fetched {
        chains,
        lots,
        lots_complete: args.lots_upto_ms.is_none(),
        lot_rows,
        new_exists: l.get("new_exists"),
        lot_ids: l.get("lot_ids"),
        level: json_col_opt(l, "level", "level")?,
        txn_id: l.get("txn_id"),
        new_member_id: l.get("member_id"),
        history: args.hist_card.map(|_| l.get("history")),
    })
}

/// Whether the chains a snapshot shows end where the (newest) locked card
/// rows say they do: then no posting on them committed after the snapshot.
fn fresh(chains: &[ChainRow], rows: &BTreeMap<String, CardRow>) -> bool {
    chains.len() == rows.len()
        && chains.iter().all(|ch| {
            rows.get(&ch.card_no).is_some_and(|c| {
                ch.count == c.chain_len
                    && ch.last.as_ref().and_then(|p| p.row_mac.as_deref()) == c.last_mac.as_deref()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(no: &str, chain_len: i64, last_mac: Option<&str>) -> (String, CardRow) {
        let row = json!({
            "card_no": no, "member_id": 1, "status": "active", "balance": "0.00",
            "points": 0, "pin_fail_count": 0, "level": "std", "discount": "1",
            "points_rate": "1", "name": "n", "phone": "p", "opened_at": 0, "renewed_ms": 0,
            "last_mac": last_mac, "chain_len": chain_len,
        });
        (no.to_owned(), serde_json::from_value(row).unwrap())
    }

    fn chain(no: &str, count: i64, last_mac: Option<&str>) -> ChainRow {
        let posting = |mac: &str| {
            json!({
                "txn_id": 1, "card_no": no, "terminal_id": "T", "op": "debit",
                "balance_delta": "0", "points_delta": 0, "balance": "0", "points": 0,
                "amount": "0", "discount": "0", "charged": "0", "business_day": "2026-11-22",
                "posted_at": 0, "row_mac": mac,
            })
        };
        let last = last_mac.map(posting);
        serde_json::from_value(
            json!({"card_no": no, "count": count, "last": last, "prev_mac": null}),
        )
        .unwrap()
    }

    #[test]
    fn a_snapshot_is_fresh_only_when_every_chain_ends_where_its_card_says() {
        let rows: BTreeMap<_, _> = [card("A", 2, Some("aa")), card("B", 0, None)].into();
        assert!(fresh(
            &[chain("A", 2, Some("aa")), chain("B", 0, None)],
            &rows
        ));
        // A posting committed after the snapshot: the card is one ahead.
        let behind = [chain("A", 1, Some("99")), chain("B", 0, None)];
        assert!(!fresh(&behind, &rows));
        // Same length, other last MAC; a card's chain missing; an unknown card.
        assert!(!fresh(
            &[chain("A", 2, Some("ab")), chain("B", 0, None)],
            &rows
        ));
        assert!(!fresh(&[chain("A", 2, Some("aa"))], &rows));
        assert!(!fresh(
            &[chain("A", 2, Some("aa")), chain("C", 0, None)],
            &rows
        ));
        // A first posting committed after the snapshot.
        let first: BTreeMap<_, _> = [card("B", 1, Some("bb"))].into();
        assert!(!fresh(&[chain("B", 0, None)], &first));
    }
}

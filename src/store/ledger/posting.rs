//! A posting's decision and what it writes: the pure rules of
//! [`crate::ledger`] applied to the rows `execute` loaded and locked, and
//! the plan turned into the rows of [`Writes`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::crypto::keyed_hash::{keyed_hash, random_salt, DOMAIN_CARD_PIN};
use crate::error::{Error, Result};
use crate::ledger::answer_row::{posting_row, status_text, RowContext};
use crate::ledger::ops_holds::expiry_answer;
use crate::ledger::request::{PostingOp, PostingReq, Request};
use crate::ledger::{
    business_day, decide_capture, decide_close, decide_debit, decide_hold, decide_points,
    decide_redeem, decide_refund, decide_register, decide_replace, decide_reverse, decide_status,
    decide_topup, decide_transfer, decide_void, CaptureReq, CardChange, CardState, CardStatus,
    CloseReq, DebitReq, Effect, HoldReq, LedgerConfig, Lot, MemberRef, Money, NewCard, OpKind,
    Original, Payment, Pin, PinSource, Plan, PointsReq, RedeemReq, RefundReq, Refusal, RegisterReq,
    ReplaceReq, ReverseReq, Tender, TerminalKind, TopupReq, TransferReq, VisitReq, VisitsAddReq,
    VoidReq,
};
use crate::ledger::{decide_visit, decide_visits_add};
use crate::protocol::errno::Errno;
use crate::protocol::xml::Row;
use crate::store::txn::{TxnContext, TxnEnv};

use super::holds::{order_update, Holds};
use super::load::Fetched;
use super::rows::{hex_text, CardRow, LevelRow, OrigRow};
use super::write_rows::{
    answer_text, effects_text, Blob, CardWrite, Detail, OrderWrite, OriginalRef,
};
use super::writes::Writes;

/// What a request's decision reads: the request and the rows loaded,
/// locked and checked for it, points already expired.
pub(super) struct Loaded<'a> {
    pub(super) env: &'a TxnEnv,
    pub(super) req: &'a Request,
    pub(super) cfg: LedgerConfig,
    pub(super) now: DateTime<Utc>,
    pub(super) rows: BTreeMap<String, CardRow>,
    pub(super) states: BTreeMap<String, CardState>,
    pub(super) lots: BTreeMap<String, Vec<Lot>>,
    /// Points expired since each card was last used, posted first.
    pub(super) expiries: Vec<CardChange>,
    pub(super) fetched: Fetched,
    pub(super) orig: Option<(OrigRow, Original)>,
    /// The sending terminal's kind.
    pub(super) kind: TerminalKind,
    /// The request's idempotency digest, as its order row keeps it.
    pub(super) digest: [u8; 32],
    /// The locked cards' active holds, expired ones included.
    pub(super) holds: Holds,
}

impl Loaded<'_> {
    pub(super) fn card(&self, no: &str) -> std::result::Result<&CardState, Errno> {
        self.states.get(no).ok_or(Errno::CardNotFound)
    }

    pub(super) fn lots_of(&self, no: &str) -> &[Lot] {
        self.lots.get(no).map_or(&[][..], |v| v.as_slice())
    }

    /// The request's card PIN checked against the card's hash.
    pub(super) fn pin_of(&self, no: &str) -> Result<Pin> {
        if self.kind == TerminalKind::Office {
            return Ok(Pin::NotNeeded);
        }
        match self.rows.get(no) {
            Some(r) => r.pin(self.env, self.req.pin()),
            None => Ok(Pin::Absent),
        }
    }

    fn original(&self) -> std::result::Result<&Original, Errno> {
        self.orig
            .as_ref()
            .map(|o| &o.1)
            .ok_or(Errno::OriginalNotFound)
    }
}

type Decision = std::result::Result<Plan, Refusal>;

impl Loaded<'_> {
    /// `decide` on an existing card, with the request's PIN checked against
    /// it and its live lots; 2001 when there is no such card.
    fn with_card(
        &self,
        no: &str,
        decide: impl FnOnce(&CardState, Pin, &[Lot]) -> Decision,
    ) -> Result<Decision> {
        match self.card(no) {
            Err(e) => Ok(Err(e.into())),
            Ok(st) => Ok(decide(st, self.pin_of(no)?, self.lots_of(no))),
        }
    }
}

/// The pure decision of a posting op: a plan, or a refusal.
pub(super) fn decide_posting(x: &Loaded<'_>, p: &PostingReq) -> Result<Decision> {
    let order_no = p.order_no.clone();
    let (cfg, now) = (&x.cfg, x.now);
    match &p.op {
        PostingOp::Register {
            card,
            member,
            level,
            pin,
            opening,
        } => register(
            x,
            RegisterReq {
                order_no,
                card_no: card.clone(),
                member: member.clone(),
                level: level.clone(),
                pin_set: pin.is_some(),
                opening: *opening,
                points_expire_at: crate::ledger::lots::lot_expiry(now, cfg.points_expiry_months),
            },
        ),
        PostingOp::Reverse { .. } => Ok(reverse(x, order_no)),
        PostingOp::Refund { amount, .. } => refund(x, order_no, *amount),
        PostingOp::Debit {
            card,
            sale,
            payment,
            ..
        } => x.with_card(card, |st, pin, _| {
            let req = DebitReq {
                order_no,
                sale: *sale,
                payment: *payment,
                pin,
            };
            decide_debit(cfg, st, &req, now)
        }),
        PostingOp::Topup { card, amount, .. } => x.with_card(card, |st, _, _| {
            let amount = *amount;
            decide_topup(cfg, st, &TopupReq { order_no, amount })
        }),
        PostingOp::Points {
            card,
            delta,
            reason,
        } => x.with_card(card, |st, _, lots| {
            let (delta, reason) = (*delta, reason.clone());
            decide_points(
                cfg,
                st,
                lots,
                &PointsReq {
                    order_no,
                    delta,
                    reason,
                },
                now,
            )
        }),
        PostingOp::Redeem {
            card, cost, gift, ..
        } => x.with_card(card, |st, pin, lots| {
            let (cost, gift) = (*cost, gift.clone());
            decide_redeem(
                st,
                lots,
                &RedeemReq {
                    order_no,
                    cost,
                    gift,
                    pin,
                },
                now,
            )
        }),
        PostingOp::Transfer {
            card, to, amount, ..
        } => x.with_card(card, |st, pin, _| match x.card(to) {
            Err(e) => Err(e.into()),
            Ok(to) => {
                let amount = *amount;
                decide_transfer(
                    st,
                    to,
                    &TransferReq {
                        order_no,
                        amount,
                        pin,
                    },
                )
            }
        }),
        PostingOp::Status { card, op } => {
            x.with_card(card, |st, _, _| decide_status(st, *op, &order_no))
        }
        PostingOp::Replace { card, new_card } => x.with_card(card, |st, _, lots| {
            let placeholder = x.fetched.new_exists.then(|| placeholder(new_card, st));
            let new_card_no = new_card.clone();
            decide_replace(
                st,
                lots,
                placeholder.as_ref(),
                &ReplaceReq {
                    order_no,
                    new_card_no,
                },
            )
        }),
        PostingOp::Close { card, .. } => x.with_card(card, |st, pin, lots| {
            decide_close(st, lots, &CloseReq { order_no, pin })
        }),
        PostingOp::Hold {
            card,
            sale,
            expires_s,
            ..
        } => x.with_card(card, |st, pin, _| {
            let (sale, expires_s) = (*sale, *expires_s);
            let req = HoldReq {
                order_no,
                sale,
                pin,
                expires_s,
            };
            decide_hold(st, &req, now)
        }),
        PostingOp::Capture { amount, .. } => x.with_hold_card(|o, st| {
            let req = CaptureReq {
                order_no,
                amount: *amount,
            };
            decide_capture(cfg, o, st, &req, (now, x.today()))
        }),
        PostingOp::Void { .. } => {
            x.with_hold_card(|o, st| decide_void(o, st, &VoidReq { order_no }, (now, x.today())))
        }
        PostingOp::VisitsAdd {
            card,
            price,
            service,
            count,
            days,
            payment,
            ..
        } => x.with_card(card, |st, pin, lots| {
            let req = VisitsAddReq {
                order_no,
                price: *price,
                service: service.clone(),
                count: *count,
                days: *days,
                payment: *payment,
                pin,
            };
            decide_visits_add(st, lots, &req, now)
        }),
        PostingOp::Visit {
            card,
            service,
            count,
            ..
        } => x.with_card(card, |st, pin, lots| {
            let req = VisitReq {
                order_no,
                service: service.clone(),
                count: *count,
                pin,
            };
            decide_visit(st, lots, &req, now)
        }),
    }
}

impl Loaded<'_> {
    fn today(&self) -> chrono::NaiveDate {
        business_day(self.now, &self.env.config.business.offset())
    }

    /// `decide` on the hold a capture or void names and the card it is on.
    fn with_hold_card(
        &self,
        decide: impl FnOnce(&Original, &CardState) -> Decision,
    ) -> Result<Decision> {
        let o = match self.original() {
            Err(e) => return Ok(Err(e.into())),
            Ok(o) => o,
        };
        let Some(card) = o.effects.first().map(|e| e.card_no.as_str()) else {
            return Ok(Err(Errno::OriginalNotFound.into()));
        };
        self.with_card(card, |st, _, _| decide(o, st))
    }
}

fn register(x: &Loaded<'_>, req: RegisterReq) -> Result<Decision> {
    if x.fetched.new_exists {
        return Ok(Err(Errno::CardInUse.into()));
    }
    let lv = x.fetched.level.as_ref().map(LevelRow::level).transpose()?;
    Ok(decide_register(None, lv.as_ref(), &req))
}

fn reverse(x: &Loaded<'_>, order_no: String) -> Decision {
    let o = x.original()?;
    let with_lots: Vec<(&CardState, &[Lot])> = o
        .effects
        .iter()
        .filter_map(|e| Some((x.states.get(&e.card_no)?, x.lots_of(&e.card_no))))
        .collect();
    let today = business_day(x.now, &x.env.config.business.offset());
    decide_reverse(o, &with_lots, &ReverseReq { order_no }, today)
}

/// A refund returns to the original's (first) card.
fn refund(x: &Loaded<'_>, order_no: String, amount: Money) -> Result<Decision> {
    let card = match x.original() {
        Err(e) => return Ok(Err(e.into())),
        Ok(o) => match o.effects.first() {
            None => return Ok(Err(Errno::OriginalNotFound.into())),
            Some(e) => e.card_no.clone(),
        },
    };
    x.with_card(&card, |st, _, lots| {
        let o = x.original()?;
        decide_refund(o, st, lots, &RefundReq { order_no, amount }, x.now)
    })
}

/// Everything a decided posting writes, and its answer row.
pub(super) fn plan_writes(
    x: &Loaded<'_>,
    ctx: &TxnContext,
    p: &PostingReq,
    plan: &Plan,
    operator_reset: bool,
) -> Result<(Writes, Row)> {
    let txn_id = x
        .fetched
        .txn_id
        .ok_or_else(|| Error::internal("no txn id for a posting"))?;
    let orig = x.orig.as_ref().map(|o| &o.0);
    let mut w = Writes::new(ctx, x.now, txn_id, x.env).with_lots(&x.fetched.lot_rows);
    write_expiries(&mut w, x)?;
    let effects = write_postings(&mut w, x, p, plan, orig)?;
    // New card first: its row gets the final values of its changes.
    if let Some(nc) = &plan.new_card {
        write_new_card(&mut w, x, nc, plan, &ctx.store_id)?;
    }
    let mut all: Vec<CardChange> = x.expiries.clone();
    all.extend(
        plan.cards
            .iter()
            .filter(|c| plan.new_card.as_ref().map(|n| &n.card_no) != Some(&c.card_no))
            .cloned(),
    );
    w.fold_cards(&all, &x.rows, None)?;
    let row = answer(x, p, plan, txn_id, orig);
    w.order = Some(order_write(ctx, x, p, plan, &w, &effects, &row)?);
    if let (Some(u), Some(o)) = (&plan.original, orig) {
        w.orig.push(order_update(o, u, &x.env.row_keys)?);
    }
    if operator_reset {
        w.operator_reset = Some(json!({
            "store_id": ctx.store_id, "operator_id": x.req.operator.id(),
        }));
    }
    Ok((w, row))
}

/// The expiries the load found, posted first: points lots zeroed
/// (`expire`) and holds released (`hold_expire`, their orders marked).
pub(super) fn write_expiries(w: &mut Writes, x: &Loaded<'_>) -> Result<()> {
    for c in &x.expiries {
        if c.holds_expired.is_empty() {
            let op = match c.visits_delta {
                0 => OpKind::Expire,
                _ => OpKind::VisitsExpire,
            };
            w.posting(c, op, None, None, &[]);
            continue;
        }
        let mut plan = Plan::single("", OpKind::HoldExpire, c.clone());
        plan.answer = expiry_answer(c);
        w.posting(c, OpKind::HoldExpire, None, Some(&plan), &[]);
        for h in &c.holds_expired {
            w.orig.push(x.holds.release(h, &x.env.row_keys)?);
        }
    }
    Ok(())
}

/// One posting per card change, with the lots it creates (ids taken from
/// those the load reserved); the effects the order row keeps for a reverse.
fn write_postings(
    w: &mut Writes,
    x: &Loaded<'_>,
    p: &PostingReq,
    plan: &Plan,
    orig: Option<&OrigRow>,
) -> Result<Vec<Effect>> {
    let mut ids = x.fetched.lot_ids.iter().copied();
    let mut effects = Vec::with_capacity(plan.cards.len());
    let detail = detail(x.req, p, plan, orig);
    for c in &plan.cards {
        let created: Vec<i64> = (0..c.lots_created.len())
            .map(|_| ids.next())
            .collect::<Option<_>>()
            .ok_or_else(|| Error::internal("not enough lot ids"))?;
        w.posting(c, plan.op, Some(&p.order_no), Some(plan), &created);
        w.posting_detail(detail.clone());
        event_extras(w, plan, c);
        for (n, id) in c.lots_created.iter().zip(&created) {
            w.new_lot(&c.card_no, *id, n);
        }
        effects.push(c.effect(&created));
    }
    Ok(effects)
}

/// The op's own fields of a posting's event (protocol.md §8).
fn event_extras(w: &mut Writes, plan: &Plan, c: &CardChange) {
    let Some(e) = w.last_event() else { return };
    match (plan.op, plan.cards.as_slice(), &plan.new_card) {
        (OpKind::Transfer, [from, to], _) => {
            e.from_card = Some(from.card_no.clone());
            e.to_card = Some(to.card_no.clone());
        }
        (OpKind::Replace, [old, ..], Some(nc)) => {
            e.old_card = Some(old.card_no.clone());
            e.new_card = Some(nc.card_no.clone());
        }
        (OpKind::Close, ..) => e.cash_refund = Some(plan.answer.cash_out.amount()),
        (OpKind::Hold, ..) => {
            if let Some(h) = plan.answer.hold {
                e.available = Some(h.available.amount());
                e.hold_expires_at = Some(h.expires_at.timestamp_millis());
            }
        }
        (OpKind::VisitsAdd | OpKind::Visit, ..) => {
            if let Some(v) = &plan.answer.visits {
                e.service = Some(v.service.clone());
                e.visits = Some(v.visits);
            }
        }
        _ => {}
    }
    // A split sale (a debit or a purchase of visits): its `cash` leg is the
    // event's `cash`, as for every posting.
    if let Some(s) = plan.answer.split {
        e.from_balance = Some(s.from_balance.amount());
    }
    if let Some(st) = c.status {
        e.status = Some(status_text(st));
    }
}

/// A registered or replacing card's row (and a registered card's member),
/// issued at `store_id`, the posting terminal's.
fn write_new_card(
    w: &mut Writes,
    x: &Loaded<'_>,
    nc: &NewCard,
    plan: &Plan,
    store_id: &str,
) -> Result<()> {
    let (hash, salt) = match &nc.pin {
        PinSource::None => (None, None),
        PinSource::FromRequest => match x.req.pin() {
            Some(pin) => {
                let salt = random_salt();
                let pin = pin.expose().as_bytes();
                let h = keyed_hash(&x.env.hash_key, DOMAIN_CARD_PIN, &salt, pin);
                (Some(hex_text(&h)), Some(hex_text(&salt)))
            }
            None => (None, None),
        },
        PinSource::CopyFrom(old) => match x.rows.get(old) {
            Some(r) => (r.pin_hash.clone(), r.pin_salt.clone()),
            None => {
                return Err(Error::internal(
                    "a replace copies the PIN of an unlocked card",
                ))
            }
        },
    };
    let last = plan.cards.iter().rev().find(|c| c.card_no == nc.card_no);
    let member_id = match &nc.member {
        MemberRef::New(m) => {
            let id = x
                .fetched
                .new_member_id
                .ok_or_else(|| Error::internal("no member id for a register"))?;
            w.members.push(json!({
                "member_id": id,
                "name": m.name, "phone": m.phone,
                "birthday": m.birthday.map(|b| b.to_string()),
                "referrer": m.referrer, "level": nc.level,
            }));
            id
        }
        MemberRef::Existing(id) => *id,
    };
    // A replacement carries the membership and the day's spending over; a
    // new card starts a membership.
    let old = match plan.op {
        OpKind::Replace => plan
            .cards
            .iter()
            .find(|c| c.card_no != nc.card_no)
            .and_then(|c| x.rows.get(&c.card_no)),
        _ => None,
    };
    let renewed_ms = old.map_or(x.now.timestamp_millis(), |r| r.renewed_ms);
    let spent = old.map(CardRow::spent).transpose()?.flatten();
    w.new_cards.push(CardWrite {
        card_no: nc.card_no.clone(),
        old_balance: None,
        old_points: None,
        balance: last.map_or(Money::ZERO, |c| c.new_balance).amount(),
        points: last.map_or(0, |c| c.new_points),
        status: status_text(last.and_then(|c| c.status).unwrap_or(CardStatus::Active)),
        pin_fail_count: 0,
        at: w.now_text.clone(),
        renewed_at_ms: renewed_ms,
        spent_day: spent.as_ref().map(|s| s.0.clone()),
        spent_today: spent.as_ref().map(|s| s.1),
        held: None,
        visits: last.map(|c| c.new_visits).filter(|v| *v != 0),
        store_id: Some(store_id.to_owned()),
        member_id,
        pin_hash: hash,
        pin_salt: salt,
        last_mac: None,
        chain_len: 0,
        row_mac: Blob::default(),
        mac_key_id: String::new(),
        sealed: Blob::default(),
    });
    Ok(())
}

/// The posting's answer row (proto-spec §11.1).
fn answer(x: &Loaded<'_>, p: &PostingReq, plan: &Plan, txn_id: i64, orig: Option<&OrigRow>) -> Row {
    let answer_row = plan.answer.clone().into_row(txn_id, x.now, false);
    let first_status = plan.cards.first().and_then(|c| {
        c.status
            .or_else(|| x.states.get(&c.card_no).map(|s| s.status))
    });
    posting_row(
        plan,
        &answer_row,
        &RowContext {
            card: p.op.card().unwrap_or_default(),
            status: first_status,
            orig_terminal: orig.map(|o| o.terminal.as_str()),
        },
    )
}

/// The `orders` row: what a replay answers and a reverse or refund reads.
fn order_write(
    ctx: &TxnContext,
    x: &Loaded<'_>,
    p: &PostingReq,
    plan: &Plan,
    w: &Writes,
    effects: &[Effect],
    row: &Row,
) -> Result<OrderWrite> {
    let points_earned = if matches!(plan.op, OpKind::Debit | OpKind::Capture) {
        plan.cards.first().map_or(0, |c| c.points_delta.max(0))
    } else {
        0
    };
    let hold = plan.hold.as_ref();
    Ok(OrderWrite {
        hold_exp_ms: hold.map(|h| h.expires_at.timestamp_millis()),
        hold_discount: hold.map(|h| h.discount),
        hold_points_rate: hold.map(|h| h.points_rate),
        terminal_id: ctx.terminal.clone(),
        order_no: p.order_no.clone(),
        digest: Blob::new(x.digest.to_vec()),
        op: x.req.op().as_str(),
        card_no: plan.answer.card.clone().into(),
        cards: plan.cards.iter().map(|c| c.card_no.clone()).collect(),
        txn_id: w.txn_id,
        business_day: w.business_day.clone(),
        posted_at: w.now_text.clone(),
        posted_at_ms: x.now.timestamp_millis(),
        amount: plan.answer.amount.amount(),
        charged: plan.answer.charged.amount(),
        tender: tender_text(tender_of(p)),
        points_earned,
        effects: effects_text(effects)?,
        answer: answer_text(row)?,
        row_mac: Blob::default(),
        mac_key_id: String::new(),
    })
}

/// Stands for "a card with this number exists" where a decision only asks that.
fn placeholder(card_no: &str, like: &CardState) -> CardState {
    CardState {
        card_no: card_no.to_owned(),
        ..like.clone()
    }
}

/// The tender a posting names (`balance` when it names none).
fn tender_of(p: &PostingReq) -> Tender {
    match &p.op {
        PostingOp::Debit { payment, .. } | PostingOp::VisitsAdd { payment, .. } => payment.tender(),
        PostingOp::Topup { tender, .. } => *tender,
        _ => Tender::Balance,
    }
}

fn tender_text(t: Tender) -> &'static str {
    match t {
        Tender::Cash => "cash",
        Tender::Balance => "balance",
        Tender::Split => "split",
    }
}

/// Cash that crossed the counter (protocol.md §6.1 `settlement`'s `cash`):
/// a sale (or a split sale's cash leg) or top-up paid in cash in, a refund,
/// reverse or close paid out.
fn cash_moved(p: &PostingReq, plan: &Plan) -> Decimal {
    let a = &plan.answer;
    match &p.op {
        PostingOp::Debit {
            payment: Payment::Cash,
            ..
        }
        | PostingOp::VisitsAdd {
            payment: Payment::Cash,
            ..
        } => a.charged.amount(),
        PostingOp::Debit {
            payment: Payment::Split { cash },
            ..
        }
        | PostingOp::VisitsAdd {
            payment: Payment::Split { cash },
            ..
        } => cash.amount(),
        PostingOp::Topup {
            tender: Tender::Cash,
            ..
        } => a.amount.amount(),
        _ => -a.cash_out.amount(),
    }
}

fn detail(req: &Request, p: &PostingReq, plan: &Plan, orig: Option<&OrigRow>) -> Detail {
    let cash = cash_moved(p, plan);
    let mut d = Detail {
        cash: (!cash.is_zero()).then(|| cash.to_string()),
        operator: req.operator.id().map(str::to_owned),
        ..Detail::default()
    };
    match &p.op {
        PostingOp::Debit { .. } | PostingOp::Topup { .. } => {
            d.tender = Some(tender_text(tender_of(p)).into());
        }
        PostingOp::VisitsAdd { service, .. } => {
            d.tender = Some(tender_text(tender_of(p)).into());
            d.service = Some(service.clone());
        }
        PostingOp::Visit { service, .. } => d.service = Some(service.clone()),
        PostingOp::Points { reason, .. } => d.reason = Some(reason.clone()),
        PostingOp::Redeem { gift, .. } => d.gift = Some(gift.clone()),
        _ => {}
    }
    if let Some(o) = orig {
        // A refund or reverse is settled in its original's tender.
        d.tender = Some(o.tender.clone());
        d.original = Some(OriginalRef {
            terminal: o.terminal.clone(),
            order_no: o.order_no.clone(),
        });
    }
    d
}

//! A posting's decision and what it writes: the pure rules of
//! [`crate::ledger`] applied to the rows `execute` loaded and locked, and
//! the plan turned into the rows of [`Writes`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::crypto::keyed_hash::{keyed_hash, random_salt, DOMAIN_CARD_PIN};
use crate::error::{Error, Result};
use crate::ledger::request::{money_text, posting_row, status_text, Request, RowContext};
use crate::ledger::{
    business_day, decide_close, decide_debit, decide_points, decide_redeem, decide_refund,
    decide_register, decide_replace, decide_reverse, decide_status, decide_topup, decide_transfer,
    CardChange, CardState, CardStatus, CloseReq, DebitReq, LedgerConfig, Level, Lot, MemberRef,
    Money, OpKind, Original, Pin, PinSource, Plan, PointsReq, RedeemReq, RefundReq, Refusal,
    RegisterReq, ReplaceReq, ReverseReq, StatusOp, Tender, TopupReq, TransferReq,
};
use crate::protocol::errno::Errno;
use crate::protocol::xml::Row;
use crate::store::txn::{TxnContext, TxnEnv};

use super::rows::*;
use super::writes::Writes;

/// What a posting's decision reads: the request and the rows loaded and
/// locked for it, points already expired.
pub(super) struct Loaded<'a> {
    pub(super) env: &'a TxnEnv,
    pub(super) req: &'a Request,
    pub(super) cfg: &'a LedgerConfig,
    pub(super) now: DateTime<Utc>,
    pub(super) rows: &'a BTreeMap<String, CardRow>,
    pub(super) states: &'a BTreeMap<String, CardState>,
    pub(super) lots: &'a BTreeMap<String, Vec<Lot>>,
    pub(super) new_exists: bool,
    pub(super) level: Option<&'a LevelRow>,
    pub(super) original: Option<&'a Original>,
    pub(super) order_no: &'a str,
    /// Taken by the load for a register, so the member's MAC can cover it.
    pub(super) new_member_id: Option<i64>,
}

impl Loaded<'_> {
    fn card(&self, no: &str) -> std::result::Result<&CardState, Errno> {
        self.states.get(no).ok_or(Errno::CardNotFound)
    }

    fn pin_of(&self, no: &str) -> Result<Pin> {
        match self.rows.get(no) {
            Some(r) => r.pin(self.env, self.req.pin.as_deref()),
            None => Ok(Pin::Absent),
        }
    }
}

/// The pure decision of a posting op: a plan, or a refusal.
pub(super) fn decide_posting(x: &Loaded<'_>) -> Result<std::result::Result<Plan, Refusal>> {
    Ok(match x.req.op {
        OpKind::Register => {
            if x.new_exists {
                Err(Errno::CardInUse.into())
            } else {
                let lv = x
                    .level
                    .map(|l| -> Result<Level> {
                        Ok(Level {
                            name: l.level.clone(),
                            discount: dec(&l.discount)?,
                            points_rate: dec(&l.points_rate)?,
                        })
                    })
                    .transpose()?;
                decide_register(
                    None,
                    lv.as_ref(),
                    &RegisterReq {
                        order_no: x.order_no.to_owned(),
                        card_no: x.req.attr1.clone(),
                        member: need(x.req.member.clone())?,
                        level: x.req.level.clone().unwrap_or_default(),
                        pin_set: x.req.pin.is_some(),
                    },
                )
            }
        }
        OpKind::Reverse | OpKind::Refund => {
            let o = need(x.original)?;
            let with_lots: Vec<(&CardState, &[Lot])> = o
                .effects
                .iter()
                .filter_map(|e| {
                    let st = x.states.get(&e.card_no)?;
                    Some((st, x.lots.get(&e.card_no).map_or(&[][..], |v| v.as_slice())))
                })
                .collect();
            if x.req.op == OpKind::Reverse {
                let today = business_day(x.now, &x.env.config.business.offset());
                decide_reverse(
                    o,
                    &with_lots,
                    &ReverseReq {
                        order_no: x.order_no.to_owned(),
                    },
                    today,
                )
            } else {
                match (o.effects.first(), x.req.amount) {
                    (Some(e), Some(amount)) => match x.states.get(&e.card_no) {
                        Some(st) => decide_refund(
                            o,
                            st,
                            x.lots.get(&e.card_no).map_or(&[][..], |v| v.as_slice()),
                            &RefundReq {
                                order_no: x.order_no.to_owned(),
                                amount,
                            },
                            x.now,
                        ),
                        None => Err(Errno::CardNotFound.into()),
                    },
                    _ => Err(Errno::OriginalNotFound.into()),
                }
            }
        }
        _ => match x.card(&x.req.attr1) {
            Err(e) => Err(e.into()),
            Ok(st) => {
                let card_lots = x.lots.get(&x.req.attr1).map_or(&[][..], |v| v.as_slice());
                let pin = x.pin_of(&x.req.attr1)?;
                match x.req.op {
                    OpKind::Debit => decide_debit(
                        x.cfg,
                        st,
                        &DebitReq {
                            order_no: x.order_no.to_owned(),
                            sale: need(x.req.amount)?,
                            tender: x.req.tender,
                            pin,
                        },
                        x.now,
                    ),
                    OpKind::Topup => decide_topup(
                        x.cfg,
                        st,
                        &TopupReq {
                            order_no: x.order_no.to_owned(),
                            amount: need(x.req.amount)?,
                        },
                    ),
                    OpKind::Points => decide_points(
                        x.cfg,
                        st,
                        card_lots,
                        &PointsReq {
                            order_no: x.order_no.to_owned(),
                            delta: need(x.req.delta)?,
                            reason: x.req.reason.clone().unwrap_or_default(),
                        },
                        x.now,
                    ),
                    OpKind::Redeem => decide_redeem(
                        st,
                        card_lots,
                        &RedeemReq {
                            order_no: x.order_no.to_owned(),
                            cost: need(x.req.cost)?,
                            gift: x.req.gift.clone().unwrap_or_default(),
                            pin,
                        },
                        x.now,
                    ),
                    OpKind::Transfer => {
                        let to_no = need(x.req.to.clone())?;
                        if to_no == x.req.attr1 {
                            Err(Errno::Malformed.into())
                        } else {
                            match x.card(&to_no) {
                                Err(e) => Err(e.into()),
                                Ok(to) => decide_transfer(
                                    st,
                                    to,
                                    &TransferReq {
                                        order_no: x.order_no.to_owned(),
                                        amount: need(x.req.amount)?,
                                        pin,
                                    },
                                ),
                            }
                        }
                    }
                    OpKind::Lost | OpKind::Found | OpKind::Lock | OpKind::Unlock => {
                        let sop = match x.req.op {
                            OpKind::Lost => StatusOp::Lost,
                            OpKind::Found => StatusOp::Found,
                            OpKind::Lock => StatusOp::Lock,
                            _ => StatusOp::Unlock,
                        };
                        decide_status(st, sop, x.order_no)
                    }
                    OpKind::Replace => {
                        let new_no = need(x.req.new_card.clone())?;
                        let placeholder = x.new_exists.then(|| placeholder(&new_no, st));
                        decide_replace(
                            st,
                            card_lots,
                            placeholder.as_ref(),
                            &ReplaceReq {
                                order_no: x.order_no.to_owned(),
                                new_card_no: new_no,
                            },
                        )
                    }
                    OpKind::Close => decide_close(
                        st,
                        card_lots,
                        &CloseReq {
                            order_no: x.order_no.to_owned(),
                            pin,
                        },
                    ),
                    _ => Err(Errno::Internal.into()),
                }
            }
        },
    })
}

/// Everything a decided posting writes, and its answer row.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_writes(
    x: &Loaded<'_>,
    ctx: &TxnContext,
    txn_id: i64,
    plan: &Plan,
    expiries: &[CardChange],
    lot_ids: Vec<i64>,
    orig: Option<&OrigRow>,
    operator_reset: bool,
) -> Result<(Writes, Row)> {
    let mut w = Writes::new(ctx, x.now, txn_id, x.env);
    for c in expiries {
        w.posting(c, OpKind::Expire, None, None, &[]);
    }
    let mut ids = lot_ids.into_iter();
    let mut effects = Vec::with_capacity(plan.cards.len());
    let detail = detail_json(x.req, orig);
    for c in &plan.cards {
        let created: Vec<i64> = (0..c.lots_created.len())
            .map(|_| ids.next())
            .collect::<Option<_>>()
            .ok_or_else(|| Error::internal("not enough lot ids"))?;
        w.posting(c, plan.op, Some(x.order_no), Some(plan), &created);
        w.posting_detail(detail.clone());
        for (n, id) in c.lots_created.iter().zip(&created) {
            w.new_lot(&c.card_no, *id, n.points, n.expires_at);
        }
        effects.push(c.effect(&created));
    }
    // New card first: its row gets the final values of its changes.
    if let Some(nc) = &plan.new_card {
        let (hash, salt) = match &nc.pin {
            PinSource::None => (None, None),
            PinSource::FromRequest => {
                let pin = need(x.req.pin.as_deref())?;
                let salt = random_salt();
                let h = keyed_hash(&x.env.hash_key, DOMAIN_CARD_PIN, &salt, pin.as_bytes());
                (Some(hex::encode(h)), Some(hex::encode(salt)))
            }
            PinSource::CopyFrom(old) => {
                let r = need(x.rows.get(old))?;
                (r.pin_hash.clone(), r.pin_salt.clone())
            }
        };
        let last = plan.cards.iter().rev().find(|c| c.card_no == nc.card_no);
        let member_id = match &nc.member {
            MemberRef::New(m) => {
                let id = need(x.new_member_id)?;
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
        w.new_cards.push(json!({
            "card_no": nc.card_no,
            "member_id": member_id,
            "status": status_text(last.and_then(|c| c.status).unwrap_or(CardStatus::Active)),
            "balance": money_text(last.map_or(Money::ZERO, |c| c.new_balance)),
            "points": last.map_or(0, |c| c.new_points),
            "pin_hash": hash, "pin_salt": salt, "at": x.now.to_rfc3339(),
        }));
    }
    let mut all: Vec<CardChange> = expiries.to_vec();
    all.extend(
        plan.cards
            .iter()
            .filter(|c| plan.new_card.as_ref().map(|n| &n.card_no) != Some(&c.card_no))
            .cloned(),
    );
    w.fold_cards(&all, x.rows, None)?;

    let answer_row = plan.answer.clone().into_row(txn_id, x.now, false);
    let first_status = plan.cards.first().and_then(|c| {
        c.status
            .or_else(|| x.states.get(&c.card_no).map(|s| s.status))
    });
    let row = posting_row(
        plan,
        &answer_row,
        &RowContext {
            req: x.req,
            status: first_status,
            orig_terminal: orig.map(|o| o.terminal.as_str()),
        },
    );
    let points_earned = if plan.op == OpKind::Debit {
        plan.cards.first().map_or(0, |c| c.points_delta.max(0))
    } else {
        0
    };
    w.order = Some(json!({
        "terminal_id": ctx.terminal,
        "order_no": x.order_no,
        "card_no": plan.answer.card,
        "cards": plan.cards.iter().map(|c| c.card_no.clone()).collect::<Vec<_>>(),
        "txn_id": txn_id,
        "business_day": w.business_day.to_string(),
        "posted_at": x.now.to_rfc3339(),
        "amount": money_text(plan.answer.amount),
        "charged": money_text(plan.answer.charged),
        "tender": if x.req.tender == Tender::Cash { "cash" } else { "balance" },
        "points_earned": points_earned,
        "effects": effects.iter().map(effect_json).collect::<Vec<_>>(),
        "answer": row_to_json(&row),
    }));
    if let (Some(u), Some(o)) = (&plan.original, orig) {
        w.orig = Some(json!({
            "terminal_id": o.terminal, "order_no": u.order_no,
            "reversed": u.mark_reversed, "refunded_add": money_text(u.refunded_add),
            "taken_add": u.points_taken_back_add,
        }));
    }
    if operator_reset {
        w.operator_reset = Some(json!({
            "store_id": ctx.store_id, "operator_id": x.req.operator,
        }));
    }
    Ok((w, row))
}

/// Stands for "a card with this number exists" where a decision only asks that.
fn placeholder(card_no: &str, like: &CardState) -> CardState {
    CardState {
        card_no: card_no.to_owned(),
        ..like.clone()
    }
}

fn detail_json(req: &Request, orig: Option<&OrigRow>) -> Value {
    let mut d = serde_json::Map::new();
    if req.op == OpKind::Debit || req.op == OpKind::Topup {
        let t = if req.tender == Tender::Cash {
            "cash"
        } else {
            "balance"
        };
        d.insert("tender".into(), t.into());
    }
    if let Some(r) = &req.reason {
        d.insert("reason".into(), r.clone().into());
    }
    if let Some(g) = &req.gift {
        d.insert("gift".into(), g.clone().into());
    }
    if let Some(o) = orig {
        d.insert(
            "original".into(),
            json!({"terminal": o.terminal, "order_no": o.order_no}),
        );
    }
    if let Some(op) = &req.operator {
        d.insert("operator".into(), op.clone().into());
    }
    Value::Object(d)
}

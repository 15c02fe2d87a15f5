//! register, lost, found, lock, unlock, replace, close, and the checks of the
//! reading ops.

use super::lots::{Lot, LotTake, NewLot};
use super::money::Money;
use super::plan::{
    check_pin, require_active, Answer, CardChange, CardState, CardStatus, Decision, MemberRef,
    NewCard, NewMember, OpKind, Pin, PinSource, Plan, Refusal,
};
use super::rules::Level;
use crate::protocol::errno::Errno;

/// `query`, `member`, `history`: only an active card answers (lost 2002,
/// locked or closed 2003, so a locked card cannot be guessed at through a
/// read), after its PIN. Ok gives the PIN counter to write, if any.
pub fn check_read(card: &CardState, pin: Pin) -> Result<Option<u32>, Refusal> {
    require_active(card)?;
    check_pin(card, pin)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterReq {
    pub order_no: String,
    pub card_no: String,
    pub member: NewMember,
    pub level: String,
    /// Whether the request carries a `pin` to hash.
    pub pin_set: bool,
    /// An import's opening balance and points (its points one lot, expiring
    /// at `points_expire_at`): the posting is then an `import`.
    pub opening: Option<crate::ledger::request::Opening>,
    pub points_expire_at: Option<crate::ledger::lots::Ts>,
}

/// A card number in use (by any card, closed ones too) is 2012; a level the
/// store does not know is 1001.
pub fn decide_register(
    existing: Option<&CardState>,
    level: Option<&Level>,
    req: &RegisterReq,
) -> Decision {
    if existing.is_some() {
        return Err(Errno::CardInUse.into());
    }
    let level = level.ok_or(Errno::Malformed)?;
    level.validate()?;
    let card = fresh_card(&req.card_no, 0, level.clone(), req.pin_set);
    let (op, change) = match req.opening {
        None => (OpKind::Register, CardChange::unchanged(&card)),
        Some(o) => {
            let mut c = CardChange::build(&card, o.balance.amount(), o.points)?;
            if o.points > 0 {
                c.lots_created.push(crate::ledger::lots::NewLot::points(
                    o.points,
                    req.points_expire_at,
                ));
            }
            (OpKind::Import, c)
        }
    };
    let mut plan = Plan::single(&req.order_no, op, change);
    if let Some(o) = req.opening {
        plan.answer.amount = o.balance;
        plan.answer.charged = o.balance;
    }
    plan.new_card = Some(NewCard {
        card_no: req.card_no.clone(),
        member: MemberRef::New(req.member.clone()),
        level: level.name.clone(),
        pin: if req.pin_set {
            PinSource::FromRequest
        } else {
            PinSource::None
        },
    });
    Ok(plan)
}

/// A card as inserted: active, nothing on it.
fn fresh_card(card_no: &str, member_id: i64, level: Level, has_pin: bool) -> CardState {
    CardState {
        card_no: card_no.to_owned(),
        member_id,
        status: CardStatus::Active,
        balance: Money::ZERO,
        points: 0,
        level,
        pin_fail_count: 0,
        has_pin,
        member_until: None,
        spent_today: crate::ledger::Money::ZERO,
        held: crate::ledger::Money::ZERO,
        active_holds: 0,
        visits: 0,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOp {
    Lost,
    Found,
    Lock,
    Unlock,
}

/// `lost` Active→Lost, `found` Lost→Active, `lock` Active→Locked, `unlock`
/// Locked→Active (and clears the PIN counter). An op whose target is the
/// current status succeeds and changes nothing, so a repeated click is
/// harmless; from any other status it answers that status's errno (lost
/// 2002, locked or closed 2003). A lost card is not locked nor a locked
/// card reported lost: each state is lifted by its own op first.
pub fn decide_status(card: &CardState, op: StatusOp, order_no: &str) -> Decision {
    use CardStatus::*;
    let (kind, from, to) = match op {
        StatusOp::Lost => (OpKind::Lost, Active, Lost),
        StatusOp::Found => (OpKind::Found, Lost, Active),
        StatusOp::Lock => (OpKind::Lock, Active, Locked),
        StatusOp::Unlock => (OpKind::Unlock, Locked, Active),
    };
    let mut c = CardChange::unchanged(card);
    if card.status == from {
        c.status = Some(to);
    } else if card.status != to {
        require_active(card)?;
    }
    if op == StatusOp::Unlock && card.pin_fail_count > 0 {
        c.pin_fail_count = Some(0);
    }
    Ok(Plan::single(order_no, kind, c))
}

/// Takes every lot that still holds points, expired or not. The lots must add
/// up to the card's points, or the rows disagree (3003).
fn take_all(card: &CardState, lots: &[Lot]) -> Result<Vec<LotTake>, Errno> {
    let takes: Vec<LotTake> = lots
        .iter()
        .filter(|l| l.points_left > 0)
        .map(|l| LotTake {
            lot_id: l.id,
            points: l.points_left,
        })
        .collect();
    if crate::ledger::lots::totals(lots) != (card.points, card.visits) {
        return Err(Errno::Internal);
    }
    Ok(takes)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplaceReq {
    pub order_no: String,
    pub new_card_no: String,
}

/// The member's balance, points and lots (with their expiry dates) move to a
/// new card, and the old card is closed. An active card or a lost one (the
/// usual reason to replace) can be replaced; a locked or closed one cannot
/// (2003); one with active holds is 2017. A new number already in use is 2012. The answer is about the new
/// card: `cards[0]` is the new card, `cards[1]` the old.
pub fn decide_replace(
    old: &CardState,
    old_lots: &[Lot],
    new_existing: Option<&CardState>,
    req: &ReplaceReq,
) -> Decision {
    if old.status != CardStatus::Lost {
        require_active(old)?;
    }
    old.without_holds()?;
    if new_existing.is_some() || req.new_card_no == old.card_no {
        return Err(Errno::CardInUse.into());
    }
    let takes = take_all(old, old_lots)?;
    let mut out = CardChange::build(old, -old.balance.amount(), -old.points)?
        .with_visits(old, -old.visits)?;
    out.status = Some(CardStatus::Closed);
    let fresh = fresh_card(
        &req.new_card_no,
        old.member_id,
        old.level.clone(),
        old.has_pin,
    );
    let mut into = CardChange::build(&fresh, old.balance.amount(), old.points)?
        .with_visits(&fresh, old.visits)?;
    into.lots_created = old_lots
        .iter()
        .filter(|l| l.points_left > 0)
        .map(|l| NewLot {
            points: l.points_left,
            expires_at: l.expires_at,
            service: l.service.clone(),
        })
        .collect();
    out.lots_taken = takes;
    let mut answer = Answer::for_change(&req.order_no, OpKind::Replace, &into);
    answer.amount = old.balance;
    Ok(Plan {
        op: OpKind::Replace,
        new_card: Some(NewCard {
            card_no: req.new_card_no.clone(),
            member: MemberRef::Existing(old.member_id),
            level: old.level.name.clone(),
            pin: if old.has_pin {
                PinSource::CopyFrom(old.card_no.clone())
            } else {
                PinSource::None
            },
        }),
        cards: vec![into, out],
        original: None,
        hold: None,
        answer,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReq {
    pub order_no: String,
    pub pin: Pin,
}

/// The card is returned: its balance is paid out in cash (`cash_out`) and
/// zeroed by this posting, so the balance still equals the sum of its
/// postings; its points and visits are forfeited (no money comes back for
/// them: reverse an unused `visits_add` first to refund it; a closed card
/// cannot spend them). Only an active card (lost 2002: replace it instead)
/// without active holds (2017, after its PIN).
pub fn decide_close(card: &CardState, lots: &[Lot], req: &CloseReq) -> Decision {
    require_active(card)?;
    let pin_reset = check_pin(card, req.pin)?;
    card.without_holds()?;
    let takes = take_all(card, lots)?;
    let mut c = CardChange::build(card, -card.balance.amount(), -card.points)?
        .with_visits(card, -card.visits)?;
    c.lots_taken = takes;
    c.status = Some(CardStatus::Closed);
    c.pin_fail_count = pin_reset;
    let mut plan = Plan::single(&req.order_no, OpKind::Close, c);
    plan.answer.amount = card.balance;
    plan.answer.cash_out = card.balance;
    Ok(plan)
}

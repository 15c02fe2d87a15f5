//! hold, capture, void and the store's `hold_expire` (protocol.md §6.2).
//!
//! A hold keeps money on the card without taking it: the balance stays,
//! `available` (the balance less what active holds keep) falls, and every
//! spend takes from `available` ([`CardChange::build_held`]). Its order
//! keeps the terms it was placed at ([`HoldTerms`]) and whether it was
//! released; the card keeps the sum it holds under its MAC. A hold past its
//! expiry no longer counts: the load leaves it out before any decision and
//! posts its release ([`expire_holds`]), so no job has to run for
//! `available` to be right.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::lots::{lot_expiry, NewLot, Ts};
use super::money::Money;
use super::plan::{
    check_pin, require_active, Answer, CardChange, CardState, Decision, HoldAnswer, HoldRef,
    HoldTerms, LedgerConfig, OpKind, Original, OriginalUpdate, Pin, Plan,
};
use super::rules::{debit_amounts, points_earned, Level};
use crate::protocol::errno::Errno;

/// Active holds one card may have at once: a till that forgets to capture
/// cannot pile up rows the card's every load reads (2016 past it).
pub const MAX_ACTIVE_HOLDS: u32 = 32;

/// An active hold on a card as the store loaded it (its order row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveHold {
    pub hold: HoldRef,
    /// What it keeps: the sale after the discount at the time.
    pub amount: Money,
    pub business_day: NaiveDate,
    pub expires_at: Ts,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldReq {
    pub order_no: String,
    pub sale: Money,
    pub pin: Pin,
    pub expires_s: u32,
}

/// The sale after the level's discount (none once the membership lapsed)
/// is kept from `available` (2004 if short) until `expires_s` from now. It
/// counts toward today's debit limit when placed (2016), and its capture
/// does not count again.
pub fn decide_hold(card: &CardState, req: &HoldReq, now: Ts) -> Decision {
    require_active(card)?;
    let pin_reset = check_pin(card, req.pin)?;
    if card.active_holds >= MAX_ACTIVE_HOLDS {
        return Err(Errno::OverLimit.into());
    }
    let level = card.pricing_level(now);
    let (discount, charged) = debit_amounts(req.sale, &level)?;
    let mut c = CardChange::build_held(card, Decimal::ZERO, 0, charged.amount())?;
    card.within_daily_limit(charged)?;
    c.day_spend = charged.amount();
    c.pin_fail_count = pin_reset;
    let expires_at = now + chrono::Duration::seconds(i64::from(req.expires_s));
    let available = c
        .new_balance
        .checked_sub(c.new_held)
        .ok_or(Errno::Internal)?;
    let mut plan = Plan::single(&req.order_no, OpKind::Hold, c);
    plan.answer.amount = req.sale;
    plan.answer.discount = discount;
    plan.answer.charged = charged;
    plan.answer.hold = Some(HoldAnswer {
        available,
        expires_at,
    });
    plan.hold = Some(HoldTerms {
        expires_at,
        discount: level.discount,
        points_rate: level.points_rate,
    });
    Ok(plan)
}

/// The hold an order names, if it is one still to be honoured: an order of
/// another op is no hold (2007); one captured, voided or past its expiry is
/// spent (2008).
fn live_hold(original: &Original, card: &CardState, now: Ts) -> Result<(HoldTerms, Money), Errno> {
    let terms = match (original.op, original.hold) {
        (OpKind::Hold, Some(t)) => t,
        _ => return Err(Errno::OriginalNotFound),
    };
    if original.effects.first().map(|e| e.card_no.as_str()) != Some(card.card_no.as_str()) {
        return Err(Errno::Internal);
    }
    if original.reversed || terms.expires_at <= now {
        return Err(Errno::AlreadyReversed);
    }
    Ok((terms, original.charged))
}

/// What releasing `held` of a hold placed on `placed_on` gives back to
/// today's daily count: what was not taken, when it was counted today.
fn day_give_back(placed_on: NaiveDate, today: NaiveDate, released: Money) -> Decimal {
    if placed_on == today {
        -released.amount()
    } else {
        Decimal::ZERO
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureReq {
    pub order_no: String,
    pub amount: Money,
}

/// A debit of `amount` (at most the hold's sale; 2010 past it or at zero)
/// against an active hold, priced at the hold's terms and earning points as
/// a debit; the whole hold is released. Honoured whatever happened to the
/// card since (its status, level or membership): the money was kept for it.
pub fn decide_capture(
    cfg: &LedgerConfig,
    original: &Original,
    card: &CardState,
    req: &CaptureReq,
    (now, today): (Ts, NaiveDate),
) -> Decision {
    let (terms, held) = live_hold(original, card, now)?;
    if req.amount.is_zero() || req.amount > original.amount {
        return Err(Errno::InvalidAmount.into());
    }
    let level = Level {
        name: card.level.name.clone(),
        discount: terms.discount,
        points_rate: terms.points_rate,
        limits: card.level.limits,
    };
    let (discount, charged) = debit_amounts(req.amount, &level)?;
    let earned = points_earned(charged, &level)?;
    // At most the sale at the same rate: never more than was held.
    let unused = held.checked_sub(charged).ok_or(Errno::Internal)?;
    let mut c = CardChange::build_held(card, -charged.amount(), earned, -held.amount())?;
    c.day_spend = day_give_back(original.business_day, today, unused);
    if earned > 0 {
        c.lots_created.push(NewLot::points(
            earned,
            lot_expiry(now, cfg.points_expiry_months),
        ));
    }
    let mut plan = Plan::single(&req.order_no, OpKind::Capture, c);
    plan.answer.amount = req.amount;
    plan.answer.discount = discount;
    plan.answer.charged = charged;
    plan.original = Some(released(original));
    Ok(plan)
}

fn released(original: &Original) -> OriginalUpdate {
    OriginalUpdate {
        order_no: original.order_no.clone(),
        mark_reversed: true,
        refunded_add: Money::ZERO,
        points_taken_back_add: 0,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoidReq {
    pub order_no: String,
}

/// An active hold released untaken; its row's `amount` is what was held.
pub fn decide_void(
    original: &Original,
    card: &CardState,
    req: &VoidReq,
    (now, today): (Ts, NaiveDate),
) -> Decision {
    let (_, held) = live_hold(original, card, now)?;
    let mut c = CardChange::build_held(card, Decimal::ZERO, 0, -held.amount())?;
    c.day_spend = day_give_back(original.business_day, today, held);
    let mut plan = Plan::single(&req.order_no, OpKind::Void, c);
    plan.answer.amount = held;
    plan.original = Some(released(original));
    Ok(plan)
}

/// The release of every hold on `card` past its expiry at `now`, as one
/// `hold_expire` change (`None` when there is none). What a hold placed
/// today kept is given back to today's count.
pub fn expire_holds(
    card: &CardState,
    holds: &[ActiveHold],
    now: Ts,
    today: NaiveDate,
) -> Result<Option<CardChange>, Errno> {
    let expired: Vec<&ActiveHold> = holds.iter().filter(|h| h.expires_at <= now).collect();
    if expired.is_empty() {
        return Ok(None);
    }
    let mut held = Decimal::ZERO;
    let mut give_back = Decimal::ZERO;
    for h in &expired {
        held += h.amount.amount();
        give_back += day_give_back(h.business_day, today, h.amount);
    }
    let mut c = CardChange::build_held(card, Decimal::ZERO, 0, -held)?;
    c.day_spend = give_back;
    c.holds_expired = expired.iter().map(|h| h.hold.clone()).collect();
    Ok(Some(c))
}

/// The answer of a `hold_expire` posting, for its row in the history.
pub fn expiry_answer(c: &CardChange) -> Answer {
    let mut a = Answer::for_change("", OpKind::HoldExpire, c);
    a.amount = Money::new(-c.held_delta).unwrap_or(Money::ZERO);
    a
}

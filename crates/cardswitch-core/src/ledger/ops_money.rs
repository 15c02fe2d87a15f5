//! debit, topup, refund, transfer, reverse.

use chrono::NaiveDate;

use super::lots::{lot_expiry, spend, Lot, LotTake, NewLot, Ts};
use super::money::Money;
use super::plan::{
    check_pin, require_active, Answer, CardChange, CardState, Decision, LedgerConfig, OpKind,
    Original, OriginalUpdate, Payment, Pin, Plan, Refusal, SplitLegs,
};
use super::rules::{debit_amounts, points_earned, refund_points, topup_bonus};
use crate::protocol::errno::Errno;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitReq {
    pub order_no: String,
    pub sale: Money,
    pub payment: Payment,
    pub pin: Pin,
}

/// Level discount on the sale (none, and no points, once the membership has
/// lapsed: [`CardState::pricing_level`]); with tender `balance` the charge leaves the
/// balance (2004 if short), with `cash` the balance is untouched, with
/// `split` the cash leg is paid at the counter and the rest leaves the
/// balance. Points are earned on the whole charge whatever the tender, as a
/// new lot.
pub fn decide_debit(cfg: &LedgerConfig, card: &CardState, req: &DebitReq, now: Ts) -> Decision {
    require_active(card)?;
    let pin_reset = check_pin(card, req.pin)?;
    let level = card.pricing_level(now);
    let (discount, charged) = debit_amounts(req.sale, &level)?;
    let earned = points_earned(charged, &level)?;
    let (from_balance, split) = payment_legs(req.payment, charged)?;
    let mut c = CardChange::build(card, -from_balance.amount(), earned)?;
    card.within_daily_limit(from_balance)?;
    c.day_spend = from_balance.amount();
    if earned > 0 {
        c.lots_created.push(NewLot::points(
            earned,
            lot_expiry(now, cfg.points_expiry_months),
        ));
    }
    c.pin_fail_count = pin_reset;
    let mut plan = Plan::single(&req.order_no, OpKind::Debit, c);
    plan.answer.amount = req.sale;
    plan.answer.discount = discount;
    plan.answer.charged = charged;
    plan.answer.split = split;
    Ok(plan)
}

/// What a charge takes from the balance, and a split's two legs. A cash leg
/// above the charge is 2010 (protocol.md §6.2).
pub(super) fn payment_legs(
    payment: Payment,
    charged: Money,
) -> Result<(Money, Option<SplitLegs>), Errno> {
    match payment {
        Payment::Balance => Ok((charged, None)),
        Payment::Cash => Ok((Money::ZERO, None)),
        Payment::Split { cash } => {
            let from_balance = charged.checked_sub(cash).ok_or(Errno::InvalidAmount)?;
            Ok((from_balance, Some(SplitLegs { cash, from_balance })))
        }
    }
}

/// A refund's way back: to the balance first, up to what the debit took
/// from it less what earlier refunds gave back there (they went the same
/// way), and the rest in cash. A balance debit is thus refunded to the
/// balance, a cash debit in cash, and a split debit to its balance leg first.
fn refund_legs(original: &Original, amount: Money) -> Result<(Money, Money), Errno> {
    let from_balance = original.taken_from_balance()?;
    let given_back = from_balance.min(original.refunded);
    let room = from_balance
        .checked_sub(given_back)
        .ok_or(Errno::Internal)?;
    let to_balance = amount.min(room);
    let cash = amount.checked_sub(to_balance).ok_or(Errno::Internal)?;
    Ok((to_balance, cash))
}

/// The top-up's `tender` (how the customer paid the shop) is recorded by the
/// store and changes no rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopupReq {
    pub order_no: String,
    pub amount: Money,
}

/// Balance up by the amount plus the bonus of the highest rule reached. A
/// balance that would pass the column's maximum is 2010, the level's cap
/// 2016.
pub fn decide_topup(cfg: &LedgerConfig, card: &CardState, req: &TopupReq) -> Decision {
    require_active(card)?;
    if req.amount.is_zero() {
        return Err(Errno::InvalidAmount.into());
    }
    let bonus = topup_bonus(req.amount, &cfg.bonus_rules);
    let credit = req.amount.checked_add(bonus).ok_or(Errno::InvalidAmount)?;
    let mut c = CardChange::build(card, credit.amount(), 0)?;
    card.within_balance_cap(c.new_balance)?;
    c.renews_membership = true;
    let mut plan = Plan::single(&req.order_no, OpKind::Topup, c);
    plan.answer.amount = req.amount;
    plan.answer.charged = req.amount;
    plan.answer.bonus = bonus;
    Ok(plan)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReq {
    pub order_no: String,
    pub amount: Money,
}

/// Part or all of a debit given back. Only a debit can be refunded (2007
/// otherwise), not a reversed one (2008), never past its charge in total
/// (2008). The money goes back the way it came ([`refund_legs`]): to the
/// balance, in cash (`cash_out`), or both for a split debit. Points earned are taken back in
/// proportion ([`refund_points`]) from the card's live lots in spending order;
/// if the customer has already spent them the refund is refused with 2005
/// rather than letting the card keep points for money it got back.
pub fn decide_refund(
    original: &Original,
    card: &CardState,
    lots: &[Lot],
    req: &RefundReq,
    now: Ts,
) -> Decision {
    // A capture is a debit against a hold (protocol.md §6.2).
    if !matches!(original.op, OpKind::Debit | OpKind::Capture) {
        return Err(Errno::OriginalNotFound.into());
    }
    if original.effects.first().map(|e| e.card_no.as_str()) != Some(card.card_no.as_str()) {
        return Err(Errno::Internal.into());
    }
    if original.reversed {
        return Err(Errno::AlreadyReversed.into());
    }
    if req.amount.is_zero() {
        return Err(Errno::InvalidAmount.into());
    }
    let total = original
        .refunded
        .checked_add(req.amount)
        .ok_or(Errno::AlreadyReversed)?;
    if total > original.charged {
        return Err(Errno::AlreadyReversed.into());
    }
    require_active(card)?;
    let take = refund_points(
        req.amount,
        original.refunded,
        original.charged,
        original.points_earned,
        original.points_taken_back,
    );
    let takes = spend(lots, take, now)?;
    let (to_balance, cash_out) = refund_legs(original, req.amount)?;
    let mut c = CardChange::build(card, to_balance.amount(), -take)?;
    c.lots_taken = takes;
    let mut plan = Plan::single(&req.order_no, OpKind::Refund, c);
    plan.answer.amount = req.amount;
    plan.answer.cash_out = cash_out;
    plan.original = Some(OriginalUpdate {
        order_no: original.order_no.clone(),
        mark_reversed: false,
        refunded_add: req.amount,
        points_taken_back_add: take,
    });
    Ok(plan)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferReq {
    pub order_no: String,
    pub amount: Money,
    /// The PIN of the `from` card.
    pub pin: Pin,
}

/// Balance moved from one active card to another: the two deltas sum to
/// zero. It counts toward the `from` card's daily limit and may not take the
/// `to` card past its cap (2016). The same card on both sides is 1001 (the request makes no sense, it
/// is no amount problem).
pub fn decide_transfer(from: &CardState, to: &CardState, req: &TransferReq) -> Decision {
    if from.card_no == to.card_no {
        return Err(Errno::Malformed.into());
    }
    require_active(from)?;
    require_active(to)?;
    let pin_reset = check_pin(from, req.pin)?;
    if req.amount.is_zero() {
        return Err(Errno::InvalidAmount.into());
    }
    let mut out = CardChange::build(from, -req.amount.amount(), 0)?;
    from.within_daily_limit(req.amount)?;
    out.day_spend = req.amount.amount();
    out.pin_fail_count = pin_reset;
    let into = CardChange::build(to, req.amount.amount(), 0)?;
    to.within_balance_cap(into.new_balance)?;
    let mut plan = Plan::single(&req.order_no, OpKind::Transfer, out);
    plan.cards.push(into);
    plan.answer.amount = req.amount;
    Ok(plan)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseReq {
    pub order_no: String,
}

/// A card an original touched, with its lots, as loaded by the store.
pub type CardWithLots<'a> = (&'a CardState, &'a [Lot]);

/// Undoes an original posting whole: every card's balance and points delta,
/// the points of the lots it created taken back from those very lots, the
/// points it took given back to the lots they came from (so expiry dates are
/// as before). Reversible: debit, topup, points, redeem, transfer (2007 for
/// any other op). Only on the original's business day, and only if it was
/// neither reversed nor refunded (2008 for all three; past its day a debit
/// is undone with `refund`). Every card must be active, and still hold what
/// is taken back (2004, 2005: a top-up already spent cannot be reversed).
pub fn decide_reverse(
    original: &Original,
    cards: &[CardWithLots<'_>],
    req: &ReverseReq,
    today: NaiveDate,
) -> Decision {
    let reversible = matches!(
        original.op,
        OpKind::Debit
            | OpKind::Topup
            | OpKind::Points
            | OpKind::Redeem
            | OpKind::Transfer
            | OpKind::Capture
            | OpKind::VisitsAdd
            | OpKind::Visit
    );
    if !reversible {
        return Err(Errno::OriginalNotFound.into());
    }
    if original.reversed
        || !original.refunded.is_zero()
        || original.points_taken_back != 0
        || original.business_day != today
    {
        return Err(Errno::AlreadyReversed.into());
    }
    let mut changes = Vec::with_capacity(original.effects.len());
    for e in &original.effects {
        let (card, lots) = cards
            .iter()
            .find(|(c, _)| c.card_no == e.card_no)
            .ok_or(Refusal::from(Errno::Internal))?;
        require_active(card)?;
        for t in &e.lots_created {
            let lot = lots
                .iter()
                .find(|l| l.id == t.lot_id)
                .ok_or(Errno::Internal)?;
            // Points earned and spent since: 2005; visits bought and used
            // since: the purchase is no longer whole (2008).
            if lot.points_left < t.points {
                return Err(match lot.service {
                    None => Errno::InsufficientPoints,
                    Some(_) => Errno::AlreadyReversed,
                }
                .into());
            }
        }
        if !e
            .lots_taken
            .iter()
            .all(|t| lots.iter().any(|l| l.id == t.lot_id))
        {
            return Err(Errno::Internal.into());
        }
        let mut c = CardChange::build(card, -e.balance_delta, -e.points_delta)?
            .with_visits(card, -e.visits_delta)?;
        // Undone whole: what it took from the balance today is given back
        // to the daily limit (a reverse is same-day only).
        if matches!(
            original.op,
            OpKind::Debit | OpKind::Transfer | OpKind::VisitsAdd
        ) && e.balance_delta.is_sign_negative()
        {
            c.day_spend = e.balance_delta;
        }
        c.lots_taken = e.lots_created.clone();
        c.lots_restored = e.lots_taken.clone();
        changes.push(c);
    }
    let first = changes.first().ok_or(Errno::Internal)?;
    let mut answer = Answer::for_change(&req.order_no, OpKind::Reverse, first);
    answer.amount = original.amount;
    answer.charged = original.charged;
    if matches!(
        original.op,
        OpKind::Debit | OpKind::Capture | OpKind::VisitsAdd
    ) {
        answer.discount = original
            .amount
            .checked_sub(original.charged)
            .ok_or(Errno::Internal)?;
        // What did not come from the balance was paid at the counter.
        answer.cash_out = original
            .charged
            .checked_sub(original.taken_from_balance()?)
            .ok_or(Errno::Internal)?;
    }
    Ok(Plan {
        op: OpKind::Reverse,
        new_card: None,
        cards: changes,
        original: Some(OriginalUpdate {
            order_no: original.order_no.clone(),
            mark_reversed: true,
            refunded_add: Money::ZERO,
            points_taken_back_add: 0,
        }),
        hold: None,
        answer,
    })
}

/// Points in a list of lot moves.
pub fn lot_points(moves: &[LotTake]) -> i64 {
    moves.iter().map(|t| t.points).sum()
}

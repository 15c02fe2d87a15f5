//! points, redeem, and the store's own expiry posting.

use super::lots::{expire, lot_expiry, spend, Lot, NewLot, Ts};
use super::money::{Points, MAX_POINTS};
use super::ops_money::lot_points;
use super::plan::{
    check_pin, require_active, CardChange, CardState, Decision, LedgerConfig, OpKind, Pin, Plan,
};
use crate::protocol::errno::Errno;
use rust_decimal::Decimal;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointsReq {
    pub order_no: String,
    pub delta: Points,
    /// Kept on the posting by the store; no rule reads it.
    pub reason: String,
}

/// A positive delta creates a lot expiring like earned points; a negative one
/// is spent from the live lots like a redeem (2005 if short). Zero, or more
/// than the 12 digits of the wire grammar, is 2010.
pub fn decide_points(
    cfg: &LedgerConfig,
    card: &CardState,
    lots: &[Lot],
    req: &PointsReq,
    now: Ts,
) -> Decision {
    require_active(card)?;
    if req.delta == 0 || req.delta.unsigned_abs() > MAX_POINTS.unsigned_abs() {
        return Err(Errno::InvalidAmount.into());
    }
    let mut c = CardChange::build(card, Decimal::ZERO, req.delta)?;
    if req.delta > 0 {
        c.lots_created.push(NewLot::points(
            req.delta,
            lot_expiry(now, cfg.points_expiry_months),
        ));
    } else {
        c.lots_taken = spend(lots, -req.delta, now)?;
    }
    Ok(Plan::single(&req.order_no, OpKind::Points, c))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedeemReq {
    pub order_no: String,
    pub cost: Points,
    pub gift: String,
    pub pin: Pin,
}

/// Points taken for a gift, from live lots only (2005 if short), never once
/// the membership has lapsed (2015); a cost of 0
/// or less is 2010.
pub fn decide_redeem(card: &CardState, lots: &[Lot], req: &RedeemReq, now: Ts) -> Decision {
    require_active(card)?;
    let pin_reset = check_pin(card, req.pin)?;
    if card.membership_lapsed(now) {
        return Err(Errno::MembershipExpired.into());
    }
    if req.cost <= 0 || req.cost > MAX_POINTS {
        return Err(Errno::InvalidAmount.into());
    }
    let takes = spend(lots, req.cost, now)?;
    let mut c = CardChange::build(card, Decimal::ZERO, -req.cost)?;
    c.lots_taken = takes;
    c.pin_fail_count = pin_reset;
    Ok(Plan::single(&req.order_no, OpKind::Redeem, c))
}

/// The expiry posting for a card whose lots have expired, whatever its status;
/// `None` when nothing has expired. The store picks the `order_no` (it is no
/// terminal's) and should post this before any op that reads the card's
/// points, in the same transaction, so answers show live points.
/// Lots holding more than the card's points mean the rows disagree: 3003.
pub fn decide_expire(
    order_no: &str,
    card: &CardState,
    lots: &[Lot],
    now: Ts,
) -> Result<Option<Plan>, Errno> {
    let takes = expire(lots, now);
    if takes.is_empty() {
        return Ok(None);
    }
    let mut c =
        CardChange::build(card, Decimal::ZERO, -lot_points(&takes)).map_err(|_| Errno::Internal)?;
    c.lots_taken = takes;
    Ok(Some(Plan::single(order_no, OpKind::Expire, c)))
}

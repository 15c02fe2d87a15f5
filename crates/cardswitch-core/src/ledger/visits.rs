//! Count cards (protocol.md §6.2): visits of a service bought in lots
//! (`visits_add`), used the soonest to expire first (`visit`), read per
//! service (`visits`), and zeroed once past their expiry (`visits_expire`,
//! the store's own posting, as `expire` is for points).
//!
//! A lot of visits is a [`Lot`] with a `service`: the same rows, MACs and
//! moves as points lots, so a reverse gives visits back exactly as it gives
//! points back. A card's `visits` is the sum over its visit lots of every
//! service; the lots say which service.

use chrono::Duration;

use super::lots::{expired, take_soonest, truncate_ms, Lot, LotTake, NewLot, Ts};
use super::money::Money;
use super::ops_money::payment_legs;
use super::plan::{
    check_pin, require_active, CardChange, CardState, Decision, OpKind, Payment, Pin, Plan,
    VisitsAnswer,
};
use crate::protocol::errno::Errno;

/// Visits of `service` that can be used now.
pub fn live_visits(lots: &[Lot], service: &str, now: Ts) -> i64 {
    of_service(lots, service, now).map(|l| l.points_left).sum()
}

fn of_service<'a>(lots: &'a [Lot], service: &'a str, now: Ts) -> impl Iterator<Item = &'a Lot> {
    lots.iter()
        .filter(move |l| l.service.as_deref() == Some(service) && l.is_live(now))
}

/// Takes `n` visits of `service` from its live lots, the soonest to expire
/// first (the member loses the fewest to expiry); too few is 2014 and
/// nothing is taken.
pub fn spend_visits(lots: &[Lot], service: &str, n: i64, now: Ts) -> Result<Vec<LotTake>, Errno> {
    if n <= 0 {
        return Err(Errno::Malformed);
    }
    if live_visits(lots, service, now) < n {
        return Err(Errno::NotEnoughVisits);
    }
    Ok(take_soonest(of_service(lots, service, now).collect(), n))
}

/// One `visits` row (protocol.md §6.2): a service's live visits and the
/// soonest expiry among them (`None`: none of them expires).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceVisits {
    pub service: String,
    pub visits: i64,
    pub next_expiry: Option<Ts>,
}

/// The card's live visits per service, by service name; services with no
/// live visit left are not listed.
pub fn visits_by_service(lots: &[Lot], now: Ts) -> Vec<ServiceVisits> {
    let mut out: std::collections::BTreeMap<&str, ServiceVisits> = Default::default();
    for l in lots.iter().filter(|l| l.is_live(now)) {
        let Some(service) = l.service.as_deref() else {
            continue;
        };
        let e = out.entry(service).or_insert_with(|| ServiceVisits {
            service: service.to_owned(),
            visits: 0,
            next_expiry: None,
        });
        e.visits += l.points_left;
        e.next_expiry = match (e.next_expiry, l.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    out.into_values().collect()
}

/// When visits bought at `now` for `days` days lapse; `None`: never.
pub fn visits_expiry(now: Ts, days: Option<u32>) -> Option<Ts> {
    days.map(|d| truncate_ms(now) + Duration::days(i64::from(d)))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitsAddReq {
    pub order_no: String,
    /// The price paid for the visits (0.00 allowed: visits given away).
    pub price: Money,
    pub service: String,
    pub count: u32,
    /// How long these visits are valid; `None`: for ever.
    pub days: Option<u32>,
    pub payment: Payment,
    pub pin: Pin,
}

/// `count` visits of `service` added as one lot. The price is paid like a
/// debit without discount, earning no points: from the balance (its
/// `available`, 2004 if short, counted toward the daily limit, 2016), in
/// cash, or split. The PIN is asked only when money leaves the balance. A
/// lapsed membership still buys visits (it prices nothing here).
pub fn decide_visits_add(card: &CardState, lots: &[Lot], req: &VisitsAddReq, now: Ts) -> Decision {
    require_active(card)?;
    let (from_balance, split) = payment_legs(req.payment, req.price)?;
    let pin_reset = match from_balance.is_zero() {
        true => None,
        false => check_pin(card, req.pin)?,
    };
    let count = i64::from(req.count);
    let mut c = CardChange::build(card, -from_balance.amount(), 0)?.with_visits(card, count)?;
    card.within_daily_limit(from_balance)?;
    c.day_spend = from_balance.amount();
    c.lots_created.push(NewLot {
        points: count,
        expires_at: visits_expiry(now, req.days),
        service: Some(req.service.clone()),
    });
    c.pin_fail_count = pin_reset;
    let mut plan = Plan::single(&req.order_no, OpKind::VisitsAdd, c);
    plan.answer.amount = req.price;
    plan.answer.charged = req.price;
    plan.answer.split = split;
    plan.answer.visits = Some(VisitsAnswer {
        service: req.service.clone(),
        visits: live_visits(lots, &req.service, now) + count,
    });
    Ok(plan)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitReq {
    pub order_no: String,
    pub service: String,
    pub count: u32,
    pub pin: Pin,
}

/// `count` visits of `service` used, the soonest to expire first; too few
/// live ones is 2014. Visits are paid for, so a lapsed membership still
/// uses them.
pub fn decide_visit(card: &CardState, lots: &[Lot], req: &VisitReq, now: Ts) -> Decision {
    require_active(card)?;
    let pin_reset = check_pin(card, req.pin)?;
    let count = i64::from(req.count);
    let takes = spend_visits(lots, &req.service, count, now)?;
    let mut c = CardChange::build(card, 0.into(), 0)?.with_visits(card, -count)?;
    c.lots_taken = takes;
    c.pin_fail_count = pin_reset;
    let mut plan = Plan::single(&req.order_no, OpKind::Visit, c);
    plan.answer.visits = Some(VisitsAnswer {
        service: req.service.clone(),
        visits: live_visits(lots, &req.service, now) - count,
    });
    Ok(plan)
}

/// The expiry posting for a card whose visit lots have lapsed, whatever its
/// status; `None` when none has. Lots holding more than the card's visits
/// mean the rows disagree: 3003.
pub fn decide_visits_expire(
    card: &CardState,
    lots: &[Lot],
    now: Ts,
) -> Result<Option<CardChange>, Errno> {
    let takes = expired(lots.iter().filter(|l| !l.is_points()), now);
    if takes.is_empty() {
        return Ok(None);
    }
    let n: i64 = takes.iter().map(|t| t.points).sum();
    let mut c = CardChange::build(card, 0.into(), 0)
        .and_then(|c| c.with_visits(card, -n))
        .map_err(|_| Errno::Internal)?;
    c.lots_taken = takes;
    Ok(Some(c))
}

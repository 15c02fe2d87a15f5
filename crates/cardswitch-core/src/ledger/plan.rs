//! The plan a decision returns: everything the store must write, in one
//! transaction, and nothing it must compute.

use chrono::{NaiveDate, TimeZone};
use rust_decimal::Decimal;

use super::lots::{LotId, LotTake, NewLot, Ts};
use super::money::{Money, Points, MAX_POINTS};
use super::rules::BonusRule;
pub use super::state::*;
use crate::protocol::errno::Errno;

/// A refusal, or the plan to apply.
pub type Decision = Result<Plan, Refusal>;

/// What happens to one card: one `postings` row and one card update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardChange {
    pub card_no: String,
    /// Signed, scale 2.
    pub balance_delta: Decimal,
    pub points_delta: Points,
    pub lots_created: Vec<NewLot>,
    pub lots_taken: Vec<LotTake>,
    /// Points given back to existing lots (a reverse of a spend).
    pub lots_restored: Vec<LotTake>,
    pub status: Option<CardStatus>,
    pub pin_fail_count: Option<u32>,
    /// A top-up renews the membership from now (protocol.md §6.2).
    pub renews_membership: bool,
    /// Signed change of what today's debits and outgoing transfers took
    /// from the balance (the daily limit's count): a reverse gives back.
    pub day_spend: Decimal,
    /// Signed change of the money held by the card's active holds
    /// (protocol.md §6.2): a hold adds, its capture, void or expiry takes.
    pub held_delta: Decimal,
    /// Holds past their expiry this change releases (`hold_expire`): the
    /// store marks their orders released.
    pub holds_expired: Vec<HoldRef>,
    /// Signed change of the visits the card's lots hold (protocol.md §6.2
    /// count cards), all services together; the lots say which service.
    pub visits_delta: i64,
    /// The card's values after the change, for the answer and for the store
    /// to check its `UPDATE … RETURNING` against.
    pub new_balance: Money,
    pub new_points: Points,
    pub new_held: Money,
    pub new_visits: i64,
}

/// A hold, by its order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HoldRef {
    pub terminal: String,
    pub order_no: String,
}

impl CardChange {
    /// A change by these deltas. A balance that would go negative is 2004,
    /// points 2005; past the maxima, 2010.
    pub fn build(
        card: &CardState,
        balance_delta: Decimal,
        points_delta: Points,
    ) -> Result<Self, Errno> {
        CardChange::build_held(card, balance_delta, points_delta, Decimal::ZERO)
    }

    /// [`CardChange::build`] with the held money changed too. Money taken
    /// from the balance, or newly held, must leave the balance at least
    /// what stays held (2004): a spend takes from what is available.
    pub fn build_held(
        card: &CardState,
        balance_delta: Decimal,
        points_delta: Points,
        held_delta: Decimal,
    ) -> Result<Self, Errno> {
        let new_held = card.held.checked_apply(held_delta).ok_or(Errno::Internal)?;
        let new_balance = match card.balance.checked_apply(balance_delta) {
            Some(b) => b,
            None if card.balance.amount() + balance_delta < Decimal::ZERO => {
                return Err(Errno::InsufficientBalance)
            }
            None => return Err(Errno::InvalidAmount),
        };
        let new_points = card
            .points
            .checked_add(points_delta)
            .ok_or(Errno::InvalidAmount)?;
        if new_points < 0 {
            return Err(Errno::InsufficientPoints);
        }
        if new_points > MAX_POINTS {
            return Err(Errno::InvalidAmount);
        }
        let spends = balance_delta.is_sign_negative() || held_delta > Decimal::ZERO;
        if spends && new_balance < new_held {
            return Err(Errno::InsufficientBalance);
        }
        Ok(CardChange {
            card_no: card.card_no.clone(),
            balance_delta: super::money::delta(balance_delta),
            points_delta,
            lots_created: vec![],
            lots_taken: vec![],
            lots_restored: vec![],
            status: None,
            pin_fail_count: None,
            renews_membership: false,
            day_spend: Decimal::ZERO,
            held_delta: super::money::delta(held_delta),
            holds_expired: vec![],
            visits_delta: 0,
            new_balance,
            new_points,
            new_held,
            new_visits: card.visits,
        })
    }

    /// The change with the card's visits changed by `delta` too; fewer than
    /// none is 2014.
    pub fn with_visits(mut self, card: &CardState, delta: i64) -> Result<Self, Errno> {
        let new_visits = card.visits.checked_add(delta).ok_or(Errno::InvalidAmount)?;
        if new_visits < 0 {
            return Err(Errno::NotEnoughVisits);
        }
        if new_visits > MAX_POINTS {
            return Err(Errno::InvalidAmount);
        }
        self.visits_delta = delta;
        self.new_visits = new_visits;
        Ok(self)
    }

    /// The record of this change the store keeps for a later reverse, once it
    /// knows the ids it gave the created lots (in `lots_created` order).
    pub fn effect(&self, created_ids: &[LotId]) -> Effect {
        assert_eq!(
            created_ids.len(),
            self.lots_created.len(),
            "one id per created lot"
        );
        Effect {
            card_no: self.card_no.clone(),
            balance_delta: self.balance_delta,
            points_delta: self.points_delta,
            lots_created: self
                .lots_created
                .iter()
                .zip(created_ids)
                .map(|(n, id)| LotTake {
                    lot_id: *id,
                    points: n.points,
                })
                .collect(),
            lots_taken: self.lots_taken.clone(),
            visits_delta: self.visits_delta,
        }
    }

    pub fn unchanged(card: &CardState) -> Self {
        CardChange::build(card, Decimal::ZERO, 0).expect("a zero change is always valid")
    }
}

/// A member to create (register).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    pub name: String,
    pub phone: String,
    pub birthday: Option<NaiveDate>,
    pub referrer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRef {
    New(NewMember),
    Existing(i64),
}

/// Where a new card's PIN hash comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    None,
    /// The `pin` of the register request, hashed by the store.
    FromRequest,
    /// The old card's hash (replace).
    CopyFrom(String),
}

/// A card to insert, active with zero balance and points, before the plan's
/// card changes are applied (which may then credit it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCard {
    pub card_no: String,
    pub member: MemberRef,
    pub level: String,
    pub pin: PinSource,
}

/// A split debit's charge: `cash` at the counter, `from_balance` off the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLegs {
    pub cash: Money,
    pub from_balance: Money,
}

/// The answer row of protocol.md §6, less what the store fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub order_no: String,
    pub op: OpKind,
    pub card: String,
    pub amount: Money,
    pub discount: Money,
    pub charged: Money,
    /// Top-up bonus credited on top of `amount` (zero for other ops).
    pub bonus: Money,
    /// Money the cashier pays out in cash: the balance of a closed card, a
    /// refund of a cash debit (or of a split debit's cash leg).
    pub cash_out: Money,
    /// A split debit's two legs (its row's `cash` and `from_balance`).
    pub split: Option<SplitLegs>,
    pub points_delta: Points,
    pub balance: Money,
    pub points: Points,
    /// A hold's row (protocol.md §6.2): what the card has left to spend,
    /// and when the hold lapses.
    pub hold: Option<HoldAnswer>,
    /// A count-card op's row: its service and the visits of it left.
    pub visits: Option<VisitsAnswer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitsAnswer {
    pub service: String,
    pub visits: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldAnswer {
    pub available: Money,
    pub expires_at: Ts,
}

impl Answer {
    pub fn for_change(order_no: &str, op: OpKind, c: &CardChange) -> Answer {
        Answer {
            order_no: order_no.to_owned(),
            op,
            card: c.card_no.clone(),
            amount: Money::ZERO,
            discount: Money::ZERO,
            charged: Money::ZERO,
            bonus: Money::ZERO,
            cash_out: Money::ZERO,
            split: None,
            points_delta: c.points_delta,
            balance: c.new_balance,
            points: c.new_points,
            hold: None,
            visits: None,
        }
    }

    /// The full row, once the store knows its posting.
    pub fn into_row(self, txn_id: i64, posted_at: Ts, replayed: bool) -> AnswerRow {
        AnswerRow {
            answer: self,
            txn_id,
            posted_at,
            replayed,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerRow {
    pub answer: Answer,
    pub txn_id: i64,
    pub posted_at: Ts,
    pub replayed: bool,
}

/// What one posting did to one card, as the store keeps it for a later
/// reverse: ids of the lots it created (known once written) and took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    pub card_no: String,
    pub balance_delta: Decimal,
    pub points_delta: Points,
    pub lots_created: Vec<LotTake>,
    pub lots_taken: Vec<LotTake>,
    pub visits_delta: i64,
}

/// An original posting named by a `reverse` or `refund`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    pub order_no: String,
    pub op: OpKind,
    /// Its business day in the server's configured time zone.
    pub business_day: NaiveDate,
    pub amount: Money,
    pub charged: Money,
    pub tender: Tender,
    pub points_earned: Points,
    pub reversed: bool,
    pub refunded: Money,
    pub points_taken_back: Points,
    /// In the order of the original plan's card changes.
    pub effects: Vec<Effect>,
    /// A hold's terms (its order's); `None` for any other op.
    pub hold: Option<HoldTerms>,
}

/// What a hold fixed when it was placed (protocol.md §6.2), kept on its
/// order: its capture is priced at these whatever the card's level says
/// by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldTerms {
    pub expires_at: Ts,
    pub discount: Decimal,
    pub points_rate: Decimal,
}

impl Original {
    /// What the original took from its (first) card's balance: a debit's
    /// charge less what was paid at the counter.
    pub fn taken_from_balance(&self) -> Result<Money, Errno> {
        let e = self.effects.first().ok_or(Errno::Internal)?;
        Money::new(-e.balance_delta).map_err(|_| Errno::Internal)
    }
}

/// The store adds these to the original's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalUpdate {
    pub order_no: String,
    pub mark_reversed: bool,
    pub refunded_add: Money,
    pub points_taken_back_add: Points,
}

/// Everything the store writes for one request. `cards[0]` is the card the
/// answer is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub op: OpKind,
    pub new_card: Option<NewCard>,
    pub cards: Vec<CardChange>,
    pub original: Option<OriginalUpdate>,
    /// A hold placed: the terms its order keeps.
    pub hold: Option<HoldTerms>,
    pub answer: Answer,
}

impl Plan {
    pub fn single(order_no: &str, op: OpKind, change: CardChange) -> Plan {
        Plan {
            op,
            new_card: None,
            answer: Answer::for_change(order_no, op, &change),
            cards: vec![change],
            original: None,
            hold: None,
        }
    }
}

/// The business day of an instant in the server's configured time zone, for
/// [`Original::business_day`] and the `today` of a reverse.
pub fn business_day<Tz: TimeZone>(at: Ts, tz: &Tz) -> NaiveDate {
    at.with_timezone(tz).date_naive()
}

/// Rules the operator configures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerConfig {
    pub bonus_rules: Vec<BonusRule>,
    /// Months after which earned points expire; `None`: never.
    pub points_expiry_months: Option<u32>,
    /// Days a membership runs from its registration or last top-up
    /// (`business.card_validity_days`); 0: it never lapses.
    pub card_validity_days: u32,
}

impl LedgerConfig {
    /// When a membership renewed at `renewed_at` lapses; `None`: never.
    pub fn member_until(&self, renewed_at: Ts) -> Option<Ts> {
        (self.card_validity_days > 0)
            .then(|| renewed_at + chrono::Duration::days(i64::from(self.card_validity_days)))
    }
}

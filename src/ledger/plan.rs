//! The state a decision reads and the plan it returns: everything the store
//! must write, in one transaction, and nothing it must compute.

use chrono::{NaiveDate, TimeZone};
use rust_decimal::Decimal;

use super::lots::{LotTake, NewLot, Ts};
use super::money::{Money, Points, MAX_POINTS};
use super::rules::{BonusRule, Level};
use crate::protocol::errno::Errno;

/// Consecutive wrong PINs that lock a card.
pub const PIN_TRIES: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CardStatus {
    Active,
    Lost,
    Locked,
    Closed,
}

/// A card row as loaded (and locked) by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardState {
    pub card_no: String,
    pub member_id: i64,
    pub status: CardStatus,
    pub balance: Money,
    /// Sum of the card's lots, expired ones not yet posted included.
    pub points: Points,
    pub level: Level,
    pub pin_fail_count: u32,
    pub has_pin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Cashier,
    Manager,
}

/// The ops of protocol.md §6, and `Expire`, the store's own points-expiry
/// posting that no terminal can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Query,
    Member,
    History,
    Register,
    Debit,
    Topup,
    Points,
    Redeem,
    Reverse,
    Refund,
    Transfer,
    Lost,
    Found,
    Lock,
    Unlock,
    Replace,
    Close,
    Expire,
}

impl OpKind {
    pub const WIRE: [OpKind; 17] = [
        OpKind::Query,
        OpKind::Member,
        OpKind::History,
        OpKind::Register,
        OpKind::Debit,
        OpKind::Topup,
        OpKind::Points,
        OpKind::Redeem,
        OpKind::Reverse,
        OpKind::Refund,
        OpKind::Transfer,
        OpKind::Lost,
        OpKind::Found,
        OpKind::Lock,
        OpKind::Unlock,
        OpKind::Replace,
        OpKind::Close,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Member => "member",
            OpKind::History => "history",
            OpKind::Register => "register",
            OpKind::Debit => "debit",
            OpKind::Topup => "topup",
            OpKind::Points => "points",
            OpKind::Redeem => "redeem",
            OpKind::Reverse => "reverse",
            OpKind::Refund => "refund",
            OpKind::Transfer => "transfer",
            OpKind::Lost => "lost",
            OpKind::Found => "found",
            OpKind::Lock => "lock",
            OpKind::Unlock => "unlock",
            OpKind::Replace => "replace",
            OpKind::Close => "close",
            OpKind::Expire => "expire",
        }
    }

    /// Parses a wire op name; `expire` is not one.
    pub fn from_wire(s: &str) -> Option<OpKind> {
        OpKind::WIRE.iter().copied().find(|o| o.as_str() == s)
    }

    /// The ops marked M in protocol.md §6.
    pub fn is_manager_op(self) -> bool {
        !matches!(
            self,
            OpKind::Query
                | OpKind::Member
                | OpKind::History
                | OpKind::Register
                | OpKind::Debit
                | OpKind::Topup
                | OpKind::Points
                | OpKind::Redeem
        )
    }

    /// Everything but `query`, `member`, `history` writes and needs an order_no.
    pub fn is_posting(self) -> bool {
        !matches!(self, OpKind::Query | OpKind::Member | OpKind::History)
    }
}

/// Whether the operator may run `op`. `operator` is `None` when the store
/// found no such operator for the terminal's store; `mpin_ok` is the store's
/// check of `mpin` against the operator's PIN hash (`false` when absent).
/// Unknown operator, a cashier on an M op, or an M op without the right
/// manager PIN: 2011. A manager on a cashier op needs no `mpin`.
pub fn authorize(op: OpKind, operator: Option<Role>, mpin_ok: bool) -> Result<(), Errno> {
    if op == OpKind::Expire {
        return Err(Errno::OperatorRefused);
    }
    match (operator, op.is_manager_op()) {
        (None, _) => Err(Errno::OperatorRefused),
        (Some(_), false) => Ok(()),
        (Some(Role::Manager), true) if mpin_ok => Ok(()),
        (Some(_), true) => Err(Errno::OperatorRefused),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Tender {
    #[default]
    Balance,
    Cash,
}

/// The store's check of the `pin` field against the card's PIN hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pin {
    Absent,
    Correct,
    Wrong,
}

/// A write the store must commit even though the request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinWrite {
    pub card_no: String,
    pub pin_fail_count: u32,
    /// Set the card's status to `Locked`.
    pub lock: bool,
}

/// A refused request: its errno, and for a wrong PIN the counter to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub errno: Errno,
    pub pin_write: Option<PinWrite>,
}

impl From<Errno> for Refusal {
    fn from(errno: Errno) -> Self {
        Refusal {
            errno,
            pin_write: None,
        }
    }
}

pub type Decision = Result<Plan, Refusal>;

/// Postings and most card ops need an active card: lost 2002, locked or
/// closed 2003.
pub fn require_active(card: &CardState) -> Result<(), Errno> {
    match card.status {
        CardStatus::Active => Ok(()),
        CardStatus::Lost => Err(Errno::CardLost),
        CardStatus::Locked | CardStatus::Closed => Err(Errno::CardLocked),
    }
}

/// Checks a card's PIN where the op carries one. Ok gives the counter to
/// write (`Some(0)` resets a non-zero count; `None` writes nothing). A wrong
/// PIN counts; the 5th in a row locks the card and still answers 2009, later
/// requests meet the lock (2003). A missing PIN is 2009 but is no guess, so it
/// does not count. The caller checks the status first, so a locked card is
/// never guessed at.
pub fn check_pin(card: &CardState, pin: Pin) -> Result<Option<u32>, Refusal> {
    if !card.has_pin {
        return Ok(None);
    }
    match pin {
        Pin::Correct => Ok((card.pin_fail_count > 0).then_some(0)),
        Pin::Absent => Err(Errno::WrongPin.into()),
        Pin::Wrong => {
            let n = card.pin_fail_count.saturating_add(1);
            Err(Refusal {
                errno: Errno::WrongPin,
                pin_write: Some(PinWrite {
                    card_no: card.card_no.clone(),
                    pin_fail_count: n,
                    lock: n >= PIN_TRIES,
                }),
            })
        }
    }
}

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
    /// The card's values after the change, for the answer and for the store
    /// to check its `UPDATE … RETURNING` against.
    pub new_balance: Money,
    pub new_points: Points,
}

impl CardChange {
    /// A change by these deltas. A balance that would go negative is 2004,
    /// points 2005; past the maxima, 2010.
    pub fn build(
        card: &CardState,
        balance_delta: Decimal,
        points_delta: Points,
    ) -> Result<Self, Errno> {
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
        Ok(CardChange {
            card_no: card.card_no.clone(),
            balance_delta: super::money::delta(balance_delta),
            points_delta,
            lots_created: vec![],
            lots_taken: vec![],
            lots_restored: vec![],
            status: None,
            pin_fail_count: None,
            new_balance,
            new_points,
        })
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
    /// refund of a cash debit.
    pub cash_out: Money,
    pub points_delta: Points,
    pub balance: Money,
    pub points: Points,
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
            points_delta: c.points_delta,
            balance: c.new_balance,
            points: c.new_points,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        for op in OpKind::WIRE {
            assert_eq!(OpKind::from_wire(op.as_str()), Some(op));
            assert!(authorize(op, Some(Role::Manager), true).is_ok());
            assert_eq!(authorize(op, None, true), Err(Errno::OperatorRefused));
            let cashier = authorize(op, Some(Role::Cashier), true);
            assert_eq!(cashier.is_ok(), !op.is_manager_op(), "{op:?}");
            if op.is_manager_op() {
                assert_eq!(
                    authorize(op, Some(Role::Manager), false),
                    Err(Errno::OperatorRefused)
                );
            } else {
                assert!(authorize(op, Some(Role::Manager), false).is_ok());
            }
        }
        assert_eq!(OpKind::from_wire("expire"), None);
        assert!(authorize(OpKind::Expire, Some(Role::Manager), true).is_err());
        assert!(!OpKind::Query.is_posting() && OpKind::Lost.is_posting());
    }
}

//! The card and operator as a decision sees them, and the checks every op
//! starts with: operator role, card status, card PIN.

use super::money::{Money, Points};
use super::rules::Level;
use crate::protocol::errno::Errno;

/// Consecutive wrong PINs that lock a card.
pub const PIN_TRIES: u32 = 5;

/// Stored rows spell these in lowercase (migration 0001's CHECK), as the
/// store's JSON rows carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardStatus {
    Active,
    Lost,
    Locked,
    Closed,
}

impl CardStatus {
    /// As a stored row spells it.
    pub fn parse(s: &str) -> Option<CardStatus> {
        match s {
            "active" => Some(CardStatus::Active),
            "lost" => Some(CardStatus::Lost),
            "locked" => Some(CardStatus::Locked),
            "closed" => Some(CardStatus::Closed),
            _ => None,
        }
    }
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
    /// When the membership lapses (protocol.md §6.2 validity; of the
    /// membership, never of the money); `None`: never.
    pub member_until: Option<super::lots::Ts>,
    /// What this business day's debits and outgoing transfers took from
    /// the balance (for the level's daily limit).
    pub spent_today: Money,
    /// Money the card's active holds keep from being spent.
    pub held: Money,
    /// How many active holds the card has.
    pub active_holds: u32,
    /// Visits its count-card lots hold, of every service, expired ones not
    /// yet posted included.
    pub visits: i64,
}

impl CardState {
    /// What a spend may take: the balance less what active holds keep.
    pub fn available(&self) -> Money {
        self.balance.checked_sub(self.held).unwrap_or(Money::ZERO)
    }

    /// 2017 while any hold on the card is active: a card that may still be
    /// captured against is neither closed nor replaced.
    pub fn without_holds(&self) -> Result<(), Errno> {
        match self.active_holds {
            0 if self.held.is_zero() => Ok(()),
            _ => Err(Errno::HasHolds),
        }
    }

    /// 2016 when taking `take` from the balance would pass the level's
    /// daily debit limit (taking nothing never does).
    pub fn within_daily_limit(&self, take: Money) -> Result<(), Errno> {
        let spent = self.spent_today.checked_add(take).ok_or(Errno::OverLimit)?;
        match self.level.limits.daily_debit {
            Some(limit) if spent > limit && !take.is_zero() => Err(Errno::OverLimit),
            _ => Ok(()),
        }
    }

    /// 2016 when money coming in would take the balance above the level's
    /// cap (a refund or reverse never asks).
    pub fn within_balance_cap(&self, new_balance: Money) -> Result<(), Errno> {
        match self.level.limits.max_balance {
            Some(cap) if new_balance > cap => Err(Errno::OverLimit),
            _ => Ok(()),
        }
    }

    /// Whether the membership has lapsed at `now`.
    pub fn membership_lapsed(&self, now: super::lots::Ts) -> bool {
        self.member_until.is_some_and(|until| now >= until)
    }

    /// The level a sale is priced at: the card's, or, once its membership
    /// has lapsed, one with no discount that earns no points.
    pub fn pricing_level(&self, now: super::lots::Ts) -> Level {
        if !self.membership_lapsed(now) {
            return self.level.clone();
        }
        Level {
            name: self.level.name.clone(),
            discount: rust_decimal::Decimal::ONE,
            points_rate: rust_decimal::Decimal::ZERO,
            limits: self.level.limits,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Cashier,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Cashier => "cashier",
            Role::Manager => "manager",
        }
    }
}

/// What a terminal is (protocol.md §6.1; migration 0009's CHECK): a till
/// posts; a back-office system only reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalKind {
    #[default]
    Pos,
    Office,
}

impl TerminalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalKind::Pos => "pos",
            TerminalKind::Office => "office",
        }
    }

    pub fn parse(s: &str) -> Option<TerminalKind> {
        match s {
            "pos" => Some(TerminalKind::Pos),
            "office" => Some(TerminalKind::Office),
            _ => None,
        }
    }
}

/// The store of a head-office terminal, which belongs to every store
/// (protocol.md §6.1): `*`, which no store id can be.
pub const ALL_STORES: &str = "*";

/// Whether a terminal or an operator may act (migration 0001's CHECK).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    Active,
    Disabled,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Standing> {
        match s {
            "active" => Some(Standing::Active),
            "disabled" => Some(Standing::Disabled),
            _ => None,
        }
    }
}

/// The ops of protocol.md §6, and `Expire`, the store's own points-expiry
/// posting that no terminal can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Query,
    Member,
    History,
    Find,
    Statement,
    Settlement,
    Liability,
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
    /// Card products (protocol.md §6.2).
    Hold,
    Capture,
    Void,
    /// Count cards (protocol.md §6.2): visits bought, used, and read.
    VisitsAdd,
    Visit,
    Visits,
    Expire,
    /// The store's own posting that releases a hold past its expiry; no
    /// terminal sends it.
    HoldExpire,
    /// The store's own posting that zeroes visit lots past their expiry.
    VisitsExpire,
    /// A member brought over by `cardswitch import members`: a register
    /// with its opening balance and points; no terminal sends it.
    Import,
}

impl OpKind {
    pub const WIRE: [OpKind; 27] = [
        OpKind::Query,
        OpKind::Member,
        OpKind::History,
        OpKind::Find,
        OpKind::Statement,
        OpKind::Settlement,
        OpKind::Liability,
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
        OpKind::Hold,
        OpKind::Capture,
        OpKind::Void,
        OpKind::VisitsAdd,
        OpKind::Visit,
        OpKind::Visits,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Member => "member",
            OpKind::History => "history",
            OpKind::Find => "find",
            OpKind::Statement => "statement",
            OpKind::Settlement => "settlement",
            OpKind::Liability => "liability",
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
            OpKind::Hold => "hold",
            OpKind::Capture => "capture",
            OpKind::Void => "void",
            OpKind::VisitsAdd => "visits_add",
            OpKind::Visit => "visit",
            OpKind::Visits => "visits",
            OpKind::Expire => "expire",
            OpKind::HoldExpire => "hold_expire",
            OpKind::VisitsExpire => "visits_expire",
            OpKind::Import => "import",
        }
    }

    /// Parses a wire op name; `expire` and `import` are not ones.
    pub fn from_wire(s: &str) -> Option<OpKind> {
        OpKind::WIRE.iter().copied().find(|o| o.as_str() == s)
    }

    /// Parses an op as the store keeps it: a wire op, `expire` or `import`.
    pub fn from_stored(s: &str) -> Option<OpKind> {
        match s {
            "expire" => Some(OpKind::Expire),
            "hold_expire" => Some(OpKind::HoldExpire),
            "visits_expire" => Some(OpKind::VisitsExpire),
            "import" => Some(OpKind::Import),
            s => OpKind::from_wire(s),
        }
    }

    /// The ops marked M in protocol.md §6.
    pub fn is_manager_op(self) -> bool {
        !matches!(
            self,
            OpKind::Query
                | OpKind::Member
                | OpKind::History
                | OpKind::Visits
                | OpKind::Find
                | OpKind::Statement
                | OpKind::Settlement
                | OpKind::Liability
                | OpKind::Register
                | OpKind::Import
                | OpKind::Debit
                | OpKind::Topup
                | OpKind::Points
                | OpKind::Redeem
                | OpKind::Hold
                | OpKind::Capture
                | OpKind::Void
                | OpKind::VisitsAdd
                | OpKind::Visit
        )
    }

    /// Everything but `query`, `member`, `history` writes and needs an order_no.
    pub fn is_posting(self) -> bool {
        !matches!(
            self,
            OpKind::Query
                | OpKind::Member
                | OpKind::History
                | OpKind::Visits
                | OpKind::Find
                | OpKind::Statement
                | OpKind::Settlement
                | OpKind::Liability
        )
    }
}

/// Whether the operator may run `op`. `operator` is `None` when the store
/// found no such operator for the terminal's store; `mpin_ok` is the store's
/// check of `mpin` against the operator's PIN hash (`false` when absent).
/// Unknown operator, a cashier on an M op, or an M op without the right
/// manager PIN: 2011. A manager on a cashier op needs no `mpin`.
pub fn authorize(op: OpKind, operator: Option<Role>, mpin_ok: bool) -> Result<(), Errno> {
    if matches!(
        op,
        OpKind::Expire | OpKind::HoldExpire | OpKind::VisitsExpire
    ) {
        return Err(Errno::OperatorRefused);
    }
    match (operator, op.is_manager_op()) {
        (None, _) => Err(Errno::OperatorRefused),
        (Some(_), false) => Ok(()),
        (Some(Role::Manager), true) if mpin_ok => Ok(()),
        (Some(_), true) => Err(Errno::OperatorRefused),
    }
}

/// How an order was paid, as its row records it: what a refund or reverse
/// of it gives back, and how settlement groups it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Tender {
    #[default]
    Balance,
    Cash,
    /// Part in cash, the rest from the balance (protocol.md §6.2).
    Split,
}

/// How a sale is paid, as its request says: a split names its cash leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Payment {
    #[default]
    Balance,
    Cash,
    Split {
        cash: super::money::Money,
    },
}

impl Payment {
    pub fn tender(self) -> Tender {
        match self {
            Payment::Balance => Tender::Balance,
            Payment::Cash => Tender::Cash,
            Payment::Split { .. } => Tender::Split,
        }
    }
}

/// The store's check of the `pin` field against the card's PIN hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pin {
    Absent,
    Correct,
    Wrong,
    /// An office terminal's read (protocol.md §6.1): no PIN asked for, and
    /// the card's PIN counter left as it is.
    NotNeeded,
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
        Pin::NotNeeded => Ok(None),
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

    #[test]
    fn a_card_status_parses_as_its_stored_spelling() {
        for s in ["active", "lost", "locked", "closed"] {
            let by_serde: CardStatus = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(CardStatus::parse(s), Some(by_serde));
        }
        assert_eq!(CardStatus::parse("Active"), None);
        assert_eq!(CardStatus::parse(""), None);
    }
}

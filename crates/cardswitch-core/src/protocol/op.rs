//! The operations of protocol.md §6 and what each one's inner form carries.

use super::errno::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Query,
    Member,
    History,
    /// Office terminals only (protocol.md §6.1).
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
    /// Card products (protocol.md §6.2): money reserved, then taken or
    /// released.
    Hold,
    Capture,
    Void,
    /// Count cards (protocol.md §6.2): visits bought, used, and read.
    VisitsAdd,
    Visit,
    Visits,
    /// `cardswitch import members`: a register with an opening balance and
    /// points. Not in [`Op::ALL`], so no terminal can send it.
    Import,
}

impl Op {
    pub const ALL: [Op; 27] = [
        Op::Query,
        Op::Member,
        Op::History,
        Op::Find,
        Op::Statement,
        Op::Settlement,
        Op::Liability,
        Op::Register,
        Op::Debit,
        Op::Topup,
        Op::Points,
        Op::Redeem,
        Op::Reverse,
        Op::Refund,
        Op::Transfer,
        Op::Lost,
        Op::Found,
        Op::Lock,
        Op::Unlock,
        Op::Replace,
        Op::Close,
        Op::Hold,
        Op::Capture,
        Op::Void,
        Op::VisitsAdd,
        Op::Visit,
        Op::Visits,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Query => "query",
            Op::Member => "member",
            Op::History => "history",
            Op::Find => "find",
            Op::Statement => "statement",
            Op::Settlement => "settlement",
            Op::Liability => "liability",
            Op::Register => "register",
            Op::Debit => "debit",
            Op::Topup => "topup",
            Op::Points => "points",
            Op::Redeem => "redeem",
            Op::Reverse => "reverse",
            Op::Refund => "refund",
            Op::Transfer => "transfer",
            Op::Lost => "lost",
            Op::Found => "found",
            Op::Lock => "lock",
            Op::Unlock => "unlock",
            Op::Replace => "replace",
            Op::Close => "close",
            Op::Hold => "hold",
            Op::Capture => "capture",
            Op::Void => "void",
            Op::VisitsAdd => "visits_add",
            Op::Visit => "visit",
            Op::Visits => "visits",
            Op::Import => "import",
        }
    }

    /// Exact, case-sensitive; anything else is 1001.
    pub fn parse(s: &str) -> Result<Op, Errno> {
        Op::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or(Errno::Malformed)
    }

    /// Posting ops change the ledger and need an `order_no`.
    pub fn is_posting(self) -> bool {
        !matches!(self, Op::Query | Op::Member | Op::History | Op::Visits) && !self.is_office()
    }

    /// The back-office ops (protocol.md §6.1), for office terminals only.
    pub fn is_office(self) -> bool {
        matches!(
            self,
            Op::Find | Op::Statement | Op::Settlement | Op::Liability
        )
    }

    /// What `attr1` holds.
    pub fn attr1(self) -> Attr1 {
        match self {
            Op::Reverse | Op::Refund | Op::Capture | Op::Void => Attr1::OrderNo,
            Op::Find => Attr1::PhoneOrCard,
            Op::Settlement => Attr1::Day,
            Op::Liability => Attr1::StoreOrAll,
            _ => Attr1::Card,
        }
    }

    /// The ops marked M: a manager `operator` and `mpin` in `attr2`.
    pub fn is_manager(self) -> bool {
        matches!(
            self,
            Op::Reverse
                | Op::Refund
                | Op::Transfer
                | Op::Lost
                | Op::Found
                | Op::Lock
                | Op::Unlock
                | Op::Replace
                | Op::Close
        )
    }

    /// Whether the op's `amount` column in §6 is filled (it is then
    /// required, and forbidden for every other op).
    pub fn needs_amount(self) -> bool {
        matches!(
            self,
            Op::Debit
                | Op::Topup
                | Op::Refund
                | Op::Transfer
                | Op::Hold
                | Op::Capture
                | Op::VisitsAdd
        )
    }

    /// The names `attr2` may carry for this op (§6); any other is 1001.
    pub fn attr2_fields(self) -> &'static [&'static str] {
        match self {
            Op::Query | Op::Member | Op::Visits => &["pin"],
            Op::History => &["pin", "limit"],
            Op::Find => &["limit"],
            Op::Statement => &["from", "to", "after", "limit"],
            Op::Settlement => &["store", "by"],
            Op::Liability => &[],
            Op::Register => &["name", "phone", "level", "pin", "birthday", "referrer"],
            Op::Debit => &["pin", "tender", "cash"],
            Op::Topup => &["tender"],
            Op::Points => &["delta", "reason"],
            Op::Redeem => &["pin", "cost", "gift"],
            Op::Reverse | Op::Refund => &["mpin", "terminal"],
            Op::Transfer => &["mpin", "to", "pin"],
            Op::Lost | Op::Found | Op::Lock | Op::Unlock => &["mpin"],
            Op::Replace => &["mpin", "new"],
            Op::Close => &["mpin", "pin"],
            Op::Hold => &["pin", "expires"],
            Op::Capture | Op::Void => &["terminal"],
            Op::VisitsAdd => &["pin", "service", "count", "days", "tender", "cash"],
            Op::Visit => &["pin", "service", "count"],
            Op::Import => &[
                "name", "phone", "level", "pin", "birthday", "balance", "points",
            ],
        }
    }

    /// The names `attr2` must carry for this op (§6 without "optional" or
    /// "if set"); missing is 1001.
    pub fn attr2_required(self) -> &'static [&'static str] {
        match self {
            Op::Register => &["name", "phone", "level"],
            Op::Import => &["name", "phone", "level", "balance", "points"],
            Op::Points => &["delta", "reason"],
            Op::Redeem => &["cost", "gift"],
            Op::Transfer => &["mpin", "to"],
            Op::Replace => &["mpin", "new"],
            Op::VisitsAdd => &["service", "count"],
            Op::Visit => &["service"],
            op if op.is_manager() => &["mpin"],
            _ => &[],
        }
    }
}

/// What an op's `attr1` names (protocol.md §6, §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr1 {
    Card,
    /// `reverse`, `refund`, and `capture`, `void` (the hold's): an order's
    /// `order_no`.
    OrderNo,
    /// `find`: a phone number, or a card number.
    PhoneOrCard,
    /// `settlement`: a business day, `YYYY-MM-DD`.
    Day,
    /// `liability`: a store id, or `*` for every store.
    StoreOrAll,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Ok(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        for bad in ["", "Debit", "debit ", "refund2", "sale"] {
            assert_eq!(Op::parse(bad), Err(Errno::Malformed));
        }
    }

    #[test]
    fn classes() {
        let posting: Vec<_> = Op::ALL.into_iter().filter(|o| !o.is_posting()).collect();
        assert_eq!(
            posting,
            [
                Op::Query,
                Op::Member,
                Op::History,
                Op::Find,
                Op::Statement,
                Op::Settlement,
                Op::Liability,
                Op::Visits
            ]
        );
        assert_eq!(Op::ALL.into_iter().filter(|o| o.is_manager()).count(), 9);
        for op in Op::ALL {
            assert!(!op.is_manager() || op.is_posting(), "{op}");
            assert_eq!(op.is_manager(), op.attr2_fields().contains(&"mpin"), "{op}");
            assert_eq!(
                op.is_manager(),
                op.attr2_required().contains(&"mpin"),
                "{op}"
            );
            for n in op.attr2_required() {
                assert!(op.attr2_fields().contains(n), "{op} {n}");
            }
        }
    }
}

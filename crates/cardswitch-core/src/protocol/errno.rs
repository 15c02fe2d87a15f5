//! The error numbers of protocol.md §5. The wire value of each is fixed forever.

/// An error number as sent in `<errno>`. `Ok` is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Errno {
    Ok = 0,
    Malformed = 1001,
    UnknownTerminal = 1002,
    LoginRefused = 1003,
    KeyUnknown = 1004,
    TsOutsideWindow = 1005,
    TsUsed = 1006,
    BadMac = 1007,
    DecryptFailed = 1008,
    Throttled = 1009,
    CardNotFound = 2001,
    CardLost = 2002,
    CardLocked = 2003,
    InsufficientBalance = 2004,
    InsufficientPoints = 2005,
    OrderReused = 2006,
    OriginalNotFound = 2007,
    AlreadyReversed = 2008,
    WrongPin = 2009,
    InvalidAmount = 2010,
    OperatorRefused = 2011,
    CardInUse = 2012,
    NotForThisTerminal = 2013,
    NotEnoughVisits = 2014,
    MembershipExpired = 2015,
    OverLimit = 2016,
    HasHolds = 2017,
    Tampered = 3001,
    Unavailable = 3002,
    Internal = 3003,
}

impl Errno {
    pub const ALL: [Errno; 30] = [
        Errno::Ok,
        Errno::Malformed,
        Errno::UnknownTerminal,
        Errno::LoginRefused,
        Errno::KeyUnknown,
        Errno::TsOutsideWindow,
        Errno::TsUsed,
        Errno::BadMac,
        Errno::DecryptFailed,
        Errno::Throttled,
        Errno::CardNotFound,
        Errno::CardLost,
        Errno::CardLocked,
        Errno::InsufficientBalance,
        Errno::InsufficientPoints,
        Errno::OrderReused,
        Errno::OriginalNotFound,
        Errno::AlreadyReversed,
        Errno::WrongPin,
        Errno::InvalidAmount,
        Errno::OperatorRefused,
        Errno::CardInUse,
        Errno::NotForThisTerminal,
        Errno::NotEnoughVisits,
        Errno::MembershipExpired,
        Errno::OverLimit,
        Errno::HasHolds,
        Errno::Tampered,
        Errno::Unavailable,
        Errno::Internal,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<Errno> {
        Errno::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The short English text sent in `<errmsg>`; never carries internal detail.
    pub fn message(self) -> &'static str {
        match self {
            Errno::Ok => "ok",
            Errno::Malformed => "malformed request",
            Errno::UnknownTerminal => "unknown or disabled terminal",
            Errno::LoginRefused => "login refused",
            Errno::KeyUnknown => "key or session unknown, expired or revoked",
            Errno::TsOutsideWindow => "ts outside the time window",
            Errno::TsUsed => "ts already used",
            Errno::BadMac => "integrity check failed",
            Errno::DecryptFailed => "decryption failed",
            Errno::Throttled => "too many requests",
            Errno::CardNotFound => "card not found",
            Errno::CardLost => "card reported lost",
            Errno::CardLocked => "card locked or closed",
            Errno::InsufficientBalance => "insufficient balance",
            Errno::InsufficientPoints => "insufficient points",
            Errno::OrderReused => "order number reused with different content",
            Errno::OriginalNotFound => "original order not found",
            Errno::AlreadyReversed => "original already reversed or refunded",
            Errno::WrongPin => "wrong card pin",
            Errno::InvalidAmount => "invalid amount",
            Errno::OperatorRefused => "operator not allowed",
            Errno::CardInUse => "card number already in use",
            Errno::NotForThisTerminal => "operation not allowed for this terminal",
            Errno::NotEnoughVisits => "not enough visits",
            Errno::MembershipExpired => "membership expired",
            Errno::OverLimit => "over a limit",
            Errno::HasHolds => "card has active holds",
            Errno::Tampered => "stored data failed its integrity check",
            Errno::Unavailable => "service unavailable",
            Errno::Internal => "internal error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for e in Errno::ALL {
            assert_eq!(Errno::from_code(e.code()), Some(e));
            seen.insert(e.code());
        }
        assert_eq!(seen.len(), Errno::ALL.len());
        assert_eq!(Errno::from_code(1010), None);
    }
}

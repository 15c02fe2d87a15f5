//! The one error type of the daemon, and the one place that maps it to an
//! errno and an HTTP status. Internal detail stays in `Display` (for the log);
//! a client only ever sees the errno and its fixed message.

use crate::protocol::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A refusal with nothing changed: the transaction, `ts` included, is
    /// rolled back (a refusal that commits is an `Outcome`, not an error).
    #[error("refused with errno {}", .0.code())]
    Refused(Errno),
    /// A row names a row key this process has not loaded (a
    /// `keys rotate-row-key` running): roll back, load the keys, run again.
    #[error("a row is MACed under row key {0}, not loaded here")]
    UnknownRowKey(String),
    /// A pooled connection was found closed before BEGIN: nothing ran, so
    /// the request may run again on another connection.
    #[error("stale pooled connection")]
    StaleConnection,
    /// A compare-and-swap lost to other writers too often (the named row).
    #[error("gave up: {0} kept moving")]
    Contended(&'static str),
    /// Stored data failed its integrity check; nothing was changed.
    #[error("integrity check failed: {0}")]
    Tampered(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::Refused(e)
    }
}

impl Error {
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }

    /// The errno a client is answered with.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Refused(e) => *e,
            Error::Tampered(_) => Errno::Tampered,
            Error::Db(e) => db_errno(e),
            Error::Pool(_) => Errno::Unavailable,
            Error::StaleConnection | Error::Contended(_) => Errno::Unavailable,
            // Still unknown after the keys were loaded again: a row names a
            // key that does not exist.
            Error::UnknownRowKey(_) => Errno::Tampered,
            Error::Internal(_) => Errno::Internal,
        }
    }

    /// The HTTP status of an answer carrying this error. The XML body is
    /// authoritative; the status only lets proxies and logs tell classes apart.
    pub fn http_status(&self) -> u16 {
        errno_http_status(self.errno())
    }
}

/// HTTP status for an answer with this errno (proto-spec §"HTTP status").
pub fn errno_http_status(e: Errno) -> u16 {
    match e {
        Errno::Ok => 200,
        Errno::Malformed | Errno::TsOutsideWindow | Errno::BadMac | Errno::DecryptFailed => 400,
        Errno::UnknownTerminal | Errno::LoginRefused => 403,
        Errno::KeyUnknown => 401,
        Errno::TsUsed => 409,
        Errno::Throttled => 429,
        Errno::CardNotFound
        | Errno::CardLost
        | Errno::CardLocked
        | Errno::InsufficientBalance
        | Errno::InsufficientPoints
        | Errno::OrderReused
        | Errno::OriginalNotFound
        | Errno::AlreadyReversed
        | Errno::WrongPin
        | Errno::InvalidAmount
        | Errno::OperatorRefused
        | Errno::CardInUse
        | Errno::NotForThisTerminal
        | Errno::NotEnoughVisits
        | Errno::MembershipExpired
        | Errno::OverLimit
        | Errno::HasHolds => 200,
        Errno::Unavailable => 503,
        Errno::Tampered | Errno::Internal => 500,
    }
}

/// A database error that means "the database could not be reached or gave up"
/// is 3002 (resend later, nothing changed); anything else is a bug: 3003.
fn db_errno(e: &tokio_postgres::Error) -> Errno {
    match e.code() {
        None => Errno::Unavailable,
        Some(state) => {
            let code = state.code();
            let unavailable = code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                // read-only transaction: a node that is not (or no longer,
                // or not yet again) the primary, reached through a proxy
                // during a failover or a restart (issue 13)
                || code == "25006"
                || code == "40001" // serialization failure
                || code == "40P01" // deadlock detected
                || code == "55P03" // lock_timeout
                || code == "57014"; // statement_timeout (query canceled)
            if unavailable {
                Errno::Unavailable
            } else {
                Errno::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errno_has_a_status() {
        for e in Errno::ALL {
            let s = errno_http_status(e);
            assert!((200..600).contains(&s));
        }
        assert_eq!(Error::Refused(Errno::Throttled).http_status(), 429);
        assert_eq!(Error::internal("boom").errno(), Errno::Internal);
        assert_eq!(Error::Tampered("x".into()).errno(), Errno::Tampered);
    }

    #[test]
    fn internal_text_is_not_in_the_errmsg() {
        let e = Error::internal("password=hunter2");
        assert!(!e.errno().message().contains("hunter2"));
    }
}

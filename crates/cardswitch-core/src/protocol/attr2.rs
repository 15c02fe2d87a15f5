//! The grammars of the named values inside `attr2` (proto-spec/README.md
//! §10). protocol.md leaves them open; checking them here means the ledger
//! only ever sees well-formed values, and a malformed one is 1001 whatever
//! op carries it.

use super::errno::Errno;
use super::fault::Malformed;
use super::form::Form;
use super::grammar;
use super::op::Op;

/// Longest `limit` of a `history` request.
pub const MAX_HISTORY_LIMIT: u32 = 50;
/// `limit` when the request gives none.
pub const DEFAULT_HISTORY_LIMIT: u32 = 10;

fn digits(v: &str, min: usize, max: usize) -> Result<(), Errno> {
    let ok = (min..=max).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_digit());
    ok.then_some(()).ok_or(Errno::Malformed)
}

/// Card and manager PINs: `[0-9]{4,12}`.
pub fn pin(v: &str) -> Result<(), Errno> {
    digits(v, 4, 12)
}

/// `limit`: a count with no leading zero, at most `max` (each op has its
/// own: `history` 50, `find` 20, `statement` 200).
pub fn limit(v: &str, max: u32) -> Result<u32, Errno> {
    digits(v, 1, 3)?;
    let n: u32 = v.parse().map_err(|_| Errno::Malformed)?;
    if v.starts_with('0') || n > max {
        return Err(Errno::Malformed);
    }
    Ok(n)
}

/// The largest `limit` an op takes.
pub fn max_limit(op: Op) -> u32 {
    match op {
        Op::Find => FIND_LIMIT_MAX,
        Op::Statement => STATEMENT_LIMIT_MAX,
        _ => MAX_HISTORY_LIMIT,
    }
}

/// `find`'s largest `limit` (protocol.md §6.1).
pub const FIND_LIMIT_MAX: u32 = 20;
/// `statement`'s largest `limit` (protocol.md §6.1).
pub const STATEMENT_LIMIT_MAX: u32 = 200;

/// A number with no sign and no leading zero, of at most `max` digits
/// (`after`, a `txn_id`; `from`, `to`, Unix ms).
pub fn count(v: &str, max: usize) -> Result<i64, Errno> {
    digits(v, 1, max)?;
    if v.len() > 1 && v.starts_with('0') {
        return Err(Errno::Malformed);
    }
    v.parse().map_err(|_| Errno::Malformed)
}

/// A business day `YYYY-MM-DD` (`settlement`'s `attr1`).
pub fn date(v: &str) -> Result<(), Errno> {
    birthday(v)
}

/// A store id, or `*` for every store.
pub fn store(v: &str) -> Result<(), Errno> {
    if v == crate::ledger::ALL_STORES {
        return Ok(());
    }
    grammar::terminal(v).map(drop)
}

/// Free text (`name`, `reason`, `gift`): 1–64 characters, no control characters.
pub fn text(v: &str) -> Result<(), Errno> {
    let n = v.chars().count();
    let ok = (1..=64).contains(&n) && !v.chars().any(char::is_control);
    ok.then_some(()).ok_or(Errno::Malformed)
}

/// `phone`: `\+?[0-9]{5,20}`.
pub fn phone(v: &str) -> Result<(), Errno> {
    digits(v.strip_prefix('+').unwrap_or(v), 5, 20)
}

/// `birthday`: `YYYY-MM-DD`, a real date of the Gregorian calendar.
pub fn birthday(v: &str) -> Result<(), Errno> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(Errno::Malformed);
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, Errno> {
        digits(&v[r.clone()], r.len(), r.len())?;
        v[r].parse().map_err(|_| Errno::Malformed)
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(Errno::Malformed),
    };
    (y >= 1 && (1..=days).contains(&d))
        .then_some(())
        .ok_or(Errno::Malformed)
}

/// A hold's life in seconds when the request sets none (protocol.md §6.2).
pub const HOLD_EXPIRES_DEFAULT_S: u32 = 604_800;
/// The shortest and longest life a request may give a hold.
pub const HOLD_EXPIRES_S: std::ops::RangeInclusive<u32> = 60..=2_592_000;

/// `expires`: `[1-9][0-9]{1,6}` seconds, within [`HOLD_EXPIRES_S`].
pub fn hold_expires_s(v: &str) -> Result<u32, Errno> {
    digits(v, 2, 7)?;
    if v.starts_with('0') {
        return Err(Errno::Malformed);
    }
    let s: u32 = v.parse().map_err(|_| Errno::Malformed)?;
    HOLD_EXPIRES_S
        .contains(&s)
        .then_some(s)
        .ok_or(Errno::Malformed)
}

/// The most visits one `visits_add` buys, and the longest they may last.
pub const VISITS_COUNT_MAX: u32 = 9_999;
pub const VISITS_DAYS_MAX: u32 = 99_999;

/// `count` `[1-9][0-9]{0,3}` and `days` `[1-9][0-9]{0,4}` (protocol.md
/// §6.2): a positive number of at most `max_digits` digits.
pub fn positive(v: &str, max_digits: usize) -> Result<u32, Errno> {
    digits(v, 1, max_digits)?;
    if v.starts_with('0') {
        return Err(Errno::Malformed);
    }
    v.parse().map_err(|_| Errno::Malformed)
}

/// Checks one named value of `attr2` of `op` (`to` is a card for a
/// `transfer`, a time for a `statement`).
pub fn check_value(op: Op, name: &str, v: &str) -> Result<(), Errno> {
    match (op, name) {
        (Op::Statement, "from" | "to") => count(v, 15).map(drop),
        (Op::Statement, "after") => count(v, 18).map(drop),
        (Op::Settlement, "store") => store(v),
        (Op::Settlement, "by") => matches!(v, "op" | "terminal")
            .then_some(())
            .ok_or(Errno::Malformed),
        (_, name) => check_named(op, name, v),
    }
}

fn check_named(op: Op, name: &str, v: &str) -> Result<(), Errno> {
    match name {
        "pin" | "mpin" => pin(v),
        "tender" => matches!(v, "balance" | "cash" | "split")
            .then_some(())
            .ok_or(Errno::Malformed),
        "cash" => grammar::amount(v).map(drop),
        "limit" => limit(v, max_limit(op)).map(drop),
        "delta" => grammar::points(v).map(drop),
        "cost" => digits(v, 1, 12),
        "reason" | "gift" | "name" => text(v),
        "phone" => phone(v),
        "level" => grammar::terminal(v).map(drop),
        "birthday" => birthday(v),
        "referrer" | "to" | "new" => grammar::card(v).map(drop),
        "balance" => grammar::amount(v).map(drop),
        "points" => count(v, 15).map(drop),
        "terminal" => grammar::terminal(v).map(drop),
        "expires" => hold_expires_s(v).map(drop),
        // A service is named as a level is.
        "service" => grammar::terminal(v).map(drop),
        "count" => positive(v, 4).map(drop),
        "days" => positive(v, 5).map(drop),
        _ => Err(Errno::Malformed),
    }
}

/// Checks a decoded `attr2` against its op: every value in its grammar and
/// every required name present (the allowed names were checked on decoding).
pub fn check(op: Op, attr2: &Form) -> Result<(), Malformed> {
    for (name, value) in attr2.pairs() {
        check_value(op, name, value).map_err(|_| Malformed::sent(Some("attr2"), name))?;
    }
    match op.attr2_required().iter().find(|n| attr2.get(n).is_none()) {
        None => tender_pairs(op, attr2),
        Some(missing) => Err(Malformed::at(missing).within("attr2")),
    }
}

/// `cash` goes with `tender=split` and only with it (protocol.md §6.2); a
/// split is a way to pay a sale, so a `topup` cannot be split.
fn tender_pairs(op: Op, attr2: &Form) -> Result<(), Malformed> {
    let split = attr2.get("tender") == Some("split");
    match (op, split, attr2.get("cash").is_some()) {
        (Op::Debit | Op::VisitsAdd, split, cash) if split != cash => {
            Err(Malformed::at("attr2.cash"))
        }
        (Op::Debit | Op::VisitsAdd, ..) => Ok(()),
        (_, true, _) => Err(Malformed::at("attr2.tender")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        for (n, v) in [
            ("pin", "1234"),
            ("mpin", "123456789012"),
            ("tender", "cash"),
            ("tender", "split"),
            ("cash", "0.5"),
            ("limit", "50"),
            ("limit", "1"),
            ("delta", "-20"),
            ("cost", "0"),
            ("name", "李 雷"),
            ("phone", "+8613800000000"),
            ("level", "gold"),
            ("birthday", "2000-02-29"),
            ("to", "CARD9"),
            ("terminal", "T-2"),
        ] {
            assert_eq!(check_value(Op::History, n, v), Ok(()), "{n}={v}");
        }
        for (n, v) in [
            ("pin", "123"),
            ("pin", "12a4"),
            ("tender", "Cash"),
            ("cash", "-1"),
            ("cash", "1.005"),
            ("limit", "0"),
            ("limit", "51"),
            ("limit", "05"),
            ("delta", "+1"),
            ("cost", "-1"),
            ("name", &"x".repeat(65)),
            ("reason", "a\nb"),
            ("phone", "1234"),
            ("phone", "138 0000"),
            ("birthday", "1900-02-29"),
            ("birthday", "2001-13-01"),
            ("birthday", "2001-1-01"),
            ("birthday", "0000-01-01"),
            ("birthday", "2001-04-31"),
            ("new", "C-1"),
            ("unknown", "x"),
        ] {
            assert_eq!(
                check_value(Op::History, n, v),
                Err(Errno::Malformed),
                "{n}={v}"
            );
        }
        assert_eq!(limit("7", 50), Ok(7));
        assert_eq!(
            check_value(Op::History, "birthday", "2000-02-3é"),
            Err(Errno::Malformed)
        );
    }

    #[test]
    fn office_values() {
        let ok = |op, n, v| check_value(op, n, v) == Ok(());
        assert!(ok(Op::Statement, "limit", "200"));
        assert!(!ok(Op::Statement, "limit", "201"));
        assert!(ok(Op::Find, "limit", "20"));
        assert!(!ok(Op::Find, "limit", "21"));
        assert!(!ok(Op::History, "limit", "100"));
        assert!(ok(Op::Statement, "to", "1795000000000"));
        assert!(ok(Op::Statement, "after", "0"));
        assert!(!ok(Op::Statement, "after", "01"));
        assert!(!ok(Op::Statement, "from", "-1"));
        assert!(ok(Op::Transfer, "to", "CARD9"));
        assert!(ok(Op::Settlement, "store", "*"));
        assert!(ok(Op::Settlement, "store", "S-1"));
        assert!(!ok(Op::Settlement, "store", "S 1"));
        assert!(ok(Op::Settlement, "by", "terminal"));
        assert!(!ok(Op::Settlement, "by", "card"));
        assert_eq!(date("2026-02-29"), Err(Errno::Malformed));
        assert_eq!(store("**"), Err(Errno::Malformed));
    }

    #[test]
    fn cash_goes_with_a_split_debit_only() {
        let form = |s: &str| super::super::form::parse_form_any(s.as_bytes()).unwrap();
        let field = |op, s: &str| check(op, &form(s)).map_err(|m| m.field().to_owned());
        assert_eq!(field(Op::Debit, "tender=split&cash=1.50"), Ok(()));
        assert_eq!(field(Op::Debit, "tender=split"), Err("attr2.cash".into()));
        assert_eq!(
            field(Op::Debit, "tender=cash&cash=1"),
            Err("attr2.cash".into())
        );
        assert_eq!(field(Op::Debit, "cash=1"), Err("attr2.cash".into()));
        assert_eq!(field(Op::Topup, "tender=split"), Err("attr2.tender".into()));
        assert_eq!(field(Op::Topup, "tender=cash"), Ok(()));
    }
}

//! The value grammars of protocol.md §1, as hand-written matchers.
//!
//! Each check works on bytes so that a value can never smuggle in a
//! non-ASCII look-alike; every failure is `Errno::Malformed`.

use base64::Engine as _;
use rust_decimal::Decimal;

use super::errno::Errno;

fn charset_len(v: &str, min: usize, max: usize, ok: impl Fn(u8) -> bool) -> Result<&str, Errno> {
    let b = v.as_bytes();
    if b.len() < min || b.len() > max || !b.iter().all(|&c| ok(c)) {
        return Err(Errno::Malformed);
    }
    Ok(v)
}

fn id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// `terminal`: `[A-Za-z0-9_-]{1,32}`.
pub fn terminal(v: &str) -> Result<&str, Errno> {
    charset_len(v, 1, 32, id_char)
}

/// `operator`: same grammar as a terminal id.
pub fn operator(v: &str) -> Result<&str, Errno> {
    charset_len(v, 1, 32, id_char)
}

/// `order_no`: `[A-Za-z0-9_-]{1,64}`.
pub fn order_no(v: &str) -> Result<&str, Errno> {
    charset_len(v, 1, 64, id_char)
}

/// Card numbers: `[A-Za-z0-9]{4,32}`.
pub fn card(v: &str) -> Result<&str, Errno> {
    charset_len(v, 4, 32, |c| c.is_ascii_alphanumeric())
}

/// `key_id`: `[A-Za-z0-9._-]{1,64}`, opaque to clients.
pub fn key_id(v: &str) -> Result<&str, Errno> {
    charset_len(v, 1, 64, |c| id_char(c) || c == b'.')
}

/// `sid`: same grammar as `key_id`.
pub fn sid(v: &str) -> Result<&str, Errno> {
    key_id(v)
}

/// A root key id: the first 16 hex digits of the root key's fingerprint.
/// proto-spec decides: lower-case hex only, `[0-9a-f]{16}`.
pub fn root_id(v: &str) -> Result<&str, Errno> {
    charset_len(v, 16, 16, |c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// `ts`: `[1-9][0-9]{12,15}`, Unix milliseconds. 16 digits always fit a u64.
pub fn ts(v: &str) -> Result<u64, Errno> {
    let b = v.as_bytes();
    if !(13..=16).contains(&b.len()) || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return Err(Errno::Malformed);
    }
    v.parse().map_err(|_| Errno::Malformed)
}

/// `ts` as i64, for PostgreSQL BIGINT columns; 16 digits always fit.
pub fn ts_i64(v: &str) -> Result<i64, Errno> {
    ts(v).map(|t| t as i64)
}

/// Amounts: `(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?`.
///
/// The value keeps the scale it was sent with; amounts are compared as
/// numbers, so "1.5" and "1.50" are equal `Decimal`s.
pub fn amount(v: &str) -> Result<Decimal, Errno> {
    let b = v.as_bytes();
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    let int_ok = match int {
        [b'0'] => true,
        [first, rest @ ..] => {
            (b'1'..=b'9').contains(first) && rest.len() <= 11 && rest.iter().all(u8::is_ascii_digit)
        }
        [] => false,
    };
    let frac_ok = match frac {
        None => true,
        Some(f) => (1..=2).contains(&f.len()) && f.iter().all(u8::is_ascii_digit),
    };
    if !int_ok || !frac_ok {
        return Err(Errno::Malformed);
    }
    Decimal::from_str_exact(v).map_err(|_| Errno::Malformed)
}

/// Points: `-?[0-9]{1,12}`.
pub fn points(v: &str) -> Result<i64, Errno> {
    let digits = v.strip_prefix('-').unwrap_or(v).as_bytes();
    if !(1..=12).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Errno::Malformed);
    }
    v.parse().map_err(|_| Errno::Malformed)
}

/// Base64, RFC 4648 §4: standard alphabet, padding required, no line breaks.
///
/// The engine also refuses non-zero trailing bits, so every byte string has
/// exactly one accepted text and a MAC over the text is a MAC over the bytes.
pub fn base64(v: &str) -> Result<Vec<u8>, Errno> {
    base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|_| Errno::Malformed)
}

/// The base64 text of `bytes`, as every sender writes it.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// [`base64_encode`], appended to `out`.
pub fn base64_encode_into(bytes: &[u8], out: &mut String) {
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out)
}

/// The length of [`base64_encode`]`(bytes)` for `n` bytes (padded).
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn base64_into_and_len(prefix in "[a-z]{0,3}", b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut out = prefix.clone();
            base64_encode_into(&b, &mut out);
            prop_assert_eq!(out, format!("{prefix}{}", base64_encode(&b)));
            prop_assert_eq!(base64_len(b.len()), base64_encode(&b).len());
        }
    }

    #[test]
    fn ids() {
        for ok in ["a", "T-01_x", &"a".repeat(32)] {
            assert!(terminal(ok).is_ok(), "{ok}");
            assert!(operator(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "a b", "é", &"a".repeat(33), "a\0"] {
            assert!(terminal(bad).is_err(), "{bad}");
            assert!(operator(bad).is_err(), "{bad}");
        }
        assert!(order_no(&"9".repeat(64)).is_ok());
        assert!(order_no(&"9".repeat(65)).is_err());
        assert!(order_no("a.b").is_err());
        assert!(card("1234").is_ok());
        assert!(card("123").is_err());
        assert!(card("12-34").is_err());
        assert!(card(&"A".repeat(33)).is_err());
        assert!(key_id("k.2026-11-22_1").is_ok());
        assert!(sid(&"s".repeat(64)).is_ok());
        assert!(sid(&"s".repeat(65)).is_err());
        assert!(key_id("a/b").is_err());
        assert!(root_id("0123456789abcdef").is_ok());
        assert!(root_id("0123456789ABCDEF").is_err());
        assert!(root_id("0123456789abcde").is_err());
    }

    #[test]
    fn ts_grammar() {
        assert_eq!(ts("1795000000000"), Ok(1_795_000_000_000));
        assert_eq!(ts("9999999999999999"), Ok(9_999_999_999_999_999));
        assert_eq!(ts_i64("1795000000000"), Ok(1_795_000_000_000));
        for bad in [
            "",
            "179500000000",
            "0795000000000",
            "17950000000000000",
            "+1795000000000",
            "1795000000000 ",
            "-179500000000",
        ] {
            assert_eq!(ts(bad), Err(Errno::Malformed), "{bad}");
        }
    }

    #[test]
    fn amount_grammar() {
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        assert_eq!(amount("0"), Ok(d("0")));
        assert_eq!(amount("0.5"), Ok(d("0.5")));
        assert_eq!(amount("12.34"), Ok(d("12.34")));
        assert_eq!(amount("999999999999.99"), Ok(d("999999999999.99")));
        assert_eq!(amount("1.5"), amount("1.50"));
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "1.234",
            "-1",
            "+1",
            "1e3",
            "1,5",
            "1000000000000",
            " 1",
            "1 ",
            "0.",
            "00",
        ] {
            assert_eq!(amount(bad), Err(Errno::Malformed), "{bad}");
        }
    }

    #[test]
    fn points_grammar() {
        assert_eq!(points("0"), Ok(0));
        assert_eq!(points("-0"), Ok(0));
        assert_eq!(points("007"), Ok(7));
        assert_eq!(points("-999999999999"), Ok(-999_999_999_999));
        for bad in ["", "-", "+1", "1000000000000", "1.0", "--1", " 1"] {
            assert_eq!(points(bad), Err(Errno::Malformed), "{bad}");
        }
    }

    #[test]
    fn base64_grammar() {
        assert_eq!(base64("AAEC"), Ok(vec![0, 1, 2]));
        assert_eq!(base64("AA=="), Ok(vec![0]));
        assert_eq!(base64(""), Ok(vec![]));
        for bad in ["AA", "AA=", "AA\n==", "A-_A", "AB==", "AAEC\n", " AAEC"] {
            assert_eq!(base64(bad), Err(Errno::Malformed), "{bad}");
        }
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = (terminal(&s), order_no(&s), card(&s), key_id(&s), ts(&s), amount(&s), points(&s), base64(&s));
        }

        #[test]
        fn amount_accepts_its_grammar(i in 0u64..1_000_000_000_000, f in proptest::option::of(0u8..100), two in any::<bool>()) {
            let s = match f {
                None => i.to_string(),
                Some(f) if two => format!("{i}.{f:02}"),
                Some(f) => format!("{i}.{}", f % 10),
            };
            prop_assert_eq!(amount(&s).unwrap(), Decimal::from_str_exact(&s).unwrap());
        }

        #[test]
        fn base64_round_trips(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(base64(&base64_encode(&b)).unwrap(), b);
        }

        #[test]
        fn ts_accepts_its_grammar(t in 1_000_000_000_000u64..10_000_000_000_000_000) {
            prop_assert_eq!(ts(&t.to_string()).unwrap(), t);
        }
    }
}

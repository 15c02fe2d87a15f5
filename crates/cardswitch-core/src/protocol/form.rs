//! Strict `application/x-www-form-urlencoded`, both ways.
//!
//! Decoding is stricter than browsers are, because every leniency is a second
//! spelling of the same request, and the request MAC, the replay record and
//! the idempotency hash all assume one. See proto-spec/README.md §1.2.

use super::errno::Errno;
use super::fault::Malformed;

/// Bodies and `attr2` values above this size are refused (protocol.md §1).
pub const MAX_BODY: usize = 16 * 1024;

/// A decoded form: each name at most once, in the order received.
///
/// proto-spec decides: a field sent with an empty value (`amount=`) is the
/// same as a field not sent, so PHP's `http_build_query` with `''` values and
/// a client that omits the field produce the same request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field the request cannot do without: missing is 1001, at `name`.
    pub fn require(&self, name: &str) -> Result<&str, Malformed> {
        self.get(name).ok_or_else(|| Malformed::at(name))
    }

    /// The non-empty fields, in the order received.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Decodes `body`, accepting only the field names in `allowed`.
///
/// Refused with 1001: over 16 KiB; a byte outside printable ASCII (raw spaces,
/// line breaks, raw UTF-8 — all must be percent-encoded); an empty pair
/// (`a=1&&b=2`, a trailing `&`); a pair without `=`; a `%` not followed by two
/// hex digits; a name or value that is not UTF-8 once decoded; an unknown or
/// repeated name (even if one of the repeats is empty).
/// The fault names the field when it can: the repeated or unknown name (if
/// it looks like one), or the field whose value does not decode.
pub fn parse_form(body: &[u8], allowed: &[&str]) -> Result<Form, Malformed> {
    parse(body, Some(allowed))
}

/// Like [`parse_form`] but with any names; used where the names are checked
/// later or not at all (canonicalising an `attr2`).
pub fn parse_form_any(body: &[u8]) -> Result<Form, Malformed> {
    parse(body, None)
}

fn parse(body: &[u8], allowed: Option<&[&str]>) -> Result<Form, Malformed> {
    if body.len() > MAX_BODY {
        return Err(Malformed::body());
    }
    let mut form = Form::default();
    if body.is_empty() {
        return Ok(form);
    }
    // Every pair, empty values included, so that a repeat of an empty field
    // is refused too; the empty ones are dropped at the end.
    let mut pairs: Vec<(String, String)> =
        Vec::with_capacity(body.iter().filter(|&&b| b == b'&').count() + 1);
    for pair in body.split(|&b| b == b'&') {
        let eq = pair
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(Malformed::body)?;
        let name = decode_component(&pair[..eq]).map_err(|_| Malformed::body())?;
        if allowed.is_some_and(|a| !a.contains(&name.as_str()))
            || pairs.iter().any(|(n, _)| *n == name)
        {
            return Err(Malformed::sent(None, &name));
        }
        let value = decode_component(&pair[eq + 1..]).map_err(|_| Malformed::sent(None, &name))?;
        pairs.push((name, value));
    }
    pairs.retain(|(_, v)| !v.is_empty());
    form.pairs = pairs;
    Ok(form)
}

/// Decodes an `attr2` value (already decoded once as a field of the inner
/// form) as a form of its own, with the same strictness; a fault is named
/// inside it (`attr2.pin`, or `attr2` as a whole).
pub fn parse_attr2(value: &str, allowed: &[&str]) -> Result<Form, Malformed> {
    parse_form(value.as_bytes(), allowed).map_err(|m| m.within("attr2"))
}

fn decode_component(raw: &[u8]) -> Result<String, Errno> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&c| hex_val(c));
                let lo = raw.get(i + 2).and_then(|&c| hex_val(c));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(Errno::Malformed),
                }
                i += 2;
            }
            // `=` is allowed raw in a value because base64 padding often
            // travels unencoded; only the first `=` of a pair splits it.
            c if (0x21..=0x7e).contains(&c) => out.push(c),
            _ => return Err(Errno::Malformed),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Errno::Malformed)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes one name or value exactly as the WHATWG urlencoded
/// serializer does: `A-Z a-z 0-9 * - . _` kept, space as `+`, every other
/// byte of the UTF-8 as `%XX` with upper-case hex.
pub fn encode_component(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// Encodes pairs in the order given, joined by `&`. Empty values are
/// skipped, since a receiver treats them as absent anyway.
pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        encode_component(name, &mut out);
        out.push('=');
        encode_component(value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const F: &[&str] = &["a", "b", "c d", "é"];

    #[test]
    fn decodes() {
        let f = parse_form(b"a=1+2%2B3&b=x%3D%26y&c+d=%C3%A9", F).unwrap();
        assert_eq!(f.get("a"), Some("1 2+3"));
        assert_eq!(f.get("b"), Some("x=&y"));
        assert_eq!(f.get("c d"), Some("é"));
        assert_eq!(f.require("é"), Err(Malformed::at("é")));
        assert_eq!(parse_form(b"a=AA==", F).unwrap().get("a"), Some("AA=="));
        assert_eq!(parse_form(b"%C3%a9=1", F).unwrap().get("é"), Some("1"));
        assert!(parse_form(b"", F).unwrap().is_empty());
    }

    #[test]
    fn empty_value_is_absent() {
        let f = parse_form(b"a=&b=2", F).unwrap();
        assert_eq!(f.get("a"), None);
        assert_eq!(f.pairs().collect::<Vec<_>>(), vec![("b", "2")]);
        assert_eq!(parse_form(b"a=&a=1", F), Err(Malformed::at("a")));
    }

    #[test]
    fn refuses_naming_the_field() {
        let bad: &[(&[u8], &str)] = &[
            (b"a=1&a=2", "a"),
            (b"a=1&z=2", "z"),
            (b"a=1&Z%3C=2", "body"),
            (b"a=1&&b=2", "body"),
            (b"a=1&", "body"),
            (b"&a=1", "body"),
            (b"a", "body"),
            (b"a=%", "a"),
            (b"a=%4", "a"),
            (b"a=%G0", "a"),
            (b"a=%C3", "a"),
            (b"a=%FF", "a"),
            (b"a=1 2", "a"),
            (b"a=1\n", "a"),
            (b"a=\xc3\xa9", "a"),
            (b"a=\x00", "a"),
            (b"=1", "body"),
        ];
        for (b, field) in bad {
            assert_eq!(
                parse_form(b, F),
                Err(Malformed::at(field)),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let mut big = b"a=".to_vec();
        big.resize(MAX_BODY, b'x');
        assert!(parse_form(&big, F).is_ok());
        big.push(b'x');
        assert_eq!(parse_form(&big, F), Err(Malformed::body()));
    }

    #[test]
    fn encodes_like_whatwg() {
        assert_eq!(
            encode_form(&[("a", "1 2+3"), ("b", ""), ("c d", "é~*/=&")]),
            "a=1+2%2B3&c+d=%C3%A9%7E*%2F%3D%26"
        );
        let inner = encode_form(&[("pin", "12 34"), ("tender", "cash")]);
        let outer = encode_form(&[("attr2", &inner)]);
        assert_eq!(outer, "attr2=pin%3D12%2B34%26tender%3Dcash");
        let f = parse_form(outer.as_bytes(), &["attr2"]).unwrap();
        let a2 = parse_attr2(f.get("attr2").unwrap(), &["pin", "tender"]).unwrap();
        assert_eq!(a2.get("pin"), Some("12 34"));
        assert_eq!(
            parse_attr2("pin=1&pin=2", &["pin"]),
            Err(Malformed::at("attr2.pin"))
        );
        assert_eq!(parse_attr2("pin", &["pin"]), Err(Malformed::at("attr2")));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_form(&b, F);
        }

        #[test]
        fn never_panics_formish(s in "[a-c=&%+0-9A-F]{0,40}") {
            let _ = parse_form(s.as_bytes(), F);
        }

        #[test]
        fn round_trips(a in ".{1,30}", b in ".{1,30}") {
            let enc = encode_form(&[("a", &a), ("é", &b)]);
            let f = parse_form(enc.as_bytes(), F).unwrap();
            prop_assert_eq!(f.get("a"), Some(a.as_str()));
            prop_assert_eq!(f.get("é"), Some(b.as_str()));
        }
    }
}

//! Where a 1001 found its fault: the `<field>` of the answer (protocol.md
//! §4.1). Parsers of whole requests return [`Malformed`]; the grammars of
//! single values keep returning [`Errno`] and get their field name with
//! [`At::at`] where the request names them.

use super::errno::Errno;

/// A malformed request (errno 1001) and the first field found at fault:
/// `ts`, `attr1`, `attr2.phone`, a header's name, or `body` when no field
/// is (a body that is not a form, over 16 KiB, a name nobody could mean).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    field: String,
}

/// Longest field name echoed back; a longer one is reported as `body`.
const MAX_FIELD: usize = 32;

impl Malformed {
    /// `field` at fault (a name of ours, or one the client sent: see
    /// [`Malformed::sent`]).
    pub fn at(field: &str) -> Malformed {
        Malformed {
            field: field.to_owned(),
        }
    }

    pub fn body() -> Malformed {
        Malformed::at("body")
    }

    /// A name the client sent that is unknown or repeated: echoed only when
    /// it looks like a field name (`[a-z0-9_]`, at most 32), so the answer
    /// never carries arbitrary client text.
    pub fn sent(prefix: Option<&str>, name: &str) -> Malformed {
        let plain = !name.is_empty()
            && name.len() <= MAX_FIELD
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match (plain, prefix) {
            (false, Some(p)) => Malformed::at(p),
            (false, None) => Malformed::body(),
            (true, Some(p)) => Malformed::at(&format!("{p}.{name}")),
            (true, None) => Malformed::at(name),
        }
    }

    /// The same fault inside `parent` (`attr2`): `phone` becomes
    /// `attr2.phone`, and `body` (the value as a whole) becomes `attr2`.
    pub fn within(self, parent: &str) -> Malformed {
        if self.field == "body" {
            Malformed::at(parent)
        } else {
            Malformed::at(&format!("{parent}.{}", self.field))
        }
    }

    pub fn field(&self) -> &str {
        &self.field
    }
}

/// Whether `s` is a name a `<field>` may carry (`xsd/error.xsd`'s
/// `FieldName`): what the fuzz targets assert of every fault.
pub fn is_field_name(s: &str) -> bool {
    let word = |w: &str| {
        (1..=MAX_FIELD).contains(&w.len())
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let header = (1..=MAX_FIELD).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    match s.split_once('.') {
        Some((a, b)) => word(a) && word(b),
        None => word(s) || header,
    }
}

impl From<Malformed> for Errno {
    fn from(_: Malformed) -> Errno {
        Errno::Malformed
    }
}

/// Names the field a value's grammar refused.
pub trait At<T> {
    fn at(self, field: &str) -> Result<T, Malformed>;
}

impl<T> At<T> for Result<T, Errno> {
    fn at(self, field: &str) -> Result<T, Malformed> {
        self.map_err(|_| Malformed::at(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sent_by_a_client_are_echoed_only_when_plain() {
        assert_eq!(Malformed::sent(None, "extra").field(), "extra");
        assert_eq!(Malformed::sent(Some("attr2"), "pinn").field(), "attr2.pinn");
        assert_eq!(Malformed::sent(None, "<script>").field(), "body");
        assert_eq!(Malformed::sent(Some("attr2"), "Ünï").field(), "attr2");
        assert_eq!(Malformed::sent(None, &"a".repeat(33)).field(), "body");
        assert_eq!(Malformed::body().within("attr2").field(), "attr2");
        assert_eq!(
            Malformed::at("phone").within("attr2").field(),
            "attr2.phone"
        );
    }
}

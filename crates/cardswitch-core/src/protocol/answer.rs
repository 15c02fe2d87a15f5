//! The rows of the hello and login answers (protocol.md §3), typed, so the
//! daemon that writes them and the client that reads them cannot disagree on
//! a field name. Binary fields are kept as their base64 text, because the
//! signed statements contain that text, not the bytes.

use super::errno::Errno;
use super::grammar;
use super::xml::Row;

/// The fields every posting row carries (protocol.md §6), in the order the
/// daemon writes them.
pub const POSTING_FIELDS: [&str; 12] = [
    "order_no",
    "op",
    "txn_id",
    "card",
    "amount",
    "discount",
    "charged",
    "points_delta",
    "balance",
    "points",
    "replayed",
    "posted_at",
];

fn text<'a>(row: &'a Row, name: &str) -> Result<&'a str, Errno> {
    row.get(name).ok_or(Errno::Malformed)
}

fn b64(row: &Row, name: &str) -> Result<String, Errno> {
    let v = text(row, name)?;
    grammar::base64(v)?;
    Ok(v.to_owned())
}

fn ms(row: &Row, name: &str) -> Result<u64, Errno> {
    grammar::ts(text(row, name)?)
}

/// The one row of a successful hello answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAnswer {
    pub key_id: String,
    pub public_key: String,
    pub not_before: u64,
    pub not_after: u64,
    pub day_sig: String,
    pub signer_id: String,
    pub signer_public_key: String,
    pub signer_not_after: u64,
    pub signer_sig: String,
    pub root: String,
}

impl HelloAnswer {
    pub fn to_row(&self) -> Row {
        Row::new()
            .with("key_id", &self.key_id)
            .with("public_key", &self.public_key)
            .with("not_before", self.not_before.to_string())
            .with("not_after", self.not_after.to_string())
            .with("day_sig", &self.day_sig)
            .with("signer_id", &self.signer_id)
            .with("signer_public_key", &self.signer_public_key)
            .with("signer_not_after", self.signer_not_after.to_string())
            .with("signer_sig", &self.signer_sig)
            .with("root", &self.root)
    }

    /// Reads the row by name, checking every grammar; fields it does not
    /// know are ignored (proto-spec/README.md §3).
    pub fn from_row(row: &Row) -> Result<Self, Errno> {
        Ok(HelloAnswer {
            key_id: grammar::key_id(text(row, "key_id")?)?.to_owned(),
            public_key: b64(row, "public_key")?,
            not_before: ms(row, "not_before")?,
            not_after: ms(row, "not_after")?,
            day_sig: b64(row, "day_sig")?,
            signer_id: grammar::key_id(text(row, "signer_id")?)?.to_owned(),
            signer_public_key: b64(row, "signer_public_key")?,
            signer_not_after: ms(row, "signer_not_after")?,
            signer_sig: b64(row, "signer_sig")?,
            root: grammar::root_id(text(row, "root")?)?.to_owned(),
        })
    }
}

/// The one row of a successful login answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAnswer {
    pub sid: String,
    pub not_after: u64,
    pub server_random: String,
    pub iv: String,
    pub wrapped: String,
    pub sig: String,
}

impl LoginAnswer {
    pub fn to_row(&self) -> Row {
        Row::new()
            .with("sid", &self.sid)
            .with("not_after", self.not_after.to_string())
            .with("server_random", &self.server_random)
            .with("iv", &self.iv)
            .with("wrapped", &self.wrapped)
            .with("sig", &self.sig)
    }

    /// Reads the row by name; `iv` must be 12 bytes and `server_random` 32.
    pub fn from_row(row: &Row) -> Result<Self, Errno> {
        let a = LoginAnswer {
            sid: grammar::sid(text(row, "sid")?)?.to_owned(),
            not_after: ms(row, "not_after")?,
            server_random: b64(row, "server_random")?,
            iv: b64(row, "iv")?,
            wrapped: b64(row, "wrapped")?,
            sig: b64(row, "sig")?,
        };
        let len = |s: &str| grammar::base64(s).map(|b| b.len());
        if len(&a.iv)? != super::message::IV_LEN || len(&a.server_random)? != 32 {
            return Err(Errno::Malformed);
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> HelloAnswer {
        HelloAnswer {
            key_id: "T1.20261122.1".into(),
            public_key: grammar::base64_encode(&[1; 294]),
            not_before: 1_795_000_000_000,
            not_after: 1_795_090_000_000,
            day_sig: grammar::base64_encode(&[2; 384]),
            signer_id: "signer.2026q4".into(),
            signer_public_key: grammar::base64_encode(&[3; 422]),
            signer_not_after: 1_802_000_000_000,
            signer_sig: grammar::base64_encode(&[4; 384]),
            root: "0123456789abcdef".into(),
        }
    }

    fn login() -> LoginAnswer {
        LoginAnswer {
            sid: "s.AbC-123_x".into(),
            not_after: 1_795_090_000_000,
            server_random: grammar::base64_encode(&[5; 32]),
            iv: grammar::base64_encode(&[6; 12]),
            wrapped: grammar::base64_encode(&[7; 48]),
            sig: grammar::base64_encode(&[8; 256]),
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(HelloAnswer::from_row(&hello().to_row()), Ok(hello()));
        assert_eq!(LoginAnswer::from_row(&login().to_row()), Ok(login()));
        let extra = login().to_row().with("future_field", "x");
        assert_eq!(LoginAnswer::from_row(&extra), Ok(login()));
    }

    #[test]
    fn refuses() {
        let mut short_iv = login();
        short_iv.iv = grammar::base64_encode(&[6; 16]);
        assert_eq!(
            LoginAnswer::from_row(&short_iv.to_row()),
            Err(Errno::Malformed)
        );
        let mut bad_root = hello();
        bad_root.root = "XYZ".into();
        assert_eq!(
            HelloAnswer::from_row(&bad_root.to_row()),
            Err(Errno::Malformed)
        );
        let mut missing = hello().to_row();
        missing.0.retain(|(n, _)| n != "day_sig");
        assert_eq!(HelloAnswer::from_row(&missing), Err(Errno::Malformed));
        assert_eq!(LoginAnswer::from_row(&Row::new()), Err(Errno::Malformed));
    }
}

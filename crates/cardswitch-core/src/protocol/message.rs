//! Typed requests: the outer forms of hello, login and txn, the login secret,
//! and the inner (encrypted) form of a txn with its canonical encoding.

use rust_decimal::Decimal;

use super::errno::Errno;
use super::fault::{At, Malformed};
use super::form::{encode_component, encode_form, parse_attr2, parse_form, parse_form_any};
use super::grammar;
use super::op::Attr1;

/// `POST /v1/hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloRequest {
    pub terminal: String,
    pub ts: u64,
    pub root: Option<String>,
}

impl HelloRequest {
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let f = parse_form(body, &["terminal", "ts", "root"])?;
        Ok(HelloRequest {
            terminal: grammar::terminal(f.require("terminal")?)
                .at("terminal")?
                .to_owned(),
            ts: grammar::ts(f.require("ts")?).at("ts")?,
            root: f
                .get("root")
                .map(grammar::root_id)
                .transpose()
                .at("root")?
                .map(str::to_owned),
        })
    }

    pub fn encode(&self) -> String {
        let ts = self.ts.to_string();
        let root = self.root.as_deref().unwrap_or("");
        encode_form(&[("terminal", &self.terminal), ("ts", &ts), ("root", root)])
    }
}

/// `POST /v1/login`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRequest {
    pub terminal: String,
    pub key_id: String,
    pub ts: u64,
    pub secret: Vec<u8>,
}

impl LoginRequest {
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let f = parse_form(body, &["terminal", "key_id", "ts", "secret"])?;
        Ok(LoginRequest {
            terminal: grammar::terminal(f.require("terminal")?)
                .at("terminal")?
                .to_owned(),
            key_id: grammar::key_id(f.require("key_id")?)
                .at("key_id")?
                .to_owned(),
            ts: grammar::ts(f.require("ts")?).at("ts")?,
            secret: grammar::base64(f.require("secret")?).at("secret")?,
        })
    }

    pub fn encode(&self) -> String {
        let ts = self.ts.to_string();
        let secret = grammar::base64_encode(&self.secret);
        encode_form(&[
            ("terminal", &self.terminal),
            ("key_id", &self.key_id),
            ("ts", &ts),
            ("secret", &secret),
        ])
    }
}

/// Length of the client's secret `S` inside the login secret.
pub const LOGIN_S_LEN: usize = 32;
/// The longest terminal password, in UTF-8 bytes.
pub const MAX_PASSWORD: usize = 128;

/// The RSA-OAEP plaintext of the login `secret`: `S || ts (8 bytes BE) || password`.
pub fn login_secret_plaintext(
    s: &[u8; LOGIN_S_LEN],
    ts: u64,
    password: &str,
) -> Result<Vec<u8>, Errno> {
    if password.len() > MAX_PASSWORD {
        return Err(Errno::Malformed);
    }
    let mut out = Vec::with_capacity(LOGIN_S_LEN + 8 + password.len());
    out.extend_from_slice(s);
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(password.as_bytes());
    Ok(out)
}

/// Splits a decrypted login secret into `(S, ts, password bytes)`.
///
/// Refusals are 1003, not 1001: protocol.md §3.2 makes every defect of the
/// secret look the same as a wrong password.
pub fn split_login_secret(plain: &[u8]) -> Result<([u8; LOGIN_S_LEN], u64, &[u8]), Errno> {
    if plain.len() < LOGIN_S_LEN + 8 || plain.len() > LOGIN_S_LEN + 8 + MAX_PASSWORD {
        return Err(Errno::LoginRefused);
    }
    let (s, rest) = plain.split_at(LOGIN_S_LEN);
    let (ts, password) = rest.split_at(8);
    let s: [u8; LOGIN_S_LEN] = s.try_into().map_err(|_| Errno::LoginRefused)?;
    let ts = u64::from_be_bytes(ts.try_into().map_err(|_| Errno::LoginRefused)?);
    Ok((s, ts, password))
}

/// AES-GCM IV length; any other is 1001 (protocol.md §1).
pub const IV_LEN: usize = 12;

/// `POST /v1/txn`, outer (clear) fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRequest {
    pub terminal: String,
    pub sid: String,
    pub ts: u64,
    pub iv: Vec<u8>,
    pub data: Vec<u8>,
}

impl TxnRequest {
    /// Fields are checked in the order of the form (so the first at fault
    /// is named), the `iv`'s length with it.
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let f = parse_form(body, &["terminal", "sid", "ts", "iv", "data"])?;
        let terminal = grammar::terminal(f.require("terminal")?).at("terminal")?;
        let sid = grammar::sid(f.require("sid")?).at("sid")?;
        let ts = grammar::ts(f.require("ts")?).at("ts")?;
        let iv = grammar::base64(f.require("iv")?).at("iv")?;
        if iv.len() != IV_LEN {
            return Err(Malformed::at("iv"));
        }
        Ok(TxnRequest {
            terminal: terminal.to_owned(),
            sid: sid.to_owned(),
            ts,
            iv,
            data: grammar::base64(f.require("data")?).at("data")?,
        })
    }

    pub fn encode(&self) -> String {
        let ts = self.ts.to_string();
        let iv = grammar::base64_encode(&self.iv);
        let data = grammar::base64_encode(&self.data);
        encode_form(&[
            ("terminal", &self.terminal),
            ("sid", &self.sid),
            ("ts", &ts),
            ("iv", &iv),
            ("data", &data),
        ])
    }
}

pub use super::op::Op;

/// The decrypted inner form of a txn, every grammar and per-op presence rule
/// checked; `attr2` kept as received (decoded once) and checked to be a
/// strict form with only the names its op allows, each in its grammar
/// (see [`super::attr2`]), the required ones present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerForm {
    pub op: Op,
    pub amount: Option<String>,
    pub order_no: Option<String>,
    pub operator: Option<String>,
    pub attr1: Option<String>,
    pub attr2: Option<String>,
}

const INNER_FIELDS: [&str; 6] = ["op", "amount", "order_no", "operator", "attr1", "attr2"];

/// First line of [`InnerForm::canonical_bytes`], so the digest can never
/// collide with a hash of any other string of the protocol.
pub const CANONICAL_PREFIX: &str = "cardswitch-v1-inner\n";

impl InnerForm {
    /// A field sent to an op that takes none, or missing from one that
    /// needs it, is at fault as much as one out of its grammar.
    pub fn parse(inner: &[u8]) -> Result<Self, Malformed> {
        let f = parse_form(inner, &INNER_FIELDS)?;
        let op = Op::parse(f.require("op")?).at("op")?;
        let amount = f
            .get("amount")
            .map(grammar::amount)
            .transpose()
            .at("amount")?;
        if amount.is_some() != op.needs_amount() {
            return Err(Malformed::at("amount"));
        }
        let order_no = f
            .get("order_no")
            .map(grammar::order_no)
            .transpose()
            .at("order_no")?;
        if order_no.is_some() != op.is_posting() {
            return Err(Malformed::at("order_no"));
        }
        let operator = f
            .get("operator")
            .map(grammar::operator)
            .transpose()
            .at("operator")?;
        if op.is_manager() && operator.is_none() {
            return Err(Malformed::at("operator"));
        }
        let attr1 = f.require("attr1")?;
        match op.attr1() {
            Attr1::OrderNo => grammar::order_no(attr1).map(drop),
            Attr1::PhoneOrCard => {
                super::attr2::phone(attr1).or_else(|_| grammar::card(attr1).map(drop))
            }
            Attr1::Day => super::attr2::date(attr1),
            Attr1::StoreOrAll => super::attr2::store(attr1),
            Attr1::Card => grammar::card(attr1).map(drop),
        }
        .at("attr1")?;
        let attr2 = f.get("attr2");
        super::attr2::check(op, &parse_attr2(attr2.unwrap_or(""), op.attr2_fields())?)?;
        let own = |s: Option<&str>| s.map(str::to_owned);
        Ok(InnerForm {
            op,
            amount: own(f.get("amount")),
            order_no: own(order_no),
            operator: own(operator),
            attr1: Some(attr1.to_owned()),
            attr2: own(attr2),
        })
    }

    /// The amount as a number; `None` when the op takes none.
    pub fn amount_decimal(&self) -> Option<Decimal> {
        self.amount.as_deref().and_then(|a| grammar::amount(a).ok())
    }

    /// The named values of `attr2` (empty when absent).
    pub fn attr2_form(&self) -> Result<super::form::Form, Malformed> {
        parse_attr2(self.attr2.as_deref().unwrap_or(""), self.op.attr2_fields())
    }

    /// The reference encoding a client encrypts: fields in the order of
    /// protocol.md §4, absent ones left out. `attr2` is sent as given.
    pub fn encode(&self) -> String {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        encode_form(&[
            ("op", self.op.as_str()),
            ("amount", &s(&self.amount)),
            ("order_no", &s(&self.order_no)),
            ("operator", &s(&self.operator)),
            ("attr1", &s(&self.attr1)),
            ("attr2", &s(&self.attr2)),
        ])
    }

    /// The canonical encoding compared for idempotency (protocol.md §4.2):
    /// `cardswitch-v1-inner\n` then the fields in the fixed order
    /// op, amount, order_no, operator, attr1, attr2, absent ones left out,
    /// each `name=value` with the value percent-encoded as [`encode_form`]
    /// does, joined by `&`. `amount` is written as its normalised number
    /// (`1.50` → `1.5`, `0.00` → `0`) since amounts compare as numbers; `attr2`
    /// is decoded, its pairs sorted by name (byte order) and re-encoded before
    /// it is encoded again as a value. So two spellings of one request hash
    /// the same and any difference of meaning hashes differently.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // A hand-built amount outside the grammar is hashed verbatim rather
        // than dropped, so it can never hash like a form without an amount.
        let amount = self.amount.as_deref().map(|a| {
            grammar::amount(a).map_or_else(|_| a.to_owned(), |d| d.normalize().to_string())
        });
        let attr2 = self.attr2.as_deref().map(canonical_attr2);
        let mut out = String::from(CANONICAL_PREFIX);
        let fields = [
            ("op", Some(self.op.as_str().to_owned())),
            ("amount", amount),
            ("order_no", self.order_no.clone()),
            ("operator", self.operator.clone()),
            ("attr1", self.attr1.clone()),
            ("attr2", attr2),
        ];
        let mut first = true;
        for (name, value) in fields {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            if !first {
                out.push('&');
            }
            first = false;
            out.push_str(name);
            out.push('=');
            encode_component(&value, &mut out);
        }
        out.into_bytes()
    }

    /// SHA-256 of [`InnerForm::canonical_bytes`]: the idempotency hash.
    pub fn digest(&self) -> [u8; 32] {
        crate::crypto::mac::sha256(&self.canonical_bytes())
    }
}

/// `attr2` with its pairs sorted and its amounts (`cash`) normalised as
/// `amount` is; a value that does not parse is kept as is (only
/// [`InnerForm::parse`] builds checked values, so that is a caller's
/// hand-built form, and hashing it verbatim still separates it from others).
fn canonical_attr2(raw: &str) -> String {
    let Ok(f) = parse_form_any(raw.as_bytes()) else {
        return raw.to_owned();
    };
    let owned: Vec<(&str, String)> = f
        .pairs()
        .map(|(name, v)| match name {
            "cash" => (
                name,
                grammar::amount(v).map_or_else(|_| v.to_owned(), |d| d.normalize().to_string()),
            ),
            _ => (name, v.to_owned()),
        })
        .collect();
    let mut pairs: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
    pairs.sort_unstable();
    encode_form(&pairs)
}

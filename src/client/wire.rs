//! The client's side of the protocol as pure functions: build each request,
//! check each answer. The HTTP client in `mod.rs` and the known-answer
//! vectors both use these, so what the vectors pin is what the client does.

use crate::crypto::kdf::{self, SessionKeys};
use crate::crypto::mac::ct_eq;
use crate::crypto::rsa::RsaPublic;
use crate::crypto::{aead, Secret32};
use crate::protocol::answer::{HelloAnswer, LoginAnswer};
use crate::protocol::canonical;
use crate::protocol::errno::Errno;
use crate::protocol::form::encode_form;
use crate::protocol::grammar::{self, base64_encode};
use crate::protocol::message::login_secret_plaintext;
use crate::protocol::xml::{parse_answer, parse_rows, AnswerBody, Rows};

/// Why an answer was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the server refused with errno {0}")]
    Refused(u16),
    #[error("answer rejected: {0}")]
    Invalid(&'static str),
}

fn invalid(what: &'static str) -> WireError {
    WireError::Invalid(what)
}

/// A day key that passed every check of protocol.md §3.1.
#[derive(Clone, Debug)]
pub struct DayKey {
    pub key_id: String,
    pub public: RsaPublic,
    pub not_after: u64,
}

/// Checks a hello answer against the pinned root (proto-spec §3 steps 1–5).
pub fn verify_hello(
    terminal: &str,
    a: &HelloAnswer,
    root: &RsaPublic,
    now_ms: u64,
) -> Result<DayKey, WireError> {
    if a.root != root.short_id() {
        return Err(invalid("hello names another root"));
    }
    let signer_st =
        canonical::signer_statement(&a.signer_id, a.signer_not_after, &a.signer_public_key);
    let sig = grammar::base64(&a.signer_sig).map_err(|_| invalid("signer_sig"))?;
    if !root.verify_pss_sha256(signer_st.as_bytes(), &sig) {
        return Err(invalid("signer_sig does not verify with the root key"));
    }
    if a.signer_not_after <= now_ms {
        return Err(invalid("signer expired"));
    }
    let signer_der = grammar::base64(&a.signer_public_key).map_err(|_| invalid("signer key"))?;
    let signer = RsaPublic::from_spki_der(&signer_der).map_err(|_| invalid("signer key"))?;
    let day_st = canonical::day_key_statement(
        terminal,
        &a.key_id,
        a.not_before,
        a.not_after,
        &a.public_key,
    );
    let sig = grammar::base64(&a.day_sig).map_err(|_| invalid("day_sig"))?;
    if !signer.verify_pss_sha256(day_st.as_bytes(), &sig) {
        return Err(invalid("day_sig does not verify with the signer key"));
    }
    if !(a.not_before <= now_ms && now_ms < a.not_after) {
        return Err(invalid("day key not valid now"));
    }
    let der = grammar::base64(&a.public_key).map_err(|_| invalid("day key"))?;
    let public = RsaPublic::from_spki_der(&der).map_err(|_| invalid("day key"))?;
    Ok(DayKey {
        key_id: a.key_id.clone(),
        public,
        not_after: a.not_after,
    })
}

/// The login `secret`: RSA-OAEP under the day key of `S || ts || password`.
pub fn login_secret(
    day: &RsaPublic,
    s: &Secret32,
    ts: u64,
    password: &str,
) -> Result<Vec<u8>, WireError> {
    let plain = login_secret_plaintext(s.expose(), ts, password)
        .map_err(|_| invalid("password over 128 bytes"))?;
    day.encrypt_oaep_sha256(&plain)
        .map_err(|_| invalid("OAEP encryption"))
}

/// The login body.
pub fn login_body(terminal: &str, key_id: &str, ts: u64, secret: &[u8]) -> String {
    encode_form(&[
        ("terminal", terminal),
        ("key_id", key_id),
        ("ts", &ts.to_string()),
        ("secret", &base64_encode(secret)),
    ])
}

/// Checks a login answer (signature by the day key, then the unwrap) and
/// returns `K_sid`.
pub fn open_login(
    terminal: &str,
    day: &DayKey,
    ts: u64,
    s: &Secret32,
    a: &LoginAnswer,
) -> Result<Secret32, WireError> {
    let t = canonical::session_statement(
        terminal,
        &day.key_id,
        ts,
        &a.sid,
        a.not_after,
        &a.server_random,
    );
    let sig = grammar::base64(&a.sig).map_err(|_| invalid("sig"))?;
    let input = canonical::session_sig_input(&t, &a.iv, &a.wrapped);
    if !day.public.verify_pss_sha256(input.as_bytes(), &sig) {
        return Err(invalid("login sig does not verify with the day key"));
    }
    let server_random = grammar::base64(&a.server_random).map_err(|_| invalid("server_random"))?;
    let iv = grammar::base64(&a.iv).map_err(|_| invalid("iv"))?;
    let wrapped = grammar::base64(&a.wrapped).map_err(|_| invalid("wrapped"))?;
    let wrap = kdf::wrap_key(s, &server_random);
    let k = aead::open(&wrap, &iv, t.as_bytes(), &wrapped).map_err(|_| invalid("unwrap"))?;
    k.to_secret32().map_err(|_| invalid("K_sid length"))
}

/// A built txn request: the body bytes and their MAC.
pub struct TxnBody {
    pub body: String,
    pub mac: [u8; 32],
}

/// Encrypts `inner` and builds the outer form and its MAC (protocol.md §4).
pub fn txn_body(
    keys: &SessionKeys,
    terminal: &str,
    sid: &str,
    ts: u64,
    iv: &[u8; 12],
    inner: &[u8],
) -> TxnBody {
    let aad = canonical::request_aad(terminal, sid, ts);
    let data = aead::seal(&keys.enc, iv, aad.as_bytes(), inner);
    let body = encode_form(&[
        ("terminal", terminal),
        ("sid", sid),
        ("ts", &ts.to_string()),
        ("iv", &base64_encode(iv)),
        ("data", &base64_encode(&data)),
    ]);
    let mac = keys
        .mac_key
        .sign(&[&canonical::request_mac_input(body.as_bytes())]);
    TxnBody { body, mac }
}

/// What a txn answer said, its MAC checked.
#[derive(Clone, Debug)]
pub struct TxnOutcome {
    pub errno: Errno,
    /// A 1001's first field at fault, as the answer named it.
    pub field: Option<String>,
    pub now: u64,
    pub rows: Rows,
    /// Whether the answer carried a valid MAC (only 1001, 1002, 1004 and
    /// 1009 answered before the session was known may lack one).
    pub mac_verified: bool,
}

/// Checks a txn answer: the MAC on the raw bytes first, then the XML, then
/// decrypts the rows. An answer with a wrong MAC, or without one where one is
/// required, is an error: treat it as no answer (proto-spec §8.3).
pub fn open_txn_answer(
    keys: &SessionKeys,
    terminal: &str,
    sid: &str,
    ts: u64,
    request_mac: &[u8; 32],
    mac_header: Option<&[u8]>,
    raw: &[u8],
) -> Result<TxnOutcome, WireError> {
    let mac_verified = match mac_header {
        Some(h) => {
            let given = canonical::parse_mac_header(h).map_err(|_| invalid("answer MAC header"))?;
            let want = keys
                .mac_key
                .sign(&[&canonical::response_mac_input(ts, request_mac, raw)]);
            if !ct_eq(&given, &want) {
                return Err(invalid("answer MAC does not verify"));
            }
            true
        }
        None => false,
    };
    let answer = parse_answer(raw).map_err(|_| invalid("answer XML"))?;
    if !mac_verified
        && !matches!(
            answer.errno,
            Errno::Malformed | Errno::UnknownTerminal | Errno::KeyUnknown | Errno::Throttled
        )
    {
        return Err(invalid("answer without MAC"));
    }
    let rows = match (&answer.body, answer.errno) {
        (AnswerBody::Data { iv, data }, Errno::Ok) if mac_verified => {
            let aad = canonical::response_aad(terminal, sid, ts);
            let plain = aead::open(&keys.enc, iv, aad.as_bytes(), data)
                .map_err(|_| invalid("answer decryption"))?;
            parse_rows(plain.expose()).map_err(|_| invalid("answer rows"))?
        }
        (AnswerBody::None, e) if e != Errno::Ok => Rows::default(),
        _ => return Err(invalid("answer body does not fit its errno")),
    };
    Ok(TxnOutcome {
        errno: answer.errno,
        field: answer.field,
        now: answer.now,
        rows,
        mac_verified,
    })
}

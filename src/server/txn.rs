//! `POST /v1/txn` (protocol.md §4): the checks in their order, each errno
//! produced in one place, every answer after the `sid` is resolved MACed.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::HeaderMap;

use super::http::Answer;
use super::proto::{self, in_window, MacCtx, Refusal};
use super::AppState;
use crate::crypto::aead;
use crate::crypto::mac::ct_eq;
use crate::protocol::canonical;
use crate::protocol::errno::Errno;
use crate::protocol::fault::Malformed;
use crate::protocol::message::{InnerForm, TxnRequest};
use crate::protocol::xml::{encode_rows, AnswerBody};
use crate::store::{terminals, txn};

/// The request MAC from `Referer` and/or `X-Cardswitch-Mac`. `Err(1001)`:
/// missing, repeated or malformed (naming the header); `Err(1007)`: both
/// present and different.
pub fn request_mac(h: &HeaderMap) -> Result<[u8; 32], MacHeaderFault> {
    let one = |name: &'static str| -> Result<Option<[u8; 32]>, MacHeaderFault> {
        let mut all = h.get_all(name).iter();
        let bad = MacHeaderFault::Malformed(name);
        match (all.next(), all.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => canonical::parse_mac_header(v.as_bytes())
                .map(Some)
                .map_err(|_| bad),
            _ => Err(bad),
        }
    };
    match (one("referer")?, one("x-cardswitch-mac")?) {
        (None, None) => Err(MacHeaderFault::Malformed("x-cardswitch-mac")),
        (Some(a), None) | (None, Some(a)) => Ok(a),
        (Some(a), Some(b)) if ct_eq(&a, &b) => Ok(a),
        _ => Err(MacHeaderFault::Differ),
    }
}

/// Why [`request_mac`] found no MAC to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacHeaderFault {
    /// 1001: missing (named as `x-cardswitch-mac`), repeated or malformed.
    Malformed(&'static str),
    /// 1007: `Referer` and `X-Cardswitch-Mac` carry different MACs.
    Differ,
}

/// protocol.md §4 in its order: outer form (1001), terminal and session
/// (1002, 1004), time window (1005), request MAC (1007); from the MAC on,
/// the `ts` is spent: the terminal's rate (1009), decryption (1008), inner
/// form (1001), then the ledger. (The source address's rate was checked in
/// the prelude.)
pub async fn txn(state: &AppState, peer: SocketAddr, headers: &HeaderMap, body: Bytes) -> Answer {
    let arrival = state.group.arrive();
    let mut refusal = Refusal::unproved("/v1/txn", peer);
    let req = match TxnRequest::parse(&body) {
        Ok(r) => r,
        Err(m) => return refusal.malformed(state, &m, "txn form", None).await,
    };
    refusal.terminal = Some(&req.terminal);
    let (session, store_id) = match session_of(state, &refusal, &req).await {
        Ok(x) => x,
        Err(a) => return a,
    };
    // From here on every answer carries the answer MAC.
    let mac = MacCtx {
        keys: &session.keys,
        ts: req.ts,
        request_mac: session
            .keys
            .mac_key
            .sign(&[&canonical::request_mac_input(&body)]),
    };
    if let Err(a) = check_window_and_mac(state, &refusal, &req, headers, &mac).await {
        return a;
    }
    refusal.proved = true;
    // Only a request that proved the terminal's key counts against the
    // terminal: terminal ids are not secret, and an outsider's requests
    // naming one must not use up its own budget (they count against their
    // source address).
    if let Err(audit) = proto::terminal_rate(state, &req.terminal) {
        return throttled(state, &refusal, &req, &mac, audit).await;
    }
    let inner = match open_inner(state, &refusal, &req, &mac).await {
        Ok(f) => f,
        Err(a) => return a,
    };
    let ctx = txn::TxnContext {
        terminal: req.terminal.clone(),
        store_id,
        ts: req.ts as i64,
        now: chrono::Utc::now(),
    };
    let op = inner.op;
    let result = state.group.run(ctx, inner, arrival).await;
    answer(state, &refusal, &req, &mac, op.as_str(), result).await
}

/// The session and its terminal's store. The common case first: a live
/// session of this very terminal, with the terminal active, answers both
/// checks at once — from the session cache (no query at all) or from one
/// query that reads the terminal with the session. Sessions of a disabled
/// terminal are revoked in the same transaction that disables it, and every
/// instance is notified, so a cached entry never outlives its terminal's
/// status. Anything else takes the checks one by one, in protocol.md §4's
/// order (1002 before 1004).
async fn session_of(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
) -> Result<(std::sync::Arc<crate::keys::ring::Session>, String), Answer> {
    match state.keys.session(&state.pool, &req.sid).await {
        Ok(Some(s)) if s.terminal == req.terminal && s.terminal_active => {
            let store = s.store_id.clone();
            Ok((s, store))
        }
        Ok(_) => checked_one_by_one(state, refusal, req).await,
        Err(e) => Err(session_lookup_failed(state, refusal, e).await),
    }
}

/// The time window (1005), then the request MAC (1001 malformed, 1007 wrong).
async fn check_window_and_mac(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
    headers: &HeaderMap,
    mac: &MacCtx<'_>,
) -> Result<(), Answer> {
    if !in_window(state, req.ts) {
        let why = "ts outside the window";
        return Err(refusal
            .answer(state, Errno::TsOutsideWindow, why, Some(mac))
            .await);
    }
    match request_mac(headers) {
        Ok(given) if ct_eq(&given, &mac.request_mac) => Ok(()),
        Ok(_) | Err(MacHeaderFault::Differ) => {
            tracing::warn!(terminal = %req.terminal, peer = %refusal.peer, "request MAC check failed");
            Err(refusal
                .answer(state, Errno::BadMac, "wrong MAC", Some(mac))
                .await)
        }
        Err(MacHeaderFault::Malformed(header)) => {
            let why = "MAC header missing or malformed";
            let m = Malformed::at(header);
            Err(refusal.malformed(state, &m, why, Some(mac)).await)
        }
    }
}

/// The MAC passed, so the `ts` is used up whatever happens next: decrypts
/// (1008) and parses (1001) the inner form, spending the `ts` on a refusal.
async fn open_inner(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
    mac: &MacCtx<'_>,
) -> Result<InnerForm, Answer> {
    let aad = canonical::request_aad(&req.terminal, &req.sid, req.ts);
    let plain = match aead::open(&mac.keys.enc, &req.iv, aad.as_bytes(), &req.data) {
        Ok(p) => p,
        Err(_) => {
            let e = Refused::Errno(Errno::DecryptFailed);
            let why = "decryption failed";
            return Err(spend_and_refuse(state, refusal, req, e, why, mac).await);
        }
    };
    match InnerForm::parse(plain.expose()) {
        Ok(f) => Ok(f),
        Err(m) => {
            let e = Refused::Malformed(m);
            Err(spend_and_refuse(state, refusal, req, e, "inner form", mac).await)
        }
    }
}

/// The ledger's rows encrypted, or its refusal; both MACed.
async fn answer(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
    mac: &MacCtx<'_>,
    op: &str,
    result: crate::error::Result<txn::Committed>,
) -> Answer {
    let errno = match result {
        Ok(txn::Committed::Answered(rows)) => {
            let iv = aead::random_iv();
            let aad = canonical::response_aad(&req.terminal, &req.sid, req.ts);
            let plain = encode_rows(&rows);
            let data = aead::seal(&mac.keys.enc, &iv, aad.as_bytes(), plain.as_bytes());
            tracing::debug!(op, "txn done");
            let body = AnswerBody::Data {
                iv: iv.to_vec(),
                data,
            };
            return proto::xml(Errno::Ok, &body, Some(mac));
        }
        Ok(txn::Committed::Refused(errno)) => errno,
        Err(e) => {
            let errno = e.errno();
            if errno == Errno::Tampered {
                state.metrics.tampered();
            }
            if matches!(
                errno,
                Errno::Internal | Errno::Unavailable | Errno::Tampered
            ) {
                tracing::error!(error = %e, op, "txn failed");
            }
            errno
        }
    };
    refusal.answer(state, errno, op, Some(mac)).await
}

/// The terminal check (1002), then the session check (1004), each on its own.
async fn checked_one_by_one(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
) -> Result<(std::sync::Arc<crate::keys::ring::Session>, String), Answer> {
    let found = async {
        let c = state.pool.get().await?;
        Ok::<_, crate::error::Error>(terminals::get(&c, &req.terminal).await?)
    }
    .await;
    let terminal = match found {
        Ok(Some(t)) if t.standing() == Some(crate::ledger::Standing::Active) => t,
        Ok(_) => {
            let why = "unknown or disabled terminal";
            return Err(refusal
                .answer(state, Errno::UnknownTerminal, why, None)
                .await);
        }
        Err(e) => {
            tracing::error!(error = %e, "database");
            return Err(refusal.answer(state, e.errno(), "database", None).await);
        }
    };
    match state.keys.session(&state.pool, &req.sid).await {
        Ok(Some(s)) if s.terminal == req.terminal => Ok((s, terminal.store_id)),
        Ok(_) => Err(refusal
            .answer(
                state,
                Errno::KeyUnknown,
                "session unknown, expired or revoked",
                None,
            )
            .await),
        Err(e) => Err(session_lookup_failed(state, refusal, e).await),
    }
}

/// The session could not be read. A session (or its day key) row that fails
/// its integrity check is audited and counted as 3001, but answered 1004:
/// its keys cannot be trusted to MAC the answer, and protocol.md lets only an
/// unresolved sid go without a MAC; a client then logs in again, getting a
/// session whose row is sound.
async fn session_lookup_failed(
    state: &AppState,
    refusal: &Refusal<'_>,
    e: crate::error::Error,
) -> Answer {
    tracing::error!(error = %e, "session lookup");
    if e.errno() == Errno::Tampered {
        state.metrics.tampered();
        refusal
            .audit(
                state,
                Errno::Tampered,
                "session row failed its integrity check",
                None,
            )
            .await;
        return proto::xml(Errno::KeyUnknown, &AnswerBody::None, None);
    }
    refusal
        .answer(state, e.errno(), "session lookup", None)
        .await
}

/// What [`spend_and_refuse`] answers once the `ts` is spent.
enum Refused {
    Errno(Errno),
    Malformed(Malformed),
}

async fn spend_and_refuse(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
    refused: Refused,
    reason: &str,
    mac: &MacCtx<'_>,
) -> Answer {
    match txn::spend_ts(&state.pool, &req.terminal, req.ts as i64).await {
        Ok(true) => match refused {
            Refused::Errno(errno) => refusal.answer(state, errno, reason, Some(mac)).await,
            Refused::Malformed(m) => refusal.malformed(state, &m, reason, Some(mac)).await,
        },
        Ok(false) => {
            refusal
                .answer(state, Errno::TsUsed, "ts used before", Some(mac))
                .await
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot spend ts");
            refusal
                .answer(state, e.errno(), "database", Some(mac))
                .await
        }
    }
}

/// Over the terminal's rate: the `ts` spent, 1009 MACed, audited only when
/// `audit` says (once a second), counted always.
async fn throttled(
    state: &AppState,
    refusal: &Refusal<'_>,
    req: &TxnRequest,
    mac: &MacCtx<'_>,
    audit: bool,
) -> Answer {
    if audit {
        let (e, why) = (Refused::Errno(Errno::Throttled), "terminal rate");
        return spend_and_refuse(state, refusal, req, e, why, mac).await;
    }
    state.metrics.refused(Errno::Throttled.code());
    let errno = match txn::spend_ts(&state.pool, &req.terminal, req.ts as i64).await {
        Ok(true) => Errno::Throttled,
        Ok(false) => Errno::TsUsed,
        Err(e) => e.errno(),
    };
    proto::xml(errno, &AnswerBody::None, Some(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_headers() {
        let mac = [7u8; 32];
        let v = canonical::format_mac_header(&mac);
        let mut h = HeaderMap::new();
        assert_eq!(
            request_mac(&h),
            Err(MacHeaderFault::Malformed("x-cardswitch-mac"))
        );
        h.insert("referer", v.parse().unwrap());
        assert_eq!(request_mac(&h), Ok(mac));
        h.insert(
            "x-cardswitch-mac",
            v.to_uppercase()
                .replace("HMAC-SHA256", "hmac-sha256")
                .parse()
                .unwrap(),
        );
        assert_eq!(request_mac(&h), Ok(mac));
        h.insert(
            "x-cardswitch-mac",
            canonical::format_mac_header(&[8u8; 32]).parse().unwrap(),
        );
        assert_eq!(request_mac(&h), Err(MacHeaderFault::Differ));
        h.remove("referer");
        assert_eq!(request_mac(&h), Ok([8u8; 32]));
        h.insert("referer", "http://shop/".parse().unwrap());
        assert_eq!(request_mac(&h), Err(MacHeaderFault::Malformed("referer")));
    }
}

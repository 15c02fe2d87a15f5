//! What the three protocol endpoints share: the request prelude (throttle,
//! body, content headers), XML answers with their HTTP status, the answer MAC,
//! and the audit of every refusal.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, HeaderMap, Request, Response, StatusCode};

use super::http::{self, Answer, BodyError};
use super::throttle::Verdict;
use super::AppState;
use crate::crypto::kdf::SessionKeys;
use crate::error::errno_http_status;
use crate::protocol::canonical;
use crate::protocol::errno::Errno;
use crate::protocol::fault::Malformed;
use crate::protocol::xml::{encode_answer_at, AnswerBody};

pub fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

/// The MAC context of an answer once the `sid` is resolved (protocol.md §4.1).
pub struct MacCtx<'a> {
    pub keys: &'a SessionKeys,
    pub ts: u64,
    pub request_mac: [u8; 32],
}

/// An XML answer: status from `error.rs`, `X-Cardswitch-Mac` when `mac` is given.
pub fn xml(errno: Errno, body: &AnswerBody, mac: Option<&MacCtx>) -> Answer {
    xml_at(errno, None, body, mac)
}

/// [`xml`] naming a 1001's field at fault (`body` when `None`).
pub fn xml_at(
    errno: Errno,
    field: Option<&str>,
    body: &AnswerBody,
    mac: Option<&MacCtx>,
) -> Answer {
    let text = encode_answer_at(errno, field, now_ms(), body);
    let status =
        StatusCode::from_u16(errno_http_status(errno)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml; charset=utf-8");
    if let Some(m) = mac {
        // The same input as `canonical::response_mac_input`, without copying
        // the body after the head.
        let head = canonical::response_mac_head(m.ts, &m.request_mac);
        let tag = m.keys.mac_key.sign(&[&head, text.as_bytes()]);
        b = b.header("x-cardswitch-mac", canonical::format_mac_header(&tag));
    }
    if errno == Errno::Throttled {
        b = b.header(header::RETRY_AFTER, "1");
    }
    b.body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid")
}

/// A refusal: counted, audited, answered.
pub struct Refusal<'a> {
    pub path: &'a str,
    pub terminal: Option<&'a str>,
    pub peer: SocketAddr,
    /// Whether the request proved its terminal's key (its MAC checked).
    /// Only then does it get an audit row of its own (issue 12).
    pub proved: bool,
}

impl Refusal<'_> {
    pub fn unproved(path: &str, peer: SocketAddr) -> Refusal<'_> {
        Refusal {
            path,
            terminal: None,
            peer,
            proved: false,
        }
    }

    /// Audits the refusal and answers `errno`.
    pub async fn answer(
        &self,
        state: &AppState,
        errno: Errno,
        reason: &str,
        mac: Option<&MacCtx<'_>>,
    ) -> Answer {
        self.audit(state, errno, reason, None).await;
        xml(errno, &AnswerBody::None, mac)
    }

    /// A 1001 naming its field (protocol.md §4.1), audited with it.
    pub async fn malformed(
        &self,
        state: &AppState,
        m: &Malformed,
        reason: &str,
        mac: Option<&MacCtx<'_>>,
    ) -> Answer {
        let errno = Errno::Malformed;
        self.audit(state, errno, reason, Some(m.field())).await;
        xml_at(errno, Some(m.field()), &AnswerBody::None, mac)
    }

    /// Counted in /metrics and logged at debug always. A request that
    /// proved its key gets its own audit row, written before its answer
    /// leaves; so does any integrity failure (3001), proved or not. Anything
    /// else is tallied per source address and minute: an outsider's flood
    /// costs a counter, not a row.
    pub async fn audit(&self, state: &AppState, errno: Errno, reason: &str, field: Option<&str>) {
        state.metrics.refused(errno.code());
        tracing::debug!(
            errno = errno.code(),
            terminal = self.terminal,
            reason,
            "refused"
        );
        if !self.proved && errno != Errno::Tampered {
            let ip = self.peer.ip();
            state
                .audit
                .note_unproved(ip, errno.code(), reason, self.terminal);
            return;
        }
        let entry = crate::store::audit::Entry {
            kind: crate::store::audit::AuditKind::Refused,
            terminal: self.terminal.map(str::to_owned),
            actor: None,
            source: Some(self.peer.ip().to_string()),
            detail: match field {
                None => serde_json::json!({
                    "path": self.path, "errno": errno.code(), "reason": reason,
                }),
                Some(f) => serde_json::json!({
                    "path": self.path, "errno": errno.code(), "reason": reason, "field": f,
                }),
            },
        };
        state.audit.record(entry).await;
    }
}

/// Throttles by source address, then reads and checks the body. `Err` is
/// the answer to send.
pub async fn prelude(
    state: &AppState,
    peer: SocketAddr,
    path: &str,
    req: Request<hyper::body::Incoming>,
) -> Result<(HeaderMap, Bytes), Answer> {
    let refusal = Refusal::unproved(path, peer);
    if let Verdict::Refuse { .. } = state.addr_buckets.check(&peer.ip().to_string()) {
        refusal
            .audit(state, Errno::Throttled, "source address rate", None)
            .await;
        return Err(xml(Errno::Throttled, &AnswerBody::None, None));
    }
    let server = &state.config.server;
    let (parts, body) = match http::read_body(req, server.max_body_bytes, server.body_timeout).await
    {
        Ok(x) => x,
        Err(BodyError::TooLarge) => {
            // proto-spec §1.2: 413, and the XML answer 1001 for clients that read it.
            let m = Malformed::body();
            let mut a = refusal.malformed(state, &m, "body over 16 KiB", None).await;
            *a.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            a.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return Err(a);
        }
        Err(e) => return Err(http::body_error(e)),
    };
    if let Err((header, reason)) = content_headers(&parts.headers) {
        let m = Malformed::at(header);
        return Err(refusal.malformed(state, &m, reason, None).await);
    }
    Ok((parts.headers, body))
}

/// `Content-Type` must be `application/x-www-form-urlencoded` (parameters
/// such as `charset` allowed); `Content-Encoding`, if any, `identity`.
/// `Err((header at fault, reason))`.
fn content_headers(h: &HeaderMap) -> Result<(), (&'static str, &'static str)> {
    const CT: &str = "content-type";
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    let ct = match (types.next(), types.next()) {
        (Some(v), None) => v.to_str().map_err(|_| (CT, "content type not ASCII"))?,
        _ => return Err((CT, "content type missing or repeated")),
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err((CT, "content type is not a form"));
    }
    for v in h.get_all(header::CONTENT_ENCODING) {
        let ok = v
            .to_str()
            .map(|s| {
                s.split(',')
                    .all(|p| p.trim().eq_ignore_ascii_case("identity"))
            })
            .unwrap_or(false);
        if !ok {
            return Err(("content-encoding", "content encoding"));
        }
    }
    Ok(())
}

/// The terminal's rate, for a request that proved its key: `Err(audit)`
/// when over it, `audit` set at most once a second (so a flood writes one
/// audit row a second, not one a request).
pub fn terminal_rate(state: &AppState, terminal: &str) -> Result<(), bool> {
    match state.terminal_buckets.check(terminal) {
        Verdict::Refuse { audit } => Err(audit),
        _ => Ok(()),
    }
}

/// Whether `ts` is within the window around now.
pub fn in_window(state: &AppState, ts: u64) -> bool {
    let window = state.config.protocol.ts_window.as_millis() as u64;
    now_ms().abs_diff(ts) <= window
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(content_headers(&h).is_err());
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert!(content_headers(&h).is_ok());
        h.insert(
            header::CONTENT_TYPE,
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        assert!(content_headers(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(content_headers(&h).is_err());
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(content_headers(&h).is_err());
        h.insert(header::CONTENT_ENCODING, "identity".parse().unwrap());
        assert!(content_headers(&h).is_ok());
    }
}

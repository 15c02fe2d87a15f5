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
use crate::crypto::mac::hmac_sha256;
use crate::error::errno_http_status;
use crate::protocol::canonical;
use crate::protocol::errno::Errno;
use crate::protocol::xml::{encode_answer, AnswerBody};

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
    let text = encode_answer(errno, now_ms(), body);
    let status =
        StatusCode::from_u16(errno_http_status(errno)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml; charset=utf-8");
    if let Some(m) = mac {
        // The same input as `canonical::response_mac_input`, without copying
        // the body after the head.
        let head = canonical::response_mac_head(m.ts, &m.request_mac);
        let tag = hmac_sha256(m.keys.mac.expose(), &[&head, text.as_bytes()]);
        b = b.header("x-cardswitch-mac", canonical::format_mac_header(&tag));
    }
    if errno == Errno::Throttled {
        b = b.header(header::RETRY_AFTER, "1");
    }
    b.body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid")
}

/// A refusal: audited, logged, answered.
pub struct Refusal<'a> {
    pub path: &'a str,
    pub terminal: Option<&'a str>,
    pub peer: SocketAddr,
}

impl Refusal<'_> {
    /// Writes the audit row (errors only logged) and answers `errno`.
    pub async fn answer(
        &self,
        state: &AppState,
        errno: Errno,
        reason: &str,
        mac: Option<&MacCtx<'_>>,
    ) -> Answer {
        self.audit(state, errno, reason).await;
        xml(errno, &AnswerBody::None, mac)
    }

    pub async fn audit(&self, state: &AppState, errno: Errno, reason: &str) {
        state.metrics.refused(errno.code());
        tracing::debug!(
            errno = errno.code(),
            terminal = self.terminal,
            reason,
            "refused"
        );
        let detail = serde_json::json!({
            "path": self.path,
            "errno": errno.code(),
            "reason": reason,
        });
        let source = self.peer.ip().to_string();
        let result = async {
            let client = state.pool.get().await.map_err(|e| e.to_string())?;
            crate::store::audit::insert(
                &client,
                &state.txn_env.row_keys,
                crate::store::audit::AuditKind::Refused,
                self.terminal,
                None,
                Some(&source),
                &detail,
            )
            .await
            .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the audit row");
        }
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
    let refusal = Refusal {
        path,
        terminal: None,
        peer,
    };
    if let Verdict::Refuse { audit } = state.addr_buckets.check(&peer.ip().to_string()) {
        if audit {
            refusal
                .audit(state, Errno::Throttled, "source address rate")
                .await;
        }
        return Err(xml(Errno::Throttled, &AnswerBody::None, None));
    }
    let server = &state.config.server;
    let (parts, body) = match http::read_body(req, server.max_body_bytes, server.body_timeout).await
    {
        Ok(x) => x,
        Err(BodyError::TooLarge) => {
            // proto-spec §1.2: 413, and the XML answer 1001 for clients that read it.
            refusal
                .audit(state, Errno::Malformed, "body over 16 KiB")
                .await;
            let mut a = xml(Errno::Malformed, &AnswerBody::None, None);
            *a.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            a.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return Err(a);
        }
        Err(e) => return Err(http::body_error(e)),
    };
    if let Err(reason) = content_headers(&parts.headers) {
        return Err(refusal.answer(state, Errno::Malformed, reason, None).await);
    }
    Ok((parts.headers, body))
}

/// `Content-Type` must be `application/x-www-form-urlencoded` (parameters
/// such as `charset` allowed); `Content-Encoding`, if any, `identity`.
fn content_headers(h: &HeaderMap) -> Result<(), &'static str> {
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    let ct = match (types.next(), types.next()) {
        (Some(v), None) => v.to_str().map_err(|_| "content type not ASCII")?,
        _ => return Err("content type missing or repeated"),
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err("content type is not a form");
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
            return Err("content encoding");
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

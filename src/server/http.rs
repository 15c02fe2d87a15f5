//! HTTP plumbing shared by every route: bounded body reading and plain answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};

pub type Answer = Response<Full<Bytes>>;

/// Why a body could not be read; each becomes a plain HTTP refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// Reads the whole body, refusing before reading when `Content-Length` is
/// already too large, and stopping as soon as the bytes read pass `max`.
pub async fn read_body(
    req: Request<Incoming>,
    max: usize,
    timeout: Duration,
) -> Result<(hyper::http::request::Parts, Bytes), BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Broken),
        Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
    }
}

pub fn plain(status: StatusCode, text: &str) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(format!("{text}\n"))))
        .expect("static response parts are valid")
}

pub fn body_error(e: BodyError) -> Answer {
    let mut a = match e {
        BodyError::TooLarge => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        BodyError::TimedOut => plain(StatusCode::REQUEST_TIMEOUT, "request body too slow"),
        BodyError::Broken => plain(StatusCode::BAD_REQUEST, "request body unreadable"),
    };
    // The rest of the body is unread: the connection cannot be reused.
    a.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    a
}

pub fn method_not_allowed(allow: &'static str) -> Answer {
    let mut a = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    a.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    a
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the
/// last address in the last `X-Forwarded-For` it sent (the one the proxy
/// added; earlier ones came from the client and prove nothing).
pub fn client_addr(
    trusted: &[std::net::IpAddr],
    peer: std::net::SocketAddr,
    headers: &hyper::HeaderMap,
) -> std::net::SocketAddr {
    if !trusted.contains(&peer.ip()) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
    match forwarded {
        Some(ip) => std::net::SocketAddr::new(ip, peer.port()),
        None => peer,
    }
}

#[cfg(test)]
mod client_addr_tests {
    use super::client_addr;

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let proxy: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut h = hyper::HeaderMap::new();
        h.append("x-forwarded-for", "10.9.9.9, 203.0.113.9".parse().unwrap());
        h.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        let trusted = ["127.0.0.1".parse().unwrap()];
        assert_eq!(
            client_addr(&trusted, proxy, &h).ip().to_string(),
            "198.51.100.7"
        );
        assert_eq!(client_addr(&[], proxy, &h), proxy);
        let mut junk = hyper::HeaderMap::new();
        junk.append("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_addr(&trusted, proxy, &junk), proxy);
        assert_eq!(
            client_addr(&trusted, proxy, &hyper::HeaderMap::new()),
            proxy
        );
    }
}

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

//! Routing: which path answers which method, and the non-protocol endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Request, Response, StatusCode};

use super::http::{self, Answer};
use super::AppState;

const PROTOCOL_PATHS: [&str; 3] = ["/v1/hello", "/v1/login", "/v1/txn"];

pub async fn route(
    state: &AppState,
    _peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Answer {
    let path = req.uri().path();
    match path {
        "/healthz" if req.method() == Method::GET => healthz(state).await,
        "/metrics" if req.method() == Method::GET => metrics(state),
        "/healthz" | "/metrics" => http::method_not_allowed("GET"),
        p if PROTOCOL_PATHS.contains(&p) => {
            if req.method() != Method::POST {
                return http::method_not_allowed("POST");
            }
            let server = &state.config.server;
            match http::read_body(req, server.max_body_bytes, server.body_timeout).await {
                Err(e) => http::body_error(e),
                Ok((_parts, _body)) => http::plain(
                    StatusCode::NOT_IMPLEMENTED,
                    "protocol handlers are not in this build yet",
                ),
            }
        }
        _ => http::plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn healthz(state: &AppState) -> Answer {
    match crate::store::ping(&state.pool, Duration::from_secs(2)).await {
        Ok(()) => http::plain(StatusCode::OK, "ok"),
        Err(reason) => {
            tracing::warn!(%reason, "health check: database not answering");
            http::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("database unavailable: {reason}"),
            )
        }
    }
}

fn metrics(state: &AppState) -> Answer {
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Full::new(Bytes::from(state.metrics.render(&state.pool))))
        .expect("static response parts are valid")
}

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
    peer: SocketAddr,
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
            let path = p.to_owned();
            let (headers, body) = match super::proto::prelude(state, peer, &path, req).await {
                Ok(x) => x,
                Err(answer) => return answer,
            };
            match path.as_str() {
                "/v1/hello" => super::handshake::hello(state, peer, body).await,
                "/v1/login" => super::handshake::login(state, peer, body).await,
                _ => super::txn::txn(state, peer, &headers, body).await,
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

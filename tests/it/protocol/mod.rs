//! Protocol v1 against real daemons on real sockets: the handshake, encrypted
//! transactions, every refusal 1001–1009 provoked on purpose, once-only
//! values across instances and restarts, revocation across instances, and
//! every answer checked against the XSDs and (after the sid) its MAC. One
//! module per area; the helpers below build, send and check requests.

mod failover;
mod fields;
mod floods;
mod group_commit;
mod handshake;
mod refusals;
mod replays;
mod revocation;
mod throttling;

use std::time::Duration;

use cardswitch::client::{wire, Client, RawResponse, Session};
use cardswitch::crypto::aead;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::xml::{encode_rows, parse_answer};

use crate::harness::{assert_valid, Daemon, Fixture};

pub(super) const QUERY: &[u8] = b"op=query&attr1=CARD0001";

pub(super) fn url(d: &Daemon) -> String {
    format!("http://{}", d.addr)
}

pub(super) fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

/// The errno of an answer, its body checked against the XSD for `path`.
/// A bare hello for `terminal` (no root named), as a client's first request.
pub(super) async fn raw_hello(c: &Client, terminal: &str) -> RawResponse {
    let ts = now_ms().to_string();
    let form = cardswitch::protocol::form::encode_form(&[("terminal", terminal), ("ts", &ts)]);
    c.post_form("/v1/hello", form, &[]).await.unwrap()
}

pub(super) fn errno_of(path: &str, r: &RawResponse) -> Errno {
    let a = parse_answer(&r.body).unwrap_or_else(|e| {
        panic!(
            "not an answer ({e:?}): {:?}",
            String::from_utf8_lossy(&r.body)
        )
    });
    let xsd = match (a.errno, path) {
        (Errno::Ok, "/v1/hello") => "hello.xsd",
        (Errno::Ok, "/v1/login") => "login.xsd",
        (Errno::Ok, _) => "txn-answer.xsd",
        _ => "error.xsd",
    };
    assert_valid(xsd, &r.body);
    a.errno
}

/// A txn request built by hand, so tests can send, tamper with and replay it.
pub(super) struct Built {
    pub(super) ts: u64,
    pub(super) body: Vec<u8>,
    pub(super) mac: [u8; 32],
}

pub(super) fn build(s: &Session, ts: u64, inner: &[u8]) -> Built {
    let b = wire::txn_body(&s.keys, &s.terminal, &s.sid, ts, &aead::random_iv(), inner);
    Built {
        ts,
        body: b.body.into_bytes(),
        mac: b.mac,
    }
}

pub(super) async fn send(c: &Client, b: &Built, headers: &[(&str, &str)]) -> RawResponse {
    c.post_form("/v1/txn", b.body.clone(), headers)
        .await
        .unwrap()
}

pub(super) async fn send_referer(c: &Client, b: &Built) -> RawResponse {
    let h = canonical::format_mac_header(&b.mac);
    send(c, b, &[("referer", &h)]).await
}

/// Checks errno, XSD and the answer MAC (required once the sid is known).
pub(super) fn expect_txn(s: &Session, b: &Built, r: &RawResponse, want: Errno) -> wire::TxnOutcome {
    assert_eq!(
        errno_of("/v1/txn", r),
        want,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let out = wire::open_txn_answer(
        &s.keys,
        &s.terminal,
        &s.sid,
        b.ts,
        &b.mac,
        r.header("x-cardswitch-mac"),
        &r.body,
    )
    .expect("answer MAC and body check");
    assert!(out.mac_verified, "answer after the sid must carry a MAC");
    if want == Errno::Ok {
        assert_valid("rows.xsd", encode_rows(&out.rows).as_bytes());
    }
    out
}

/// An answer given before the sid is resolved: no MAC.
pub(super) fn expect_plain(path: &str, r: &RawResponse, want: Errno) {
    assert_eq!(
        errno_of(path, r),
        want,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.header("x-cardswitch-mac").is_none());
}

pub(super) struct Setup {
    pub(super) fx: Fixture,
    pub(super) d: Daemon,
    pub(super) c: Client,
    pub(super) password: String,
}

pub(super) async fn setup() -> Setup {
    let fx = Fixture::new().await;
    let password = fx.terminal("T1", "S1").await;
    fx.card("CARD0001", "12.50").await;
    let d = Daemon::start(fx.config.clone()).await;
    settle(&fx).await;
    let c = Client::new(&url(&d));
    Setup { fx, d, c, password }
}

/// Waits until the daemon's background task has made today's and
/// tomorrow's day keys for T1, so later snapshots see no background writes.
pub(super) async fn settle(fx: &Fixture) {
    for _ in 0..200 {
        let n: i64 = fx
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM day_keys WHERE terminal_id = 'T1' AND status = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("day keys were not made ahead");
}

//! Protocol v1 against real daemons on real sockets: the handshake, encrypted
//! transactions, every refusal 1001–1009 provoked on purpose, once-only
//! values across instances and restarts, revocation across instances, and
//! every answer checked against the XSDs and (after the sid) its MAC.

use std::time::{Duration, Instant};

use cardswitch::client::{wire, Client, RawResponse, Session};
use cardswitch::crypto::aead;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::form::encode_form;
use cardswitch::protocol::grammar::base64_encode;
use cardswitch::protocol::xml::{encode_rows, parse_answer};

use crate::harness::{assert_valid, Daemon, Fixture};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const QUERY: &[u8] = b"op=query&attr1=CARD0001";

fn url(d: &Daemon) -> String {
    format!("http://{}", d.addr)
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

/// The errno of an answer, its body checked against the XSD for `path`.
fn errno_of(path: &str, r: &RawResponse) -> Errno {
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
struct Built {
    ts: u64,
    body: Vec<u8>,
    mac: [u8; 32],
}

fn build(s: &Session, ts: u64, inner: &[u8]) -> Built {
    let b = wire::txn_body(&s.keys, &s.terminal, &s.sid, ts, &aead::random_iv(), inner);
    Built {
        ts,
        body: b.body.into_bytes(),
        mac: b.mac,
    }
}

fn mac_of(s: &Session, body: &[u8]) -> [u8; 32] {
    cardswitch::crypto::mac::hmac_sha256(
        s.keys.mac.expose(),
        &[&canonical::request_mac_input(body)],
    )
}

async fn send(c: &Client, b: &Built, headers: &[(&str, &str)]) -> RawResponse {
    c.post_form("/v1/txn", b.body.clone(), headers)
        .await
        .unwrap()
}

async fn send_referer(c: &Client, b: &Built) -> RawResponse {
    let h = canonical::format_mac_header(&b.mac);
    send(c, b, &[("referer", &h)]).await
}

/// Checks errno, XSD and the answer MAC (required once the sid is known).
fn expect_txn(s: &Session, b: &Built, r: &RawResponse, want: Errno) -> wire::TxnOutcome {
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
fn expect_plain(path: &str, r: &RawResponse, want: Errno) {
    assert_eq!(
        errno_of(path, r),
        want,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.header("x-cardswitch-mac").is_none());
}

struct Setup {
    fx: Fixture,
    d: Daemon,
    c: Client,
    password: String,
}

async fn setup() -> Setup {
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
async fn settle(fx: &Fixture) {
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

#[tokio::test]
async fn handshake_then_a_transaction() {
    let Setup { fx, d, c, password } = setup().await;
    // hello, raw, against its XSD; then the client's verified path.
    let body = encode_form(&[("terminal", "T1"), ("ts", &now_ms().to_string())]);
    let r = c.post_form("/v1/hello", body, &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(errno_of("/v1/hello", &r), Errno::Ok);
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    // The day key is signed once: a second hello gives the same signature.
    let r2 = c
        .post_form(
            "/v1/hello",
            encode_form(&[("terminal", "T1"), ("ts", &now_ms().to_string())]),
            &[],
        )
        .await
        .unwrap();
    let day_sig = |r: &RawResponse| {
        let a = parse_answer(&r.body).unwrap();
        match a.body {
            cardswitch::protocol::AnswerBody::Rows(rows) => {
                rows.0[0].get("day_sig").unwrap().to_owned()
            }
            _ => panic!(),
        }
    };
    assert_eq!(day_sig(&r), day_sig(&r2));

    // login, raw, against its XSD.
    let ts = c.clock.next();
    let s = cardswitch::crypto::Secret32::random();
    let secret = wire::login_secret(&day.public, &s, ts, &password).unwrap();
    let r = c
        .post_form(
            "/v1/login",
            wire::login_body("T1", &day.key_id, ts, &secret),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(errno_of("/v1/login", &r), Errno::Ok);
    let a = parse_answer(&r.body).unwrap();
    let row = match a.body {
        cardswitch::protocol::AnswerBody::Rows(rows) => rows.0[0].clone(),
        _ => panic!(),
    };
    let la = cardswitch::protocol::LoginAnswer::from_row(&row).unwrap();
    let k_sid = wire::open_login("T1", &day, ts, &s, &la).unwrap();
    let session = Session::new("T1", &day.key_id, &la.sid, la.not_after, k_sid);

    let b = build(&session, c.clock.next(), QUERY);
    let r = send_referer(&c, &b).await;
    assert_eq!(r.status, 200);
    let out = expect_txn(&session, &b, &r, Errno::Ok);
    let row = &out.rows.0[0];
    assert_eq!(row.get("card"), Some("CARD0001"));
    assert_eq!(row.get("balance"), Some("12.50"));
    assert_eq!(row.get("status"), Some("active"));

    // The high-level client agrees, MAC in X-Cardswitch-Mac only works too.
    let session2 = c.handshake("T1", &password, &fx.root).await.unwrap();
    let b = build(&session2, c.clock.next(), QUERY);
    let h = canonical::format_mac_header(&b.mac);
    let r = send(&c, &b, &[("x-cardswitch-mac", &h)]).await;
    expect_txn(&session2, &b, &r, Errno::Ok);
    // Both headers, equal (hex case may differ): fine.
    let b = build(&session2, c.clock.next(), QUERY);
    let h = canonical::format_mac_header(&b.mac);
    let upper = format!("hmac-sha256:{}", hex::encode_upper(b.mac));
    let r = send(&c, &b, &[("referer", &h), ("x-cardswitch-mac", &upper)]).await;
    expect_txn(&session2, &b, &r, Errno::Ok);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn login_on_one_instance_transact_on_another_and_replays_fail_everywhere() {
    let Setup { fx, d, c, password } = setup().await;
    let d2 = Daemon::start(fx.config.clone()).await;
    let c2 = Client::new(&url(&d2));
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let b = build(&s, c.clock.next(), QUERY);
    expect_txn(&s, &b, &send_referer(&c2, &b).await, Errno::Ok);
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::TsUsed);
    expect_txn(&s, &b, &send_referer(&c2, &b).await, Errno::TsUsed);
    // After a restart too.
    d.stop().await.unwrap();
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&url(&d));
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::TsUsed);
    // The session itself survives the restart: a new ts works.
    let b = build(&s, now_ms() + 5, QUERY);
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Ok);
    d.stop().await.unwrap();
    d2.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_request_cannot_be_replayed_to_succeed() {
    let Setup { fx, d, c, password } = setup().await;
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let b = build(&s, c.clock.next(), b"op=query&attr1=CARD0002");
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::CardNotFound);
    fx.card("CARD0002", "1.00").await;
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::TsUsed);
    let b = build(&s, c.clock.next(), b"op=query&attr1=CARD0002");
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Ok);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn every_refusal_1001_to_1008_writes_nothing_but_audit() {
    let Setup { fx, d, c, password } = setup().await;
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    let before = fx.fingerprint().await;
    let audit_before = fx.audit_count().await;
    let mut refusals = 0;

    // --- 1001 before the sid is known: no MAC.
    let b = build(&s, c.clock.next(), QUERY);
    let h = canonical::format_mac_header(&b.mac);
    let text = String::from_utf8(b.body.clone()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "malformed base64",
            text.replace("&data=", "&data=%21%21").into_bytes(),
        ),
        ("wrong IV length", {
            let iv = base64_encode(&[1u8; 8]);
            let mut f: Vec<String> = text.split('&').map(str::to_owned).collect();
            for p in f.iter_mut() {
                if p.starts_with("iv=") {
                    *p = encode_form(&[("iv", &iv)]);
                }
            }
            f.join("&").into_bytes()
        }),
        (
            "DOCTYPE",
            b"<!DOCTYPE r [<!ENTITY x \"y\">]><r>&x;</r>".to_vec(),
        ),
        (
            "entity in a value",
            format!("{text}&x=%3C%21ENTITY%20a%20%22b%22%3E").into_bytes(),
        ),
        (
            "duplicate field",
            format!("{text}&ts={}", b.ts).into_bytes(),
        ),
        ("unknown field", format!("{text}&extra=1").into_bytes()),
        (
            "non-UTF-8",
            text.replace("terminal=T1", "terminal=T%FF").into_bytes(),
        ),
        (
            "raw non-ASCII",
            text.replace("terminal=T1", "terminal=T\u{e9}").into_bytes(),
        ),
    ];
    for (what, body) in cases {
        let r = c
            .post_form("/v1/txn", body, &[("referer", &h)])
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{what}");
        expect_plain("/v1/txn", &r, Errno::Malformed);
        refusals += 1;
    }
    // Wrong content type, or none, or compressed.
    for headers in [
        vec![("content-type", "text/plain"), ("referer", h.as_str())],
        vec![("referer", h.as_str())],
        vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-encoding", "gzip"),
            ("referer", h.as_str()),
        ],
    ] {
        let r = c
            .post_raw("/v1/txn", b.body.clone(), &headers)
            .await
            .unwrap();
        expect_plain("/v1/txn", &r, Errno::Malformed);
        refusals += 1;
    }
    // A charset parameter is fine (and this spends b's ts).
    let r = c
        .post_raw(
            "/v1/txn",
            b.body.clone(),
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                ),
                ("referer", &h),
            ],
        )
        .await
        .unwrap();
    expect_txn(&s, &b, &r, Errno::Ok);
    // Over 16 KiB: 413 with the XML answer 1001.
    let big = format!("terminal=T1&ts={}&x={}", now_ms(), "a".repeat(17 * 1024));
    let r = c.post_form("/v1/txn", big, &[]).await.unwrap();
    assert_eq!(r.status, 413);
    expect_plain("/v1/txn", &r, Errno::Malformed);
    refusals += 1;

    // --- 1002: unknown, then disabled terminal.
    let mut other = s.clone();
    other.terminal = "T9".into();
    let b = build(&other, c.clock.next(), QUERY);
    expect_plain(
        "/v1/txn",
        &send_referer(&c, &b).await,
        Errno::UnknownTerminal,
    );
    let r = c
        .post_form(
            "/v1/hello",
            encode_form(&[("terminal", "T9"), ("ts", &now_ms().to_string())]),
            &[],
        )
        .await
        .unwrap();
    expect_plain("/v1/hello", &r, Errno::UnknownTerminal);
    refusals += 2;

    // --- 1004: unknown sid; a hello naming an unknown root.
    let mut bad_sid = s.clone();
    bad_sid.sid = "nosuchsession".into();
    let b = build(&bad_sid, c.clock.next(), QUERY);
    expect_plain("/v1/txn", &send_referer(&c, &b).await, Errno::KeyUnknown);
    let r = c
        .post_form(
            "/v1/hello",
            encode_form(&[
                ("terminal", "T1"),
                ("ts", &now_ms().to_string()),
                ("root", "0123456789abcdef"),
            ]),
            &[],
        )
        .await
        .unwrap();
    expect_plain("/v1/hello", &r, Errno::KeyUnknown);
    refusals += 2;

    // --- 1005: ts outside the window (txn: MACed; hello; login).
    let b = build(&s, now_ms() - 600_000, QUERY);
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::TsOutsideWindow);
    let r = c
        .post_form(
            "/v1/hello",
            encode_form(&[
                ("terminal", "T1"),
                ("ts", &(now_ms() + 600_000).to_string()),
            ]),
            &[],
        )
        .await
        .unwrap();
    expect_plain("/v1/hello", &r, Errno::TsOutsideWindow);
    refusals += 2;

    // --- after the sid: MAC header missing or malformed (1001), wrong (1007).
    let b = build(&s, c.clock.next(), QUERY);
    expect_txn(&s, &b, &send(&c, &b, &[]).await, Errno::Malformed);
    expect_txn(
        &s,
        &b,
        &send(&c, &b, &[("referer", "https://shop.example/pos")]).await,
        Errno::Malformed,
    );
    let wrong = canonical::format_mac_header(&[0u8; 32]);
    let right = canonical::format_mac_header(&b.mac);
    expect_txn(
        &s,
        &b,
        &send(&c, &b, &[("referer", &wrong)]).await,
        Errno::BadMac,
    );
    expect_txn(
        &s,
        &b,
        &send(&c, &b, &[("x-cardswitch-mac", &wrong)]).await,
        Errno::BadMac,
    );
    expect_txn(
        &s,
        &b,
        &send(&c, &b, &[("referer", &right), ("x-cardswitch-mac", &wrong)]).await,
        Errno::BadMac,
    );
    // A MAC over the body of another request.
    let other_b = build(&s, c.clock.next(), QUERY);
    expect_txn(
        &s,
        &b,
        &send(
            &c,
            &b,
            &[("referer", &canonical::format_mac_header(&other_b.mac))],
        )
        .await,
        Errno::BadMac,
    );
    refusals += 6;
    // None of these spent b's ts: it still goes through.
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Ok);

    // --- 1008: flipped ciphertext bit, truncated ciphertext (the MAC is
    // right for the tampered body, so the ts is spent).
    let inner_aad = |ts| canonical::request_aad("T1", &s.sid, ts);
    for tamper in ["flip", "truncate"] {
        let ts = c.clock.next();
        let iv = aead::random_iv();
        let mut data = aead::seal(&s.keys.enc, &iv, inner_aad(ts).as_bytes(), QUERY);
        if tamper == "flip" {
            data[3] ^= 0x01;
        } else {
            data.truncate(10);
        }
        let body = encode_form(&[
            ("terminal", "T1"),
            ("sid", &s.sid),
            ("ts", &ts.to_string()),
            ("iv", &base64_encode(&iv)),
            ("data", &base64_encode(&data)),
        ])
        .into_bytes();
        let b = Built {
            ts,
            mac: mac_of(&s, &body),
            body,
        };
        expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::DecryptFailed);
        // Its ts is used up.
        expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::TsUsed);
        refusals += 2;
    }
    // Encrypted but malformed inner forms: 1001 after decryption.
    for inner in [
        &b"op=query&attr1=CARD0001&attr1=X"[..],
        b"op=fly&attr1=CARD0001",
        b"op=query&attr1=CARD0001&bogus=1",
    ] {
        let b = build(&s, c.clock.next(), inner);
        expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Malformed);
        expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::TsUsed);
        refusals += 2;
    }

    // --- 1003: wrong password; inner ts differing from the outer.
    let login = |ts_outer: u64, ts_inner: u64, pw: &str| {
        let sec = cardswitch::crypto::Secret32::random();
        let secret = wire::login_secret(&day.public, &sec, ts_inner, pw).unwrap();
        wire::login_body("T1", &day.key_id, ts_outer, &secret)
    };
    let ts = c.clock.next();
    let r = c
        .post_form("/v1/login", login(ts, ts, "not the password at all"), &[])
        .await
        .unwrap();
    expect_plain("/v1/login", &r, Errno::LoginRefused);
    let ts = c.clock.next();
    let r = c
        .post_form("/v1/login", login(ts, ts - 1, &password), &[])
        .await
        .unwrap();
    expect_plain("/v1/login", &r, Errno::LoginRefused);
    // A secret that is not OAEP at all.
    let ts = c.clock.next();
    let body = wire::login_body("T1", &day.key_id, ts, &[7u8; 256]);
    expect_plain(
        "/v1/login",
        &c.post_form("/v1/login", body, &[]).await.unwrap(),
        Errno::LoginRefused,
    );
    // A good secret with a ts outside the window: 1005.
    let old_ts = now_ms() - 600_000;
    let r = c
        .post_form("/v1/login", login(old_ts, old_ts, &password), &[])
        .await
        .unwrap();
    expect_plain("/v1/login", &r, Errno::TsOutsideWindow);
    refusals += 1;
    // A key id that is not the terminal's current day key: 1004.
    let ts = c.clock.next();
    let body = wire::login_body("T1", "T1.19990101.00000000", ts, &[7u8; 256]);
    expect_plain(
        "/v1/login",
        &c.post_form("/v1/login", body, &[]).await.unwrap(),
        Errno::KeyUnknown,
    );
    refusals += 4;

    assert_eq!(fx.fingerprint().await, before, "a refusal wrote something");
    let audited = fx.audit_count().await - audit_before;
    assert!(
        audited >= refusals,
        "{audited} audit rows for {refusals} refusals"
    );
    // Failed logins were counted (and slow the next ones down), not locked out.
    let s2 = c.handshake("T1", &password, &fx.root).await.unwrap();
    let b = build(&s2, c.clock.next(), QUERY);
    expect_txn(&s2, &b, &send_referer(&c, &b).await, Errno::Ok);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn disabled_revoked_and_expired_are_refused() {
    let Setup { fx, d, c, password } = setup().await;
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    // Expired day key: its sessions end (1004), and a login with it too.
    let original: i64 = fx
        .client()
        .await
        .query_one(
            "SELECT not_after FROM day_keys WHERE key_id = $1",
            &[&s.key_id],
        )
        .await
        .unwrap()
        .get(0);
    fx.client()
        .await
        .execute(
            "UPDATE day_keys SET not_after = $1 WHERE key_id = $2",
            &[&(now_ms() as i64 - 1), &s.key_id],
        )
        .await
        .unwrap();
    // (A daemon that cached the session learns of it through the listener; a
    // direct SQL edit sends no notification, so restart to drop the cache.)
    d.stop().await.unwrap();
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&url(&d));
    let b = build(&s, c.clock.next(), QUERY);
    expect_plain("/v1/txn", &send_referer(&c, &b).await, Errno::KeyUnknown);
    let day_key = s.key_id.clone();
    let ts = c.clock.next();
    let body = wire::login_body("T1", &day_key, ts, &[7u8; 256]);
    expect_plain(
        "/v1/login",
        &c.post_form("/v1/login", body, &[]).await.unwrap(),
        Errno::KeyUnknown,
    );
    fx.client()
        .await
        .execute(
            "UPDATE day_keys SET not_after = $1 WHERE key_id = $2",
            &[&original, &s.key_id],
        )
        .await
        .unwrap();

    // Disabled terminal: 1002 on every path.
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    cardswitch::keys::admin::set_terminal_status(&fx.config, fx.pool(), "T1", false)
        .await
        .unwrap();
    let before = fx.fingerprint().await;
    let b = build(&s, c.clock.next(), QUERY);
    expect_plain(
        "/v1/txn",
        &send_referer(&c, &b).await,
        Errno::UnknownTerminal,
    );
    let r = c
        .post_form(
            "/v1/hello",
            encode_form(&[("terminal", "T1"), ("ts", &now_ms().to_string())]),
            &[],
        )
        .await
        .unwrap();
    expect_plain("/v1/hello", &r, Errno::UnknownTerminal);
    assert_eq!(fx.fingerprint().await, before, "a 1002 wrote something");
    cardswitch::keys::admin::set_terminal_status(&fx.config, fx.pool(), "T1", true)
        .await
        .unwrap();
    // Disabling ended the session for good.
    let b = build(&s, c.clock.next(), QUERY);
    expect_plain("/v1/txn", &send_referer(&c, &b).await, Errno::KeyUnknown);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn keys_revoke_reaches_a_second_instance_within_a_second() {
    let Setup { fx, d, c, password } = setup().await;
    let d2 = Daemon::start(fx.config.clone()).await;
    let c2 = Client::new(&url(&d2));
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    // Both instances have the session cached.
    for cl in [&c, &c2] {
        let b = build(&s, c.clock.next(), QUERY);
        expect_txn(&s, &b, &send_referer(cl, &b).await, Errno::Ok);
    }
    let out = std::process::Command::new(BIN)
        .arg("--database-url")
        .arg(fx.config.database_url.as_deref().unwrap())
        .arg("--keys-dir")
        .arg(&fx.config.keys_dir)
        .args(["keys", "revoke", "T1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = Instant::now();
    loop {
        let b = build(&s, c.clock.next(), QUERY);
        let r = send_referer(&c2, &b).await;
        if errno_of("/v1/txn", &r) == Errno::KeyUnknown {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = build(&s, c.clock.next(), QUERY);
    expect_plain("/v1/txn", &send_referer(&c, &b).await, Errno::KeyUnknown);
    // A new handshake works (a new day key is made for today).
    let s = c2.handshake("T1", &password, &fx.root).await.unwrap();
    let b = build(&s, c.clock.next(), QUERY);
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Ok);
    d.stop().await.unwrap();
    d2.stop().await.unwrap();
}

#[tokio::test]
async fn too_many_requests_get_1009() {
    let fx = Fixture::new().await;
    let password = fx.terminal("T1", "S1").await;
    fx.card("CARD0001", "1.00").await;
    let mut config = fx.config.clone();
    config.protocol.terminal_rate = 1;
    config.protocol.terminal_burst = 4;
    let d = Daemon::start(config).await;
    settle(&fx).await;
    let c = Client::new(&url(&d));
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let before = fx.fingerprint().await;
    let mut throttled = None;
    for _ in 0..6 {
        let b = build(&s, c.clock.next(), QUERY);
        let r = send_referer(&c, &b).await;
        if errno_of("/v1/txn", &r) == Errno::Throttled {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("never throttled");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some(&b"1"[..]));
    expect_plain("/v1/txn", &r, Errno::Throttled);
    assert_eq!(fx.fingerprint().await, before);
    let audited: i64 = fx
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM audit WHERE detail->>'errno' = '1009'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(audited >= 1);
    // Per source address too.
    let mut config = fx.config.clone();
    config.protocol.addr_rate = 1;
    config.protocol.addr_burst = 2;
    let d2 = Daemon::start(config).await;
    let c2 = Client::new(&url(&d2));
    let mut seen = false;
    for _ in 0..4 {
        let r = c2
            .post_form(
                "/v1/hello",
                encode_form(&[("terminal", "T1"), ("ts", &now_ms().to_string())]),
                &[],
            )
            .await
            .unwrap();
        if errno_of("/v1/hello", &r) == Errno::Throttled {
            seen = true;
        }
    }
    assert!(seen);
    d.stop().await.unwrap();
    d2.stop().await.unwrap();
}

#[tokio::test]
async fn failed_logins_slow_down_but_never_lock_out() {
    let Setup { fx, d, c, password } = setup().await;
    for _ in 0..4 {
        let day = c.hello("T1", &fx.root, None).await.unwrap();
        let e = c
            .login("T1", "wrong password, long enough", &day)
            .await
            .unwrap_err();
        assert_eq!(
            e.downcast_ref::<cardswitch::client::Refused>()
                .unwrap()
                .errno,
            Errno::LoginRefused
        );
    }
    let failed: i32 = fx
        .client()
        .await
        .query_one(
            "SELECT failed_logins FROM terminals WHERE terminal_id = 'T1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 4);
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    let t = Instant::now();
    c.login("T1", &password, &day).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "no slow-down: {:?}",
        t.elapsed()
    );
    // The success reset the counter.
    let t = Instant::now();
    c.login("T1", &password, &day).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(400));
    d.stop().await.unwrap();
}

/// Issue 5: a terminal row changed by SQL does not log in (3001), and the
/// refusal is counted in /metrics.
#[tokio::test]
async fn a_tampered_terminal_row_cannot_log_in() {
    let Setup { fx, d, c, password } = setup().await;
    fx.client()
        .await
        .batch_execute("UPDATE terminals SET row_mac = '\\x00'::bytea WHERE terminal_id = 'T1'")
        .await
        .unwrap();
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    let e = c.login("T1", &password, &day).await.unwrap_err();
    assert_eq!(
        e.downcast_ref::<cardswitch::client::Refused>()
            .unwrap()
            .errno,
        Errno::Tampered
    );
    let m = d.get("/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        text.contains("cardswitch_integrity_failures_total 1"),
        "{text}"
    );
}

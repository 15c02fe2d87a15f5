//! Every refusal 1001–1008 provoked on purpose against a real daemon, each
//! answer checked against the XSD and (after the sid) its MAC: none of them
//! writes anything but audit rows, and a ts is spent only once the MAC is
//! right.

use cardswitch::client::{wire, Session};
use cardswitch::crypto::aead;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::form::encode_form;
use cardswitch::protocol::grammar::base64_encode;

use super::{
    build, expect_plain, expect_txn, now_ms, raw_hello, send, send_referer, setup, Built, Setup,
    QUERY,
};

fn mac_of(s: &Session, body: &[u8]) -> [u8; 32] {
    cardswitch::crypto::mac::hmac_sha256(
        s.keys.mac.expose(),
        &[&canonical::request_mac_input(body)],
    )
}

#[tokio::test]
async fn every_refusal_1001_to_1008_writes_nothing_but_audit() {
    let Setup { fx, d, c, password } = setup().await;
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    let before = fx.fingerprint().await;
    let audit_before = fx.last_audit_id().await;
    let mut refusals = 0;
    // Of those, the ones whose request proved the terminal's key.
    let mut proved = 0;

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
    let r = raw_hello(&c, "T9").await;
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
        proved += 2;
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
        proved += 2;
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
    // A refusal of a request that proved its key has its row before its
    // answer left; the others are tallied per address and minute.
    let audited = fx.refusals_audited(audit_before).await;
    assert_eq!(audited.own_rows, proved, "{audited:?}");
    // Failed logins were counted (and slow the next ones down), not locked out.
    let s2 = c.handshake("T1", &password, &fx.root).await.unwrap();
    let b = build(&s2, c.clock.next(), QUERY);
    expect_txn(&s2, &b, &send_referer(&c, &b).await, Errno::Ok);
    // The tallies are written when their minute ends, or at shutdown.
    d.stop().await.unwrap();
    let audited = fx.refusals_audited(audit_before).await;
    assert_eq!(audited.own_rows, proved, "{audited:?}");
    assert_eq!(audited.tallied, refusals - proved, "{audited:?}");
}

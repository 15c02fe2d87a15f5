//! Family 2: the crypto envelope of a txn — MAC headers, sessions, the time
//! window, replays and the ciphertext. A request whose MAC is right spends
//! its `ts` (1008 and after); one whose MAC is wrong spends nothing.

use cardswitch::client::{wire, Session};
use cardswitch::crypto::aead;
use cardswitch::crypto::mac::hmac_sha256;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::form::encode_form;
use cardswitch::protocol::grammar::base64_encode;

use super::{world, Want, World, FORM};

const QUERY: &[u8] = b"op=query&attr1=CARD0001";

/// A txn body of `s` at `ts` and its right MAC header.
fn body(s: &Session, ts: u64, inner: &[u8]) -> (String, String) {
    let b = wire::txn_body(&s.keys, &s.terminal, &s.sid, ts, &aead::random_iv(), inner);
    (b.body, canonical::format_mac_header(&b.mac))
}

/// A body whose `data` is `data` as given, MACed right for `s`.
fn sealed(s: &Session, ts: u64, iv: &[u8; 12], data: &[u8]) -> (String, String) {
    let body = encode_form(&[
        ("terminal", &s.terminal),
        ("sid", &s.sid),
        ("ts", &ts.to_string()),
        ("iv", &base64_encode(iv)),
        ("data", &base64_encode(data)),
    ]);
    let mac = hmac_sha256(
        s.keys.mac.expose(),
        &[&canonical::request_mac_input(body.as_bytes())],
    );
    (body, canonical::format_mac_header(&mac))
}

async fn post(w: &World, name: &str, b: &(String, String), extra: &[(&str, &str)], want: Errno) {
    let mut h = vec![("content-type", FORM)];
    h.extend_from_slice(extra);
    w.post(name, "/v1/txn", b.0.clone(), &h, Want::Errno(want))
        .await;
}

#[tokio::test]
async fn mac_headers_sessions_and_time() {
    let w = world().await;
    let (s, c) = (&w.t1, &w.c);
    let b = body(s, c.clock.next(), QUERY);
    let right = b.1.clone();
    let zeros = canonical::format_mac_header(&[0u8; 32]);
    let other = body(s, c.clock.next(), QUERY).1;
    let e = Errno::Malformed;
    post(&w, "no MAC header", &b, &[], e).await;
    post(
        &w,
        "a Referer that is not a MAC",
        &b,
        &[("referer", "https://shop.example/pos")],
        e,
    )
    .await;
    post(
        &w,
        "two Referer headers",
        &b,
        &[("referer", &right), ("referer", &right)],
        e,
    )
    .await;
    post(
        &w,
        "a MAC one byte short",
        &b,
        &[("referer", &right[..right.len() - 2])],
        e,
    )
    .await;
    let e = Errno::BadMac;
    post(&w, "a MAC of zeros", &b, &[("referer", &zeros)], e).await;
    post(
        &w,
        "the MAC of another request",
        &b,
        &[("referer", &other)],
        e,
    )
    .await;
    post(
        &w,
        "two MAC headers that differ",
        &b,
        &[("referer", &right), ("x-cardswitch-mac", &zeros)],
        e,
    )
    .await;
    let by_t2 = hmac_sha256(
        w.t2.keys.mac.expose(),
        &[&canonical::request_mac_input(b.0.as_bytes())],
    );
    let by_t2 = canonical::format_mac_header(&by_t2);
    post(
        &w,
        "a MAC under another session's key",
        &b,
        &[("referer", &by_t2)],
        e,
    )
    .await;
    // None of those spent the ts: the request itself still goes through.
    let r = c
        .post_form("/v1/txn", b.0.clone(), &[("referer", &right)])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    post(
        &w,
        "a captured request replayed",
        &b,
        &[("referer", &right)],
        Errno::TsUsed,
    )
    .await;

    let mut stolen = w.t2.clone();
    stolen.terminal = "T1".into();
    let b = body(&stolen, c.clock.next(), QUERY);
    post(
        &w,
        "another terminal's session",
        &b,
        &[("referer", &b.1.clone())],
        Errno::KeyUnknown,
    )
    .await;
    let now = chrono::Utc::now().timestamp_millis() as u64;
    for (name, ts) in [
        ("a ts ten minutes old", now - 600_000),
        ("a ts ten minutes ahead", now + 600_000),
    ] {
        let b = body(s, ts, QUERY);
        post(
            &w,
            name,
            &b,
            &[("referer", &b.1.clone())],
            Errno::TsOutsideWindow,
        )
        .await;
    }
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn ciphertexts() {
    let w = world().await;
    let (s, c) = (&w.t1, &w.c);
    let aad = |ts: u64| canonical::request_aad("T1", &s.sid, ts);
    let iv = aead::random_iv();
    let mut cases: Vec<(&str, (String, String))> = Vec::new();
    let ts = c.clock.next();
    let mut flipped = aead::seal(&s.keys.enc, &iv, aad(ts).as_bytes(), QUERY);
    flipped[5] ^= 0x40;
    cases.push(("a flipped ciphertext bit", sealed(s, ts, &iv, &flipped)));
    let ts = c.clock.next();
    let mut cut = aead::seal(&s.keys.enc, &iv, aad(ts).as_bytes(), QUERY);
    cut.truncate(12);
    cases.push(("a truncated ciphertext", sealed(s, ts, &iv, &cut)));
    let ts = c.clock.next();
    let for_other_ts = aead::seal(&s.keys.enc, &iv, aad(ts - 1).as_bytes(), QUERY);
    cases.push((
        "data sealed for another ts",
        sealed(s, ts, &iv, &for_other_ts),
    ));
    let ts = c.clock.next();
    let other_key = aead::seal(&w.t2.keys.enc, &iv, aad(ts).as_bytes(), QUERY);
    cases.push((
        "data sealed under another session's key",
        sealed(s, ts, &iv, &other_key),
    ));
    let ts = c.clock.next();
    let other_iv = aead::seal(&s.keys.enc, &aead::random_iv(), aad(ts).as_bytes(), QUERY);
    cases.push(("data sealed with another IV", sealed(s, ts, &iv, &other_iv)));
    let ts = c.clock.next();
    cases.push(("a bare tag of zeros", sealed(s, ts, &iv, &[0u8; 16])));
    for (name, b) in &cases {
        let h = b.1.clone();
        post(&w, name, b, &[("referer", &h)], Errno::DecryptFailed).await;
        // The MAC was right, so the ts is spent: the same request is 1006.
        post(&w, name, b, &[("referer", &h)], Errno::TsUsed).await;
    }
    w.d.stop().await.unwrap();
}

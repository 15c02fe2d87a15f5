//! The handshake against a real daemon: hello and login raw, each answer
//! against its XSD, the day key signed once, then transactions with the MAC
//! in either header; a terminal row tampered with cannot log in (3001).

use cardswitch::client::{wire, RawResponse, Session};
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::form::encode_form;
use cardswitch::protocol::xml::parse_answer;

use super::{
    build, errno_of, expect_txn, now_ms, raw_hello, send, send_referer, setup, Setup, QUERY,
};

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
    let r2 = raw_hello(&c, "T1").await;
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

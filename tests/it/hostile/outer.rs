//! Family 1: the outer forms of hello, login and txn, and the HTTP request
//! around them — everything refused before a key is proved.

use cardswitch::client::wire;
use cardswitch::crypto::aead;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::grammar::base64_encode;

use super::{world, Want, World, FORM};

const MALFORMED: Want = Want::Errno(Errno::Malformed);

/// A valid txn body of T1 to spoil (its ts fresh).
fn txn_text(w: &World) -> String {
    let s = &w.t1;
    wire::txn_body(
        &s.keys,
        &s.terminal,
        &s.sid,
        w.c.clock.next(),
        &aead::random_iv(),
        b"op=query&attr1=CARD0001",
    )
    .body
}

#[tokio::test]
async fn outer_forms() {
    let w = world().await;
    let t = txn_text(&w);
    let field = |name: &str| -> String {
        t.split('&')
            .find(|p| p.starts_with(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let ts = field("ts");
    let cases: Vec<(&str, String)> = vec![
        ("an empty body", String::new()),
        ("a body that is not a form", "junk".into()),
        ("a pair without =", format!("{t}&terminal")),
        ("an empty pair", t.replacen('&', "&&", 1)),
        ("a trailing &", format!("{t}&")),
        ("an unknown field", format!("{t}&x=1")),
        ("a repeated field", format!("{t}&{ts}")),
        ("a raw space", t.replace("terminal=T1", "terminal=T 1")),
        (
            "a bad percent escape",
            t.replace("terminal=T1", "terminal=T%G1"),
        ),
        (
            "bytes that are not UTF-8",
            t.replace("terminal=T1", "terminal=T%FF"),
        ),
        ("raw UTF-8", t.replace("terminal=T1", "terminal=T\u{e9}")),
        ("a NUL byte", t.replace("terminal=T1", "terminal=T%00")),
        (
            "a terminal id of 65 characters",
            t.replace("terminal=T1", &format!("terminal={}", "T".repeat(65))),
        ),
        (
            "a ts with a leading zero",
            t.replace(&ts, &format!("ts=0{}", &ts[3..])),
        ),
        (
            "a ts of 25 digits",
            t.replace(&ts, &format!("ts={}", "9".repeat(25))),
        ),
        ("a negative ts", t.replace(&ts, "ts=-1")),
        ("a ts that is not a number", t.replace(&ts, "ts=now")),
        (
            "base64 with padding bits set",
            t.replace(&field("data"), "data=AB=="),
        ),
        (
            "an IV of 16 bytes",
            t.replace(&field("iv"), &format!("iv={}", base64_encode(&[1u8; 16]))),
        ),
        (
            "a missing sid",
            t.replace(&format!("&{}", field("sid")), ""),
        ),
        (
            "an SQL injection for a sid",
            t.replace(&field("sid"), "sid=x%27%20OR%20%271%27%3D%271"),
        ),
    ];
    let n = cases.len();
    for (name, body) in cases {
        w.form(name, "/v1/txn", body, MALFORMED).await;
    }
    w.form(
        "a body over 16 KiB",
        "/v1/txn",
        format!("{t}&x={}", "a".repeat(17 * 1024)),
        Want::Status(413),
    )
    .await;
    assert!(n >= 20);
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn headers_methods_and_paths() {
    let w = world().await;
    let t = txn_text(&w);
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("content type text/plain", &[("content-type", "text/plain")]),
        ("no content type", &[]),
        (
            "two content types",
            &[("content-type", FORM), ("content-type", FORM)],
        ),
        (
            "a gzip content encoding",
            &[("content-type", FORM), ("content-encoding", "gzip")],
        ),
    ];
    for (name, headers) in cases {
        w.post(name, "/v1/txn", t.clone(), headers, MALFORMED).await;
    }
    let before = w.fx.fingerprint().await;
    let r = w.c.get_raw("/v1/txn").await.unwrap();
    super::check_answer("GET on a protocol path", &r, Want::Status(405));
    for path in ["/v1/admin", "/v1/../etc/passwd", "/v1/txn/", "/V1/TXN"] {
        w.form(path, path, t.clone(), Want::Status(404)).await;
    }
    assert_eq!(w.fx.fingerprint().await, before);
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn hello_and_login() {
    let w = world().await;
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let hello = |terminal: &str, ts: u64, root: Option<&str>| {
        let ts = ts.to_string();
        let mut f = vec![("terminal", terminal), ("ts", ts.as_str())];
        if let Some(r) = root {
            f.push(("root", r));
        }
        cardswitch::protocol::form::encode_form(&f)
    };
    let e = |x| Want::Errno(x);
    w.form(
        "hello for an unknown terminal",
        "/v1/hello",
        hello("T9", now, None),
        e(Errno::UnknownTerminal),
    )
    .await;
    w.form(
        "hello with a ts outside the window",
        "/v1/hello",
        hello("T1", now - 600_000, None),
        e(Errno::TsOutsideWindow),
    )
    .await;
    w.form(
        "hello naming an unknown root",
        "/v1/hello",
        hello("T1", now, Some("0123456789abcdef")),
        e(Errno::KeyUnknown),
    )
    .await;
    let day = w.c.hello("T1", &w.fx.root, None).await.unwrap();
    let login = |key_id: &str, ts: u64, secret: &[u8]| wire::login_body("T1", key_id, ts, secret);
    let ts = w.c.clock.next();
    w.form(
        "login with a key id not the day's",
        "/v1/login",
        login("T1.19990101.00000000", ts, &[7; 256]),
        e(Errno::KeyUnknown),
    )
    .await;
    w.form(
        "login with a secret that is not OAEP",
        "/v1/login",
        login(&day.key_id, ts, &[7; 256]),
        e(Errno::LoginRefused),
    )
    .await;
    let secret = |ts, pw: &str| {
        wire::login_secret(&day.public, &cardswitch::crypto::Secret32::random(), ts, pw).unwrap()
    };
    let ts = w.c.clock.next();
    w.form(
        "login with a wrong password",
        "/v1/login",
        login(&day.key_id, ts, &secret(ts, "guess, long enough")),
        e(Errno::LoginRefused),
    )
    .await;
    let ts = w.c.clock.next();
    w.form(
        "login whose inner ts differs",
        "/v1/login",
        login(&day.key_id, ts, &secret(ts + 1, &w.password)),
        e(Errno::LoginRefused),
    )
    .await;
    // A captured good login sent again: its ts is spent.
    let ts = w.c.clock.next();
    let good = login(&day.key_id, ts, &secret(ts, &w.password));
    let r = w.c.post_form("/v1/login", good.clone(), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    w.form(
        "a captured login replayed",
        "/v1/login",
        good,
        e(Errno::TsUsed),
    )
    .await;
    // A txn naming a terminal that does not exist, or a session that does not.
    let mut ghost = w.t1.clone();
    ghost.terminal = "T9".into();
    let b = wire::txn_body(
        &ghost.keys,
        "T9",
        &ghost.sid,
        w.c.clock.next(),
        &aead::random_iv(),
        b"op=query&attr1=CARD0001",
    );
    w.form(
        "a txn of an unknown terminal",
        "/v1/txn",
        b.body,
        e(Errno::UnknownTerminal),
    )
    .await;
    let b = wire::txn_body(
        &w.t1.keys,
        "T1",
        "nosuchsession",
        w.c.clock.next(),
        &aead::random_iv(),
        b"op=query&attr1=CARD0001",
    );
    w.form(
        "a txn of an unknown session",
        "/v1/txn",
        b.body,
        e(Errno::KeyUnknown),
    )
    .await;
    w.d.stop().await.unwrap();
}

//! Throttling: too many requests per terminal or per source address get
//! 1009 (429, Retry-After) and write nothing but audit; failed logins slow
//! the next ones down but never lock the terminal out.

use std::time::{Duration, Instant};

use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;

use crate::harness::{Daemon, Fixture};

use super::{
    build, errno_of, expect_txn, raw_hello, send_referer, settle, setup, url, Setup, QUERY,
};

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
    // An outsider's hellos and logins naming T1 do not use up its budget:
    // they count against their source address.
    for _ in 0..20 {
        let r = raw_hello(&c, "T1").await;
        assert_ne!(errno_of("/v1/hello", &r), Errno::Throttled);
    }
    let mut throttled = None;
    for _ in 0..6 {
        let b = build(&s, c.clock.next(), QUERY);
        let r = send_referer(&c, &b).await;
        if errno_of("/v1/txn", &r) == Errno::Throttled {
            throttled = Some((b, r));
            break;
        }
    }
    let (b, r) = throttled.expect("never throttled");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some(&b"1"[..]));
    // The request proved the terminal's key: its answer is MACed.
    expect_txn(&s, &b, &r, Errno::Throttled);
    assert_eq!(fx.fingerprint().await, before);
    // Counted in /metrics by errno (the log has it at debug only).
    let m = d.get("/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("cardswitch_refusals_total{errno=\"1009\"} 1"),
        "{text}"
    );
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
        let r = raw_hello(&c2, "T1").await;
        if errno_of("/v1/hello", &r) == Errno::Throttled {
            seen = true;
        }
    }
    assert!(seen);
    d.stop().await.unwrap();
    d2.stop().await.unwrap();
}

/// `n` wrong-password logins of T1 from `c`, each refused 1003.
async fn fail_logins(c: &Client, fx: &Fixture, n: usize) {
    for _ in 0..n {
        let day = c.hello("T1", &fx.root, None).await.unwrap();
        let e = c
            .login("T1", "wrong password, long enough", &day)
            .await
            .unwrap_err();
        let refused = e.downcast_ref::<cardswitch::client::Refused>().unwrap();
        assert_eq!(refused.errno, Errno::LoginRefused);
    }
}

#[tokio::test]
async fn failed_logins_slow_down_their_source_but_never_lock_out() {
    let Setup { fx, d, c, password } = setup().await;
    // The terminal's own failures slow its own next login down.
    fail_logins(&c, &fx, 4).await;
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    let t = Instant::now();
    c.login("T1", &password, &day).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "no slow-down: {:?}",
        t.elapsed()
    );
    // The success reset the count.
    let t = Instant::now();
    c.login("T1", &password, &day).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(400));

    // An outsider at another address, naming T1 with wrong passwords, slows
    // down only itself: after six failures its next try waits 1.6 s, while
    // T1's own login from its own address is not delayed at all.
    let audit_before = fx.last_audit_id().await;
    let outsider = Client::bound(&url(&d), "127.0.0.2".parse().unwrap());
    fail_logins(&outsider, &fx, 6).await;
    let t = Instant::now();
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "delayed by an outsider: {:?}",
        t.elapsed()
    );
    let b = build(&s, c.clock.next(), QUERY);
    expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Ok);
    let t = Instant::now();
    fail_logins(&outsider, &fx, 1).await;
    assert!(
        t.elapsed() >= Duration::from_millis(1600),
        "{:?}",
        t.elapsed()
    );
    // Failed logins write nothing per attempt: one tally row per address
    // and minute, written when the minute ends (here, at shutdown).
    d.stop().await.unwrap();
    let rows = fx
        .client()
        .await
        .query(
            "SELECT detail FROM audit
              WHERE audit_id > $1 AND kind = 'refused.unproved' AND source = '127.0.0.2'",
            &[&audit_before],
        )
        .await
        .unwrap();
    let failed: i64 = rows
        .iter()
        .map(|r| {
            let d: serde_json::Value = r.get(0);
            assert_eq!(d["terminals"][0], "T1", "{d}");
            d["errnos"]["1003"].as_i64().unwrap_or(0)
        })
        .sum();
    assert_eq!(failed, 7);
}

/// Behind a trusted proxy the client is the address it forwards; anyone
/// else's `X-Forwarded-For` is ignored. Seen in where refusals are tallied.
#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_nobody_else_does() {
    let fx = Fixture::new().await;
    let mut config = fx.config.clone();
    config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let d = Daemon::start(config).await;
    let audit_before = fx.last_audit_id().await;
    let proxy = Client::new(&url(&d));
    let other = Client::bound(&url(&d), "127.0.0.2".parse().unwrap());
    for (c, forwarded) in [(&proxy, "10.1.1.1, 203.0.113.9"), (&other, "198.51.100.7")] {
        let r = c
            .post_form(
                "/v1/txn",
                b"junk=1".to_vec(),
                &[("x-forwarded-for", forwarded)],
            )
            .await
            .unwrap();
        assert_eq!(errno_of("/v1/txn", &r), Errno::Malformed);
    }
    d.stop().await.unwrap();
    let sources: Vec<String> = fx
        .client()
        .await
        .query(
            "SELECT source FROM audit WHERE audit_id > $1 AND kind = 'refused.unproved' ORDER BY source",
            &[&audit_before],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, ["127.0.0.2", "203.0.113.9"]);
}

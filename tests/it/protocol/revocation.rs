//! Sessions ended: an expired day key, a disabled terminal (1002 on every
//! path, the session over for good), and `keys revoke` reaching a second
//! instance within a second.

use std::time::{Duration, Instant};

use cardswitch::client::{wire, Client};
use cardswitch::protocol::errno::Errno;

use crate::harness::Daemon;

use super::{
    build, errno_of, expect_plain, expect_txn, now_ms, raw_hello, send_referer, setup, url, Setup,
    QUERY,
};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

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
    let r = raw_hello(&c, "T1").await;
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

//! Once-only values: a ts spent on one instance is refused on every other
//! and after a restart, the session surviving both; a refused request
//! cannot be replayed to succeed later.

use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;

use crate::harness::Daemon;

use super::{build, expect_txn, now_ms, send_referer, setup, url, Setup, QUERY};

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

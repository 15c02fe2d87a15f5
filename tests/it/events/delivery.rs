use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cardswitch::client::{Client, Session};
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::events::{verify, SIGNATURE_HEADER};
use cardswitch::protocol::message::InnerForm;
use cardswitch::store::events::Webhook;
use zeroize::Zeroizing;

use super::receiver::{Received, Receiver};
use crate::harness::{Daemon, Fixture};

/// Events whose first attempts were made: behind the deliverer's cursor
/// (migration 0023).
const SENT: &str = "SELECT count(*) FROM events e, events_cursor c WHERE e.xid IS NULL OR (e.xid, e.event_id) <= (c.xid, c.event_id)";
const UNSENT: &str = "SELECT count(*) FROM events e, events_cursor c WHERE e.xid IS NOT NULL AND (e.xid, e.event_id) > (c.xid, c.event_id)";

const SECRET: &str = "whsec-test-0123456789";

/// A store S1 with till T1, the `std` level and manager `boss`.
async fn shop(fx: &Fixture) -> String {
    let pw = fx.terminal("T1", "S1").await;
    let c = fx.client().await;
    let s = cardswitch::keys::load_secrets(&fx.config.keys_dir, &c)
        .await
        .unwrap();
    cardswitch::store::operators::add_level(&c, &s.row_keys, "std", 1.into(), 1.into())
        .await
        .unwrap();
    cardswitch::store::operators::add_operator(
        &c,
        &s.hash_key,
        &s.row_keys,
        "S1",
        "boss",
        "manager",
        Some("8642"),
    )
    .await
    .unwrap();
    pw
}

async fn webhook(fx: &Fixture, name: &str, url: &str, ops: Option<&[&str]>, phone: bool) {
    let w = Webhook {
        name: name.into(),
        url: url.into(),
        ops: ops.map(|o| o.iter().map(|s| s.to_string()).collect()),
        store_id: None,
        include_phone: phone,
        status: "active".into(),
        pending: 0,
        delivered: 0,
        failed: 0,
    };
    cardswitch::keys::webhooks::add(&fx.config, fx.pool(), &w, Zeroizing::new(SECRET.into()))
        .await
        .unwrap();
}

fn quick(fx: &Fixture, delays_s: Vec<u64>) -> cardswitch::config::Config {
    let mut config = fx.config.clone();
    config.events.poll_ms = 20;
    config.events.timeout_ms = 300;
    config.events.retry_delays_s = delays_s;
    config
}

async fn login(d: &Daemon, fx: &Fixture, pw: &str) -> (Client, Session) {
    let c = Client::new(&format!("http://{}", d.addr));
    let s = c.handshake("T1", pw, &fx.root).await.unwrap();
    (c, s)
}

async fn send(c: &Client, s: &Session, f: &str) {
    let r = c
        .txn(s, &InnerForm::parse(f.as_bytes()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.errno, Errno::Ok, "{f}");
}

async fn trade(c: &Client, s: &Session) {
    for (i, card) in ["EVT00001", "EVT00002"].iter().enumerate() {
        send(
            c,
            s,
            &format!(
                "op=register&order_no=R{i}&attr1={card}&attr2=name%3DLi%26phone%3D1380000123{i}%26level%3Dstd"
            ),
        )
        .await;
    }
    send(c, s, "op=topup&amount=50&order_no=P1&attr1=EVT00001").await;
    send(c, s, "op=debit&amount=12.5&order_no=D1&attr1=EVT00001").await;
    send(
        c,
        s,
        "op=transfer&amount=10&order_no=X1&operator=boss&attr1=EVT00001&attr2=mpin%3D8642%26to%3DEVT00002",
    )
    .await;
}

fn signed(r: &Received) -> bool {
    let now = chrono::Utc::now().timestamp_millis();
    verify(
        SECRET.as_bytes(),
        &r.headers[&SIGNATURE_HEADER.to_lowercase()],
        &r.body,
        now,
    )
}

async fn count(fx: &Fixture, sql: &str) -> i64 {
    fx.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn every_posting_row_is_one_signed_event() {
    let fx = Fixture::new().await;
    let pw = shop(&fx).await;
    let all = Receiver::start().await;
    let sms = Receiver::start().await;
    webhook(&fx, "all", &all.url(), None, false).await;
    webhook(&fx, "sms", &sms.url(), Some(&["debit"]), true).await;
    let d = Daemon::start(quick(&fx, vec![1])).await;
    let (c, s) = login(&d, &fx, &pw).await;
    trade(&c, &s).await;
    // register ×2, topup, debit, transfer (two cards): six posting rows.
    let got = all.wait_for(6).await;
    assert_eq!(count(&fx, "SELECT count(*) FROM postings").await, 6);
    assert_eq!(count(&fx, "SELECT count(*) FROM events").await, 6);
    assert!(got.iter().all(signed), "every delivery signed");
    let events: Vec<serde_json::Value> = got.iter().map(Received::json).collect();
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 6, "one event per posting row");
    for (r, e) in got.iter().zip(&events) {
        assert_eq!(r.headers["cardswitch-event"], e["id"].as_str().unwrap());
        assert_eq!(r.headers["content-length"], r.body.len().to_string());
        assert_eq!(e["type"], "posting");
        assert!(e.get("phone").is_none(), "no phone unless asked for");
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("pin") && !text.contains("mpin"));
    }
    // card_seq orders each card's events: 1, 2, 3, …
    let mut seqs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in &events {
        let card = e["card"].as_str().unwrap().to_owned();
        seqs.entry(card)
            .or_default()
            .push(e["card_seq"].as_i64().unwrap());
    }
    for v in seqs.values_mut() {
        v.sort();
    }
    assert_eq!(seqs["EVT00001"], [1, 2, 3, 4]);
    assert_eq!(seqs["EVT00002"], [1, 2]);
    let debit = events.iter().find(|e| e["op"] == "debit").unwrap();
    assert_eq!(debit["amount"], "12.50");
    assert_eq!(debit["balance_delta"], "-12.50");
    assert_eq!(debit["balance"], "37.50");
    assert_eq!(debit["store"], "S1");
    assert_eq!(debit["terminal"], "T1");
    assert_eq!(debit["order_no"], "D1");
    let transfers: Vec<_> = events.iter().filter(|e| e["op"] == "transfer").collect();
    assert_eq!(transfers.len(), 2);
    assert!(transfers.iter().all(|e| e["to_card"] == "EVT00002"));
    // The SMS gateway's endpoint: debits only, with the phone.
    let texts = sms.wait_for(1).await;
    let t = texts[0].json();
    assert_eq!(t["op"], "debit");
    assert_eq!(t["phone"], "13800001230");
    assert_eq!(t["id"], debit["id"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sms.received().len(), 1);
    // First attempts that succeed leave no delivery rows: the events are sent.
    assert_eq!(count(&fx, SENT).await, 6);
    assert_eq!(count(&fx, "SELECT count(*) FROM deliveries").await, 0);
    let metrics = d.get("/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("cardswitch_events_delivered_total 7"),
        "{text}"
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_delivery_is_retried_then_failed_then_redelivered_on_demand() {
    let fx = Fixture::new().await;
    let pw = shop(&fx).await;
    let r = Receiver::start().await;
    r.answer_with(500);
    webhook(&fx, "crm", &r.url(), Some(&["register"]), false).await;
    // Two retries a second apart, then failed.
    let d = Daemon::start(quick(&fx, vec![1, 1])).await;
    let (c, s) = login(&d, &fx, &pw).await;
    send(
        &c,
        &s,
        "op=register&order_no=R1&attr1=EVT00009&attr2=name%3DLi%26phone%3D13800001234%26level%3Dstd",
    )
    .await;
    let tries = r.wait_for(3).await;
    let ids: BTreeSet<String> = tries.iter().map(|t| t.json()["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "the same event each time");
    let mut failed = 0;
    for _ in 0..100 {
        failed = count(
            &fx,
            "SELECT count(*) FROM deliveries WHERE status = 'failed'",
        )
        .await;
        if failed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.received().len(), 3, "no attempt after the schedule ends");
    r.answer_with(204);
    let n = cardswitch::store::events::retry(&fx.client().await, None)
        .await
        .unwrap();
    assert_eq!(n, 1);
    r.wait_for(4).await;
    for _ in 0..100 {
        if count(
            &fx,
            "SELECT count(*) FROM deliveries WHERE status = 'delivered'",
        )
        .await
            == 1
        {
            d.stop().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the retried delivery was not recorded");
}

#[tokio::test]
async fn a_daemon_killed_mid_delivery_loses_nothing_and_two_share_the_work() {
    let fx = Fixture::new().await;
    let pw = shop(&fx).await;
    let r = Receiver::start().await;
    r.answer_with(0); // the receiver hangs: the delivery is in flight
    webhook(&fx, "all", &r.url(), None, false).await;
    let config = {
        let mut c = quick(&fx, vec![1]);
        c.events.timeout_ms = 5_000;
        c
    };
    let a = Daemon::start(config.clone()).await;
    let (c, s) = login(&a, &fx, &pw).await;
    send(
        &c,
        &s,
        "op=register&order_no=R1&attr1=EVT00001&attr2=name%3DLi%26phone%3D13800001234%26level%3Dstd",
    )
    .await;
    r.wait_for(1).await;
    // Killed while the request is in flight: nothing recorded it.
    a.stop().await.unwrap();
    r.answer_with(200);
    let mut config = config;
    config.events.timeout_ms = 300;
    let b1 = Daemon::start(config.clone()).await;
    let b2 = Daemon::start(config).await;
    let (c, s) = login(&b1, &fx, &pw).await;
    for i in 0..20 {
        send(
            &c,
            &s,
            &format!("op=topup&amount=1&order_no=P{i}&attr1=EVT00001"),
        )
        .await;
    }
    // The killed daemon's row locks went with it: the event goes again,
    // at least once.
    let got = r.wait_for(22).await;
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for g in &got {
        *per_id
            .entry(g.json()["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 21, "every event delivered");
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        twice.len(),
        1,
        "only the killed delivery went twice: {twice:?}"
    );
    assert_eq!(count(&fx, UNSENT).await, 0);
    assert_eq!(count(&fx, "SELECT count(*) FROM deliveries").await, 0);
    b1.stop().await.unwrap();
    b2.stop().await.unwrap();
}

#[tokio::test]
async fn https_endpoints_are_verified_against_the_trusted_roots() {
    let fx = Fixture::new().await;
    let pw = shop(&fx).await;
    let tls = super::receiver::TestTls::new();
    let r = Receiver::start_tls(&tls).await;
    webhook(&fx, "crm", &r.tls_url(), Some(&["register"]), false).await;
    // A daemon that does not trust the receiver's CA sends nothing to it.
    let a = Daemon::start(quick(&fx, vec![1, 1, 1, 1, 1])).await;
    let (c, s) = login(&a, &fx, &pw).await;
    send(
        &c,
        &s,
        "op=register&order_no=R1&attr1=TLS00001&attr2=name%3DLi%26phone%3D13800001234%26level%3Dstd",
    )
    .await;
    let mut refused = 0;
    for _ in 0..100 {
        refused = count(
            &fx,
            "SELECT count(*) FROM deliveries WHERE status = 'pending' AND last_error ILIKE '%certificate%'",
        )
        .await;
        if refused == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refused, 1,
        "the unverified certificate is the recorded error"
    );
    assert!(r.received().is_empty());
    a.stop().await.unwrap();
    // Told to trust the chain's CA: the retry goes through, signed.
    let ca = crate::harness::temp_dir("cs-ca-").join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let mut config = quick(&fx, vec![1, 1, 1, 1, 1]);
    config.events.ca_file = Some(ca);
    let b = Daemon::start(config).await;
    let got = r.wait_for(1).await;
    assert!(signed(&got[0]));
    assert_eq!(got[0].json()["card"], "TLS00001");
    b.stop().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_that_hangs_does_not_stop_the_others() {
    let fx = Fixture::new().await;
    let pw = shop(&fx).await;
    let good = Receiver::start().await;
    let stuck = Receiver::start().await;
    stuck.answer_with(0);
    webhook(&fx, "good", &good.url(), Some(&["register"]), false).await;
    webhook(&fx, "stuck", &stuck.url(), Some(&["register"]), false).await;
    let mut config = quick(&fx, vec![60]);
    config.events.timeout_ms = 1_000;
    let d = Daemon::start(config).await;
    let (c, s) = login(&d, &fx, &pw).await;
    for i in 0..4 {
        send(
            &c,
            &s,
            &format!("op=register&order_no=R{i}&attr1=HANG000{i}&attr2=name%3DLi%26phone%3D13800001234%26level%3Dstd"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = good.wait_for(4).await;
    assert!(got.iter().all(signed));
    // The stuck endpoint's deliveries are all kept, to be retried.
    let mut kept = 0;
    for _ in 0..100 {
        kept = count(
            &fx,
            "SELECT count(*) FROM deliveries WHERE webhook = 'stuck' AND status = 'pending'",
        )
        .await;
        if kept == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kept, 4);
    assert_eq!(
        count(
            &fx,
            "SELECT count(*) FROM deliveries WHERE webhook = 'good'"
        )
        .await,
        0
    );
    d.stop().await.unwrap();
}

/// An event whose transaction commits after a later event's is not passed
/// over: the deliverer takes events only below the xid horizon (migration
/// 0023), so the cursor never moves past a transaction still running.
#[tokio::test]
async fn an_event_committed_late_is_not_passed_over() {
    let fx = Fixture::new().await;
    let pw = shop(&fx).await;
    let all = Receiver::start().await;
    webhook(&fx, "all", &all.url(), None, false).await;
    let d = Daemon::start(quick(&fx, vec![1])).await;
    let (c, s) = login(&d, &fx, &pw).await;
    let register = "op=register&order_no=R0&attr1=EVT00001&attr2=name%3DLi%26phone%3D13800001230%26level%3Dstd";
    send(&c, &s, register).await;
    all.wait_for(1).await;
    // A transaction writes an event and stays open: its event id is drawn
    // before the top-up's, which commits first.
    let mut late = fx.client().await;
    let tx = late.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO events (created_at, card_no, op, body)
         VALUES (now(), 'EVT00001', 'late', '{\"type\": \"posting\", \"op\": \"late\"}')",
        &[],
    )
    .await
    .unwrap();
    send(&c, &s, "op=topup&amount=5&order_no=P1&attr1=EVT00001").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(all.received().len(), 1, "nothing passes a running writer");
    tx.commit().await.unwrap();
    let ops: Vec<String> = all
        .wait_for(3)
        .await
        .iter()
        .map(|r| r.json()["op"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ops, ["register", "late", "topup"]);
    assert_eq!(count(&fx, UNSENT).await, 0);
    d.stop().await.unwrap();
}

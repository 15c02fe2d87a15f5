//! Family 5: races an attacker (or a flaky network) can start — many
//! tills spending one card at once, one request resent from several
//! connections, refunds of one debit racing each other, transfers crossing.
//! Money is neither made nor lost, and `verify` stays clean.

use std::sync::Arc;

use cardswitch::client::{Client, Session};
use cardswitch::protocol::errno::Errno;

use super::{world, World};

/// Sends each of `inners` at once (the client opens a connection for each
/// request in flight; one clock, so every `ts` is fresh); the errnos.
async fn at_once(w: &World, sessions: &[&Session], inners: Vec<String>) -> Vec<Errno> {
    let c = Arc::new(Client::new(&format!("http://{}", w.d.addr)));
    let mut tasks = Vec::new();
    for (i, inner) in inners.into_iter().enumerate() {
        let s = sessions[i % sessions.len()].clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let out = c.txn_raw_inner(&s, inner.as_bytes()).await.unwrap();
            assert!(out.mac_verified);
            out.errno
        }));
    }
    let mut errnos = Vec::new();
    for t in tasks {
        errnos.push(t.await.unwrap());
    }
    errnos
}

fn count(errnos: &[Errno], e: Errno) -> usize {
    errnos.iter().filter(|x| **x == e).count()
}

async fn balance(w: &World, card: &str) -> String {
    w.fx.client()
        .await
        .query_one(
            "SELECT balance::text FROM cards WHERE card_no = $1",
            &[&card],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn thirty_tills_spending_one_card() {
    let w = world().await;
    // CARD0002 holds 10.00: thirty debits of 1.00 from two tills at once.
    w.ok(&w.t1, "op=topup&amount=10&order_no=RACE-T&attr1=CARD0002")
        .await;
    let inners = (0..30)
        .map(|i| format!("op=debit&amount=1&order_no=RACE-{i}&attr1=CARD0002"))
        .collect();
    let errnos = at_once(&w, &[&w.t1, &w.t2], inners).await;
    assert_eq!(count(&errnos, Errno::Ok), 10, "{errnos:?}");
    assert_eq!(count(&errnos, Errno::InsufficientBalance), 20, "{errnos:?}");
    assert_eq!(balance(&w, "CARD0002").await, "0.00");
    w.assert_sound().await;
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn one_request_resent_from_eight_connections_posts_once() {
    let w = world().await;
    let inner = "op=debit&amount=7&order_no=RESENT-1&attr1=CARD0001".to_owned();
    let errnos = at_once(&w, &[&w.t1], vec![inner; 8]).await;
    assert!(errnos.iter().all(|e| *e == Errno::Ok), "{errnos:?}");
    assert_eq!(balance(&w, "CARD0001").await, "93.00");
    let n: i64 =
        w.fx.client()
            .await
            .query_one(
                "SELECT count(*) FROM postings WHERE order_no = 'RESENT-1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1, "posted once, the others answered as replays");
    w.assert_sound().await;
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn refunds_of_one_debit_racing() {
    let w = world().await;
    let boss = "operator=boss&attr2=mpin%3D8642";
    w.ok(&w.t1, "op=debit&amount=10&order_no=RD-1&attr1=CARD0001")
        .await;
    let inners = (0..10)
        .map(|i| format!("op=refund&amount=3&order_no=RD-R{i}&attr1=RD-1&{boss}"))
        .collect();
    let errnos = at_once(&w, &[&w.t1], inners).await;
    assert_eq!(count(&errnos, Errno::Ok), 3, "{errnos:?}");
    assert_eq!(count(&errnos, Errno::AlreadyReversed), 7, "{errnos:?}");
    assert_eq!(balance(&w, "CARD0001").await, "99.00");
    w.assert_sound().await;
    w.d.stop().await.unwrap();
}

#[tokio::test]
async fn transfers_crossing_each_other() {
    let w = world().await;
    let boss = "operator=boss&attr2=mpin%3D8642";
    w.ok(&w.t1, "op=topup&amount=100&order_no=X-T&attr1=CARD0002")
        .await;
    let inners = (0..20)
        .map(|i| {
            let (from, to) = if i % 2 == 0 {
                ("CARD0001", "CARD0002")
            } else {
                ("CARD0002", "CARD0001")
            };
            format!("op=transfer&amount=1&order_no=X-{i}&attr1={from}&{boss}%26to%3D{to}")
        })
        .collect();
    let errnos = at_once(&w, &[&w.t1, &w.t2], inners).await;
    // Card locks are taken in card-number order: no deadlock, all through.
    assert_eq!(count(&errnos, Errno::Ok), 20, "{errnos:?}");
    assert_eq!(balance(&w, "CARD0001").await, "100.00");
    assert_eq!(balance(&w, "CARD0002").await, "100.00");
    w.assert_sound().await;
    w.d.stop().await.unwrap();
}

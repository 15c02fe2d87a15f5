//! Floods from outside (issue 12): junk and wrong-password logins naming
//! the till, from other addresses, while the till logs in and transacts.
//! The till is neither refused nor slowed into its delay, health stays
//! green, nothing is written per junk request, and every refusal is on the
//! audit trail in its address's tally.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;

use crate::harness::{Daemon, Fixture};

use super::{build, expect_txn, send_referer, settle, url, QUERY};

/// Answers by HTTP status, of every task of a flood.
type Statuses = Arc<Mutex<BTreeMap<u16, i64>>>;

fn junk_flood(
    base: &str,
    stop: &Arc<AtomicBool>,
    seen: &Statuses,
) -> Vec<tokio::task::JoinHandle<()>> {
    let junk = Arc::new(Client::bound(base, "127.0.0.3".parse().unwrap()));
    (0..24)
        .map(|_| {
            let (junk, stop, seen) = (junk.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = junk.post_form("/v1/txn", "junk=1", &[]).await.unwrap();
                    *seen.lock().unwrap().entry(r.status).or_default() += 1;
                }
            })
        })
        .collect()
}

fn login_flood(
    base: &str,
    fx: &Fixture,
    stop: &Arc<AtomicBool>,
    seen: &Statuses,
) -> Vec<tokio::task::JoinHandle<()>> {
    let guesser = Arc::new(Client::bound(base, "127.0.0.4".parse().unwrap()));
    (0..4)
        .map(|_| {
            let (guesser, stop, seen) = (guesser.clone(), stop.clone(), seen.clone());
            let root = fx.root.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let day = guesser.hello("T1", &root, None).await.unwrap();
                    let e = guesser.login("T1", "a guess, long enough", &day).await;
                    let refused = e.unwrap_err();
                    let refused = refused
                        .downcast_ref::<cardswitch::client::Refused>()
                        .unwrap();
                    assert_eq!(refused.errno, Errno::LoginRefused);
                    *seen.lock().unwrap().entry(401).or_default() += 1;
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn floods_from_outside_leave_the_till_working_and_write_no_row_each() {
    let fx = Fixture::new().await;
    let password = fx.terminal("T1", "S1").await;
    fx.card("CARD0001", "12.50").await;
    let mut config = fx.config.clone();
    config.protocol.login_delay_max = Duration::from_millis(300);
    let d = Daemon::start(config).await;
    settle(&fx).await;
    let audit_before = fx.last_audit_id().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (junk, guesses) = (Statuses::default(), Statuses::default());
    let mut tasks = junk_flood(&url(&d), &stop, &junk);
    tasks.extend(login_flood(&url(&d), &fx, &stop, &guesses));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The till, from its own address: logs in (never refused, and its
    // login is not held in the guessers' delay) and transacts.
    let c = Client::new(&url(&d));
    for _ in 0..3 {
        let s = c.handshake("T1", &password, &fx.root).await.unwrap();
        for _ in 0..5 {
            let b = build(&s, c.clock.next(), QUERY);
            expect_txn(&s, &b, &send_referer(&c, &b).await, Errno::Ok);
            assert_eq!(d.get("/healthz").await.unwrap().status, 200);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let junk = std::mem::take(&mut *junk.lock().unwrap());
    let guesses = guesses.lock().unwrap()[&401];
    // Junk is 1001 (400), or 1009 (429) once over its address's rate.
    assert!(junk.keys().all(|s| *s == 400 || *s == 429), "{junk:?}");
    let sent: i64 = junk.values().sum();
    assert!(sent > 100 && guesses > 4, "{junk:?}, {guesses} guesses");
    // Not one audit row per request: until the minute ends, none at all
    // but the tallies of minutes already over.
    let so_far = fx.refusals_audited(audit_before).await;
    assert_eq!(so_far.own_rows, 0, "{so_far:?}");
    d.stop().await.unwrap();
    let audited = fx.refusals_audited(audit_before).await;
    assert_eq!(audited.own_rows, 0, "{audited:?}");
    assert_eq!(audited.tallied, sent + guesses, "{audited:?}");
}

//! Faults at scale (issue 12, item 6): clients on many terminals post
//! debits and top-ups through the protocol to a daemon in a child process
//! while the daemon is killed (-9) twice and PostgreSQL restarted once.
//! Each client behaves as proto-spec §8.3 says: no answer, an unMACed one,
//! 1005, 1006, 3002 or 3003 → resend with a new `ts` and the same
//! `order_no`; 1009 → wait, then the same; 1004 → log in again first. At the end: every acknowledged
//! posting is in the books exactly once, no posting that was not
//! acknowledged, every balance is its start plus what was acknowledged,
//! and `verify` is clean.
//!
//! The default suite runs 16 clients on 8 terminals for 24 s;
//! `CARDSWITCH_CRASH_SECS=150 CARDSWITCH_CRASH_CLIENTS=64
//! CARDSWITCH_CRASH_TERMINALS=16` is the full run (README, Testing).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cardswitch::bench::resend::{self, ClientLog, Load, Till};
use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;

use crate::harness;

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const CARDS: usize = 24;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The daemon under test, in a child process, restartable on its port.
struct DaemonProcess {
    port: u16,
    url: String,
    keys: std::path::PathBuf,
    proc: Option<Child>,
}

impl DaemonProcess {
    fn start(&mut self) {
        let proc = Command::new(BIN)
            .arg("--database-url")
            .arg(&self.url)
            .arg("--keys-dir")
            .arg(&self.keys)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(proc);
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(p.id().to_string())
                .status();
            let _ = p.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(p.id().to_string())
                .status();
            let _ = p.wait();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn healthy(port: u16) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..600 {
        let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        if matches!(harness::raw_request(addr, req).await, Ok(a) if a.status == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon did not come up");
}

/// Terminals C00…, their passwords, the level, and the root public key.
async fn provision(
    config: &cardswitch::config::Config,
    terminals: usize,
) -> (Vec<Till>, cardswitch::crypto::rsa::RsaPublic) {
    let ids: Vec<String> = (0..terminals).map(|t| format!("C{t:02}")).collect();
    let kinds: Vec<_> = ids
        .iter()
        .map(|id| (id.as_str(), cardswitch::ledger::TerminalKind::Pos))
        .collect();
    let (root, passwords) = harness::shop(config, &kinds).await;
    let tills = ids
        .into_iter()
        .zip(passwords)
        .map(|(terminal, password)| Till { terminal, password })
        .collect();
    (tills, root)
}

/// What the books say: postings per order of the clients, balances in cents.
struct Books {
    postings: HashMap<String, i64>,
    balances: HashMap<String, i64>,
}

async fn books(config: &cardswitch::config::Config) -> Books {
    let db = cardswitch::store::open(config).await.unwrap();
    let c = db.pool.get().await.unwrap();
    let postings = c
        .query(
            "SELECT order_no, count(*) FROM postings
              WHERE op IN ('debit', 'topup') AND order_no NOT LIKE 'SETUP-%' GROUP BY order_no",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    let balances = c
        .query("SELECT card_no, (balance * 100)::bigint FROM cards", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    let rk = cardswitch::keys::admin::row_keys(config, &c).await.unwrap();
    let v = cardswitch::store::verify::verify(&db.pool, &rk, Default::default())
        .await
        .unwrap();
    assert!(v.clean(), "verify after the faults: {:#?}", v.findings);
    drop(c);
    db.close().await.unwrap();
    Books { postings, balances }
}

#[tokio::test]
async fn killed_twice_and_the_database_restarted_nothing_is_lost_or_doubled() {
    let secs = setting("CARDSWITCH_CRASH_SECS", 24);
    let clients = setting("CARDSWITCH_CRASH_CLIENTS", 16) as usize;
    let terminals = setting("CARDSWITCH_CRASH_TERMINALS", 8) as usize;
    let cluster = harness::private_cluster();
    harness::create_database(&cluster, "cardswitch").await;
    let url = harness::url_for(&cluster, "cardswitch");
    let mut config = harness::config_for(&url);
    harness::ensure_keys(&mut config).await;
    let (pws, root) = provision(&config, terminals).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = DaemonProcess {
        port,
        url,
        keys: config.keys_dir.clone(),
        proc: None,
    };
    daemon.start();
    healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    // One client (one ts clock) per terminal, shared by its tills' tasks.
    let per_terminal: Vec<Arc<Client>> = (0..terminals)
        .map(|_| Arc::new(Client::new(&base)))
        .collect();
    let mut setup = ClientLog::default();
    let mut s = resend::login(&per_terminal[0], &root, &pws[0])
        .await
        .unwrap();
    for i in 0..CARDS {
        for inner in [
            format!("op=register&order_no=SETUP-R{i}&attr1=CRASH{i:03}&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd"),
            format!("op=topup&amount=1000&order_no=SETUP-T{i}&attr1=CRASH{i:03}"),
        ] {
            let posted = resend::until_answered(&per_terminal[0], &mut s, &pws[0], &root, &inner, &mut setup).await.unwrap();
            assert!(matches!(&posted, Ok(rows) if !resend::is_replay(rows)), "{inner}: {posted:?}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load {
        cards: Arc::new((0..CARDS).map(|i| format!("CRASH{i:03}")).collect()),
        prefix: "L".to_owned(),
        debit_percent: 70,
        stop: stop.clone(),
    });
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let till = pws[n % terminals].clone();
            let c = per_terminal[n % terminals].clone();
            tokio::spawn(resend::client(c, root.clone(), till, n, load.clone()))
        })
        .collect();
    let fifth = Duration::from_secs(secs) / 5;
    tokio::time::sleep(fifth).await;
    daemon.kill9();
    daemon.start();
    tokio::time::sleep(fifth).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop().unwrap();
        c.start().unwrap();
    })
    .await
    .unwrap();
    tokio::time::sleep(fifth).await;
    daemon.kill9();
    daemon.start();
    tokio::time::sleep(fifth * 2).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.unwrap().unwrap());
    }
    healthy(port).await;
    daemon.stop();

    let b = books(&config).await;
    let mut expected: HashMap<String, i64> = (0..CARDS)
        .map(|i| (format!("CRASH{i:03}"), 100_000))
        .collect();
    let (mut acked, mut replays, mut resends, mut refused) = (0, 0, 0, 0);
    for log in &logs {
        resends += log.resends;
        refused += log.refused.len();
        for a in &log.acked {
            let order = &a.order;
            acked += 1;
            replays += u64::from(a.replayed);
            assert_eq!(
                b.postings.get(order),
                Some(&1),
                "acknowledged {order} is not in the books once"
            );
            *expected.get_mut(&a.card).unwrap() += a.cents;
        }
        for (order, e) in &log.refused {
            // The cards run low under the debits; nothing else is refused.
            assert_eq!(*e, Errno::InsufficientBalance, "{order}");
            assert_eq!(b.postings.get(order), None, "refused {order} was posted");
        }
    }
    assert_eq!(
        b.postings.len(),
        acked,
        "postings that no client was told of"
    );
    for (card, cents) in &expected {
        assert_eq!(
            b.balances.get(card),
            Some(cents),
            "{card}: money made or lost"
        );
    }
    eprintln!(
        "crash run: {clients} clients on {terminals} terminals for {secs} s, daemon killed twice, \
         PostgreSQL restarted once: {acked} postings acknowledged ({replays} as replays), \
         {refused} refused, {resends} resends; 0 lost, 0 doubled, balances equal their postings, verify clean"
    );
    assert!(
        acked > 100,
        "too little got through to mean anything: {acked}"
    );
}

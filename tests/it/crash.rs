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

use cardswitch::client::{Client, Session};
use cardswitch::protocol::errno::Errno;
use rand::{Rng, SeedableRng};

use crate::harness;

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const CARDS: usize = 24;
/// Attempts at one order before the test gives up on the daemon.
const MAX_ATTEMPTS: u32 = 2_000;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One acknowledged posting, as its client recorded it.
struct Acked {
    card: String,
    /// Its effect on the balance, in cents.
    cents: i64,
    replayed: bool,
}

#[derive(Default)]
struct ClientLog {
    acked: HashMap<String, Acked>,
    /// Orders refused for good, with their errno.
    refused: Vec<(String, Errno)>,
    resends: u64,
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

/// Logs in, through whatever the faults are doing.
async fn login(
    c: &Client,
    root: &cardswitch::crypto::rsa::RsaPublic,
    t: &str,
    pw: &str,
) -> Session {
    for _ in 0..MAX_ATTEMPTS {
        if let Ok(s) = c.handshake(t, pw, root).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{t} could not log in");
}

/// Sends one order until it has a definitive answer (proto-spec §8.3):
/// `Ok(replayed)` when posted, `Err(errno)` when refused.
async fn until_answered(
    c: &Client,
    s: &mut Session,
    relogin: impl Fn() -> (String, String),
    root: &cardswitch::crypto::rsa::RsaPublic,
    inner: &str,
    log: &mut ClientLog,
) -> Result<bool, Errno> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            log.resends += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = match c.txn_raw_inner(s, inner.as_bytes()).await {
            Ok(o) => o,
            Err(_) => continue,
        };
        match out.errno {
            Errno::KeyUnknown => {
                let (t, pw) = relogin();
                *s = login(c, root, &t, &pw).await;
            }
            _ if !out.mac_verified => {}
            Errno::Ok => return Ok(out.rows.0[0].get("replayed") == Some("1")),
            Errno::TsOutsideWindow | Errno::TsUsed | Errno::Unavailable | Errno::Internal => {}
            // Over the terminal's rate: wait (less than Retry-After asks,
            // to keep the test short), then resend.
            Errno::Throttled => tokio::time::sleep(Duration::from_millis(200)).await,
            e => return Err(e),
        }
    }
    panic!("no answer for {inner} after {MAX_ATTEMPTS} attempts");
}

/// One client: random debits and top-ups on the shared cards until `stop`;
/// the order in flight when it comes is finished first.
async fn client(
    c: Arc<Client>,
    root: cardswitch::crypto::rsa::RsaPublic,
    terminal: String,
    pw: String,
    n: usize,
    stop: Arc<AtomicBool>,
) -> ClientLog {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut s = login(&c, &root, &terminal, &pw).await;
    let mut log = ClientLog::default();
    let relogin = || (terminal.clone(), pw.clone());
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let card = format!("CRASH{:03}", rng.gen_range(0..CARDS));
        let cents: i64 = rng.gen_range(1..=500);
        let debit = rng.gen_bool(0.7);
        let order = format!("{terminal}-{n}-{i}");
        let op = if debit { "debit" } else { "topup" };
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let inner = format!("op={op}&amount={amount}&order_no={order}&attr1={card}");
        match until_answered(&c, &mut s, relogin, &root, &inner, &mut log).await {
            Ok(replayed) => {
                let cents = if debit { -cents } else { cents };
                log.acked.insert(
                    order,
                    Acked {
                        card,
                        cents,
                        replayed,
                    },
                );
            }
            Err(e) => log.refused.push((order, e)),
        }
    }
    log
}

/// Terminals C00…, their passwords, the level, and the root public key.
async fn provision(
    config: &cardswitch::config::Config,
    terminals: usize,
) -> (Vec<(String, String)>, cardswitch::crypto::rsa::RsaPublic) {
    use cardswitch::keys::admin;
    let db = cardswitch::store::open(config).await.unwrap();
    admin::add_store(config, &db.pool, "S1", "Crash shop")
        .await
        .unwrap();
    let mut pws = Vec::new();
    for t in 0..terminals {
        let id = format!("C{t:02}");
        let pw = admin::add_terminal(
            config,
            &db.pool,
            &id,
            "S1",
            cardswitch::ledger::TerminalKind::Pos,
            None,
        )
        .await
        .unwrap();
        pws.push((id, pw.to_string()));
    }
    let c = db.pool.get().await.unwrap();
    let rk = admin::row_keys(config, &c).await.unwrap();
    cardswitch::store::operators::add_level(&c, &rk, "std", 1.into(), 0.into())
        .await
        .unwrap();
    let root = admin::root_public(&db.pool).await.unwrap();
    drop(c);
    db.close().await.unwrap();
    (pws, root)
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
    let mut s = login(&per_terminal[0], &root, &pws[0].0, &pws[0].1).await;
    let relogin = || pws[0].clone();
    for i in 0..CARDS {
        for inner in [
            format!("op=register&order_no=SETUP-R{i}&attr1=CRASH{i:03}&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd"),
            format!("op=topup&amount=1000&order_no=SETUP-T{i}&attr1=CRASH{i:03}"),
        ] {
            let posted = until_answered(&per_terminal[0], &mut s, relogin, &root, &inner, &mut setup).await;
            assert_eq!(posted, Ok(false), "{inner}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let (t, pw) = pws[n % terminals].clone();
            let c = per_terminal[n % terminals].clone();
            tokio::spawn(client(c, root.clone(), t, pw, n, stop.clone()))
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
        logs.push(t.await.unwrap());
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
        for (order, a) in &log.acked {
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

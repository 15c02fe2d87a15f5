//! Group commit (issue 14) through a real daemon: concurrent debits from
//! several terminals share transactions, and every card's balance still
//! moves by exactly what was acknowledged; a batch holding a txn that must
//! fail (a tampered card, 3001) is rolled back and its other txns post
//! alone, each once.

use std::sync::Arc;

use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;

use crate::harness::{Daemon, Fixture};

const TERMINALS: usize = 8;
const CARDS: usize = 4;
const DEBITS_EACH: usize = 30;

fn card(i: usize) -> String {
    format!("GC{i:04}")
}

/// A shop of `TERMINALS` terminals and `CARDS` cards of 100.00, and a
/// daemon that waits long enough (5 ms) for batches to form on a busy CI
/// machine.
async fn shop() -> (Fixture, Daemon, Vec<String>) {
    let fx = Fixture::new().await;
    let mut passwords = Vec::new();
    for t in 0..TERMINALS {
        passwords.push(fx.terminal(&format!("G{t}"), "S1").await);
    }
    for i in 0..CARDS {
        fx.card(&card(i), "100.00").await;
    }
    let mut config = fx.config.clone();
    config.db.batch_max = 16;
    config.db.batch_wait_us = 5_000;
    config.db.batch_workers = 2;
    let d = Daemon::start(config).await;
    (fx, d, passwords)
}

/// `/metrics` as text.
async fn scrape(d: &Daemon) -> String {
    String::from_utf8(d.get("/metrics").await.unwrap().body).unwrap()
}

/// The value of the series `key` (its name and labels) in `text`; 0 when
/// it is not there yet.
fn value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// The metric's count of transactions and of those that held one txn.
async fn commits(d: &Daemon) -> (u64, u64) {
    let text = scrape(d).await;
    (
        value(&text, "cardswitch_txn_batch_size_count"),
        value(&text, "cardswitch_txn_batch_size_bucket{le=\"1.0\"}"),
    )
}

async fn rolled_back(d: &Daemon) -> u64 {
    value(&scrape(d).await, "cardswitch_txn_batches_rolled_back_total")
}

async fn balance(fx: &Fixture, card_no: &str) -> String {
    fx.client()
        .await
        .query_one(
            "SELECT balance::text FROM cards WHERE card_no = $1",
            &[&card_no],
        )
        .await
        .unwrap()
        .get(0)
}

async fn postings(fx: &Fixture, card_no: &str) -> i64 {
    fx.client()
        .await
        .query_one(
            "SELECT count(*) FROM postings WHERE card_no = $1 AND op = 'debit'",
            &[&card_no],
        )
        .await
        .unwrap()
        .get(0)
}

/// Terminal `t` debits 1.00 from card `t % CARDS`, `DEBITS_EACH` times:
/// two terminals share each card, so batches meet cards they must defer.
async fn till(client: Arc<Client>, t: usize, password: String, root: Arc<Fixture>) -> usize {
    let s = client
        .handshake(&format!("G{t}"), &password, &root.root)
        .await
        .unwrap();
    let mut ok = 0;
    for n in 0..DEBITS_EACH {
        let inner = format!(
            "op=debit&amount=1.00&order_no=G{t}-{n}&attr1={}",
            card(t % CARDS)
        );
        let r = client.txn_raw_inner(&s, inner.as_bytes()).await.unwrap();
        assert_eq!(r.errno, Errno::Ok, "debit {n} of terminal {t}");
        ok += 1;
    }
    ok
}

/// Every terminal's till at once, each on its own client; what each
/// posted, by terminal.
async fn run_tills<F, Fut>(
    fx: &Arc<Fixture>,
    d: &Daemon,
    passwords: Vec<String>,
    till: F,
) -> Vec<usize>
where
    F: Fn(Arc<Client>, usize, String, Arc<Fixture>) -> Fut,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    let url = super::url(d);
    let tills = passwords.into_iter().enumerate().map(|(t, pw)| {
        let client = Arc::new(Client::new(&url));
        tokio::spawn(till(client, t, pw, fx.clone()))
    });
    futures_util::future::join_all(tills)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// Each card (shared by the terminals `t % CARDS`) holds one debit posting
/// per debit of 1.00 its terminals posted, and its balance moved by them.
async fn each_card_moved_by(fx: &Fixture, posted: &[usize]) {
    for i in 0..CARDS {
        let n: usize = (0..TERMINALS)
            .filter(|t| t % CARDS == i)
            .map(|t| posted[t])
            .sum();
        assert_eq!(
            postings(fx, &card(i)).await,
            n as i64,
            "card {i}: posted once each"
        );
        let want = format!("{}.00", 100 - n);
        assert_eq!(balance(fx, &card(i)).await, want, "card {i}: balance");
    }
}

#[tokio::test]
async fn concurrent_debits_share_commits_and_move_balances_by_what_was_acknowledged() {
    let (fx, d, passwords) = shop().await;
    let fx = Arc::new(fx);
    let acked = run_tills(&fx, &d, passwords, till).await;
    each_card_moved_by(&fx, &acked).await;
    let (all, alone) = commits(&d).await;
    assert!(
        all < (TERMINALS * DEBITS_EACH) as u64 && alone < all,
        "no transaction held more than one txn: {all} commits, {alone} of one txn"
    );
    // Nothing here fails a batch: one rolled back would mean the batch's
    // own path broke and its txns posted alone.
    assert_eq!(rolled_back(&d).await, 0, "batches rolled back");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_with_a_tampered_card_rolls_back_and_its_other_txns_post_alone() {
    let (fx, d, passwords) = shop().await;
    // The last card's balance changed by SQL: its MAC no longer matches.
    fx.client()
        .await
        .execute(
            "UPDATE cards SET balance = 999 WHERE card_no = $1",
            &[&card(CARDS - 1)],
        )
        .await
        .unwrap();
    let url = super::url(&d);
    let mut sessions = Vec::new();
    for (t, pw) in passwords.iter().enumerate().take(CARDS) {
        let c = Client::new(&url);
        let s = c.handshake(&format!("G{t}"), pw, &fx.root).await.unwrap();
        sessions.push((c, s));
    }
    // Rounds of one debit per card at once, until one batch held the
    // tampered card with another (a batch forms only when they overlap).
    let mut rounds = 0;
    while rolled_back(&d).await == 0 {
        assert!(rounds < 30, "no batch met the tampered card in 30 rounds");
        let debits = sessions.iter().enumerate().map(|(i, (c, s))| async move {
            let inner = format!(
                "op=debit&amount=1.00&order_no=R{rounds}-{i}&attr1={}",
                card(i)
            );
            c.txn_raw_inner(s, inner.as_bytes()).await.unwrap().errno
        });
        let errnos = futures_util::future::join_all(debits).await;
        let want: Vec<Errno> = (0..CARDS)
            .map(|i| {
                if i == CARDS - 1 {
                    Errno::Tampered
                } else {
                    Errno::Ok
                }
            })
            .collect();
        assert_eq!(errnos, want, "round {rounds}");
        rounds += 1;
    }
    for i in 0..CARDS - 1 {
        assert_eq!(postings(&fx, &card(i)).await, rounds as i64, "card {i}");
        let want = format!("{}.00", 100 - rounds);
        assert_eq!(balance(&fx, &card(i)).await, want, "card {i}");
    }
    assert_eq!(postings(&fx, &card(CARDS - 1)).await, 0);
    assert_eq!(balance(&fx, &card(CARDS - 1)).await, "999.00");
    d.stop().await.unwrap();
}

/// Terminal `t`, on card `t % CARDS`, round after round: a debit, the same
/// debit again (a resend: its stored answer, marked replayed), its order
/// number with another amount (2006), and a balance query (a claim of
/// another shape, without an order). Returns the debits posted.
async fn resending_till(
    client: Arc<Client>,
    t: usize,
    password: String,
    root: Arc<Fixture>,
) -> usize {
    let s = client
        .handshake(&format!("G{t}"), &password, &root.root)
        .await
        .unwrap();
    let c = card(t % CARDS);
    for n in 0..DEBITS_EACH / 3 {
        let debit = format!("op=debit&amount=1.00&order_no=P{t}-{n}&attr1={c}");
        let first = client.txn_raw_inner(&s, debit.as_bytes()).await.unwrap();
        assert_eq!(first.errno, Errno::Ok, "debit {n} of terminal {t}");
        let again = client.txn_raw_inner(&s, debit.as_bytes()).await.unwrap();
        assert_eq!(again.errno, Errno::Ok, "resend {n} of terminal {t}");
        let (a, b) = (&first.rows.0[0], &again.rows.0[0]);
        assert_eq!(
            (a.get("replayed"), b.get("replayed")),
            (Some("0"), Some("1"))
        );
        assert_eq!(
            a.get("balance"),
            b.get("balance"),
            "resend {n}: same answer"
        );
        let other = format!("op=debit&amount=2.00&order_no=P{t}-{n}&attr1={c}");
        let reused = client.txn_raw_inner(&s, other.as_bytes()).await.unwrap();
        assert_eq!(
            reused.errno,
            Errno::OrderReused,
            "reuse {n} of terminal {t}"
        );
        let query = format!("op=query&attr1={c}");
        let q = client.txn_raw_inner(&s, query.as_bytes()).await.unwrap();
        assert_eq!(q.errno, Errno::Ok, "query {n} of terminal {t}");
    }
    DEBITS_EACH / 3
}

#[tokio::test]
async fn resends_reused_order_numbers_and_queries_in_batches_post_nothing_twice() {
    let (fx, d, passwords) = shop().await;
    let fx = Arc::new(fx);
    let posted = run_tills(&fx, &d, passwords, resending_till).await;
    each_card_moved_by(&fx, &posted).await;
    let (all, alone) = commits(&d).await;
    assert!(
        alone < all,
        "no transaction held more than one txn: {all} commits, {alone} of one txn"
    );
    d.stop().await.unwrap();
}

//! The ledger under load and under a crash: 32 tasks posting a random mix of
//! every posting op against 20 cards (holds and count-card visits among
//! them, some expiring mid-run), then the books checked; and a posting whose database
//! connection is killed half-way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ledger_support::*;

const CARDS: usize = 20;
const TASKS: usize = 32;

fn card(i: usize) -> String {
    format!("LOAD{i:04}")
}

/// Seconds the load runs: `CARDSWITCH_STRESS_SECS`, 20 by default.
fn duration() -> Duration {
    let secs = std::env::var("CARDSWITCH_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(20.0);
    Duration::from_secs_f64(secs)
}

#[derive(Default)]
struct Tally {
    /// Successful posting answers that were not replays.
    posted: u64,
    replays: u64,
    by_errno: HashMap<u16, u64>,
    /// Order numbers of this task's successful debits and other postings.
    debits: Vec<String>,
    others: Vec<String>,
    /// This task's holds placed, not yet captured or voided by it.
    holds: Vec<String>,
    sent: HashMap<String, (Req, String)>,
}

fn cents(rng: &mut StdRng, max: i64) -> String {
    let c = rng.gen_range(1..=max);
    format!("{}.{:02}", c / 100, c % 100)
}

/// Time passing (lots aged by the test) stands in for what a real clock
/// does without writing: it must not land between a request's claim and
/// its write, so requests hold this shared, the clock exclusively.
type Clock = Arc<tokio::sync::RwLock<()>>;

async fn sent(
    l: &Ledger,
    clock: &Clock,
    terminal: &str,
    r: &Req,
) -> cardswitch::error::Result<cardswitch::protocol::xml::Rows> {
    let _running = clock.read().await;
    l.send_from(terminal, r).await
}

async fn worker(l: Arc<Ledger>, task: usize, stop: Arc<AtomicBool>, clock: Clock) -> Tally {
    let mut rng = StdRng::seed_from_u64(task as u64 * 7919 + 1);
    let mut t = Tally::default();
    let mut n = 0u64;
    let terminal = if task % 2 == 0 { "T1" } else { "T2" };
    let mut own_card: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let order = format!("k{task}-{n}");
        let a = card(rng.gen_range(0..CARDS));
        let roll = rng.gen_range(0..100);
        let r = match roll {
            0..=4 => req("hold", &a)
                .amount(&cents(&mut rng, 3000))
                .order(&order)
                .a2("expires", "60"),
            5..=8 if !t.holds.is_empty() => {
                let h = t.holds.swap_remove(rng.gen_range(0..t.holds.len()));
                // A capture may ask more than the sale (2010), as a till's might.
                if rng.gen_bool(0.7) {
                    req("capture", &h)
                        .amount(&cents(&mut rng, 3000))
                        .order(&order)
                } else {
                    req("void", &h).order(&order)
                }
            }
            9..=12 => {
                // Visits of two services: bought (some for a day, which the
                // clock then ages), used, and reversed as `others`.
                let service = if rng.gen_bool(0.5) { "swim" } else { "gym" };
                if rng.gen_bool(0.4) {
                    let mut r = req("visits_add", &a)
                        .amount(&cents(&mut rng, 500))
                        .order(&order)
                        .a2("service", service)
                        .a2("count", &rng.gen_range(1..=5).to_string());
                    if rng.gen_bool(0.5) {
                        r = r.a2("days", "1");
                    }
                    if rng.gen_bool(0.3) {
                        r = r.a2("tender", "cash");
                    }
                    r
                } else {
                    req("visit", &a)
                        .order(&order)
                        .a2("service", service)
                        .a2("count", &rng.gen_range(1..=2).to_string())
                }
            }
            13..=24 => {
                let mut r = req("debit", &a)
                    .amount(&cents(&mut rng, 3000))
                    .order(&order);
                match rng.gen_range(0..10) {
                    0..=2 => r = r.a2("tender", "cash"),
                    // A cash leg may pass the charge (2010), as a till's might.
                    3..=4 => {
                        r = r.a2("tender", "split").a2("cash", &cents(&mut rng, 1500));
                    }
                    _ => {}
                }
                r
            }
            25..=39 => req("topup", &a)
                .amount(&cents(&mut rng, 5000))
                .order(&order),
            40..=47 => {
                let delta = rng.gen_range(-40i64..=60);
                let delta = if delta == 0 { 1 } else { delta };
                req("points", &a)
                    .order(&order)
                    .a2("delta", &delta.to_string())
                    .a2("reason", "load")
            }
            48..=54 => req("redeem", &a)
                .order(&order)
                .a2("cost", &rng.gen_range(1..40).to_string())
                .a2("gift", "load"),
            55..=66 => {
                let b = card((rng.gen_range(1..CARDS) + a[4..].parse::<usize>().unwrap()) % CARDS);
                req("transfer", &a)
                    .amount(&cents(&mut rng, 2000))
                    .order(&order)
                    .mgr()
                    .a2("to", &b)
            }
            67..=72 if !t.others.is_empty() || !t.debits.is_empty() => {
                let pool = if rng.gen_bool(0.5) && !t.debits.is_empty() {
                    &t.debits
                } else if !t.others.is_empty() {
                    &t.others
                } else {
                    &t.debits
                };
                let orig = pool[rng.gen_range(0..pool.len())].clone();
                req("reverse", &orig).order(&order).mgr()
            }
            73..=78 if !t.debits.is_empty() => {
                let orig = t.debits[rng.gen_range(0..t.debits.len())].clone();
                req("refund", &orig)
                    .amount(&cents(&mut rng, 1500))
                    .order(&order)
                    .mgr()
            }
            79..=82 => {
                let (op1, op2) = if rng.gen_bool(0.5) {
                    ("lock", "unlock")
                } else {
                    ("lost", "found")
                };
                // The pair is posted back to back, so other tasks meet the
                // status for a moment only.
                let first = req(op1, &a).order(&order).mgr();
                record(&mut t, &first, sent(&l, &clock, terminal, &first).await);
                let o2 = format!("{order}b");
                req(op2, &a).order(&o2).mgr()
            }
            83..=86 => {
                // A card of this task's own: registered, replaced, closed.
                match own_card.take() {
                    None => {
                        let no = format!("OWN{task:03}N{n}");
                        own_card = Some(no.clone());
                        req("register", &no)
                            .order(&order)
                            .a2("name", "load")
                            .a2("phone", "13800001234")
                            .a2("level", "gold")
                    }
                    Some(no) if rng.gen_bool(0.5) => {
                        let new = format!("OWN{task:03}N{n}");
                        own_card = Some(new.clone());
                        req("replace", &no).order(&order).mgr().a2("new", &new)
                    }
                    Some(no) => req("close", &no).order(&order).mgr(),
                }
            }
            87..=92 if !t.sent.is_empty() => {
                // A resend of an earlier success: must replay, never post.
                let keys: Vec<&String> = t.sent.keys().collect();
                let k = keys[rng.gen_range(0..keys.len())].clone();
                let (r, txn) = t.sent[&k].clone();
                let res = sent(&l, &clock, terminal, &r).await;
                match res {
                    Ok(rows) => {
                        let row = &rows.0[0];
                        assert_eq!(row.get("replayed"), Some("1"), "{r:?}");
                        assert_eq!(row.get("txn_id"), Some(txn.as_str()), "{r:?}");
                        t.replays += 1;
                    }
                    Err(e) => panic!("replay of {r:?} failed: {e:?}"),
                }
                continue;
            }
            _ => {
                let mut r = req("topup", &a).amount("1").order(&order);
                if let Some(own) = &own_card {
                    r = req("topup", own).amount("5").order(&order);
                }
                r
            }
        };
        let res = sent(&l, &clock, terminal, &r).await;
        record(&mut t, &r, res);
    }
    t
}

fn record(t: &mut Tally, r: &Req, res: cardswitch::error::Result<cardswitch::protocol::xml::Rows>) {
    match res {
        Ok(rows) => {
            let row = &rows.0[0];
            assert_eq!(row.get("replayed"), Some("0"), "{r:?}");
            t.posted += 1;
            let order = row.get("order_no").unwrap().to_string();
            let op = row.get("op").unwrap();
            if matches!(op, "debit" | "capture") {
                t.debits.push(order.clone());
            } else if op == "hold" {
                t.holds.push(order.clone());
            } else if matches!(
                op,
                "topup" | "points" | "redeem" | "transfer" | "visits_add" | "visit"
            ) {
                t.others.push(order.clone());
            }
            if t.sent.len() < 200 {
                t.sent
                    .insert(order, (r.clone(), row.get("txn_id").unwrap().to_string()));
            }
        }
        Err(e) => {
            let code = e.errno().code();
            assert!(
                (2001..=2012).contains(&code) || matches!(code, 2014 | 2016 | 2017),
                "{r:?} surfaced {code}: {e:?}"
            );
            *t.by_errno.entry(code).or_default() += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_mix_keeps_the_books() {
    let l = Arc::new(setup_with(|c| c.ledger.points_expiry_months = Some(12)).await);
    for i in 0..CARDS {
        let level = if i % 2 == 0 { "std" } else { "gold" };
        l.card(&card(i), level, Some("500"), None).await;
    }
    // Gold cards have limits the load will meet (2016) now and then.
    let mut c = l.client().await;
    let tx = c.transaction().await.unwrap();
    let limits = cardswitch::integrity::LevelLimits {
        max_balance: Some(d("2000")),
        daily_debit_limit: Some(d("300")),
    };
    cardswitch::store::operators::set_level_limits(&tx, &l.env.row_keys, "gold", |_| limits)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drop(c);
    let orders_before = l
        .count("SELECT count(*) FROM orders WHERE answer IS NOT NULL")
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let time = Clock::default();
    for task in 0..TASKS {
        tasks.push(tokio::spawn(worker(
            l.clone(),
            task,
            stop.clone(),
            time.clone(),
        )));
    }
    // Time passes faster here: a few lots at a time expire between
    // requests, so the lazy expiry postings race with everything else.
    let clock = {
        let l = l.clone();
        let stop = stop.clone();
        let time = time.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                {
                    let _passing = time.write().await;
                    l.age_lots(
                        "SELECT lot_id FROM lots WHERE points_left > 0 ORDER BY random() LIMIT 3",
                        "1 second",
                    )
                    .await;
                    for h in l
                        .client()
                        .await
                        .query(
                            "SELECT order_no FROM orders WHERE op = 'hold' AND NOT reversed
                              ORDER BY random()
                              LIMIT CASE WHEN random() < 0.3 THEN 1 ELSE 0 END",
                            &[],
                        )
                        .await
                        .unwrap()
                    {
                        l.age_hold(h.get(0), 1_000).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(duration()).await;
    stop.store(true, Ordering::Relaxed);
    clock.await.unwrap();
    let mut posted = 0;
    let mut replays = 0;
    let mut errnos: HashMap<u16, u64> = HashMap::new();
    for t in tasks {
        let t = t.await.expect("worker panicked");
        posted += t.posted;
        replays += t.replays;
        for (k, v) in t.by_errno {
            *errnos.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "load: {posted} postings, {replays} replays, refusals {errnos:?} in {secs:.1} s ({:.0}/s)",
        (posted + replays) as f64 / secs
    );
    assert!(posted > 100, "the load did run");
    assert!(
        errnos.contains_key(&2016),
        "the gold cards' limits were met"
    );
    let expiries = l
        .count("SELECT count(*) FROM postings WHERE op = 'expire'")
        .await;
    eprintln!("load: {expiries} expiry postings");
    assert!(expiries > 0, "lots expired under the load");
    let ops = |op: &str| format!("SELECT count(*) FROM postings WHERE op = '{op}'");
    let (captures, released) = (
        l.count(&ops("capture")).await,
        l.count(&ops("hold_expire")).await,
    );
    eprintln!("load: {captures} captures, {released} expired-hold releases");
    assert!(
        captures > 0 && released > 0,
        "holds captured and expired under the load"
    );
    let (bought, used, lapsed) = (
        l.count(&ops("visits_add")).await,
        l.count(&ops("visit")).await,
        l.count(&ops("visits_expire")).await,
    );
    eprintln!("load: {bought} purchases of visits, {used} visits, {lapsed} lapsed lots zeroed");
    assert!(
        bought > 0 && used > 0 && lapsed > 0,
        "visits bought, used and expired under the load"
    );
    l.check_books().await;
    let orders = l
        .count("SELECT count(*) FROM orders WHERE answer IS NOT NULL")
        .await;
    assert_eq!(
        (orders - orders_before) as u64,
        posted,
        "one order per success"
    );
    let posted_orders = l
        .count(
            "SELECT count(*) FROM (SELECT DISTINCT terminal_id, order_no FROM postings
              WHERE order_no IS NOT NULL) x",
        )
        .await;
    assert_eq!(
        posted_orders, orders,
        "every success has its postings, no more"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE answer IS NULL")
            .await,
        0,
        "no claim left behind"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE balance < 0 OR points < 0")
            .await,
        0
    );
    // One event per posting row, however they raced.
    assert_eq!(
        l.count("SELECT count(*) FROM events").await,
        l.count("SELECT count(*) FROM postings").await,
        "one event per posting row"
    );
    // What a head office reads adds up to the postings: the liability to
    // their sum, each day's settlement to that day's.
    let lia = l.send_from("H1", &req("liability", "*")).await.unwrap();
    let c = l.client().await;
    let sum: rust_decimal::Decimal = c
        .query_one("SELECT coalesce(sum(balance_delta), 0) FROM postings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(d(lia.0[0].get("balance").unwrap()), sum);
    for r in c
        .query("SELECT DISTINCT business_day::text FROM postings", &[])
        .await
        .unwrap()
    {
        let day: String = r.get(0);
        let st = l.send_from("H1", &req("settlement", &day)).await.unwrap();
        let total: rust_decimal::Decimal =
            st.0.iter()
                .filter(|r| r.get("op") == Some("total"))
                .map(|r| d(r.get("balance_delta").unwrap()))
                .sum();
        let want: rust_decimal::Decimal = c
            .query_one(
                "SELECT sum(balance_delta) FROM postings WHERE business_day::text = $1",
                &[&day],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(total, want, "settlement of {day}");
    }
    // Each card's count toward its daily limit is what its debits,
    // purchases of visits and outgoing transfers took from its balance, less what reverses of them
    // gave back, plus what its holds keep and its captures took (when the
    // run stayed within one business day), and never past a limit.
    let days = l
        .count("SELECT count(DISTINCT business_day) FROM postings WHERE op <> 'register'")
        .await;
    let off = l
        .count(
            "SELECT count(*) FROM cards c WHERE coalesce(c.spent_today, 0) <> (
                 SELECT coalesce(sum(-p.balance_delta) FILTER (
                            WHERE p.op IN ('debit', 'transfer', 'visits_add')
                              AND p.balance_delta < 0), 0)
                        - coalesce(sum(p.balance_delta) FILTER (
                            WHERE p.op = 'reverse' AND p.balance_delta > 0
                              AND NOT EXISTS (SELECT 1 FROM orders o
                                   WHERE o.op = 'capture'
                                     AND o.terminal_id = p.detail->'original'->>'terminal'
                                     AND o.order_no = p.detail->'original'->>'order_no')), 0)
                        + coalesce(sum(p.charged) FILTER (WHERE p.op = 'capture'), 0)
                        + coalesce((SELECT sum(o.charged) FROM orders o
                                     WHERE o.card_no = c.card_no AND o.op = 'hold'
                                       AND NOT o.reversed), 0)
                   FROM postings p WHERE p.card_no = c.card_no)
               -- a replacement card carries its old card's count
               AND NOT EXISTS (SELECT 1 FROM postings p
                                WHERE p.card_no = c.card_no AND p.op = 'replace')",
        )
        .await;
    if days == 1 {
        assert_eq!(off, 0, "cards whose daily count is not their postings'");
    }
    assert_eq!(
        l.count(
            "SELECT count(*) FROM cards c JOIN members m USING (member_id)
              WHERE m.level = 'gold' AND c.spent_today > 300"
        )
        .await,
        0
    );
    // Refunds never past the charge (the CHECK holds it too).
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE refunded > charged")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connection_leaves_nothing() {
    let l = Arc::new(setup().await);
    l.card("CRASH001", "std", Some("100"), None).await;
    let seen_before = l.count("SELECT count(*) FROM seen_ts").await;
    // A third connection holds a lock every posting's write statement needs,
    // so the posting stops after its claim and card lock, mid-transaction.
    let blocker = l.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE postings IN SHARE MODE")
        .await
        .unwrap();
    let debit = req("debit", "CRASH001").amount("10").order("CR1");
    let posting = {
        let l = l.clone();
        let debit = debit.clone();
        tokio::spawn(async move { l.send(&debit).await })
    };
    let killer = l.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        let row = killer
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'
                    AND query LIKE '%jsonb_to_recordset%'",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            break r.get(0);
        }
        assert!(Instant::now() < deadline, "the posting never blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The posting holds its claim and the card lock right now.
    assert!(killer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get::<_, bool>(0));
    let res = posting.await.unwrap();
    assert_eq!(errno_of(&res), 3002, "{res:?}");
    blocker.batch_execute("ROLLBACK").await.unwrap();
    // Let the pool notice the dead connection before the checks borrow one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(blocker);
    drop(killer);
    // Nothing of it is left: no posting, no order, no lot, no ts, same balance.
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE order_no = 'CR1'")
            .await,
        0
    );
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'CR1'")
            .await,
        0
    );
    assert_eq!(l.count("SELECT count(*) FROM seen_ts").await, seen_before);
    assert_eq!(l.card_row("CRASH001").await.balance, d("100"));
    assert_eq!(l.card_row("CRASH001").await.points, 0);
    // The terminal resends with a new ts and the same order_no: posted once.
    let r = l.ok(&debit).await;
    assert_eq!(r.get("replayed"), Some("0"));
    assert_eq!(r.get("balance"), Some("90.00"));
    let again = l.ok(&debit).await;
    assert_eq!(again.get("replayed"), Some("1"));
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE order_no = 'CR1'")
            .await,
        1
    );
    assert_eq!(l.card_row("CRASH001").await.balance, d("90"));
    l.check_books().await;
}

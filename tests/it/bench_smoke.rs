//! A few seconds of `cardswitch bench` through its real code path (a child
//! daemon from the built binary, real HTTP, pgbench on the test cluster),
//! with tiny numbers. It asserts only that the run completes without an
//! error and ends with the `ratio=` line: never a timing.

use std::time::Duration;

use cardswitch::bench::{self, load::Mix, BenchOptions};

use crate::harness::{temp_dir, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_completes_and_prints_a_ratio() {
    let fx = Fixture::new().await;
    let opts = BenchOptions {
        terminals: 3,
        cards: 50,
        clients: 2,
        duration: Duration::from_secs(2),
        warmup: Duration::from_secs(1),
        runs: vec![Mix::Debit, Mix::Mixed],
        sweep_clients: vec![1, 3],
        pgbench_scale: 1,
        daemon_exe: Some(env!("CARGO_BIN_EXE_cardswitch").into()),
        idle_connections: 20,
        work_dir: temp_dir("cs-bench-"),
        ..BenchOptions::default()
    };
    let report = bench::run(&fx.config, &opts).await.expect("bench runs");
    let text = report.render();
    assert_eq!(report.error_count(), 0, "{text}");
    assert!(report.runs.iter().all(|r| r.ok > 0), "{text}");
    assert_eq!(report.setup.cards_registered, 50, "{text}");
    assert_eq!(report.login.failed, 0);
    assert!(
        report.pgbench.as_ref().is_some_and(|p| p.tps > 0.0),
        "{text}"
    );
    assert_eq!(report.idle.as_ref().map(|i| i.opened), Some(20), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("ratio=") && last != "ratio=n/a", "{text}");
    let json = &text[..text.rfind("ratio=").unwrap()];
    let v: serde_json::Value = serde_json::from_str(json).expect("the summary is JSON");
    assert!(v["runs"][0]["latency_ms"]["p99"].is_number());
    // The sweep: a debit run per client count, after the runs.
    let swept: Vec<(usize, bool)> = report.sweep.iter().map(|r| (r.clients, r.ok > 0)).collect();
    assert_eq!(swept, [(1, true), (3, true)], "{text}");
    assert_eq!(report.runs[0].clients, 2, "the main runs keep --clients");
}

/// `--seed-cards`: 200 cards seeded in bulk after 10 registered ones; the
/// debit run draws from all 210, and `verify` finds every seeded row (card,
/// member, register and topup postings) exactly as the ledger writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_cards_verify_clean_and_take_debits() {
    use cardswitch::keys::admin;
    use cardswitch::store::verify::{self, Options};
    let fx = Fixture::new().await;
    let opts = BenchOptions {
        terminals: 2,
        cards: 10,
        seed_cards: 200,
        clients: 2,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        runs: vec![Mix::Debit],
        pgbench: false,
        daemon_exe: Some(env!("CARGO_BIN_EXE_cardswitch").into()),
        work_dir: temp_dir("cs-bench-seed-"),
        ..BenchOptions::default()
    };
    let report = bench::run(&fx.config, &opts).await.expect("bench runs");
    let text = report.render();
    assert_eq!(report.error_count(), 0, "{text}");
    assert!(report.runs[0].ok > 0, "{text}");
    assert_eq!(report.setup.cards_registered, 10, "{text}");
    assert_eq!(report.setup.seed.as_ref().map(|s| s.cards), Some(200));
    let c = fx.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM cards WHERE card_no LIKE 'BC%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 210);
    // Debits reached seeded cards (indexes 10..210), not only registered ones.
    let seeded_debits: i64 = c
        .query_one(
            "SELECT count(*) FROM postings WHERE op = 'debit' AND card_no >= 'BC0000000010'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(seeded_debits > 0, "{text}");
    let rk = admin::row_keys(&fx.config, &c).await.unwrap();
    let v = verify::verify(fx.pool(), &rk, Options::default())
        .await
        .unwrap();
    assert!(v.clean(), "{:#?}", v.findings);
    assert_eq!(v.rows.get("cards"), Some(&210));
    // Seeding again skips the cards that exist.
    let again = bench::run(&fx.config, &opts)
        .await
        .expect("bench runs again");
    assert_eq!(again.setup.seed.as_ref().map(|s| s.cards), Some(0));
    assert_eq!(again.setup.cards_registered, 0);
}

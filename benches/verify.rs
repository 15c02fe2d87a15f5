//! `cargo bench --bench verify`: the speed of `cardswitch verify` (rows/s)
//! over N postings (CARDSWITCH_VERIFY_POSTINGS, default 1,000,000 under
//! `cargo bench`, 2,000 as a smoke run under `cargo test`; 100 per card) in
//! a throw-away embedded PostgreSQL cluster.
//!
//! The postings are written in bulk rather than through the daemon (a
//! million requests would take longer than the scan being measured), but
//! with exactly the rows a top-up writes through the real path: the member
//! and card rows, and per top-up one postings row, with the same MACs (each
//! posting chained to the card's previous one), `last_mac`, `chain_len` and
//! sealed copy, all built by `cardswitch::integrity` as the ledger builds
//! them. `orders` rows (which verify does not read) are left out. The data
//! set is checked clean by the measured run itself.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use rust_decimal::Decimal;

use cardswitch::config::{Config, FileConfig, Overrides};
use cardswitch::crypto::seal::MasterKey;
use cardswitch::integrity::{member_image, CardValues, PostingValues};
use cardswitch::store::embedded::Cluster;
use cardswitch::store::verify::{verify, Options};

const PER_CARD: i64 = 100;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, as a smoke run on a small data set.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: i64 = std::env::var("CARDSWITCH_VERIFY_POSTINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 2_000 });
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::new(dir.path())?.without_fsync();
    cluster.ensure_running()?;
    let r = rt.block_on(run(&cluster, dir.path(), n));
    let _ = cluster.stop();
    r
}

async fn run(cluster: &Cluster, dir: &std::path::Path, n: i64) -> anyhow::Result<()> {
    let (admin, conn) = cluster
        .pg_config("postgres")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    admin.batch_execute("CREATE DATABASE verify_bench").await?;
    let url = format!(
        "host={} port=5432 user={} dbname=verify_bench",
        cluster.socket_dir().display(),
        cardswitch::store::embedded::SUPERUSER
    );
    let mut config = Config::merge(
        FileConfig::default(),
        Overrides {
            database_url: Some(url),
            ..Default::default()
        },
    );
    config.db.pool_size = 4;
    config.db.connect_timeout = Duration::from_secs(10);
    config.keys_dir = dir.join("keys");
    let db = cardswitch::store::open(&config).await?;
    let master = MasterKey::generate();
    cardswitch::keys::write_master(&config.keys_dir, &master)?;
    let c = db.pool.get().await?;
    cardswitch::keys::create_hash_key(&c, &master).await?;
    let keys = cardswitch::keys::load_row_keys(&c, &master).await?;
    c.batch_execute("INSERT INTO stores (store_id, name) VALUES ('S1', 'bench')")
        .await?;
    cardswitch::store::operators::add_level(&c, &keys, "std", 1.into(), 1.into()).await?;
    cardswitch::store::terminals::add_terminal_without_password(
        &c,
        &keys,
        "T1",
        "S1",
        cardswitch::ledger::TerminalKind::Pos,
    )
    .await?;

    let cards = (n + PER_CARD - 1) / PER_CARD;
    eprintln!("writing {cards} cards with {PER_CARD} postings each ...");
    let t0 = Instant::now();
    let start = Utc::now() - TimeDelta::days(1);
    let day = start.date_naive().to_string();
    let batch_cards = 100;
    let mut txn_id = 0i64;
    let mut done = 0i64;
    while done < cards {
        let upto = (done + batch_cards).min(cards);
        let (mut m_id, mut m_mac) = (vec![], vec![]);
        let (mut c_no, mut c_member, mut c_bal, mut c_mac, mut c_sealed, mut c_last, mut c_len) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut p_txn, mut p_card, mut p_order, mut p_delta, mut p_bal, mut p_at, mut p_mac) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut p_pos = vec![];
        for i in done..upto {
            let member_id = i + 1;
            let card_no = format!("B{i:09}");
            m_id.push(member_id);
            m_mac.push(keys.mac(
                &member_image(member_id, "Bench", "13800000000", None, None, "std"),
                None,
            ));
            let mut balance = Decimal::ZERO;
            let mut head: Option<Vec<u8>> = None;
            for k in 0..PER_CARD {
                txn_id += 1;
                let delta = Decimal::new(100 + (i * 7 + k * 13) % 9_900, 2);
                balance += delta;
                let at = start + TimeDelta::milliseconds(txn_id);
                let order = format!("B{txn_id}");
                let v = PostingValues {
                    card_no: card_no.clone(),
                    txn_id,
                    terminal_id: "T1".into(),
                    order_no: Some(order.clone()),
                    op: "topup".into(),
                    balance_delta: delta,
                    points_delta: 0,
                    balance,
                    points: 0,
                    amount: delta,
                    discount: Decimal::ZERO,
                    charged: delta,
                    business_day: day.clone(),
                    posted_at_ms: at.timestamp_millis(),
                    chain_pos: Some(k + 1),
                    visits_delta: None,
                };
                let mac = keys.mac(&v.image(), head.as_deref());
                p_txn.push(txn_id);
                p_card.push(card_no.clone());
                p_order.push(order);
                p_delta.push(delta);
                p_bal.push(balance);
                p_at.push(at);
                p_mac.push(mac.clone());
                p_pos.push(k + 1);
                head = Some(mac);
            }
            let cv = CardValues {
                card_no: card_no.clone(),
                member_id,
                status: "active".into(),
                balance,
                points: 0,
                pin_hash: None,
                pin_salt: None,
                pin_fail_count: 0,
                chain_len: PER_CARD,
                last_mac: head.clone(),
                // As a card from before migration 0019: no renewal stored.
                renewed_at_ms: None,
                spent: None,
                held: None,
                visits: None,
            };
            let img = cv.image();
            c_no.push(card_no);
            c_member.push(member_id);
            c_bal.push(balance);
            c_mac.push(keys.mac(&img, None));
            c_sealed.push(keys.seal(&img));
            c_last.push(head.unwrap_or_default());
            c_len.push(PER_CARD);
        }
        let kid = keys.current_id();
        c.execute(
            "INSERT INTO members (member_id, name, phone, level, row_mac, mac_key_id)
             SELECT id, 'Bench', '13800000000', 'std', mac, $3
               FROM unnest($1::bigint[], $2::bytea[]) AS x(id, mac)",
            &[&m_id, &m_mac, &kid],
        )
        .await?;
        c.execute(
            "INSERT INTO cards (card_no, member_id, balance, row_mac, mac_key_id, sealed,
                    last_mac, chain_len, store_id)
             SELECT no, m, b, mac, $8, s, l, n, (SELECT store_id FROM terminals
                                                  WHERE terminal_id = 'T1')
               FROM unnest($1::text[], $2::bigint[], $3::numeric[], $4::bytea[], $5::bytea[],
                           $6::bytea[], $7::bigint[]) AS x(no, m, b, mac, s, l, n)",
            &[
                &c_no, &c_member, &c_bal, &c_mac, &c_sealed, &c_last, &c_len, &kid,
            ],
        )
        .await?;
        c.execute(
            "INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta,
                    points_delta, balance, points, amount, discount, charged, business_day,
                    posted_at, detail, row_mac, mac_key_id, chain_pos)
             SELECT t, no, 'T1', o, 'topup', d, 0, b, 0, d, 0, d, $8::date, at,
                    '{\"tender\": \"balance\"}', mac, $9, pos
               FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],
                           $6::timestamptz[], $7::bytea[], $10::bigint[])
                    WITH ORDINALITY AS x(t, no, o, d, b, at, mac, pos, ord)
              ORDER BY ord",
            &[
                &p_txn,
                &p_card,
                &p_order,
                &p_delta,
                &p_bal,
                &p_at,
                &p_mac,
                &start.date_naive(),
                &kid,
                &p_pos,
            ],
        )
        .await?;
        done = upto;
    }
    c.batch_execute(
        "SELECT setval('members_member_id_seq', (SELECT max(member_id) FROM members)); ANALYZE",
    )
    .await?;
    drop(c);
    eprintln!(
        "written in {:.1} s; verifying ...",
        t0.elapsed().as_secs_f64()
    );

    let report = verify(
        &db.pool,
        &keys,
        Options {
            repair: false,
            progress: true,
        },
    )
    .await?;
    let rows = report.total_rows();
    println!(
        "verify: {} postings, {rows} rows in {:.2} s = {:.0} rows/s ({} findings)",
        report.rows.get("postings").copied().unwrap_or(0),
        report.seconds,
        rows as f64 / report.seconds,
        report.findings.len()
    );
    anyhow::ensure!(
        report.clean(),
        "bench data not clean: {:?}",
        &report.findings[..report.findings.len().min(5)]
    );
    db.close().await?;
    Ok(())
}

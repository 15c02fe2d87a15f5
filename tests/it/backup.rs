//! The restore drill (issue 13, item 4), on an embedded cluster that
//! archives its WAL: postings, a base backup (`cardswitch db backup`), more
//! postings, a moment T, more postings; the backup directory copied to
//! "another host"; then the disk is lost (the cluster and the keys dir
//! deleted). On a new data dir, the keys come back from their own copy,
//! kept apart, and `cardswitch db restore --to T` brings the database back:
//! `verify` is clean with the restored keys, every card's balance is what
//! it was at T, and no posting after T is there.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cardswitch::client::{Client, Session};
use cardswitch::protocol::errno::Errno;
use cardswitch::store::embedded::Cluster;

use crate::harness::{self, Daemon};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const CARDS: usize = 4;

/// Balances by card, and how many postings the books hold.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    balances: BTreeMap<String, String>,
    postings: i64,
}

async fn books(cluster: &Cluster) -> Books {
    let c = harness::connect(cluster, "cardswitch").await;
    let balances = c
        .query("SELECT card_no, balance::text FROM cards", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let postings = c
        .query_one("SELECT count(*) FROM postings", &[])
        .await
        .unwrap()
        .get(0);
    Books { balances, postings }
}

/// `n` debits and top-ups spread over the cards, orders named `{tag}-i`.
async fn post(c: &Client, s: &Session, tag: &str, n: usize) {
    for i in 0..n {
        let card = format!("BK{:03}", i % CARDS);
        let op = if i % 3 == 0 { "topup" } else { "debit" };
        let inner = format!(
            "op={op}&amount={}.{:02}&order_no={tag}-{i}&attr1={card}",
            1 + i,
            i * 7 % 100
        );
        let out = c.txn_raw_inner(s, inner.as_bytes()).await.unwrap();
        assert_eq!(out.errno, Errno::Ok, "{inner}");
    }
}

fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "cardswitch {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Waits until every WAL segment written so far is in the archive.
async fn archive_everything(cluster: &Cluster) {
    let c = harness::connect(cluster, "cardswitch").await;
    let last: String = c
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..300 {
        let archived: Option<String> = c
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await
            .unwrap()
            .get(0);
        if archived.as_deref() >= Some(last.as_str()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{last} was not archived");
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn restored_to_a_moment_the_books_are_as_they_were_then() {
    let data_dir = harness::temp_dir("cs-bk-");
    let cluster = Cluster::new(&data_dir)
        .unwrap()
        .without_fsync()
        .with_archive();
    cluster.ensure_running().unwrap();
    harness::create_database(&cluster, "cardswitch").await;
    let mut config = harness::config_for(&harness::url_for(&cluster, "cardswitch"));
    harness::ensure_keys(&mut config).await;
    let (root, passwords) =
        harness::shop(&config, &[("BK1", cardswitch::ledger::TerminalKind::Pos)]).await;
    let d = Daemon::start(config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let s = c.handshake("BK1", &passwords[0], &root).await.unwrap();
    for i in 0..CARDS {
        let register = format!("op=register&order_no=R{i}&attr1=BK{i:03}&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd");
        assert_eq!(
            c.txn_raw_inner(&s, register.as_bytes())
                .await
                .unwrap()
                .errno,
            Errno::Ok
        );
        let topup = format!("op=topup&amount=100&order_no=T{i}&attr1=BK{i:03}");
        assert_eq!(
            c.txn_raw_inner(&s, topup.as_bytes()).await.unwrap().errno,
            Errno::Ok
        );
    }
    post(&c, &s, "A", 12).await;
    let said = cli(&data_dir, &["db", "backup"]);
    assert!(said.contains("base backup"), "{said}");
    post(&c, &s, "B", 12).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moment = chrono::Utc::now();
    let at_moment = books(&cluster).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    post(&c, &s, "C", 12).await;
    let at_end = books(&cluster).await;
    assert_ne!(
        at_end, at_moment,
        "the postings after the moment moved money"
    );
    archive_everything(&cluster).await;
    d.stop().await.unwrap();

    // The backup on another host, the keys' own copy apart from it; then
    // the disk is lost.
    let backup_host = harness::temp_dir("cs-bk-host-").join("backup");
    copy_dir(&cluster.backup_dir(), &backup_host);
    let key_backup = harness::temp_dir("cs-bk-keys-");
    copy_dir(&config.keys_dir, &key_backup.join("keys"));
    cluster.stop().unwrap();
    std::fs::remove_dir_all(&config.keys_dir).unwrap();
    std::fs::remove_dir_all(data_dir.join("pg")).unwrap();
    std::fs::remove_dir_all(data_dir.join("backup")).unwrap();

    // A new machine: a fresh data dir, the keys back from their copy.
    let new_dir = harness::temp_dir("cs-bk-new-");
    config.keys_dir = harness::temp_dir("cs-bk-newkeys-").join("keys");
    copy_dir(&key_backup.join("keys"), &config.keys_dir);
    let to = moment.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let from = backup_host.to_str().unwrap();
    let said = cli(&new_dir, &["db", "restore", from, "--to", &to]);
    assert!(said.contains("restored from base backup"), "{said}");
    let cluster = Cluster::new(&new_dir).unwrap().without_fsync();
    cluster.start().unwrap();
    config.database_url = Some(harness::url_for(&cluster, "cardswitch"));
    assert_eq!(books(&cluster).await, at_moment, "the books at {to}");
    let db = cardswitch::store::open(&config).await.unwrap();
    let c = db.pool.get().await.unwrap();
    let rk = cardswitch::keys::admin::row_keys(&config, &c)
        .await
        .unwrap();
    let v = cardswitch::store::verify::verify(&db.pool, &rk, Default::default())
        .await
        .unwrap();
    assert!(v.clean(), "verify after the restore: {:#?}", v.findings);
    drop(c);
    db.close().await.unwrap();
    cluster.stop().unwrap();
}

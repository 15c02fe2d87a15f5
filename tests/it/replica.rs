//! Reads that may lag (issue 13, item 3), against a real streaming standby
//! of a private cluster: the office's liability is answered from the
//! replica while it is within `db.replica_max_lag`, and from the primary
//! once it falls further behind (its replay paused under new postings).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use cardswitch::client::{Client, Session};
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::message::InnerForm;
use cardswitch::store::embedded::Cluster;

use crate::harness::{self, Daemon};

/// A hot standby of `primary` streaming from it, in a directory of its own.
fn standby_of(primary: &Cluster) -> Cluster {
    let dir = harness::temp_dir("cs-sb-");
    let standby = Cluster::new(&dir).unwrap().without_fsync();
    std::fs::create_dir_all(standby.socket_dir()).unwrap();
    let owner = postgres_ids();
    for d in [standby.root().to_path_buf(), standby.socket_dir()] {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
        }
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        std::fs::set_permissions(&d, mode).unwrap();
    }
    let mut cmd = Command::new(primary.bin_dir().join("pg_basebackup"));
    cmd.arg("-h")
        .arg(primary.socket_dir())
        .args([
            "-p",
            "5432",
            "-U",
            cardswitch::store::embedded::SUPERUSER,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-D",
        ])
        .arg(standby.pgdata())
        .current_dir("/");
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    standby.start().unwrap();
    standby
}

/// As root the clusters belong to `postgres` (store::embedded).
fn postgres_ids() -> Option<(u32, u32)> {
    if running_as_root() {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .arg(flag)
                .arg("postgres")
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        Some((id("-u"), id("-g")))
    } else {
        None
    }
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

async fn sql(cluster: &Cluster, q: &str) {
    let c = harness::connect(cluster, "cardswitch").await;
    c.batch_execute(q).await.unwrap();
}

async fn liability(c: &Client, hq: &Session) -> String {
    let form = InnerForm::parse(b"op=liability&attr1=*").unwrap();
    let a = c.txn(hq, &form).await.unwrap();
    assert_eq!(a.errno, Errno::Ok);
    a.rows.0[0].get("balance").unwrap().to_owned()
}

async fn topup(c: &Client, till: &Session, order: &str) {
    let inner = format!("op=topup&amount=10&order_no={order}&attr1=RP001");
    assert_eq!(
        c.txn_raw_inner(till, inner.as_bytes()).await.unwrap().errno,
        Errno::Ok
    );
}

/// Until the standby has replayed everything the primary wrote.
async fn caught_up(primary: &Cluster, standby: &Cluster) {
    let want: String = harness::connect(primary, "cardswitch")
        .await
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..200 {
        let c = harness::connect(standby, "cardswitch").await;
        let done: bool = c
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&want],
            )
            .await
            .unwrap()
            .get(0);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the standby did not catch up");
}

#[tokio::test]
async fn lagging_reads_go_to_the_replica_until_it_is_too_far_behind() {
    let primary = harness::private_cluster();
    harness::create_database(&primary, "cardswitch").await;
    let mut config = harness::config_for(&harness::url_for(&primary, "cardswitch"));
    harness::ensure_keys(&mut config).await;
    use cardswitch::ledger::TerminalKind;
    let kinds = [("RT1", TerminalKind::Pos), ("RHQ", TerminalKind::Office)];
    let (root, pws) = harness::shop(&config, &kinds).await;
    let (till_pw, hq_pw) = (&pws[0], &pws[1]);
    let standby = standby_of(&primary);
    config.read_database_url = Some(harness::url_for(&standby, "cardswitch"));
    // The lag is the age of the last commit replayed, counted from the
    // topup before the pause: a bound of 2 s was met by the time the
    // liability read came, once, under the whole suite's load.
    config.db.replica_max_lag = Duration::from_secs(5);
    let d = Daemon::start(config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let till = c.handshake("RT1", till_pw, &root).await.unwrap();
    let hq = c.handshake("RHQ", hq_pw, &root).await.unwrap();
    let register =
        "op=register&order_no=R1&attr1=RP001&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd";
    assert_eq!(
        c.txn_raw_inner(&till, register.as_bytes())
            .await
            .unwrap()
            .errno,
        Errno::Ok
    );
    topup(&c, &till, "T1").await;
    caught_up(&primary, &standby).await;
    assert_eq!(liability(&c, &hq).await, "10.00");

    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    topup(&c, &till, "T2").await;
    // Behind by one commit, and by less than the bound: the replica answers.
    assert_eq!(liability(&c, &hq).await, "10.00", "read from the replica");
    tokio::time::sleep(Duration::from_millis(5_600)).await;
    // Over the bound: the primary answers.
    assert_eq!(liability(&c, &hq).await, "20.00", "read from the primary");
    sql(&standby, "SELECT pg_wal_replay_resume()").await;
    caught_up(&primary, &standby).await;
    assert_eq!(liability(&c, &hq).await, "20.00");
    d.stop().await.unwrap();
    standby.stop().unwrap();
}

//! The foundation: embedded cluster life cycle, migrations, health, limits,
//! graceful shutdown.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cardswitch::store::{self, migrate};
use tokio::io::AsyncWriteExt;

use crate::harness::{self, Daemon};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

fn cli(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("CARDSWITCH_DATABASE_URL")
        .output()
        .expect("run cardswitch")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(port: u16) -> bool {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..400 {
        let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        if let Ok(a) = harness::raw_request(addr, req).await {
            if a.status == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// SIGTERM to the child, then its exit status and how long it took.
fn terminate(child: &mut std::process::Child) -> (std::process::ExitStatus, Duration) {
    let t = Instant::now();
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("daemon did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_serve(data_dir: &std::path::Path, port: u16) -> std::process::Child {
    // The daemon refuses to start without keys: make them first, as run.sh does.
    let keys = data_dir.with_file_name("keys");
    if !keys.join("master.key").exists() {
        let init = Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--keys-dir")
            .arg(&keys)
            .args(["keys", "init"])
            .env_remove("CARDSWITCH_DATABASE_URL")
            .output()
            .expect("run keys init");
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--keys-dir")
        .arg(&keys)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("CARDSWITCH_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve")
}

#[tokio::test]
async fn embedded_cluster_is_created_reused_and_stopped_by_whoever_started_it() {
    let dir = harness::temp_dir("cs-emb-");
    let data = dir.join("var");

    let status = cli(&data, &["db", "status"]);
    assert_eq!(status.status.code(), Some(3));
    assert!(
        stdout(&status).starts_with("not initialized"),
        "{}",
        stdout(&status)
    );

    // `serve` creates and starts the cluster, and stops it on SIGTERM.
    let port = free_port();
    let mut child = spawn_serve(&data, port);
    assert!(wait_healthy(port).await, "daemon never became healthy");
    assert!(stdout(&cli(&data, &["db", "status"])).starts_with("running"));
    let (exit, took) = terminate(&mut child);
    assert!(exit.success(), "serve exited with {exit}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(stdout(&cli(&data, &["db", "status"])).starts_with("stopped"));

    // Started by `db start`, the cluster is reused by `serve` and left running.
    assert!(stdout(&cli(&data, &["db", "start"])).starts_with("started"));
    assert!(stdout(&cli(&data, &["db", "start"])).starts_with("already running"));
    let port = free_port();
    let mut child = spawn_serve(&data, port);
    assert!(wait_healthy(port).await);
    let (exit, _) = terminate(&mut child);
    assert!(exit.success());
    assert!(stdout(&cli(&data, &["db", "status"])).starts_with("running"));

    let migrate = cli(&data, &["migrate"]);
    assert!(migrate.status.success());
    assert_eq!(
        stdout(&migrate).trim(),
        format!(
            "schema at version {}",
            migrate::MIGRATIONS.last().unwrap().0
        )
    );

    assert!(stdout(&cli(&data, &["db", "stop"])).starts_with("stopped"));
    assert!(stdout(&cli(&data, &["db", "stop"])).starts_with("not running"));
    let status = cli(&data, &["db", "status"]);
    assert_eq!(status.status.code(), Some(3));
}

#[tokio::test]
async fn migrations_run_twice_change_nothing() {
    let url = harness::fresh_database().await;
    let pool = store::make_pool(url.parse().unwrap(), 2, Duration::from_secs(5)).unwrap();
    let mut client = pool.get().await.unwrap();
    let first = migrate::run(&mut client).await.unwrap();
    assert_eq!(first.len(), migrate::MIGRATIONS.len());
    let before = schema(&client).await;
    assert!(before
        .iter()
        .any(|(t, c, _)| t == "cards" && c == "balance"));
    let second = migrate::run(&mut client).await.unwrap();
    assert!(second.is_empty());
    assert_eq!(schema(&client).await, before);
    let n: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, migrate::MIGRATIONS.len());
}

/// What every pooled connection plans with: generic plans, kept per
/// connection, and no JIT (a generic plan of the event outbox's read was
/// compiled at each call, 14 ms against its 0.3 ms of work).
#[tokio::test]
async fn pooled_connections_plan_generically_and_never_compile() {
    let url = harness::fresh_database().await;
    let pool = store::make_pool(url.parse().unwrap(), 2, Duration::from_secs(5)).unwrap();
    let client = pool.get().await.unwrap();
    let setting = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let jit = setting(client.query_one("SHOW jit", &[]).await.unwrap());
    let plans = setting(client.query_one("SHOW plan_cache_mode", &[]).await.unwrap());
    assert_eq!(jit, "off");
    assert_eq!(plans, "force_generic_plan");
}

#[tokio::test]
async fn healthz_follows_the_database_without_a_restart() {
    let cluster = harness::private_cluster();
    harness::create_database(&cluster, "cardswitch").await;
    let d = Daemon::start(harness::config_for(&harness::url_for(
        &cluster,
        "cardswitch",
    )))
    .await;
    assert_eq!(d.get("/healthz").await.unwrap().status, 200);

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .unwrap()
        .unwrap();
    let down = d.get("/healthz").await.unwrap();
    assert_eq!(down.status, 503);
    assert!(String::from_utf8_lossy(&down.body).contains("database unavailable"));

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start())
        .await
        .unwrap()
        .unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = d.get("/healthz").await.unwrap().status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "health did not come back");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn an_in_flight_request_finishes_during_graceful_shutdown() {
    let mut d = Daemon::start(harness::config_for(&harness::fresh_database().await)).await;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /v1/hello HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nterm")
        .await
        .unwrap();
    // Let the server start on the request before it is told to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.signal_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are no longer accepted...
    assert!(d.get("/healthz").await.is_err());
    // ...but the request in flight still gets its whole answer.
    s.write_all(b"inal=x").await.unwrap();
    let a = harness::read_answer(&mut s).await.unwrap();
    assert!(a.status > 0, "no answer: {a:?}");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn limits_methods_and_paths() {
    let d = Daemon::start(harness::config_for(&harness::fresh_database().await)).await;
    // Declared too large: refused before any body byte is sent.
    let a = harness::raw_request(
        d.addr,
        b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: 16385\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 413);
    // Chunked, no length given: refused once the bytes pass 16 KiB.
    let mut req =
        b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        req.extend_from_slice(b"1000\r\n");
        req.extend_from_slice(&[b'a'; 0x1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        harness::raw_request(d.addr, &req).await.unwrap().status,
        413
    );

    for path in ["/v1/hello", "/v1/login", "/v1/txn"] {
        let a = d.get(path).await.unwrap();
        assert_eq!(a.status, 405, "{path}");
        assert!(a.head.to_ascii_lowercase().contains("allow: post"));
    }
    assert_eq!(d.get("/nope").await.unwrap().status, 404);
    let metrics = d.get("/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("cardswitch_http_requests_total{path=\"v1_txn\",status=\"413\"} 2"),
        "{text}"
    );
    assert!(text.contains("cardswitch_db_pool_size"));
    d.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_client_cannot_hold_a_connection() {
    let mut config = harness::config_for(&harness::fresh_database().await);
    config.server.header_timeout = Duration::from_millis(300);
    config.server.body_timeout = Duration::from_millis(300);
    let d = Daemon::start(config).await;
    // Head never finished: the server closes the connection.
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /v1/txn HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    use tokio::io::AsyncReadExt;
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open");
    // Body never finished: 408.
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /v1/txn HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let a = harness::read_answer(&mut s).await.unwrap();
    assert_eq!(a.status, 408);
    d.stop().await.unwrap();
}

async fn schema(c: &tokio_postgres::Client) -> Vec<(String, String, String)> {
    c.query(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY 1, 2",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn once_only_values_survive_and_old_partitions_go() {
    use cardswitch::store::seen_ts;
    let pool = harness::migrated_pool().await;
    let mut client = pool.get().await.unwrap();
    let now = chrono::Utc::now();
    seen_ts::ensure_partitions(&mut client, now).await.unwrap();
    seen_ts::ensure_partitions(&mut client, now).await.unwrap();
    let ts = now.timestamp_millis();
    assert!(seen_ts::record(&client, "T1", ts).await.unwrap());
    assert!(!seen_ts::record(&client, "T1", ts).await.unwrap());
    assert!(seen_ts::record(&client, "T2", ts).await.unwrap());
    // Five days on, today's partition is past twice the window and goes.
    let later = now + chrono::TimeDelta::days(5);
    seen_ts::ensure_partitions(&mut client, later)
        .await
        .unwrap();
    let dropped = seen_ts::drop_expired(&mut client, later, Duration::from_secs(300))
        .await
        .unwrap();
    let today = format!("seen_ts_{}", now.format("%Y%m%d"));
    assert!(dropped.contains(&today), "{dropped:?}");
    let left: i64 = client
        .query_one("SELECT count(*) FROM seen_ts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // Yesterday relative to `later` is kept.
    let kept = format!(
        "seen_ts_{}",
        (later - chrono::TimeDelta::days(1)).format("%Y%m%d")
    );
    assert!(!dropped.contains(&kept));
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_a_slot() {
    let mut config = harness::config_for(&harness::fresh_database().await);
    config.server.max_connections = 2;
    config.server.header_timeout = Duration::from_secs(30);
    let d = Daemon::start(config).await;
    // Two idle connections, accepted in connect order (the backlog is
    // FIFO): both slots taken.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(d.addr).await.unwrap());
    }
    // A third connects (into the backlog) but is not served...
    let mut third = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early =
        tokio::time::timeout(Duration::from_millis(500), harness::read_answer(&mut third)).await;
    assert!(early.is_err(), "served past the limit: {early:?}");
    // ...until a held one ends.
    drop(held.pop());
    let a = harness::read_answer(&mut third).await.unwrap();
    assert_eq!(a.status, 200);
    d.stop().await.unwrap();
}

/// A write that reaches a read-only node (a replica behind a proxy during a
/// failover, or a primary restarting as a standby first) changed nothing
/// and may be resent: 3002, not 3003.
#[tokio::test]
async fn a_write_on_a_read_only_node_is_3002() {
    let fx = harness::Fixture::new().await;
    let c = fx.client().await;
    c.batch_execute("SET default_transaction_read_only = on")
        .await
        .unwrap();
    let e = c
        .execute("CREATE TABLE t_ro (x int)", &[])
        .await
        .expect_err("a read-only transaction refuses writes");
    assert_eq!(e.code().map(|c| c.code()), Some("25006"));
    let e = cardswitch::error::Error::from(e);
    assert_eq!(e.errno(), cardswitch::protocol::errno::Errno::Unavailable);
}

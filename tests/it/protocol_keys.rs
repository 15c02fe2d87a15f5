//! Key management and the CLI against running daemons: rotations keep the
//! service up, `cardswitch client` talks to `cardswitch serve`, and the
//! daemon refuses to start without keys.

use std::process::Command;
use std::time::Duration;

use cardswitch::client::Client;
use cardswitch::keys::admin;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::message::InnerForm;

use crate::harness::{self, Daemon, Fixture};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

fn query() -> InnerForm {
    InnerForm::parse(b"op=query&attr1=CARD0001").unwrap()
}

fn cli(fx: &Fixture, data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--database-url")
        .arg(fx.config.database_url.as_deref().unwrap())
        .arg("--keys-dir")
        .arg(&fx.config.keys_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn rotations_keep_the_service_up() {
    let fx = Fixture::new().await;
    let pw = fx.terminal("T1", "S1").await;
    fx.card("CARD0001", "5.00").await;
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let s = c.handshake("T1", &pw, &fx.root).await.unwrap();
    assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);

    // Master key: every secret re-sealed, the file replaced (0600), the
    // daemon keeps serving old sessions and new logins.
    let (old, new) = admin::rotate_master(&fx.config, fx.pool()).await.unwrap();
    assert_ne!(old, new);
    let m = cardswitch::keys::load_master(&fx.config.keys_dir).unwrap();
    assert_eq!(m.id(), new);
    assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);
    let s = c.handshake("T1", &pw, &fx.root).await.unwrap();
    assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);
    let sealed_old: i64 = fx
        .client()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM sealed_secrets WHERE master_key_id = $1)
                  + (SELECT count(*) FROM signer_keys WHERE master_key_id = $1)
                  + (SELECT count(*) FROM day_keys WHERE master_key_id = $1 AND status <> 'destroyed')",
            &[&old],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sealed_old, 0);

    // Signer: new day keys are signed by the new signer; clients verify both.
    let (signer, warnings) = admin::rotate_signer(&fx.config, fx.pool(), &[])
        .await
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let pw2 = fx.terminal("T2", "S1").await;
    let s2 = c.handshake("T2", &pw2, &fx.root).await.unwrap();
    assert_eq!(c.txn(&s2, &query()).await.unwrap().errno, Errno::Ok);
    let used: String = fx
        .client()
        .await
        .query_one(
            "SELECT signer_id FROM day_keys WHERE key_id = $1",
            &[&s2.key_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(used, signer);

    // Root: the old root keeps certifying during the overlap; the new one is current.
    let old_root = fx.root.clone();
    let (root_id, _) = admin::rotate_root(&fx.config, fx.pool()).await.unwrap();
    let new_root = admin::root_public(fx.pool()).await.unwrap();
    assert_eq!(new_root.short_id(), root_id);
    c.hello("T1", &new_root, None).await.unwrap();
    c.hello("T1", &old_root, Some(&old_root.short_id()))
        .await
        .unwrap();
    assert!(
        c.hello("T1", &old_root, None).await.is_err(),
        "current root is the new one"
    );
    // Once the overlap is over, the old root is refused (1004).
    fx.client()
        .await
        .execute(
            "UPDATE root_keys SET overlap_until = now() - interval '1 second'
              WHERE overlap_until IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let e = c
        .hello("T1", &old_root, Some(&old_root.short_id()))
        .await
        .unwrap_err();
    assert_eq!(
        e.downcast_ref::<cardswitch::client::Refused>()
            .unwrap()
            .errno,
        Errno::KeyUnknown
    );

    // Terminal rotation: old sessions end, a new day key for today.
    let key = admin::rotate_terminal(&fx.config, fx.pool(), "T1")
        .await
        .unwrap();
    assert_ne!(key, s.key_id);
    let mut refused = false;
    for _ in 0..50 {
        if c.txn(&s, &query()).await.unwrap().errno == Errno::KeyUnknown {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
    let s = c.handshake("T1", &pw, &new_root).await.unwrap();
    assert_eq!(s.key_id, key);

    // Pregeneration and status.
    let made = admin::pregen(&fx.config, fx.pool(), 3).await.unwrap();
    assert!(made >= 4, "{made}");
    let st = admin::status(&fx.config, fx.pool()).await.unwrap();
    assert_eq!(st.master_key_id.as_deref(), Some(new.as_str()));
    assert_eq!(st.roots.len(), 2);
    assert_eq!(st.signer.as_ref().unwrap().certified_by.len(), 2);
    assert!(st
        .terminals
        .iter()
        .any(|t| t.terminal == "T1" && t.open_sessions == 1));
    // init refuses to overwrite.
    assert!(admin::init(&fx.config, fx.pool(), None, None)
        .await
        .is_err());
    d.stop().await.unwrap();
}

#[tokio::test]
async fn the_cli_client_talks_to_cardswitch_serve() {
    let fx = Fixture::new().await;
    let dir = harness::temp_dir("cs-cli-");
    // Provisioning as the README says.
    let out = cli(&fx, &dir, &["store", "add", "S7", "--name", "Shop 7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &fx,
        &dir,
        &["terminal", "add", "P1", "--store", "S7", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pw = v["password"].as_str().unwrap().to_owned();
    assert!(pw.len() >= 22, "at least 128 bits");
    std::fs::write(dir.join("pw"), format!("{pw}\n")).unwrap();
    let out = cli(&fx, &dir, &["keys", "root-public"]);
    assert!(out.status.success());
    std::fs::write(dir.join("root.pem"), &out.stdout).unwrap();
    let out = cli(&fx, &dir, &["terminal", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("P1"));
    fx.card("CARD0001", "42.00").await;

    // The daemon as the README runs it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .arg("--database-url")
        .arg(fx.config.database_url.as_deref().unwrap())
        .arg("--keys-dir")
        .arg(&fx.config.keys_dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if let Ok(a) = harness::raw_request(
            format!("127.0.0.1:{port}").parse().unwrap(),
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        {
            if a.status == 200 {
                up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up);
    let client_args = |extra: &[&str]| {
        let mut v = vec![
            "client".to_owned(),
            "--url".into(),
            url.clone(),
            "--terminal".into(),
            "P1".into(),
            "--password-file".into(),
            dir.join("pw").display().to_string(),
            "--root-public".into(),
            dir.join("root.pem").display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    for round in 0..2 {
        let args = client_args(&["query", "--attr1", "CARD0001", "--json"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&fx, &dir, &args);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["errno"], 0);
        assert_eq!(v["rows"][0]["balance"], "42.00");
        // The session is cached for the day.
        assert!(dir.join("client").join("P1.session").exists());
    }
    let args = client_args(&["query", "--attr1", "NOCARD99"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fx, &dir, &args);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2001"));
    // A field out of its grammar is named, before anything is sent.
    let args = client_args(&["history", "--attr1", "CARD0001", "--attr2", "limit=0"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fx, &dir, &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field attr2.limit"), "{err}");
    let sessions: i64 = fx
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM sessions WHERE terminal_id = 'P1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1, "the CLI reused its cached session");
    let out = cli(&fx, &dir, &["keys", "status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["terminals"][0]["terminal"], "P1");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[tokio::test]
async fn the_daemon_refuses_to_start_without_keys() {
    let url = harness::fresh_database().await;
    let dir = harness::temp_dir("cs-nokeys-");
    let out = Command::new(BIN)
        .arg("--database-url")
        .arg(&url)
        .arg("--keys-dir")
        .arg(dir.join("keys"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cardswitch keys init"));
}

#[tokio::test]
async fn day_keys_are_destroyed_after_the_grace_period() {
    let fx = Fixture::new().await;
    let pw = fx.terminal("T1", "S1").await;
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let s = c.handshake("T1", &pw, &fx.root).await.unwrap();
    let key_not_after: i64 = fx
        .client()
        .await
        .query_one(
            "SELECT not_after FROM day_keys WHERE key_id = $1",
            &[&s.key_id],
        )
        .await
        .unwrap()
        .get(0);
    // The session lasts as long as its day key: midnight plus the grace.
    assert_eq!(s.not_after as i64, key_not_after);
    // What the daemon's upkeep does each minute, run at the key's end.
    let n = {
        let c = fx.client().await;
        let rk = cardswitch::keys::admin::row_keys(&fx.config, &c)
            .await
            .unwrap();
        cardswitch::store::keys::destroy_expired(&c, &rk, key_not_after)
            .await
            .unwrap()
    };
    assert!(n >= 1);
    let row = fx
        .client()
        .await
        .query_one(
            "SELECT status, sealed_private IS NULL AND sealed_k_day IS NULL,
                    (SELECT count(*) FROM sessions WHERE key_id = $1)
               FROM day_keys WHERE key_id = $1",
            &[&s.key_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "destroyed");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, i64>(2), 0);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn terminal_add_takes_a_kind() {
    let fx = Fixture::new().await;
    let dir = harness::temp_dir("cs-kind-");
    assert!(cli(&fx, &dir, &["store", "add", "S7", "--name", "Shop 7"])
        .status
        .success());
    let args = [
        "terminal", "add", "H1", "--store", "S7", "--kind", "office", "--json",
    ];
    let out = cli(&fx, &dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "office");
    assert!(cli(&fx, &dir, &["terminal", "add", "P1", "--store", "S7"])
        .status
        .success());
    let bad = cli(
        &fx,
        &dir,
        &["terminal", "add", "X1", "--store", "S7", "--kind", "bank"],
    );
    assert!(!bad.status.success(), "an unknown kind is refused");
    let out = cli(&fx, &dir, &["terminal", "list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kind_of = |id: &str| {
        list.iter()
            .find(|t| t["terminal"] == id)
            .map(|t| t["kind"].as_str().unwrap().to_owned())
    };
    assert_eq!(kind_of("H1").as_deref(), Some("office"));
    assert_eq!(kind_of("P1").as_deref(), Some("pos"));
    assert_eq!(kind_of("X1"), None);
}

#[tokio::test]
async fn a_head_office_terminal_asks_about_every_store_over_the_wire() {
    let fx = Fixture::new().await;
    let dir = harness::temp_dir("cs-hq-");
    let pw = fx.terminal("T1", "S1").await;
    let ok = |args: &[&str]| {
        let out = cli(&fx, &dir, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = ok(&[
        "terminal",
        "add",
        "HQ",
        "--kind",
        "office",
        "--all-stores",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["store"], "*");
    let hq_pw = v["password"].as_str().unwrap().to_owned();
    for bad in [
        &["terminal", "add", "X1", "--all-stores"][..],
        &["terminal", "add", "X2", "--kind", "pos", "--all-stores"],
        &[
            "terminal",
            "add",
            "X3",
            "--store",
            "S1",
            "--kind",
            "office",
            "--all-stores",
        ],
        &["terminal", "add", "X4", "--kind", "office"],
    ] {
        assert!(!cli(&fx, &dir, bad).status.success(), "{bad:?}");
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&ok(&["terminal", "list", "--json"]).stdout).unwrap();
    assert!(list
        .iter()
        .any(|t| t["terminal"] == "HQ" && t["store"] == "*"));

    fx.card("CARD0001", "5.00").await;
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let till = c.handshake("T1", &pw, &fx.root).await.unwrap();
    let hq = c.handshake("HQ", &hq_pw, &fx.root).await.unwrap();
    let liability = InnerForm::parse(b"op=liability&attr1=*").unwrap();
    let a = c.txn(&hq, &liability).await.unwrap();
    assert_eq!(a.errno, Errno::Ok);
    assert_eq!(a.rows.0[0].get("balance"), Some("5.00"));
    assert_eq!(a.rows.0[0].get("cards"), Some("1"));
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let settle = InnerForm::parse(format!("op=settlement&attr1={day}").as_bytes()).unwrap();
    assert_eq!(c.txn(&hq, &settle).await.unwrap().errno, Errno::Ok);
    assert_eq!(
        c.txn(&till, &liability).await.unwrap().errno,
        Errno::NotForThisTerminal
    );
    d.stop().await.unwrap();
}

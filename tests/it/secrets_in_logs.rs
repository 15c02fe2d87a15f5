//! No secret reaches a log line, at any level (issue 12, item 7): a daemon
//! in a child process logging everything (`RUST_LOG=trace`, every crate)
//! serves logins (a right and a wrong password), a register with a PIN, a
//! debit with it and a wrong one, and a manager op with its mpin; then its
//! log is searched for each secret in every spelling it could take — the
//! password, the PINs, `K_sid`, `K_enc`, `K_mac` (hex and base64) and the
//! master key file's key.

use std::process::{Command, Stdio};
use std::time::Duration;

use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::grammar::base64_encode;

use crate::harness::{self, Fixture};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const PIN: &str = "739146";
const MPIN: &str = "582039";

/// Every spelling of `bytes` a log line might carry.
fn spellings(bytes: &[u8]) -> Vec<String> {
    vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        base64_encode(bytes),
    ]
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_at_any_level() {
    let fx = Fixture::new().await;
    let password = fx.terminal("T1", "S1").await;
    {
        let c = fx.client().await;
        let s = cardswitch::keys::load_secrets(&fx.config.keys_dir, &c)
            .await
            .unwrap();
        cardswitch::store::operators::add_level(&c, &s.row_keys, "std", 1.into(), 1.into())
            .await
            .unwrap();
        cardswitch::store::operators::add_operator(
            &c,
            &s.hash_key,
            &s.row_keys,
            "S1",
            "boss",
            "manager",
            Some(MPIN),
        )
        .await
        .unwrap();
    }
    let log_path = harness::temp_dir("cs-log-").join("daemon.log");
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
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let c = Client::new(&format!("http://127.0.0.1:{port}"));
    let mut session = None;
    for _ in 0..200 {
        if let Ok(s) = c.handshake("T1", &password, &fx.root).await {
            session = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = session.expect("login");
    let day = c.hello("T1", &fx.root, None).await.unwrap();
    assert!(c
        .login("T1", "a wrong password, long enough", &day)
        .await
        .is_err());
    let send = |inner: String| {
        let (c, s) = (&c, &s);
        async move { c.txn_raw_inner(s, inner.as_bytes()).await.unwrap().errno }
    };
    let register = format!(
        "op=register&order_no=L1&attr1=LOGC0001&attr2=name%3DLi%26phone%3D13800000000%26level%3Dstd%26pin%3D{PIN}"
    );
    assert_eq!(send(register).await, Errno::Ok);
    assert_eq!(
        send("op=topup&amount=10&order_no=L2&attr1=LOGC0001".into()).await,
        Errno::Ok
    );
    assert_eq!(
        send(format!(
            "op=debit&amount=1&order_no=L3&attr1=LOGC0001&attr2=pin%3D{PIN}"
        ))
        .await,
        Errno::Ok
    );
    assert_eq!(
        send("op=debit&amount=1&order_no=L4&attr1=LOGC0001&attr2=pin%3D000000".into()).await,
        Errno::WrongPin
    );
    let lock = format!("op=lock&order_no=L5&operator=boss&attr1=LOGC0001&attr2=mpin%3D{MPIN}");
    assert_eq!(send(lock).await, Errno::Ok);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines().count() > 50,
        "the daemon logged too little to mean anything"
    );
    assert!(log.contains("TRACE"), "not logging at trace level");
    let master = std::fs::read_to_string(fx.config.keys_dir.join("master.key")).unwrap();
    let mut secrets: Vec<(&str, String)> = vec![
        ("the terminal password", password.clone()),
        ("the card PIN", format!("pin={PIN}")),
        ("the card PIN (encoded)", format!("pin%3D{PIN}")),
        ("the manager PIN", MPIN.into()),
    ];
    // The file is a header, the key's id (not secret) and the key in base64.
    let master_b64 = master.lines().nth(2).expect("the master key line");
    let master_key = cardswitch::protocol::grammar::base64(master_b64).unwrap();
    for (what, bytes) in [
        ("the master key", master_key),
        ("K_sid", s.k_sid.expose().to_vec()),
        ("K_enc", s.keys.enc.expose().to_vec()),
        ("K_mac", s.keys.mac.expose().to_vec()),
    ] {
        for sp in spellings(&bytes) {
            secrets.push((what, sp));
        }
    }
    for (what, secret) in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{what} is in the daemon's log"
        );
    }
}

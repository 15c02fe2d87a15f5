//! `webhook …` and `events` from the command line.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::Fixture;

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

fn cli(fx: &Fixture, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .arg("--database-url")
        .arg(fx.config.database_url.as_deref().unwrap())
        .arg("--keys-dir")
        .arg(&fx.config.keys_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn webhooks_are_managed_from_the_command_line() {
    let fx = Fixture::new().await;
    fx.terminal("T1", "S1").await;
    let add = |name: &str, extra: &[&str], secret: &str| {
        let mut args = vec![
            "webhook",
            "add",
            name,
            "--url",
            "http://127.0.0.1:9/h",
            "--secret-stdin",
        ];
        args.extend_from_slice(extra);
        cli(&fx, &args, secret)
    };
    let ok = add(
        "sms",
        &["--ops", "debit,topup", "--store", "S1", "--include-phone"],
        "a-secret-of-20-bytes\nignored\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (name, extra, secret, why) in [
        ("short", &[][..], "too-short\n", "a secret under 16 bytes"),
        ("sms", &[], "a-secret-of-20-bytes\n", "a name taken"),
        ("bad op", &[], "a-secret-of-20-bytes\n", "a bad name"),
        (
            "ops",
            &["--ops", "sale"][..],
            "a-secret-of-20-bytes\n",
            "an unknown op",
        ),
        (
            "st",
            &["--store", "S9"][..],
            "a-secret-of-20-bytes\n",
            "an unknown store",
        ),
    ] {
        assert!(!add(name, extra, secret).status.success(), "{why}");
    }
    let no_stdin = cli(&fx, &["webhook", "add", "x", "--url", "http://h/"], "");
    assert!(!no_stdin.status.success(), "the secret only from stdin");
    // The secret is sealed, never stored in clear.
    let c = fx.client().await;
    let r = c
        .query_one(
            "SELECT sealed FROM sealed_secrets WHERE name = 'webhook:sms'",
            &[],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = r.get(0);
    assert!(!sealed.windows(20).any(|w| w == b"a-secret-of-20-bytes"));
    let list = cli(&fx, &["webhook", "list", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["name"], "sms");
    assert_eq!(v[0]["ops"], serde_json::json!(["debit", "topup"]));
    assert_eq!(v[0]["include_phone"], true);
    assert!(cli(&fx, &["webhook", "disable", "sms"], "")
        .status
        .success());
    let list = cli(&fx, &["webhook", "list", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["status"], "disabled");
    assert!(!cli(&fx, &["webhook", "disable", "nope"], "")
        .status
        .success());
    let retry = cli(&fx, &["webhook", "retry", "--failed"], "");
    assert!(retry.status.success());
    let events = cli(&fx, &["events", "--json"], "");
    assert!(events.status.success());
    assert!(events.stdout.is_empty(), "no postings, no events");
    let audited: i64 = c
        .query_one(
            "SELECT count(*) FROM audit WHERE kind IN ('webhook.add', 'webhook.disable')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 2);
}

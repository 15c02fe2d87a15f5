//! `verify` on an untampered ledger, and the commands: every op leaves
//! `verify` clean, and `cardswitch verify` (`--json`, `--repair`) and
//! `cardswitch audit` through the binary.

use crate::ledger_support::*;

use super::{assert_clean, busy_card, exec, tampered_audits};

#[tokio::test]
async fn every_op_leaves_verify_clean() {
    let l = setup().await;
    busy_card(&l, "CARDA001").await;
    busy_card(&l, "CARDB001").await;
    l.card("CARDP001", "gold", Some("50"), Some("1234")).await;
    l.ok(&req("points", "CARDA001")
        .order("P1")
        .a2("delta", "100")
        .a2("reason", "promo"))
        .await;
    l.ok(&req("redeem", "CARDA001")
        .order("G1")
        .a2("cost", "50")
        .a2("gift", "mug"))
        .await;
    l.ok(&req("transfer", "CARDA001")
        .amount("10")
        .order("T1")
        .mgr()
        .a2("to", "CARDB001"))
        .await;
    l.ok(&req("debit", "CARDP001")
        .amount("10")
        .order("PD1")
        .a2("pin", "1234"))
        .await;
    // A wrong PIN is counted on the card (re-MACed by the refusal).
    l.refused(
        &req("debit", "CARDP001")
            .amount("1")
            .order("PD2")
            .a2("pin", "9999"),
        2009,
    )
    .await;
    l.ok(&req("debit", "CARDB001").amount("5").order("D2"))
        .await;
    l.ok(&req("reverse", "D2").order("V1").mgr()).await;
    l.ok(&req("refund", "D-CARDA001").amount("5").order("F1").mgr())
        .await;
    l.ok(&req("lost", "CARDB001").order("L1").mgr()).await;
    l.ok(&req("found", "CARDB001").order("L2").mgr()).await;
    l.ok(&req("replace", "CARDB001")
        .order("R1")
        .mgr()
        .a2("new", "CARDB002"))
        .await;
    l.ok(&req("query", "CARDA001")).await;
    l.send(&req("history", "CARDA001")).await.unwrap();
    l.ok(&req("close", "CARDA001").order("C1").mgr()).await;
    l.check_books().await;
    assert_clean(&l).await;
    assert_eq!(tampered_audits(&l).await, 0);
}

/// `cardswitch verify` and `cardswitch audit` through the binary.
#[tokio::test]
async fn verify_and_audit_commands() {
    use std::process::Command;
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .arg("--database-url")
            .arg(&l.url)
            .arg("--keys-dir")
            .arg(&l.config.keys_dir)
            .args(args)
            .output()
            .expect("run cardswitch")
    };
    let o = run(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 findings"));

    exec(
        &l,
        "UPDATE cards SET balance = 999 WHERE card_no = 'CARD0001'",
    )
    .await;
    let o = run(&["verify", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert!(findings
        .iter()
        .any(|f| f["table"] == "cards" && f["key"] == "CARD0001" && f["check"] == "mac"));

    let o = run(&["verify", "--repair"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "it found something, then repaired it"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("repaired cards CARD0001"));
    let o = run(&["verify"]);
    assert!(o.status.success());

    let o = run(&["audit", "--json", "--since", "2000-01-01"]);
    assert!(o.status.success());
    let kinds: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(kinds.contains(&"verify.repair".to_string()), "{kinds:?}");
}

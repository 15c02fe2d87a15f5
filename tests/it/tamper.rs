//! Tamper evidence (issue 5): each change an attacker with SQL access could
//! make is found by `verify` and refused (3001) by the next posting that
//! relies on the row; repair restores what the sealed copies and the
//! postings chain agree on; key rotation keeps `verify` clean.

use cardswitch::store::verify::{self, Options, Report};

use crate::ledger_support::*;

async fn verify_report(l: &Ledger, repair: bool) -> Report {
    // Keys made by a rotation since (as `cardswitch verify` would load them).
    cardswitch::keys::refresh_row_keys(&l.client().await, &l.config.keys_dir, &l.env.row_keys)
        .await
        .unwrap();
    verify::verify(
        &l.pool,
        &l.env.row_keys,
        Options {
            repair,
            progress: false,
        },
    )
    .await
    .expect("verify runs")
}

async fn assert_clean(l: &Ledger) {
    let r = verify_report(l, false).await;
    assert!(r.clean(), "verify found {:#?}", r.findings);
}

/// `verify` finds `check` on `table`/`key`.
async fn assert_found(l: &Ledger, table: &str, key_prefix: &str, check: &str) -> Report {
    let r = verify_report(l, false).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.table == table && f.key.starts_with(key_prefix) && f.check == check),
        "no {table} {key_prefix} {check} in {:#?}",
        r.findings
    );
    r
}

async fn exec(l: &Ledger, sql: &str) {
    l.client().await.batch_execute(sql).await.unwrap();
}

async fn tampered_audits(l: &Ledger) -> i64 {
    l.count("SELECT count(*) FROM audit WHERE kind = 'integrity.tampered'")
        .await
}

/// The next posting on `card` is refused with 3001, changes nothing and is
/// audited.
async fn next_posting_refused(l: &Ledger, card: &str) {
    let before = l.card_row(card).await;
    let postings = l
        .count(&format!(
            "SELECT count(*) FROM postings WHERE card_no = '{card}'"
        ))
        .await;
    let audits = tampered_audits(l).await;
    let order = format!("X-{}", l.next_ts());
    l.refused(&req("topup", card).amount("1").order(&order), 3001)
        .await;
    assert_eq!(l.card_row(card).await, before, "a 3001 changed the card");
    assert_eq!(
        l.count(&format!(
            "SELECT count(*) FROM postings WHERE card_no = '{card}'"
        ))
        .await,
        postings
    );
    assert_eq!(
        l.count(&format!(
            "SELECT count(*) FROM orders WHERE order_no = '{order}'"
        ))
        .await,
        0,
        "the order claim was rolled back"
    );
    assert_eq!(tampered_audits(l).await, audits + 1, "3001 not audited");
}

/// A card with a few postings: register, top-up 100, debit 30 (30 points).
async fn busy_card(l: &Ledger, no: &str) {
    l.card(no, "std", Some("100"), None).await;
    l.ok(&req("debit", no).amount("30").order(&format!("D-{no}")))
        .await;
}

async fn repaired_exactly(l: &Ledger, no: &str, was: (rust_decimal::Decimal, i64, String, i32)) {
    let r = verify_report(l, true).await;
    assert!(
        r.repaired.iter().any(|x| x.card_no == no),
        "not repaired: {r:#?}"
    );
    assert_eq!(l.card_row(no).await, was, "repair did not restore the card");
    assert_eq!(
        l.count("SELECT count(*) FROM audit WHERE kind = 'verify.repair'")
            .await,
        1
    );
    assert_clean(l).await;
    l.ok(&req("topup", no).amount("1").order(&format!("after-{no}")))
        .await;
    assert_clean(l).await;
}

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

#[tokio::test]
async fn a_balance_changed_by_sql_is_found_refused_and_repaired() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let was = l.card_row("CARD0001").await;
    exec(
        &l,
        "UPDATE cards SET balance = balance + 1000 WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    assert_found(&l, "cards", "CARD0001", "balance").await;
    next_posting_refused(&l, "CARD0001").await;
    repaired_exactly(&l, "CARD0001", was).await;
}

#[tokio::test]
async fn points_changed_by_sql_are_found_refused_and_repaired() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let was = l.card_row("CARD0001").await;
    assert_eq!(was.1, 30);
    exec(
        &l,
        "UPDATE cards SET points = 5000 WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    assert_found(&l, "cards", "CARD0001", "points").await;
    assert_found(&l, "cards", "CARD0001", "lots").await;
    next_posting_refused(&l, "CARD0001").await;
    repaired_exactly(&l, "CARD0001", was).await;
}

#[tokio::test]
async fn a_status_changed_by_sql_is_found_refused_and_repaired() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("lost", "CARD0001").order("L1").mgr()).await;
    let was = l.card_row("CARD0001").await;
    assert_eq!(was.2, "lost");
    exec(
        &l,
        "UPDATE cards SET status = 'active' WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    next_posting_refused(&l, "CARD0001").await;
    let r = verify_report(&l, true).await;
    assert_eq!(r.repaired.len(), 1);
    assert_eq!(l.card_row("CARD0001").await, was);
    assert_clean(&l).await;
    // Lost again, as it should be.
    l.refused(&req("topup", "CARD0001").amount("1").order("Y1"), 2002)
        .await;
}

#[tokio::test]
async fn a_deleted_posting_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    // The top-up, in the middle of the chain.
    exec(
        &l,
        "DELETE FROM postings WHERE card_no = 'CARD0001' AND op = 'topup'",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    assert_found(&l, "cards", "CARD0001", "balance").await;
    next_posting_refused(&l, "CARD0001").await;
    // The sealed copy agrees with the card, not with the postings: no repair.
    let r = verify_report(&l, true).await;
    assert!(r.repaired.is_empty());
}

#[tokio::test]
async fn a_forged_posting_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    // A copy of the top-up, with its MAC, as a new posting at the end.
    exec(
        &l,
        "INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta,
                points_delta, balance, points, amount, discount, charged, business_day,
                posted_at, row_mac, mac_key_id)
         SELECT txn_id, card_no, terminal_id, order_no, op, balance_delta, points_delta,
                balance + balance_delta, points, amount, discount, charged, business_day,
                now(), row_mac, mac_key_id
           FROM postings WHERE card_no = 'CARD0001' AND op = 'topup'",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn swapped_posting_amounts_are_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("topup", "CARD0001").amount("7").order("T2"))
        .await;
    // Swap the amounts of the debit and the last top-up.
    exec(
        &l,
        "WITH a AS (SELECT posting_id, amount FROM postings WHERE card_no = 'CARD0001'
                     AND op = 'debit'),
              b AS (SELECT posting_id, amount FROM postings WHERE card_no = 'CARD0001'
                     AND order_no = 'T2')
         UPDATE postings p SET amount = CASE WHEN p.posting_id = (SELECT posting_id FROM a)
                                             THEN (SELECT amount FROM b)
                                             ELSE (SELECT amount FROM a) END
          WHERE p.posting_id IN ((SELECT posting_id FROM a), (SELECT posting_id FROM b))",
    )
    .await;
    assert_found(&l, "postings", "CARD0001", "chain").await;
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn a_mac_copied_onto_another_row_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    l.ok(&req("topup", "CARD0002").amount("900").order("T9"))
        .await;
    let was = l.card_row("CARD0001").await;
    // The richer card's MAC, sealed copy and values onto the poorer one.
    exec(
        &l,
        "UPDATE cards c SET balance = o.balance, row_mac = o.row_mac, sealed = o.sealed
           FROM cards o WHERE c.card_no = 'CARD0001' AND o.card_no = 'CARD0002'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    assert_found(&l, "cards", "CARD0001", "sealed").await;
    next_posting_refused(&l, "CARD0001").await;
    // Its own sealed copy is gone: not repaired, still reported.
    let r = verify_report(&l, true).await;
    assert!(r.repaired.is_empty());
    assert_ne!(l.card_row("CARD0001").await, was);

    // Only the MAC copied: the values are genuine, so repair re-MACs them.
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    let was = l.card_row("CARD0001").await;
    exec(
        &l,
        "UPDATE cards c SET row_mac = o.row_mac
           FROM cards o WHERE c.card_no = 'CARD0001' AND o.card_no = 'CARD0002'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    next_posting_refused(&l, "CARD0001").await;
    repaired_exactly(&l, "CARD0001", was).await;
}

#[tokio::test]
async fn a_changed_sealed_copy_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    exec(
        &l,
        "UPDATE cards SET sealed = overlay(sealed PLACING '\\xff'::bytea FROM 20 FOR 1)
          WHERE card_no = 'CARD0001'",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "sealed").await;
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn a_changed_terminal_password_hash_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    exec(
        &l,
        "UPDATE terminals SET pw_hash = '\\x00112233'::bytea WHERE terminal_id = 'T1'",
    )
    .await;
    assert_found(&l, "terminals", "T1", "mac").await;
    // Every posting from T1 is refused (the ledger's terminal is T1).
    next_posting_refused(&l, "CARD0001").await;
}

#[tokio::test]
async fn a_deleted_audit_row_is_found() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    let keys = &l.env.row_keys;
    let c = l.client().await;
    for i in 0..4 {
        cardswitch::store::audit::insert(
            &c,
            keys,
            "test",
            None,
            None,
            None,
            &serde_json::json!({"i": i, "nested": {"b": 1, "a": [1, 2]}}),
        )
        .await
        .unwrap();
    }
    assert_clean(&l).await;
    // A middle row.
    exec(
        &l,
        "DELETE FROM audit WHERE audit_id = (SELECT min(audit_id) + 1 FROM audit)",
    )
    .await;
    assert_found(&l, "audit", "", "chain").await;

    // The last row: caught by the chain head.
    let l = setup().await;
    let c = l.client().await;
    for i in 0..3 {
        cardswitch::store::audit::insert(
            &c,
            &l.env.row_keys,
            "test",
            None,
            None,
            None,
            &serde_json::json!({"i": i}),
        )
        .await
        .unwrap();
    }
    exec(
        &l,
        "DELETE FROM audit WHERE audit_id = (SELECT max(audit_id) FROM audit)",
    )
    .await;
    assert_found(&l, "audit", "", "chain").await;
}

#[tokio::test]
async fn concurrent_audit_inserts_keep_one_chain() {
    let l = setup().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let pool = l.pool.clone();
        let env = l.env.clone();
        tasks.push(tokio::spawn(async move {
            let c = pool.get().await.unwrap();
            for i in 0..10 {
                cardswitch::store::audit::insert(
                    &c,
                    &env.row_keys,
                    "test",
                    None,
                    None,
                    None,
                    &serde_json::json!({"t": t, "i": i}),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(l.count("SELECT count(*) FROM audit").await, 80);
    assert_clean(&l).await;
}

#[tokio::test]
async fn master_key_rotation_keeps_verify_clean() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    cardswitch::keys::admin::rotate_master(&l.config, &l.pool)
        .await
        .unwrap();
    // Keys as reloaded under the new master key.
    let c = l.client().await;
    let keys = cardswitch::keys::admin::row_keys(&l.config, &c)
        .await
        .unwrap();
    assert_eq!(keys.current_id(), l.env.row_keys.current_id());
    let r = verify::verify(&l.pool, &keys, Options::default())
        .await
        .unwrap();
    assert!(r.clean(), "{:#?}", r.findings);
    l.ok(&req("topup", "CARD0001").amount("1").order("after"))
        .await;
    assert_clean(&l).await;
}

#[tokio::test]
async fn row_key_rotation_keeps_verify_clean_and_the_ledger_serving() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    let old = l.env.row_keys.current_id();
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert_ne!(r.key_id, old);
    assert!(r.refused.is_empty(), "{r:?}");
    assert!(r.rewritten > 0);
    assert_eq!(
        cardswitch::store::rekey::rows_behind(&l.pool, &r.key_id)
            .await
            .unwrap(),
        0,
        "every row under the new key"
    );
    {
        let c = l.client().await;
        let rk = cardswitch::keys::admin::row_keys(&l.config, &c)
            .await
            .unwrap();
        let rep = verify::verify(&l.pool, &rk, Options::default())
            .await
            .unwrap();
        assert!(rep.clean(), "after rotation: {:#?}", rep.findings);
    }
    // The running ledger (old keys in memory) meets the new key id, loads
    // it and goes on posting, now signing with it.
    l.ok(&req("topup", "CARD0001").amount("1").order("after"))
        .await;
    assert_eq!(l.env.row_keys.current_id(), r.key_id);
    assert_clean(&l).await;
    // Interrupted and resumed: a row still under the old key (as a daemon
    // that had not met the new key yet would write it) makes the next run
    // finish this rotation instead of starting another.
    let c = l.client().await;
    let rk = cardswitch::keys::admin::row_keys(&l.config, &c)
        .await
        .unwrap();
    assert_eq!(rk.current_id(), r.key_id);
    drop(c);
    exec(
        &l,
        &format!("UPDATE terminals SET mac_key_id = '{old}' WHERE terminal_id = 'T2'"),
    )
    .await;
    let again = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert_eq!(again.key_id, r.key_id);
    // T2's MAC was made under the new key but now names the old one: it
    // fails its check and is left, as tampering must be.
    assert_eq!(again.refused, vec!["terminals T2".to_string()]);
    exec(
        &l,
        &format!(
            "UPDATE terminals SET mac_key_id = '{}' WHERE terminal_id = 'T2'",
            r.key_id
        ),
    )
    .await;
    assert_clean(&l).await;
    // Run again with nothing behind: a further new key, still clean.
    let third = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert_ne!(third.key_id, r.key_id);
    assert!(third.refused.is_empty());
    assert_clean(&l).await;

    // A tampered card is not laundered by the rotation.
    exec(
        &l,
        "UPDATE cards SET balance = 1 WHERE card_no = 'CARD0002'",
    )
    .await;
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert!(r.refused.iter().any(|x| x == "cards CARD0002"), "{r:?}");
    assert_found(&l, "cards", "CARD0002", "mac").await;
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

#[tokio::test]
async fn a_changed_operator_or_level_is_found_and_refused() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.ok(&req("lock", "CARD0001").order("K1").mgr()).await;
    // Five wrong manager PINs disable m1 through the refusal's own write,
    // MAC and all: verify stays clean for m1.
    for i in 0..5 {
        l.refused(
            &req("unlock", "CARD0001")
                .order(&format!("W{i}"))
                .by("m1")
                .a2("mpin", "0000"),
            2011,
        )
        .await;
    }
    assert_eq!(
        l.count("SELECT count(*) FROM operators WHERE operator_id = 'm1' AND status = 'disabled'")
            .await,
        1
    );
    assert_clean(&l).await;
    // The disabled manager re-enabled by SQL.
    exec(
        &l,
        "UPDATE operators SET status = 'active', pin_fail_count = 0
          WHERE store_id = 'S1' AND operator_id = 'm1'",
    )
    .await;
    assert_found(&l, "operators", "S1/m1", "mac").await;
    l.refused(&req("unlock", "CARD0001").order("U1").mgr(), 3001)
        .await;
    assert_eq!(l.card_row("CARD0001").await.2, "locked");
    // A better discount for a level.
    exec(&l, "UPDATE levels SET discount = 0.5 WHERE level = 'std'").await;
    assert_found(&l, "levels", "std", "mac").await;
    next_posting_refused(&l, "CARD0001").await;
}

/// A database from before tamper evidence: rows without MACs are refused
/// until `keys rotate-row-key --adopt-unmaced` MACs them as they are.
#[tokio::test]
async fn unmaced_rows_are_adopted_on_request() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.card("CARD0002", "std", None, None).await;
    exec(
        &l,
        "UPDATE cards SET row_mac = NULL, mac_key_id = NULL, sealed = NULL, last_mac = NULL,
                chain_len = 0;
         UPDATE postings SET row_mac = NULL, mac_key_id = NULL;
         UPDATE members SET row_mac = NULL, mac_key_id = NULL;
         UPDATE audit SET row_mac = NULL, mac_key_id = NULL;
         UPDATE audit_head SET last_mac = NULL, last_id = NULL;",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    l.refused(&req("topup", "CARD0001").amount("1").order("B1"), 3001)
        .await;
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert!(r.refused.iter().any(|x| x == "cards CARD0001"), "{r:?}");
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, true)
        .await
        .unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert_clean(&l).await;
    l.ok(&req("topup", "CARD0001").amount("1").order("B2"))
        .await;
    l.ok(&req("topup", "CARD0002").amount("1").order("B3"))
        .await;
    assert_clean(&l).await;
}

/// Day keys and sessions (through a running daemon): their rows are MACed
/// like the ledger's.
mod key_rows {
    use cardswitch::client::{wire, Client, Refused, Session};
    use cardswitch::crypto::aead;
    use cardswitch::keys::admin;
    use cardswitch::protocol::canonical;
    use cardswitch::protocol::errno::Errno;
    use cardswitch::protocol::message::InnerForm;
    use cardswitch::protocol::xml::parse_answer;
    use cardswitch::store::verify::{self, Options, Report};

    use crate::harness::{Daemon, Fixture};

    fn query() -> InnerForm {
        InnerForm::parse(b"op=query&attr1=CARD0001").unwrap()
    }

    struct Setup {
        fx: Fixture,
        d: Daemon,
        c: Client,
        pw: String,
        /// Logged in, no txn yet (so nothing of it is cached).
        s: Session,
    }

    async fn setup() -> Setup {
        let fx = Fixture::new().await;
        let pw = fx.terminal("T1", "S1").await;
        fx.terminal("T2", "S1").await;
        fx.card("CARD0001", "5.00").await;
        let d = Daemon::start(fx.config.clone()).await;
        let c = Client::new(&format!("http://{}", d.addr));
        let s = c.handshake("T1", &pw, &fx.root).await.unwrap();
        Setup { fx, d, c, pw, s }
    }

    async fn report(fx: &Fixture) -> Report {
        let c = fx.client().await;
        let rk = admin::row_keys(&fx.config, &c).await.unwrap();
        verify::verify(fx.pool(), &rk, Options::default())
            .await
            .unwrap()
    }

    async fn assert_clean(fx: &Fixture) {
        // (The fixture's card has a balance without postings: not ours.)
        let r = report(fx).await;
        let ours: Vec<_> = r.findings.iter().filter(|f| f.check == "mac").collect();
        assert!(ours.is_empty(), "verify found {ours:#?}");
        assert!(
            r.rows["day_keys"] >= 1 && r.rows["sessions"] >= 1,
            "{:?}",
            r.rows
        );
    }

    async fn assert_found(fx: &Fixture, table: &str, key: &str) {
        let r = report(fx).await;
        assert!(
            r.findings
                .iter()
                .any(|f| f.table == table && f.key == key && f.check == "mac"),
            "no {table} {key} mac in {:#?}",
            r.findings
        );
    }

    async fn exec(fx: &Fixture, sql: &str) {
        fx.client().await.batch_execute(sql).await.unwrap();
    }

    /// The errno of a txn answer read raw. A session or day key row that
    /// fails its check is answered 1004 (run the handshake again) without an
    /// answer MAC, since its keys cannot be trusted; the refusal is audited
    /// as 3001 and counted as an integrity failure.
    async fn txn_errno(c: &Client, s: &Session) -> Errno {
        let ts = chrono::Utc::now().timestamp_millis() as u64;
        let inner = query().encode();
        let b = wire::txn_body(
            &s.keys,
            &s.terminal,
            &s.sid,
            ts,
            &aead::random_iv(),
            inner.as_bytes(),
        );
        let h = canonical::format_mac_header(&b.mac);
        let r = c
            .post_form("/v1/txn", b.body.into_bytes(), &[("referer", &h)])
            .await
            .unwrap();
        parse_answer(&r.body).unwrap().errno
    }

    fn errno_of(e: &anyhow::Error) -> Errno {
        e.downcast_ref::<Refused>().expect("refused").errno
    }

    async fn failures(d: &Daemon) -> String {
        let m = d.get("/metrics").await.unwrap();
        String::from_utf8_lossy(&m.body)
            .lines()
            .find(|l| l.starts_with("cardswitch_integrity_failures_total"))
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn a_day_key_validity_changed_by_sql_is_found_and_refused() {
        let Setup { fx, d, c, pw, s } = setup().await;
        assert_clean(&fx).await;
        exec(
            &fx,
            &format!(
                "UPDATE day_keys SET not_after = not_after + 86400000 WHERE key_id = '{}'",
                s.key_id
            ),
        )
        .await;
        assert_found(&fx, "day_keys", &s.key_id).await;
        // On use: the session's txn, hello and login.
        assert_eq!(txn_errno(&c, &s).await, Errno::KeyUnknown);
        let e = c.hello("T1", &fx.root, None).await.unwrap_err();
        assert_eq!(errno_of(&e), Errno::Tampered);
        let e = c.handshake("T1", &pw, &fx.root).await.unwrap_err();
        assert_eq!(errno_of(&e), Errno::Tampered);
        assert_eq!(failures(&d).await, "cardswitch_integrity_failures_total 3");
        let audited = fx
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM audit
                  WHERE kind = 'refused' AND (detail->>'errno')::int = 3001",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(audited, 3, "refusals audited");
    }

    #[tokio::test]
    async fn a_session_moved_to_another_terminal_is_found_and_refused() {
        let Setup { fx, d, c, s, .. } = setup().await;
        exec(
            &fx,
            &format!(
                "UPDATE sessions SET terminal_id = 'T2' WHERE sid = '{}'",
                s.sid
            ),
        )
        .await;
        assert_found(&fx, "sessions", &s.sid).await;
        assert_eq!(txn_errno(&c, &s).await, Errno::KeyUnknown);
        // 1004 alone would also be the answer to a sound session of another
        // terminal: the integrity failure is what tells the two apart.
        assert_eq!(failures(&d).await, "cardswitch_integrity_failures_total 1");
    }

    /// Waits until the daemon's first key upkeep has made tomorrow's day
    /// keys for both terminals (RSA, so it takes a while): it reads which
    /// terminals lack a key for today first, and would make T1 a new one
    /// should T1's be revoked before that.
    async fn first_upkeep_done(fx: &Fixture) {
        let started = std::time::Instant::now();
        loop {
            let n: i64 = fx
                .client()
                .await
                .query_one("SELECT count(*) FROM day_keys", &[])
                .await
                .unwrap()
                .get(0);
            if n >= 4 {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "the daemon made no day keys for tomorrow"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_revocation_undone_by_sql_is_found_and_refused() {
        let Setup { fx, d, c, s, .. } = setup().await;
        first_upkeep_done(&fx).await;
        admin::revoke(&fx.config, fx.pool(), "T1").await.unwrap();
        // A revocation re-MACs what it changes.
        assert_clean(&fx).await;
        assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::KeyUnknown);
        exec(
            &fx,
            &format!(
                "UPDATE sessions SET revoked_at = NULL WHERE sid = '{}';
                 UPDATE day_keys SET status = 'active' WHERE key_id = '{}'",
                s.sid, s.key_id
            ),
        )
        .await;
        assert_found(&fx, "sessions", &s.sid).await;
        assert_found(&fx, "day_keys", &s.key_id).await;
        assert_eq!(txn_errno(&c, &s).await, Errno::KeyUnknown);
        assert_eq!(failures(&d).await, "cardswitch_integrity_failures_total 1");
    }

    #[tokio::test]
    async fn rotations_keep_day_keys_and_sessions_verifying() {
        let Setup {
            fx,
            d: _d,
            c,
            pw,
            s,
        } = setup().await;
        // A rotation racing the daemon's first key upkeep (tomorrow's day
        // keys, made under the row key it knows) leaves that row behind
        // (rerunning the rotation is the remedy, README).
        first_upkeep_done(&fx).await;
        assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);
        admin::rotate_master(&fx.config, fx.pool()).await.unwrap();
        assert_clean(&fx).await;
        let r = admin::rotate_row_key(&fx.config, fx.pool(), false, false)
            .await
            .unwrap();
        assert!(r.refused.is_empty(), "{r:?}");
        assert_eq!(
            cardswitch::store::rekey::rows_behind(fx.pool(), &r.key_id)
                .await
                .unwrap(),
            0
        );
        assert_clean(&fx).await;
        // The daemon (old row keys in memory) meets the new key id on use.
        assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);
        let s2 = c.handshake("T1", &pw, &fx.root).await.unwrap();
        assert_eq!(c.txn(&s2, &query()).await.unwrap().errno, Errno::Ok);
        assert_clean(&fx).await;
    }
}

//! The rows a posting relies on besides the card's (a terminal's password
//! hash, an operator, a level) changed by SQL: found by `verify`, refused
//! (3001) on use; a refusal's own writes (an operator disabled) stay clean.

use crate::ledger_support::*;

use super::{assert_clean, assert_found, busy_card, exec, next_posting_refused};

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
    assert_eq!(l.card_row("CARD0001").await.status, "locked");
    // A better discount for a level.
    exec(&l, "UPDATE levels SET discount = 0.5 WHERE level = 'std'").await;
    assert_found(&l, "levels", "std", "mac").await;
    next_posting_refused(&l, "CARD0001").await;
}

/// Members, terminals, operators and levels carry sealed copies (issue 12):
/// `verify --repair` sets each back as the program wrote it, audited, and
/// the ledger trusts them again — the disabled manager disabled again.
#[tokio::test]
async fn members_terminals_operators_and_levels_are_repaired_from_their_sealed_copies() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    for i in 0..5 {
        let wrong = req("lock", "CARD0001")
            .order(&format!("W{i}"))
            .by("m1")
            .a2("mpin", "0000");
        l.refused(&wrong, 2011).await;
    }
    let member: i64 = l
        .count("SELECT member_id FROM cards WHERE card_no = 'CARD0001'")
        .await;
    exec(
        &l,
        &format!(
            "UPDATE terminals SET pw_hash = '\\x00112233'::bytea WHERE terminal_id = 'T1';
             UPDATE operators SET status = 'active', pin_fail_count = 0 WHERE operator_id = 'm1';
             UPDATE levels SET discount = 0.5 WHERE level = 'std';
             UPDATE members SET phone = '+10000000000' WHERE member_id = {member};"
        ),
    )
    .await;
    for (table, key) in [
        ("terminals", "T1".to_owned()),
        ("operators", "S1/m1".to_owned()),
        ("levels", "std".to_owned()),
        ("members", member.to_string()),
    ] {
        assert_found(&l, table, &key, "mac").await;
    }
    let r = super::verify_report(&l, true).await;
    let repaired: Vec<&str> = r.repaired.iter().map(|x| x.table.as_str()).collect();
    for t in ["terminals", "operators", "levels", "members"] {
        assert!(repaired.contains(&t), "{t} not repaired: {r:#?}");
    }
    assert_clean(&l).await;
    assert_eq!(
        l.count("SELECT count(*) FROM operators WHERE operator_id = 'm1' AND status = 'disabled'")
            .await,
        1,
        "the manager five wrong PINs disabled is disabled again"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM audit WHERE kind = 'verify.repair'")
            .await,
        4
    );
    l.ok(&req("debit", "CARD0001").amount("10").order("D2"))
        .await;
}

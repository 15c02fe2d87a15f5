//! Office terminals (protocol.md §6.1): they read any card without its PIN
//! and see phone numbers in full, every read on the audit trail; they never
//! post (2013, with the `ts` spent and nothing else written).

use crate::ledger_support::*;

async fn office_reads(l: &Ledger) -> i64 {
    l.count("SELECT count(*) FROM audit WHERE kind = 'office.read'")
        .await
}

async fn card_with_pin(l: &Ledger) {
    l.ok(&req("register", "CARD0001")
        .order("R1")
        .a2("name", "Li Wei")
        .a2("phone", "13800001234")
        .a2("level", "std")
        .a2("pin", "1234"))
        .await;
    l.ok(&req("topup", "CARD0001").amount("10").order("P1"))
        .await;
}

#[tokio::test]
async fn an_office_terminal_reads_without_the_pin_and_sees_the_phone() {
    let l = setup().await;
    card_with_pin(&l).await;
    // A till needs the PIN; a wrong one counts.
    l.refused(&req("query", "CARD0001").a2("pin", "9999"), 2009)
        .await;
    assert_eq!(l.card_row("CARD0001").await.pin_fail_count, 1);
    let till = l.ok(&req("member", "CARD0001").a2("pin", "1234")).await;
    assert_eq!(till.get("phone"), Some("*******1234"));
    assert_eq!(l.card_row("CARD0001").await.pin_fail_count, 0);
    l.refused(&req("query", "CARD0001").a2("pin", "9999"), 2009)
        .await;
    assert_eq!(office_reads(&l).await, 0);

    let q = l.send_from("O1", &req("query", "CARD0001")).await.unwrap();
    assert_eq!(q.0[0].get("balance"), Some("10.00"));
    let m = l.send_from("O1", &req("member", "CARD0001")).await.unwrap();
    assert_eq!(m.0[0].get("phone"), Some("13800001234"));
    let h = l
        .send_from("O1", &req("history", "CARD0001"))
        .await
        .unwrap();
    assert_eq!(h.0.len(), 2);
    assert_eq!(office_reads(&l).await, 3, "every office read is audited");
    // The till's run of wrong PINs is the till's: an office read leaves it.
    assert_eq!(l.card_row("CARD0001").await.pin_fail_count, 1);
    l.refused_from("O1", &req("query", "CARD0404"), 2001).await;
    l.check_books().await;
}

#[tokio::test]
async fn an_office_terminal_never_posts() {
    let l = setup().await;
    card_with_pin(&l).await;
    let before = l.card_row("CARD0001").await;
    let audits = office_reads(&l).await;
    for r in [
        req("debit", "CARD0001")
            .amount("1")
            .order("OFF1")
            .a2("pin", "1234"),
        req("topup", "CARD0001").amount("1").order("OFF2"),
        req("lock", "CARD0001").order("OFF3").mgr(),
        req("register", "CARD0002")
            .order("OFF4")
            .a2("name", "Wang")
            .a2("phone", "13900000000")
            .a2("level", "std"),
    ] {
        let ts = l.next_ts();
        let f = r.form();
        let e = cardswitch::keys::run_txn(&l.pool, &l.env, &l.ctx("O1", ts), &f)
            .await
            .and_then(cardswitch::store::txn::Committed::into_rows)
            .unwrap_err();
        assert_eq!(e.errno().code(), 2013, "{r:?}");
        // The ts was spent all the same.
        let again = cardswitch::keys::run_txn(&l.pool, &l.env, &l.ctx("O1", ts), &f)
            .await
            .and_then(cardswitch::store::txn::Committed::into_rows)
            .unwrap_err();
        assert_eq!(again.errno().code(), 1006);
    }
    assert_eq!(l.card_row("CARD0001").await, before);
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE terminal_id = 'O1'")
            .await,
        0
    );
    assert_eq!(l.count("SELECT count(*) FROM cards").await, 1);
    assert_eq!(office_reads(&l).await, audits);
    l.check_books().await;
}

#[tokio::test]
async fn a_terminal_kind_changed_by_sql_is_refused() {
    let l = setup().await;
    card_with_pin(&l).await;
    // An office terminal turned into a till by SQL would post: its MAC
    // covers the kind, so it is refused 3001 instead.
    l.client()
        .await
        .batch_execute("UPDATE terminals SET kind = 'pos' WHERE terminal_id = 'O1'")
        .await
        .unwrap();
    l.refused_from(
        "O1",
        &req("topup", "CARD0001").amount("1").order("K1"),
        3001,
    )
    .await;
    l.refused_from("O1", &req("query", "CARD0001"), 3001).await;
}

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

#[tokio::test]
async fn find_gives_every_card_of_the_matching_members() {
    let l = setup().await;
    card_with_pin(&l).await;
    // The member's card replaced: two cards, the old one closed.
    l.ok(&req("replace", "CARD0001")
        .order("X1")
        .mgr()
        .a2("new", "CARD0009"))
        .await;
    l.ok(&req("register", "CARD0002")
        .order("R2")
        .a2("name", "Wang Fang")
        .a2("phone", "+8613900000000")
        .a2("level", "gold"))
        .await;
    let audits = office_reads(&l).await;
    let find = |key: &str| req("find", key);
    let rows = l.send_from("O1", &find("13800001234")).await.unwrap();
    let cards: Vec<(&str, &str)> = rows
        .0
        .iter()
        .map(|r| (r.get("card").unwrap(), r.get("status").unwrap()))
        .collect();
    assert_eq!(cards, [("CARD0001", "closed"), ("CARD0009", "active")]);
    let r = &rows.0[1];
    assert_eq!(r.get("phone"), Some("13800001234"), "in full");
    assert_eq!(r.get("name"), Some("Li Wei"));
    assert_eq!(r.get("balance"), Some("10.00"));
    assert_eq!(r.get("level"), Some("std"));
    assert_eq!(r.get("member"), rows.0[0].get("member"));
    crate::harness::assert_valid(
        "rows.xsd",
        cardswitch::protocol::xml::encode_rows(&rows).as_bytes(),
    );
    // By one of the member's cards, by a phone with its +, limited.
    let by_card = l.send_from("O1", &find("CARD0001")).await.unwrap();
    assert_eq!(by_card, rows);
    let other = l.send_from("O1", &find("+8613900000000")).await.unwrap();
    assert_eq!(other.0.len(), 1);
    assert_eq!(other.0[0].get("card"), Some("CARD0002"));
    let one = l
        .send_from("O1", &find("13800001234").a2("limit", "1"))
        .await
        .unwrap();
    assert_eq!(one.0.len(), 1);
    // Nothing matches: no rows, not an error.
    let none = l.send_from("O1", &find("13700000000")).await.unwrap();
    assert!(none.0.is_empty());
    assert_eq!(office_reads(&l).await, audits + 5, "every find is audited");
    assert_eq!(find("13800001234").a2("limit", "21").parse_errno(), 1001);
    // A till does not send the office ops.
    l.refused_from("T1", &find("13800001234"), 2013).await;
}

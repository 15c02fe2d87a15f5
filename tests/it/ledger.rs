//! The ledger through `store::txn::run`: every op's success path and its
//! errnos, asserting the database afterwards; idempotency; expiry.

use crate::ledger_support::*;

#[tokio::test]
async fn register_query_member() {
    let l = setup().await;
    let row = l
        .ok(&req("register", "CARD0001")
            .order("R1")
            .a2("name", "Li Wei")
            .a2("phone", "13800001234")
            .a2("level", "gold")
            .a2("birthday", "1990-05-01"))
        .await;
    assert_eq!(row.get("status"), Some("active"));
    assert_eq!(row.get("balance"), Some("0.00"));
    assert_eq!(row.get("replayed"), Some("0"));
    assert_eq!(l.card_row("CARD0001").await.0, d("0"));
    assert_eq!(l.count("SELECT count(*) FROM members").await, 1);
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE op = 'register'")
            .await,
        1
    );
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE answer IS NOT NULL")
            .await,
        1
    );
    // 2012: number in use; unknown level: 1001.
    l.refused(
        &req("register", "CARD0001")
            .order("R2")
            .a2("name", "X")
            .a2("phone", "13800001234")
            .a2("level", "gold"),
        2012,
    )
    .await;
    l.refused(
        &req("register", "CARD0002")
            .order("R3")
            .a2("name", "X")
            .a2("phone", "13800001234")
            .a2("level", "platinum"),
        1001,
    )
    .await;
    assert_eq!(l.count("SELECT count(*) FROM cards").await, 1);
    assert_eq!(l.count("SELECT count(*) FROM orders").await, 1);

    let q = l.ok(&req("query", "CARD0001")).await;
    assert_eq!(q.get("level"), Some("gold"));
    assert_eq!(q.get("points"), Some("0"));
    l.refused(&req("query", "NOPE0001"), 2001).await;
    let m = l.ok(&req("member", "CARD0001")).await;
    assert_eq!(m.get("phone"), Some("*******1234"));
    assert_eq!(m.get("birthday"), Some("1990-05-01"));
    assert_eq!(m.get("name"), Some("Li Wei"));
    l.check_books().await;
}

#[tokio::test]
async fn card_pin_counts_and_locks() {
    let l = setup().await;
    let ts0 = l.next_ts();
    l.card("CARD0002", "std", None, Some("1234")).await;
    l.refused(&req("query", "CARD0002"), 2009).await;
    assert_eq!(
        l.card_row("CARD0002").await.3,
        0,
        "a missing PIN is no guess"
    );
    for i in 1..=4 {
        l.refused(&req("query", "CARD0002").a2("pin", "9999"), 2009)
            .await;
        assert_eq!(l.card_row("CARD0002").await.3, i);
    }
    let q = l.ok(&req("query", "CARD0002").a2("pin", "1234")).await;
    assert_eq!(q.get("status"), Some("active"));
    assert_eq!(l.card_row("CARD0002").await.3, 0, "a right PIN resets");
    for _ in 0..5 {
        l.refused(
            &req("debit", "CARD0002")
                .amount("1")
                .order("D")
                .a2("pin", "0000"),
            2009,
        )
        .await;
    }
    let (_, _, status, count) = l.card_row("CARD0002").await;
    assert_eq!((status.as_str(), count), ("locked", 5));
    l.refused(&req("query", "CARD0002").a2("pin", "1234"), 2003)
        .await;
    // Refused requests spent their ts all the same.
    let sent = l.next_ts() - ts0 - 1;
    assert_eq!(l.count("SELECT count(*) FROM seen_ts").await, sent);
    // A manager unlocks: active, counter cleared.
    let u = l.ok(&req("unlock", "CARD0002").order("U1").mgr()).await;
    assert_eq!(u.get("status"), Some("active"));
    assert_eq!(l.card_row("CARD0002").await.3, 0);
    l.ok(&req("query", "CARD0002").a2("pin", "1234")).await;
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE pin_hash IS NULL OR pin_hash = convert_to('1234', 'UTF8')")
            .await,
        0,
        "PINs are stored only as keyed hashes"
    );
    l.check_books().await;
}

#[tokio::test]
async fn debit_balance_and_cash() {
    let l = setup().await;
    l.card("GOLD0001", "gold", Some("100"), None).await;
    let r = l
        .ok(&req("debit", "GOLD0001").amount("10").order("D1"))
        .await;
    assert_eq!(r.get("discount"), Some("0.50"));
    assert_eq!(r.get("charged"), Some("9.50"));
    assert_eq!(r.get("balance"), Some("90.50"));
    assert_eq!(r.get("points_delta"), Some("19"));
    assert_eq!(r.get("points"), Some("19"));
    let r = l
        .ok(&req("debit", "GOLD0001")
            .amount("20")
            .order("D2")
            .a2("tender", "cash"))
        .await;
    assert_eq!(r.get("charged"), Some("19.00"));
    assert_eq!(r.get("balance"), Some("90.50"));
    assert_eq!(r.get("points"), Some("57"));
    assert_eq!(l.card_row("GOLD0001").await.0, d("90.50"));
    assert_eq!(
        l.count("SELECT count(*) FROM lots WHERE card_no = 'GOLD0001'")
            .await,
        2
    );
    l.refused(&req("debit", "GOLD0001").amount("1000").order("D3"), 2004)
        .await;
    l.refused(&req("debit", "GOLD0001").amount("0").order("D4"), 2010)
        .await;
    l.refused(&req("debit", "NOPE0001").amount("1").order("D5"), 2001)
        .await;
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE op = 'debit'")
            .await,
        2
    );
    assert_eq!(l.card_row("GOLD0001").await.0, d("90.50"));
    l.ok(&req("lost", "GOLD0001").order("L1").mgr()).await;
    l.refused(&req("debit", "GOLD0001").amount("1").order("D6"), 2002)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn topup_bonus_rules() {
    let l = setup_with(|c| {
        c.ledger.bonus_rules = vec![bonus("100", "5"), bonus("500", "50")];
    })
    .await;
    l.card("CARD0003", "std", None, None).await;
    let r = l
        .ok(&req("topup", "CARD0003").amount("500").order("T1"))
        .await;
    assert_eq!(r.get("bonus"), Some("50.00"));
    assert_eq!(r.get("charged"), Some("500.00"));
    assert_eq!(r.get("balance"), Some("550.00"));
    let r = l
        .ok(&req("topup", "CARD0003").amount("99.99").order("T2"))
        .await;
    assert_eq!(r.get("balance"), Some("649.99"));
    l.refused(&req("topup", "CARD0003").amount("0").order("T3"), 2010)
        .await;
    l.refused(
        &req("topup", "CARD0003").amount("999999999999").order("T4"),
        2010,
    )
    .await;
    l.ok(&req("lock", "CARD0003").order("K1").mgr()).await;
    l.refused(&req("topup", "CARD0003").amount("1").order("T5"), 2003)
        .await;
    assert_eq!(l.card_row("CARD0003").await.0, d("649.99"));
    l.check_books().await;
}

#[tokio::test]
async fn points_and_redeem() {
    let l = setup().await;
    l.card("CARD0004", "std", None, Some("1234")).await;
    let r = l
        .ok(&req("points", "CARD0004")
            .order("P1")
            .a2("delta", "100")
            .a2("reason", "promo"))
        .await;
    assert_eq!(r.get("points"), Some("100"));
    l.ok(&req("points", "CARD0004")
        .order("P2")
        .a2("delta", "-30")
        .a2("reason", "fix"))
        .await;
    l.refused(
        &req("points", "CARD0004")
            .order("P3")
            .a2("delta", "-71")
            .a2("reason", "fix"),
        2005,
    )
    .await;
    l.refused(
        &req("points", "CARD0004")
            .order("P4")
            .a2("delta", "0")
            .a2("reason", "fix"),
        2010,
    )
    .await;
    let r = l
        .ok(&req("redeem", "CARD0004")
            .order("G1")
            .a2("cost", "50")
            .a2("gift", "mug")
            .a2("pin", "1234"))
        .await;
    assert_eq!(r.get("points"), Some("20"));
    assert_eq!(r.get("points_delta"), Some("-50"));
    for (cost, pin, errno) in [
        ("21", "1234", 2005),
        ("0", "1234", 2010),
        ("1", "1111", 2009),
    ] {
        l.refused(
            &req("redeem", "CARD0004")
                .order("G2")
                .a2("cost", cost)
                .a2("gift", "mug")
                .a2("pin", pin),
            errno,
        )
        .await;
    }
    assert_eq!(l.card_row("CARD0004").await.1, 20);
    assert_eq!(
        l.count("SELECT sum(points_left)::bigint FROM lots WHERE card_no = 'CARD0004'")
            .await,
        20
    );
    l.check_books().await;
}

#[tokio::test]
async fn reverse_undoes_whole() {
    let l = setup().await;
    l.card("CARD0005", "std", Some("100"), None).await;
    l.ok(&req("debit", "CARD0005").amount("10").order("D1"))
        .await;
    l.refused(
        &req("reverse", "D1").order("V0").by("c1").a2("mpin", MPIN),
        2011,
    )
    .await;
    l.refused(
        &req("reverse", "D1").order("V0").by("m1").a2("mpin", "0000"),
        2011,
    )
    .await;
    l.refused(
        &req("reverse", "D1")
            .order("V0")
            .by("nobody")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    let fails = l
        .count("SELECT pin_fail_count::bigint FROM operators WHERE operator_id = 'm1'")
        .await;
    assert_eq!(fails, 1);
    let r = l.ok(&req("reverse", "D1").order("V1").mgr()).await;
    assert_eq!(r.get("balance"), Some("100.00"));
    assert_eq!(r.get("points"), Some("0"));
    assert_eq!(r.get("terminal"), Some("T1"));
    assert_eq!(r.get("card"), Some("CARD0005"));
    assert_eq!(
        l.count("SELECT pin_fail_count::bigint FROM operators WHERE operator_id = 'm1'")
            .await,
        0,
        "a right manager PIN resets the count"
    );
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'D1' AND reversed")
            .await,
        1
    );
    assert_eq!(
        l.count(
            "SELECT coalesce(sum(points_left), 0)::bigint FROM lots WHERE card_no = 'CARD0005'"
        )
        .await,
        0
    );
    l.refused(&req("reverse", "D1").order("V2").mgr(), 2008)
        .await;
    l.refused(&req("refund", "D1").amount("1").order("V3").mgr(), 2008)
        .await;
    l.refused(&req("reverse", "NOSUCH").order("V4").mgr(), 2007)
        .await;
    l.refused(&req("reverse", "reg-CARD0005").order("V5").mgr(), 2007)
        .await;

    // A redeem reversed gives the points back to the lots they came from.
    l.ok(&req("points", "CARD0005")
        .order("P1")
        .a2("delta", "50")
        .a2("reason", "x"))
        .await;
    l.ok(&req("redeem", "CARD0005")
        .order("G1")
        .a2("cost", "30")
        .a2("gift", "x"))
        .await;
    let r = l.ok(&req("reverse", "G1").order("V6").mgr()).await;
    assert_eq!(r.get("points"), Some("50"));
    assert_eq!(
        l.count("SELECT sum(points_left)::bigint FROM lots WHERE card_no = 'CARD0005'")
            .await,
        50
    );

    // Only on the original's business day.
    l.ok(&req("topup", "CARD0005").amount("5").order("T9"))
        .await;
    l.client()
        .await
        .execute(
            "UPDATE orders SET business_day = business_day - 1 WHERE order_no = 'T9'",
            &[],
        )
        .await
        .unwrap();
    l.refused(&req("reverse", "T9").order("V7").mgr(), 2008)
        .await;

    // Another terminal of the same store may name the original; another store may not.
    l.send_from("T2", &req("topup", "CARD0005").amount("7").order("X1"))
        .await
        .unwrap();
    l.refused_from(
        "T3",
        &req("reverse", "X1")
            .order("V8")
            .by("m3")
            .a2("mpin", MPIN)
            .a2("terminal", "T2"),
        2007,
    )
    .await;
    l.refused(&req("reverse", "X1").order("V8").mgr(), 2007)
        .await;
    let r = l
        .ok(&req("reverse", "X1").order("V8").mgr().a2("terminal", "T2"))
        .await;
    assert_eq!(r.get("terminal"), Some("T2"));
    assert_eq!(l.card_row("CARD0005").await.0, d("105.00"));
    l.check_books().await;
}

#[tokio::test]
async fn manager_pin_lockout_and_reset() {
    let l = setup().await;
    l.card("CARD0006", "std", None, None).await;
    for _ in 0..5 {
        l.refused(
            &req("lock", "CARD0006")
                .order("K1")
                .by("m1")
                .a2("mpin", "1111"),
            2011,
        )
        .await;
    }
    assert_eq!(
        l.count("SELECT count(*) FROM operators WHERE operator_id = 'm1' AND status = 'disabled'")
            .await,
        1
    );
    l.refused(&req("lock", "CARD0006").order("K1").mgr(), 2011)
        .await;
    let c = l.client().await;
    cardswitch::store::operators::reset_pin(&c, &l.env.hash_key, &l.env.row_keys, "S1", "m1", MPIN)
        .await
        .unwrap();
    drop(c);
    let r = l.ok(&req("lock", "CARD0006").order("K1").mgr()).await;
    assert_eq!(r.get("status"), Some("locked"));
    // A cashier may not, a manager needs no mpin for a cashier op.
    l.refused(
        &req("unlock", "CARD0006")
            .order("K2")
            .by("c1")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    l.refused(&req("query", "CARD0006").by("ghost"), 2011).await;
    assert_eq!(l.card_row("CARD0006").await.2, "locked");
}

#[tokio::test]
async fn refunds_in_parts() {
    let l = setup().await;
    l.card("GOLD0002", "gold", Some("200"), None).await;
    let r = l
        .ok(&req("debit", "GOLD0002").amount("100").order("D1"))
        .await;
    assert_eq!(r.get("charged"), Some("95.00"));
    assert_eq!(r.get("points"), Some("190"));
    let r = l
        .ok(&req("refund", "D1").amount("50").order("F1").mgr())
        .await;
    assert_eq!(r.get("balance"), Some("155.00"));
    assert_eq!(r.get("points_delta"), Some("-100"));
    assert_eq!(r.get("cash_refund"), Some("0.00"));
    assert_eq!(r.get("charged"), Some("50.00"));
    l.refused(&req("refund", "D1").amount("45.01").order("F2").mgr(), 2008)
        .await;
    let r = l
        .ok(&req("refund", "D1").amount("45").order("F2").mgr())
        .await;
    assert_eq!(r.get("points"), Some("0"));
    assert_eq!(r.get("balance"), Some("200.00"));
    l.refused(&req("refund", "D1").amount("0.01").order("F3").mgr(), 2008)
        .await;
    l.refused(&req("reverse", "D1").order("F3").mgr(), 2008)
        .await;
    let top = l
        .count("SELECT count(*) FROM orders WHERE op = 'topup'")
        .await;
    assert_eq!(top, 1);
    let top_order: String = l
        .client()
        .await
        .query_one("SELECT order_no FROM orders WHERE op = 'topup'", &[])
        .await
        .unwrap()
        .get(0);
    l.refused(
        &req("refund", &top_order).amount("1").order("F4").mgr(),
        2007,
    )
    .await;
    l.refused(&req("refund", "D1").amount("0").order("F5").mgr(), 2010)
        .await;
    // A cash debit is refunded in cash.
    l.ok(&req("debit", "GOLD0002")
        .amount("10")
        .order("D2")
        .a2("tender", "cash"))
        .await;
    let r = l
        .ok(&req("refund", "D2").amount("9.50").order("F6").mgr())
        .await;
    assert_eq!(r.get("cash_refund"), Some("9.50"));
    assert_eq!(r.get("balance"), Some("200.00"));
    // Points already spent: the refund is refused rather than leaving them.
    l.ok(&req("debit", "GOLD0002").amount("100").order("D3"))
        .await;
    l.ok(&req("redeem", "GOLD0002")
        .order("G1")
        .a2("cost", "190")
        .a2("gift", "x"))
        .await;
    l.refused(&req("refund", "D3").amount("95").order("F7").mgr(), 2005)
        .await;
    assert_eq!(
        l.count("SELECT refunded::bigint FROM orders WHERE order_no = 'D1'")
            .await,
        95
    );
    l.check_books().await;
}

#[tokio::test]
async fn transfer_between_cards() {
    let l = setup().await;
    l.card("CARDA001", "std", Some("100"), Some("1234")).await;
    l.card("CARDB001", "std", None, None).await;
    let r = l
        .ok(&req("transfer", "CARDA001")
            .amount("30")
            .order("X1")
            .mgr()
            .a2("to", "CARDB001")
            .a2("pin", "1234"))
        .await;
    assert_eq!(r.get("balance"), Some("70.00"));
    assert_eq!(r.get("to_card"), Some("CARDB001"));
    assert_eq!(r.get("to_balance"), Some("30.00"));
    assert_eq!(r.get("charged"), Some("30.00"));
    assert_eq!(l.card_row("CARDB001").await.0, d("30"));
    let t = |amount: &str, to: &str, pin: &str| {
        req("transfer", "CARDA001")
            .amount(amount)
            .order("X2")
            .mgr()
            .a2("to", to)
            .a2("pin", pin)
    };
    l.refused(&t("1000", "CARDB001", "1234"), 2004).await;
    l.refused(&t("1", "NOPE0001", "1234"), 2001).await;
    l.refused(&t("1", "CARDA001", "1234"), 1001).await;
    l.refused(&t("1", "CARDB001", "9999"), 2009).await;
    l.refused(&t("0", "CARDB001", "1234"), 2010).await;
    l.ok(&req("lock", "CARDB001").order("K1").mgr()).await;
    l.refused(&t("1", "CARDB001", "1234"), 2003).await;
    assert_eq!(l.card_row("CARDA001").await.0, d("70"));
    // A transfer reversed moves the money back.
    l.ok(&req("unlock", "CARDB001").order("K2").mgr()).await;
    l.ok(&req("reverse", "X1").order("V1").mgr()).await;
    assert_eq!(l.card_row("CARDA001").await.0, d("100"));
    assert_eq!(l.card_row("CARDB001").await.0, d("0"));
    l.check_books().await;
}

#[tokio::test]
async fn lost_found_lock_unlock() {
    let l = setup().await;
    l.card("CARD0007", "std", Some("10"), None).await;
    let st = |op: &str, o: &str| req(op, "CARD0007").order(o).mgr();
    assert_eq!(l.ok(&st("lost", "S1")).await.get("status"), Some("lost"));
    assert_eq!(l.card_row("CARD0007").await.2, "lost");
    assert_eq!(l.ok(&st("lost", "S2")).await.get("status"), Some("lost"));
    l.refused(&req("query", "CARD0007"), 2002).await;
    l.refused(&st("lock", "S3"), 2002).await;
    assert_eq!(l.ok(&st("found", "S4")).await.get("status"), Some("active"));
    assert_eq!(l.ok(&st("lock", "S5")).await.get("status"), Some("locked"));
    l.refused(&req("query", "CARD0007"), 2003).await;
    l.refused(&st("found", "S6"), 2003).await;
    assert_eq!(
        l.ok(&st("unlock", "S7")).await.get("status"),
        Some("active")
    );
    assert_eq!(l.card_row("CARD0007").await.2, "active");
    l.refused(&req("lost", "NOPE0001").order("S8").mgr(), 2001)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn replace_moves_everything() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(12)).await;
    l.card("OLDC0001", "std", Some("100"), Some("1234")).await;
    l.ok(&req("debit", "OLDC0001")
        .amount("10")
        .order("D1")
        .a2("pin", "1234"))
        .await;
    l.card("USED0001", "std", None, None).await;
    l.refused(
        &req("replace", "OLDC0001")
            .order("R1")
            .mgr()
            .a2("new", "USED0001"),
        2012,
    )
    .await;
    let r = l
        .ok(&req("replace", "OLDC0001")
            .order("R1")
            .mgr()
            .a2("new", "NEWC0001"))
        .await;
    assert_eq!(r.get("card"), Some("OLDC0001"));
    assert_eq!(r.get("new_card"), Some("NEWC0001"));
    assert_eq!(r.get("balance"), Some("90.00"));
    assert_eq!(r.get("points"), Some("10"));
    let (b, p, s, _) = l.card_row("OLDC0001").await;
    assert_eq!((b, p, s.as_str()), (d("0"), 0, "closed"));
    let (b, p, s, _) = l.card_row("NEWC0001").await;
    assert_eq!((b, p, s.as_str()), (d("90"), 10, "active"));
    assert_eq!(
        l.count(
            "SELECT count(*) FROM lots n JOIN lots o ON o.expires_at = n.expires_at
              WHERE n.card_no = 'NEWC0001' AND o.card_no = 'OLDC0001' AND n.points_left = 10"
        )
        .await,
        1,
        "the lot moved with its expiry"
    );
    assert_eq!(
        l.count(
            "SELECT count(DISTINCT member_id) FROM cards WHERE card_no IN ('OLDC0001', 'NEWC0001')"
        )
        .await,
        1
    );
    l.ok(&req("query", "NEWC0001").a2("pin", "1234")).await;
    l.refused(&req("query", "NEWC0001").a2("pin", "9999"), 2009)
        .await;
    l.refused(
        &req("replace", "OLDC0001")
            .order("R2")
            .mgr()
            .a2("new", "NEWC0002"),
        2003,
    )
    .await;
    l.check_books().await;
}

#[tokio::test]
async fn close_pays_out() {
    let l = setup().await;
    l.card("CARD0008", "std", Some("55.50"), None).await;
    l.ok(&req("points", "CARD0008")
        .order("P1")
        .a2("delta", "7")
        .a2("reason", "x"))
        .await;
    let r = l.ok(&req("close", "CARD0008").order("C1").mgr()).await;
    assert_eq!(r.get("cash_refund"), Some("55.50"));
    assert_eq!(r.get("status"), Some("closed"));
    assert_eq!(r.get("balance"), Some("0.00"));
    let (b, p, s, _) = l.card_row("CARD0008").await;
    assert_eq!((b, p, s.as_str()), (d("0"), 0, "closed"));
    assert_eq!(
        l.count("SELECT count(*) FROM cards WHERE closed_at IS NOT NULL")
            .await,
        1
    );
    l.refused(&req("query", "CARD0008"), 2003).await;
    l.refused(&req("topup", "CARD0008").amount("1").order("T1"), 2003)
        .await;
    l.refused(&req("close", "CARD0008").order("C2").mgr(), 2003)
        .await;
    l.check_books().await;
}

#[tokio::test]
async fn idempotent_replays_and_reuse() {
    let l = setup().await;
    l.card("CARD0009", "std", None, None).await;
    let t = req("topup", "CARD0009").amount("50").order("O1");
    let first = l.ok(&t).await;
    // Same meaning, other spelling: a replay.
    let again = l
        .ok(&req("topup", "CARD0009").amount("50.00").order("O1"))
        .await;
    assert_eq!(again.get("replayed"), Some("1"));
    for f in ["txn_id", "balance", "posted_at", "order_no", "op"] {
        assert_eq!(first.get(f), again.get(f), "{f}");
    }
    l.refused(&req("topup", "CARD0009").amount("51").order("O1"), 2006)
        .await;
    l.refused(&req("debit", "CARD0009").amount("50").order("O1"), 2006)
        .await;
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE order_no = 'O1'")
            .await,
        1
    );
    assert_eq!(l.card_row("CARD0009").await.0, d("50"));
    // A refused posting does not use its order_no up.
    l.refused(&req("debit", "CARD0009").amount("80").order("O2"), 2004)
        .await;
    l.ok(&req("topup", "CARD0009").amount("50").order("O3"))
        .await;
    let r = l
        .ok(&req("debit", "CARD0009").amount("80").order("O2"))
        .await;
    assert_eq!(r.get("balance"), Some("20.00"));
    // The same ts twice: 1006, whatever the first one's outcome.
    let ts = l.next_ts();
    let f = req("debit", "CARD0009").amount("1000").order("O4").form();
    let e = cardswitch::keys::run_txn(&l.pool, &l.env, &l.ctx("T1", ts), &f)
        .await
        .and_then(cardswitch::store::txn::Committed::into_rows)
        .unwrap_err();
    assert_eq!(e.errno().code(), 2004);
    let f = req("topup", "CARD0009").amount("1").order("O5").form();
    let e = cardswitch::keys::run_txn(&l.pool, &l.env, &l.ctx("T1", ts), &f)
        .await
        .and_then(cardswitch::store::txn::Committed::into_rows)
        .unwrap_err();
    assert_eq!(e.errno().code(), 1006);
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'O5'")
            .await,
        0
    );
    // Another terminal has its own order numbers.
    l.send_from("T2", &req("topup", "CARD0009").amount("1").order("O1"))
        .await
        .unwrap();
    assert_eq!(l.card_row("CARD0009").await.0, d("21"));
    l.check_books().await;
}

/// The load is folded into the claim only while the claim's snapshot is
/// fresh: two debits that took their snapshots while a third connection held
/// the card both post, the second one after the first committed, so its
/// snapshot misses the first one's posting and it must load again (were it
/// to trust that snapshot, the card's chain would look tampered: 3001).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_waited_for_a_posting_loads_again() {
    let l = std::sync::Arc::new(setup().await);
    l.card("CARD0030", "std", Some("100"), None).await;
    let mut holder = l.client().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM cards WHERE card_no = 'CARD0030' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for (i, amount) in ["10", "20"].into_iter().enumerate() {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            l.send(
                &req("debit", "CARD0030")
                    .amount(amount)
                    .order(&format!("WAITED{i}")),
            )
            .await
        }));
    }
    // Both claims have taken their snapshots and wait for the card.
    let started = std::time::Instant::now();
    while l
        .count(
            "SELECT count(*) FROM pg_stat_activity
              WHERE wait_event_type = 'Lock' AND query LIKE 'WITH ts AS%'",
        )
        .await
        < 2
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hold.commit().await.unwrap();
    let mut charged = d("0");
    for t in tasks {
        let rows = t.await.unwrap().expect("both debits post");
        charged += d(rows.0[0].get("charged").unwrap());
    }
    assert!(charged > d("0"));
    assert_eq!(l.card_row("CARD0030").await.0, d("100") - charged);
    l.check_books().await;
}

/// A card held longer than `db.lock_timeout` (by something that is not a
/// posting) gets the request answered 3002 with nothing changed; once it is
/// free, the same order posts.
#[tokio::test]
async fn a_card_held_too_long_is_answered_unavailable() {
    let l = setup_with(|c| c.db.lock_timeout = std::time::Duration::from_millis(300)).await;
    l.card("CARD0031", "std", Some("100"), None).await;
    let debit = || req("debit", "CARD0031").amount("10").order("HELD");
    let mut holder = l.client().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM cards WHERE card_no = 'CARD0031' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(errno_of(&l.send(&debit()).await), 3002);
    hold.rollback().await.unwrap();
    assert_eq!(l.card_row("CARD0031").await.0, d("100"));
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'HELD'")
            .await,
        0
    );
    let r = l.ok(&debit()).await;
    assert_ne!(r.get("replayed"), Some("1"));
    assert_eq!(
        l.card_row("CARD0031").await.0,
        d("100") - d(r.get("charged").unwrap())
    );
    l.check_books().await;
}

#[tokio::test]
async fn racing_twins_post_once() {
    let l = std::sync::Arc::new(setup().await);
    l.card("CARD0010", "std", None, None).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            l.send(&req("topup", "CARD0010").amount("10").order("TWIN"))
                .await
        }));
    }
    let mut txn_ids = std::collections::HashSet::new();
    let mut replayed = 0;
    for t in tasks {
        let rows = t.await.unwrap().expect("every twin answers");
        let row = &rows.0[0];
        txn_ids.insert(row.get("txn_id").unwrap().to_string());
        replayed += i32::from(row.get("replayed") == Some("1"));
    }
    assert_eq!(txn_ids.len(), 1);
    assert_eq!(replayed, 15);
    assert_eq!(l.card_row("CARD0010").await.0, d("10"));
    assert_eq!(
        l.count("SELECT count(*) FROM postings WHERE order_no = 'TWIN'")
            .await,
        1
    );
    // Racing registrations of one number: one wins, the rest 2012.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            l.send(
                &req("register", "RACE0001")
                    .order(&format!("RR{i}"))
                    .a2("name", "x")
                    .a2("phone", "13800001234")
                    .a2("level", "std"),
            )
            .await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(errno_of(&t.await.unwrap()));
    }
    codes.sort();
    assert_eq!(codes, [0, 2012, 2012, 2012, 2012, 2012, 2012, 2012]);
    l.check_books().await;
}

#[tokio::test]
async fn points_expire_lazily() {
    let l = setup_with(|c| c.ledger.points_expiry_months = Some(6)).await;
    l.card("CARD0011", "std", None, None).await;
    l.ok(&req("points", "CARD0011")
        .order("P1")
        .a2("delta", "100")
        .a2("reason", "x"))
        .await;
    l.ok(&req("points", "CARD0011")
        .order("P2")
        .a2("delta", "5")
        .a2("reason", "x"))
        .await;
    assert_eq!(
        l.count("SELECT count(*) FROM lots WHERE card_no = 'CARD0011' AND expires_at > now() + interval '5 months'")
            .await,
        2
    );
    l.client()
        .await
        .execute(
            "UPDATE lots SET expires_at = now() - interval '1 day' WHERE points = 100",
            &[],
        )
        .await
        .unwrap();
    let q = l.ok(&req("query", "CARD0011")).await;
    assert_eq!(q.get("points"), Some("5"));
    assert_eq!(l.card_row("CARD0011").await.1, 5);
    assert_eq!(
        l.count("SELECT points_delta FROM postings WHERE op = 'expire'")
            .await,
        -100
    );
    l.refused(
        &req("redeem", "CARD0011")
            .order("G1")
            .a2("cost", "6")
            .a2("gift", "x"),
        2005,
    )
    .await;
    l.check_books().await;
}

#[tokio::test]
async fn history_newest_first() {
    let l = setup().await;
    l.card("CARD0012", "std", Some("10"), None).await;
    l.ok(&req("debit", "CARD0012").amount("1").order("D1"))
        .await;
    l.ok(&req("debit", "CARD0012").amount("2").order("D2"))
        .await;
    let rows = l
        .send(&req("history", "CARD0012").a2("limit", "2"))
        .await
        .unwrap()
        .0;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get("order_no"), Some("D2"));
    assert_eq!(rows[0].get("balance"), Some("7.00"));
    assert_eq!(rows[0].get("terminal"), Some("T1"));
    assert_eq!(rows[1].get("order_no"), Some("D1"));
    assert!(rows[0].get("replayed").is_none());
    let all = l.send(&req("history", "CARD0012")).await.unwrap().0;
    assert_eq!(all.len(), 4);
    l.refused(&req("history", "NOPE0001"), 2001).await;
}

#[tokio::test]
async fn operators_belong_to_their_store() {
    let l = setup().await;
    l.card("CARD0013", "std", Some("10"), None).await;
    // m3 is a manager of S2; T1 is a terminal of S1.
    l.refused(
        &req("lock", "CARD0013")
            .order("K1")
            .by("m3")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    l.refused_from(
        "T3",
        &req("lock", "CARD0013")
            .order("K1")
            .by("m1")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    l.send_from(
        "T3",
        &req("lock", "CARD0013")
            .order("K1")
            .by("m3")
            .a2("mpin", MPIN),
    )
    .await
    .unwrap();
    assert_eq!(l.card_row("CARD0013").await.2, "locked");
    // A cashier op needs no operator; a cashier of the store may send it.
    l.ok(&req("unlock", "CARD0013").order("K2").mgr()).await;
    l.ok(&req("query", "CARD0013").by("c1")).await;
    l.ok(&req("query", "CARD0013").by("m1")).await;
}

#[tokio::test]
async fn points_out_of_step_with_lots_is_3001() {
    let l = setup().await;
    l.card("CARD0014", "std", Some("10"), None).await;
    l.ok(&req("points", "CARD0014")
        .order("P1")
        .a2("delta", "10")
        .a2("reason", "x"))
        .await;
    l.client()
        .await
        .execute(
            "UPDATE cards SET points = 1000 WHERE card_no = 'CARD0014'",
            &[],
        )
        .await
        .unwrap();
    let postings = l.count("SELECT count(*) FROM postings").await;
    l.refused(&req("debit", "CARD0014").amount("1").order("D1"), 3001)
        .await;
    assert_eq!(l.count("SELECT count(*) FROM postings").await, postings);
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'D1'")
            .await,
        0
    );
    assert_eq!(l.card_row("CARD0014").await.0, d("10"));
}

#[tokio::test]
async fn postings_partitions_and_safety_net() {
    let l = setup().await;
    let parts = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'postings'::regclass";
    assert_eq!(
        l.count(parts).await,
        3,
        "this month, the next and the DEFAULT"
    );
    {
        let mut c = l.client().await;
        cardswitch::store::postings::ensure_partitions(&mut c, chrono::Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(l.count(parts).await, 3, "making them again changes nothing");
    l.card("CARD0015", "std", Some("10"), None).await;
    assert_eq!(
        l.count("SELECT count(*) FROM postings_default").await,
        0,
        "this month's postings have their partition"
    );
    // A posting far past the partitions made ahead still lands.
    let mut ctx = l.ctx("T1", l.next_ts());
    ctx.now += chrono::TimeDelta::days(400);
    let f = req("topup", "CARD0015").amount("1").order("FUTURE").form();
    cardswitch::keys::run_txn(&l.pool, &l.env, &ctx, &f)
        .await
        .and_then(cardswitch::store::txn::Committed::into_rows)
        .unwrap();
    assert_eq!(l.count("SELECT count(*) FROM postings_default").await, 1);
    l.check_books().await;
}

#[tokio::test]
async fn remaining_errnos() {
    let l = setup().await;
    l.card("CARD0016", "std", Some("20"), Some("1234")).await;
    l.refused(&req("member", "NOPE0001"), 2001).await;
    l.refused(&req("member", "CARD0016"), 2009).await;
    l.refused(&req("history", "CARD0016"), 2009).await;
    l.refused(&req("topup", "NOPE0001").amount("1").order("T1"), 2001)
        .await;
    l.refused(
        &req("redeem", "NOPE0001")
            .order("G1")
            .a2("cost", "1")
            .a2("gift", "x"),
        2001,
    )
    .await;
    l.refused(&req("close", "CARD0016").order("C1").mgr(), 2009)
        .await;
    l.refused(
        &req("close", "CARD0016").order("C1").mgr().a2("pin", "9999"),
        2009,
    )
    .await;
    l.refused(&req("refund", "NOSUCH").amount("1").order("F1").mgr(), 2007)
        .await;
    l.refused(
        &req("refund", "NOSUCH")
            .amount("1")
            .order("F1")
            .by("c1")
            .a2("mpin", MPIN),
        2011,
    )
    .await;
    // A top-up already spent cannot be reversed: 2004, nothing moves.
    l.ok(&req("topup", "CARD0016").amount("30").order("T2"))
        .await;
    l.ok(&req("debit", "CARD0016")
        .amount("45")
        .order("D1")
        .a2("pin", "1234"))
        .await;
    l.refused(&req("reverse", "T2").order("V1").mgr(), 2004)
        .await;
    // Points earned and already spent cannot be reversed: 2005.
    l.ok(&req("redeem", "CARD0016")
        .order("G2")
        .a2("cost", "45")
        .a2("gift", "x")
        .a2("pin", "1234"))
        .await;
    l.refused(&req("reverse", "D1").order("V2").mgr(), 2005)
        .await;
    assert_eq!(l.card_row("CARD0016").await.0, d("5"));
    // A lost card cannot be closed (replace it) nor debited; a locked one not debited.
    l.ok(&req("lost", "CARD0016").order("L1").mgr()).await;
    l.refused(
        &req("close", "CARD0016").order("C2").mgr().a2("pin", "1234"),
        2002,
    )
    .await;
    l.refused(
        &req("transfer", "CARD0016")
            .amount("1")
            .order("X1")
            .mgr()
            .a2("to", "CARD0016"),
        1001,
    )
    .await;
    l.ok(&req("found", "CARD0016").order("L2").mgr()).await;
    l.ok(&req("lock", "CARD0016").order("L3").mgr()).await;
    l.refused(
        &req("debit", "CARD0016")
            .amount("1")
            .order("D2")
            .a2("pin", "1234"),
        2003,
    )
    .await;
    l.refused(
        &req("redeem", "CARD0016")
            .order("G3")
            .a2("cost", "1")
            .a2("gift", "x")
            .a2("pin", "1234"),
        2003,
    )
    .await;
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE answer IS NULL")
            .await,
        0,
        "no refusal left a claim"
    );
    l.check_books().await;
}

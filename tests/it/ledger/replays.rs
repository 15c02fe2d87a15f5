//! Idempotency: an order number replayed answers the first posting (or
//! 2006 if it means something else), a refused one is not used up, a ts is
//! spent once (1006); racing twins post once and racing registrations of
//! one number register it once.

use crate::ledger_support::*;

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
    assert_eq!(l.card_row("CARD0009").await.balance, d("50"));
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
    assert_eq!(l.card_row("CARD0009").await.balance, d("21"));
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
    assert_eq!(l.card_row("CARD0010").await.balance, d("10"));
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

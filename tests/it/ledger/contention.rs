//! A card row held by another transaction: a claim that waited for another
//! posting loads the card again, and one held past `db.lock_timeout` is
//! answered 3002 with nothing changed.

use crate::ledger_support::*;

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
    assert_eq!(l.card_row("CARD0030").await.balance, d("100") - charged);
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
    assert_eq!(l.card_row("CARD0031").await.balance, d("100"));
    assert_eq!(
        l.count("SELECT count(*) FROM orders WHERE order_no = 'HELD'")
            .await,
        0
    );
    let r = l.ok(&debit()).await;
    assert_ne!(r.get("replayed"), Some("1"));
    assert_eq!(
        l.card_row("CARD0031").await.balance,
        d("100") - d(r.get("charged").unwrap())
    );
    l.check_books().await;
}

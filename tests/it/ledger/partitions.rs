//! The postings table's monthly partitions: made ahead, made again
//! harmlessly, and a DEFAULT partition catching postings past them.

use crate::ledger_support::*;

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
    // No statistics for the JSON columns (migration 0024), on the
    // partitions made with it and on one made later alike.
    {
        let mut c = l.client().await;
        let later = chrono::Utc::now() + chrono::TimeDelta::days(70);
        cardswitch::store::postings::ensure_partitions(&mut c, later)
            .await
            .unwrap();
    }
    let stats =
        "SELECT count(*) FROM pg_attribute a JOIN pg_inherits i ON a.attrelid = i.inhrelid \
                 WHERE i.inhparent = 'postings'::regclass AND a.attname = 'detail' \
                   AND a.attstattarget = 0";
    assert_eq!(l.count(stats).await, l.count(parts).await);
    assert!(l.count(parts).await >= 4, "a partition was made for later");
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

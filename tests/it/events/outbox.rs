//! The outbox's cursor without endpoints: events pass it in order, as
//! many as asked, and what a later endpoint gets starts after them.

use cardswitch::store::events;

use crate::harness;

#[tokio::test]
async fn with_no_endpoint_events_pass_the_cursor_in_order_and_in_rounds() {
    let pool = harness::migrated_pool().await;
    let mut client = pool.get().await.unwrap();
    for op in ["topup", "debit", "refund"] {
        client
            .execute(
                "INSERT INTO events (created_at, card_no, op, body)
                 VALUES (now(), 'CARD0001', $1, jsonb_build_object('op', $1::text))",
                &[&op],
            )
            .await
            .unwrap();
    }
    let tx = client.transaction().await.unwrap();
    assert_eq!(events::pass_new(&tx, 2).await.unwrap(), 2);
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let taken = events::take_new(&tx, 10, false).await.unwrap();
    let ops: Vec<&str> = taken.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(ops, ["refund"], "the two passed are not taken again");
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert_eq!(events::pass_new(&tx, 2).await.unwrap(), 1);
    assert_eq!(events::pass_new(&tx, 2).await.unwrap(), 0, "none left");
    tx.commit().await.unwrap();
    let listed = events::list_events(&client, 0, 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(|e| e.sent),
        "every event passed counts as sent"
    );
}

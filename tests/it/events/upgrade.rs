//! Migration 0023 over a backlog: events written before it, not yet sent,
//! are taken first by the cursor, in id order; those already sent never
//! are.

use std::time::Duration;

use cardswitch::store::{self, events, migrate};

use crate::harness;

#[tokio::test]
async fn events_unsent_before_the_cursor_are_taken_first_and_sent_ones_never() {
    let url = harness::fresh_database().await;
    let pool = store::make_pool(url.parse().unwrap(), 2, Duration::from_secs(5)).unwrap();
    let mut client = pool.get().await.unwrap();
    // The schema as it was before the cursor, with an outbox backlog.
    let (before, cursor) = migrate::MIGRATIONS.split_at(22);
    assert_eq!(cursor[0].1, "events_cursor");
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for &(version, name, sql) in before {
        client.batch_execute(sql).await.unwrap();
        client
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await
            .unwrap();
    }
    for (op, sent) in [("topup", true), ("debit", false), ("refund", false)] {
        client
            .execute(
                "INSERT INTO events (created_at, card_no, op, body, fanned_out)
                 VALUES (now(), 'CARD0001', $1, jsonb_build_object('op', $1::text), $2)",
                &[&op, &sent],
            )
            .await
            .unwrap();
    }
    let later: Vec<i32> = cursor.iter().map(|m| m.0).collect();
    assert_eq!(migrate::run(&mut client).await.unwrap(), later);
    let tx = client.transaction().await.unwrap();
    let taken = events::take_new(&tx, 10, false).await.unwrap();
    let ops: Vec<&str> = taken.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(ops, ["debit", "refund"]);
    events::finish_new(&tx, taken.last().unwrap(), &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert!(events::take_new(&tx, 10, false).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let listed = events::list_events(&client, 0, 10).await.unwrap();
    assert!(listed.iter().all(|e| e.sent), "every event sent");
}

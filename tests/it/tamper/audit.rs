//! The audit chain: a deleted row (in the middle, or the last one, caught
//! by the chain head) is found, and concurrent inserts keep one chain.

use crate::ledger_support::*;

use super::{assert_clean, assert_found, busy_card, exec};

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
            cardswitch::store::audit::AuditKind::Refused,
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
            cardswitch::store::audit::AuditKind::Refused,
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
                    cardswitch::store::audit::AuditKind::Refused,
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
    // The daemon's audit writer appends in batches beside them.
    for t in 0..2 {
        let pool = l.pool.clone();
        let env = l.env.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            for i in 0..5 {
                let entries: Vec<_> = (0..4)
                    .map(|j| cardswitch::store::audit::Entry {
                        kind: cardswitch::store::audit::AuditKind::RefusedUnproved,
                        terminal: None,
                        actor: None,
                        source: Some("10.0.0.1".into()),
                        detail: serde_json::json!({"batch": t, "i": i, "j": j}),
                    })
                    .collect();
                let tx = c.transaction().await.unwrap();
                cardswitch::store::audit::append_batch(&tx, &env.row_keys, &entries)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(l.count("SELECT count(*) FROM audit").await, 80 + 40);
    assert_clean(&l).await;
}

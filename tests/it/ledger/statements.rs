//! Every shape the ledger's statements can be assembled in PREPAREs against
//! the real schema: the sections are text put together at run time, so a
//! section that does not fit beside another (a CTE named twice, a missing
//! comma, a parameter of the wrong type) is caught here and not by the first
//! request that needs that pair.

use crate::ledger_support::setup;

#[tokio::test]
async fn every_statement_shape_prepares() {
    let l = setup().await;
    let c = l.pool.get().await.unwrap();
    let shapes = cardswitch::store::ledger::statement_shapes();
    // claim: 32 shapes, 4 of which also fold 64 load masks, each of those
    // also as a batch's claim; load: 128 masks (the two card columns both
    // in or both out, 6 others); write: 512 masks; the order lock, refuse,
    // find and prior.
    assert_eq!(shapes.len(), 32 + 2 * 4 * 64 + 128 + 512 + 4);
    let mut failed = Vec::new();
    for s in &shapes {
        if let Err(e) = c.prepare_typed(&s.sql, &s.types).await {
            failed.push(format!("{}: {e:?}", s.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} shapes fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
    // A different shape is a different text: no two names share a statement.
    let mut texts: Vec<&str> = shapes.iter().map(|s| s.sql.as_str()).collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), shapes.len());
}

//! The ledger's prepared statements, kept by connection and shape
//! (`TxnEnv::statements`), not looked up by their text.

use crate::ledger_support::*;

#[tokio::test]
async fn a_shape_is_prepared_once_on_a_connection() {
    let l = setup().await;
    l.card("CARD0031", "std", Some("100"), None).await;
    l.ok(&req("debit", "CARD0031").amount("1").order("K1"))
        .await;
    let kept = l.env.statements.count();
    assert!(kept > 0, "a debit's statements are kept");
    for i in 2..6 {
        l.ok(&req("debit", "CARD0031").amount("1").order(&format!("K{i}")))
            .await;
    }
    // One request at a time gets the same connection back (the pool is
    // last in, first out), and the same shapes: nothing more is kept.
    assert_eq!(l.env.statements.count(), kept);
    assert_eq!(
        l.card_row("CARD0031").await.balance,
        d("95"),
        "every debit ran its own statements"
    );
}

//! Operators: the manager PIN (lockout after five wrong ones, reset by an
//! admin), cashier and manager rights, and operators belonging to their
//! store.

use crate::ledger_support::*;

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
    assert_eq!(l.card_row("CARD0006").await.status, "locked");
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
    assert_eq!(l.card_row("CARD0013").await.status, "locked");
    // A cashier op needs no operator; a cashier of the store may send it.
    l.ok(&req("unlock", "CARD0013").order("K2").mgr()).await;
    l.ok(&req("query", "CARD0013").by("c1")).await;
    l.ok(&req("query", "CARD0013").by("m1")).await;
}

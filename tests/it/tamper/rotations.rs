//! Key rotations keep `verify` clean: the master key, the row key
//! (interrupted and resumed, never laundering a tampered row, the running
//! ledger meeting the new key), and rows from before tamper evidence adopted
//! on request.

use cardswitch::store::verify::{self, Options};

use crate::ledger_support::*;

use super::{assert_clean, assert_found, busy_card, exec};

#[tokio::test]
async fn master_key_rotation_keeps_verify_clean() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    cardswitch::keys::admin::rotate_master(&l.config, &l.pool)
        .await
        .unwrap();
    // Keys as reloaded under the new master key.
    let c = l.client().await;
    let keys = cardswitch::keys::admin::row_keys(&l.config, &c)
        .await
        .unwrap();
    assert_eq!(keys.current_id(), l.env.row_keys.current_id());
    let r = verify::verify(&l.pool, &keys, Options::default())
        .await
        .unwrap();
    assert!(r.clean(), "{:#?}", r.findings);
    l.ok(&req("topup", "CARD0001").amount("1").order("after"))
        .await;
    assert_clean(&l).await;
}

#[tokio::test]
async fn row_key_rotation_keeps_verify_clean_and_the_ledger_serving() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    busy_card(&l, "CARD0002").await;
    let old = l.env.row_keys.current_id();
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert_ne!(r.key_id, old);
    assert!(r.refused.is_empty(), "{r:?}");
    assert!(r.rewritten > 0);
    assert_eq!(
        cardswitch::store::rekey::rows_behind(&l.pool, &r.key_id)
            .await
            .unwrap(),
        0,
        "every row under the new key"
    );
    {
        let c = l.client().await;
        let rk = cardswitch::keys::admin::row_keys(&l.config, &c)
            .await
            .unwrap();
        let rep = verify::verify(&l.pool, &rk, Options::default())
            .await
            .unwrap();
        assert!(rep.clean(), "after rotation: {:#?}", rep.findings);
    }
    // The running ledger (old keys in memory) meets the new key id, loads
    // it and goes on posting, now signing with it.
    l.ok(&req("topup", "CARD0001").amount("1").order("after"))
        .await;
    assert_eq!(l.env.row_keys.current_id(), r.key_id);
    assert_clean(&l).await;
    // Interrupted and resumed: a row still under the old key (as a daemon
    // that had not met the new key yet would write it) makes the next run
    // finish this rotation instead of starting another.
    let c = l.client().await;
    let rk = cardswitch::keys::admin::row_keys(&l.config, &c)
        .await
        .unwrap();
    assert_eq!(rk.current_id(), r.key_id);
    drop(c);
    exec(
        &l,
        &format!("UPDATE terminals SET mac_key_id = '{old}' WHERE terminal_id = 'T2'"),
    )
    .await;
    let again = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert_eq!(again.key_id, r.key_id);
    // T2's MAC was made under the new key but now names the old one: it
    // fails its check and is left, as tampering must be.
    assert_eq!(again.refused, vec!["terminals T2".to_string()]);
    exec(
        &l,
        &format!(
            "UPDATE terminals SET mac_key_id = '{}' WHERE terminal_id = 'T2'",
            r.key_id
        ),
    )
    .await;
    assert_clean(&l).await;
    // Run again with nothing behind: a further new key, still clean.
    let third = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert_ne!(third.key_id, r.key_id);
    assert!(third.refused.is_empty());
    assert_clean(&l).await;

    // A tampered card is not laundered by the rotation.
    exec(
        &l,
        "UPDATE cards SET balance = 1 WHERE card_no = 'CARD0002'",
    )
    .await;
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert!(r.refused.iter().any(|x| x == "cards CARD0002"), "{r:?}");
    assert_found(&l, "cards", "CARD0002", "mac").await;
}

/// A database from before tamper evidence: rows without MACs are refused
/// until `keys rotate-row-key --adopt-unmaced` MACs them as they are.
#[tokio::test]
async fn unmaced_rows_are_adopted_on_request() {
    let l = setup().await;
    busy_card(&l, "CARD0001").await;
    l.card("CARD0002", "std", None, None).await;
    exec(
        &l,
        "UPDATE cards SET row_mac = NULL, mac_key_id = NULL, sealed = NULL, last_mac = NULL,
                chain_len = 0;
         UPDATE postings SET row_mac = NULL, mac_key_id = NULL;
         UPDATE members SET row_mac = NULL, mac_key_id = NULL;
         UPDATE orders SET row_mac = NULL, mac_key_id = NULL;
         UPDATE lots SET row_mac = NULL, mac_key_id = NULL;
         UPDATE audit SET row_mac = NULL, mac_key_id = NULL;
         UPDATE audit_head SET last_mac = NULL, last_id = NULL;",
    )
    .await;
    assert_found(&l, "cards", "CARD0001", "mac").await;
    l.refused(&req("topup", "CARD0001").amount("1").order("B1"), 3001)
        .await;
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, false)
        .await
        .unwrap();
    assert!(r.refused.iter().any(|x| x == "cards CARD0001"), "{r:?}");
    let r = cardswitch::keys::admin::rotate_row_key(&l.config, &l.pool, false, true)
        .await
        .unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert_clean(&l).await;
    l.ok(&req("topup", "CARD0001").amount("1").order("B2"))
        .await;
    l.ok(&req("topup", "CARD0002").amount("1").order("B3"))
        .await;
    assert_clean(&l).await;
}

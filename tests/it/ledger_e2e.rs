//! The ledger through the whole encrypted protocol: a daemon on a socket,
//! the reference client's handshake, postings, a replay and 2006.

use std::time::Duration;

use cardswitch::client::Client;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::message::InnerForm;

use crate::harness::{Daemon, Fixture};

fn form(s: &str) -> InnerForm {
    InnerForm::parse(s.as_bytes()).unwrap()
}

#[tokio::test]
async fn postings_over_the_wire() {
    let fx = Fixture::new().await;
    let password = fx.terminal("T1", "S1").await;
    {
        let c = fx.client().await;
        let secrets = cardswitch::keys::load_secrets(&fx.config.keys_dir, &c)
            .await
            .unwrap();
        cardswitch::store::operators::add_level(
            &c,
            &secrets.row_keys,
            "gold",
            "0.9".parse().unwrap(),
            "1".parse().unwrap(),
        )
        .await
        .unwrap();
        cardswitch::store::operators::add_operator(
            &c,
            &secrets.hash_key,
            &secrets.row_keys,
            "S1",
            "boss",
            "manager",
            Some("8642"),
        )
        .await
        .unwrap();
    }
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let mut session = None;
    for _ in 0..100 {
        match c.handshake("T1", &password, &fx.root).await {
            Ok(s) => {
                session = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let s = session.expect("handshake");
    let send = |f: &'static str| {
        let c = &c;
        let s = &s;
        async move { c.txn(s, &form(f)).await.unwrap() }
    };
    let r = send(
        "op=register&order_no=E1&attr1=WIRE0001&attr2=name%3DLi%26phone%3D13800001234%26level%3Dgold%26pin%3D1234",
    )
    .await;
    assert_eq!(r.errno, Errno::Ok);
    assert!(r.mac_verified);
    let r = send("op=topup&amount=100&order_no=E2&attr1=WIRE0001").await;
    assert_eq!(r.rows.0[0].get("balance"), Some("100.00"));
    let debit = "op=debit&amount=10&order_no=E3&attr1=WIRE0001&attr2=pin%3D1234";
    let first = send(debit).await;
    let row = &first.rows.0[0];
    assert_eq!(row.get("charged"), Some("9.00"));
    assert_eq!(row.get("balance"), Some("91.00"));
    assert_eq!(row.get("points"), Some("9"));
    // The terminal got no answer and resends: the same posting, replayed.
    let again = send(debit).await;
    assert_eq!(again.rows.0[0].get("replayed"), Some("1"));
    assert_eq!(again.rows.0[0].get("txn_id"), row.get("txn_id"));
    let r = send("op=debit&amount=11&order_no=E3&attr1=WIRE0001&attr2=pin%3D1234").await;
    assert_eq!(r.errno, Errno::OrderReused);
    let r = send("op=query&attr1=WIRE0001").await;
    assert_eq!(r.errno, Errno::WrongPin);
    let r = send("op=lock&order_no=E4&operator=boss&attr1=WIRE0001&attr2=mpin%3D8642").await;
    assert_eq!(r.rows.0[0].get("status"), Some("locked"));
    let r = send("op=unlock&order_no=E5&operator=boss&attr1=WIRE0001&attr2=mpin%3D0000").await;
    assert_eq!(r.errno, Errno::OperatorRefused);
    let n: i64 = fx
        .client()
        .await
        .query_one("SELECT count(*) FROM postings WHERE order_no = 'E3'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    d.stop().await.unwrap();
}

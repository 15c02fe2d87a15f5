//! A node that stops taking writes under a running daemon (what a failover
//! looks like from behind a proxy): postings answer 3002 with nothing
//! changed, `/healthz` says why it is 503, and once a primary is back the
//! daemon's pool holds no connection to the read-only node, so the
//! terminal's resend with the same `order_no` posts once, without a restart.

use cardswitch::protocol::errno::Errno;

use crate::harness::Fixture;

use super::{setup, Setup};

const DEBIT: &[u8] = b"op=debit&amount=1.00&order_no=FO-1&attr1=CARD0001";

#[tokio::test]
async fn a_read_only_node_is_3002_then_the_resend_posts_once() {
    let Setup { fx, d, c, password } = setup().await;
    let s = c.handshake("T1", &password, &fx.root).await.unwrap();
    let first = b"op=debit&amount=1.00&order_no=FO-0&attr1=CARD0001";
    assert_eq!(c.txn_raw_inner(&s, first).await.unwrap().errno, Errno::Ok);
    set_read_only(&fx, true).await;
    // Every connection the daemon opens from now on is read-only.
    disconnect_others(&fx).await;
    let b = super::build(&s, c.clock.next(), DEBIT);
    let r = super::send_referer(&c, &b).await;
    super::expect_txn(&s, &b, &r, Errno::Unavailable);
    assert_eq!(
        balance(&fx).await,
        "11.50",
        "a refused write changed nothing"
    );
    set_read_only(&fx, false).await;
    // No restart, no reconnect by hand: the resend (same order, new ts) posts.
    let resent = c.txn_raw_inner(&s, DEBIT).await.unwrap();
    assert_eq!(
        resent.errno,
        Errno::Ok,
        "the pool kept read-only connections"
    );
    let again = c.txn_raw_inner(&s, DEBIT).await.unwrap();
    assert_eq!(again.errno, Errno::Ok);
    assert_eq!(balance(&fx).await, "10.50", "charged once");

    // The health check says why, and recovers the same way.
    set_read_only(&fx, true).await;
    disconnect_others(&fx).await;
    let health = d.get("/healthz").await.unwrap();
    assert_eq!(health.status, 503);
    let reason = String::from_utf8_lossy(&health.body).to_string();
    assert!(reason.contains("read-only"), "{reason}");
    set_read_only(&fx, false).await;
    assert_eq!(d.get("/healthz").await.unwrap().status, 200);
    d.stop().await.unwrap();
}

/// `default_transaction_read_only` for the database: what a standby's
/// sessions see. Setting it needs a session that is not read-only itself.
async fn set_read_only(fx: &Fixture, on: bool) {
    let c = direct(fx).await;
    let db: String = c
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let change = if on {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    // Its own message: a multi-statement message is one transaction, begun
    // read-only before the SET could take effect.
    c.batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    let sql = format!("ALTER DATABASE \"{db}\" {change}");
    c.batch_execute(&sql).await.unwrap();
}

/// Ends every session on the database but this one, as a restart would.
async fn disconnect_others(fx: &Fixture) {
    direct(fx)
        .await
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
}

async fn balance(fx: &Fixture) -> String {
    let c = direct(fx).await;
    c.batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    let row = c
        .query_one(
            "SELECT balance::text FROM cards WHERE card_no = 'CARD0001'",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

/// A connection of the test's own, outside the fixture's pool (whose
/// connections `disconnect_others` ends too).
async fn direct(fx: &Fixture) -> tokio_postgres::Client {
    let url = fx.config.database_url.as_deref().expect("tests use a URL");
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

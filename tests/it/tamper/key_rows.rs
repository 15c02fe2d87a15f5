//! Day keys and sessions (through a running daemon): their rows are MACed
//! like the ledger's.

use cardswitch::client::{wire, Client, Refused, Session};
use cardswitch::crypto::aead;
use cardswitch::keys::admin;
use cardswitch::protocol::canonical;
use cardswitch::protocol::errno::Errno;
use cardswitch::protocol::message::InnerForm;
use cardswitch::protocol::xml::parse_answer;
use cardswitch::store::verify::{self, Options, Report};

use crate::harness::{Daemon, Fixture};

fn query() -> InnerForm {
    InnerForm::parse(b"op=query&attr1=CARD0001").unwrap()
}

struct Setup {
    fx: Fixture,
    d: Daemon,
    c: Client,
    pw: String,
    /// Logged in, no txn yet (so nothing of it is cached).
    s: Session,
}

async fn setup() -> Setup {
    let fx = Fixture::new().await;
    let pw = fx.terminal("T1", "S1").await;
    fx.terminal("T2", "S1").await;
    fx.card("CARD0001", "5.00").await;
    let d = Daemon::start(fx.config.clone()).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let s = c.handshake("T1", &pw, &fx.root).await.unwrap();
    Setup { fx, d, c, pw, s }
}

async fn report(fx: &Fixture) -> Report {
    let c = fx.client().await;
    let rk = admin::row_keys(&fx.config, &c).await.unwrap();
    verify::verify(fx.pool(), &rk, Options::default())
        .await
        .unwrap()
}

async fn assert_clean(fx: &Fixture) {
    // (The fixture's card has a balance without postings: not ours.)
    let r = report(fx).await;
    let ours: Vec<_> = r.findings.iter().filter(|f| f.check == "mac").collect();
    assert!(ours.is_empty(), "verify found {ours:#?}");
    assert!(
        r.rows["day_keys"] >= 1 && r.rows["sessions"] >= 1,
        "{:?}",
        r.rows
    );
}

async fn assert_found(fx: &Fixture, table: &str, key: &str) {
    let r = report(fx).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.table == table && f.key == key && f.check == "mac"),
        "no {table} {key} mac in {:#?}",
        r.findings
    );
}

async fn exec(fx: &Fixture, sql: &str) {
    fx.client().await.batch_execute(sql).await.unwrap();
}

/// The errno of a txn answer read raw. A session or day key row that
/// fails its check is answered 1004 (run the handshake again) without an
/// answer MAC, since its keys cannot be trusted; the refusal is audited
/// as 3001 and counted as an integrity failure.
async fn txn_errno(c: &Client, s: &Session) -> Errno {
    let ts = chrono::Utc::now().timestamp_millis() as u64;
    let inner = query().encode();
    let b = wire::txn_body(
        &s.keys,
        &s.terminal,
        &s.sid,
        ts,
        &aead::random_iv(),
        inner.as_bytes(),
    );
    let h = canonical::format_mac_header(&b.mac);
    let r = c
        .post_form("/v1/txn", b.body.into_bytes(), &[("referer", &h)])
        .await
        .unwrap();
    parse_answer(&r.body).unwrap().errno
}

fn errno_of(e: &anyhow::Error) -> Errno {
    e.downcast_ref::<Refused>().expect("refused").errno
}

async fn failures(d: &Daemon) -> String {
    let m = d.get("/metrics").await.unwrap();
    String::from_utf8_lossy(&m.body)
        .lines()
        .find(|l| l.starts_with("cardswitch_integrity_failures_total"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_day_key_validity_changed_by_sql_is_found_and_refused() {
    let Setup { fx, d, c, pw, s } = setup().await;
    assert_clean(&fx).await;
    exec(
        &fx,
        &format!(
            "UPDATE day_keys SET not_after = not_after + 86400000 WHERE key_id = '{}'",
            s.key_id
        ),
    )
    .await;
    assert_found(&fx, "day_keys", &s.key_id).await;
    // On use: the session's txn, hello and login.
    assert_eq!(txn_errno(&c, &s).await, Errno::KeyUnknown);
    let e = c.hello("T1", &fx.root, None).await.unwrap_err();
    assert_eq!(errno_of(&e), Errno::Tampered);
    let e = c.handshake("T1", &pw, &fx.root).await.unwrap_err();
    assert_eq!(errno_of(&e), Errno::Tampered);
    assert_eq!(failures(&d).await, "cardswitch_integrity_failures_total 3");
    let audited = fx
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM audit
                  WHERE kind = 'refused' AND (detail->>'errno')::int = 3001",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(audited, 3, "refusals audited");
}

#[tokio::test]
async fn a_session_moved_to_another_terminal_is_found_and_refused() {
    let Setup { fx, d, c, s, .. } = setup().await;
    exec(
        &fx,
        &format!(
            "UPDATE sessions SET terminal_id = 'T2' WHERE sid = '{}'",
            s.sid
        ),
    )
    .await;
    assert_found(&fx, "sessions", &s.sid).await;
    assert_eq!(txn_errno(&c, &s).await, Errno::KeyUnknown);
    // 1004 alone would also be the answer to a sound session of another
    // terminal: the integrity failure is what tells the two apart.
    assert_eq!(failures(&d).await, "cardswitch_integrity_failures_total 1");
}

/// A session the daemon cached while its row was sound, then its row
/// changed by SQL (issue 12): the cache's sweep re-checks it within
/// seconds, drops it and counts the failure; its next txn is refused.
#[tokio::test]
async fn a_cached_session_whose_row_is_changed_is_dropped_within_seconds() {
    let Setup { fx, d, c, s, .. } = setup().await;
    assert_eq!(txn_errno(&c, &s).await, Errno::Ok, "cached now");
    exec(
        &fx,
        &format!(
            "UPDATE sessions SET not_after = not_after + 86400000 WHERE sid = '{}'",
            s.sid
        ),
    )
    .await;
    let started = std::time::Instant::now();
    loop {
        if txn_errno(&c, &s).await == Errno::KeyUnknown {
            break;
        }
        assert!(
            started.elapsed() < cardswitch::keys::ring::SWEEP_EVERY * 5,
            "the tampered session is still served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(failures(&d)
        .await
        .starts_with("cardswitch_integrity_failures_total "));
    assert_ne!(failures(&d).await, "cardswitch_integrity_failures_total 0");
}

/// Waits until the daemon's first key upkeep has made tomorrow's day
/// keys for both terminals (RSA, so it takes a while): it reads which
/// terminals lack a key for today first, and would make T1 a new one
/// should T1's be revoked before that.
async fn first_upkeep_done(fx: &Fixture) {
    let started = std::time::Instant::now();
    loop {
        let n: i64 = fx
            .client()
            .await
            .query_one("SELECT count(*) FROM day_keys", &[])
            .await
            .unwrap()
            .get(0);
        if n >= 4 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the daemon made no day keys for tomorrow"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_revocation_undone_by_sql_is_found_and_refused() {
    let Setup { fx, d, c, s, .. } = setup().await;
    first_upkeep_done(&fx).await;
    admin::revoke(&fx.config, fx.pool(), "T1").await.unwrap();
    // A revocation re-MACs what it changes.
    assert_clean(&fx).await;
    assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::KeyUnknown);
    exec(
        &fx,
        &format!(
            "UPDATE sessions SET revoked_at = NULL WHERE sid = '{}';
                 UPDATE day_keys SET status = 'active' WHERE key_id = '{}'",
            s.sid, s.key_id
        ),
    )
    .await;
    assert_found(&fx, "sessions", &s.sid).await;
    assert_found(&fx, "day_keys", &s.key_id).await;
    assert_eq!(txn_errno(&c, &s).await, Errno::KeyUnknown);
    assert_eq!(failures(&d).await, "cardswitch_integrity_failures_total 1");
}

#[tokio::test]
async fn rotations_keep_day_keys_and_sessions_verifying() {
    let Setup {
        fx,
        d: _d,
        c,
        pw,
        s,
    } = setup().await;
    // A rotation racing the daemon's first key upkeep (tomorrow's day
    // keys, made under the row key it knows) leaves that row behind
    // (rerunning the rotation is the remedy, README).
    first_upkeep_done(&fx).await;
    assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);
    admin::rotate_master(&fx.config, fx.pool()).await.unwrap();
    assert_clean(&fx).await;
    let r = admin::rotate_row_key(&fx.config, fx.pool(), false, false)
        .await
        .unwrap();
    assert!(r.refused.is_empty(), "{r:?}");
    assert_eq!(
        cardswitch::store::rekey::rows_behind(fx.pool(), &r.key_id)
            .await
            .unwrap(),
        0
    );
    assert_clean(&fx).await;
    // The daemon (old row keys in memory) meets the new key id on use.
    assert_eq!(c.txn(&s, &query()).await.unwrap().errno, Errno::Ok);
    let s2 = c.handshake("T1", &pw, &fx.root).await.unwrap();
    assert_eq!(c.txn(&s2, &query()).await.unwrap().errno, Errno::Ok);
    assert_clean(&fx).await;
}

//! The hostile-input catalogue (issue 12): what an attacker sends, as named
//! cases in families — the outer forms, the crypto envelope, the inner
//! form, business abuse, races, and attacks on HTTP itself — against a real
//! daemon on a real socket. Every case asserts its errno (or HTTP status)
//! and that nothing changed: the database's fingerprint (all but the audit
//! trail and the once-only values) for most, the cards' balance, points and
//! status where a refusal rightly counts something (a wrong PIN), and the
//! `order_no` of a refused posting still unused (proto-spec §8.2).

mod business;
mod envelope;
mod http;
mod inner;
mod outer;
mod races;

use std::time::Duration;

use cardswitch::client::{Client, RawResponse, Session, TxnOutcome};
use cardswitch::error::errno_http_status;
use cardswitch::ledger::TerminalKind;
use cardswitch::protocol::errno::Errno;

use crate::harness::{assert_valid, Daemon, Fixture};

pub(super) const FORM: &str = "application/x-www-form-urlencoded";

/// The shop under attack: stores S1 and S2, tills T1 and T2 of S1 and T3 of
/// S2, an office terminal H1 of S1, a manager `boss` (mpin 8642) and a
/// cashier `cash1` of S1, and cards: CARD0001 (100.00), CARD0002 (0.00),
/// CARD0003 (lost), CARD0004 (locked), PINC0001 (PIN 1234, 50.00, 30
/// points), S2CARD01 (100.00, used at S2).
pub(super) struct World {
    pub(super) fx: Fixture,
    pub(super) d: Daemon,
    pub(super) c: Client,
    pub(super) t1: Session,
    pub(super) t2: Session,
    pub(super) t3: Session,
    pub(super) h1: Session,
    pub(super) password: String,
}

pub(super) async fn world() -> World {
    world_with(|_| {}).await
}

pub(super) async fn world_with(tune: impl FnOnce(&mut cardswitch::config::Config)) -> World {
    let fx = Fixture::new().await;
    let password = fx.terminal("T1", "S1").await;
    let pw2 = fx.terminal("T2", "S1").await;
    let pw3 = fx.terminal("T3", "S2").await;
    let pw_h1 = cardswitch::keys::admin::add_terminal(
        &fx.config,
        fx.pool(),
        "H1",
        "S1",
        TerminalKind::Office,
        None,
    )
    .await
    .unwrap()
    .to_string();
    operators(&fx).await;
    let mut config = fx.config.clone();
    // The deliverer marks events sent as it goes: off, so that a refusal's
    // "nothing changed" is the whole database's.
    config.events.deliver = false;
    tune(&mut config);
    let d = Daemon::start(config).await;
    let c = Client::new(&format!("http://{}", d.addr));
    let t1 = login(&c, &fx, "T1", &password).await;
    let t2 = login(&c, &fx, "T2", &pw2).await;
    let t3 = login(&c, &fx, "T3", &pw3).await;
    let h1 = login(&c, &fx, "H1", &pw_h1).await;
    let w = World {
        fx,
        d,
        c,
        t1,
        t2,
        t3,
        h1,
        password,
    };
    w.shape_cards().await;
    w.settle().await;
    w
}

async fn operators(fx: &Fixture) {
    let c = fx.client().await;
    let secrets = cardswitch::keys::load_secrets(&fx.config.keys_dir, &c)
        .await
        .unwrap();
    cardswitch::store::operators::add_level(&c, &secrets.row_keys, "std", 1.into(), 1.into())
        .await
        .unwrap();
    for (id, role, pin) in [
        ("boss", "manager", Some("8642")),
        ("cash1", "cashier", None),
    ] {
        cardswitch::store::operators::add_operator(
            &c,
            &secrets.hash_key,
            &secrets.row_keys,
            "S1",
            id,
            role,
            pin,
        )
        .await
        .unwrap();
    }
}

/// The daemon makes day keys as it starts; a login may come before them.
async fn login(c: &Client, fx: &Fixture, terminal: &str, password: &str) -> Session {
    for _ in 0..100 {
        if let Ok(s) = c.handshake(terminal, password, &fx.root).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{terminal} cannot log in");
}

/// What a case must be answered.
#[derive(Clone, Copy, Debug)]
pub(super) enum Want {
    /// An XML answer with this errno and its HTTP status.
    Errno(Errno),
    /// A plain HTTP refusal (404, 405), or 413 with its XML 1001.
    Status(u16),
}

/// Checks an answer as an attacker receives it; an XML body against the XSD.
pub(super) fn check_answer(name: &str, r: &RawResponse, want: Want) {
    let xml = || {
        let a = cardswitch::protocol::xml::parse_answer(&r.body)
            .unwrap_or_else(|e| panic!("case {name:?}: not an answer ({e:?})"));
        assert_valid("error.xsd", &r.body);
        a
    };
    match want {
        Want::Errno(e) => {
            assert_eq!(xml().errno, e, "case {name:?}");
            assert_eq!(r.status, errno_http_status(e), "case {name:?}");
        }
        Want::Status(413) => {
            assert_eq!(r.status, 413, "case {name:?}");
            assert_eq!(xml().errno, Errno::Malformed, "case {name:?}");
        }
        Want::Status(s) => assert_eq!(r.status, s, "case {name:?}"),
    }
}

/// Cards, balances and statuses as the catalogue compares them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CardRow {
    card_no: String,
    balance: String,
    points: i64,
    status: String,
}

impl World {
    /// Waits until the daemon has made today's and tomorrow's day keys for
    /// every terminal, so no background write lands inside a case.
    async fn settle(&self) {
        for _ in 0..200 {
            let n: i64 = self
                .fx
                .client()
                .await
                .query_one("SELECT count(*) FROM day_keys WHERE status = 'active'", &[])
                .await
                .unwrap()
                .get(0);
            if n >= 8 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("day keys were not made ahead");
    }

    /// Every card through the ledger, so `verify` holds from the start.
    async fn shape_cards(&self) {
        for (s, card, balance, pin) in [
            (&self.t1, "CARD0001", "100", ""),
            (&self.t1, "CARD0002", "", ""),
            (&self.t1, "CARD0003", "5", ""),
            (&self.t1, "CARD0004", "5", ""),
            (&self.t1, "PINC0001", "50", "%26pin%3D1234"),
            (&self.t3, "S2CARD01", "100", ""),
        ] {
            let member = format!("name%3DLi%26phone%3D13800001234%26level%3Dstd{pin}");
            self.ok(
                s,
                &format!("op=register&order_no=SETUP-R-{card}&attr1={card}&attr2={member}"),
            )
            .await;
            if !balance.is_empty() {
                self.ok(
                    s,
                    &format!("op=topup&amount={balance}&order_no=SETUP-T-{card}&attr1={card}"),
                )
                .await;
            }
        }
        let boss = "operator=boss&attr2=mpin%3D8642";
        self.ok(
            &self.t1,
            &format!("op=lost&order_no=SETUP-L&attr1=CARD0003&{boss}"),
        )
        .await;
        self.ok(
            &self.t1,
            &format!("op=lock&order_no=SETUP-K&attr1=CARD0004&{boss}"),
        )
        .await;
        self.ok(
            &self.t1,
            "op=points&order_no=SETUP-P&attr1=PINC0001&attr2=delta%3D30%26reason%3Dwelcome",
        )
        .await;
        self.ok(&self.t3, "op=debit&amount=1&order_no=S2-D1&attr1=S2CARD01")
            .await;
    }

    /// POSTs `body` to `path` with exactly `headers`: the answer wanted, and
    /// nothing in the database changed.
    pub(super) async fn post(
        &self,
        name: &str,
        path: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
        want: Want,
    ) {
        let before = self.fx.fingerprint().await;
        let r = self.c.post_raw(path, body.into(), headers).await.unwrap();
        check_answer(name, &r, want);
        assert_eq!(
            self.fx.fingerprint().await,
            before,
            "case {name:?} changed something"
        );
    }

    /// [`World::post`] of a form.
    pub(super) async fn form(&self, name: &str, path: &str, body: impl Into<Vec<u8>>, want: Want) {
        self.post(name, path, body, &[("content-type", FORM)], want)
            .await;
    }

    /// Sends `inner` as given from `s` (its answer MAC checked).
    pub(super) async fn send(&self, s: &Session, inner: &str) -> TxnOutcome {
        let out = self.c.txn_raw_inner(s, inner.as_bytes()).await.unwrap();
        assert!(
            out.mac_verified,
            "{inner}: an answer after the sid is MACed"
        );
        out
    }

    pub(super) async fn ok(&self, s: &Session, inner: &str) -> TxnOutcome {
        let out = self.send(s, inner).await;
        assert_eq!(out.errno, Errno::Ok, "{inner} (field {:?})", out.field);
        out
    }

    pub(super) async fn cards(&self) -> Vec<CardRow> {
        let c = self.fx.client().await;
        c.query(
            "SELECT card_no, balance::text, points, status FROM cards ORDER BY card_no",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| CardRow {
            card_no: r.get(0),
            balance: r.get(1),
            points: r.get(2),
            status: r.get(3),
        })
        .collect()
    }

    /// A refused case: its errno, and nothing in the database changed.
    pub(super) async fn refused(&self, name: &str, s: &Session, inner: &str, want: Errno) {
        let before = self.fx.fingerprint().await;
        let out = self.send(s, inner).await;
        assert_eq!(out.errno, want, "case {name:?}: {inner}");
        assert_eq!(
            self.fx.fingerprint().await,
            before,
            "case {name:?} changed something"
        );
    }

    /// A refused case that rightly counts something (a wrong PIN, a wrong
    /// mpin): its errno, and no card's balance, points or status changed.
    pub(super) async fn refused_counting(&self, name: &str, s: &Session, inner: &str, want: Errno) {
        let before = self.cards().await;
        let out = self.send(s, inner).await;
        assert_eq!(out.errno, want, "case {name:?}: {inner}");
        assert_eq!(
            self.cards().await,
            before,
            "case {name:?} moved money or status"
        );
    }

    /// `order_no`s that no posting used (proto-spec §8.2: a refusal uses none).
    pub(super) async fn assert_unused(&self, order_nos: &[&str]) {
        let c = self.fx.client().await;
        for o in order_nos {
            let n: i64 = c
                .query_one("SELECT count(*) FROM orders WHERE order_no = $1", &[o])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "order_no {o} was used by a refusal");
        }
    }

    /// `verify` finds nothing: every MAC and chain holds, and every balance
    /// and points total equals its postings.
    pub(super) async fn assert_sound(&self) {
        use cardswitch::store::verify::{verify, Options};
        let c = self.fx.client().await;
        let rk = cardswitch::keys::admin::row_keys(&self.fx.config, &c)
            .await
            .unwrap();
        let v = verify(self.fx.pool(), &rk, Options::default())
            .await
            .unwrap();
        assert!(v.clean(), "{:#?}", v.findings);
    }
}

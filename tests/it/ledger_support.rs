//! Shared setup of the ledger tests: a fresh database with two stores, three
//! terminals, levels and operators, and a way to send inner forms straight to
//! `store::txn::run` (no HTTP).

#![allow(dead_code)] // each test module uses part of it

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cardswitch::config::{BonusRuleSetting, Config};
use cardswitch::error::{Error, Result};
use cardswitch::protocol::message::InnerForm;
use cardswitch::protocol::xml::{Row, Rows};
use cardswitch::store::txn::{self, TxnContext, TxnEnv};
use cardswitch::store::{self, operators};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;

use crate::harness;

pub const MPIN: &str = "4321";

pub struct Ledger {
    pub pool: Pool,
    pub env: Arc<TxnEnv>,
    pub url: String,
    pub config: Config,
    ts: AtomicI64,
    stores: HashMap<&'static str, &'static str>,
}

/// An inner form, built field by field.
#[derive(Clone, Debug)]
pub struct Req {
    op: String,
    amount: Option<String>,
    order_no: Option<String>,
    operator: Option<String>,
    attr1: String,
    attr2: Vec<(String, String)>,
}

pub fn req(op: &str, attr1: &str) -> Req {
    Req {
        op: op.into(),
        amount: None,
        order_no: None,
        operator: None,
        attr1: attr1.into(),
        attr2: vec![],
    }
}

impl Req {
    pub fn amount(mut self, a: &str) -> Self {
        self.amount = Some(a.into());
        self
    }
    pub fn order(mut self, o: &str) -> Self {
        self.order_no = Some(o.into());
        self
    }
    pub fn by(mut self, operator: &str) -> Self {
        self.operator = Some(operator.into());
        self
    }
    pub fn a2(mut self, n: &str, v: &str) -> Self {
        self.attr2.push((n.into(), v.into()));
        self
    }
    /// A manager op by the store's manager `m1` with the right PIN.
    pub fn mgr(self) -> Self {
        self.by("m1").a2("mpin", MPIN)
    }
    /// The inner form as a terminal sends it.
    pub fn encoded(&self) -> String {
        let mut a2 = form_urlencoded::Serializer::new(String::new());
        for (n, v) in &self.attr2 {
            a2.append_pair(n, v);
        }
        let a2 = a2.finish();
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("op", &self.op);
        if let Some(a) = &self.amount {
            f.append_pair("amount", a);
        }
        if let Some(o) = &self.order_no {
            f.append_pair("order_no", o);
        }
        if let Some(o) = &self.operator {
            f.append_pair("operator", o);
        }
        f.append_pair("attr1", &self.attr1);
        if !a2.is_empty() {
            f.append_pair("attr2", &a2);
        }
        f.finish()
    }

    pub fn form(&self) -> InnerForm {
        InnerForm::parse(self.encoded().as_bytes()).expect("test form is well-formed")
    }

    /// The errno of the inner form's own parse (1001), for values its
    /// grammar refuses before the ledger sees them; 0 if it parses.
    pub fn parse_errno(&self) -> u16 {
        InnerForm::parse(self.encoded().as_bytes()).map_or_else(|_| 1001, |_| 0)
    }
}

impl Ledger {
    /// Makes the lots `lot_ids_sql` selects expire `ago` (an interval) in
    /// the past, as time passing would: their cards locked first, as every
    /// writer of lots does, and each lot's MAC written anew (an UPDATE alone
    /// is tampering, and refused).
    pub async fn age_lots(&self, lot_ids_sql: &str, ago: &str) {
        let mut c = self.client().await;
        let tx = c.transaction().await.unwrap();
        let ids: Vec<i64> = tx
            .query(lot_ids_sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            "SELECT 1 FROM cards WHERE card_no IN (SELECT card_no FROM lots WHERE lot_id = ANY ($1))
              ORDER BY card_no FOR UPDATE",
            &[&ids],
        )
        .await
        .unwrap();
        let aged = tx
            .query(
                &format!(
                    "UPDATE lots SET expires_at = now() - interval '{ago}' WHERE lot_id = ANY ($1)
                     RETURNING lot_id, card_no, points_left,
                               floor(extract(epoch FROM expires_at) * 1000)::bigint, service"
                ),
                &[&ids],
            )
            .await
            .unwrap();
        for r in aged {
            let img = cardswitch::integrity::lot_image(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get::<_, Option<&str>>(4),
            );
            let (mac, kid) = self.env.row_keys.mac_with_id(&img, None);
            tx.execute(
                "UPDATE lots SET row_mac = $2, mac_key_id = $3 WHERE lot_id = $1",
                &[&r.get::<_, i64>(0), &mac, &kid],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    /// Moves order `order_no` to the business day before, as if it had
    /// been posted then, its row MAC written anew as the ledger would have
    /// (an UPDATE alone is tampering, and refused).
    pub async fn backdate_order(&self, order_no: &str) {
        use cardswitch::store::protected::{OrderRow, Protected};
        let c = self.client().await;
        let sql = format!(
            "SELECT {} FROM orders WHERE order_no = $1",
            OrderRow::COLUMNS
        );
        let mut row = OrderRow::decode(&c.query_one(&sql, &[&order_no]).await.unwrap());
        let day = row.values.business_day.as_deref().unwrap();
        let day =
            chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap() - chrono::Duration::days(1);
        row.values.business_day = Some(day.to_string());
        let (mac, kid) = self.env.row_keys.mac_with_id(&row.image(), None);
        c.execute(
            "UPDATE orders SET business_day = $2::text::date, row_mac = $3, mac_key_id = $4
              WHERE order_no = $1",
            &[&order_no, &day.to_string(), &mac, &kid],
        )
        .await
        .unwrap();
    }
}

impl Ledger {
    /// Makes hold `order_no` lapse `ago_ms` in the past, as time passing
    /// would, its order's MAC written anew (an UPDATE alone is tampering).
    pub async fn age_hold(&self, order_no: &str, ago_ms: i64) {
        use cardswitch::store::protected::{OrderRow, Protected};
        let c = self.client().await;
        let sql = format!(
            "SELECT {} FROM orders WHERE order_no = $1 AND op = 'hold'",
            OrderRow::COLUMNS
        );
        let mut row = OrderRow::decode(&c.query_one(&sql, &[&order_no]).await.unwrap());
        let at = chrono::Utc::now().timestamp_millis() - ago_ms;
        let terms = row.values.hold.as_mut().expect("a hold has terms");
        terms.0 = at;
        let (mac, kid) = self.env.row_keys.mac_with_id(&row.image(), None);
        c.execute(
            "UPDATE orders SET row_mac = $3, mac_key_id = $4,
                    hold_expires_at = 'epoch'::timestamptz + $2::bigint * interval '1 millisecond'
              WHERE order_no = $1 AND op = 'hold'",
            &[&order_no, &at, &mac, &kid],
        )
        .await
        .unwrap();
    }
}

pub async fn setup() -> Ledger {
    setup_with(|_| {}).await
}

/// A fresh ledger; `tweak` adjusts the configuration (bonus rules, expiry).
pub async fn setup_with(tweak: impl FnOnce(&mut Config)) -> Ledger {
    let url = harness::fresh_database().await;
    let mut config = harness::config_for(&url);
    config.db.pool_size = 40;
    config.db.connect_timeout = std::time::Duration::from_secs(10);
    tweak(&mut config);
    let db = store::open(&config).await.expect("open database");
    // Real keys: a master key file, and the hash key and row keys sealed
    // under it in the database, so the CLI and `verify` see the same keys.
    config.keys_dir = harness::temp_dir("cs-keys-").join("keys");
    let master = cardswitch::crypto::seal::MasterKey::generate();
    cardswitch::keys::write_master(&config.keys_dir, &master).unwrap();
    let c = db.pool.get().await.unwrap();
    assert!(cardswitch::keys::create_hash_key(&c, &master)
        .await
        .unwrap());
    let secrets = cardswitch::keys::load_secrets(&config.keys_dir, &c)
        .await
        .unwrap();
    let hash_key = secrets.hash_key;
    let row_keys = Arc::new(secrets.row_keys);
    c.batch_execute("INSERT INTO stores (store_id, name) VALUES ('S1', 'one'), ('S2', 'two');")
        .await
        .unwrap();
    for (name, d, r) in [("std", "1", "1"), ("gold", "0.95", "2")] {
        operators::add_level(&c, &row_keys, name, d.parse().unwrap(), r.parse().unwrap())
            .await
            .unwrap();
    }
    use cardswitch::ledger::TerminalKind::{Office, Pos};
    for (t, st, kind) in [
        ("T1", "S1", Pos),
        ("T2", "S1", Pos),
        ("T3", "S2", Pos),
        ("O1", "S1", Office),
        ("H1", "*", Office),
    ] {
        cardswitch::store::terminals::add_terminal_without_password(&c, &row_keys, t, st, kind)
            .await
            .unwrap();
    }
    operators::add_operator(&c, &hash_key, &row_keys, "S1", "c1", "cashier", None)
        .await
        .unwrap();
    operators::add_operator(&c, &hash_key, &row_keys, "S1", "m1", "manager", Some(MPIN))
        .await
        .unwrap();
    operators::add_operator(&c, &hash_key, &row_keys, "S2", "m3", "manager", Some(MPIN))
        .await
        .unwrap();
    drop(c);
    Ledger {
        pool: db.pool,
        env: Arc::new(TxnEnv {
            config: Arc::new(config.clone()),
            hash_key,
            row_keys,
            replica: None,
            statements: Default::default(),
        }),
        url,
        config,
        ts: AtomicI64::new(chrono::Utc::now().timestamp_millis()),
        stores: HashMap::from([
            ("T1", "S1"),
            ("T2", "S1"),
            ("T3", "S2"),
            ("O1", "S1"),
            ("H1", "*"),
        ]),
    }
}

pub fn bonus(min: &str, bonus: &str) -> BonusRuleSetting {
    BonusRuleSetting {
        min_topup: Decimal::from_str(min).unwrap(),
        bonus: Decimal::from_str(bonus).unwrap(),
    }
}

/// A card's row as the tests compare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSnapshot {
    pub balance: Decimal,
    pub points: i64,
    pub status: String,
    pub pin_fail_count: i32,
}

impl Ledger {
    pub fn next_ts(&self) -> i64 {
        self.ts.fetch_add(1, Ordering::Relaxed)
    }

    pub fn ctx(&self, terminal: &str, ts: i64) -> TxnContext {
        TxnContext {
            terminal: terminal.into(),
            store_id: self.stores[terminal].into(),
            ts,
            now: chrono::Utc::now(),
        }
    }

    /// Sends `r` from `terminal` with a fresh ts.
    pub async fn send_from(&self, terminal: &str, r: &Req) -> Result<Rows> {
        let ts = self.next_ts();
        cardswitch::keys::run_txn(&self.pool, &self.env, &self.ctx(terminal, ts), &r.form())
            .await
            .and_then(txn::Committed::into_rows)
    }

    pub async fn send(&self, r: &Req) -> Result<Rows> {
        self.send_from("T1", r).await
    }

    /// Sends and expects success with one row.
    pub async fn ok(&self, r: &Req) -> Row {
        match self.send(r).await {
            Ok(rows) => {
                assert_eq!(rows.0.len(), 1, "{r:?}");
                rows.0.into_iter().next().unwrap()
            }
            Err(e) => panic!("{r:?} failed: {e:?}"),
        }
    }

    /// Sends and expects the errno.
    pub async fn refused(&self, r: &Req, errno: u16) {
        self.refused_from("T1", r, errno).await
    }

    pub async fn refused_from(&self, terminal: &str, r: &Req, errno: u16) {
        match self.send_from(terminal, r).await {
            Ok(rows) => panic!("{r:?} succeeded: {rows:?}, expected {errno}"),
            Err(e) => assert_eq!(e.errno().code(), errno, "{r:?}: {e}"),
        }
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool.get().await.unwrap()
    }

    /// Registers a card (std level unless given) and tops it up.
    pub async fn card(&self, no: &str, level: &str, topup: Option<&str>, pin: Option<&str>) {
        let mut r = req("register", no)
            .order(&format!("reg-{no}"))
            .a2("name", "Li Wei")
            .a2("phone", "13800001234")
            .a2("level", level);
        if let Some(p) = pin {
            r = r.a2("pin", p);
        }
        self.ok(&r).await;
        if let Some(a) = topup {
            self.ok(&req("topup", no)
                .amount(a)
                .order(&format!("top-{no}-{}", self.next_ts())))
                .await;
        }
    }

    /// `(balance, points, status, pin_fail_count)` of a card.
    pub async fn card_row(&self, no: &str) -> CardSnapshot {
        let r = self
            .client()
            .await
            .query_one(
                "SELECT balance, points, status, pin_fail_count FROM cards WHERE card_no = $1",
                &[&no],
            )
            .await
            .unwrap();
        CardSnapshot {
            balance: r.get(0),
            points: r.get(1),
            status: r.get(2),
            pin_fail_count: r.get(3),
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// The books balance: for every card, balance = sum of its postings'
    /// balance deltas, points = sum of points deltas = sum of its lots'
    /// points left; visits = sum of its postings' visits deltas = sum of
    /// its lots of visits; what it holds = what its unreleased holds keep,
    /// never more than its balance; nothing negative.
    pub async fn check_books(&self) {
        let c = self.client().await;
        let bad = c
            .query(
                "SELECT c.card_no, c.balance, c.points,
                        coalesce((SELECT sum(balance_delta) FROM postings p WHERE p.card_no = c.card_no), 0),
                        coalesce((SELECT sum(points_delta) FROM postings p WHERE p.card_no = c.card_no), 0)::bigint,
                        coalesce((SELECT sum(points_left) FROM lots l WHERE l.card_no = c.card_no
                                     AND l.service IS NULL), 0)::bigint,
                        coalesce(c.held, 0),
                        coalesce((SELECT sum(charged) FROM orders o WHERE o.card_no = c.card_no
                                     AND o.op = 'hold' AND NOT o.reversed), 0),
                        coalesce(c.visits, 0),
                        coalesce((SELECT sum(visits_delta) FROM postings p WHERE p.card_no = c.card_no), 0)::bigint,
                        coalesce((SELECT sum(points_left) FROM lots l WHERE l.card_no = c.card_no
                                     AND l.service IS NOT NULL), 0)::bigint
                   FROM cards c",
                &[],
            )
            .await
            .unwrap();
        for r in bad {
            let (no, b, p): (String, Decimal, i64) = (r.get(0), r.get(1), r.get(2));
            let (sb, sp, sl): (Decimal, i64, i64) = (r.get(3), r.get(4), r.get(5));
            assert_eq!(b, sb, "card {no}: balance vs postings");
            assert_eq!(p, sp, "card {no}: points vs postings");
            assert_eq!(p, sl, "card {no}: points vs lots");
            assert!(b >= Decimal::ZERO && p >= 0, "card {no} negative");
            let (held, holds): (Decimal, Decimal) = (r.get(6), r.get(7));
            assert_eq!(held, holds, "card {no}: held vs its holds");
            assert!(held <= b, "card {no}: holds more than its balance");
            let (v, sv, lv): (i64, i64, i64) = (r.get(8), r.get(9), r.get(10));
            assert_eq!(v, sv, "card {no}: visits vs postings");
            assert_eq!(v, lv, "card {no}: visits vs lots of visits");
            assert!(v >= 0, "card {no}: negative visits");
        }
        let neg: i64 = c
            .query_one(
                "SELECT count(*) FROM lots WHERE points_left < 0 OR points_left > points",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(neg, 0);
    }
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The errno of a result, 0 for success.
pub fn errno_of(r: &std::result::Result<Rows, Error>) -> u16 {
    match r {
        Ok(_) => 0,
        Err(e) => e.errno().code(),
    }
}

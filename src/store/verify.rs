//! `cardswitch verify [--repair]`: every protected row checked against its
//! MAC, every chain walked, every card's balance and points against its
//! postings and lots, every sealed copy opened.
//!
//! One consistent view while the daemon keeps serving: the scan runs in a
//! REPEATABLE READ transaction whose snapshot a second connection imports,
//! so cards and their postings are read side by side (a merge join on the
//! card number, both ordered the same way) in batches through portals —
//! never the whole table in memory, never a query per row.

use std::collections::BTreeMap;

use deadpool_postgres::{Object, Pool, Transaction};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::Row;

use crate::integrity::{CardValues, RowKeys};
use crate::store::keys::DayKeyRow;
use crate::store::protected::{
    card_values, posting_values, select_all, LevelRow, MemberRow, OperatorRow, Protected,
    SessionRow, CARD_COLUMNS, POSTING_COLUMNS,
};
use crate::store::terminals::TerminalRow;

/// Rows fetched per round trip.
const BATCH: i32 = 5_000;

/// One thing found wrong.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub table: String,
    pub key: String,
    /// `mac`, `chain`, `sealed`, `balance`, `points`, `lots`.
    pub check: String,
    pub detail: String,
}

/// A card restored from its sealed copy.
#[derive(Clone, Debug, Serialize)]
pub struct Repair {
    pub card_no: String,
    pub restored: serde_json::Value,
    pub was: serde_json::Value,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub repaired: Vec<Repair>,
    /// Rows checked, per table.
    pub rows: BTreeMap<String, u64>,
    pub seconds: f64,
}

impl Report {
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub repair: bool,
    pub progress: bool,
}

fn finding(table: &str, key: &str, check: &str, detail: impl Into<String>) -> Finding {
    Finding {
        table: table.into(),
        key: key.into(),
        check: check.into(),
        detail: detail.into(),
    }
}

/// What the scan knew of a card with a finding, for `--repair`.
struct CardScan {
    values: CardValues,
    sealed: Option<CardValues>,
    chain_ok: bool,
    postings: i64,
    head: Option<Vec<u8>>,
    balance_sum: Decimal,
    points_sum: i64,
    live_lots: i64,
}

fn cards_sql() -> String {
    format!(
        "SELECT {CARD_COLUMNS}, c.sealed, coalesce(l.live, 0)::bigint
           FROM cards c
           LEFT JOIN (SELECT card_no, sum(points_left) AS live FROM lots GROUP BY card_no) l
                  USING (card_no)
          ORDER BY c.card_no COLLATE \"C\""
    )
}

fn postings_sql() -> String {
    format!("SELECT {POSTING_COLUMNS} FROM postings ORDER BY card_no COLLATE \"C\", posting_id")
}

/// Batches of a query through a portal.
struct Batches<'a> {
    tx: &'a Transaction<'a>,
    portal: tokio_postgres::Portal,
    buf: std::collections::VecDeque<Row>,
    done: bool,
}

impl<'a> Batches<'a> {
    async fn new(tx: &'a Transaction<'a>, sql: &str) -> Result<Batches<'a>, tokio_postgres::Error> {
        let stmt = tx.prepare(sql).await?;
        let portal = tx.bind(&stmt, &[]).await?;
        Ok(Batches {
            tx,
            portal,
            buf: Default::default(),
            done: false,
        })
    }

    async fn fill(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.buf.is_empty() && !self.done {
            let rows = self.tx.query_portal(&self.portal, BATCH).await?;
            if rows.len() < BATCH as usize {
                self.done = true;
            }
            self.buf.extend(rows);
        }
        Ok(())
    }

    async fn peek(&mut self) -> Result<Option<&Row>, tokio_postgres::Error> {
        self.fill().await?;
        Ok(self.buf.front())
    }

    async fn next(&mut self) -> Result<Option<Row>, tokio_postgres::Error> {
        self.fill().await?;
        Ok(self.buf.pop_front())
    }
}

fn bar(opts: &Options, total: u64) -> ProgressBar {
    use std::io::IsTerminal;
    if !opts.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} rows, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

async fn begin_pair<'a>(
    a: &'a mut Object,
    b: &'a mut Object,
) -> Result<(Transaction<'a>, Transaction<'a>), tokio_postgres::Error> {
    let ta = a
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let snap: String = ta
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let tb = b
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tb.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snap}'"))
        .await?;
    Ok((ta, tb))
}

/// Scans every protected table; with `repair`, restores the cards it can.
pub async fn verify(pool: &Pool, keys: &RowKeys, opts: Options) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let mut report = Report::default();
    let mut scans: BTreeMap<String, CardScan> = BTreeMap::new();
    {
        let mut ca = pool.get().await?;
        let mut cb = pool.get().await?;
        let (ta, tb) = begin_pair(&mut ca, &mut cb).await?;
        let counts = ta
            .query_one(
                "SELECT (SELECT count(*) FROM cards), (SELECT count(*) FROM postings),
                        (SELECT count(*) FROM members), (SELECT count(*) FROM terminals),
                        (SELECT count(*) FROM audit), (SELECT count(*) FROM operators),
                        (SELECT count(*) FROM levels), (SELECT count(*) FROM day_keys),
                        (SELECT count(*) FROM sessions)",
                &[],
            )
            .await?;
        let total: i64 = (0..9).map(|i| counts.get::<_, i64>(i)).sum();
        let pb = bar(&opts, total.max(0) as u64);

        pb.set_message("cards");
        scan_cards(&ta, &tb, keys, &mut report, &mut scans, &pb).await?;
        scan::<MemberRow>(&ta, keys, &mut report, &pb).await?;
        scan::<TerminalRow>(&ta, keys, &mut report, &pb).await?;
        scan::<OperatorRow>(&ta, keys, &mut report, &pb).await?;
        scan::<LevelRow>(&ta, keys, &mut report, &pb).await?;
        scan::<DayKeyRow>(&ta, keys, &mut report, &pb).await?;
        scan::<SessionRow>(&ta, keys, &mut report, &pb).await?;
        pb.set_message("audit");
        scan_audit(&ta, keys, &mut report, &pb).await?;
        pb.finish_and_clear();
        ta.commit().await?;
        tb.commit().await?;
    }
    if opts.repair {
        repair(pool, keys, &mut report, &scans).await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn scan_cards(
    ta: &Transaction<'_>,
    tb: &Transaction<'_>,
    keys: &RowKeys,
    report: &mut Report,
    scans: &mut BTreeMap<String, CardScan>,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut cards = Batches::new(ta, &cards_sql()).await?;
    let mut posts = Postings {
        rows: Batches::new(tb, &postings_sql()).await?,
        read: 0,
    };
    let mut n_cards = 0u64;
    while let Some(c) = cards.next().await? {
        n_cards += 1;
        let card = CardRead::decode(&c);
        let no = card.values.card_no.clone();
        posts.skip_orphans_before(&no, report).await?;
        let (mut found, sealed) = card.check(keys);
        let chain = posts.walk(&no, keys, &mut found).await?;
        pb.inc(1 + chain.count as u64);
        let chain_ok = chain.check_totals(&card, &mut found);
        if !found.is_empty() {
            report.findings.extend(found);
            scans.insert(
                no,
                CardScan {
                    values: card.values,
                    sealed,
                    chain_ok,
                    postings: chain.count,
                    head: chain.head,
                    balance_sum: chain.balance_sum,
                    points_sum: chain.points_sum,
                    live_lots: card.live_lots,
                },
            );
        }
    }
    while let Some(p) = posts.rows.next().await? {
        posts.read += 1;
        posts.orphan(&p, report);
    }
    report.rows.insert("cards".into(), n_cards);
    report.rows.insert("postings".into(), posts.read);
    Ok(())
}

/// A card row as [`cards_sql`] reads it.
struct CardRead {
    values: CardValues,
    row_mac: Option<Vec<u8>>,
    key_id: Option<String>,
    sealed_blob: Option<Vec<u8>>,
    live_lots: i64,
}

impl CardRead {
    fn decode(c: &Row) -> CardRead {
        CardRead {
            values: card_values(c),
            row_mac: c.get(10),
            key_id: c.get(11),
            sealed_blob: c.get(12),
            live_lots: c.get(13),
        }
    }

    /// The row's MAC and its sealed copy (which a repair restores from).
    fn check(&self, keys: &RowKeys) -> (Vec<Finding>, Option<CardValues>) {
        let v = &self.values;
        let no = &v.card_no;
        let mut found = Vec::new();
        let image = v.image();
        if !keys.verify(
            self.key_id.as_deref(),
            &image,
            None,
            self.row_mac.as_deref(),
        ) {
            found.push(finding("cards", no, "mac", "row MAC does not match"));
        }
        let sealed = self
            .sealed_blob
            .as_deref()
            .and_then(|b| keys.open("cards", no, b).ok())
            .and_then(|img| CardValues::from_image(&img));
        let problem = match &sealed {
            None => Some("sealed copy missing or does not open"),
            Some(s) if s != v => Some("sealed copy differs from the row"),
            _ => None,
        };
        if let Some(p) = problem {
            found.push(finding("cards", no, "sealed", p));
        }
        (found, sealed)
    }
}

/// The postings stream, merged with the cards by card number.
struct Postings<'a> {
    rows: Batches<'a>,
    read: u64,
}

/// A card's chain as walked.
struct Chain {
    head: Option<Vec<u8>>,
    count: i64,
    ok: bool,
    balance_sum: Decimal,
    points_sum: i64,
}

impl Postings<'_> {
    fn orphan(&self, p: &Row, report: &mut Report) {
        let (pno, id): (String, i64) = (p.get(0), p.get(16));
        report.findings.push(finding(
            "postings",
            &format!("{pno}/{id}"),
            "chain",
            "posting of a card that does not exist",
        ));
    }

    /// Postings of no card, ordered before `no`.
    async fn skip_orphans_before(&mut self, no: &str, report: &mut Report) -> anyhow::Result<()> {
        while let Some(p) = self.rows.peek().await? {
            if p.get::<_, &str>(0) >= no {
                break;
            }
            let p = self.rows.next().await?.expect("peeked");
            self.read += 1;
            self.orphan(&p, report);
        }
        Ok(())
    }

    /// Card `no`'s postings in chain order: each MAC over its values and
    /// the one before, each balance and points the sum so far. The first
    /// break is a finding; the walk then only sums.
    async fn walk(
        &mut self,
        no: &str,
        keys: &RowKeys,
        found: &mut Vec<Finding>,
    ) -> anyhow::Result<Chain> {
        let mut ch = Chain {
            head: None,
            count: 0,
            ok: true,
            balance_sum: Decimal::ZERO,
            points_sum: 0,
        };
        while let Some(p) = self.rows.peek().await? {
            if p.get::<_, &str>(0) != no {
                break;
            }
            let p = self.rows.next().await?.expect("peeked");
            self.read += 1;
            let v = posting_values(&p);
            let mac: Option<Vec<u8>> = p.get(14);
            let kid: Option<String> = p.get(15);
            let at = || format!("{no}/{}", p.get::<_, i64>(16));
            if ch.ok
                && !keys.verify(
                    kid.as_deref(),
                    &v.image(),
                    ch.head.as_deref(),
                    mac.as_deref(),
                )
            {
                ch.ok = false;
                let why = "posting MAC does not match its values or the posting before it";
                found.push(finding("postings", &at(), "chain", why));
            }
            ch.balance_sum += v.balance_delta;
            ch.points_sum += v.points_delta;
            if ch.ok && (v.balance != ch.balance_sum || v.points != ch.points_sum) {
                ch.ok = false;
                let why = "balance or points after the posting ≠ the sum of the postings so far";
                found.push(finding("postings", &at(), "balance", why));
            }
            ch.head = mac;
            ch.count += 1;
        }
        Ok(ch)
    }
}

impl Chain {
    /// The chain's end against the card's, and the card's balance and
    /// points against the chain's sums and its live lots; whether the
    /// chain is whole.
    fn check_totals(&self, card: &CardRead, found: &mut Vec<Finding>) -> bool {
        let v = &card.values;
        let no = &v.card_no;
        let mut ok = self.ok;
        if ok && (self.head != v.last_mac || self.count != v.chain_len) {
            ok = false;
            let why = format!(
                "card names {} postings ending in another MAC; the chain has {}",
                v.chain_len, self.count
            );
            found.push(finding("cards", no, "chain", why));
        }
        if self.balance_sum != v.balance {
            let why = format!(
                "balance {} ≠ sum of postings {}",
                v.balance, self.balance_sum
            );
            found.push(finding("cards", no, "balance", why));
        }
        if self.points_sum != v.points {
            let why = format!("points {} ≠ sum of postings {}", v.points, self.points_sum);
            found.push(finding("cards", no, "points", why));
        }
        if card.live_lots != v.points {
            let why = format!("points {} ≠ live lots {}", v.points, card.live_lots);
            found.push(finding("cards", no, "lots", why));
        }
        ok
    }
}

/// Streams `sql` and checks each row with `check`, which names the row and
/// says whether its MAC matches; a mismatch is a finding under `table`.
async fn scan_row_macs(
    ta: &Transaction<'_>,
    sql: &str,
    table: &str,
    report: &mut Report,
    pb: &ProgressBar,
    check: impl Fn(&Row) -> (String, bool),
) -> anyhow::Result<()> {
    let mut rows = Batches::new(ta, sql).await?;
    let mut n = 0u64;
    while let Some(r) = rows.next().await? {
        n += 1;
        let (key, ok) = check(&r);
        if !ok {
            report
                .findings
                .push(finding(table, &key, "mac", "row MAC does not match"));
        }
        pb.inc(1);
    }
    report.rows.insert(table.into(), n);
    Ok(())
}

/// A table of [`Protected`] rows: each row's MAC.
async fn scan<T: Protected>(
    ta: &Transaction<'_>,
    keys: &RowKeys,
    report: &mut Report,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    pb.set_message(T::TABLE);
    scan_row_macs(ta, &select_all::<T>(false), T::TABLE, report, pb, |r| {
        let row = T::decode(r);
        (row.label(), row.mac_ok(keys))
    })
    .await
}

async fn scan_audit(
    ta: &Transaction<'_>,
    keys: &RowKeys,
    report: &mut Report,
    pb: &ProgressBar,
) -> anyhow::Result<()> {
    let mut rows = Batches::new(ta, crate::store::audit::CHAIN_SQL).await?;
    let mut n = 0u64;
    let mut prev: Option<Vec<u8>> = None;
    let mut last_id: Option<i64> = None;
    let mut broken = false;
    while let Some(r) = rows.next().await? {
        n += 1;
        let (id, img) = crate::store::audit::chain_row(&r);
        let mac: Option<Vec<u8>> = r.get(7);
        if !broken && !keys.verify(r.get(8), &img, prev.as_deref(), mac.as_deref()) {
            // Every row after a break fails too: one finding says it.
            broken = true;
            report.findings.push(finding(
                "audit",
                &id.to_string(),
                "chain",
                "audit row MAC does not match its values or the row before it",
            ));
        }
        prev = mac;
        last_id = Some(id);
        pb.inc(1);
    }
    let head = ta
        .query_one("SELECT last_id, last_mac FROM audit_head", &[])
        .await?;
    let (hid, hmac): (Option<i64>, Option<Vec<u8>>) = (head.get(0), head.get(1));
    if !broken && (hid != last_id || hmac != prev) {
        report.findings.push(finding(
            "audit",
            &hid.map_or("-".into(), |i| i.to_string()),
            "chain",
            "the audit chain's head is not its last row (rows deleted at the end)",
        ));
    }
    report.rows.insert("audit".into(), n);
    Ok(())
}

fn card_json(v: &CardValues) -> serde_json::Value {
    serde_json::json!({
        "status": v.status, "balance": v.balance.to_string(), "points": v.points,
        "pin_set": v.pin_hash.is_some(), "pin_fail_count": v.pin_fail_count,
        "chain_len": v.chain_len,
    })
}

/// Restores each card whose sealed copy is intact and agrees with its
/// postings chain (intact, same length, same last MAC, same sums, points in
/// its lots); audits each restore. A card changed since the scan is left.
async fn repair(
    pool: &Pool,
    keys: &RowKeys,
    report: &mut Report,
    scans: &BTreeMap<String, CardScan>,
) -> anyhow::Result<()> {
    for (no, s) in scans {
        let Some(sealed) = &s.sealed else { continue };
        let agrees = s.chain_ok
            && sealed.chain_len == s.postings
            && sealed.last_mac == s.head
            && sealed.balance == s.balance_sum
            && sealed.points == s.points_sum
            && sealed.points == s.live_lots;
        // Values equal to the sealed copy with only the MAC wrong (a MAC
        // copied from another row) are restored too: the MAC is rewritten.
        if !agrees {
            continue;
        }
        let img = sealed.image();
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE cards SET member_id = $2, status = $3, balance = $4, points = $5,
                        pin_hash = $6, pin_salt = $7, pin_fail_count = $8, chain_len = $9,
                        last_mac = $10, row_mac = $11, mac_key_id = $12, sealed = $13
                  WHERE card_no = $1 AND status = $14 AND balance = $15 AND points = $16
                    AND chain_len = $17 AND last_mac IS NOT DISTINCT FROM $18",
                &[
                    no,
                    &sealed.member_id,
                    &sealed.status,
                    &sealed.balance,
                    &sealed.points,
                    &sealed.pin_hash,
                    &sealed.pin_salt,
                    &(sealed.pin_fail_count as i32),
                    &sealed.chain_len,
                    &sealed.last_mac,
                    &keys.mac(&img, None),
                    &keys.current_id(),
                    &keys.seal(&img),
                    &s.values.status,
                    &s.values.balance,
                    &s.values.points,
                    &s.values.chain_len,
                    &s.values.last_mac,
                ],
            )
            .await?;
        if n != 1 {
            tx.rollback().await?;
            continue;
        }
        let r = Repair {
            card_no: no.clone(),
            restored: card_json(sealed),
            was: card_json(&s.values),
        };
        crate::store::audit::insert(
            &tx,
            keys,
            "verify.repair",
            None,
            std::env::var("USER").ok().as_deref(),
            Some("cli"),
            &serde_json::json!({"table": "cards", "key": no, "restored": r.restored, "was": r.was}),
        )
        .await?;
        tx.commit().await?;
        report.repaired.push(r);
    }
    Ok(())
}

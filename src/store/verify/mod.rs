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
use serde::Serialize;
use tokio_postgres::Row;

use crate::integrity::RowKeys;
use crate::store::keys::DayKeyRow;
use crate::store::protected::{
    select_all, LevelRow, MemberRow, OperatorRow, OrderRow, PointsLotRow, Protected, SessionRow,
};
use crate::store::terminals::TerminalRow;

/// Rows fetched per round trip.
mod cards;
mod repair;

use cards::{scan_cards, CardScan};
use repair::repair;

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
    /// The table and key of the row restored.
    pub table: String,
    pub key: String,
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

/// Two connections to the same server, so that one's snapshot can be
/// shared with the other: through a load balancer in front of several
/// replicas (the read port), two connections may reach two servers.
async fn pair_on_one_server(pool: &Pool) -> anyhow::Result<(Object, Object)> {
    // Every try holds its connection, so the tries stay below what the
    // pool can hand out beside the first (a replica's pool is small).
    const TRIES_MAX: usize = 6;
    let tries = TRIES_MAX
        .min(pool.status().max_size.saturating_sub(1))
        .max(1);
    let server = |c: Object| async move {
        let r = c
            .query_one(
                "SELECT coalesce(host(inet_server_addr()), ''), coalesce(inet_server_port(), 0)",
                &[],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(((r.get::<_, String>(0), r.get::<_, i32>(1)), c))
    };
    let (want, a) = server(pool.get().await?).await?;
    // Held until the end, so the pool opens new connections meanwhile.
    let mut elsewhere = Vec::new();
    for _ in 0..tries {
        let (at, b) = server(pool.get().await?).await?;
        if at == want {
            return Ok((a, b));
        }
        elsewhere.push(b);
    }
    anyhow::bail!("no two connections reached the same server in {tries} tries ({want:?})")
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

/// Scans every protected table; with `repair`, restores the cards, and the
/// members, terminals, operators and levels, that their sealed copies can.
pub async fn verify(pool: &Pool, keys: &RowKeys, opts: Options) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let mut report = Report::default();
    let mut scans: BTreeMap<String, CardScan> = BTreeMap::new();
    {
        let (mut ca, mut cb) = pair_on_one_server(pool).await?;
        let (ta, tb) = begin_pair(&mut ca, &mut cb).await?;
        let counts = ta
            .query_one(
                "SELECT (SELECT count(*) FROM cards), (SELECT count(*) FROM postings),
                        (SELECT count(*) FROM members), (SELECT count(*) FROM terminals),
                        (SELECT count(*) FROM audit), (SELECT count(*) FROM operators),
                        (SELECT count(*) FROM levels), (SELECT count(*) FROM day_keys),
                        (SELECT count(*) FROM sessions), (SELECT count(*) FROM orders),
                        (SELECT count(*) FROM lots)",
                &[],
            )
            .await?;
        let total: i64 = (0..11).map(|i| counts.get::<_, i64>(i)).sum();
        let pb = bar(&opts, total.max(0) as u64);

        pb.set_message("cards");
        scan_cards(&ta, &tb, keys, &mut report, &mut scans, &pb).await?;
        scan::<MemberRow>(&ta, keys, &mut report, &pb).await?;
        scan::<OrderRow>(&ta, keys, &mut report, &pb).await?;
        scan::<PointsLotRow>(&ta, keys, &mut report, &pb).await?;
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
        repair::restore_rows(pool, keys, &mut report).await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
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

//! The daemon's audit writer (issue 12). One task, with a connection of its
//! own, appends the daemon's audit rows in batches, so refusals never hold
//! the pooled connections that postings need, and a flood of them waits on
//! one connection instead of many racing for the chain's head.
//!
//! Two kinds of refusal, two costs:
//! - a request that proved its terminal's key (its MAC checked) gets a row
//!   of its own, and its answer waits until that row is committed, so every
//!   such refusal a terminal was told of is on the trail (or, if the row
//!   cannot be written, on the error log, with its content);
//! - a request that proved nothing (junk, a bad MAC, a wrong password) is
//!   tallied in memory per source address, and each minute's tally becomes
//!   one `refused.unproved` row per address and one log line. Such a flood
//!   costs the daemon a hash-map update per request, never a write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::integrity::RowKeys;
use crate::store::audit::{append_batch, AuditKind, Entry};

/// Rows waiting for the writer; a sender waits when it is full.
const QUEUE_LEN: usize = 4096;
/// Rows per transaction.
const MAX_BATCH: usize = 256;
/// How long a refusal waits for room in the queue before its row is logged
/// instead (at error, with its content).
const ENQUEUE_WAIT: Duration = Duration::from_secs(2);
/// Attempts at one batch before its rows are logged instead.
const MAX_ATTEMPTS: u32 = 3;
/// Source addresses tallied per minute; the rest share the tally of `*`.
const MAX_SOURCES: usize = 1024;
/// Distinct reasons and terminal ids kept per tally (the counts are exact).
const MAX_NAMES: usize = 8;

enum Job {
    Row(Entry, oneshot::Sender<bool>),
    /// Write the tallies and stop.
    Stop(oneshot::Sender<()>),
}

/// The handle request handlers hold.
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    unproved: Mutex<Tallies>,
    /// Rows that could not be written (each logged at error instead).
    pub lost: prometheus_client::metrics::counter::Counter,
}

/// The writer's end, for [`run`].
pub struct Writer {
    jobs: mpsc::Receiver<Job>,
}

impl AuditLog {
    pub fn new() -> (AuditLog, Writer) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let log = AuditLog {
            jobs: tx,
            unproved: Mutex::new(Tallies::default()),
            lost: Default::default(),
        };
        (log, Writer { jobs: rx })
    }

    /// Appends `entry` and waits until it is committed; `false` when it
    /// could not be (then it is on the error log, and counted in `lost`).
    pub async fn record(&self, entry: Entry) -> bool {
        let (done, written) = oneshot::channel();
        let job = Job::Row(entry.clone(), done);
        let queued = tokio::time::timeout(ENQUEUE_WAIT, self.jobs.send(job)).await;
        let ok = match queued {
            Ok(Ok(())) => written.await.unwrap_or(false),
            _ => {
                log_lost(&entry, "the audit queue is full or closed");
                false
            }
        };
        if !ok {
            self.lost.inc();
        }
        ok
    }

    /// Tallies a refusal of a request that proved no key.
    pub fn note_unproved(&self, source: IpAddr, errno: u16, reason: &str, terminal: Option<&str>) {
        let minute = chrono::Utc::now().timestamp().div_euclid(60);
        let mut t = self.unproved.lock().expect("tallies lock");
        t.note(minute, source, errno, reason, terminal);
    }

    /// Writes what is queued and the tallies so far, then stops the writer.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Stop(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), stopped).await;
        }
    }

    fn take_tallies(&self, before_minute: Option<i64>) -> Vec<Entry> {
        let mut t = self.unproved.lock().expect("tallies lock");
        t.take(before_minute)
    }
}

/// Writes rows as they come and each minute's tallies once it is over,
/// until [`AuditLog::stop`].
pub async fn run(
    mut w: Writer,
    log: &AuditLog,
    pool: deadpool_postgres::Pool,
    keys: std::sync::Arc<RowKeys>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let first = tokio::select! {
            job = w.jobs.recv() => job,
            _ = tick.tick() => {
                let minute = chrono::Utc::now().timestamp().div_euclid(60);
                write_tallies(&pool, &keys, log.take_tallies(Some(minute))).await;
                continue;
            }
        };
        let mut batch = Vec::new();
        let mut stop = None;
        match first {
            None => return,
            Some(Job::Stop(done)) => stop = Some(done),
            Some(Job::Row(e, done)) => batch.push((e, done)),
        }
        while stop.is_none() && batch.len() < MAX_BATCH {
            match w.jobs.try_recv() {
                Ok(Job::Row(e, done)) => batch.push((e, done)),
                Ok(Job::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        write_rows(&pool, &keys, batch).await;
        if let Some(done) = stop {
            write_tallies(&pool, &keys, log.take_tallies(None)).await;
            let _ = done.send(());
            return;
        }
    }
}

async fn write_rows(
    pool: &deadpool_postgres::Pool,
    keys: &RowKeys,
    batch: Vec<(Entry, oneshot::Sender<bool>)>,
) {
    if batch.is_empty() {
        return;
    }
    let (entries, dones): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
    let ok = append(pool, keys, &entries).await;
    if !ok {
        for e in &entries {
            log_lost(e, "the database did not take it");
        }
    }
    for d in dones {
        let _ = d.send(ok);
    }
}

async fn write_tallies(pool: &deadpool_postgres::Pool, keys: &RowKeys, rows: Vec<Entry>) {
    if rows.is_empty() {
        return;
    }
    let count: u64 = rows
        .iter()
        .filter_map(|e| e.detail.get("count").and_then(|c| c.as_u64()))
        .sum();
    // The sampled log line: one a minute, however large the flood.
    tracing::info!(
        refusals = count,
        sources = rows.len(),
        "requests that proved no key were refused (see `cardswitch audit`, kind refused.unproved)"
    );
    if !append(pool, keys, &rows).await {
        for e in &rows {
            log_lost(e, "the database did not take it");
        }
    }
}

/// One transaction per attempt; a lost connection is replaced by the pool.
async fn append(pool: &deadpool_postgres::Pool, keys: &RowKeys, entries: &[Entry]) -> bool {
    for attempt in 1..=MAX_ATTEMPTS {
        let result = async {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            append_batch(&tx, keys, entries).await?;
            tx.commit().await?;
            Ok::<_, crate::Error>(())
        }
        .await;
        match result {
            Ok(()) => return true,
            Err(e) => {
                if matches!(&e, crate::Error::Db(db) if crate::store::is_read_only(db)) {
                    crate::store::forget_idle_connections(pool);
                }
                tracing::warn!(error = %e, attempt, rows = entries.len(), "audit append failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    false
}

fn log_lost(e: &Entry, why: &str) {
    tracing::error!(
        kind = e.kind.as_str(),
        terminal = e.terminal.as_deref(),
        actor = e.actor.as_deref(),
        source = e.source.as_deref(),
        detail = %e.detail,
        why,
        "cannot write an audit row; it is recorded here instead"
    );
}

/// The minute's refusals of requests that proved no key, per source.
#[derive(Default)]
struct Tallies {
    minute: i64,
    by_source: HashMap<String, Tally>,
    /// Earlier minutes' tallies not yet written (a minute that ended while
    /// the writer was busy).
    done: Vec<(i64, String, Tally)>,
}

#[derive(Default)]
struct Tally {
    count: u64,
    errnos: BTreeMap<u16, u64>,
    reasons: BTreeMap<String, u64>,
    terminals: BTreeSet<String>,
}

impl Tallies {
    fn note(
        &mut self,
        minute: i64,
        source: IpAddr,
        errno: u16,
        reason: &str,
        terminal: Option<&str>,
    ) {
        if minute != self.minute {
            self.close_minute();
            self.minute = minute;
        }
        let mut key = source.to_string();
        if !self.by_source.contains_key(&key) && self.by_source.len() >= MAX_SOURCES {
            key = "*".to_owned();
        }
        let t = self.by_source.entry(key).or_default();
        t.count += 1;
        *t.errnos.entry(errno).or_default() += 1;
        if t.reasons.contains_key(reason) || t.reasons.len() < MAX_NAMES {
            *t.reasons.entry(reason.to_owned()).or_default() += 1;
        }
        if let Some(id) = terminal {
            if t.terminals.len() < MAX_NAMES {
                t.terminals.insert(id.chars().take(64).collect());
            }
        }
    }

    fn close_minute(&mut self) {
        let minute = self.minute;
        self.done.extend(
            self.by_source
                .drain()
                .map(|(source, t)| (minute, source, t)),
        );
    }

    /// The tallies of minutes before `before_minute` (all, when `None`) as
    /// audit rows.
    fn take(&mut self, before_minute: Option<i64>) -> Vec<Entry> {
        if before_minute.map_or(true, |m| self.minute < m) {
            self.close_minute();
        }
        self.done
            .drain(..)
            .map(|(minute, source, t)| t.entry(minute, source))
            .collect()
    }
}

impl Tally {
    fn entry(self, minute: i64, source: String) -> Entry {
        let at = chrono::DateTime::from_timestamp(minute * 60, 0).unwrap_or_default();
        let errnos: serde_json::Map<String, serde_json::Value> = self
            .errnos
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        Entry {
            kind: AuditKind::RefusedUnproved,
            terminal: None,
            actor: None,
            source: Some(source),
            detail: serde_json::json!({
                "minute": at.format("%Y-%m-%dT%H:%MZ").to_string(),
                "count": self.count,
                "errnos": errnos,
                "reasons": self.reasons,
                "terminals": self.terminals,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_minute_becomes_one_row_per_source() {
        let mut t = Tallies::default();
        for _ in 0..1000 {
            t.note(10, ip("10.0.0.1"), 1001, "txn form", None);
        }
        t.note(10, ip("10.0.0.1"), 1007, "wrong MAC", Some("T1"));
        t.note(
            10,
            ip("10.0.0.2"),
            1003,
            "bad secret or password",
            Some("T1"),
        );
        assert!(t.take(Some(10)).is_empty(), "the minute is not over");
        let mut rows = t.take(Some(11));
        rows.sort_by(|a, b| a.source.cmp(&b.source));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].source.as_deref(), Some("10.0.0.1"));
        assert_eq!(rows[0].detail["count"], 1001);
        assert_eq!(rows[0].detail["errnos"]["1001"], 1000);
        assert_eq!(rows[0].detail["terminals"][0], "T1");
        assert_eq!(rows[0].detail["minute"], "1970-01-01T00:10Z");
        assert!(t.take(Some(12)).is_empty(), "written once");
    }

    #[test]
    fn sources_and_names_are_bounded() {
        let mut t = Tallies::default();
        for i in 0..(MAX_SOURCES as u32 + 50) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.note(
                1,
                IpAddr::V4(a),
                1001,
                &format!("reason {i}"),
                Some(&format!("T{i}")),
            );
        }
        let rows = t.take(None);
        assert_eq!(rows.len(), MAX_SOURCES + 1);
        let star = rows
            .iter()
            .find(|r| r.source.as_deref() == Some("*"))
            .unwrap();
        assert_eq!(star.detail["count"], 50);
        assert_eq!(star.detail["reasons"].as_object().unwrap().len(), MAX_NAMES);
        assert_eq!(
            star.detail["terminals"].as_array().unwrap().len(),
            MAX_NAMES
        );
        let total: u64 = rows
            .iter()
            .map(|r| r.detail["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, MAX_SOURCES as u64 + 50);
    }

    #[test]
    fn a_new_minute_closes_the_last() {
        let mut t = Tallies::default();
        t.note(5, ip("10.0.0.1"), 1001, "x", None);
        t.note(6, ip("10.0.0.1"), 1001, "x", None);
        let rows = t.take(Some(6));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].detail["minute"], "1970-01-01T00:05Z");
        assert_eq!(t.take(None).len(), 1);
    }
}

//! One decrypted txn, one database transaction: the once-only `ts` is used up
//! in the same transaction as the operation, so a replay is refused after a
//! restart and on every instance, and a refused posting still spends its `ts`
//! without a second commit.

use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::HashMap;

use deadpool_postgres::{Object, ObjectId, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::error::{Error, Result};
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::xml::Rows;
use crate::store::ledger::{Outcome, WriteRows};
use crate::store::seen_ts;

/// What every txn may need besides its request: the configuration (ledger
/// rules, business day) and the key of password and PIN hashes.
pub struct TxnEnv {
    pub config: std::sync::Arc<crate::config::Config>,
    pub hash_key: crate::crypto::Secret32,
    /// Row MACs and sealed copies (issue 5).
    pub row_keys: std::sync::Arc<crate::integrity::RowKeys>,
    /// Where reads that lock nothing may go while it is current (issue 13).
    pub replica: Option<std::sync::Arc<crate::store::replica::Replica>>,
    /// The ledger's prepared statements, on the connections of the one
    /// pool this environment's txns run on.
    pub statements: std::sync::Arc<KeptStatements>,
}

/// Prepared statements of the ledger's statement shapes, by connection and
/// by the address of their `'static` text (issue 14). deadpool's own cache
/// hashes the whole text, several KB a shape, on every look-up: 4.7 % of the
/// daemon's instructions per txn. For one pool's connections, since an
/// [`ObjectId`] names a connection within its pool, and never reused there.
#[derive(Default)]
pub struct KeptStatements(std::sync::Mutex<HashMap<StatementKey, Statement>>);

/// A connection, and a text's address and length.
type StatementKey = (ObjectId, usize, usize);

/// Connections times shapes: past it, all are dropped (and prepared again
/// from deadpool's cache), so that the statements of connections closed by
/// the pool do not pile up.
const KEPT_STATEMENTS_MAX: usize = 4096;

impl KeptStatements {
    fn get(&self, key: StatementKey) -> Option<Statement> {
        self.0.lock().ok()?.get(&key).cloned()
    }

    fn put(&self, key: StatementKey, stmt: Statement) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= KEPT_STATEMENTS_MAX {
                m.clear();
            }
            m.insert(key, stmt);
        }
    }

    /// A connection taken out of the pool: its statements go with it.
    fn forget(&self, id: ObjectId) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| k.0 != id);
        }
    }

    /// How many statements are kept, on every connection.
    pub fn count(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Who sent the txn and when, as established by the protocol layer.
#[derive(Clone, Debug)]
pub struct TxnContext {
    pub terminal: String,
    pub store_id: String,
    pub ts: i64,
    pub now: DateTime<Utc>,
}

/// What a txn's transaction committed.
#[derive(Debug)]
pub enum Committed {
    /// The op ran: its answer rows.
    Answered(Rows),
    /// Refused: the `ts` is spent, with whatever the refusal itself writes
    /// (a wrong PIN counted); nothing else changed.
    Refused(Errno),
}

impl Committed {
    /// The rows, or the refusal as an error (for callers that only answer).
    pub fn into_rows(self) -> Result<Rows> {
        match self {
            Committed::Answered(rows) => Ok(rows),
            Committed::Refused(errno) => Err(Error::Refused(errno)),
        }
    }
}

/// How many times a request runs when a run fails in a way that says "run
/// again" (a deadlock, a stale pooled connection).
const MAX_ATTEMPTS: u32 = 4;
/// The wait before running again after a read-only node, times the attempt
/// (50, 100, 150 ms): about HAProxy's check interval in all.
const READ_ONLY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `form` for `ctx`. The `ts` is recorded first (1006 when used
/// before); what commits is a [`Committed`]; an `Err` rolled everything
/// back. A deadlock or serialization failure (which the ledger's lock order
/// should never cause) or a stale pooled connection is retried a few times
/// before it is answered 3002. `Error::UnknownRowKey` is the caller's to
/// handle (load the row keys, run again): the store reads no key files.
pub async fn run(
    pool: &Pool,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Committed> {
    for attempt in 1..=MAX_ATTEMPTS {
        match run_once(pool, env, ctx, form).await {
            Err(Error::Db(e)) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                tracing::warn!(error = %e, attempt, "txn retried");
            }
            // Nothing ran on a read-only node; a new connection may reach
            // the new primary once the proxy has seen it.
            Err(Error::Db(e)) if crate::store::is_read_only(&e) => {
                crate::store::forget_idle_connections(pool);
                if attempt == MAX_ATTEMPTS {
                    return Err(Error::Db(e));
                }
                tracing::warn!(attempt, "txn reached a read-only node; retried");
                tokio::time::sleep(READ_ONLY_BACKOFF * attempt).await;
            }
            Err(Error::StaleConnection) if attempt < MAX_ATTEMPTS => {
                crate::store::forget_idle_connections(pool);
            }
            Err(Error::StaleConnection) => return Err(Errno::Unavailable.into()),
            Err(Error::Tampered(what)) => {
                tampered(pool, env, ctx, form, &what).await;
                return Err(Error::Tampered(what));
            }
            other => return other,
        }
    }
    Err(Errno::Unavailable.into())
}

/// A row failed its integrity check: the posting's transaction is rolled
/// back (nothing changed); the finding is logged at error level and audited
/// in a transaction of its own.
pub async fn tampered(pool: &Pool, env: &TxnEnv, ctx: &TxnContext, form: &InnerForm, what: &str) {
    tracing::error!(
        terminal = ctx.terminal,
        op = form.op.as_str(),
        finding = what,
        "integrity check failed: request refused (3001)"
    );
    let detail = serde_json::json!({"finding": what, "op": form.op.as_str()});
    let result = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        crate::store::audit::insert(
            &client,
            &env.row_keys,
            crate::store::audit::AuditKind::Tampered,
            Some(&ctx.terminal),
            None,
            None,
            &detail,
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot audit an integrity failure");
    }
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

async fn run_once(
    pool: &Pool,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Committed> {
    let mut conn = TxnConn::new(pool.get().await?, env, false);
    match crate::store::ledger::execute(&conn, env, ctx, form).await {
        Ok(Outcome::Answered(rows)) => {
            conn.commit().await?;
            Ok(Committed::Answered(rows))
        }
        Ok(Outcome::Refused { errno, writes }) => {
            writes.apply(&conn).await?;
            conn.commit().await?;
            Ok(Committed::Refused(errno))
        }
        Err(e) => {
            // A connection that failed mid-statement is dropped below, not
            // rolled back here: its rollback could fail too.
            if conn.is_usable() {
                conn.rollback().await?;
            }
            Err(e)
        }
    }
}

/// BEGIN, the transaction's timeouts and its plans' one rule, one
/// simple-query message.
///
/// No sequential scans: every ledger statement names its rows by key, and
/// its plan, generic and kept per connection (`store::make_pool`), is made
/// the first time it runs, often when its tables are nearly empty (a new
/// chain's database, the benchmark's). Such a plan scanned `orders` in
/// every write until an ANALYZE replaced it, and a batch's claim scanned
/// `lots` for a whole run (issue 14: 15 % of PostgreSQL's CPU per debit at
/// 10,000 cards, growing with the table). The office ops, which do sum
/// whole tables, turn scans back on (`ledger::office`).
fn begin_sql(db: &crate::config::DbConfig) -> String {
    format!(
        "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; \
         SET LOCAL enable_seqscan = off",
        db.lock_timeout.as_millis(),
        db.statement_timeout.as_millis()
    )
}

/// How a batch that did not commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchFailed {
    /// Rolled back, nothing of it stays: each txn may run again on its own.
    RolledBack,
    /// The connection broke during the COMMIT: whether it committed is
    /// unknown, so no txn of it may run again here (a terminal resends).
    Unknown,
}

/// One txn of a batch: its request parsed from its form once, by the
/// caller that found it batchable.
pub struct BatchTxn<'a> {
    pub ctx: &'a TxnContext,
    pub form: &'a InnerForm,
    pub req: &'a crate::ledger::request::Request,
}

/// Runs `items` in one transaction (group commit, issue 14): their claims
/// as one statement per shape with the BEGIN, then every txn as [`run`]
/// would, pipelined on one connection, each appending its rows to the
/// batch's one write, which goes with the one COMMIT (one WAL flush).
/// Committed only if every txn ended in an outcome; an `Err` in any (a
/// used `ts`, a tampered row, a deadlock, an unknown row key) rolls the
/// whole batch back for each to run alone. The caller keeps items that
/// share a card, terminal or operator out of one batch: their statements
/// interleave.
pub async fn run_batch(
    pool: &Pool,
    env: &TxnEnv,
    items: &[BatchTxn<'_>],
) -> std::result::Result<Vec<Committed>, BatchFailed> {
    let Ok(obj) = pool.get().await else {
        return Err(BatchFailed::RolledBack);
    };
    let mut conn = TxnConn::new(obj, env, true);
    let done = match run_all(&conn, env, items).await {
        Ok(d) => d,
        Err(_) => {
            if conn.is_usable() {
                let _ = conn.rollback().await;
            }
            return Err(BatchFailed::RolledBack);
        }
    };
    // Poisoned only by a panic mid-append: then the batch cannot commit.
    let Some(rows) = conn.batch.take().and_then(|b| b.into_inner().ok()) else {
        return Err(BatchFailed::RolledBack);
    };
    // No longer a batch: the one write carries the COMMIT.
    let written = match rows.execute(&conn).await {
        Ok(()) => conn.commit().await,
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => Ok(done),
        // The connection broke: the COMMIT may have landed.
        Err(_) if !conn.is_usable() => Err(BatchFailed::Unknown),
        // The server refused the write or the COMMIT: it rolled back.
        Err(_) => Err(BatchFailed::RolledBack),
    }
}

/// The batch's claims (BEGIN goes out with them: one round trip), then
/// each txn on its claimed rows.
async fn run_all(conn: &TxnConn, env: &TxnEnv, items: &[BatchTxn<'_>]) -> Result<Vec<Committed>> {
    let claims: Vec<crate::store::ledger::BatchClaim<'_>> = items
        .iter()
        .map(|t| crate::store::ledger::BatchClaim {
            ctx: t.ctx,
            req: t.req,
        })
        .collect();
    let claimed = conn
        .begun_with(crate::store::ledger::claim_batch(conn, &claims))
        .await??;
    let runs = items
        .iter()
        .zip(claimed)
        .map(|(t, row)| run_in_batch(conn, env, t, row));
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .collect()
}

async fn run_in_batch(
    conn: &TxnConn,
    env: &TxnEnv,
    t: &BatchTxn<'_>,
    claimed: Option<Row>,
) -> Result<Committed> {
    let ledger = crate::store::ledger::execute_request(conn, env, t.ctx, t.form, t.req, claimed);
    match ledger.await? {
        Outcome::Answered(rows) => Ok(Committed::Answered(rows)),
        Outcome::Refused { errno, writes } => {
            writes.apply(conn).await?;
            Ok(Committed::Refused(errno))
        }
    }
}

/// A pooled connection in a transaction begun by hand, so that BEGIN goes
/// out with the request's first statement and COMMIT with its last
/// (pipelined: one round trip each instead of two; issue 6).
///
/// Dropped while its transaction may still be open (an error path that did
/// not end it, a panic, a connection that broke mid-way), the connection is
/// taken out of the pool and closed: a pooled connection is never handed out
/// inside a transaction.
pub struct TxnConn {
    obj: Option<Object>,
    kept: std::sync::Arc<KeptStatements>,
    /// BEGIN and the transaction's timeouts, one simple-query message.
    begin: String,
    state: StateCell,
    /// In a batch: the batch's rows, written by one statement before its
    /// COMMIT (not each txn's last statement, nor with its COMMIT).
    batch: Option<std::sync::Mutex<WriteRows>>,
}

/// The transaction's state, shared by `&self` methods (the connection is
/// used by one request at a time; atomic only so the future stays `Send`).
struct StateCell(std::sync::atomic::AtomicU8);

impl StateCell {
    fn get(&self) -> TxnState {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => TxnState::NotBegun,
            1 => TxnState::Open,
            2 => TxnState::Ended,
            _ => TxnState::Broken,
        }
    }

    fn set(&self, s: TxnState) {
        self.0.store(s as u8, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TxnState {
    NotBegun = 0,
    Open = 1,
    Ended = 2,
    /// A statement failed at the connection level: the state is unknown.
    Broken = 3,
}

impl TxnConn {
    fn new(obj: Object, env: &TxnEnv, batched: bool) -> TxnConn {
        let batch = batched.then(|| std::sync::Mutex::new(WriteRows::default()));
        TxnConn {
            obj: Some(obj),
            kept: env.statements.clone(),
            begin: begin_sql(&env.config.db),
            state: StateCell(std::sync::atomic::AtomicU8::new(TxnState::NotBegun as u8)),
            batch,
        }
    }

    /// Where a txn's rows go when it is one of a batch.
    pub(crate) fn batch_writes(&self) -> Option<&std::sync::Mutex<WriteRows>> {
        self.batch.as_ref()
    }

    fn client(&self) -> &Object {
        self.obj
            .as_ref()
            .expect("the connection is held until drop")
    }

    /// Runs `work` (this transaction's statements), with the BEGIN sent
    /// ahead of them in the same flight when the transaction is not begun
    /// yet. Should BEGIN fail, so did what followed it (a closed connection:
    /// nothing ran, so the request may try another connection), and the
    /// error says so.
    pub(crate) async fn begun_with<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        if self.state.get() != TxnState::NotBegun {
            return Ok(work.await);
        }
        // Open before `work` runs, so that its statements send no BEGIN.
        self.state.set(TxnState::Open);
        let (begun, out) = tokio::join!(self.client().batch_execute(&self.begin), work);
        self.watch(begun).map_err(stale_if_closed)?;
        Ok(out)
    }

    /// The connection, for a statement in the transaction (begun first).
    pub async fn in_txn(&self) -> Result<&Object> {
        if self.state.get() == TxnState::NotBegun {
            self.watch(self.client().batch_execute(&self.begin).await)
                .map_err(stale_if_closed)?;
            self.state.set(TxnState::Open);
        }
        Ok(self.client())
    }

    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement> {
        Ok(self.client().prepare_cached(sql).await?)
    }

    pub async fn prepare_typed_cached(
        &self,
        sql: &str,
        types: &[tokio_postgres::types::Type],
    ) -> Result<Statement> {
        Ok(self.client().prepare_typed_cached(sql, types).await?)
    }

    /// A statement of one of the ledger's shapes: looked up by its text's
    /// address when the text is kept for the process's life (each shape's
    /// is, up to the memo's limit), by the text itself otherwise. `types`
    /// must be the same for a text at every call.
    pub async fn prepare_kept(
        &self,
        sql: Cow<'static, str>,
        types: &[tokio_postgres::types::Type],
    ) -> Result<Statement> {
        let text = match sql {
            Cow::Borrowed(text) => text,
            Cow::Owned(text) => return self.prepare_typed_cached(&text, types).await,
        };
        let key = (
            Object::id(self.client()),
            text.as_ptr() as usize,
            text.len(),
        );
        if let Some(stmt) = self.kept.get(key) {
            return Ok(stmt);
        }
        let stmt = self.prepare_typed_cached(text, types).await?;
        self.kept.put(key, stmt.clone());
        Ok(stmt)
    }

    /// One statement in the transaction; the first one carries the BEGIN.
    pub async fn query_one(&self, stmt: &Statement, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let row = self
            .begun_with(self.client().query_one(stmt, params))
            .await?;
        self.watch(row).map_err(Into::into)
    }

    /// A statement of many rows in the transaction; the first one carries
    /// the BEGIN.
    pub async fn query(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let c = self.in_txn().await?;
        self.watch(c.query(stmt, params).await).map_err(Into::into)
    }

    /// `first`, then the statement of one row `stmt`, in one flight (with
    /// the BEGIN when not begun): `stmt`'s snapshot is taken after `first`
    /// ended, so it sees what committed while `first` waited for a lock.
    /// Both must be prepared, so that nothing goes out between them.
    pub async fn query_one_after(
        &self,
        (first, first_params): (&Statement, &[&(dyn ToSql + Sync)]),
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row> {
        let c = self.client();
        let both = async { tokio::join!(c.query(first, first_params), c.query_one(stmt, params)) };
        let (a, b) = self.begun_with(both).await?;
        self.watch(a)?;
        self.watch(b).map_err(Into::into)
    }

    pub async fn query_opt(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let c = self.in_txn().await?;
        self.watch(c.query_opt(stmt, params).await)
            .map_err(Into::into)
    }

    /// The transaction's last statement with its COMMIT: committed when this
    /// returns Ok. Should the statement fail, the server answers the COMMIT
    /// with a rollback, so nothing of the transaction stays.
    pub async fn query_one_and_commit(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row> {
        let c = self.in_txn().await?;
        let (row, commit) = tokio::join!(c.query_one(stmt, params), c.batch_execute("COMMIT"));
        // The server ended the transaction either way, unless the connection
        // broke (then `watch` marks it broken, and the outcome is unknown).
        self.state.set(TxnState::Ended);
        let row = self.watch(row);
        let commit = self.watch(commit);
        let row = row?;
        commit?;
        Ok(row)
    }

    async fn commit(&mut self) -> Result<()> {
        if self.state.get() == TxnState::Open {
            self.watch(self.client().batch_execute("COMMIT").await)?;
        }
        self.state.set(TxnState::Ended);
        Ok(())
    }

    async fn rollback(&mut self) -> Result<()> {
        if self.state.get() == TxnState::Open {
            self.watch(self.client().batch_execute("ROLLBACK").await)?;
        }
        self.state.set(TxnState::Ended);
        Ok(())
    }

    fn is_usable(&self) -> bool {
        self.state.get() != TxnState::Broken
    }

    /// Passes `r` on; a failure other than the server's refusal of a
    /// statement (a broken or closed connection) marks the connection broken.
    fn watch<T>(
        &self,
        r: std::result::Result<T, tokio_postgres::Error>,
    ) -> std::result::Result<T, tokio_postgres::Error> {
        if let Err(e) = &r {
            if e.as_db_error().is_none() {
                self.state.set(TxnState::Broken);
            }
        }
        r
    }
}

impl Drop for TxnConn {
    fn drop(&mut self) {
        if self.state.get() != TxnState::Ended && self.state.get() != TxnState::NotBegun {
            if let Some(obj) = self.obj.take() {
                self.kept.forget(Object::id(&obj));
                drop(Object::take(obj));
            }
        }
    }
}

fn stale_if_closed(e: tokio_postgres::Error) -> Error {
    if e.is_closed() {
        Error::StaleConnection
    } else {
        e.into()
    }
}

/// Records a `ts` on its own, for requests refused after their MAC passed but
/// before an operation could run (1008, a bad inner form). `Ok(false)`: used before.
pub async fn spend_ts(pool: &Pool, terminal: &str, ts: i64) -> Result<bool> {
    let client = pool.get().await?;
    Ok(seen_ts::record(&client, terminal, ts).await?)
}

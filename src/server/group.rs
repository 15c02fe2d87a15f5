//! Group commit (issue 14): txns that arrive together share one database
//! transaction, so one COMMIT and one WAL flush serve them all
//! ([`txn::run_batch`]).
//!
//! A txn is batched when the card it locks is known before it runs (one
//! card; no original to read, no card to create; no office op). A batch
//! holds no two txns of one card, terminal or manager, so every txn in a
//! batch reads rows no other txn of it writes (a deferred txn goes back to
//! the queue, for any collector: across transactions the card locks keep
//! txns apart, as between txns that run alone). Its txns run in
//! card-number order, the order every transaction locks cards in. A batch
//! that does not commit is rolled back and each of its txns runs alone,
//! exactly as without batching; a batch of one runs alone from the start.
//! No answer leaves before its batch's COMMIT returned.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::metrics::GroupMetrics;
use crate::error::Result;
use crate::ledger::request::{Body, Request};
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::store::txn::{self, BatchFailed, BatchTxn, Committed, TxnContext, TxnEnv};

/// Txns queued for the collectors at most; past it a txn runs alone.
const QUEUE_MAX: usize = 1024;

/// The settings, from `db.batch_*`.
#[derive(Clone, Copy, Debug)]
pub struct GroupLimits {
    pub max: usize,
    pub wait: Duration,
    pub workers: usize,
}

impl GroupLimits {
    pub fn of(db: &crate::config::DbConfig) -> GroupLimits {
        GroupLimits {
            max: db.batch_max.clamp(1, 128),
            wait: Duration::from_micros(db.batch_wait_us.min(10_000)),
            workers: db.batch_workers.clamp(1, (db.pool_size / 2).max(1)),
        }
    }
}

/// The entry point for every `/v1/txn` that reached the ledger.
pub struct Group {
    pool: Pool,
    env: Arc<TxnEnv>,
    /// `None` when batching is off (`batch_max` 1).
    queue: Option<mpsc::Sender<Item>>,
    shared: Arc<Shared>,
}

/// What the collectors read of the requests still on their way.
struct Shared {
    /// Requests being decrypted and checked, not yet at the ledger: while
    /// there are some, a collector may wait for them.
    arriving: AtomicUsize,
    /// Batches being run: their txns' terminals will send again soon.
    running: AtomicUsize,
    limits: GroupLimits,
    metrics: GroupMetrics,
}

impl Shared {
    /// Whether waiting may bring more txns: requests are being decrypted,
    /// or other batches are running (their tills send again once answered).
    fn more_coming(&self) -> bool {
        self.arriving.load(Ordering::Relaxed) > 0 || self.running.load(Ordering::Relaxed) > 0
    }
}

struct Item {
    ctx: TxnContext,
    form: InnerForm,
    /// Parsed from `form` once, when it was found batchable.
    req: Request,
    keys: Keys,
    reply: oneshot::Sender<Result<Committed>>,
}

/// What two txns of one batch must not share.
struct Keys {
    card: String,
    terminal: String,
    /// (store, operator): a manager's PIN counter.
    operator: Option<(String, String)>,
}

/// A request on its way to the ledger (see [`Shared::arriving`]).
pub struct Arrival<'a>(&'a AtomicUsize);

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Group {
    /// The group and its collectors (tokio tasks, ending with the group).
    pub fn start(
        pool: Pool,
        env: Arc<TxnEnv>,
        limits: GroupLimits,
        metrics: GroupMetrics,
    ) -> Group {
        let shared = Arc::new(Shared {
            arriving: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            limits,
            metrics,
        });
        let queue = (limits.max > 1).then(|| {
            let (tx, rx) = mpsc::channel(QUEUE_MAX);
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..limits.workers {
                let w = Worker {
                    pool: pool.clone(),
                    env: env.clone(),
                    shared: shared.clone(),
                    rx: rx.clone(),
                    requeue: tx.downgrade(),
                };
                tokio::spawn(w.run());
            }
            tx
        });
        Group {
            pool,
            env,
            queue,
            shared,
        }
    }

    /// Counts a request as on its way until the guard drops.
    pub fn arrive(&self) -> Arrival<'_> {
        self.shared.arriving.fetch_add(1, Ordering::Relaxed);
        Arrival(&self.shared.arriving)
    }

    /// Runs the txn, batched when it may be.
    pub async fn run(
        &self,
        ctx: TxnContext,
        form: InnerForm,
        arrival: Arrival<'_>,
    ) -> Result<Committed> {
        let batchable = batch_keys(&ctx, &form);
        let (Some(queue), Some((keys, req))) = (&self.queue, batchable) else {
            drop(arrival);
            self.shared.metrics.batch_size.observe(1.0);
            return crate::keys::run_txn(&self.pool, &self.env, &ctx, &form).await;
        };
        let (reply, answer) = oneshot::channel();
        let item = Item {
            ctx,
            form,
            req,
            keys,
            reply,
        };
        let sent = queue.try_send(item);
        drop(arrival);
        match sent {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(Errno::Unavailable.into())),
            Err(mpsc::error::TrySendError::Full(it) | mpsc::error::TrySendError::Closed(it)) => {
                self.shared.metrics.batch_size.observe(1.0);
                crate::keys::run_txn(&self.pool, &self.env, &it.ctx, &it.form).await
            }
        }
    }
}

/// What a batch must keep apart, and the parsed request; `None` when the
/// txn runs alone.
fn batch_keys(ctx: &TxnContext, form: &InnerForm) -> Option<(Keys, Request)> {
    let req = Request::from_form(form).ok()?;
    if matches!(req.body, Body::Office(_))
        || req.original(&ctx.terminal).is_some()
        || req.card_to_create().is_some()
    {
        return None;
    }
    let mut cards = req.cards_to_lock();
    let card = match (cards.pop(), cards.is_empty()) {
        (Some(c), true) => c,
        _ => return None,
    };
    let keys = Keys {
        card,
        terminal: ctx.terminal.clone(),
        operator: req
            .operator
            .id()
            .map(|id| (ctx.store_id.clone(), id.to_owned())),
    };
    Some((keys, req))
}

struct Worker {
    pool: Pool,
    env: Arc<TxnEnv>,
    shared: Arc<Shared>,
    rx: Arc<Mutex<mpsc::Receiver<Item>>>,
    /// Weak, so that the queue closes with the group.
    requeue: mpsc::WeakSender<Item>,
}

impl Worker {
    async fn run(self) {
        loop {
            let collected = {
                let mut rx = self.rx.lock().await;
                collect(&mut rx, &self.shared).await
            };
            let Some((batch, deferred)) = collected else {
                return;
            };
            let alone = self.requeue(deferred);
            self.shared.running.fetch_add(1, Ordering::Relaxed);
            self.commit(batch).await;
            self.shared.running.fetch_sub(1, Ordering::Relaxed);
            if !alone.is_empty() {
                self.run_alone(alone).await;
            }
        }
    }

    /// Deferred txns back to the queue; those it has no room for are
    /// returned, to run alone.
    fn requeue(&self, deferred: Vec<Item>) -> Vec<Item> {
        let Some(q) = self.requeue.upgrade() else {
            return deferred;
        };
        deferred
            .into_iter()
            .filter_map(|it| match q.try_send(it) {
                Ok(()) => None,
                Err(
                    mpsc::error::TrySendError::Full(it) | mpsc::error::TrySendError::Closed(it),
                ) => Some(it),
            })
            .collect()
    }

    /// Runs one batch and answers each of its txns.
    async fn commit(&self, mut batch: Vec<Item>) {
        let m = &self.shared.metrics;
        if batch.len() == 1 {
            m.batch_size.observe(1.0);
            return self.run_alone(batch).await;
        }
        batch.sort_by(|a, b| a.keys.card.cmp(&b.keys.card));
        let txns: Vec<BatchTxn<'_>> = batch
            .iter()
            .map(|it| BatchTxn {
                ctx: &it.ctx,
                form: &it.form,
                req: &it.req,
            })
            .collect();
        match txn::run_batch(&self.pool, &self.env, &txns).await {
            Ok(done) => {
                m.batch_size.observe(batch.len() as f64);
                for (it, r) in batch.into_iter().zip(done) {
                    let _ = it.reply.send(Ok(r));
                }
            }
            Err(BatchFailed::RolledBack) => {
                m.rolled_back.inc();
                for _ in 0..batch.len() {
                    m.batch_size.observe(1.0);
                }
                self.run_alone(batch).await;
            }
            Err(BatchFailed::Unknown) => {
                for it in batch {
                    let _ = it.reply.send(Err(Errno::Unavailable.into()));
                }
            }
        }
    }

    /// Each txn in its own transaction, as without batching.
    async fn run_alone(&self, batch: Vec<Item>) {
        let runs = batch.into_iter().map(|it| async move {
            let r = crate::keys::run_txn(&self.pool, &self.env, &it.ctx, &it.form).await;
            let _ = it.reply.send(r);
        });
        futures_util::future::join_all(runs).await;
    }
}

/// The next batch: what is queued, waiting up to the limit for more only
/// while more may come ([`Shared::more_coming`]); and the txns that clash
/// with one taken (deferred). `None`: the queue is closed.
async fn collect(rx: &mut mpsc::Receiver<Item>, shared: &Shared) -> Option<(Vec<Item>, Vec<Item>)> {
    let max = shared.limits.max;
    let mut batch = Batch::default();
    let mut deferred: Vec<Item> = Vec::new();
    let first = rx.recv().await?;
    batch.admit(first, max, &mut deferred);
    let deadline = tokio::time::Instant::now() + shared.limits.wait;
    while batch.items.len() < max && deferred.len() < max {
        let next = match rx.try_recv() {
            Ok(it) => it,
            Err(mpsc::error::TryRecvError::Empty) if shared.more_coming() => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(it)) => it,
                    _ => break,
                }
            }
            Err(_) => break,
        };
        batch.admit(next, max, &mut deferred);
    }
    Some((batch.items, deferred))
}

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    taken: Taken,
}

/// What the txns of a batch hold.
#[derive(Default)]
struct Taken {
    cards: BTreeSet<String>,
    terminals: BTreeSet<String>,
    operators: BTreeSet<(String, String)>,
}

impl Taken {
    /// Takes `k` unless a txn taken holds any of it.
    fn take(&mut self, k: &Keys) -> bool {
        let clash = self.cards.contains(&k.card)
            || self.terminals.contains(&k.terminal)
            || k.operator
                .as_ref()
                .is_some_and(|o| self.operators.contains(o));
        if clash {
            return false;
        }
        self.cards.insert(k.card.clone());
        self.terminals.insert(k.terminal.clone());
        if let Some(o) = &k.operator {
            self.operators.insert(o.clone());
        }
        true
    }
}

impl Batch {
    /// Takes `it` unless it clashes with a txn taken or the batch is full;
    /// else defers it.
    fn admit(&mut self, it: Item, max: usize, deferred: &mut Vec<Item>) {
        if self.items.len() >= max || !self.taken.take(&it.keys) {
            deferred.push(it);
            return;
        }
        self.items.push(it);
    }
}

#[cfg(test)]
mod tests {
    use super::{Keys, Taken};

    fn keys(card: &str, terminal: &str, operator: Option<&str>) -> Keys {
        Keys {
            card: card.into(),
            terminal: terminal.into(),
            operator: operator.map(|o| ("S1".to_owned(), o.to_owned())),
        }
    }

    #[test]
    fn a_batch_holds_no_two_txns_of_one_card_terminal_or_manager() {
        let mut t = Taken::default();
        assert!(t.take(&keys("C1", "T1", Some("M1"))));
        assert!(!t.take(&keys("C1", "T2", None)), "same card");
        assert!(!t.take(&keys("C2", "T1", None)), "same terminal");
        assert!(!t.take(&keys("C2", "T2", Some("M1"))), "same manager");
        assert!(t.take(&keys("C2", "T2", Some("M2"))));
        assert!(t.take(&keys("C3", "T3", None)));
    }
}

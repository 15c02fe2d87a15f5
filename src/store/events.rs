//! Events and their deliveries (protocol.md §8): the outbox the posting
//! statement fills (`ledger::sql::write`, section `Events`), the endpoints,
//! and the delivery rows a daemon leases, so that each event is delivered
//! by one daemon at a time and none is lost when one dies.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// An endpoint as ops registered it, with its deliveries that needed a
/// retry (`pending`, `delivered` after a retry, `failed`): a first attempt
/// that succeeds leaves no delivery row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    /// `None`: every op.
    pub ops: Option<Vec<String>>,
    /// `None`: every store.
    pub store_id: Option<String>,
    pub include_phone: bool,
    pub status: String,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// The `sealed_secrets` name of an endpoint's signing secret.
pub fn secret_name(webhook: &str) -> String {
    format!("webhook:{webhook}")
}

pub async fn add_webhook<C: GenericClient>(c: &C, w: &Webhook) -> PgResult<bool> {
    Ok(c.execute(
        "INSERT INTO webhooks (name, url, ops, store_id, include_phone)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[&w.name, &w.url, &w.ops, &w.store_id, &w.include_phone],
    )
    .await?
        == 1)
}

pub async fn list_webhooks<C: GenericClient>(c: &C) -> PgResult<Vec<Webhook>> {
    let rows = c
        .query(
            "SELECT w.name, w.url, w.ops, w.store_id, w.include_phone, w.status,
                    count(*) FILTER (WHERE d.status = 'pending'),
                    count(*) FILTER (WHERE d.status = 'delivered'),
                    count(*) FILTER (WHERE d.status = 'failed')
               FROM webhooks w LEFT JOIN deliveries d ON d.webhook = w.name
              GROUP BY w.name ORDER BY w.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Webhook {
            name: r.get(0),
            url: r.get(1),
            ops: r.get(2),
            store_id: r.get(3),
            include_phone: r.get(4),
            status: r.get(5),
            pending: r.get(6),
            delivered: r.get(7),
            failed: r.get(8),
        })
        .collect())
}

/// `Ok(false)` if there is no such endpoint. Its pending deliveries stay:
/// enabling it again (by SQL, or a new `add`) would send them.
pub async fn disable_webhook<C: GenericClient>(c: &C, name: &str) -> PgResult<bool> {
    Ok(c.execute(
        "UPDATE webhooks SET status = 'disabled' WHERE name = $1",
        &[&name],
    )
    .await?
        == 1)
}

/// Failed deliveries (of one event, or every one) made due again, their
/// attempts counted afresh; how many.
pub async fn retry<C: GenericClient>(c: &C, event_id: Option<i64>) -> PgResult<u64> {
    c.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = now()
          WHERE status = 'failed' AND ($1::bigint IS NULL OR event_id = $1)",
        &[&event_id],
    )
    .await
}

/// An active endpoint, as the deliverer matches events to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub ops: Option<Vec<String>>,
    pub store_id: Option<String>,
    pub include_phone: bool,
}

impl Endpoint {
    /// Whether its filters want an event of `op` at `store`.
    pub fn wants(&self, op: &str, store: Option<&str>) -> bool {
        self.ops
            .as_ref()
            .map_or(true, |o| o.iter().any(|x| x == op))
            && self.store_id.as_deref().map_or(true, |s| Some(s) == store)
    }
}

pub async fn active_endpoints<C: GenericClient>(c: &C) -> PgResult<Vec<Endpoint>> {
    let rows = c
        .query(
            "SELECT name, url, ops, store_id, include_phone FROM webhooks
              WHERE status = 'active' ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Endpoint {
            name: r.get(0),
            url: r.get(1),
            ops: r.get(2),
            store_id: r.get(3),
            include_phone: r.get(4),
        })
        .collect())
}

/// An event not yet sent, as taken from the outbox.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: i64,
    /// The transaction that wrote it (`xid8` as text): with `event_id`,
    /// its place in the order the cursor walks.
    pub xid: String,
    pub op: String,
    pub store_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub body: Value,
    /// The member's phone, when `with_phone` asked for it.
    pub phone: Option<String>,
}

/// The events past the cursor (`$2` its xid as text, `$3` its event id)
/// and below the xid horizon, so that none can commit behind them later,
/// in the cursor's order, `$1` at most: the range both [`take_new`] and
/// [`pass_new`] walk, one text so the two cannot disagree on it.
macro_rules! past_cursor {
    () => {
        " FROM events
          WHERE xid IS NOT NULL AND (xid, event_id) > ($2::text::xid8, $3)
            AND xid < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY xid, event_id LIMIT $1"
    };
}

/// Up to `limit` events not yet sent, in the cursor's order (migration
/// 0023): past the cursor and below the xid horizon, so none can commit
/// behind them later. The cursor's row is locked in the caller's
/// transaction (`SKIP LOCKED`: while one daemon fans out, another takes
/// nothing); the lock is the lease: a daemon that dies leaves the events
/// to the next at once.
pub async fn take_new<C: GenericClient>(
    c: &C,
    limit: i64,
    with_phone: bool,
) -> PgResult<Vec<NewEvent>> {
    let Some((cur_xid, cur_id)) = lock_cursor(c).await? else {
        return Ok(vec![]);
    };
    // The events past the cursor are a short range of `events_by_xid`;
    // on statistics older than the outbox's growth the planner may prefer
    // a parallel scan of the whole table, whose workers cost more than
    // the range (issue 14).
    c.execute("SET LOCAL max_parallel_workers_per_gather = 0", &[])
        .await?;
    let rows = c
        .query(
            concat!(
                "WITH e AS (SELECT event_id, xid, op, store_id, created_at, body, card_no",
                past_cursor!(),
                ")
             SELECT e.event_id, e.op, e.store_id, e.created_at, e.body,
                    CASE WHEN $4 THEN (SELECT m.phone FROM cards c
                                         JOIN members m ON m.member_id = c.member_id
                                        WHERE c.card_no = e.card_no) END,
                    e.xid::text
               FROM e ORDER BY e.xid, e.event_id"
            ),
            &[&limit, &cur_xid, &cur_id, &with_phone],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| NewEvent {
            event_id: r.get(0),
            xid: r.get(6),
            op: r.get(1),
            store_id: r.get(2),
            created_at: r.get(3),
            body: r.get(4),
            phone: r.get(5),
        })
        .collect())
}

/// With no endpoint to send them to: up to `limit` events passed by the
/// cursor, as [`take_new`] then [`finish_new`] would mark them, without
/// reading their bodies (an index-only range of `events_by_xid`; taking
/// 256 bodies to send nowhere cost a debit run a row fetch and a JSON
/// parse per posting, issue 14). How many it passed; 0 also when another
/// daemon holds the cursor.
pub async fn pass_new<C: GenericClient>(c: &C, limit: i64) -> PgResult<i64> {
    let Some((cur_xid, cur_id)) = lock_cursor(c).await? else {
        return Ok(0);
    };
    let row = c
        .query_opt(
            concat!(
                "WITH e AS (SELECT xid, event_id",
                past_cursor!(),
                "),
                  last AS (SELECT xid, event_id, (SELECT count(*) FROM e) AS n FROM e
                            ORDER BY xid DESC, event_id DESC LIMIT 1)
             UPDATE events_cursor c SET xid = last.xid, event_id = last.event_id
               FROM last RETURNING last.n"
            ),
            &[&limit, &cur_xid, &cur_id],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// The cursor's place, its row locked in the caller's transaction; `None`
/// while another daemon holds it.
async fn lock_cursor<C: GenericClient>(c: &C) -> PgResult<Option<(String, i64)>> {
    let row = c
        .query_opt(
            "SELECT xid::text, event_id FROM events_cursor FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A first attempt that failed: its delivery row, due again after
/// `retry_in_ms` (or failed at once when there is none).
pub struct FirstFailure {
    pub event_id: i64,
    pub webhook: String,
    /// 1, or 0 for a first attempt not made (the endpoint was failing).
    pub attempts: i32,
    pub retry_in_ms: Option<i64>,
    pub error: String,
}

/// The taken events marked sent (their first attempts made): the cursor
/// moved to the last of them, one row written however many were taken;
/// and a delivery row for each first attempt that failed, retried from
/// there.
pub async fn finish_new<C: GenericClient>(
    c: &C,
    last: &NewEvent,
    failed: &[FirstFailure],
) -> PgResult<()> {
    c.execute(
        "UPDATE events_cursor SET xid = $1::text::xid8, event_id = $2",
        &[&last.xid, &last.event_id],
    )
    .await?;
    if failed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = failed.iter().map(|f| f.event_id).collect();
    let hooks: Vec<&str> = failed.iter().map(|f| f.webhook.as_str()).collect();
    let retry: Vec<Option<i64>> = failed.iter().map(|f| f.retry_in_ms).collect();
    let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
    let attempts: Vec<i32> = failed.iter().map(|f| f.attempts).collect();
    c.execute(
        "INSERT INTO deliveries (event_id, webhook, status, attempts, next_at, last_error)
         SELECT x.id, x.hook, CASE WHEN x.retry IS NULL THEN 'failed' ELSE 'pending' END,
                x.attempts, now() + coalesce(x.retry, 0) * interval '1 millisecond', x.error
           FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::int[])
                AS x(id, hook, retry, error, attempts)
         ON CONFLICT DO NOTHING",
        &[&ids, &hooks, &retry, &errors, &attempts],
    )
    .await?;
    Ok(())
}

/// A delivery this daemon leased: what to send, and where.
#[derive(Clone, Debug)]
pub struct Due {
    pub event_id: i64,
    pub webhook: String,
    pub url: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    /// The event without `id`; with the member's `phone` for an endpoint
    /// that asked for it.
    pub body: Value,
}

/// Leases up to `limit` due deliveries of active endpoints for `lease_ms`
/// (longer than one attempt takes): no other daemon takes them meanwhile.
pub async fn lease_due<C: GenericClient>(c: &C, limit: i64, lease_ms: i64) -> PgResult<Vec<Due>> {
    let rows = c
        .query(
            "WITH due AS (
                 SELECT d.event_id, d.webhook FROM deliveries d
                   JOIN webhooks w ON w.name = d.webhook AND w.status = 'active'
                  WHERE d.status = 'pending' AND d.next_at <= now()
                  ORDER BY d.next_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED
             ), leased AS (
                 UPDATE deliveries d
                    SET attempts = d.attempts + 1,
                        next_at = now() + $2::bigint * interval '1 millisecond'
                   FROM due WHERE d.event_id = due.event_id AND d.webhook = due.webhook
                 RETURNING d.event_id, d.webhook, d.attempts
             )
             SELECT l.event_id, l.webhook, w.url, l.attempts, e.created_at,
                    CASE WHEN w.include_phone
                         THEN e.body || jsonb_build_object('phone', m.phone)
                         ELSE e.body END
               FROM leased l JOIN webhooks w ON w.name = l.webhook
               JOIN events e ON e.event_id = l.event_id
               LEFT JOIN cards c ON c.card_no = e.card_no
               LEFT JOIN members m ON m.member_id = c.member_id",
            &[&limit, &lease_ms],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Due {
            event_id: r.get(0),
            webhook: r.get(1),
            url: r.get(2),
            attempt: r.get(3),
            created_at: r.get(4),
            body: r.get(5),
        })
        .collect())
}

/// How one attempt ended: delivered, due again after `retry_in_ms`, or
/// failed for good (neither).
pub struct Attempt<'a> {
    pub due: &'a Due,
    pub delivered: bool,
    pub retry_in_ms: Option<i64>,
    pub error: Option<String>,
}

/// A round's attempts written back in one statement. A delivery whose
/// lease another daemon has taken over since (its attempts moved on) is
/// left as that daemon has it.
pub async fn record_attempts<C: GenericClient>(c: &C, done: &[Attempt<'_>]) -> PgResult<()> {
    let ids: Vec<i64> = done.iter().map(|a| a.due.event_id).collect();
    let hooks: Vec<&str> = done.iter().map(|a| a.due.webhook.as_str()).collect();
    let attempts: Vec<i32> = done.iter().map(|a| a.due.attempt).collect();
    let delivered: Vec<bool> = done.iter().map(|a| a.delivered).collect();
    let retry: Vec<Option<i64>> = done.iter().map(|a| a.retry_in_ms).collect();
    let errors: Vec<Option<&str>> = done.iter().map(|a| a.error.as_deref()).collect();
    c.execute(
        "UPDATE deliveries d
            SET status = CASE WHEN x.ok THEN 'delivered' WHEN x.retry IS NULL THEN 'failed'
                              ELSE 'pending' END,
                delivered_at = CASE WHEN x.ok THEN now() END,
                next_at = CASE WHEN x.retry IS NULL THEN d.next_at
                               ELSE now() + x.retry * interval '1 millisecond' END,
                last_error = x.error
           FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bool[], $5::bigint[], $6::text[])
                AS x(event_id, webhook, attempts, ok, retry, error)
          WHERE d.event_id = x.event_id AND d.webhook = x.webhook AND d.attempts = x.attempts",
        &[&ids, &hooks, &attempts, &delivered, &retry, &errors],
    )
    .await?;
    Ok(())
}

/// The delivery figures for the metrics: events not yet sent and
/// deliveries waiting for a retry, and the age of the oldest of them (ms).
pub async fn backlog<C: GenericClient>(c: &C) -> PgResult<(i64, i64)> {
    let r = c
        .query_one(
            "WITH w AS (
                 SELECT e.created_at FROM events e
                  WHERE e.xid IS NOT NULL AND (e.xid, e.event_id) > (
                        (SELECT xid FROM events_cursor), (SELECT event_id FROM events_cursor))
                 UNION ALL
                 SELECT e.created_at FROM deliveries d JOIN events e USING (event_id)
                  WHERE d.status = 'pending'
             )
             SELECT count(*),
                    coalesce(floor(extract(epoch FROM now() - min(created_at)) * 1000), 0)::bigint
               FROM w",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// An event as ops read it (`cardswitch events`).
#[derive(Clone, Debug)]
pub struct EventRow {
    pub event_id: i64,
    pub created_at: DateTime<Utc>,
    pub body: Value,
    /// Whether its first attempts were made.
    pub sent: bool,
    /// Per endpoint whose first attempt failed: its retries' status.
    pub deliveries: Value,
}

pub async fn list_events<C: GenericClient>(
    c: &C,
    since: i64,
    limit: i64,
) -> PgResult<Vec<EventRow>> {
    let rows = c
        .query(
            "SELECT e.event_id, e.created_at, e.body,
                    e.xid IS NULL OR (e.xid, e.event_id) <= (c.xid, c.event_id),
                    coalesce((SELECT jsonb_agg(jsonb_build_object('webhook', d.webhook,
                                 'status', d.status, 'attempts', d.attempts,
                                 'last_error', d.last_error) ORDER BY d.webhook)
                                FROM deliveries d WHERE d.event_id = e.event_id), '[]')
               FROM events e, events_cursor c
              WHERE e.event_id > $1 ORDER BY e.event_id LIMIT $2",
            &[&since, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| EventRow {
            event_id: r.get(0),
            created_at: r.get(1),
            body: r.get(2),
            sent: r.get(3),
            deliveries: r.get(4),
        })
        .collect())
}

/// Events older than `keep_days` whose deliveries are all done (delivered
/// or failed) removed, with their deliveries; how many.
pub async fn purge<C: GenericClient>(c: &C, keep_days: i64) -> PgResult<u64> {
    c.execute(
        "DELETE FROM events e USING events_cursor c
          WHERE e.created_at < now() - $1::bigint * interval '1 day'
            AND (e.xid IS NULL OR (e.xid, e.event_id) <= (c.xid, c.event_id))
            AND NOT EXISTS (SELECT 1 FROM deliveries d
                             WHERE d.event_id = e.event_id AND d.status = 'pending')",
        &[&keep_days],
    )
    .await
}

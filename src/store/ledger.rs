//! The ledger's SQL: runs one txn request inside the transaction `txn::run`
//! opened, applying the pure decisions of [`crate::ledger`].
//!
//! Three round trips at most besides BEGIN/COMMIT, each one prepared and
//! cached per connection, none in a loop:
//!
//! 1. **claim and lock**: the once-only `ts` inserted; for a posting, its
//!    `orders` row claimed (`INSERT … ON CONFLICT DO NOTHING` on the unique
//!    (terminal, order_no): two identical requests racing, the second waits
//!    for the first and then sees its answer); the previous answer of a used
//!    order_no read; the operator read; the original of a reverse/refund
//!    locked; a card number about to be created serialised (advisory lock);
//!    the card rows locked `FOR UPDATE` in card-number order (so no two
//!    transactions can wait on each other's cards).
//! 2. **load**, in a fresh snapshot taken once the locks are held: the
//!    cards' live lots, whether a new card number exists, the level of a
//!    register, ids for new lots and the posting, a history.
//! 3. **write**: every row of the plan in one statement of CTEs fed by one
//!    JSON document — or, for a refusal, the claim dropped and the PIN
//!    counters written.
//!
//! Hooks for row MACs (issue 5): every card and posting row written here
//! goes through [`Writes`], and every card read through [`CardRow`]; a
//! mismatch found there is meant to be `Error::Tampered` (3001).

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::crypto::keyed_hash::{
    keyed_hash, random_salt, verify_keyed_hash, DOMAIN_CARD_PIN, DOMAIN_MANAGER_PIN,
};
use crate::error::{Error, Result};
use crate::ledger::request::{
    mask_phone, money_text, parse_status, posting_row, status_text, Request, RowContext,
};
use crate::ledger::{
    authorize, business_day, check_read, decide_close, decide_debit, decide_expire, decide_points,
    decide_redeem, decide_refund, decide_register, decide_replace, decide_reverse, decide_status,
    decide_topup, decide_transfer, BonusRule, CardChange, CardState, CardStatus, CloseReq,
    DebitReq, Effect, LedgerConfig, Level, Lot, LotTake, MemberRef, Money, OpKind, Original, Pin,
    PinSource, Plan, PointsReq, RedeemReq, RefundReq, Refusal, RegisterReq, ReplaceReq, ReverseReq,
    Role, StatusOp, Tender, TopupReq, TransferReq, PIN_TRIES,
};
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::xml::{Row, Rows};
use crate::store::txn::{TxnContext, TxnEnv};

/// The ledger rules of the configuration.
pub fn ledger_config(s: &crate::config::LedgerSettings) -> Result<LedgerConfig> {
    let bonus_rules = s
        .bonus_rules
        .iter()
        .map(|r| {
            Ok(BonusRule {
                min_topup: Money::new(r.min_topup).map_err(|_| {
                    Error::internal("bonus rule min_topup must be an amount >= 0 in cents")
                })?,
                bonus: Money::new(r.bonus).map_err(|_| {
                    Error::internal("bonus rule bonus must be an amount >= 0 in cents")
                })?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LedgerConfig {
        bonus_rules,
        points_expiry_months: s.points_expiry_months,
    })
}

const CLAIM_SQL: &str = "
WITH ts AS (
    INSERT INTO seen_ts (terminal_id, ts) VALUES ($1::text, $2::bigint)
    ON CONFLICT DO NOTHING RETURNING 1
), claim AS (
    INSERT INTO orders (terminal_id, order_no, digest, op)
    SELECT $1::text, $5::text, $6::bytea, $7::text FROM ts WHERE $5::text IS NOT NULL
    ON CONFLICT DO NOTHING RETURNING 1
), go AS MATERIALIZED (
    SELECT 1 AS go FROM ts WHERE $5::text IS NULL OR EXISTS (SELECT 1 FROM claim)
), adv AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended('card:' || $11::text, 0))::text AS l
      FROM go WHERE $11::text IS NOT NULL
), orig AS MATERIALIZED (
    SELECT o.terminal_id AS terminal, o.order_no, o.op, o.business_day::text AS business_day,
           o.amount::text AS amount, o.charged::text AS charged, o.tender, o.points_earned,
           o.reversed, o.refunded::text AS refunded, o.points_taken_back, o.effects, o.cards
      FROM orders o JOIN terminals t ON t.terminal_id = o.terminal_id
     WHERE o.terminal_id = $9::text AND o.order_no = $10::text AND t.store_id = $3::text
       AND o.answer IS NOT NULL
       AND EXISTS (SELECT 1 FROM go) AND (SELECT count(*) FROM adv) >= 0
       FOR UPDATE OF o
), locked AS MATERIALIZED (
    SELECT c.card_no, c.member_id, c.status, c.balance::text AS balance, c.points,
           encode(c.pin_hash, 'hex') AS pin_hash, encode(c.pin_salt, 'hex') AS pin_salt,
           c.pin_fail_count, m.level, l.discount::text AS discount,
           l.points_rate::text AS points_rate, m.name, m.phone, m.birthday::text AS birthday,
           floor(extract(epoch FROM c.opened_at) * 1000)::bigint AS opened_at
      FROM cards c JOIN members m ON m.member_id = c.member_id JOIN levels l ON l.level = m.level
     WHERE c.card_no = ANY (CASE WHEN $10::text IS NULL THEN $8::text[]
                                 ELSE (SELECT cards FROM orig) END)
       AND EXISTS (SELECT 1 FROM go) AND (SELECT count(*) FROM adv) >= 0
       AND (SELECT count(*) FROM orig) >= 0
     ORDER BY c.card_no
       FOR UPDATE OF c
)
SELECT (SELECT count(*) FROM ts)::bigint AS ts_ok,
       (SELECT count(*) FROM claim)::bigint AS claimed,
       (SELECT o.digest FROM orders o WHERE o.terminal_id = $1::text AND o.order_no = $5::text) AS prior_digest,
       (SELECT o.answer FROM orders o WHERE o.terminal_id = $1::text AND o.order_no = $5::text) AS prior_answer,
       (SELECT row_to_json(x) FROM (SELECT role, status, encode(pin_hash, 'hex') AS pin_hash,
               encode(pin_salt, 'hex') AS pin_salt, pin_fail_count
          FROM operators WHERE store_id = $3::text AND operator_id = $4::text) x) AS operator,
       (SELECT row_to_json(orig) FROM orig) AS orig,
       (SELECT coalesce(json_agg(row_to_json(locked)), '[]'::json) FROM locked) AS cards";

const PRIOR_SQL: &str =
    "SELECT digest, answer FROM orders WHERE terminal_id = $1::text AND order_no = $2::text";

const LOAD_SQL: &str = "
WITH lv AS (
    SELECT card_no, lot_id, points_left, expires_at FROM lots
     WHERE card_no = ANY ($1::text[]) AND (points_left > 0 OR lot_id = ANY ($8::bigint[]))
)
SELECT (SELECT coalesce(json_agg(json_build_object('card_no', card_no, 'id', lot_id,
               'left', points_left, 'exp', floor(extract(epoch FROM expires_at) * 1000)::bigint)),
               '[]'::json) FROM lv) AS lots,
       EXISTS (SELECT 1 FROM cards WHERE card_no = $2::text) AS new_exists,
       ARRAY(SELECT nextval('lots_lot_id_seq') FROM generate_series(1,
             CASE WHEN $3::bool THEN (SELECT count(*) FROM lv) + 1 ELSE 0 END)) AS lot_ids,
       (SELECT json_build_object('level', level, 'discount', discount::text,
               'points_rate', points_rate::text) FROM levels WHERE level = $4::text) AS level,
       CASE WHEN $5::bool THEN nextval('txn_id_seq') END AS txn_id,
       (SELECT coalesce(json_agg(h), '[]'::json) FROM (
            SELECT posting_id, order_no, op, txn_id, card_no, amount::text AS amount,
                   discount::text AS discount, charged::text AS charged, points_delta,
                   balance::text AS balance, points,
                   floor(extract(epoch FROM posted_at) * 1000)::bigint AS posted_at, terminal_id
              FROM postings WHERE card_no = $6::text
             ORDER BY posted_at DESC, posting_id DESC LIMIT $7::bigint) h) AS history";

const WRITE_SQL: &str = "
WITH j AS (SELECT $1::jsonb AS j),
nm AS (
    INSERT INTO members (name, phone, birthday, referrer, level)
    SELECT x.name, x.phone, x.birthday, x.referrer, x.level
      FROM j, jsonb_to_recordset(j.j->'members')
           AS x(name text, phone text, birthday date, referrer text, level text)
    RETURNING member_id
), nc AS (
    INSERT INTO cards (card_no, member_id, status, balance, points, pin_hash, pin_salt, opened_at)
    SELECT x.card_no, coalesce(x.member_id, (SELECT member_id FROM nm)), x.status, x.balance,
           x.points, decode(x.pin_hash, 'hex'), decode(x.pin_salt, 'hex'), x.at
      FROM j, jsonb_to_recordset(j.j->'new_cards')
           AS x(card_no text, member_id bigint, status text, balance numeric, points bigint,
                pin_hash text, pin_salt text, at timestamptz)
    RETURNING 1
), uc AS (
    UPDATE cards c SET balance = x.balance, points = x.points, status = x.status,
           pin_fail_count = x.pin_fail_count,
           closed_at = CASE WHEN x.status = 'closed' AND c.status <> 'closed' THEN x.at
                            ELSE c.closed_at END
      FROM j, jsonb_to_recordset(j.j->'cards')
           AS x(card_no text, old_balance numeric, old_points bigint, balance numeric,
                points bigint, status text, pin_fail_count integer, at timestamptz)
     WHERE c.card_no = x.card_no AND c.balance = x.old_balance AND c.points = x.old_points
    RETURNING 1
), ps AS (
    INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta,
           points_delta, balance, points, amount, discount, charged, business_day, posted_at,
           lots_created, lots_taken, lots_restored, detail)
    SELECT x.txn_id, x.card_no, x.terminal_id, x.order_no, x.op, x.balance_delta,
           x.points_delta, x.balance, x.points, x.amount, x.discount, x.charged,
           x.business_day, x.posted_at, x.lots_created, x.lots_taken, x.lots_restored, x.detail
      FROM j, jsonb_to_recordset(j.j->'postings')
           AS x(txn_id bigint, card_no text, terminal_id text, order_no text, op text,
                balance_delta numeric, points_delta bigint, balance numeric, points bigint,
                amount numeric, discount numeric, charged numeric, business_day date,
                posted_at timestamptz, lots_created jsonb, lots_taken jsonb,
                lots_restored jsonb, detail jsonb)
    RETURNING 1
), lm AS (
    UPDATE lots l SET points_left = l.points_left + x.delta
      FROM j, jsonb_to_recordset(j.j->'lot_moves') AS x(lot_id bigint, card_no text, delta bigint)
     WHERE l.lot_id = x.lot_id AND l.card_no = x.card_no
    RETURNING 1
), nl AS (
    INSERT INTO lots (lot_id, card_no, points, points_left, expires_at, txn_id, created_at)
    SELECT x.lot_id, x.card_no, x.points, x.points, x.expires_at, x.txn_id, x.at
      FROM j, jsonb_to_recordset(j.j->'new_lots')
           AS x(lot_id bigint, card_no text, points bigint, expires_at timestamptz,
                txn_id bigint, at timestamptz)
    RETURNING 1
), od AS (
    UPDATE orders o SET card_no = x.card_no, cards = x.cards, txn_id = x.txn_id,
           business_day = x.business_day, posted_at = x.posted_at, amount = x.amount,
           charged = x.charged, tender = x.tender, points_earned = x.points_earned,
           effects = x.effects, answer = x.answer
      FROM j, jsonb_to_recordset(j.j->'order')
           AS x(terminal_id text, order_no text, card_no text, cards text[], txn_id bigint,
                business_day date, posted_at timestamptz, amount numeric, charged numeric,
                tender text, points_earned bigint, effects jsonb, answer jsonb)
     WHERE o.terminal_id = x.terminal_id AND o.order_no = x.order_no AND o.answer IS NULL
    RETURNING 1
), og AS (
    UPDATE orders o SET reversed = o.reversed OR x.reversed,
           refunded = o.refunded + x.refunded_add,
           points_taken_back = o.points_taken_back + x.taken_add
      FROM j, jsonb_to_recordset(j.j->'orig')
           AS x(terminal_id text, order_no text, reversed boolean, refunded_add numeric,
                taken_add bigint)
     WHERE o.terminal_id = x.terminal_id AND o.order_no = x.order_no
    RETURNING 1
), opr AS (
    UPDATE operators p SET pin_fail_count = 0
      FROM j, jsonb_to_recordset(j.j->'operator_reset') AS x(store_id text, operator_id text)
     WHERE p.store_id = x.store_id AND p.operator_id = x.operator_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM nm), (SELECT count(*) FROM nc), (SELECT count(*) FROM uc),
       (SELECT count(*) FROM ps), (SELECT count(*) FROM lm), (SELECT count(*) FROM nl),
       (SELECT count(*) FROM od), (SELECT count(*) FROM og), (SELECT count(*) FROM opr)";

const REFUSE_SQL: &str = "
WITH d AS (
    DELETE FROM orders WHERE terminal_id = $1::text AND order_no = $2::text AND answer IS NULL
    RETURNING 1
), c AS (
    UPDATE cards SET pin_fail_count = $4::integer,
           status = CASE WHEN $5::bool THEN 'locked' ELSE status END
     WHERE card_no = $3::text RETURNING 1
), o AS (
    UPDATE operators
       SET pin_fail_count = CASE WHEN $9::bool THEN 0 ELSE pin_fail_count + 1 END,
           status = CASE WHEN NOT $9::bool AND pin_fail_count + 1 >= $8::integer
                         THEN 'disabled' ELSE status END
     WHERE store_id = $6::text AND operator_id = $7::text RETURNING 1
)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM c) + (SELECT count(*) FROM o)";

#[derive(Deserialize)]
struct OperatorRow {
    role: String,
    status: String,
    pin_hash: Option<String>,
    pin_salt: Option<String>,
    pin_fail_count: i32,
}

/// A card row as locked, with its member and level.
#[derive(Deserialize, Clone)]
struct CardRow {
    card_no: String,
    member_id: i64,
    status: String,
    balance: String,
    points: i64,
    pin_hash: Option<String>,
    pin_salt: Option<String>,
    pin_fail_count: i32,
    level: String,
    discount: String,
    points_rate: String,
    name: String,
    phone: String,
    birthday: Option<String>,
    opened_at: i64,
}

#[derive(Deserialize)]
struct OrigRow {
    terminal: String,
    order_no: String,
    op: String,
    business_day: Option<String>,
    amount: String,
    charged: String,
    tender: String,
    points_earned: i64,
    reversed: bool,
    refunded: String,
    points_taken_back: i64,
    effects: Option<Value>,
}

#[derive(Deserialize)]
struct LotRow {
    card_no: String,
    id: i64,
    left: i64,
    exp: Option<i64>,
}

#[derive(Deserialize)]
struct LevelRow {
    level: String,
    discount: String,
    points_rate: String,
}

#[derive(Deserialize)]
struct HistoryRow {
    posting_id: i64,
    order_no: Option<String>,
    op: String,
    txn_id: i64,
    card_no: String,
    amount: String,
    discount: String,
    charged: String,
    points_delta: i64,
    balance: String,
    points: i64,
    posted_at: i64,
    terminal_id: String,
}

/// A value `InnerForm::parse` guarantees. Missing after the claim, it is a
/// bug: 3003 and everything rolled back (a refusal here would commit the
/// claim without its answer).
fn need<T>(v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::internal("a checked request field is missing"))
}

fn dec(s: &str) -> Result<Decimal> {
    Decimal::from_str(s).map_err(|e| Error::internal(format!("stored number {s:?}: {e}")))
}

fn money(s: &str) -> Result<Money> {
    Money::new(dec(s)?).map_err(|_| Error::internal(format!("stored amount {s:?} out of range")))
}

fn hex_bytes(s: &Option<String>) -> Result<Option<Vec<u8>>> {
    s.as_deref()
        .map(|h| hex::decode(h).map_err(|e| Error::internal(format!("stored hex: {e}"))))
        .transpose()
}

fn from_json<T: for<'de> Deserialize<'de>>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::internal(format!("{what}: {e}")))
}

fn at_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::internal("stored time out of range"))
}

impl CardRow {
    fn state(&self) -> Result<CardState> {
        Ok(CardState {
            card_no: self.card_no.clone(),
            member_id: self.member_id,
            status: parse_status(&self.status)
                .ok_or_else(|| Error::internal("stored card status"))?,
            balance: money(&self.balance)?,
            points: self.points,
            level: Level {
                name: self.level.clone(),
                discount: dec(&self.discount)?,
                points_rate: dec(&self.points_rate)?,
            },
            pin_fail_count: u32::try_from(self.pin_fail_count).unwrap_or(0),
            has_pin: self.pin_hash.is_some(),
        })
    }

    /// The request's `pin` checked against this card's hash.
    fn pin(&self, env: &TxnEnv, pin: Option<&str>) -> Result<Pin> {
        let (Some(pin), Some(hash), Some(salt)) = (pin, &self.pin_hash, &self.pin_salt) else {
            return Ok(if pin.is_some() {
                Pin::Correct
            } else {
                Pin::Absent
            });
        };
        let hash = hex_bytes(&Some(hash.clone()))?.unwrap_or_default();
        let salt = hex_bytes(&Some(salt.clone()))?.unwrap_or_default();
        let ok = verify_keyed_hash(&env.hash_key, DOMAIN_CARD_PIN, &salt, pin.as_bytes(), &hash);
        Ok(if ok { Pin::Correct } else { Pin::Wrong })
    }
}

fn effect_json(e: &Effect) -> Value {
    let pairs = |v: &[LotTake]| -> Value {
        v.iter()
            .map(|t| json!([t.lot_id, t.points]))
            .collect::<Vec<_>>()
            .into()
    };
    json!({
        "card_no": e.card_no,
        "balance_delta": e.balance_delta.to_string(),
        "points_delta": e.points_delta,
        "lots_created": pairs(&e.lots_created),
        "lots_taken": pairs(&e.lots_taken),
    })
}

fn takes_from_json(v: &Value) -> Result<Vec<LotTake>> {
    let pairs: Vec<(i64, i64)> = from_json(v.clone(), "lot moves")?;
    Ok(pairs
        .into_iter()
        .map(|(lot_id, points)| LotTake { lot_id, points })
        .collect())
}

fn effect_from_json(v: &Value) -> Result<Effect> {
    let s = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    Ok(Effect {
        card_no: from_json(s("card_no"), "effect card")?,
        balance_delta: dec(&from_json::<String>(s("balance_delta"), "effect balance")?)?,
        points_delta: from_json(s("points_delta"), "effect points")?,
        lots_created: takes_from_json(&s("lots_created"))?,
        lots_taken: takes_from_json(&s("lots_taken"))?,
    })
}

impl OrigRow {
    fn original(&self) -> Result<Original> {
        let effects = match &self.effects {
            Some(Value::Array(a)) => a.iter().map(effect_from_json).collect::<Result<_>>()?,
            _ => vec![],
        };
        let op = OpKind::from_wire(&self.op).ok_or_else(|| Error::internal("stored op"))?;
        Ok(Original {
            order_no: self.order_no.clone(),
            op,
            business_day: self
                .business_day
                .as_deref()
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .ok_or_else(|| Error::internal("stored business day"))?,
            amount: money(&self.amount)?,
            charged: money(&self.charged)?,
            tender: if self.tender == "cash" {
                Tender::Cash
            } else {
                Tender::Balance
            },
            points_earned: self.points_earned,
            reversed: self.reversed,
            refunded: money(&self.refunded)?,
            points_taken_back: self.points_taken_back,
            effects,
        })
    }
}

/// The stored answer row: `[[name, value], …]`.
fn row_to_json(row: &Row) -> Value {
    row.0
        .iter()
        .map(|(n, v)| json!([n, v]))
        .collect::<Vec<_>>()
        .into()
}

fn replayed_row(stored: Value) -> Result<Row> {
    let pairs: Vec<(String, String)> = from_json(stored, "stored answer")?;
    let mut row = Row(pairs);
    for (n, v) in row.0.iter_mut() {
        if n == "replayed" {
            *v = "1".into();
        }
    }
    Ok(row)
}

/// Runs one request; see the module doc.
pub async fn execute(
    tx: &Transaction<'_>,
    env: &TxnEnv,
    ctx: &TxnContext,
    form: &InnerForm,
) -> Result<Rows> {
    let req = match Request::from_form(form) {
        Ok(r) => r,
        Err(e) => {
            // Refused before any work: the ts is used up all the same.
            if !crate::store::seen_ts::record(tx, &ctx.terminal, ctx.ts).await? {
                return Err(Errno::TsUsed.into());
            }
            return Err(e.into());
        }
    };
    let now = crate::ledger::lots::truncate_ms(ctx.now);
    let posting = req.op.is_posting();
    let digest = form.digest().to_vec();
    let orig_key = req.original(&ctx.terminal);
    let lock_cards = req.cards_to_lock();

    // 1. Claim and lock.
    let stmt = tx.prepare_cached(CLAIM_SQL).await?;
    let r = tx
        .query_one(
            &stmt,
            &[
                &ctx.terminal,
                &ctx.ts,
                &ctx.store_id,
                &req.operator,
                &req.order_no,
                &posting.then_some(digest.as_slice()),
                &req.op.as_str(),
                &lock_cards,
                &orig_key.map(|o| o.0),
                &orig_key.map(|o| o.1),
                &req.card_to_create(),
            ],
        )
        .await?;
    if r.get::<_, i64>("ts_ok") == 0 {
        return Err(Errno::TsUsed.into());
    }
    if posting && r.get::<_, i64>("claimed") == 0 {
        let mut prior: Option<(Vec<u8>, Option<Value>)> = r
            .get::<_, Option<Vec<u8>>>("prior_digest")
            .map(|d| (d, r.get("prior_answer")));
        if prior.is_none() {
            // The claim waited for a racing twin that committed after this
            // statement's snapshot: read its row now.
            let stmt = tx.prepare_cached(PRIOR_SQL).await?;
            prior = tx
                .query_opt(&stmt, &[&ctx.terminal, &req.order_no])
                .await?
                .map(|row| (row.get(0), row.get(1)));
        }
        return match prior {
            Some((d, Some(answer))) if d == digest => Ok(Rows(vec![replayed_row(answer)?])),
            Some(_) => Err(Errno::OrderReused.into()),
            None => Err(Error::internal("order claim failed but no order found")),
        };
    }
    let operator: Option<OperatorRow> = r
        .get::<_, Option<Value>>("operator")
        .map(|v| from_json(v, "operator row"))
        .transpose()?;
    let orig: Option<OrigRow> = r
        .get::<_, Option<Value>>("orig")
        .map(|v| from_json(v, "original row"))
        .transpose()?;
    let card_rows: Vec<CardRow> = from_json(r.get::<_, Value>("cards"), "card rows")?;
    let mut refuse = RefusalWrites {
        order_no: req.order_no.clone(),
        ..Default::default()
    };

    // Operator allowed (protocol.md §4: before the operation).
    let mut operator_reset = false;
    if let Err(e) = check_operator(env, ctx, &req, operator.as_ref(), &mut refuse) {
        return refuse.apply(tx, ctx, e).await;
    }
    if let Some(o) = &operator {
        operator_reset = req.op.is_manager_op() && o.pin_fail_count > 0;
    }

    let rows: BTreeMap<String, CardRow> = card_rows
        .into_iter()
        .map(|c| (c.card_no.clone(), c))
        .collect();
    let original = match (&orig_key, &orig) {
        (Some(_), None) => return refuse.apply(tx, ctx, Errno::OriginalNotFound).await,
        (Some(_), Some(o)) => Some(o.original()?),
        _ => None,
    };

    // 2. Load, in a snapshot that sees everything committed before our locks.
    let locked_nos: Vec<String> = rows.keys().cloned().collect();
    let wants_lots = matches!(req.op, OpKind::Debit | OpKind::Points | OpKind::Replace);
    let hist_card = (req.op == OpKind::History).then_some(req.attr1.as_str());
    // A reverse needs the very lots its original created and took, spent
    // or not.
    let named_lots: Vec<i64> = original
        .iter()
        .flat_map(|o| &o.effects)
        .flat_map(|e| e.lots_created.iter().chain(&e.lots_taken))
        .map(|t| t.lot_id)
        .collect();
    let stmt = tx.prepare_cached(LOAD_SQL).await?;
    let l = tx
        .query_one(
            &stmt,
            &[
                &locked_nos,
                &req.card_to_create(),
                &wants_lots,
                &req.level,
                &(posting || req.op == OpKind::Query),
                &hist_card,
                &i64::from(req.limit),
                &named_lots,
            ],
        )
        .await?;
    let lot_rows: Vec<LotRow> = from_json(l.get::<_, Value>("lots"), "lots")?;
    let new_exists: bool = l.get("new_exists");
    let lot_ids: Vec<i64> = l.get("lot_ids");
    let level: Option<LevelRow> = l
        .get::<_, Option<Value>>("level")
        .map(|v| from_json(v, "level"))
        .transpose()?;
    let txn_id: Option<i64> = l.get("txn_id");
    let mut lots: BTreeMap<String, Vec<Lot>> = BTreeMap::new();
    for lr in lot_rows {
        lots.entry(lr.card_no).or_default().push(Lot {
            id: lr.id,
            points_left: lr.left,
            expires_at: lr.exp.map(at_ms).transpose()?,
        });
    }
    for v in lots.values_mut() {
        v.sort_by_key(|l| l.id);
    }

    // Hook for row MACs (issue 5): a card whose points disagree with its
    // lots was changed outside the ledger. 3001, nothing changed.
    for (no, row) in &rows {
        let in_lots: i64 = lots
            .get(no)
            .map_or(0, |v| v.iter().map(|l| l.points_left).sum());
        if in_lots != row.points {
            return Err(Error::Tampered(format!(
                "card {no}: points {} but its lots hold {in_lots}",
                row.points
            )));
        }
    }

    // Points expired since the card was last used: posted first, so the
    // decision and the answer see live points only.
    let mut states: BTreeMap<String, CardState> = BTreeMap::new();
    let mut expiries: Vec<CardChange> = Vec::new();
    for (no, row) in &rows {
        let mut st = row.state()?;
        let card_lots = lots.entry(no.clone()).or_default();
        if !matches!(req.op, OpKind::Member | OpKind::History) {
            if let Some(p) = decide_expire("", &st, card_lots, now)? {
                for c in p.cards {
                    for t in &c.lots_taken {
                        if let Some(l) = card_lots.iter_mut().find(|l| l.id == t.lot_id) {
                            l.points_left -= t.points;
                        }
                    }
                    st.points = c.new_points;
                    expiries.push(c);
                }
            }
        }
        states.insert(no.clone(), st);
    }

    let cfg = ledger_config(&env.config.ledger)?;
    let card = |no: &str| states.get(no).ok_or(Errno::CardNotFound);
    let order_no = req.order_no.clone().unwrap_or_default();
    let pin_of = |no: &str| -> Result<Pin> {
        match rows.get(no) {
            Some(r) => r.pin(env, req.pin.as_deref()),
            None => Ok(Pin::Absent),
        }
    };

    // Reads.
    if !posting {
        let st = match card(&req.attr1) {
            Ok(s) => s,
            Err(e) => return refuse.apply(tx, ctx, e).await,
        };
        let pin_reset = match check_read(st, pin_of(&req.attr1)?) {
            Ok(r) => r,
            Err(rf) => return refuse.refusal(tx, ctx, rf).await,
        };
        let cr = need(rows.get(&req.attr1))?;
        let rows_out = match req.op {
            OpKind::Query => vec![Row::new()
                .with("card", &st.card_no)
                .with("balance", money_text(st.balance))
                .with("points", st.points.to_string())
                .with("level", &st.level.name)
                .with("status", status_text(st.status))],
            OpKind::Member => vec![Row::new()
                .with("card", &st.card_no)
                .with("name", &cr.name)
                .with("phone", mask_phone(&cr.phone))
                .with("level", &st.level.name)
                .with("birthday", cr.birthday.clone().unwrap_or_default())
                .with("status", status_text(st.status))
                .with("registered_at", cr.opened_at.to_string())],
            _ => history_rows(l.get::<_, Value>("history"))?,
        };
        if pin_reset.is_some() || !expiries.is_empty() {
            let mut w = Writes::new(ctx, now, txn_id.unwrap_or_default(), env);
            let st = st.clone();
            for c in &expiries {
                w.posting(c, OpKind::Expire, None, None, &[]);
            }
            w.fold_cards(&expiries, &rows, None)?;
            if let Some(n) = pin_reset {
                w.set_pin_count(&st, &rows, n)?;
            }
            w.run(tx, 0).await?;
        }
        return Ok(Rows(rows_out));
    }

    // Postings: decide.
    let decision: std::result::Result<Plan, Refusal> = match req.op {
        OpKind::Register => {
            if new_exists {
                Err(Errno::CardInUse.into())
            } else {
                let lv = level
                    .as_ref()
                    .map(|l| -> Result<Level> {
                        Ok(Level {
                            name: l.level.clone(),
                            discount: dec(&l.discount)?,
                            points_rate: dec(&l.points_rate)?,
                        })
                    })
                    .transpose()?;
                decide_register(
                    None,
                    lv.as_ref(),
                    &RegisterReq {
                        order_no: order_no.clone(),
                        card_no: req.attr1.clone(),
                        member: need(req.member.clone())?,
                        level: req.level.clone().unwrap_or_default(),
                        pin_set: req.pin.is_some(),
                    },
                )
            }
        }
        OpKind::Reverse | OpKind::Refund => {
            let o = need(original.as_ref())?;
            let with_lots: Vec<(&CardState, &[Lot])> = o
                .effects
                .iter()
                .filter_map(|e| {
                    let st = states.get(&e.card_no)?;
                    Some((st, lots.get(&e.card_no).map_or(&[][..], |v| v.as_slice())))
                })
                .collect();
            if req.op == OpKind::Reverse {
                let today = business_day(now, &env.config.business.offset());
                decide_reverse(
                    o,
                    &with_lots,
                    &ReverseReq {
                        order_no: order_no.clone(),
                    },
                    today,
                )
            } else {
                match (o.effects.first(), req.amount) {
                    (Some(e), Some(amount)) => match states.get(&e.card_no) {
                        Some(st) => decide_refund(
                            o,
                            st,
                            lots.get(&e.card_no).map_or(&[][..], |v| v.as_slice()),
                            &RefundReq {
                                order_no: order_no.clone(),
                                amount,
                            },
                            now,
                        ),
                        None => Err(Errno::CardNotFound.into()),
                    },
                    _ => Err(Errno::OriginalNotFound.into()),
                }
            }
        }
        _ => match card(&req.attr1) {
            Err(e) => Err(e.into()),
            Ok(st) => {
                let card_lots = lots.get(&req.attr1).map_or(&[][..], |v| v.as_slice());
                let pin = pin_of(&req.attr1)?;
                match req.op {
                    OpKind::Debit => decide_debit(
                        &cfg,
                        st,
                        &DebitReq {
                            order_no: order_no.clone(),
                            sale: need(req.amount)?,
                            tender: req.tender,
                            pin,
                        },
                        now,
                    ),
                    OpKind::Topup => decide_topup(
                        &cfg,
                        st,
                        &TopupReq {
                            order_no: order_no.clone(),
                            amount: need(req.amount)?,
                        },
                    ),
                    OpKind::Points => decide_points(
                        &cfg,
                        st,
                        card_lots,
                        &PointsReq {
                            order_no: order_no.clone(),
                            delta: need(req.delta)?,
                            reason: req.reason.clone().unwrap_or_default(),
                        },
                        now,
                    ),
                    OpKind::Redeem => decide_redeem(
                        st,
                        card_lots,
                        &RedeemReq {
                            order_no: order_no.clone(),
                            cost: need(req.cost)?,
                            gift: req.gift.clone().unwrap_or_default(),
                            pin,
                        },
                        now,
                    ),
                    OpKind::Transfer => {
                        let to_no = need(req.to.clone())?;
                        if to_no == req.attr1 {
                            Err(Errno::Malformed.into())
                        } else {
                            match card(&to_no) {
                                Err(e) => Err(e.into()),
                                Ok(to) => decide_transfer(
                                    st,
                                    to,
                                    &TransferReq {
                                        order_no: order_no.clone(),
                                        amount: need(req.amount)?,
                                        pin,
                                    },
                                ),
                            }
                        }
                    }
                    OpKind::Lost | OpKind::Found | OpKind::Lock | OpKind::Unlock => {
                        let sop = match req.op {
                            OpKind::Lost => StatusOp::Lost,
                            OpKind::Found => StatusOp::Found,
                            OpKind::Lock => StatusOp::Lock,
                            _ => StatusOp::Unlock,
                        };
                        decide_status(st, sop, &order_no)
                    }
                    OpKind::Replace => {
                        let new_no = need(req.new_card.clone())?;
                        let placeholder = new_exists.then(|| placeholder(&new_no, st));
                        decide_replace(
                            st,
                            card_lots,
                            placeholder.as_ref(),
                            &ReplaceReq {
                                order_no: order_no.clone(),
                                new_card_no: new_no,
                            },
                        )
                    }
                    OpKind::Close => decide_close(
                        st,
                        card_lots,
                        &CloseReq {
                            order_no: order_no.clone(),
                            pin,
                        },
                    ),
                    _ => Err(Errno::Internal.into()),
                }
            }
        },
    };
    let plan = match decision {
        Ok(p) => p,
        Err(rf) => return refuse.refusal(tx, ctx, rf).await,
    };

    // 3. Write.
    let txn_id = txn_id.ok_or_else(|| Error::internal("no txn id for a posting"))?;
    let mut w = Writes::new(ctx, now, txn_id, env);
    for c in &expiries {
        w.posting(c, OpKind::Expire, None, None, &[]);
    }
    let mut ids = lot_ids.into_iter();
    let mut effects = Vec::with_capacity(plan.cards.len());
    let detail = detail_json(&req, orig.as_ref());
    for c in &plan.cards {
        let created: Vec<i64> = (0..c.lots_created.len())
            .map(|_| ids.next())
            .collect::<Option<_>>()
            .ok_or_else(|| Error::internal("not enough lot ids"))?;
        w.posting(c, plan.op, Some(&order_no), Some(&plan), &created);
        w.posting_detail(detail.clone());
        for (n, id) in c.lots_created.iter().zip(&created) {
            w.new_lot(&c.card_no, *id, n.points, n.expires_at);
        }
        effects.push(c.effect(&created));
    }
    // New card first: its row gets the final values of its changes.
    if let Some(nc) = &plan.new_card {
        let (hash, salt) = match &nc.pin {
            PinSource::None => (None, None),
            PinSource::FromRequest => {
                let pin = need(req.pin.as_deref())?;
                let salt = random_salt();
                let h = keyed_hash(&env.hash_key, DOMAIN_CARD_PIN, &salt, pin.as_bytes());
                (Some(hex::encode(h)), Some(hex::encode(salt)))
            }
            PinSource::CopyFrom(old) => {
                let r = need(rows.get(old))?;
                (r.pin_hash.clone(), r.pin_salt.clone())
            }
        };
        let last = plan.cards.iter().rev().find(|c| c.card_no == nc.card_no);
        let member_id = match &nc.member {
            MemberRef::New(m) => {
                w.members.push(json!({
                    "name": m.name, "phone": m.phone,
                    "birthday": m.birthday.map(|b| b.to_string()),
                    "referrer": m.referrer, "level": nc.level,
                }));
                None
            }
            MemberRef::Existing(id) => Some(*id),
        };
        w.new_cards.push(json!({
            "card_no": nc.card_no,
            "member_id": member_id,
            "status": status_text(last.and_then(|c| c.status).unwrap_or(CardStatus::Active)),
            "balance": money_text(last.map_or(Money::ZERO, |c| c.new_balance)),
            "points": last.map_or(0, |c| c.new_points),
            "pin_hash": hash, "pin_salt": salt, "at": now.to_rfc3339(),
        }));
    }
    let mut all: Vec<CardChange> = expiries.clone();
    all.extend(
        plan.cards
            .iter()
            .filter(|c| plan.new_card.as_ref().map(|n| &n.card_no) != Some(&c.card_no))
            .cloned(),
    );
    w.fold_cards(&all, &rows, None)?;

    let answer_row = plan.answer.clone().into_row(txn_id, now, false);
    let first_status = plan.cards.first().and_then(|c| {
        c.status
            .or_else(|| states.get(&c.card_no).map(|s| s.status))
    });
    let row = posting_row(
        &plan,
        &answer_row,
        &RowContext {
            req: &req,
            status: first_status,
            orig_terminal: orig.as_ref().map(|o| o.terminal.as_str()),
        },
    );
    let points_earned = if plan.op == OpKind::Debit {
        plan.cards.first().map_or(0, |c| c.points_delta.max(0))
    } else {
        0
    };
    w.order = Some(json!({
        "terminal_id": ctx.terminal,
        "order_no": order_no,
        "card_no": plan.answer.card,
        "cards": plan.cards.iter().map(|c| c.card_no.clone()).collect::<Vec<_>>(),
        "txn_id": txn_id,
        "business_day": w.business_day.to_string(),
        "posted_at": now.to_rfc3339(),
        "amount": money_text(plan.answer.amount),
        "charged": money_text(plan.answer.charged),
        "tender": if req.tender == Tender::Cash { "cash" } else { "balance" },
        "points_earned": points_earned,
        "effects": effects.iter().map(effect_json).collect::<Vec<_>>(),
        "answer": row_to_json(&row),
    }));
    if let (Some(u), Some(o)) = (&plan.original, &orig) {
        w.orig = Some(json!({
            "terminal_id": o.terminal, "order_no": u.order_no,
            "reversed": u.mark_reversed, "refunded_add": money_text(u.refunded_add),
            "taken_add": u.points_taken_back_add,
        }));
    }
    if operator_reset {
        w.operator_reset = Some(json!({
            "store_id": ctx.store_id, "operator_id": req.operator,
        }));
    }
    w.run(tx, 1).await?;
    Ok(Rows(vec![row]))
}

/// Stands for "a card with this number exists" where a decision only asks that.
fn placeholder(card_no: &str, like: &CardState) -> CardState {
    CardState {
        card_no: card_no.to_owned(),
        ..like.clone()
    }
}

fn detail_json(req: &Request, orig: Option<&OrigRow>) -> Value {
    let mut d = serde_json::Map::new();
    if req.op == OpKind::Debit || req.op == OpKind::Topup {
        let t = if req.tender == Tender::Cash {
            "cash"
        } else {
            "balance"
        };
        d.insert("tender".into(), t.into());
    }
    if let Some(r) = &req.reason {
        d.insert("reason".into(), r.clone().into());
    }
    if let Some(g) = &req.gift {
        d.insert("gift".into(), g.clone().into());
    }
    if let Some(o) = orig {
        d.insert(
            "original".into(),
            json!({"terminal": o.terminal, "order_no": o.order_no}),
        );
    }
    if let Some(op) = &req.operator {
        d.insert("operator".into(), op.clone().into());
    }
    Value::Object(d)
}

fn history_rows(v: Value) -> Result<Vec<Row>> {
    let mut hs: Vec<HistoryRow> = from_json(v, "history")?;
    hs.sort_by_key(|h| std::cmp::Reverse((h.posted_at, h.posting_id)));
    hs.into_iter()
        .map(|h| {
            let mut r = Row::new();
            // The store's own expiry postings have no order number.
            if let Some(o) = h.order_no {
                r.push("order_no", o);
            }
            Ok(r.with("op", h.op)
                .with("txn_id", h.txn_id.to_string())
                .with("card", h.card_no)
                .with("amount", money_text(money(&h.amount)?))
                .with("discount", money_text(money(&h.discount)?))
                .with("charged", money_text(money(&h.charged)?))
                .with("points_delta", h.points_delta.to_string())
                .with("balance", money_text(money(&h.balance)?))
                .with("points", h.points.to_string())
                .with("posted_at", h.posted_at.to_string())
                .with("terminal", h.terminal_id))
        })
        .collect()
}

/// Checks the operator: absent is fine for a cashier op; unknown, disabled,
/// a cashier on an M op, or a wrong `mpin` is 2011 (a wrong `mpin` counts
/// toward disabling the manager).
fn check_operator(
    env: &TxnEnv,
    ctx: &TxnContext,
    req: &Request,
    operator: Option<&OperatorRow>,
    refuse: &mut RefusalWrites,
) -> std::result::Result<(), Errno> {
    if req.operator.is_none() && !req.op.is_manager_op() {
        return Ok(());
    }
    let active = operator.filter(|o| o.status == "active");
    let role = active.map(|o| {
        if o.role == "manager" {
            Role::Manager
        } else {
            Role::Cashier
        }
    });
    let mut mpin_ok = false;
    if let (Some(o), Some(Role::Manager), true) = (active, role, req.op.is_manager_op()) {
        let hash = hex_bytes(&o.pin_hash).ok().flatten();
        let salt = hex_bytes(&o.pin_salt).ok().flatten();
        mpin_ok = match (hash, salt, req.mpin.as_deref()) {
            (Some(h), Some(s), Some(p)) => {
                verify_keyed_hash(&env.hash_key, DOMAIN_MANAGER_PIN, &s, p.as_bytes(), &h)
            }
            _ => false,
        };
        let who = (
            ctx.store_id.clone(),
            req.operator.clone().unwrap_or_default(),
        );
        if !mpin_ok {
            refuse.operator = Some((who.0, who.1, false));
        } else if o.pin_fail_count > 0 {
            // A right PIN ends the run of wrong ones even if the op is then
            // refused for another reason.
            refuse.operator = Some((who.0, who.1, true));
        }
    }
    authorize(req.op, role, mpin_ok)
}

/// What a refused request still writes: its order claim dropped, a wrong
/// card PIN counted (and the card locked at the 5th), a wrong manager PIN
/// counted (and the manager disabled at the 5th).
#[derive(Default)]
struct RefusalWrites {
    order_no: Option<String>,
    /// `(store, operator, reset)`: count a wrong PIN, or reset the count.
    operator: Option<(String, String, bool)>,
    card: Option<(String, u32, bool)>,
}

impl RefusalWrites {
    async fn refusal(
        mut self,
        tx: &Transaction<'_>,
        ctx: &TxnContext,
        rf: Refusal,
    ) -> Result<Rows> {
        if let Some(p) = rf.pin_write {
            self.card = Some((p.card_no, p.pin_fail_count, p.lock));
        }
        self.apply(tx, ctx, rf.errno).await
    }

    async fn apply(self, tx: &Transaction<'_>, ctx: &TxnContext, errno: Errno) -> Result<Rows> {
        if self.order_no.is_some() || self.operator.is_some() || self.card.is_some() {
            let stmt = tx.prepare_cached(REFUSE_SQL).await?;
            let (card, count, lock) = match &self.card {
                Some((c, n, l)) => (Some(c.as_str()), Some(*n as i32), *l),
                None => (None, None, false),
            };
            let (store, op, reset) = match &self.operator {
                Some((s, o, r)) => (Some(s.as_str()), Some(o.as_str()), *r),
                None => (None, None, false),
            };
            tx.query_one(
                &stmt,
                &[
                    &ctx.terminal,
                    &self.order_no,
                    &card,
                    &count,
                    &lock,
                    &store,
                    &op,
                    &(PIN_TRIES as i32),
                    &reset,
                ],
            )
            .await?;
        }
        Err(errno.into())
    }
}

/// The rows one posting writes, as the JSON document [`WRITE_SQL`] expands.
struct Writes {
    terminal: String,
    now: DateTime<Utc>,
    business_day: NaiveDate,
    txn_id: i64,
    members: Vec<Value>,
    new_cards: Vec<Value>,
    cards: Vec<Value>,
    postings: Vec<Value>,
    lot_moves: BTreeMap<(i64, String), i64>,
    new_lots: Vec<Value>,
    order: Option<Value>,
    orig: Option<Value>,
    operator_reset: Option<Value>,
}

impl Writes {
    fn new(ctx: &TxnContext, now: DateTime<Utc>, txn_id: i64, env: &TxnEnv) -> Writes {
        Writes {
            terminal: ctx.terminal.clone(),
            now,
            business_day: business_day(now, &env.config.business.offset()),
            txn_id,
            members: vec![],
            new_cards: vec![],
            cards: vec![],
            postings: vec![],
            lot_moves: BTreeMap::new(),
            new_lots: vec![],
            order: None,
            orig: None,
            operator_reset: None,
        }
    }

    /// One postings row for a card change; its lot moves recorded.
    fn posting(
        &mut self,
        c: &CardChange,
        op: OpKind,
        order_no: Option<&str>,
        plan: Option<&Plan>,
        created: &[i64],
    ) {
        let pairs = |v: &[LotTake]| -> Value {
            v.iter()
                .map(|t| json!([t.lot_id, t.points]))
                .collect::<Vec<_>>()
                .into()
        };
        let a = plan.map(|p| &p.answer);
        self.postings.push(json!({
            "txn_id": self.txn_id,
            "card_no": c.card_no,
            "terminal_id": self.terminal,
            "order_no": order_no,
            "op": op.as_str(),
            "balance_delta": c.balance_delta.to_string(),
            "points_delta": c.points_delta,
            "balance": money_text(c.new_balance),
            "points": c.new_points,
            "amount": money_text(a.map_or(Money::ZERO, |a| a.amount)),
            "discount": money_text(a.map_or(Money::ZERO, |a| a.discount)),
            "charged": money_text(a.map_or(Money::ZERO, |a| a.charged)),
            "business_day": self.business_day.to_string(),
            "posted_at": self.now.to_rfc3339(),
            "lots_created": created.iter().zip(&c.lots_created)
                .map(|(id, n)| json!([id, n.points])).collect::<Vec<_>>(),
            "lots_taken": pairs(&c.lots_taken),
            "lots_restored": pairs(&c.lots_restored),
            "detail": {},
        }));
        for t in &c.lots_taken {
            *self
                .lot_moves
                .entry((t.lot_id, c.card_no.clone()))
                .or_default() -= t.points;
        }
        for t in &c.lots_restored {
            *self
                .lot_moves
                .entry((t.lot_id, c.card_no.clone()))
                .or_default() += t.points;
        }
    }

    fn posting_detail(&mut self, d: Value) {
        if let Some(p) = self.postings.last_mut() {
            p["detail"] = d;
        }
    }

    fn new_lot(&mut self, card_no: &str, id: i64, points: i64, exp: Option<DateTime<Utc>>) {
        self.new_lots.push(json!({
            "lot_id": id, "card_no": card_no, "points": points,
            "expires_at": exp.map(|e| e.to_rfc3339()), "txn_id": self.txn_id,
            "at": self.now.to_rfc3339(),
        }));
    }

    /// One update per existing card with the final values of its changes in
    /// order, guarded by the values read under lock.
    fn fold_cards(
        &mut self,
        changes: &[CardChange],
        rows: &BTreeMap<String, CardRow>,
        pin: Option<u32>,
    ) -> Result<()> {
        let mut finals: BTreeMap<&str, (Money, i64, CardStatus, u32)> = BTreeMap::new();
        for c in changes {
            let row = rows
                .get(&c.card_no)
                .ok_or_else(|| Error::internal("change of a card not locked"))?;
            let st = row.state()?;
            let e = finals.entry(c.card_no.as_str()).or_insert((
                st.balance,
                st.points,
                st.status,
                st.pin_fail_count,
            ));
            e.0 = c.new_balance;
            e.1 = c.new_points;
            if let Some(s) = c.status {
                e.2 = s;
            }
            if let Some(n) = c.pin_fail_count.or(pin) {
                e.3 = n;
            }
        }
        for (no, (b, p, s, n)) in finals {
            let row = &rows[no];
            self.cards.push(json!({
                "card_no": no,
                "old_balance": row.balance, "old_points": row.points,
                "balance": money_text(b), "points": p, "status": status_text(s),
                "pin_fail_count": n, "at": self.now.to_rfc3339(),
            }));
        }
        Ok(())
    }

    /// A read that clears a card's PIN counter.
    fn set_pin_count(
        &mut self,
        st: &CardState,
        rows: &BTreeMap<String, CardRow>,
        n: u32,
    ) -> Result<()> {
        if let Some(c) = self
            .cards
            .iter_mut()
            .find(|c| c["card_no"] == st.card_no.as_str())
        {
            c["pin_fail_count"] = n.into();
            return Ok(());
        }
        let mut c = CardChange::unchanged(st);
        c.pin_fail_count = Some(n);
        self.fold_cards(&[c], rows, Some(n))
    }

    /// Writes it all in one statement; checks every row landed.
    async fn run(self, tx: &Transaction<'_>, orders: i64) -> Result<()> {
        let lot_moves: Vec<Value> = self
            .lot_moves
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|((id, card), d)| json!({"lot_id": id, "card_no": card, "delta": d}))
            .collect();
        let doc = json!({
            "members": self.members,
            "new_cards": self.new_cards,
            "cards": self.cards,
            "postings": self.postings,
            "lot_moves": lot_moves,
            "new_lots": self.new_lots,
            "order": self.order.iter().collect::<Vec<_>>(),
            "orig": self.orig.iter().collect::<Vec<_>>(),
            "operator_reset": self.operator_reset.iter().collect::<Vec<_>>(),
        });
        let stmt = tx.prepare_cached(WRITE_SQL).await?;
        let r = tx.query_one(&stmt, &[&doc]).await?;
        let got: Vec<i64> = (0..9).map(|i| r.get::<_, i64>(i)).collect();
        let want = [
            self.members.len() as i64,
            self.new_cards.len() as i64,
            self.cards.len() as i64,
            self.postings.len() as i64,
            lot_moves.len() as i64,
            self.new_lots.len() as i64,
            orders,
            i64::from(self.orig.is_some()),
        ];
        if got[..8] != want {
            // A card row that changed under our lock, or a lot that is not
            // the card's: the rows disagree with what was read. Roll back.
            return Err(Error::internal(format!(
                "posting wrote {got:?}, expected {want:?}"
            )));
        }
        Ok(())
    }
}

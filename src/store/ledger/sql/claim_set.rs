//! A batch's claim (group commit, issue 14): the claims of several txns of
//! one [`ClaimShape`] as one statement, one input row per txn and one
//! answer row per txn with the columns [`super::claim_sql`] gives one txn.
//! Sixteen debits' claim ran in 1.87 ms under `EXPLAIN ANALYZE` (0.12 ms a
//! txn), where one debit's own claim costs 0.36 ms (issue 14).
//!
//! The locked card comes as columns `c_…` ([`CARD_FIELDS`]), the `cards`
//! column left NULL.
//!
//! Only for what a batch holds: one card per txn, no card to create, no
//! original, the load folded. The batch's txns share no card, terminal or
//! operator, so each answer row depends on its own input row alone, as if
//! the claims had run one after the other.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tokio_postgres::types::Type;

use super::load::{last_posting, load_part, LoadParams};
use super::LoadColumn;
use super::{memo, operator_row, terminal_row, ClaimShape, CARD_FIELDS, CARD_ROW};

/// The parameters, one array each with an element per txn: $1 terminal,
/// $2 ts, $3 store, $4 operator, $5 order number, $6 the card to lock,
/// $7 whether it wants lot ids, $8 a level, $9 whether it wants a txn id,
/// $10 the history's card, $11 its limit, $12 whether it registers, $13
/// the instant its lots are read up to (the load's inputs, as
/// [`super::LOAD_TYPES`] has them).
pub(in crate::store::ledger) const CLAIM_SET_TYPES: [Type; 13] = [
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::BOOL_ARRAY,
    Type::TEXT_ARRAY,
    Type::BOOL_ARRAY,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::BOOL_ARRAY,
    Type::INT8_ARRAY,
];

/// The load's inputs as columns of the txn's input row `x`.
const SET_PARAMS: LoadParams = LoadParams {
    // Each row reads its own card's lots from the table, by index (no txn
    // of a batch names lots): a CTE of the batch's lots would be scanned
    // whole for each txn, a cost that grew with the lots cards hold.
    live_lots: None,
    lv: "lots lv WHERE lv.card_no = x.card AND lv.points_left > 0",
    cards: "CASE WHEN l.card_no IS NULL THEN '{}'::text[] ELSE ARRAY[l.card_no] END",
    create: "NULL::text",
    wants_lots: "x.wants_lots",
    level: "x.level",
    want_txn: "x.want_txn",
    hist: "x.hist",
    limit: "x.lim",
    named_lots: "'{}'::bigint[]",
    register: "x.register",
    upto: "x.upto",
};

/// The chain's columns (`rows::ChainRow::from_columns`): `last_posting!`'s
/// as `h_…`, each of these, then its length, `h_count`.
const CHAIN_FIELDS: [&str; 19] = [
    "txn_id",
    "card_no",
    "terminal_id",
    "order_no",
    "op",
    "balance_delta",
    "points_delta",
    "balance",
    "points",
    "amount",
    "discount",
    "charged",
    "business_day",
    "posted_at",
    "row_mac",
    "mac_key_id",
    "chain_pos",
    "visits_delta",
    "prev_mac",
];

/// The chain's length: its last posting's place or (before places, or with
/// no posting) a count; NULL when no card was locked.
const CHAIN_COUNT: &str = ",
       CASE WHEN l.card_no IS NOT NULL
            THEN coalesce(lp.chain_pos,
                          (SELECT count(*) FROM postings p WHERE p.card_no = l.card_no))
       END AS h_count";

/// The batch claim of `shape`, or `None` for a shape a batch cannot hold.
pub(in crate::store::ledger) fn claim_set_sql(shape: ClaimShape) -> Option<Cow<'static, str>> {
    static KEPT: OnceLock<Mutex<HashMap<ClaimShape, &'static str>>> = OnceLock::new();
    let batchable = shape.cards && !shape.create && !shape.orig && shape.fold.is_some();
    batchable.then(|| memo(&KEPT, shape, build))
}

fn build(shape: ClaimShape) -> String {
    let mut sql = ctes(shape.order);
    let fold = shape.fold.expect("a batch claim folds the load");
    // The chain comes as columns of its own (`CHAIN_FIELDS`), not JSON.
    let (lv, load_cols) = load_part(fold.without(LoadColumn::Chains), &SET_PARAMS);
    if let Some(lv) = lv {
        sql.push_str(",\n");
        sql.push_str(&lv);
    }
    sql.push_str("\nSELECT x.i,\n       ");
    sql.push_str(&columns(shape).join(",\n       "));
    sql.push_str(&load_cols);
    // The card as columns, not as JSON: building and parsing its JSON
    // cost the claim 6 % and the daemon a parse of some 1.3 KB a txn.
    for f in CARD_FIELDS {
        sql.push_str(&format!(",\n       l.{f} AS c_{f}"));
    }
    for f in CHAIN_FIELDS {
        sql.push_str(&format!(",\n       lp.{f} AS h_{f}"));
    }
    sql.push_str(CHAIN_COUNT);
    // Joined, not looked up per row: a batch holds no two txns of one
    // terminal or card, so each input row meets at most one row of each
    // (and `run_set` checks the answer has one row per txn, in order).
    sql.push_str(
        "\n  FROM x0 x
  LEFT JOIN ts ON ts.terminal_id = x.terminal AND ts.ts = x.ts
  LEFT JOIN go ON go.terminal = x.terminal
  LEFT JOIN locked l ON l.card_no = x.card
  LEFT JOIN LATERAL (",
    );
    sql.push_str(last_posting!("l.card_no"));
    sql.push_str(") lp ON true\n ORDER BY x.i");
    sql
}

/// The input rows, the `ts` of each, whether its order number is new
/// (when the shape has one), and the cards of those whose claim went
/// through, locked in card-number order.
fn ctes(order: bool) -> String {
    let mut sql = String::from(
        "WITH x0 AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::bool[], $8::text[], $9::bool[], $10::text[],
                         $11::bigint[], $12::bool[], $13::bigint[])
           WITH ORDINALITY AS u(terminal, ts, store, operator, order_no, card,
                                wants_lots, level, want_txn, hist, lim, register, upto, i)
), ts AS (
    INSERT INTO seen_ts (terminal_id, ts) SELECT terminal, ts FROM x0
    ON CONFLICT DO NOTHING RETURNING terminal_id, ts
)",
    );
    let mut go = String::from(
        "SELECT x.card, x.terminal FROM x0 x
      JOIN ts ON ts.terminal_id = x.terminal AND ts.ts = x.ts",
    );
    if order {
        // Locked by the statement before this one (`ORDER_LOCK_SQL`).
        go.push_str(
            "
     WHERE NOT EXISTS (SELECT 1 FROM orders o
                        WHERE o.terminal_id = x.terminal AND o.order_no = x.order_no)",
        );
    }
    sql.push_str(&format!(
        ", go AS MATERIALIZED ({go}), locked AS MATERIALIZED (
    {CARD_ROW}
     WHERE c.card_no = ANY (ARRAY(SELECT card FROM go))
     ORDER BY c.card_no
       FOR UPDATE OF c
)"
    ));
    sql
}

/// The claim's row of one txn, as [`super::claim_sql`]'s columns.
fn columns(shape: ClaimShape) -> [String; 7] {
    let claimed = if shape.order {
        "(go.terminal IS NOT NULL)::int::bigint"
    } else {
        "0::bigint"
    };
    let operator = if shape.operator {
        operator_row("x.store", "x.operator")
    } else {
        "NULL::json".to_owned()
    };
    [
        "(ts.terminal_id IS NOT NULL)::int::bigint AS ts_ok".to_owned(),
        format!("{claimed} AS claimed"),
        format!("{operator} AS operator"),
        "NULL::json AS orig".to_owned(),
        terminal_row("x.terminal") + " AS terminal",
        "NULL::json AS cards".to_owned(),
        "0::bigint AS serialised".to_owned(),
    ]
}

//! The ledger's SQL statements, each prepared and cached per connection:
//! the claim here, the load's columns in [`load`], the write's sections in
//! [`write`]; [`statement_shapes`] lists every shape they can take.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};

use super::rows::ORDER_JSON_COLUMNS;
use tokio_postgres::types::Type;

mod claim_set;
mod load;
mod write;

/// Statement texts kept at most, per kind: more than every shape
/// [`statement_shapes`] lists, so the bound is never met in practice.
const MEMO_MAX: usize = 1024;

/// A statement's text, built once per shape and kept: the text depends on
/// the shape alone, and building it again for every request was 8 % of
/// the daemon's instructions per debit (callgrind, issue 14). Past
/// [`MEMO_MAX`] shapes it is built each time instead of kept.
fn memo<K: Copy + Eq + Hash + Send + 'static>(
    cache: &'static OnceLock<Mutex<HashMap<K, &'static str>>>,
    key: K,
    build: impl FnOnce(K) -> String,
) -> Cow<'static, str> {
    let map = cache.get_or_init(|| Mutex::new(HashMap::new()));
    let mut kept = map.lock().expect("memo lock");
    if let Some(sql) = kept.get(&key) {
        return Cow::Borrowed(sql);
    }
    let sql = build(key);
    if kept.len() >= MEMO_MAX {
        return Cow::Owned(sql);
    }
    // Leaked on purpose: at most MEMO_MAX texts, kept for the process's life.
    let sql: &'static str = Box::leak(sql.into_boxed_str());
    kept.insert(key, sql);
    Cow::Borrowed(sql)
}

pub(super) use claim_set::{claim_set_sql, CLAIM_SET_TYPES};
pub(super) use load::{load_sql, LoadColumn, LoadColumns, LOAD_TYPES};
pub(super) use write::{write_sql, WriteSection, WriteSections, REFUSE_SQL};

use crate::store::protected::card_renewed_at;
use load::{load_part, FOLDED_PARAMS};

/// What a request's claim statement does besides spending its `ts` and
/// reading its terminal ([`claim_sql`]): each left out when the request has
/// no use for it, since a CTE or subquery costs executor start-up even when
/// its parameters are NULL (issue 6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ClaimShape {
    /// Claim the order number (and read a previous use of it).
    pub(super) order: bool,
    /// Serialise on a card number about to be created (advisory lock).
    pub(super) create: bool,
    /// Lock the original order of a reverse or refund.
    pub(super) orig: bool,
    /// Read the operator.
    pub(super) operator: bool,
    /// Lock cards (those named, or the original's).
    pub(super) cards: bool,
    /// The load's columns of this mask computed in the claim's own snapshot
    /// (see `store::ledger::load`); `None`: a load statement of its own.
    pub(super) fold: Option<LoadColumns>,
}

/// The order numbers of one or more txns (`$1` terminals, `$2` order
/// numbers, NULL for a txn without one) locked for the transaction, in one
/// order so that two batches cannot wait on each other. Sent just before
/// the claim, which then runs in a snapshot taken after the locks: a txn
/// with the same order number that held one has committed (its order is
/// seen: the request is a replay) or rolled back.
pub(super) const ORDER_LOCK_SQL: &str = "SELECT count(pg_advisory_xact_lock(k)) FROM (
    SELECT DISTINCT hashtextextended('order:' || t || ':' || o, 0) AS k
      FROM unnest($1::text[], $2::text[]) AS u(t, o) WHERE o IS NOT NULL ORDER BY k) s";

/// The types of the claim statement's parameters: $1 terminal, $2 ts,
/// $3 store, $4 operator, $5 order number, $6 request digest, $7 op,
/// $8 cards to lock, $9/$10 the original's terminal and order number,
/// $11 a card number to create; $12–$18 the folded load's, which are the
/// load statement's $3–$9 ([`LOAD_TYPES`]). All are bound whatever the
/// shape.
pub(super) fn claim_types() -> &'static [Type] {
    static TYPES: std::sync::LazyLock<Vec<Type>> = std::sync::LazyLock::new(|| {
        let own = [
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BYTEA,
            Type::TEXT,
            Type::TEXT_ARRAY,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
        ];
        own.into_iter()
            .chain(LOAD_TYPES[2..].iter().cloned())
            .collect()
    });
    &TYPES
}

/// The claim-and-lock statement of one shape. Its CTEs are chained so that
/// nothing is claimed or locked unless the `ts` was new, and nothing is
/// locked unless the order was claimed; cards are locked in card-number
/// order, after the advisory lock and the original.
pub(super) fn claim_sql(shape: ClaimShape) -> Cow<'static, str> {
    static KEPT: OnceLock<Mutex<HashMap<ClaimShape, &'static str>>> = OnceLock::new();
    memo(&KEPT, shape, build_claim_sql)
}

fn build_claim_sql(shape: ClaimShape) -> String {
    let mut sql = claim_ctes(shape);
    let folded = shape.fold.map(|m| load_part(m, &FOLDED_PARAMS));
    if let Some((Some(lv), _)) = &folded {
        sql.push_str(", ");
        sql.push_str(lv);
    }
    sql.push_str("\nSELECT ");
    sql.push_str(&claim_columns(shape).join(",\n       "));
    if let Some((_, load_cols)) = &folded {
        sql.push_str(load_cols);
    }
    sql
}

/// The claim's CTEs: the `ts`, then each step the shape holds, every one
/// waiting on those before it.
fn claim_ctes(shape: ClaimShape) -> String {
    let mut sql = String::from(
        "WITH ts AS (
    INSERT INTO seen_ts (terminal_id, ts) VALUES ($1::text, $2::bigint)
    ON CONFLICT DO NOTHING RETURNING 1
)",
    );
    // Conditions a later step waits on (all are true; they order the steps).
    let mut after = String::from(" AND EXISTS (SELECT 1 FROM go)");
    if shape.order {
        // The order number was locked by the statement just before this one
        // ([`ORDER_LOCK_SQL`]), so this snapshot holds a twin's order if one
        // committed while that waited. The order row itself is written
        // once, with its answer.
        sql.push_str(
            ", go AS MATERIALIZED (
    SELECT 1 AS go FROM ts WHERE NOT EXISTS (
        SELECT 1 FROM orders WHERE terminal_id = $1::text AND order_no = $5::text)
)",
        );
    } else {
        sql.push_str(", go AS MATERIALIZED (SELECT 1 AS go FROM ts)");
    }
    if shape.create {
        sql.push_str(
            ", adv AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended('card:' || $11::text, 0))::text AS l
      FROM go WHERE $11::text IS NOT NULL
)",
        );
        after.push_str(" AND (SELECT count(*) FROM adv) >= 0");
    }
    if shape.orig {
        sql.push_str(&format!(
            ", orig AS MATERIALIZED (
    SELECT {ORDER_JSON_COLUMNS}
      FROM orders o JOIN terminals t ON t.terminal_id = o.terminal_id
     WHERE o.terminal_id = $9::text AND o.order_no = $10::text AND t.store_id = $3::text
       AND o.answer IS NOT NULL{after}
       FOR UPDATE OF o
)"
        ));
    }
    if shape.cards {
        let which = if shape.orig {
            after.push_str(" AND (SELECT count(*) FROM orig) >= 0");
            "CASE WHEN $10::text IS NULL THEN $8::text[] ELSE (SELECT cards FROM orig) END"
        } else {
            "$8::text[]"
        };
        sql.push_str(&format!(
            ", locked AS MATERIALIZED (
    {CARD_ROW}
     WHERE c.card_no = ANY ({which}){after}
     ORDER BY c.card_no
       FOR UPDATE OF c
)"
        ));
    }
    sql
}

/// A card with its member and level, as the ledger's checks read it (one
/// JSON object per card: `rows::CardRow`).
const CARD_ROW: &str = concat!(
    "SELECT c.card_no, c.member_id, c.status, c.balance::text AS balance, c.points,
           encode(c.pin_hash, 'hex') AS pin_hash, encode(c.pin_salt, 'hex') AS pin_salt,
           c.pin_fail_count, m.level, l.discount::text AS discount,
           l.points_rate::text AS points_rate, l.max_balance::text AS max_balance,
           l.daily_debit_limit::text AS daily_debit_limit,
           m.name, m.phone, m.birthday::text AS birthday,
           c.spent_day::text AS spent_day, c.spent_today::text AS spent_today,
           c.held::text AS held, c.visits,
           floor(extract(epoch FROM c.opened_at) * 1000)::bigint AS opened_at,
           floor(extract(epoch FROM c.renewed_at) * 1000)::bigint AS renewed_at,
           floor(extract(epoch FROM ",
    card_renewed_at!(),
    ") * 1000)::bigint AS renewed_ms,
           encode(c.row_mac, 'hex') AS row_mac, c.mac_key_id, encode(c.last_mac, 'hex') AS last_mac,
           encode(c.sealed, 'hex') AS sealed,
           c.chain_len, m.referrer, encode(m.row_mac, 'hex') AS member_mac,
           m.mac_key_id AS member_key_id, encode(l.row_mac, 'hex') AS level_mac,
           l.mac_key_id AS level_key_id
      FROM cards c JOIN members m ON m.member_id = c.member_id JOIN levels l ON l.level = m.level"
);

/// [`CARD_ROW`]'s columns, each of which a batch's claim returns as a
/// column of its own, `c_` and the name (`rows::CardRow::from_columns`).
pub(super) const CARD_FIELDS: [&str; 33] = [
    "card_no",
    "member_id",
    "status",
    "balance",
    "points",
    "pin_hash",
    "pin_salt",
    "pin_fail_count",
    "level",
    "discount",
    "points_rate",
    "max_balance",
    "daily_debit_limit",
    "name",
    "phone",
    "birthday",
    "spent_day",
    "spent_today",
    "held",
    "visits",
    "opened_at",
    "renewed_at",
    "renewed_ms",
    "row_mac",
    "mac_key_id",
    "last_mac",
    "sealed",
    "chain_len",
    "referrer",
    "member_mac",
    "member_key_id",
    "level_mac",
    "level_key_id",
];

/// `find` (protocol.md §6.1): every card of the members whose phone is $1
/// or who hold card $1, at most $2, members in id order, their cards in
/// card order (the phone is an index look-up: migration 0010).
pub(super) fn find_sql() -> String {
    format!(
        "SELECT coalesce(json_agg(row_to_json(f)), '[]'::json) AS cards FROM (
    {CARD_ROW}
     WHERE c.member_id IN (SELECT member_id FROM members WHERE phone = $1::text
                           UNION SELECT member_id FROM cards WHERE card_no = $1::text)
     ORDER BY c.member_id, c.card_no
     LIMIT $2::bigint) f"
    )
}

/// The claim's row: what each step found, `NULL` (or empty) for the steps
/// the shape leaves out.
fn claim_columns(shape: ClaimShape) -> [String; 7] {
    let or_null =
        |on: bool, expr: &str, null: &str| if on { expr.to_owned() } else { null.to_owned() };
    [
        "(SELECT count(*) FROM ts)::bigint AS ts_ok".to_owned(),
        or_null(
            shape.order,
            "(SELECT count(*) FROM go)::bigint",
            "0::bigint",
        ) + " AS claimed",
        or_null(
            shape.operator,
            &operator_row("$3::text", "$4::text"),
            "NULL::json",
        ) + " AS operator",
        or_null(
            shape.orig,
            "(SELECT row_to_json(orig) FROM orig)",
            "NULL::json",
        ) + " AS orig",
        terminal_row("$1::text") + " AS terminal",
        or_null(
            shape.cards,
            "(SELECT coalesce(json_agg(row_to_json(locked)), '[]'::json) FROM locked)",
            "'[]'::json",
        ) + " AS cards",
        // A CTE nothing reads is never run: the advisory lock must be read
        // even when no card is locked after it (a register).
        or_null(shape.create, "(SELECT count(*) FROM adv)", "0::bigint") + " AS serialised",
    ]
}

/// The operator `operator` of store `store`, as the checks read it.
fn operator_row(store: &str, operator: &str) -> String {
    format!(
        "(SELECT row_to_json(o) FROM (SELECT role, status, encode(pin_hash, 'hex') AS pin_hash,
               encode(pin_salt, 'hex') AS pin_salt, pin_fail_count,
               encode(row_mac, 'hex') AS row_mac, mac_key_id
          FROM operators WHERE store_id = {store} AND operator_id = {operator}) o)"
    )
}

/// The terminal `terminal`, as the checks read it.
fn terminal_row(terminal: &str) -> String {
    format!(
        "(SELECT row_to_json(t) FROM (SELECT coalesce(store_id, '*') AS store_id, kind, status,
               encode(pw_hash, 'hex') AS pw_hash, encode(pw_salt, 'hex') AS pw_salt,
               encode(row_mac, 'hex') AS row_mac, mac_key_id
          FROM terminals WHERE terminal_id = {terminal}) t)"
    )
}

/// The whole `orders` row of an order number used before, as JSON, for its
/// MAC check (a statement of its own, so it sees a racing twin that
/// committed after the claim's snapshot).
pub(super) fn order_row_sql() -> String {
    format!(
        "SELECT row_to_json(x) FROM (SELECT {ORDER_JSON_COLUMNS} FROM orders o
          WHERE o.terminal_id = $1::text AND o.order_no = $2::text) x"
    )
}

/// One shape a ledger statement can take: its name (which sections it
/// holds), its text and its parameter types.
#[derive(Debug, Clone)]
pub struct StatementShape {
    pub name: String,
    pub sql: String,
    pub types: Vec<Type>,
}

/// Every shape the claim, load and write statements can be assembled in
/// (a superset of those requests reach), for the test that PREPAREs each
/// against a real database: a section that does not fit beside another
/// fails there rather than on the first request that needs the pair.
pub fn statement_shapes() -> Vec<StatementShape> {
    let mut out = Vec::new();
    let flags = |m: u16, i: u16| m & (1 << i) != 0;
    // The folded load's columns, as `LoadArgs::fold` asks for them: every
    // mask with the two card-dependent columns set.
    let fold_masks: Vec<LoadColumns> = LoadColumns::every()
        .filter(|m| m.has(LoadColumn::Lots))
        .collect();
    for m in 0..1u16 << 5 {
        let shape = ClaimShape {
            order: flags(m, 0),
            create: flags(m, 1),
            orig: flags(m, 2),
            operator: flags(m, 3),
            cards: flags(m, 4),
            fold: None,
        };
        let folds = std::iter::once(None).chain(
            (shape.cards && !shape.create && !shape.orig)
                .then(|| fold_masks.iter().map(|f| Some(*f)))
                .into_iter()
                .flatten(),
        );
        for fold in folds {
            let shape = ClaimShape { fold, ..shape };
            let name = format!("claim {m:05b} fold {:?}", fold.map(|f| f.0));
            if let Some(sql) = claim_set_sql(shape) {
                out.push(StatementShape {
                    name: format!("batch {name}"),
                    sql: sql.into_owned(),
                    types: CLAIM_SET_TYPES.to_vec(),
                });
            }
            out.push(StatementShape {
                name,
                sql: claim_sql(shape).into_owned(),
                types: claim_types().to_vec(),
            });
        }
    }
    for m in LoadColumns::every() {
        out.push(StatementShape {
            name: format!("load {:08b}", m.0),
            sql: load_sql(m).into_owned(),
            types: LOAD_TYPES.to_vec(),
        });
    }
    for m in WriteSections::every() {
        out.push(StatementShape {
            name: format!("write {:09b}", m.0),
            sql: write_sql(m).into_owned(),
            types: vec![],
        });
    }
    out.push(StatementShape {
        name: "order lock".into(),
        sql: ORDER_LOCK_SQL.into(),
        types: vec![],
    });
    out.push(StatementShape {
        name: "refuse".into(),
        sql: REFUSE_SQL.into(),
        types: vec![],
    });
    out.push(StatementShape {
        name: "find".into(),
        sql: find_sql(),
        types: vec![],
    });
    out.push(StatementShape {
        name: "prior".into(),
        sql: order_row_sql(),
        types: vec![],
    });
    out
}

#[cfg(test)]
mod memo_tests {
    use super::*;

    #[test]
    fn a_shape_is_built_once_and_the_memo_is_bounded() {
        static KEPT: OnceLock<Mutex<HashMap<usize, &'static str>>> = OnceLock::new();
        let first = memo(&KEPT, 7, |k| format!("SELECT {k}"));
        let again = memo(&KEPT, 7, |_| unreachable!("built twice"));
        assert_eq!(first, "SELECT 7");
        assert!(
            matches!((&first, &again), (Cow::Borrowed(a), Cow::Borrowed(b)) if std::ptr::eq(*a, *b))
        );
        for k in 0..MEMO_MAX + 10 {
            let sql = memo(&KEPT, 1000 + k, |k| format!("SELECT {k}"));
            assert_eq!(sql, format!("SELECT {}", 1000 + k));
        }
        assert!(matches!(
            memo(&KEPT, 5_000_000, |k| k.to_string()),
            Cow::Owned(_)
        ));
        assert!(KEPT.get().unwrap().lock().unwrap().len() <= MEMO_MAX);
    }

    #[test]
    fn the_kept_texts_are_the_built_ones() {
        for m in LoadColumns::every() {
            assert_eq!(load_sql(m), load::build_load_sql_for_test(m), "{m:?}");
        }
    }
}

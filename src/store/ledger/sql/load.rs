//! The load statement: its columns, each computed only when the request
//! needs it, and how they name their inputs (standalone, or folded into the
//! claim).

use tokio_postgres::types::Type;

/// A card's last posting as the chain check reads it (`check::PostingRow`)
/// and the MAC of the one before it (which the last chains to), as one row
/// (none when the card has no posting): for the load's JSON and a batch's
/// claim's columns. `lead()` over the last two, not aggregates of them:
/// the claim of 10 debits ran 12 % faster (issue 14).
macro_rules! last_posting {
    ($card:literal) => {
        concat!(
            "SELECT q.*, lead(q.row_mac) OVER (ORDER BY q.posting_id DESC) AS prev_mac FROM (
      SELECT posting_id, txn_id, card_no, terminal_id, order_no, op,
             balance_delta::text AS balance_delta, points_delta,
             balance::text AS balance, points, amount::text AS amount,
             discount::text AS discount, charged::text AS charged,
             business_day::text AS business_day,
             floor(extract(epoch FROM posted_at) * 1000)::bigint AS posted_at,
             encode(row_mac, 'hex') AS row_mac, mac_key_id, chain_pos, visits_delta
        FROM postings p WHERE p.card_no = ",
            $card,
            "
       ORDER BY posting_id DESC LIMIT 2) q
     ORDER BY q.posting_id DESC LIMIT 1"
        )
    };
}
pub(super) use last_posting;

/// The load statement's columns, each with what it is when left out; a
/// request's statement computes only those it needs ([`load_sql`]): a
/// debit skips the history, the level, the new card's existence and the
/// member id, whose subqueries (the history's over every postings
/// partition) cost executor start-up even when their parameter is NULL.
/// Parameters, always all bound: $1 the locked cards, $2 a card number to
/// create, $3 lot ids wanted, $4 a level, $5 a txn id wanted, $6 the
/// history's card, $7 its limit, $8 lots a reverse names, $9 a member id
/// wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store::ledger) enum LoadColumn {
    Lots,
    NewExists,
    LotIds,
    Level,
    TxnId,
    History,
    MemberId,
    Chains,
}

impl LoadColumn {
    pub(in crate::store::ledger) const ALL: [LoadColumn; 8] = [
        LoadColumn::Lots,
        LoadColumn::NewExists,
        LoadColumn::LotIds,
        LoadColumn::Level,
        LoadColumn::TxnId,
        LoadColumn::History,
        LoadColumn::MemberId,
        LoadColumn::Chains,
    ];

    /// The column's name in the statement's row.
    pub(in crate::store::ledger) fn name(self) -> &'static str {
        match self {
            LoadColumn::Lots => "lots",
            LoadColumn::NewExists => "new_exists",
            LoadColumn::LotIds => "lot_ids",
            LoadColumn::Level => "level",
            LoadColumn::TxnId => "txn_id",
            LoadColumn::History => "history",
            LoadColumn::MemberId => "member_id",
            LoadColumn::Chains => "chains",
        }
    }

    /// What computes it, with `{placeholders}` for its inputs ([`LoadParams`]).
    fn sql(self) -> &'static str {
        match self {
            // Only the lots the op's decision reads: all of them (and those
            // a reverse names), or, `{upto}` set, those expired by then,
            // which the expiry step zeroes, read by the index on expiry
            // (migration 0017) without the live-lots CTE: a debit's read
            // does not grow with the lots a card holds (issue 14). CASE
            // runs one branch; the instant is exact (whole milliseconds).
            LoadColumn::Lots => {
                "CASE WHEN {upto} IS NULL
             THEN (SELECT coalesce(json_agg({lot_json}), '[]'::json) FROM {lv})
             ELSE (SELECT coalesce(json_agg({lot_json}), '[]'::json) FROM lots
                    WHERE card_no = ANY ({cards}) AND points_left > 0
                      AND expires_at <= 'epoch'::timestamptz + {upto} * interval '1 millisecond')
        END"
            }
            LoadColumn::NewExists => "EXISTS (SELECT 1 FROM cards WHERE card_no = {create})",
            // One a live lot when all are read (a replace moves each),
            // plus one for a lot the op earns.
            LoadColumn::LotIds => {
                "ARRAY(SELECT nextval('lots_lot_id_seq') FROM generate_series(1,
             CASE WHEN {wants_lots}
                  THEN CASE WHEN {upto} IS NULL THEN (SELECT count(*) FROM {lv}) ELSE 0 END + 1
                  ELSE 0 END))"
            }
            LoadColumn::Level => {
                "(SELECT json_build_object('level', level, 'discount', discount::text,
               'points_rate', points_rate::text, 'max_balance', max_balance::text,
               'daily_debit_limit', daily_debit_limit::text, 'row_mac', encode(row_mac, 'hex'),
               'mac_key_id', mac_key_id) FROM levels WHERE level = {level})"
            }
            LoadColumn::TxnId => "CASE WHEN {want_txn} THEN nextval('txn_id_seq') END",
            LoadColumn::History => {
                "(SELECT coalesce(json_agg(h), '[]'::json) FROM (
            SELECT posting_id, order_no, op, txn_id, card_no, amount::text AS amount,
                   discount::text AS discount, charged::text AS charged, points_delta,
                   balance::text AS balance, points,
                   floor(extract(epoch FROM posted_at) * 1000)::bigint AS posted_at, terminal_id,
                   visits_delta
              FROM postings WHERE card_no = {hist}
             ORDER BY posted_at DESC, posting_id DESC LIMIT {limit}) h)"
            }
            LoadColumn::MemberId => {
                "CASE WHEN {register} THEN nextval('members_member_id_seq') END"
            }
            // The chain's length is its last posting's place (migration
            // 0016); counted only when that posting predates places, or
            // there is none (COALESCE runs the count only then). Of the
            // posting before it only the MAC, which the last one's chains
            // to: building and parsing its whole row cost the claim 6 %
            // (issue 14). `last` carries `posting_id` and `prev_mac` too,
            // which its reader ignores.
            LoadColumn::Chains => concat!(
                "(SELECT coalesce(json_agg(json_build_object('card_no', u.card_no,
               'count', coalesce(lp.chain_pos,
                                 (SELECT count(*) FROM postings p WHERE p.card_no = u.card_no)),
               'last', CASE WHEN lp.txn_id IS NOT NULL THEN to_json(lp) END,
               'prev_mac', lp.prev_mac)), '[]'::json)
          FROM unnest({cards}) AS u(card_no)
          LEFT JOIN LATERAL (",
                last_posting!("u.card_no"),
                ") lp ON true)"
            ),
        }
    }

    /// What stands in its place when the request does not need it.
    fn absent(self) -> &'static str {
        match self {
            LoadColumn::Lots => "'[]'::json",
            LoadColumn::NewExists => "false",
            LoadColumn::LotIds => "'{}'::bigint[]",
            LoadColumn::Level => "NULL::json",
            LoadColumn::TxnId => "NULL::bigint",
            LoadColumn::History => "'[]'::json",
            LoadColumn::MemberId => "NULL::bigint",
            LoadColumn::Chains => "'[]'::json",
        }
    }

    /// Whether it reads the live lots (the `lv` CTE).
    fn reads_live_lots(self) -> bool {
        matches!(self, LoadColumn::Lots | LoadColumn::LotIds)
    }
}

/// A set of [`LoadColumn`]s: which columns one load statement computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(in crate::store::ledger) struct LoadColumns(pub(super) u16);

impl LoadColumns {
    /// `self`, with `c` when `on`.
    pub(in crate::store::ledger) fn with(self, c: LoadColumn, on: bool) -> LoadColumns {
        LoadColumns(if on { self.0 | 1 << c as u16 } else { self.0 })
    }

    /// `self` without `c`.
    pub(in crate::store::ledger) fn without(self, c: LoadColumn) -> LoadColumns {
        LoadColumns(self.0 & !(1 << c as u16))
    }

    pub(in crate::store::ledger) fn has(self, c: LoadColumn) -> bool {
        self.0 & (1 << c as u16) != 0
    }

    /// Every set `LoadArgs::mask` can ask for, for
    /// [`super::statement_shapes`]: the two columns that read the locked
    /// cards (lots, chains) both in or both out.
    pub(super) fn every() -> impl Iterator<Item = LoadColumns> {
        (0..1u16 << LoadColumn::ALL.len())
            .map(LoadColumns)
            .filter(|m| m.has(LoadColumn::Chains) == m.has(LoadColumn::Lots))
    }
}

/// The types of the load statement's parameters: bound even where the
/// columns that read them are left out.
pub(in crate::store::ledger) const LOAD_TYPES: [Type; 10] = [
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
    Type::INT8_ARRAY,
    Type::BOOL,
    Type::INT8,
];

/// The load statement computing the columns in `mask`.
pub(in crate::store::ledger) fn load_sql(mask: LoadColumns) -> std::borrow::Cow<'static, str> {
    type Kept = std::sync::Mutex<std::collections::HashMap<LoadColumns, &'static str>>;
    static KEPT: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();
    super::memo(&KEPT, mask, build_load_sql)
}

#[cfg(test)]
pub(super) fn build_load_sql_for_test(mask: LoadColumns) -> String {
    build_load_sql(mask)
}

fn build_load_sql(mask: LoadColumns) -> String {
    let (lv, cols) = load_part(mask, &LOAD_PARAMS);
    let with = lv.map(|l| format!("WITH {l}\n")).unwrap_or_default();
    // The columns come with a leading comma each.
    format!("{with}SELECT {}", cols.trim_start_matches(','))
}

/// How the load's columns name their inputs: in the load statement, its own
/// parameters; folded into the claim ([`super::claim_sql`]), the claim's locked
/// cards and parameters $12 on; in a batch's claim ([`super::claim_set`]),
/// the columns of the txn's input row `x`.
pub(super) struct LoadParams {
    /// The live-lots CTE, with `{cards}` and `{named_lots}` to fill; none
    /// where `lv` reads the table itself.
    pub(super) live_lots: Option<&'static str>,
    /// The txn's live lots, as a `FROM` item and a `WHERE` clause that
    /// more conditions can follow with `AND`.
    pub(super) lv: &'static str,
    pub(super) cards: &'static str,
    pub(super) create: &'static str,
    pub(super) wants_lots: &'static str,
    pub(super) level: &'static str,
    pub(super) want_txn: &'static str,
    pub(super) hist: &'static str,
    pub(super) limit: &'static str,
    pub(super) named_lots: &'static str,
    pub(super) register: &'static str,
    /// Lots are read only if expired by this instant (ms); NULL: all.
    pub(super) upto: &'static str,
}

/// A lot as the load's `lots` column has it (`rows::LotRow`).
const LOT_JSON: &str = "json_build_object('card_no', card_no, 'id', lot_id,
               'left', points_left, 'exp', floor(extract(epoch FROM expires_at) * 1000)::bigint,
               'service', service, 'row_mac', encode(row_mac, 'hex'), 'mac_key_id', mac_key_id)";

/// The live lots of a statement for one txn.
const LIVE_LOTS: &str = "lv AS (
    SELECT card_no, lot_id, points_left, expires_at, service, row_mac, mac_key_id FROM lots
     WHERE card_no = ANY ({cards}) AND (points_left > 0 OR lot_id = ANY ({named_lots}))
)";

const LOAD_PARAMS: LoadParams = LoadParams {
    live_lots: Some(LIVE_LOTS),
    lv: "lv WHERE true",
    cards: "$1::text[]",
    create: "$2::text",
    wants_lots: "$3::bool",
    level: "$4::text",
    want_txn: "$5::bool",
    hist: "$6::text",
    limit: "$7::bigint",
    named_lots: "$8::bigint[]",
    register: "$9::bool",
    upto: "$10::bigint",
};

pub(super) const FOLDED_PARAMS: LoadParams = LoadParams {
    live_lots: Some(LIVE_LOTS),
    lv: "lv WHERE true",
    cards: "ARRAY(SELECT card_no FROM locked)",
    create: "$11::text",
    wants_lots: "$12::bool",
    level: "$13::text",
    want_txn: "$14::bool",
    hist: "$15::text",
    limit: "$16::bigint",
    named_lots: "$17::bigint[]",
    register: "$18::bool",
    upto: "$19::bigint",
};

/// The live-lots CTE if `mask` needs it, and the columns of `mask`, each
/// after a comma.
pub(super) fn load_part(mask: LoadColumns, p: &LoadParams) -> (Option<String>, String) {
    let fill = |t: &str| {
        t.replace("{lot_json}", LOT_JSON)
            .replace("{cards}", p.cards)
            .replace("{create}", p.create)
            .replace("{wants_lots}", p.wants_lots)
            .replace("{level}", p.level)
            .replace("{want_txn}", p.want_txn)
            .replace("{hist}", p.hist)
            .replace("{limit}", p.limit)
            .replace("{named_lots}", p.named_lots)
            .replace("{register}", p.register)
            .replace("{upto}", p.upto)
            .replace("{lv}", p.lv)
    };
    // The live lots feed both the lots and the new lot ids.
    let needs_lv = LoadColumn::ALL
        .iter()
        .any(|&c| c.reads_live_lots() && mask.has(c));
    let lv = p.live_lots.filter(|_| needs_lv).map(fill);
    let mut cols = String::new();
    for c in LoadColumn::ALL {
        let e = if mask.has(c) {
            fill(c.sql())
        } else {
            c.absent().to_owned()
        };
        cols.push_str(&format!(",\n       {e} AS {}", c.name()));
    }
    (lv, cols)
}

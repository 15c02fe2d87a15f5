//! The ledger's SQL statements, each prepared and cached per connection.

use tokio_postgres::types::Type;

/// What a request's claim statement does besides spending its `ts` and
/// reading its terminal ([`claim_sql`]): each left out when the request has
/// no use for it, since a CTE or subquery costs executor start-up even when
/// its parameters are NULL (issue 6).
#[derive(Clone, Copy)]
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
pub(super) fn claim_sql(shape: ClaimShape) -> String {
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
        sql.push_str(
            ", claim AS (
    INSERT INTO orders (terminal_id, order_no, digest, op)
    SELECT $1::text, $5::text, $6::bytea, $7::text FROM ts
    ON CONFLICT DO NOTHING RETURNING 1
), go AS MATERIALIZED (
    SELECT 1 AS go FROM ts WHERE EXISTS (SELECT 1 FROM claim)
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
    SELECT o.terminal_id AS terminal, o.order_no, o.op, o.business_day::text AS business_day,
           o.amount::text AS amount, o.charged::text AS charged, o.tender, o.points_earned,
           o.reversed, o.refunded::text AS refunded, o.points_taken_back, o.effects, o.cards
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
    SELECT c.card_no, c.member_id, c.status, c.balance::text AS balance, c.points,
           encode(c.pin_hash, 'hex') AS pin_hash, encode(c.pin_salt, 'hex') AS pin_salt,
           c.pin_fail_count, m.level, l.discount::text AS discount,
           l.points_rate::text AS points_rate, m.name, m.phone, m.birthday::text AS birthday,
           floor(extract(epoch FROM c.opened_at) * 1000)::bigint AS opened_at,
           encode(c.row_mac, 'hex') AS row_mac, c.mac_key_id, encode(c.last_mac, 'hex') AS last_mac,
           encode(c.sealed, 'hex') AS sealed,
           c.chain_len, m.referrer, encode(m.row_mac, 'hex') AS member_mac,
           m.mac_key_id AS member_key_id, encode(l.row_mac, 'hex') AS level_mac,
           l.mac_key_id AS level_key_id
      FROM cards c JOIN members m ON m.member_id = c.member_id JOIN levels l ON l.level = m.level
     WHERE c.card_no = ANY ({which}){after}
     ORDER BY c.card_no
       FOR UPDATE OF c
)"
        ));
    }
    sql
}

/// The claim's row: what each step found, `NULL` (or empty) for the steps
/// the shape leaves out.
fn claim_columns(shape: ClaimShape) -> [String; 9] {
    let or_null =
        |on: bool, expr: &str, null: &str| if on { expr.to_owned() } else { null.to_owned() };
    [
        "(SELECT count(*) FROM ts)::bigint AS ts_ok".to_owned(),
        or_null(shape.order, "(SELECT count(*) FROM claim)::bigint", "0::bigint") + " AS claimed",
        or_null(
            shape.order,
            "(SELECT o.digest FROM orders o WHERE o.terminal_id = $1::text AND o.order_no = $5::text)",
            "NULL::bytea",
        ) + " AS prior_digest",
        or_null(
            shape.order,
            "(SELECT o.answer FROM orders o WHERE o.terminal_id = $1::text AND o.order_no = $5::text)",
            "NULL::jsonb",
        ) + " AS prior_answer",
        or_null(
            shape.operator,
            "(SELECT row_to_json(x) FROM (SELECT role, status, encode(pin_hash, 'hex') AS pin_hash,
               encode(pin_salt, 'hex') AS pin_salt, pin_fail_count,
               encode(row_mac, 'hex') AS row_mac, mac_key_id
          FROM operators WHERE store_id = $3::text AND operator_id = $4::text) x)",
            "NULL::json",
        ) + " AS operator",
        or_null(shape.orig, "(SELECT row_to_json(orig) FROM orig)", "NULL::json") + " AS orig",
        "(SELECT row_to_json(t) FROM (SELECT store_id, status, encode(pw_hash, 'hex') AS pw_hash,
               encode(pw_salt, 'hex') AS pw_salt, encode(row_mac, 'hex') AS row_mac, mac_key_id
          FROM terminals WHERE terminal_id = $1::text) t) AS terminal"
            .to_owned(),
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

pub(super) const PRIOR_SQL: &str =
    "SELECT digest, answer FROM orders WHERE terminal_id = $1::text AND order_no = $2::text";

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
pub(super) enum LoadColumn {
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
    pub(super) const ALL: [LoadColumn; 8] = [
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
    pub(super) fn name(self) -> &'static str {
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
            LoadColumn::Lots => {
                "(SELECT coalesce(json_agg(json_build_object('card_no', card_no, 'id', lot_id,
               'left', points_left, 'exp', floor(extract(epoch FROM expires_at) * 1000)::bigint)),
               '[]'::json) FROM lv)"
            }
            LoadColumn::NewExists => "EXISTS (SELECT 1 FROM cards WHERE card_no = {create})",
            LoadColumn::LotIds => {
                "ARRAY(SELECT nextval('lots_lot_id_seq') FROM generate_series(1,
             CASE WHEN {wants_lots} THEN (SELECT count(*) FROM lv) + 1 ELSE 0 END))"
            }
            LoadColumn::Level => {
                "(SELECT json_build_object('level', level, 'discount', discount::text,
               'points_rate', points_rate::text, 'row_mac', encode(row_mac, 'hex'),
               'mac_key_id', mac_key_id) FROM levels WHERE level = {level})"
            }
            LoadColumn::TxnId => "CASE WHEN {want_txn} THEN nextval('txn_id_seq') END",
            LoadColumn::History => {
                "(SELECT coalesce(json_agg(h), '[]'::json) FROM (
            SELECT posting_id, order_no, op, txn_id, card_no, amount::text AS amount,
                   discount::text AS discount, charged::text AS charged, points_delta,
                   balance::text AS balance, points,
                   floor(extract(epoch FROM posted_at) * 1000)::bigint AS posted_at, terminal_id
              FROM postings WHERE card_no = {hist}
             ORDER BY posted_at DESC, posting_id DESC LIMIT {limit}) h)"
            }
            LoadColumn::MemberId => {
                "CASE WHEN {register} THEN nextval('members_member_id_seq') END"
            }
            LoadColumn::Chains => {
                "(SELECT coalesce(json_agg(json_build_object('card_no', u.card_no, 'count', n.count,
               'last', lp.last)), '[]'::json)
          FROM unnest({cards}) AS u(card_no),
               LATERAL (SELECT count(*) AS count FROM postings p WHERE p.card_no = u.card_no) n,
               LATERAL (SELECT json_agg(q ORDER BY q.posting_id DESC) AS last FROM (
                   SELECT posting_id, txn_id, card_no, terminal_id, order_no, op,
                          balance_delta::text AS balance_delta, points_delta,
                          balance::text AS balance, points, amount::text AS amount,
                          discount::text AS discount, charged::text AS charged,
                          business_day::text AS business_day,
                          floor(extract(epoch FROM posted_at) * 1000)::bigint AS posted_at,
                          encode(row_mac, 'hex') AS row_mac, mac_key_id
                     FROM postings p WHERE p.card_no = u.card_no
                    ORDER BY posting_id DESC LIMIT 2) q) lp)"
            }
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LoadColumns(u16);

impl LoadColumns {
    /// `self`, with `c` when `on`.
    pub(super) fn with(self, c: LoadColumn, on: bool) -> LoadColumns {
        LoadColumns(if on { self.0 | 1 << c as u16 } else { self.0 })
    }

    pub(super) fn has(self, c: LoadColumn) -> bool {
        self.0 & (1 << c as u16) != 0
    }

    /// Every set, for [`statement_shapes`].
    fn every() -> impl Iterator<Item = LoadColumns> {
        (0..1u16 << LoadColumn::ALL.len()).map(LoadColumns)
    }
}

/// The types of the load statement's parameters: bound even where the
/// columns that read them are left out.
pub(super) const LOAD_TYPES: [Type; 9] = [
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
    Type::INT8_ARRAY,
    Type::BOOL,
];

/// The load statement computing the columns in `mask`.
pub(super) fn load_sql(mask: LoadColumns) -> String {
    let (lv, cols) = load_part(mask, &LOAD_PARAMS);
    let with = lv.map(|l| format!("WITH {l}\n")).unwrap_or_default();
    // The columns come with a leading comma each.
    format!("{with}SELECT {}", cols.trim_start_matches(','))
}

/// How the load's columns name their inputs: in the load statement, its own
/// parameters; folded into the claim ([`claim_sql`]), the claim's locked
/// cards and parameters $12 on.
struct LoadParams {
    cards: &'static str,
    create: &'static str,
    wants_lots: &'static str,
    level: &'static str,
    want_txn: &'static str,
    hist: &'static str,
    limit: &'static str,
    named_lots: &'static str,
    register: &'static str,
}

const LOAD_PARAMS: LoadParams = LoadParams {
    cards: "$1::text[]",
    create: "$2::text",
    wants_lots: "$3::bool",
    level: "$4::text",
    want_txn: "$5::bool",
    hist: "$6::text",
    limit: "$7::bigint",
    named_lots: "$8::bigint[]",
    register: "$9::bool",
};

const FOLDED_PARAMS: LoadParams = LoadParams {
    cards: "ARRAY(SELECT card_no FROM locked)",
    create: "$11::text",
    wants_lots: "$12::bool",
    level: "$13::text",
    want_txn: "$14::bool",
    hist: "$15::text",
    limit: "$16::bigint",
    named_lots: "$17::bigint[]",
    register: "$18::bool",
};

/// The live-lots CTE if `mask` needs it, and the columns of `mask`, each
/// after a comma.
fn load_part(mask: LoadColumns, p: &LoadParams) -> (Option<String>, String) {
    let fill = |t: &str| {
        t.replace("{cards}", p.cards)
            .replace("{create}", p.create)
            .replace("{wants_lots}", p.wants_lots)
            .replace("{level}", p.level)
            .replace("{want_txn}", p.want_txn)
            .replace("{hist}", p.hist)
            .replace("{limit}", p.limit)
            .replace("{named_lots}", p.named_lots)
            .replace("{register}", p.register)
    };
    // The live lots feed both the lots and the new lot ids.
    let needs_lv = LoadColumn::ALL
        .iter()
        .any(|&c| c.reads_live_lots() && mask.has(c));
    let lv = needs_lv.then(|| {
        fill(
            "lv AS (
    SELECT card_no, lot_id, points_left, expires_at FROM lots
     WHERE card_no = ANY ({cards}) AND (points_left > 0 OR lot_id = ANY ({named_lots}))
)",
        )
    });
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

/// The write statement, one section a kind of row (members, new cards,
/// card updates, postings, lot moves, new lots, the order, the original
/// order, an operator's PIN count), each a CTE fed by its array of the one
/// JSON document `$1`. A request's statement holds only the sections its
/// plan fills ([`write_sql`]): a debit runs 4 of the 9, and an empty CTE
/// still costs executor start-up and a scan of its array (issue 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteSection {
    Members,
    NewCards,
    Cards,
    Postings,
    LotMoves,
    NewLots,
    Order,
    Orig,
    OperatorReset,
}

impl WriteSection {
    pub(super) const ALL: [WriteSection; 9] = [
        WriteSection::Members,
        WriteSection::NewCards,
        WriteSection::Cards,
        WriteSection::Postings,
        WriteSection::LotMoves,
        WriteSection::NewLots,
        WriteSection::Order,
        WriteSection::Orig,
        WriteSection::OperatorReset,
    ];

    /// The section's CTE name.
    fn cte(self) -> &'static str {
        match self {
            WriteSection::Members => "nm",
            WriteSection::NewCards => "nc",
            WriteSection::Cards => "uc",
            WriteSection::Postings => "ps",
            WriteSection::LotMoves => "lm",
            WriteSection::NewLots => "nl",
            WriteSection::Order => "od",
            WriteSection::Orig => "og",
            WriteSection::OperatorReset => "opr",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            WriteSection::Members => "
    INSERT INTO members (member_id, name, phone, birthday, referrer, level, row_mac, mac_key_id)
    SELECT x.member_id, x.name, x.phone, x.birthday, x.referrer, x.level,
           decode(x.row_mac, 'hex'), x.mac_key_id
      FROM j, jsonb_to_recordset(j.j->'members')
           AS x(member_id bigint, name text, phone text, birthday date, referrer text,
                level text, row_mac text, mac_key_id text)",
            WriteSection::NewCards => "
    INSERT INTO cards (card_no, member_id, status, balance, points, pin_hash, pin_salt, opened_at,
           row_mac, mac_key_id, sealed, last_mac, chain_len)
    SELECT x.card_no, x.member_id, x.status, x.balance,
           x.points, decode(x.pin_hash, 'hex'), decode(x.pin_salt, 'hex'), x.at,
           decode(x.row_mac, 'hex'), x.mac_key_id, decode(x.sealed, 'hex'),
           decode(x.last_mac, 'hex'), x.chain_len
      FROM j, jsonb_to_recordset(j.j->'new_cards')
           AS x(card_no text, member_id bigint, status text, balance numeric, points bigint,
                pin_hash text, pin_salt text, at timestamptz, row_mac text, mac_key_id text,
                sealed text, last_mac text, chain_len bigint)",
            WriteSection::Cards => "
    UPDATE cards c SET balance = x.balance, points = x.points, status = x.status,
           pin_fail_count = x.pin_fail_count,
           row_mac = decode(x.row_mac, 'hex'), mac_key_id = x.mac_key_id,
           sealed = decode(x.sealed, 'hex'), last_mac = decode(x.last_mac, 'hex'),
           chain_len = x.chain_len,
           closed_at = CASE WHEN x.status = 'closed' AND c.status <> 'closed' THEN x.at
                            ELSE c.closed_at END
      FROM j, jsonb_to_recordset(j.j->'cards')
           AS x(card_no text, old_balance numeric, old_points bigint, balance numeric,
                points bigint, status text, pin_fail_count integer, at timestamptz,
                row_mac text, mac_key_id text, sealed text, last_mac text, chain_len bigint)
     WHERE c.card_no = x.card_no AND c.balance = x.old_balance AND c.points = x.old_points
       AND c.card_no = ANY (ARRAY(SELECT e->>'card_no' FROM jsonb_array_elements($1::jsonb->'cards') e))",
            WriteSection::Postings => "
    INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta,
           points_delta, balance, points, amount, discount, charged, business_day, posted_at,
           lots_created, lots_taken, lots_restored, detail, row_mac, mac_key_id)
    SELECT x.txn_id, x.card_no, x.terminal_id, x.order_no, x.op, x.balance_delta,
           x.points_delta, x.balance, x.points, x.amount, x.discount, x.charged,
           x.business_day, x.posted_at, x.lots_created, x.lots_taken, x.lots_restored, x.detail,
           decode(x.row_mac, 'hex'), x.mac_key_id
      FROM j, jsonb_to_recordset(j.j->'postings')
           AS x(txn_id bigint, card_no text, terminal_id text, order_no text, op text,
                balance_delta numeric, points_delta bigint, balance numeric, points bigint,
                amount numeric, discount numeric, charged numeric, business_day date,
                posted_at timestamptz, lots_created jsonb, lots_taken jsonb,
                lots_restored jsonb, detail jsonb, row_mac text, mac_key_id text)",
            WriteSection::LotMoves => "
    UPDATE lots l SET points_left = l.points_left + x.delta
      FROM j, jsonb_to_recordset(j.j->'lot_moves') AS x(lot_id bigint, card_no text, delta bigint)
     WHERE l.lot_id = x.lot_id AND l.card_no = x.card_no
       AND l.lot_id = ANY (ARRAY(SELECT (e->>'lot_id')::bigint
                                   FROM jsonb_array_elements($1::jsonb->'lot_moves') e))",
            WriteSection::NewLots => "
    INSERT INTO lots (lot_id, card_no, points, points_left, expires_at, txn_id, created_at)
    SELECT x.lot_id, x.card_no, x.points, x.points, x.expires_at, x.txn_id, x.at
      FROM j, jsonb_to_recordset(j.j->'new_lots')
           AS x(lot_id bigint, card_no text, points bigint, expires_at timestamptz,
                txn_id bigint, at timestamptz)",
            WriteSection::Order => "
    UPDATE orders o SET card_no = x.card_no, cards = x.cards, txn_id = x.txn_id,
           business_day = x.business_day, posted_at = x.posted_at, amount = x.amount,
           charged = x.charged, tender = x.tender, points_earned = x.points_earned,
           effects = x.effects, answer = x.answer
      FROM j, jsonb_to_recordset(j.j->'order')
           AS x(terminal_id text, order_no text, card_no text, cards text[], txn_id bigint,
                business_day date, posted_at timestamptz, amount numeric, charged numeric,
                tender text, points_earned bigint, effects jsonb, answer jsonb)
     WHERE o.terminal_id = x.terminal_id AND o.order_no = x.order_no AND o.answer IS NULL
       AND o.terminal_id = ANY (ARRAY(SELECT e->>'terminal_id'
                                        FROM jsonb_array_elements($1::jsonb->'order') e))
       AND o.order_no = ANY (ARRAY(SELECT e->>'order_no'
                                     FROM jsonb_array_elements($1::jsonb->'order') e))",
            WriteSection::Orig => "
    UPDATE orders o SET reversed = o.reversed OR x.reversed,
           refunded = o.refunded + x.refunded_add,
           points_taken_back = o.points_taken_back + x.taken_add
      FROM j, jsonb_to_recordset(j.j->'orig')
           AS x(terminal_id text, order_no text, reversed boolean, refunded_add numeric,
                taken_add bigint)
     WHERE o.terminal_id = x.terminal_id AND o.order_no = x.order_no
       AND o.terminal_id = ANY (ARRAY(SELECT e->>'terminal_id'
                                        FROM jsonb_array_elements($1::jsonb->'orig') e))
       AND o.order_no = ANY (ARRAY(SELECT e->>'order_no'
                                     FROM jsonb_array_elements($1::jsonb->'orig') e))",
            WriteSection::OperatorReset => "
    UPDATE operators p SET pin_fail_count = 0
      FROM j, jsonb_to_recordset(j.j->'operator_reset') AS x(store_id text, operator_id text)
     WHERE p.store_id = x.store_id AND p.operator_id = x.operator_id
       AND p.store_id = ANY (ARRAY(SELECT e->>'store_id'
                                     FROM jsonb_array_elements($1::jsonb->'operator_reset') e))
       AND p.operator_id = ANY (ARRAY(SELECT e->>'operator_id'
                                        FROM jsonb_array_elements($1::jsonb->'operator_reset') e))",
        }
    }

    /// Whether the statement checks the section's row count: the
    /// operator's PIN reset may find its count already 0.
    pub(super) fn counted(self) -> bool {
        self != WriteSection::OperatorReset
    }
}

/// A set of [`WriteSection`]s: which sections one write statement holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct WriteSections(u16);

impl WriteSections {
    /// `self`, with `s` when `on`.
    pub(super) fn with(self, s: WriteSection, on: bool) -> WriteSections {
        WriteSections(if on { self.0 | 1 << s as u16 } else { self.0 })
    }

    pub(super) fn has(self, s: WriteSection) -> bool {
        self.0 & (1 << s as u16) != 0
    }

    /// Every set, for [`statement_shapes`].
    fn every() -> impl Iterator<Item = WriteSections> {
        (0..1u16 << WriteSection::ALL.len()).map(WriteSections)
    }
}

/// The write statement for the sections in `mask`. It raises unless the rows each section wrote are
/// as many as `$2` says (0 for those left out), so its COMMIT can go with
/// it (`TxnConn::query_one_and_commit`).
pub(super) fn write_sql(mask: WriteSections) -> String {
    let mut sql = String::from("WITH j AS (SELECT $1::jsonb AS j)");
    let mut counts = Vec::with_capacity(WriteSection::ALL.len());
    for section in WriteSection::ALL {
        let name = section.cte();
        if !mask.has(section) {
            if section.counted() {
                counts.push("0::bigint".to_owned());
            }
            continue;
        }
        sql.push_str(&format!(",\n{name} AS ({}", section.sql()));
        // New cards reference new members: inserted after them.
        if section == WriteSection::NewCards && mask.has(WriteSection::Members) {
            let members = WriteSection::Members.cte();
            sql.push_str(&format!(
                "\n     WHERE (SELECT count(*) FROM {members}) >= 0"
            ));
        }
        sql.push_str("\n    RETURNING 1\n)");
        if section.counted() {
            counts.push(format!("(SELECT count(*) FROM {name})"));
        }
    }
    sql.push_str("\nSELECT cardswitch_expect(ARRAY[");
    sql.push_str(&counts.join(", "));
    sql.push_str("], $2::bigint[])");
    sql
}

pub(super) const REFUSE_SQL: &str = "
WITH d AS (
    DELETE FROM orders WHERE terminal_id = $1::text AND order_no = $2::text AND answer IS NULL
    RETURNING 1
), c AS (
    UPDATE cards SET pin_fail_count = $4::integer,
           status = CASE WHEN $5::bool THEN 'locked' ELSE status END,
           row_mac = $10::bytea, mac_key_id = $11::text, sealed = $12::bytea
     WHERE card_no = $3::text RETURNING 1
), o AS (
    UPDATE operators
       SET pin_fail_count = CASE WHEN $9::bool THEN 0 ELSE pin_fail_count + 1 END,
           status = CASE WHEN NOT $9::bool AND pin_fail_count + 1 >= $8::integer
                         THEN 'disabled' ELSE status END,
           row_mac = CASE WHEN NOT $9::bool AND pin_fail_count + 1 >= $8::integer
                          THEN $13::bytea ELSE row_mac END,
           mac_key_id = CASE WHEN NOT $9::bool AND pin_fail_count + 1 >= $8::integer
                             THEN $14::text ELSE mac_key_id END
     WHERE store_id = $6::text AND operator_id = $7::text RETURNING 1
)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM c) + (SELECT count(*) FROM o)";

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
    // mask with the two card-dependent columns (bits 0 and 7) set.
    let fold_masks: Vec<LoadColumns> = LoadColumns::every()
        .filter(|m| m.has(LoadColumn::Lots) && m.has(LoadColumn::Chains))
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
            out.push(StatementShape {
                name: format!("claim {m:05b} fold {:?}", fold.map(|f| f.0)),
                sql: claim_sql(shape),
                types: claim_types().to_vec(),
            });
        }
    }
    for m in LoadColumns::every() {
        out.push(StatementShape {
            name: format!("load {:08b}", m.0),
            sql: load_sql(m),
            types: LOAD_TYPES.to_vec(),
        });
    }
    for m in WriteSections::every() {
        out.push(StatementShape {
            name: format!("write {:09b}", m.0),
            sql: write_sql(m),
            types: vec![],
        });
    }
    out.push(StatementShape {
        name: "refuse".into(),
        sql: REFUSE_SQL.into(),
        types: vec![],
    });
    out.push(StatementShape {
        name: "prior".into(),
        sql: PRIOR_SQL.into(),
        types: vec![],
    });
    out
}

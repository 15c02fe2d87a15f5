//! The write statement's sections, one a kind of row, and the refusal's
//! statement.

/// The write statement, one section a kind of row (members, new cards,
/// card updates, postings, lot moves, new lots, the order, the original
/// order, an operator's PIN count), each a CTE fed by its array of the one
/// JSON document `$1`. The cards', postings', lots' and order's MACs,
/// sealed copies and digest come from the `bytea[]` `$3`, at the
/// places the document gives; a new member's and an updated order's, off
/// the debit's path, still come as hex. A request's statement holds only
/// the sections its plan fills ([`write_sql`]): a debit runs 5 of the 10,
/// and an empty CTE still costs executor start-up and a scan of its array
/// (issue 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store::ledger) enum WriteSection {
    Members,
    NewCards,
    Cards,
    Postings,
    Events,
    LotMoves,
    NewLots,
    Order,
    Orig,
    OperatorReset,
}

impl WriteSection {
    pub(in crate::store::ledger) const ALL: [WriteSection; 10] = [
        WriteSection::Members,
        WriteSection::NewCards,
        WriteSection::Cards,
        WriteSection::Postings,
        WriteSection::Events,
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
            WriteSection::Events => "ev",
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
    INSERT INTO members (member_id, name, phone, birthday, referrer, level, row_mac, mac_key_id,
           sealed)
    SELECT x.member_id, x.name, x.phone, x.birthday, x.referrer, x.level,
           decode(x.row_mac, 'hex'), x.mac_key_id, decode(x.sealed, 'hex')
      FROM j, jsonb_to_recordset(j.j->'members')
           AS x(member_id bigint, name text, phone text, birthday date, referrer text,
                level text, row_mac text, mac_key_id text, sealed text)",
            WriteSection::NewCards => "
    INSERT INTO cards (card_no, member_id, status, balance, points, pin_hash, pin_salt, opened_at,
           renewed_at, spent_day, spent_today, row_mac, mac_key_id, sealed, last_mac, chain_len,
           store_id, visits)
    SELECT x.card_no, x.member_id, x.status, x.balance,
           x.points, decode(x.pin_hash, 'hex'), decode(x.pin_salt, 'hex'), x.at,
           'epoch'::timestamptz + x.renewed_at_ms * interval '1 millisecond',
           x.spent_day, x.spent_today,
           ($3::bytea[])[x.row_mac], x.mac_key_id, ($3::bytea[])[x.sealed],
           ($3::bytea[])[x.last_mac], x.chain_len, x.store_id, x.visits
      FROM j, jsonb_to_recordset(j.j->'new_cards')
           AS x(card_no text, member_id bigint, status text, balance numeric, points bigint,
                pin_hash text, pin_salt text, at timestamptz, renewed_at_ms bigint,
                spent_day date, spent_today numeric, row_mac int, mac_key_id text, sealed int, last_mac int, chain_len bigint,
                store_id text, visits bigint)",
            WriteSection::Cards => "
    UPDATE cards c SET balance = x.balance, points = x.points, status = x.status,
           pin_fail_count = x.pin_fail_count,
           row_mac = ($3::bytea[])[x.row_mac], mac_key_id = x.mac_key_id,
           sealed = ($3::bytea[])[x.sealed], last_mac = ($3::bytea[])[x.last_mac],
           chain_len = x.chain_len,
           renewed_at = 'epoch'::timestamptz + x.renewed_at_ms * interval '1 millisecond',
           spent_day = x.spent_day, spent_today = x.spent_today, held = x.held,
           visits = x.visits,
           closed_at = CASE WHEN x.status = 'closed' AND c.status <> 'closed' THEN x.at
                            ELSE c.closed_at END
      FROM j, jsonb_to_recordset(j.j->'cards')
           AS x(card_no text, old_balance numeric, old_points bigint, balance numeric,
                points bigint, status text, pin_fail_count integer, at timestamptz,
                renewed_at_ms bigint, spent_day date, spent_today numeric, held numeric,
                visits bigint, row_mac int, mac_key_id text, sealed int, last_mac int, chain_len bigint)
     WHERE c.card_no = x.card_no AND c.balance = x.old_balance AND c.points = x.old_points
       AND c.card_no = ANY (ARRAY(SELECT e->>'card_no' FROM jsonb_array_elements($1::jsonb->'cards') e))",
            WriteSection::Postings => "
    INSERT INTO postings (txn_id, card_no, terminal_id, order_no, op, balance_delta,
           points_delta, balance, points, amount, discount, charged, business_day, posted_at,
           lots_created, lots_taken, lots_restored, detail, row_mac, mac_key_id, chain_pos,
           visits_delta)
    SELECT x.txn_id, x.card_no, x.terminal_id, x.order_no, x.op, x.balance_delta,
           x.points_delta, x.balance, x.points, x.amount, x.discount, x.charged,
           x.business_day, x.posted_at, x.lots_created, x.lots_taken, x.lots_restored, x.detail,
           ($3::bytea[])[x.row_mac], x.mac_key_id, x.chain_pos, x.visits_delta
      FROM j, jsonb_to_recordset(j.j->'postings')
           AS x(txn_id bigint, card_no text, terminal_id text, order_no text, op text,
                balance_delta numeric, points_delta bigint, balance numeric, points bigint,
                amount numeric, discount numeric, charged numeric, business_day date,
                posted_at timestamptz, lots_created jsonb, lots_taken jsonb,
                lots_restored jsonb, detail jsonb, row_mac int, mac_key_id text,
                chain_pos bigint, visits_delta bigint)",
            WriteSection::Events => "
    INSERT INTO events (created_at, card_no, op, store_id, body)
    SELECT x.created_at, x.card_no, x.op, x.store_id, x.body
      FROM j, jsonb_to_recordset(j.j->'events')
           AS x(created_at timestamptz, card_no text, op text, store_id text, body jsonb)",
            WriteSection::LotMoves => "
    UPDATE lots l SET points_left = l.points_left + x.delta, row_mac = ($3::bytea[])[x.row_mac],
           mac_key_id = x.mac_key_id
      FROM j, jsonb_to_recordset(j.j->'lot_moves')
           AS x(lot_id bigint, card_no text, delta bigint, row_mac int, mac_key_id text)
     WHERE l.lot_id = x.lot_id AND l.card_no = x.card_no
       AND l.lot_id = ANY (ARRAY(SELECT (e->>'lot_id')::bigint
                                   FROM jsonb_array_elements($1::jsonb->'lot_moves') e))",
            WriteSection::NewLots => "
    INSERT INTO lots (lot_id, card_no, points, points_left, expires_at, txn_id, created_at,
           row_mac, mac_key_id, service)
    SELECT x.lot_id, x.card_no, x.points, x.points, x.expires_at, x.txn_id, x.at,
           ($3::bytea[])[x.row_mac], x.mac_key_id, x.service
      FROM j, jsonb_to_recordset(j.j->'new_lots')
           AS x(lot_id bigint, card_no text, points bigint, expires_at timestamptz,
                txn_id bigint, at timestamptz, row_mac int, mac_key_id text, service text)",
            // The order's one write: the claim only found its number new,
            // under the order lock; a twin that got past the lock anyway
            // fails this insert on the key, and nothing of the request
            // stays. A plain insert, not `ON CONFLICT DO NOTHING`, whose
            // speculative insertion probed the key a second time (issue 14).
            WriteSection::Order => "
    INSERT INTO orders (terminal_id, order_no, digest, op, card_no, cards, txn_id, business_day,
           posted_at, amount, charged, tender, points_earned, effects, answer, row_mac,
           mac_key_id, hold_expires_at, hold_discount, hold_points_rate)
    SELECT x.terminal_id, x.order_no, ($3::bytea[])[x.digest], x.op, x.card_no, x.cards,
           x.txn_id, x.business_day, x.posted_at, x.amount, x.charged, x.tender,
           x.points_earned, x.effects, x.answer, ($3::bytea[])[x.row_mac], x.mac_key_id,
           'epoch'::timestamptz + x.hold_exp_ms * interval '1 millisecond', x.hold_discount,
           x.hold_points_rate
      FROM j, jsonb_to_recordset(j.j->'order')
           AS x(terminal_id text, order_no text, digest int, op text, card_no text,
                cards text[], txn_id bigint, business_day date, posted_at timestamptz,
                amount numeric, charged numeric, tender text, points_earned bigint,
                effects jsonb, answer jsonb, row_mac int, mac_key_id text,
                hold_exp_ms bigint, hold_discount numeric, hold_points_rate numeric)",
            WriteSection::Orig => "
    UPDATE orders o SET reversed = o.reversed OR x.reversed,
           refunded = o.refunded + x.refunded_add,
           points_taken_back = o.points_taken_back + x.taken_add,
           row_mac = decode(x.row_mac, 'hex'), mac_key_id = x.mac_key_id
      FROM j, jsonb_to_recordset(j.j->'orig')
           AS x(terminal_id text, order_no text, reversed boolean, refunded_add numeric,
                taken_add bigint, row_mac text, mac_key_id text)
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
    pub(in crate::store::ledger) fn counted(self) -> bool {
        self != WriteSection::OperatorReset
    }
}

/// A set of [`WriteSection`]s: which sections one write statement holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(in crate::store::ledger) struct WriteSections(pub(super) u16);

impl WriteSections {
    /// `self`, with `s` when `on`.
    pub(in crate::store::ledger) fn with(self, s: WriteSection, on: bool) -> WriteSections {
        WriteSections(if on { self.0 | 1 << s as u16 } else { self.0 })
    }

    pub(in crate::store::ledger) fn has(self, s: WriteSection) -> bool {
        self.0 & (1 << s as u16) != 0
    }

    /// Every set, for [`super::statement_shapes`]: a posting always comes
    /// with its event.
    pub(super) fn every() -> impl Iterator<Item = WriteSections> {
        (0..1u16 << WriteSection::ALL.len())
            .map(WriteSections)
            .filter(|m| m.has(WriteSection::Postings) == m.has(WriteSection::Events))
    }
}

/// The write statement for the sections in `mask`. It raises unless the rows each section wrote are
/// as many as `$2` says (0 for those left out), so its COMMIT can go with
/// it (`TxnConn::query_one_and_commit`).
pub(in crate::store::ledger) fn write_sql(mask: WriteSections) -> std::borrow::Cow<'static, str> {
    type Kept = std::sync::Mutex<std::collections::HashMap<WriteSections, &'static str>>;
    static KEPT: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();
    super::memo(&KEPT, mask, build_write_sql)
}

fn build_write_sql(mask: WriteSections) -> String {
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
    // Every shape names `$3`, the blobs, even one whose sections take none.
    sql.push_str("], $2::bigint[]) AND $3::bytea[] IS NOT NULL");
    sql
}

pub(in crate::store::ledger) const REFUSE_SQL: &str = "
WITH c AS (
    UPDATE cards SET pin_fail_count = $2::integer,
           status = CASE WHEN $3::bool THEN 'locked' ELSE status END,
           row_mac = $8::bytea, mac_key_id = $9::text, sealed = $10::bytea
     WHERE card_no = $1::text RETURNING 1
), o AS (
    UPDATE operators
       SET pin_fail_count = CASE WHEN $7::bool THEN 0 ELSE pin_fail_count + 1 END,
           status = CASE WHEN NOT $7::bool AND pin_fail_count + 1 >= $6::integer
                         THEN 'disabled' ELSE status END,
           row_mac = CASE WHEN NOT $7::bool AND pin_fail_count + 1 >= $6::integer
                          THEN $11::bytea ELSE row_mac END,
           mac_key_id = CASE WHEN NOT $7::bool AND pin_fail_count + 1 >= $6::integer
                             THEN $12::text ELSE mac_key_id END,
           sealed = CASE WHEN NOT $7::bool AND pin_fail_count + 1 >= $6::integer
                         THEN $13::bytea ELSE sealed END
     WHERE store_id = $4::text AND operator_id = $5::text RETURNING 1
)
SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM o)";

//! One description per protected table whose rows are MACed one by one
//! (no chain): its name, key, columns, decoding and image, written once and
//! used by `verify` (the scan), `keys rotate-row-key` (the re-MAC) and the
//! checks on use. Cards and postings (a chain per card) and the audit trail
//! (one chain) have scans of their own.
//!
//! Adding a column to such a table means changing its image in
//! `integrity`, its `COLUMNS` and `decode` here, and nothing else.

use rust_decimal::Decimal;
use tokio_postgres::Row;

use crate::crypto::row::RowImage;
use crate::integrity::{
    canonical_json, level_image, lot_image, member_image, operator_image, session_image,
    CardValues, LevelLimits, OrderValues, PostingValues, RowKeys,
};

/// A table whose rows each carry `row_mac` and `mac_key_id` over an image of
/// their values.
pub trait Protected: Sized {
    /// The table, as SQL and findings name it.
    const TABLE: &'static str;
    /// The key's columns and their SQL types, in scan and lock order.
    const KEY: &'static [(&'static str, &'static str)];
    /// The columns [`Protected::decode`] reads, in its order.
    const COLUMNS: &'static str;

    fn decode(r: &Row) -> Self;
    /// The key's values, as text (statements cast them back).
    fn key(&self) -> Vec<String>;
    /// What the row's MAC covers (`integrity`'s image of the table).
    fn image(&self) -> RowImage;
    fn row_mac(&self) -> Option<&[u8]>;
    fn mac_key_id(&self) -> Option<&str>;

    /// The row as findings and reports name it.
    fn label(&self) -> String {
        self.key().join("/")
    }

    /// Whether the row's MAC holds under `keys`.
    fn mac_ok(&self, keys: &RowKeys) -> bool {
        keys.verify(self.mac_key_id(), &self.image(), None, self.row_mac())
    }
}

fn key_list<T: Protected>() -> String {
    T::KEY
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every row in key order; `FOR UPDATE` when `lock`.
pub fn select_all<T: Protected>(lock: bool) -> String {
    let lock = if lock { " FOR UPDATE" } else { "" };
    format!(
        "SELECT {} FROM {} ORDER BY {}{lock}",
        T::COLUMNS,
        T::TABLE,
        key_list::<T>()
    )
}

/// The next `$2` rows after key `$1` (text), locked: batches of a table with
/// a one-column key.
pub fn select_batch<T: Protected>() -> String {
    let (col, ty) = T::KEY[0];
    format!(
        "SELECT {} FROM {} WHERE {col} > $1::text::{ty} ORDER BY {col} LIMIT $2 FOR UPDATE",
        T::COLUMNS,
        T::TABLE,
    )
}

/// Sets `row_mac` and `mac_key_id` of the rows named by the key arrays
/// (`$1`…, text), the MACs after them and the key id last.
pub fn remac_sql<T: Protected>() -> String {
    let n = T::KEY.len();
    let arrays: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let join: Vec<String> = T::KEY
        .iter()
        .enumerate()
        .map(|(i, (c, ty))| format!("t.{c} = x.k{i}::{ty}"))
        .collect();
    format!(
        "UPDATE {} t SET row_mac = x.mac, mac_key_id = ${}
           FROM unnest({}, ${}::bytea[]) AS x({}, mac) WHERE {}",
        T::TABLE,
        n + 2,
        arrays.join(", "),
        n + 1,
        names.join(", "),
        join.join(" AND ")
    )
}

/// A card's MAC-covered columns (of `cards c`), then `row_mac` and
/// `mac_key_id`: what [`card_values`] decodes, for every reader that checks
/// or re-MACs a card.
pub const CARD_COLUMNS: &str = "c.card_no, c.member_id, c.status, c.balance, c.points, \
     c.pin_hash, c.pin_salt, c.pin_fail_count, c.chain_len, c.last_mac, c.row_mac, c.mac_key_id, \
     floor(extract(epoch FROM c.renewed_at) * 1000)::bigint, c.spent_day::text, c.spent_today, \
     c.held, c.visits";

/// When the membership of card `c` was renewed (protocol.md §6.2): as
/// stored, or, on a card not written since migration 0019, its last
/// register, import, replace or top-up (its opening when none is left).
/// (A macro, so that `concat!` can put it into constant SQL.)
macro_rules! card_renewed_at {
    () => {
        "coalesce(c.renewed_at,
               (SELECT max(p.posted_at) FROM postings p WHERE p.card_no = c.card_no
                   AND p.op IN ('register', 'import', 'replace', 'topup')),
               c.opened_at)"
    };
}
pub(crate) use card_renewed_at;

/// Columns 0–9 and 12–16 of a row read with [`CARD_COLUMNS`] first.
pub fn card_values(r: &Row) -> CardValues {
    CardValues {
        card_no: r.get(0),
        member_id: r.get(1),
        status: r.get(2),
        balance: r.get(3),
        points: r.get(4),
        pin_hash: r.get(5),
        pin_salt: r.get(6),
        pin_fail_count: i64::from(r.get::<_, i32>(7)),
        chain_len: r.get(8),
        last_mac: r.get(9),
        renewed_at_ms: r.get(12),
        spent: r
            .get::<_, Option<String>>(13)
            .zip(r.get::<_, Option<Decimal>>(14)),
        held: r.get(15),
        visits: r.get(16),
    }
}

/// A posting's MAC-covered columns, then `row_mac` (14), `mac_key_id` (15),
/// `posting_id` (16), `chain_pos` (17) and `visits_delta` (18, both also
/// MAC-covered): what [`posting_values`] decodes.
pub const POSTING_COLUMNS: &str = "card_no, txn_id, terminal_id, order_no, op, balance_delta, \
     points_delta, balance, points, amount, discount, charged, business_day::text, \
     floor(extract(epoch FROM posted_at) * 1000)::bigint, row_mac, mac_key_id, posting_id, chain_pos, \
     visits_delta";

/// Columns 0–13, 17 and 18 of a row read with [`POSTING_COLUMNS`].
pub fn posting_values(r: &Row) -> PostingValues {
    PostingValues {
        card_no: r.get(0),
        txn_id: r.get(1),
        terminal_id: r.get(2),
        order_no: r.get(3),
        op: r.get(4),
        balance_delta: r.get(5),
        points_delta: r.get(6),
        balance: r.get(7),
        points: r.get(8),
        amount: r.get(9),
        discount: r.get(10),
        charged: r.get(11),
        business_day: r.get(12),
        posted_at_ms: r.get(13),
        chain_pos: r.get(17),
        visits_delta: r.get(18),
    }
}

/// An `orders` row (issue 12): MACed when the posting commits, re-MACed
/// by each reverse or refund of it.
#[derive(Clone, Debug)]
pub struct OrderRow {
    pub values: OrderValues,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
}

impl Protected for OrderRow {
    const TABLE: &'static str = "orders";
    const KEY: &'static [(&'static str, &'static str)] =
        &[("terminal_id", "text"), ("order_no", "text")];
    const COLUMNS: &'static str = "terminal_id, order_no, digest, op, card_no, cards, txn_id,
        business_day::text, floor(extract(epoch FROM posted_at) * 1000)::bigint, amount, charged,
        tender, points_earned, effects, answer, reversed, refunded, points_taken_back, row_mac,
        mac_key_id, floor(extract(epoch FROM hold_expires_at) * 1000)::bigint, hold_discount,
        hold_points_rate";

    fn decode(r: &Row) -> Self {
        OrderRow {
            values: OrderValues {
                terminal_id: r.get(0),
                order_no: r.get(1),
                digest: r.get(2),
                op: r.get(3),
                card_no: r.get(4),
                cards: r.get(5),
                txn_id: r.get(6),
                business_day: r.get(7),
                posted_at_ms: r.get(8),
                amount: r.get(9),
                charged: r.get(10),
                tender: r.get(11),
                points_earned: r.get(12),
                effects: r
                    .get::<_, Option<serde_json::Value>>(13)
                    .as_ref()
                    .map(canonical_json),
                answer: r
                    .get::<_, Option<serde_json::Value>>(14)
                    .as_ref()
                    .map(canonical_json),
                reversed: r.get(15),
                refunded: r.get(16),
                points_taken_back: r.get(17),
                hold: match (r.get(20), r.get(21), r.get(22)) {
                    (Some(at), Some(d), Some(p)) => Some((at, d, p)),
                    _ => None,
                },
            },
            row_mac: r.get(18),
            mac_key_id: r.get(19),
        }
    }

    fn key(&self) -> Vec<String> {
        vec![
            self.values.terminal_id.clone(),
            self.values.order_no.clone(),
        ]
    }

    fn image(&self) -> RowImage {
        self.values.image()
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

/// A points lot (issue 12).
#[derive(Clone, Debug)]
pub struct PointsLotRow {
    pub lot_id: i64,
    pub card_no: String,
    pub points_left: i64,
    pub expires_at_ms: Option<i64>,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
    /// A lot of visits' service (migration 0022); `None`: a lot of points.
    pub service: Option<String>,
}

impl Protected for PointsLotRow {
    const TABLE: &'static str = "lots";
    const KEY: &'static [(&'static str, &'static str)] = &[("lot_id", "bigint")];
    const COLUMNS: &'static str = "lot_id, card_no, points_left,
        floor(extract(epoch FROM expires_at) * 1000)::bigint, row_mac, mac_key_id, service";

    fn decode(r: &Row) -> Self {
        PointsLotRow {
            lot_id: r.get(0),
            card_no: r.get(1),
            points_left: r.get(2),
            expires_at_ms: r.get(3),
            row_mac: r.get(4),
            mac_key_id: r.get(5),
            service: r.get(6),
        }
    }

    fn key(&self) -> Vec<String> {
        vec![self.lot_id.to_string()]
    }

    fn image(&self) -> RowImage {
        lot_image(
            self.lot_id,
            &self.card_no,
            self.points_left,
            self.expires_at_ms,
            self.service.as_deref(),
        )
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

/// The next `$3` orders after (`$1`, `$2`) in key order, locked.
pub fn select_order_batch() -> String {
    format!(
        "SELECT {} FROM orders WHERE (terminal_id, order_no) > ($1::text, $2::text)
          ORDER BY terminal_id, order_no LIMIT $3 FOR UPDATE",
        OrderRow::COLUMNS
    )
}

#[derive(Clone, Debug)]
pub struct MemberRow {
    pub member_id: i64,
    pub name: String,
    pub phone: String,
    pub birthday: Option<String>,
    pub referrer: Option<String>,
    pub level: String,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
}

impl Protected for MemberRow {
    const TABLE: &'static str = "members";
    const KEY: &'static [(&'static str, &'static str)] = &[("member_id", "bigint")];
    const COLUMNS: &'static str =
        "member_id, name, phone, birthday::text, referrer, level, row_mac, mac_key_id";

    fn decode(r: &Row) -> Self {
        MemberRow {
            member_id: r.get(0),
            name: r.get(1),
            phone: r.get(2),
            birthday: r.get(3),
            referrer: r.get(4),
            level: r.get(5),
            row_mac: r.get(6),
            mac_key_id: r.get(7),
        }
    }

    fn key(&self) -> Vec<String> {
        vec![self.member_id.to_string()]
    }

    fn image(&self) -> RowImage {
        member_image(
            self.member_id,
            &self.name,
            &self.phone,
            self.birthday.as_deref(),
            self.referrer.as_deref(),
            &self.level,
        )
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

#[derive(Clone, Debug)]
pub struct OperatorRow {
    pub store_id: String,
    pub operator_id: String,
    pub role: String,
    pub status: String,
    pub pin_hash: Option<Vec<u8>>,
    pub pin_salt: Option<Vec<u8>>,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
}

impl Protected for OperatorRow {
    const TABLE: &'static str = "operators";
    const KEY: &'static [(&'static str, &'static str)] =
        &[("store_id", "text"), ("operator_id", "text")];
    const COLUMNS: &'static str =
        "store_id, operator_id, role, status, pin_hash, pin_salt, row_mac, mac_key_id";

    fn decode(r: &Row) -> Self {
        OperatorRow {
            store_id: r.get(0),
            operator_id: r.get(1),
            role: r.get(2),
            status: r.get(3),
            pin_hash: r.get(4),
            pin_salt: r.get(5),
            row_mac: r.get(6),
            mac_key_id: r.get(7),
        }
    }

    fn key(&self) -> Vec<String> {
        vec![self.store_id.clone(), self.operator_id.clone()]
    }

    fn image(&self) -> RowImage {
        operator_image(
            &self.store_id,
            &self.operator_id,
            &self.role,
            &self.status,
            self.pin_hash.as_deref(),
            self.pin_salt.as_deref(),
        )
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

#[derive(Clone, Debug)]
pub struct LevelRow {
    pub level: String,
    pub discount: Decimal,
    pub points_rate: Decimal,
    pub limits: LevelLimits,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
}

impl Protected for LevelRow {
    const TABLE: &'static str = "levels";
    const KEY: &'static [(&'static str, &'static str)] = &[("level", "text")];
    const COLUMNS: &'static str =
        "level, discount, points_rate, row_mac, mac_key_id, max_balance, daily_debit_limit";

    fn decode(r: &Row) -> Self {
        LevelRow {
            level: r.get(0),
            discount: r.get(1),
            points_rate: r.get(2),
            limits: LevelLimits {
                max_balance: r.get(5),
                daily_debit_limit: r.get(6),
            },
            row_mac: r.get(3),
            mac_key_id: r.get(4),
        }
    }

    fn key(&self) -> Vec<String> {
        vec![self.level.clone()]
    }

    fn image(&self) -> RowImage {
        level_image(&self.level, self.discount, self.points_rate, self.limits)
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

#[derive(Clone, Debug)]
pub struct SessionRow {
    pub sid: String,
    pub terminal_id: String,
    pub key_id: String,
    pub not_after_ms: i64,
    pub revoked: bool,
    pub row_mac: Option<Vec<u8>>,
    pub mac_key_id: Option<String>,
}

impl Protected for SessionRow {
    const TABLE: &'static str = "sessions";
    const KEY: &'static [(&'static str, &'static str)] = &[("sid", "text")];
    const COLUMNS: &'static str =
        "sid, terminal_id, key_id, not_after, revoked_at IS NOT NULL, row_mac, mac_key_id";

    fn decode(r: &Row) -> Self {
        SessionRow {
            sid: r.get(0),
            terminal_id: r.get(1),
            key_id: r.get(2),
            not_after_ms: r.get(3),
            revoked: r.get(4),
            row_mac: r.get(5),
            mac_key_id: r.get(6),
        }
    }

    fn key(&self) -> Vec<String> {
        vec![self.sid.clone()]
    }

    fn image(&self) -> RowImage {
        session_image(
            &self.sid,
            &self.terminal_id,
            &self.key_id,
            self.not_after_ms,
            self.revoked,
        )
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

impl Protected for crate::store::terminals::TerminalRow {
    const TABLE: &'static str = "terminals";
    const KEY: &'static [(&'static str, &'static str)] = &[("terminal_id", "text")];
    const COLUMNS: &'static str = crate::store::terminals::COLS;

    fn decode(r: &Row) -> Self {
        crate::store::terminals::row(r)
    }

    fn key(&self) -> Vec<String> {
        vec![self.terminal_id.clone()]
    }

    fn image(&self) -> RowImage {
        crate::store::terminals::TerminalRow::image(self)
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

impl Protected for crate::store::keys::DayKeyRow {
    const TABLE: &'static str = "day_keys";
    const KEY: &'static [(&'static str, &'static str)] = &[("key_id", "text")];
    const COLUMNS: &'static str = crate::store::keys::DAY_COLS;

    fn decode(r: &Row) -> Self {
        crate::store::keys::day_row(r)
    }

    fn key(&self) -> Vec<String> {
        vec![self.key_id.clone()]
    }

    fn image(&self) -> RowImage {
        self.image_with(&self.status)
    }

    fn row_mac(&self) -> Option<&[u8]> {
        self.row_mac.as_deref()
    }

    fn mac_key_id(&self) -> Option<&str> {
        self.mac_key_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_key_column() {
        assert_eq!(
            remac_sql::<OperatorRow>(),
            "UPDATE operators t SET row_mac = x.mac, mac_key_id = $4
           FROM unnest($1::text[], $2::text[], $3::bytea[]) AS x(k0, k1, mac) WHERE t.store_id = x.k0::text AND t.operator_id = x.k1::text"
        );
        assert_eq!(
            select_batch::<MemberRow>(),
            "SELECT member_id, name, phone, birthday::text, referrer, level, row_mac, mac_key_id \
             FROM members WHERE member_id > $1::text::bigint ORDER BY member_id LIMIT $2 FOR UPDATE"
        );
        assert!(select_all::<LevelRow>(true).ends_with("ORDER BY level FOR UPDATE"));
    }
}

//! Tamper evidence (issue 5): the row keys, and the canonical image of every
//! protected row. Writers (the ledger, terminals, the audit trail) and
//! readers (the check on use, `cardswitch verify`) build a row's
//! [`RowImage`] with the same function here, so what is MACed is what is
//! checked.
//!
//! Keys: the row key (HMAC-SHA256, id stored beside every MAC in
//! `mac_key_id`) and the data key (AES-256-GCM of the sealed copies), both
//! random and sealed under the master key in `sealed_secrets` as
//! `row_key:<id>` and `data_key`, so `keys rotate-master` re-seals them with
//! every other secret.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::crypto::mac::MacKey;
use crate::crypto::row::{open_row, row_mac, seal_row, verify_row_mac, RowImage, Value};
use crate::crypto::seal::MasterKey;
use crate::crypto::{CryptoError, Secret32};

/// Prefix of the sealed-secret name of a row key.
pub const ROW_KEY_PREFIX: &str = "row_key:";
/// Sealed-secret name of the data key.
pub const DATA_KEY: &str = "data_key";

/// The row keys by id (the newest signs), and the data key. A daemon learns
/// a key added by `keys rotate-row-key` while it runs ([`RowKeys::add`]),
/// so the set sits behind a lock.
pub struct RowKeys {
    inner: std::sync::RwLock<Macs>,
    data: MasterKey,
}

struct Macs {
    current: String,
    current_key: MacKey,
    all: BTreeMap<String, MacKey>,
}

impl std::fmt::Debug for RowKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.inner.read().expect("row keys lock");
        write!(f, "RowKeys(current {}, {} keys)", m.current, m.all.len())
    }
}

/// The id of a row key: names it without revealing it.
pub fn row_key_id(key: &Secret32) -> String {
    MasterKey::id_for(key)
}

impl RowKeys {
    /// `macs` in order of creation: the last one signs new rows.
    ///
    /// # Panics
    /// When `macs` is empty.
    pub fn new(macs: Vec<Secret32>, data: Secret32) -> RowKeys {
        let mut all = BTreeMap::new();
        let mut current = String::new();
        for k in &macs {
            current = row_key_id(k);
            all.insert(current.clone(), MacKey::new(k.expose()));
        }
        let current_key = MacKey::new(macs.last().expect("at least one row key").expose());
        RowKeys {
            inner: std::sync::RwLock::new(Macs {
                current,
                current_key,
                all,
            }),
            data: MasterKey::new(data),
        }
    }

    /// Fresh random keys (tests, and `keys init`).
    pub fn generate() -> RowKeys {
        RowKeys::new(vec![Secret32::random()], Secret32::random())
    }

    /// A key added after these were loaded; it signs from now on.
    pub fn add(&self, key: Secret32) {
        let mut m = self.inner.write().expect("row keys lock");
        let id = row_key_id(&key);
        let ready = MacKey::new(key.expose());
        m.all.insert(id.clone(), ready.clone());
        m.current = id;
        m.current_key = ready;
    }

    /// Whether `id` names a known row key.
    pub fn knows(&self, id: &str) -> bool {
        self.inner
            .read()
            .expect("row keys lock")
            .all
            .contains_key(id)
    }

    pub fn current_id(&self) -> String {
        self.inner.read().expect("row keys lock").current.clone()
    }

    /// The MAC of `image` (chained to `prev`) under the current row key,
    /// and that key's id, read together.
    pub fn mac_with_id(&self, image: &RowImage, prev: Option<&[u8]>) -> (Vec<u8>, String) {
        let m = self.inner.read().expect("row keys lock");
        (
            row_mac(&m.current_key, image, prev).to_vec(),
            m.current.clone(),
        )
    }

    /// The MAC of `image` (chained to `prev`) under the current row key.
    pub fn mac(&self, image: &RowImage, prev: Option<&[u8]>) -> Vec<u8> {
        self.mac_with_id(image, prev).0
    }

    /// Whether `mac` is the MAC of `image` under the row key `key_id`. A
    /// missing MAC or an unknown key id is a mismatch.
    pub fn verify(
        &self,
        key_id: Option<&str>,
        image: &RowImage,
        prev: Option<&[u8]>,
        mac: Option<&[u8]>,
    ) -> bool {
        let m = self.inner.read().expect("row keys lock");
        match (key_id.and_then(|k| m.all.get(k)), mac) {
            (Some(k), Some(m)) => verify_row_mac(k, image, prev, m),
            _ => false,
        }
    }

    /// The sealed copy of `image`.
    pub fn seal(&self, image: &RowImage) -> Vec<u8> {
        seal_row(&self.data, image)
    }

    pub fn open(&self, table: &str, key: &str, sealed: &[u8]) -> Result<RowImage, CryptoError> {
        open_row(&self.data, table, key, sealed)
    }
}

fn bytes(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| Value::Bytes(b.to_vec()))
}

fn text(t: Option<&str>) -> Value {
    t.map_or(Value::Null, |t| Value::Text(t.to_owned()))
}

/// Milliseconds since the epoch: timestamps are MACed at the precision the
/// ledger writes them.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A card's values as its MAC and sealed copy cover them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardValues {
    pub card_no: String,
    pub member_id: i64,
    pub status: String,
    pub balance: Decimal,
    pub points: i64,
    pub pin_hash: Option<Vec<u8>>,
    pub pin_salt: Option<Vec<u8>>,
    pub pin_fail_count: i64,
    pub chain_len: i64,
    pub last_mac: Option<Vec<u8>>,
    /// When the membership was last renewed (register or top-up), Unix ms;
    /// `None` on a card not written since migration 0019, whose MAC then
    /// covers what it did before.
    pub renewed_at_ms: Option<i64>,
    /// What the card's last business day with spending (`YYYY-MM-DD`) took
    /// from it; `None` on a card not written since migration 0020.
    pub spent: Option<(String, Decimal)>,
    /// What the card's active holds keep; `None` on a card not written
    /// since migration 0021 (it had none).
    pub held: Option<Decimal>,
    /// Visits its lots hold; `None` on a card that never had any
    /// (migration 0022).
    pub visits: Option<i64>,
}

impl CardValues {
    /// Fields added by later migrations are covered only once a row has
    /// them, so a row written before keeps its MAC.
    pub fn image(&self) -> RowImage {
        let mut image = self.image_before_0019();
        if let Some(ms) = self.renewed_at_ms {
            image = image.with("renewed_at", Value::Int(ms));
        }
        if let Some((day, amount)) = &self.spent {
            image = image
                .with("spent_day", Value::Text(day.clone()))
                .with("spent_today", Value::Money(*amount));
        }
        if let Some(held) = self.held {
            image = image.with("held", Value::Money(held));
        }
        if let Some(visits) = self.visits {
            image = image.with("visits", Value::Int(visits));
        }
        image
    }

    fn image_before_0019(&self) -> RowImage {
        RowImage::new("cards", &self.card_no)
            .with("member_id", Value::Int(self.member_id))
            .with("status", Value::Text(self.status.clone()))
            .with("balance", Value::Money(self.balance))
            .with("points", Value::Int(self.points))
            .with("pin_hash", bytes(self.pin_hash.as_deref()))
            .with("pin_salt", bytes(self.pin_salt.as_deref()))
            .with("pin_fail_count", Value::Int(self.pin_fail_count))
            .with("chain_len", Value::Int(self.chain_len))
            .with("last_mac", bytes(self.last_mac.as_deref()))
    }

    /// The values back from a sealed copy's image.
    pub fn from_image(img: &RowImage) -> Option<CardValues> {
        let int = |n: &str| match img.get(n) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let by = |n: &str| match img.get(n) {
            Some(Value::Bytes(b)) => Some(Some(b.clone())),
            Some(Value::Null) => Some(None),
            _ => None,
        };
        Some(CardValues {
            card_no: img.key.clone(),
            member_id: int("member_id")?,
            status: match img.get("status") {
                Some(Value::Text(s)) => s.clone(),
                _ => return None,
            },
            balance: match img.get("balance") {
                Some(Value::Money(d)) => *d,
                _ => return None,
            },
            points: int("points")?,
            pin_hash: by("pin_hash")?,
            pin_salt: by("pin_salt")?,
            pin_fail_count: int("pin_fail_count")?,
            chain_len: int("chain_len")?,
            last_mac: by("last_mac")?,
            renewed_at_ms: int("renewed_at"),
            spent: match (img.get("spent_day"), img.get("spent_today")) {
                (Some(Value::Text(d)), Some(Value::Money(a))) => Some((d.clone(), *a)),
                _ => None,
            },
            held: match img.get("held") {
                Some(Value::Money(h)) => Some(*h),
                _ => None,
            },
            visits: int("visits"),
        })
    }
}

/// A posting's values as its chained MAC covers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingValues {
    pub card_no: String,
    pub txn_id: i64,
    pub terminal_id: String,
    pub order_no: Option<String>,
    pub op: String,
    pub balance_delta: Decimal,
    pub points_delta: i64,
    pub balance: Decimal,
    pub points: i64,
    pub amount: Decimal,
    pub discount: Decimal,
    pub charged: Decimal,
    pub business_day: String,
    pub posted_at_ms: i64,
    /// Where the posting sits in its card's chain, 1 for the first (issue
    /// 14): the card's `chain_len` names it, so a check reads the chain's
    /// last two postings instead of counting them all. `None` for postings
    /// written before migration 0016, whose image goes without it.
    pub chain_pos: Option<i64>,
    /// Visits the posting added (or took, negative); `None` on a posting
    /// that moved none (migration 0022), whose image goes without it.
    pub visits_delta: Option<i64>,
}

impl PostingValues {
    /// Keyed by card and txn: a posting copied onto another card or into
    /// another transaction does not verify. The chain position, when the
    /// posting has one, is covered too: it cannot be stripped back to the
    /// older image.
    pub fn image(&self) -> RowImage {
        let image = RowImage::new("postings", &format!("{}/{}", self.card_no, self.txn_id))
            .with("terminal_id", Value::Text(self.terminal_id.clone()))
            .with("order_no", text(self.order_no.as_deref()))
            .with("op", Value::Text(self.op.clone()))
            .with("balance_delta", Value::Money(self.balance_delta))
            .with("points_delta", Value::Int(self.points_delta))
            .with("balance", Value::Money(self.balance))
            .with("points", Value::Int(self.points))
            .with("amount", Value::Money(self.amount))
            .with("discount", Value::Money(self.discount))
            .with("charged", Value::Money(self.charged))
            .with("business_day", Value::Text(self.business_day.clone()))
            .with("posted_at", Value::Int(self.posted_at_ms));
        let image = match self.chain_pos {
            Some(pos) => image.with("chain_pos", Value::Int(pos)),
            None => image,
        };
        match self.visits_delta {
            Some(v) => image.with("visits_delta", Value::Int(v)),
            None => image,
        }
    }
}

/// An `orders` row's values (issue 12): what a replay answers again and
/// what a reverse or refund reads — the request's digest, the posting's
/// figures and effects, the answer as first sent — and the counters later
/// reverses and refunds move (each of those re-MACs the row).
#[derive(Clone, Debug, PartialEq)]
pub struct OrderValues {
    pub terminal_id: String,
    pub order_no: String,
    pub digest: Vec<u8>,
    pub op: String,
    pub card_no: Option<String>,
    pub cards: Vec<String>,
    pub txn_id: Option<i64>,
    pub business_day: Option<String>,
    pub posted_at_ms: Option<i64>,
    pub amount: Decimal,
    pub charged: Decimal,
    pub tender: String,
    pub points_earned: i64,
    /// The effects and the answer as [`canonical_json`] writes them (text,
    /// so building the image copies no JSON tree).
    pub effects: Option<String>,
    pub answer: Option<String>,
    pub reversed: bool,
    pub refunded: Decimal,
    pub points_taken_back: i64,
    /// A hold's terms (migration 0021): when it lapses (Unix ms), and its
    /// discount and points rates; `None` for any other order.
    pub hold: Option<(i64, Decimal, Decimal)>,
}

impl OrderValues {
    /// Keyed by terminal and order number: an answer copied onto another
    /// order does not verify.
    pub fn image(&self) -> RowImage {
        let json = |v: &Option<String>| text(v.as_deref());
        let int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
        let image = RowImage::new("orders", &format!("{}/{}", self.terminal_id, self.order_no))
            .with("digest", Value::Bytes(self.digest.clone()))
            .with("op", Value::Text(self.op.clone()))
            .with("card_no", text(self.card_no.as_deref()))
            .with("cards", Value::Text(self.cards.join("\n")))
            .with("txn_id", int(self.txn_id))
            .with("business_day", text(self.business_day.as_deref()))
            .with("posted_at", int(self.posted_at_ms))
            .with("amount", Value::Money(self.amount))
            .with("charged", Value::Money(self.charged))
            .with("tender", Value::Text(self.tender.clone()))
            .with("points_earned", Value::Int(self.points_earned))
            .with("effects", json(&self.effects))
            .with("answer", json(&self.answer))
            .with("reversed", Value::Bool(self.reversed))
            .with("refunded", Value::Money(self.refunded))
            .with("points_taken_back", Value::Int(self.points_taken_back));
        match self.hold {
            Some((expires_at_ms, discount, points_rate)) => image
                .with("hold_expires_at", Value::Int(expires_at_ms))
                .with("hold_discount", Value::Money(discount))
                .with("hold_points_rate", Value::Money(points_rate)),
            None => image,
        }
    }
}

/// A points lot's values (issue 12): its card, what it still holds and
/// until when (not its original points, creating txn or time, which decide
/// nothing once it exists).
///
/// A lot of visits (migration 0022) also covers its service, so visits
/// cannot be moved from one service to another; a points lot's image is as
/// before.
pub fn lot_image(
    lot_id: i64,
    card_no: &str,
    points_left: i64,
    expires_at_ms: Option<i64>,
    service: Option<&str>,
) -> RowImage {
    let image = RowImage::new("lots", &lot_id.to_string())
        .with("card_no", Value::Text(card_no.to_owned()))
        .with("points_left", Value::Int(points_left))
        .with("expires_at", expires_at_ms.map_or(Value::Null, Value::Int));
    match service {
        Some(s) => image.with("service", Value::Text(s.to_owned())),
        None => image,
    }
}

/// A member's values.
pub fn member_image(
    member_id: i64,
    name: &str,
    phone: &str,
    birthday: Option<&str>,
    referrer: Option<&str>,
    level: &str,
) -> RowImage {
    RowImage::new("members", &member_id.to_string())
        .with("name", Value::Text(name.to_owned()))
        .with("phone", Value::Text(phone.to_owned()))
        .with("birthday", text(birthday))
        .with("referrer", text(referrer))
        .with("level", Value::Text(level.to_owned()))
}

/// A terminal's values (not its failed-login counter, a throttle).
pub fn terminal_image(
    terminal_id: &str,
    store_id: &str,
    kind: &str,
    status: &str,
    pw_hash: Option<&[u8]>,
    pw_salt: Option<&[u8]>,
) -> RowImage {
    let img = RowImage::new("terminals", terminal_id);
    // A `pos` terminal's image is what it was before terminals had kinds,
    // so their MACs stay valid; any other kind is covered.
    let img = if kind == "pos" {
        img
    } else {
        img.with("kind", Value::Text(kind.to_owned()))
    };
    img.with("store_id", Value::Text(store_id.to_owned()))
        .with("status", Value::Text(status.to_owned()))
        .with("pw_hash", bytes(pw_hash))
        .with("pw_salt", bytes(pw_salt))
}

/// An operator's values (not its wrong-PIN count, a throttle).
pub fn operator_image(
    store_id: &str,
    operator_id: &str,
    role: &str,
    status: &str,
    pin_hash: Option<&[u8]>,
    pin_salt: Option<&[u8]>,
) -> RowImage {
    RowImage::new("operators", &format!("{store_id}/{operator_id}"))
        .with("role", Value::Text(role.to_owned()))
        .with("status", Value::Text(status.to_owned()))
        .with("pin_hash", bytes(pin_hash))
        .with("pin_salt", bytes(pin_salt))
}

/// A day key's values: what decides whether and where it may be used. Not
/// its sealed private half and `K_day` (nor `master_key_id`): those are
/// AES-GCM blobs bound to the key id, which fail to open if altered or moved,
/// and `keys rotate-master` re-seals them without touching this MAC.
#[allow(clippy::too_many_arguments)]
pub fn day_key_image(
    key_id: &str,
    terminal_id: &str,
    business_day: &str,
    not_before: i64,
    not_after: i64,
    public_der: &[u8],
    signer_id: &str,
    day_sig: &[u8],
    status: &str,
) -> RowImage {
    RowImage::new("day_keys", key_id)
        .with("terminal_id", Value::Text(terminal_id.to_owned()))
        .with("business_day", Value::Text(business_day.to_owned()))
        .with("not_before", Value::Int(not_before))
        .with("not_after", Value::Int(not_after))
        .with("public_der", Value::Bytes(public_der.to_vec()))
        .with("signer_id", Value::Text(signer_id.to_owned()))
        .with("day_sig", Value::Bytes(day_sig.to_vec()))
        .with("status", Value::Text(status.to_owned()))
}

/// A session's values (whether it is revoked, not when: `revoked_at` is the
/// database's clock).
pub fn session_image(
    sid: &str,
    terminal_id: &str,
    key_id: &str,
    not_after: i64,
    revoked: bool,
) -> RowImage {
    RowImage::new("sessions", sid)
        .with("terminal_id", Value::Text(terminal_id.to_owned()))
        .with("key_id", Value::Text(key_id.to_owned()))
        .with("not_after", Value::Int(not_after))
        .with("revoked", Value::Bool(revoked))
}

/// A level's values.
pub fn level_image(
    level: &str,
    discount: Decimal,
    points_rate: Decimal,
    limits: LevelLimits,
) -> RowImage {
    let mut img = RowImage::new("levels", level)
        .with("discount", Value::Money(discount))
        .with("points_rate", Value::Money(points_rate));
    // Only when set, so a level from before migration 0020 keeps its MAC.
    if let Some(cap) = limits.max_balance {
        img = img.with("max_balance", Value::Money(cap));
    }
    if let Some(daily) = limits.daily_debit_limit {
        img = img.with("daily_debit_limit", Value::Money(daily));
    }
    img
}

/// A level's limits as its row stores them (protocol.md §6.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelLimits {
    pub max_balance: Option<Decimal>,
    pub daily_debit_limit: Option<Decimal>,
}

/// An audit row's values; `detail` as [`canonical_json`] writes it.
pub fn audit_image(
    audit_id: i64,
    at_ms: i64,
    kind: &str,
    terminal_id: Option<&str>,
    actor: Option<&str>,
    source: Option<&str>,
    detail: &serde_json::Value,
) -> RowImage {
    RowImage::new("audit", &audit_id.to_string())
        .with("at", Value::Int(at_ms))
        .with("kind", Value::Text(kind.to_owned()))
        .with("terminal_id", text(terminal_id))
        .with("actor", text(actor))
        .with("source", text(source))
        .with("detail", Value::Text(canonical_json(detail)))
}

/// JSON with object keys sorted (serde_json's map is ordered by key), so a
/// value read back from `jsonb` encodes as it was written.
pub fn canonical_json(v: &serde_json::Value) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_tills_terminal_image_is_what_it_was_before_kinds() {
        let till = terminal_image("T1", "S1", "pos", "active", None, None);
        assert!(till.get("kind").is_none(), "existing MACs stay valid");
        let office = terminal_image("T1", "S1", "office", "active", None, None);
        assert_eq!(office.get("kind"), Some(&Value::Text("office".into())));
        assert_ne!(till, office);
    }

    use super::*;

    #[test]
    fn a_placeless_postings_image_is_what_it_was_before_places() {
        let v = PostingValues {
            card_no: "C1".into(),
            txn_id: 7,
            terminal_id: "T1".into(),
            order_no: Some("O1".into()),
            op: "debit".into(),
            balance_delta: Decimal::new(-500, 2),
            points_delta: 5,
            balance: Decimal::new(9500, 2),
            points: 5,
            amount: Decimal::new(500, 2),
            discount: Decimal::ZERO,
            charged: Decimal::new(500, 2),
            business_day: "2026-12-02".into(),
            posted_at_ms: 1,
            chain_pos: None,
            visits_delta: None,
        };
        let old = v.image();
        assert!(old.get("chain_pos").is_none(), "existing MACs stay valid");
        let placed = PostingValues {
            chain_pos: Some(3),
            ..v.clone()
        };
        assert_eq!(placed.image().get("chain_pos"), Some(&Value::Int(3)));
        assert_ne!(placed.image(), old);
        let other = PostingValues {
            chain_pos: Some(4),
            ..v
        };
        assert_ne!(other.image(), placed.image());
    }

    #[test]
    fn card_image_round_trips_through_a_sealed_copy() {
        let keys = RowKeys::generate();
        let c = CardValues {
            card_no: "C1".into(),
            member_id: 7,
            status: "active".into(),
            balance: Decimal::new(1234, 2),
            points: 5,
            pin_hash: Some(vec![1, 2]),
            pin_salt: None,
            pin_fail_count: 0,
            chain_len: 3,
            last_mac: Some(vec![9; 32]),
            renewed_at_ms: None,
            spent: None,
            held: None,
            visits: None,
        };
        let sealed = keys.seal(&c.image());
        let back = CardValues::from_image(&keys.open("cards", "C1", &sealed).unwrap()).unwrap();
        assert_eq!(back, c);
        let mac = keys.mac(&c.image(), None);
        assert!(keys.verify(Some(&keys.current_id()), &back.image(), None, Some(&mac)));
        assert!(!keys.verify(Some("other"), &back.image(), None, Some(&mac)));
        assert!(!keys.verify(Some(&keys.current_id()), &back.image(), None, None));
        // A renewal time is covered once a card carries one; a card without
        // keeps the image it had before migration 0019.
        let renewed = CardValues {
            renewed_at_ms: Some(1_795_000_000_000),
            spent: Some(("2026-12-02".into(), Decimal::new(950, 2))),
            held: Some(Decimal::new(5700, 2)),
            ..c.clone()
        };
        assert!(c.image().get("renewed_at").is_none());
        assert!(c.image().get("held").is_none());
        assert_ne!(renewed.image(), c.image());
        let sealed = keys.seal(&renewed.image());
        let back = CardValues::from_image(&keys.open("cards", "C1", &sealed).unwrap()).unwrap();
        assert_eq!(back, renewed);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":[2,{"d":3,"c":4}]}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":[2,{"c":4,"d":3}],"b":1}"#);
    }
}

//! Rows as the ledger's statements return them (JSON from PostgreSQL, so one
//! round trip can carry several row kinds), and the stored forms of effects
//! and answers.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;

use crate::crypto::keyed_hash::{verify_keyed_hash, DOMAIN_CARD_PIN};
use crate::error::{Error, Result};
use crate::integrity::{canonical_json, OrderValues};
use crate::ledger::request::PinText;
use crate::ledger::{
    CardState, CardStatus, Effect, HoldTerms, LedgerConfig, Level, Limits, LotTake, Money, OpKind,
    Original, Pin, Role, Standing, Tender,
};
use crate::protocol::xml::Row;
use crate::store::txn::TxnEnv;

#[derive(Deserialize)]
pub(super) struct OperatorRow {
    pub(super) role: Role,
    pub(super) status: Standing,
    pub(super) pin_hash: Option<String>,
    pub(super) pin_salt: Option<String>,
    pub(super) pin_fail_count: i32,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
}

/// A card row as locked, with its member and level.
#[derive(Deserialize, Clone)]
pub(super) struct CardRow {
    pub(super) card_no: String,
    pub(super) member_id: i64,
    pub(super) status: CardStatus,
    pub(super) balance: String,
    pub(super) points: i64,
    pub(super) pin_hash: Option<String>,
    pub(super) pin_salt: Option<String>,
    pub(super) pin_fail_count: i32,
    pub(super) level: String,
    pub(super) discount: String,
    pub(super) points_rate: String,
    pub(super) name: String,
    pub(super) phone: String,
    pub(super) birthday: Option<String>,
    pub(super) opened_at: i64,
    /// As stored (under the card's MAC): `None` on a card not written since
    /// migration 0019.
    pub(super) renewed_at: Option<i64>,
    /// When the membership was renewed: as stored, or for a card from
    /// before migration 0019 its last register, import, replace or top-up.
    pub(super) renewed_ms: i64,
    /// The card's last business day with spending and what it took.
    pub(super) spent_day: Option<String>,
    pub(super) spent_today: Option<String>,
    /// What its active holds keep (`None` on a card not written since
    /// migration 0021).
    pub(super) held: Option<String>,
    /// What its lots of visits hold (`None`: it never had any).
    #[serde(default)]
    pub(super) visits: Option<i64>,
    pub(super) max_balance: Option<String>,
    pub(super) daily_debit_limit: Option<String>,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
    pub(super) last_mac: Option<String>,
    pub(super) sealed: Option<String>,
    pub(super) chain_len: i64,
    pub(super) referrer: Option<String>,
    pub(super) member_mac: Option<String>,
    pub(super) member_key_id: Option<String>,
    pub(super) level_mac: Option<String>,
    pub(super) level_key_id: Option<String>,
}

impl CardRow {
    /// The card of a batch's claim row, from its `c_…` columns
    /// (`sql::CARD_FIELDS`); `None` when it locked none.
    pub(super) fn from_columns(r: &tokio_postgres::Row) -> Result<Option<CardRow>> {
        let Some(card_no) = col::<Option<String>>(r, "c_card_no")? else {
            return Ok(None);
        };
        let status: String = col(r, "c_status")?;
        let status = CardStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("card {card_no}: status {status}")))?;
        Ok(Some(CardRow {
            card_no,
            member_id: col(r, "c_member_id")?,
            status,
            balance: col(r, "c_balance")?,
            points: col(r, "c_points")?,
            pin_hash: col(r, "c_pin_hash")?,
            pin_salt: col(r, "c_pin_salt")?,
            pin_fail_count: col(r, "c_pin_fail_count")?,
            level: col(r, "c_level")?,
            discount: col(r, "c_discount")?,
            points_rate: col(r, "c_points_rate")?,
            name: col(r, "c_name")?,
            phone: col(r, "c_phone")?,
            birthday: col(r, "c_birthday")?,
            opened_at: col(r, "c_opened_at")?,
            renewed_at: col(r, "c_renewed_at")?,
            renewed_ms: col(r, "c_renewed_ms")?,
            spent_day: col(r, "c_spent_day")?,
            spent_today: col(r, "c_spent_today")?,
            held: col(r, "c_held")?,
            visits: col(r, "c_visits")?,
            max_balance: col(r, "c_max_balance")?,
            daily_debit_limit: col(r, "c_daily_debit_limit")?,
            row_mac: col(r, "c_row_mac")?,
            mac_key_id: col(r, "c_mac_key_id")?,
            last_mac: col(r, "c_last_mac")?,
            sealed: col(r, "c_sealed")?,
            chain_len: col(r, "c_chain_len")?,
            referrer: col(r, "c_referrer")?,
            member_mac: col(r, "c_member_mac")?,
            member_key_id: col(r, "c_member_key_id")?,
            level_mac: col(r, "c_level_mac")?,
            level_key_id: col(r, "c_level_key_id")?,
        }))
    }
}

impl super::check::ChainRow {
    /// The chain of a batch's claim row, from its `h_…` columns
    /// (`sql::claim_set`): `None` when the row has none (JSON then), no
    /// chain when it locked no card.
    pub(super) fn from_columns(r: &tokio_postgres::Row) -> Result<Option<Vec<Self>>> {
        if !r.columns().iter().any(|c| c.name() == "h_count") {
            return Ok(None);
        }
        let Some(count) = col::<Option<i64>>(r, "h_count")? else {
            return Ok(Some(Vec::new()));
        };
        let last = match col::<Option<i64>>(r, "h_txn_id")? {
            None => None,
            Some(txn_id) => Some(super::check::PostingRow {
                txn_id,
                card_no: col(r, "h_card_no")?,
                terminal_id: col(r, "h_terminal_id")?,
                order_no: col(r, "h_order_no")?,
                op: col(r, "h_op")?,
                balance_delta: col(r, "h_balance_delta")?,
                points_delta: col(r, "h_points_delta")?,
                balance: col(r, "h_balance")?,
                points: col(r, "h_points")?,
                amount: col(r, "h_amount")?,
                discount: col(r, "h_discount")?,
                charged: col(r, "h_charged")?,
                business_day: col(r, "h_business_day")?,
                posted_at: col(r, "h_posted_at")?,
                row_mac: col(r, "h_row_mac")?,
                mac_key_id: col(r, "h_mac_key_id")?,
                chain_pos: col(r, "h_chain_pos")?,
                visits_delta: col(r, "h_visits_delta")?,
            }),
        };
        Ok(Some(vec![super::check::ChainRow {
            card_no: col(r, "c_card_no")?,
            count,
            last,
            prev_mac: col(r, "h_prev_mac")?,
        }]))
    }
}

/// One column of a row, by name.
fn col<'a, T: postgres_types::FromSql<'a>>(r: &'a tokio_postgres::Row, name: &str) -> Result<T> {
    r.try_get(name)
        .map_err(|e| Error::internal(format!("column {name}: {e}")))
}

#[derive(Deserialize)]
pub(super) struct OrigRow {
    pub(super) terminal: String,
    pub(super) order_no: String,
    pub(super) op: String,
    pub(super) business_day: Option<String>,
    pub(super) amount: String,
    pub(super) charged: String,
    pub(super) tender: String,
    pub(super) points_earned: i64,
    pub(super) reversed: bool,
    pub(super) refunded: String,
    pub(super) points_taken_back: i64,
    pub(super) effects: Option<Value>,
    pub(super) digest: String,
    pub(super) card_no: Option<String>,
    pub(super) cards: Vec<String>,
    pub(super) txn_id: Option<i64>,
    pub(super) posted_at: Option<i64>,
    pub(super) answer: Option<Value>,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
    /// A hold's terms (migration 0021).
    #[serde(default)]
    pub(super) hold_expires_at: Option<i64>,
    #[serde(default)]
    pub(super) hold_discount: Option<String>,
    #[serde(default)]
    pub(super) hold_points_rate: Option<String>,
}

impl OrigRow {
    /// What the row's MAC covers (issue 12).
    pub(super) fn values(&self) -> Result<OrderValues> {
        Ok(OrderValues {
            terminal_id: self.terminal.clone(),
            order_no: self.order_no.clone(),
            digest: unhex(&self.digest).ok_or_else(|| Error::internal("stored digest"))?,
            op: self.op.clone(),
            card_no: self.card_no.clone(),
            cards: self.cards.clone(),
            txn_id: self.txn_id,
            business_day: self.business_day.clone(),
            posted_at_ms: self.posted_at,
            amount: money(&self.amount)?.amount(),
            charged: money(&self.charged)?.amount(),
            tender: self.tender.clone(),
            points_earned: self.points_earned,
            effects: self.effects.as_ref().map(canonical_json),
            answer: self.answer.as_ref().map(canonical_json),
            reversed: self.reversed,
            refunded: money(&self.refunded)?.amount(),
            points_taken_back: self.points_taken_back,
            hold: self.hold_terms()?,
        })
    }

    /// A hold's terms as stored: all three columns, or none.
    fn hold_terms(&self) -> Result<Option<(i64, Decimal, Decimal)>> {
        match (
            self.hold_expires_at,
            &self.hold_discount,
            &self.hold_points_rate,
        ) {
            (None, None, None) => Ok(None),
            (Some(at), Some(d), Some(r)) => Ok(Some((at, dec(d)?, dec(r)?))),
            _ => Err(Error::Tampered(format!(
                "orders {}/{}: hold terms",
                self.terminal, self.order_no
            ))),
        }
    }

    /// Whether the row's MAC holds: a stored answer, original or counter
    /// changed by SQL is refused on use (3001).
    pub(super) fn mac_ok(&self, keys: &crate::integrity::RowKeys) -> Result<bool> {
        let mac = self.row_mac.as_deref().and_then(unhex);
        Ok(keys.verify(
            self.mac_key_id.as_deref(),
            &self.values()?.image(),
            None,
            mac.as_deref(),
        ))
    }
}

/// The `orders` columns [`OrigRow`] reads, as a JSON row (`o` the table).
pub(super) const ORDER_JSON_COLUMNS: &str = "o.terminal_id AS terminal, o.order_no, o.op,
           o.business_day::text AS business_day, o.amount::text AS amount,
           o.charged::text AS charged, o.tender, o.points_earned, o.reversed,
           o.refunded::text AS refunded, o.points_taken_back, o.effects, o.cards,
           encode(o.digest, 'hex') AS digest, o.card_no, o.txn_id,
           floor(extract(epoch FROM o.posted_at) * 1000)::bigint AS posted_at, o.answer,
           encode(o.row_mac, 'hex') AS row_mac, o.mac_key_id,
           floor(extract(epoch FROM o.hold_expires_at) * 1000)::bigint AS hold_expires_at,
           o.hold_discount::text AS hold_discount, o.hold_points_rate::text AS hold_points_rate";

#[derive(Deserialize, Clone)]
pub(super) struct LotRow {
    pub(super) card_no: String,
    pub(super) id: i64,
    pub(super) left: i64,
    pub(super) exp: Option<i64>,
    /// `None`: a lot of points; else the service its visits are of.
    #[serde(default)]
    pub(super) service: Option<String>,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
}

impl LotRow {
    /// Whether the lot's MAC holds (issue 12).
    pub(super) fn mac_ok(&self, keys: &crate::integrity::RowKeys) -> bool {
        let mac = self.row_mac.as_deref().and_then(unhex);
        let img = crate::integrity::lot_image(
            self.id,
            &self.card_no,
            self.left,
            self.exp,
            self.service.as_deref(),
        );
        keys.verify(self.mac_key_id.as_deref(), &img, None, mac.as_deref())
    }
}

#[derive(Deserialize)]
pub(super) struct LevelRow {
    pub(super) level: String,
    pub(super) discount: String,
    pub(super) points_rate: String,
    pub(super) max_balance: Option<String>,
    pub(super) daily_debit_limit: Option<String>,
    pub(super) row_mac: Option<String>,
    pub(super) mac_key_id: Option<String>,
}

impl LevelRow {
    pub(super) fn level(&self) -> Result<Level> {
        Ok(Level {
            name: self.level.clone(),
            discount: dec(&self.discount)?,
            points_rate: dec(&self.points_rate)?,
            limits: limits(&self.max_balance, &self.daily_debit_limit)?,
        })
    }

    /// The row as the protected table describes it (for its MAC check).
    pub(super) fn protected(&self) -> Result<crate::store::protected::LevelRow> {
        protected_level(
            &self.level,
            (&self.discount, &self.points_rate),
            (&self.max_balance, &self.daily_debit_limit),
            (&self.row_mac, &self.mac_key_id),
        )
    }
}

/// A level's limits as read (text, as the JSON of the reads carries them).
fn limits(max_balance: &Option<String>, daily: &Option<String>) -> Result<Limits> {
    let m = |s: &Option<String>| s.as_deref().map(money).transpose();
    Ok(Limits {
        max_balance: m(max_balance)?,
        daily_debit: m(daily)?,
    })
}

/// A level row from the text columns a read gives.
pub(super) fn protected_level(
    level: &str,
    (discount, points_rate): (&str, &str),
    (max_balance, daily): (&Option<String>, &Option<String>),
    (mac, key_id): (&Option<String>, &Option<String>),
) -> Result<crate::store::protected::LevelRow> {
    let d = |s: &Option<String>| s.as_deref().map(dec).transpose();
    Ok(crate::store::protected::LevelRow {
        level: level.to_owned(),
        discount: dec(discount)?,
        points_rate: dec(points_rate)?,
        limits: crate::integrity::LevelLimits {
            max_balance: d(max_balance)?,
            daily_debit_limit: d(daily)?,
        },
        row_mac: hex_bytes(mac)?,
        mac_key_id: key_id.clone(),
    })
}

#[derive(Deserialize)]
pub(super) struct HistoryRow {
    pub(super) posting_id: i64,
    pub(super) order_no: Option<String>,
    pub(super) op: String,
    pub(super) txn_id: i64,
    pub(super) card_no: String,
    pub(super) amount: String,
    pub(super) discount: String,
    pub(super) charged: String,
    pub(super) points_delta: i64,
    pub(super) balance: String,
    pub(super) points: i64,
    pub(super) posted_at: i64,
    pub(super) terminal_id: String,
    /// Set on postings that added or used visits.
    #[serde(default)]
    pub(super) visits_delta: Option<i64>,
}

pub(super) fn dec(s: &str) -> Result<Decimal> {
    Decimal::from_str(s).map_err(|e| Error::internal(format!("stored number {s:?}: {e}")))
}

pub(super) fn money(s: &str) -> Result<Money> {
    Money::new(dec(s)?).map_err(|_| Error::internal(format!("stored amount {s:?} out of range")))
}

pub(super) fn hex_bytes(s: &Option<String>) -> Result<Option<Vec<u8>>> {
    s.as_deref()
        .map(|h| unhex(h).ok_or_else(|| Error::internal("stored hex")))
        .transpose()
}

/// Each byte's value as a hex digit, 0xff where it is none.
const HEX_DIGIT: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Bytes as lower-case hex text (how the write document carries bytea),
/// by table: `hex::encode` collects an iterator of chars into its String,
/// 5 % of the daemon's instructions (issue 14).
pub(super) fn hex_text(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex text (how the load's JSON carries bytea) to bytes, by table: the
/// `hex` crate's per-digit matching was 6 % of the daemon's instructions
/// (issue 14), a card's sealed copy alone some 600 digits a load.
pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        let (hi, lo) = (HEX_DIGIT[pair[0] as usize], HEX_DIGIT[pair[1] as usize]);
        if (hi | lo) > 0x0f {
            return None;
        }
        out.push(hi << 4 | lo);
    }
    Some(out)
}

/// A JSON column decoded straight into `T` (no `Value` tree in between:
/// that tree's building and dropping was a tenth of the daemon's CPU).
pub(super) fn json_col<T: for<'de> Deserialize<'de>>(
    row: &tokio_postgres::Row,
    col: &str,
    what: &str,
) -> Result<T> {
    row.try_get::<_, postgres_types::Json<T>>(col)
        .map(|j| j.0)
        .map_err(|e| Error::internal(format!("{what}: {e}")))
}

/// A JSON column that may be NULL.
pub(super) fn json_col_opt<T: for<'de> Deserialize<'de>>(
    row: &tokio_postgres::Row,
    col: &str,
    what: &str,
) -> Result<Option<T>> {
    row.try_get::<_, Option<postgres_types::Json<T>>>(col)
        .map(|j| j.map(|j| j.0))
        .map_err(|e| Error::internal(format!("{what}: {e}")))
}

pub(super) fn from_json<T: for<'de> Deserialize<'de>>(v: Value, what: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::internal(format!("{what}: {e}")))
}

pub(super) fn at_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::internal("stored time out of range"))
}

impl CardRow {
    /// The card as the ledger decides on it on business day `today`.
    pub(super) fn state(&self, cfg: &LedgerConfig, today: NaiveDate) -> Result<CardState> {
        Ok(CardState {
            card_no: self.card_no.clone(),
            member_id: self.member_id,
            status: self.status,
            balance: money(&self.balance)?,
            points: self.points,
            level: Level {
                name: self.level.clone(),
                discount: dec(&self.discount)?,
                points_rate: dec(&self.points_rate)?,
                limits: limits(&self.max_balance, &self.daily_debit_limit)?,
            },
            pin_fail_count: u32::try_from(self.pin_fail_count).unwrap_or(0),
            has_pin: self.pin_hash.is_some(),
            member_until: cfg.member_until(at_ms(self.renewed_ms)?),
            spent_today: self.spent_on(today)?,
            held: self.held()?.map_or(Ok(Money::ZERO), |h| {
                Money::new(h).map_err(|_| Error::internal("stored held"))
            })?,
            // Counted once its holds are read (`holds::load`).
            active_holds: 0,
            visits: self.visits.unwrap_or(0),
        })
    }

    /// The held sum as stored, as the card's MAC covers it.
    pub(super) fn held(&self) -> Result<Option<Decimal>> {
        self.held.as_deref().map(dec).transpose()
    }

    /// What the card spent on `day` (nothing if its last spending was on
    /// another day).
    pub(super) fn spent_on(&self, day: NaiveDate) -> Result<Money> {
        match self.spent()? {
            Some((d, amount)) if d == day.to_string() => {
                Money::new(amount).map_err(|_| Error::internal("stored spending"))
            }
            _ => Ok(Money::ZERO),
        }
    }

    /// The stored spending, as the card's MAC covers it.
    pub(super) fn spent(&self) -> Result<Option<(String, Decimal)>> {
        match (&self.spent_day, &self.spent_today) {
            (Some(d), Some(a)) => Ok(Some((d.clone(), dec(a)?))),
            _ => Ok(None),
        }
    }

    /// The request's `pin` checked against this card's hash.
    pub(super) fn pin(&self, env: &TxnEnv, pin: Option<&PinText>) -> Result<Pin> {
        let pin = pin.map(PinText::expose);
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

pub(super) fn takes_from_json(v: &Value) -> Result<Vec<LotTake>> {
    let pairs: Vec<(i64, i64)> = from_json(v.clone(), "lot moves")?;
    Ok(pairs
        .into_iter()
        .map(|(lot_id, points)| LotTake { lot_id, points })
        .collect())
}

pub(super) fn effect_from_json(v: &Value) -> Result<Effect> {
    let s = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    Ok(Effect {
        card_no: from_json(s("card_no"), "effect card")?,
        balance_delta: dec(&from_json::<String>(s("balance_delta"), "effect balance")?)?,
        points_delta: from_json(s("points_delta"), "effect points")?,
        lots_created: takes_from_json(&s("lots_created"))?,
        lots_taken: takes_from_json(&s("lots_taken"))?,
        visits_delta: v.get("visits_delta").and_then(Value::as_i64).unwrap_or(0),
    })
}

impl OrigRow {
    pub(super) fn original(&self) -> Result<Original> {
        let effects = match &self.effects {
            Some(Value::Array(a)) => a.iter().map(effect_from_json).collect::<Result<_>>()?,
            _ => vec![],
        };
        let op = OpKind::from_stored(&self.op).ok_or_else(|| Error::internal("stored op"))?;
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
            tender: match self.tender.as_str() {
                "balance" => Tender::Balance,
                "cash" => Tender::Cash,
                "split" => Tender::Split,
                _ => return Err(Error::internal("stored tender")),
            },
            points_earned: self.points_earned,
            reversed: self.reversed,
            refunded: money(&self.refunded)?,
            points_taken_back: self.points_taken_back,
            effects,
            hold: self
                .hold_terms()?
                .map(|(at, discount, points_rate)| {
                    Ok::<_, Error>(HoldTerms {
                        expires_at: at_ms(at)?,
                        discount,
                        points_rate,
                    })
                })
                .transpose()?,
        })
    }
}

pub(super) fn replayed_row(stored: Value) -> Result<Row> {
    let pairs: Vec<(String, String)> = from_json(stored, "stored answer")?;
    let mut row = Row(pairs);
    for (n, v) in row.0.iter_mut() {
        if n == "replayed" {
            *v = "1".into();
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::{hex_text, unhex};

    #[test]
    fn hex_text_writes_what_hex_writes_and_unhex_reads_it_and_refuses_what_is_not_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_text(&bytes), hex::encode(&bytes));
        assert_eq!(unhex(&hex_text(&bytes)), Some(bytes.clone()));
        assert_eq!(unhex(&hex::encode_upper(&bytes)), Some(bytes));
        assert_eq!(unhex(""), Some(vec![]));
        for bad in ["0", "abc", "0g", "g0", "zz", " 0", "0\u{e9}", "-1"] {
            assert_eq!(unhex(bad), None, "{bad:?}");
            assert!(hex::decode(bad).is_err(), "{bad:?}");
        }
    }
}

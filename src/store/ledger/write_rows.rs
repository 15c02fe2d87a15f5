//! The rows of the write document, typed (issue 14): serialized straight
//! into the write statement's one JSON parameter, with no
//! `serde_json::Value` tree built, looked up by name and dropped on the way.
//! Field names are the columns [`super::sql::write_sql`] reads; a field left
//! out reads as NULL there. Each struct declares its fields in the order
//! jsonb keeps an object's keys (shorter first, then bytewise): PostgreSQL
//! sorts every object it parses, and its sort returns at once on input
//! already in order (a test below holds the structs to it).

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::ledger::{Effect, LotTake};
use crate::protocol::xml::Row;

/// Money as the events state it: two decimals, `-` below zero.
fn two_places<S: Serializer>(d: &Decimal, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{d:.2}"))
}

fn opt_two_places<S: Serializer>(
    d: &Option<Decimal>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => two_places(d, s),
        None => s.serialize_none(),
    }
}

/// Bytes the write statement takes from its `bytea[]` parameter, at the
/// place (1-based) the JSON gives for them. As hex in the JSON (a card's
/// sealed copy some 600 digits) they cost the daemon their encoding and
/// escaping, and PostgreSQL their lexing and `decode` (issue 14).
#[derive(Default)]
pub(super) struct Blob {
    bytes: Vec<u8>,
    place: u32,
}

impl Blob {
    pub(super) fn new(bytes: Vec<u8>) -> Blob {
        Blob { bytes, place: 0 }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Moves the bytes to the end of `all`, remembering their place there.
    fn place(&mut self, all: &mut Vec<Vec<u8>>) {
        all.push(std::mem::take(&mut self.bytes));
        self.place = u32::try_from(all.len()).unwrap_or(u32::MAX);
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // Unplaced bytes would be written as NULL: never silently.
        if self.place == 0 {
            return Err(serde::ser::Error::custom("a blob sent without its place"));
        }
        s.serialize_u32(self.place)
    }
}

/// The blobs of every row, moved into the statement's `bytea[]`
/// parameter; each row's JSON keeps their places.
pub(super) fn place_blobs<'a>(blobs: impl IntoIterator<Item = &'a mut Blob>) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for b in blobs {
        b.place(&mut all);
    }
    all
}

/// Lot moves as stored: `[[lot_id, points], …]`.
pub(super) fn pairs(v: &[LotTake]) -> Vec<[i64; 2]> {
    v.iter().map(|t| [t.lot_id, t.points]).collect()
}

/// One `postings` row; `row_mac`, `mac_key_id` and `chain_pos` are filled
/// in when the card's chain is sealed.
#[derive(Serialize)]
pub(super) struct PostingWrite {
    pub(super) op: &'static str,
    pub(super) amount: Decimal,
    pub(super) detail: Detail,
    pub(super) points: i64,
    pub(super) txn_id: i64,
    pub(super) balance: Decimal,
    pub(super) card_no: String,
    pub(super) charged: Decimal,
    pub(super) row_mac: Blob,
    pub(super) discount: Decimal,
    pub(super) order_no: Option<String>,
    pub(super) chain_pos: i64,
    pub(super) posted_at: String,
    pub(super) lots_taken: Vec<[i64; 2]>,
    pub(super) mac_key_id: String,
    pub(super) terminal_id: String,
    pub(super) business_day: String,
    pub(super) lots_created: Vec<[i64; 2]>,
    pub(super) points_delta: i64,
    pub(super) visits_delta: Option<i64>,
    pub(super) balance_delta: Decimal,
    pub(super) lots_restored: Vec<[i64; 2]>,
}

/// A posting's `detail` (read by statement, history and settlement): what
/// the op adds to the amounts.
#[derive(Serialize, Default, Clone)]
pub(super) struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) gift: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) operator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) original: Option<OriginalRef>,
}

/// The posting a refund or reverse answers to.
#[derive(Serialize, Clone)]
pub(super) struct OriginalRef {
    pub(super) order_no: String,
    pub(super) terminal: String,
}

/// One `events` row (protocol.md §8), its body as delivered.
#[derive(Serialize)]
pub(super) struct EventWrite {
    pub(super) op: &'static str,
    pub(super) body: EventBody,
    pub(super) card_no: String,
    pub(super) store_id: String,
    pub(super) created_at: String,
}

/// A posting's event body; the op's own fields only where it has them.
#[derive(Serialize, Default)]
pub(super) struct EventBody {
    pub(super) op: &'static str,
    pub(super) card: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cash: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) store: String,
    #[serde(serialize_with = "two_places")]
    pub(super) amount: Decimal,
    pub(super) points: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tender: Option<String>,
    pub(super) txn_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) visits: Option<i64>,
    #[serde(serialize_with = "two_places")]
    pub(super) balance: Decimal,
    #[serde(serialize_with = "two_places")]
    pub(super) charged: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) to_card: Option<String>,
    /// The posting's place in its card's chain, set when it is sealed.
    pub(super) card_seq: i64,
    #[serde(serialize_with = "two_places")]
    pub(super) discount: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) new_card: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) old_card: Option<String>,
    pub(super) order_no: Option<String>,
    pub(super) terminal: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_two_places"
    )]
    pub(super) available: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) from_card: Option<String>,
    pub(super) created_at: i64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_two_places"
    )]
    pub(super) cash_refund: Option<Decimal>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_two_places"
    )]
    pub(super) from_balance: Option<Decimal>,
    pub(super) points_delta: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) visits_delta: Option<i64>,
    #[serde(serialize_with = "two_places")]
    pub(super) balance_delta: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hold_expires_at: Option<i64>,
}

/// A card row written: an update (with the values it was read at, which
/// guard it) or a new card (with `store_id`). The MAC, sealed copy and
/// chain end are filled in when the postings are sealed; `member_id` and
/// the PIN's hash and salt are what the MAC covers, not written by an
/// update.
#[derive(Serialize)]
pub(super) struct CardWrite {
    pub(super) at: String,
    pub(super) held: Option<Decimal>,
    pub(super) points: i64,
    pub(super) sealed: Blob,
    pub(super) status: &'static str,
    pub(super) visits: Option<i64>,
    pub(super) balance: Decimal,
    pub(super) card_no: String,
    pub(super) row_mac: Blob,
    pub(super) last_mac: Option<Blob>,
    pub(super) pin_hash: Option<String>,
    pub(super) pin_salt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) store_id: Option<String>,
    pub(super) chain_len: i64,
    pub(super) member_id: i64,
    pub(super) spent_day: Option<String>,
    pub(super) mac_key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) old_points: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) old_balance: Option<String>,
    pub(super) spent_today: Option<Decimal>,
    pub(super) renewed_at_ms: i64,
    pub(super) pin_fail_count: u32,
}

/// A new lot, all its points left; MACed when the rows are sealed.
#[derive(Serialize)]
pub(super) struct NewLotWrite {
    pub(super) at: String,
    #[serde(skip)]
    pub(super) exp_ms: Option<i64>,
    pub(super) lot_id: i64,
    pub(super) points: i64,
    pub(super) txn_id: i64,
    pub(super) card_no: String,
    pub(super) row_mac: Blob,
    pub(super) service: Option<String>,
    pub(super) expires_at: Option<String>,
    pub(super) mac_key_id: String,
}

/// A lot's points moved, with its new MAC.
#[derive(Serialize)]
pub(super) struct LotMoveWrite {
    pub(super) delta: i64,
    pub(super) lot_id: i64,
    pub(super) card_no: String,
    pub(super) row_mac: Blob,
    pub(super) mac_key_id: String,
}

/// The `orders` row. Its effects and answer go as the very text its MAC
/// covers ([`crate::integrity::canonical_json`]'s form: keys sorted, no
/// spaces), written once.
#[derive(Serialize)]
pub(super) struct OrderWrite {
    pub(super) op: &'static str,
    pub(super) cards: Vec<String>,
    pub(super) amount: Decimal,
    pub(super) answer: Box<RawValue>,
    pub(super) digest: Blob,
    pub(super) tender: &'static str,
    pub(super) txn_id: i64,
    pub(super) card_no: Option<String>,
    pub(super) charged: Decimal,
    pub(super) effects: Box<RawValue>,
    pub(super) row_mac: Blob,
    pub(super) order_no: String,
    pub(super) posted_at: String,
    pub(super) mac_key_id: String,
    pub(super) hold_exp_ms: Option<i64>,
    pub(super) terminal_id: String,
    pub(super) business_day: String,
    #[serde(skip)]
    pub(super) posted_at_ms: i64,
    pub(super) hold_discount: Option<Decimal>,
    pub(super) points_earned: i64,
    pub(super) hold_points_rate: Option<Decimal>,
}

/// An order's effect in canonical form: fields in name order, as
/// `canonical_json` sorts an object's keys; `visits_delta` only when it
/// moved visits, so an effect from before keeps its form.
#[derive(Serialize)]
struct EffectText<'a> {
    balance_delta: String,
    card_no: &'a str,
    lots_created: Vec<[i64; 2]>,
    lots_taken: Vec<[i64; 2]>,
    points_delta: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    visits_delta: Option<i64>,
}

/// The effects a reverse reads back, as the order row's canonical text.
pub(super) fn effects_text(effects: &[Effect]) -> Result<Box<RawValue>> {
    let rows: Vec<EffectText<'_>> = effects
        .iter()
        .map(|e| EffectText {
            balance_delta: e.balance_delta.to_string(),
            card_no: &e.card_no,
            lots_created: pairs(&e.lots_created),
            lots_taken: pairs(&e.lots_taken),
            points_delta: e.points_delta,
            visits_delta: (e.visits_delta != 0).then_some(e.visits_delta),
        })
        .collect();
    raw(&rows)
}

/// The answer row a replay gives back, `[[name, value], …]`.
pub(super) fn answer_text(row: &Row) -> Result<Box<RawValue>> {
    raw(&row.0)
}

fn raw<T: Serialize + ?Sized>(v: &T) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(v).map_err(|e| Error::internal(format!("order json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::canonical_json;
    use serde_json::json;

    /// What `verify` recomputes from the stored row: the effects parsed
    /// back into a tree, printed with sorted keys.
    fn tree_form(e: &Effect) -> serde_json::Value {
        let mut v = json!({
            "card_no": e.card_no,
            "balance_delta": e.balance_delta.to_string(),
            "points_delta": e.points_delta,
            "lots_created": pairs(&e.lots_created),
            "lots_taken": pairs(&e.lots_taken),
        });
        if e.visits_delta != 0 {
            v["visits_delta"] = e.visits_delta.into();
        }
        v
    }

    #[test]
    fn the_order_texts_are_the_canonical_form_verify_recomputes() {
        let take = |lot_id, points| LotTake { lot_id, points };
        let effects = vec![
            Effect {
                card_no: "C\"1".into(),
                balance_delta: Decimal::new(-1234, 2),
                points_delta: 12,
                lots_created: vec![take(7, 12)],
                lots_taken: vec![],
                visits_delta: 0,
            },
            Effect {
                card_no: "C2".into(),
                balance_delta: Decimal::new(500, 1),
                points_delta: -3,
                lots_created: vec![],
                lots_taken: vec![take(3, 2), take(4, 1)],
                visits_delta: -2,
            },
        ];
        let tree: Vec<_> = effects.iter().map(tree_form).collect();
        let text = effects_text(&effects).unwrap();
        assert_eq!(text.get(), canonical_json(&json!(tree)));
        let row = Row(vec![
            ("balance".into(), "1.00".into()),
            ("n\"é".into(), "<&>".into()),
        ]);
        let tree = json!(row.0.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>());
        assert_eq!(answer_text(&row).unwrap().get(), canonical_json(&tree));
    }

    #[test]
    fn event_money_has_two_places_and_absent_fields_are_left_out() {
        #[derive(Serialize)]
        struct M {
            #[serde(serialize_with = "two_places")]
            a: Decimal,
            #[serde(
                skip_serializing_if = "Option::is_none",
                serialize_with = "opt_two_places"
            )]
            b: Option<Decimal>,
            #[serde(
                skip_serializing_if = "Option::is_none",
                serialize_with = "opt_two_places"
            )]
            c: Option<Decimal>,
        }
        let m = M {
            a: Decimal::new(-5, 0),
            b: Some(Decimal::new(123, 1)),
            c: None,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"a":"-5.00","b":"12.30"}"#
        );
    }

    /// The keys of a JSON object's text, as written (depth 1 only).
    fn keys_in_order(text: &str) -> Vec<String> {
        let (mut depth, mut keys, mut chars) = (0, vec![], text.chars().peekable());
        let mut expect_key = false;
        while let Some(c) = chars.next() {
            match c {
                '{' | '[' => {
                    depth += 1;
                    expect_key = c == '{' && depth == 1;
                }
                '}' | ']' => depth -= 1,
                ',' => expect_key = depth == 1,
                '"' => {
                    let mut s = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => s.extend(chars.next()),
                            '"' => break,
                            c => s.push(c),
                        }
                    }
                    if expect_key {
                        keys.push(s);
                        expect_key = false;
                    }
                }
                _ => {}
            }
        }
        keys
    }

    fn placed() -> Blob {
        Blob {
            bytes: vec![],
            place: 1,
        }
    }

    #[test]
    fn blobs_go_by_place_and_never_unplaced() {
        let mut a = Blob::new(vec![1, 2]);
        let mut b = Blob::new(vec![3]);
        assert!(serde_json::to_string(&a).is_err());
        let all = place_blobs([&mut a, &mut b]);
        assert_eq!(all, vec![vec![1, 2], vec![3]]);
        assert_eq!(serde_json::to_string(&[&a, &b]).unwrap(), "[1,2]");
    }

    fn assert_jsonb_order<T: Serialize>(v: &T) {
        let keys = keys_in_order(&serde_json::to_string(v).unwrap());
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
        assert_eq!(keys, sorted);
        assert!(keys.len() > 4, "{keys:?}");
    }

    #[test]
    fn the_rows_keys_come_in_jsonb_order() {
        let s = || Some("x".to_owned());
        let d = || Some(Decimal::ONE);
        assert_jsonb_order(&PostingWrite {
            op: "debit",
            amount: Decimal::ONE,
            detail: Detail::default(),
            points: 1,
            txn_id: 1,
            balance: Decimal::ONE,
            card_no: "C".into(),
            charged: Decimal::ONE,
            row_mac: placed(),
            discount: Decimal::ZERO,
            order_no: s(),
            chain_pos: 1,
            posted_at: String::new(),
            lots_taken: vec![],
            mac_key_id: String::new(),
            terminal_id: "T".into(),
            business_day: String::new(),
            lots_created: vec![[1, 2]],
            points_delta: 1,
            visits_delta: Some(1),
            balance_delta: Decimal::ONE,
            lots_restored: vec![],
        });
        assert_jsonb_order(&Detail {
            cash: s(),
            gift: s(),
            reason: s(),
            tender: s(),
            service: s(),
            operator: s(),
            original: Some(OriginalRef {
                order_no: "O".into(),
                terminal: "T".into(),
            }),
        });
        assert_jsonb_order(&EventBody {
            kind: "posting",
            cash: s(),
            status: Some("lost"),
            tender: s(),
            visits: Some(1),
            service: s(),
            to_card: s(),
            new_card: s(),
            old_card: s(),
            available: d(),
            from_card: s(),
            cash_refund: d(),
            from_balance: d(),
            visits_delta: Some(1),
            hold_expires_at: Some(1),
            ..EventBody::default()
        });
        assert_jsonb_order(&CardWrite {
            at: String::new(),
            held: d(),
            points: 1,
            sealed: placed(),
            status: "active",
            visits: Some(1),
            balance: Decimal::ONE,
            card_no: "C".into(),
            row_mac: placed(),
            last_mac: Some(placed()),
            pin_hash: s(),
            pin_salt: s(),
            store_id: s(),
            chain_len: 1,
            member_id: 1,
            spent_day: s(),
            mac_key_id: String::new(),
            old_points: Some(1),
            old_balance: s(),
            spent_today: d(),
            renewed_at_ms: 1,
            pin_fail_count: 0,
        });
        assert_jsonb_order(&NewLotWrite {
            at: String::new(),
            lot_id: 1,
            points: 1,
            txn_id: 1,
            card_no: "C".into(),
            row_mac: placed(),
            service: s(),
            exp_ms: None,
            expires_at: s(),
            mac_key_id: String::new(),
        });
        assert_jsonb_order(&LotMoveWrite {
            delta: 1,
            lot_id: 1,
            card_no: "C".into(),
            row_mac: placed(),
            mac_key_id: String::new(),
        });
        assert_jsonb_order(&OrderWrite {
            op: "debit",
            cards: vec![],
            amount: Decimal::ONE,
            answer: answer_text(&Row(vec![])).unwrap(),
            digest: placed(),
            tender: "cash",
            txn_id: 1,
            card_no: s(),
            charged: Decimal::ONE,
            effects: effects_text(&[]).unwrap(),
            row_mac: placed(),
            order_no: "O".into(),
            posted_at: String::new(),
            mac_key_id: String::new(),
            hold_exp_ms: Some(1),
            terminal_id: "T".into(),
            business_day: String::new(),
            posted_at_ms: 1,
            hold_discount: d(),
            points_earned: 1,
            hold_points_rate: d(),
        });
    }
}

//! From a decided plan to the answer row of proto-spec §11, and the wire's
//! spelling of money, statuses and times. Pure.

use super::lots::Ts;
use super::money::Money;
use super::plan::{Answer, AnswerRow, CardStatus, OpKind, Plan};
use crate::protocol::xml::Row;

/// Money as the wire writes it: two decimals.
pub fn money_text(m: Money) -> String {
    format!("{:.2}", m.amount())
}

/// A sum or delta of money, which may be negative: two decimals, `-` when
/// below zero.
pub fn signed_money_text(d: rust_decimal::Decimal) -> String {
    format!("{:.2}", d)
}

pub fn status_text(s: CardStatus) -> &'static str {
    match s {
        CardStatus::Active => "active",
        CardStatus::Lost => "lost",
        CardStatus::Locked => "locked",
        CardStatus::Closed => "closed",
    }
}

pub fn parse_status(s: &str) -> Option<CardStatus> {
    Some(match s {
        "active" => CardStatus::Active,
        "lost" => CardStatus::Lost,
        "locked" => CardStatus::Locked,
        "closed" => CardStatus::Closed,
        _ => return None,
    })
}

/// What the answer row of a plan needs besides the plan.
#[derive(Clone, Debug)]
pub struct RowContext<'a> {
    /// The card the request named (for `replace`, the old one).
    pub card: &'a str,
    /// The card's status after the posting, for the ops that report it.
    pub status: Option<CardStatus>,
    /// `reverse`/`refund`: the original's terminal.
    pub orig_terminal: Option<&'a str>,
}

/// The answer row of a posting (proto-spec §11.1), `replayed` = 0.
pub fn posting_row(plan: &Plan, row: &AnswerRow, rc: &RowContext<'_>) -> Row {
    let a = &row.answer;
    let card = match plan.op {
        // The request's card; the new card is `new_card`.
        OpKind::Replace => rc.card.to_owned(),
        _ => a.card.clone(),
    };
    // proto-spec §11.1: for a refund or a transfer `charged` is the amount moved.
    let charged = match plan.op {
        OpKind::Refund | OpKind::Transfer => a.amount,
        _ => a.charged,
    };
    let mut r = Row::new()
        .with("order_no", &a.order_no)
        .with("op", a.op.as_str())
        .with("txn_id", row.txn_id.to_string())
        .with("card", card)
        .with("amount", money_text(a.amount))
        .with("discount", money_text(a.discount))
        .with("charged", money_text(charged))
        .with("points_delta", a.points_delta.to_string())
        .with("balance", money_text(a.balance))
        .with("points", a.points.to_string())
        .with("replayed", if row.replayed { "1" } else { "0" })
        .with("posted_at", ms(row.posted_at).to_string());
    match plan.op {
        OpKind::Register
        | OpKind::Import
        | OpKind::Lost
        | OpKind::Found
        | OpKind::Lock
        | OpKind::Unlock => {
            r.push(
                "status",
                status_text(rc.status.unwrap_or(CardStatus::Active)),
            );
        }
        OpKind::Transfer => {
            if let Some(to) = plan.cards.get(1) {
                r.push("to_card", &to.card_no);
                r.push("to_balance", money_text(to.new_balance));
            }
        }
        OpKind::Replace => {
            r.push("new_card", &a.card);
        }
        OpKind::Close => {
            r.push("cash_refund", money_text(a.cash_out));
            r.push("status", "closed");
        }
        OpKind::Reverse | OpKind::Refund => {
            r.push("terminal", rc.orig_terminal.unwrap_or_default());
            r.push("cash_refund", money_text(a.cash_out));
        }
        OpKind::Topup => {
            r.push("bonus", money_text(a.bonus));
        }
        OpKind::Hold => {
            if let Some(h) = a.hold {
                r.push("available", money_text(h.available));
                r.push("hold_expires_at", ms(h.expires_at).to_string());
            }
        }
        OpKind::Debit => split_legs(&mut r, a),
        OpKind::VisitsAdd | OpKind::Visit => {
            if let Some(v) = &a.visits {
                r.push("service", &v.service);
                r.push("visits", v.visits.to_string());
            }
            split_legs(&mut r, a);
        }
        _ => {}
    }
    r
}

fn split_legs(r: &mut Row, a: &Answer) {
    if let Some(s) = a.split {
        r.push("cash", money_text(s.cash));
        r.push("from_balance", money_text(s.from_balance));
    }
}

pub fn ms(t: Ts) -> i64 {
    t.timestamp_millis()
}

/// A phone with all but its last four digits replaced by `*`.
pub fn mask_phone(phone: &str) -> String {
    let n = phone.chars().count();
    phone
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i + 4 < n && c.is_ascii_digit() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::money::Money;

    #[test]
    fn posting_rows_lead_with_the_posting_fields() {
        use crate::ledger::{decide_topup, CardState, LedgerConfig, Level, TopupReq};
        let card = CardState {
            card_no: "CARD1".into(),
            member_id: 1,
            status: CardStatus::Active,
            balance: Money::ZERO,
            points: 0,
            level: Level {
                name: "std".into(),
                discount: rust_decimal::Decimal::ONE,
                points_rate: rust_decimal::Decimal::ONE,
                limits: Default::default(),
            },
            pin_fail_count: 0,
            has_pin: false,
            member_until: None,
            spent_today: crate::ledger::Money::ZERO,
            held: crate::ledger::Money::ZERO,
            active_holds: 0,
            visits: 0,
        };
        let plan = decide_topup(
            &LedgerConfig::default(),
            &card,
            &TopupReq {
                order_no: "O1".into(),
                amount: Money::from_cents(1250).unwrap(),
            },
        )
        .unwrap();
        let at = chrono::DateTime::from_timestamp_millis(1_795_000_000_123).unwrap();
        let ar = plan.answer.clone().into_row(42, at, false);
        let row = posting_row(
            &plan,
            &ar,
            &RowContext {
                card: "CARD1",
                status: None,
                orig_terminal: None,
            },
        );
        let names: Vec<&str> = row.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &names[..crate::protocol::answer::POSTING_FIELDS.len()],
            &crate::protocol::answer::POSTING_FIELDS[..]
        );
        assert_eq!(row.get("amount"), Some("12.50"));
        assert_eq!(row.get("balance"), Some("12.50"));
        assert_eq!(row.get("txn_id"), Some("42"));
        assert_eq!(row.get("posted_at"), Some("1795000000123"));
        assert_eq!(row.get("bonus"), Some("0.00"));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_phone("13800001234"), "*******1234");
        assert_eq!(mask_phone("+8613800001234"), "+*********1234");
        assert_eq!(mask_phone("12345"), "*2345");
    }
}

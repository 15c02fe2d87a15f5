//! From a checked inner form to the typed request the ledger decides on, and
//! from a decided plan to the answer row of proto-spec §11. Pure: the store
//! calls these, the rules never see a form.

use chrono::NaiveDate;

use super::lots::Ts;
use super::money::{Money, Points};
use super::plan::{AnswerRow, CardStatus, NewMember, OpKind, Plan, Tender};
use crate::protocol::attr2::DEFAULT_HISTORY_LIMIT;
use crate::protocol::errno::Errno;
use crate::protocol::message::InnerForm;
use crate::protocol::op::Op;
use crate::protocol::xml::Row;

/// The ledger's name for a wire op.
pub fn op_kind(op: Op) -> OpKind {
    OpKind::from_wire(op.as_str()).expect("every wire op is an OpKind")
}

/// A txn request, every value typed. `InnerForm::parse` checked the grammars
/// and presence rules, so the only refusals left here are for values the
/// form's grammar admits but the ledger cannot hold (1001). Its `Debug`
/// never shows the PINs.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub op: OpKind,
    pub order_no: Option<String>,
    pub operator: Option<String>,
    /// A card number, or for `reverse`/`refund` the original's order_no.
    pub attr1: String,
    pub amount: Option<Money>,
    pub pin: Option<String>,
    pub mpin: Option<String>,
    pub tender: Tender,
    /// `reverse`/`refund`: the original's terminal, if not the sender.
    pub orig_terminal: Option<String>,
    /// `transfer`: the card credited.
    pub to: Option<String>,
    /// `replace`: the new card number.
    pub new_card: Option<String>,
    /// `history`: rows wanted.
    pub limit: u32,
    /// `points`.
    pub delta: Option<Points>,
    pub reason: Option<String>,
    /// `redeem`.
    pub cost: Option<Points>,
    pub gift: Option<String>,
    /// `register`.
    pub member: Option<NewMember>,
    pub level: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |p: &Option<String>| p.as_ref().map(|_| "<hidden>");
        f.debug_struct("Request")
            .field("op", &self.op)
            .field("order_no", &self.order_no)
            .field("operator", &self.operator)
            .field("attr1", &self.attr1)
            .field("amount", &self.amount)
            .field("pin", &hide(&self.pin))
            .field("mpin", &hide(&self.mpin))
            .field("tender", &self.tender)
            .field("orig_terminal", &self.orig_terminal)
            .field("to", &self.to)
            .field("new_card", &self.new_card)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn from_form(form: &InnerForm) -> Result<Request, Errno> {
        let a2 = form.attr2_form()?;
        let get = |n: &str| a2.get(n).map(str::to_owned);
        let amount = match &form.amount {
            None => None,
            Some(_) => Some(Money::new(form.amount_decimal().ok_or(Errno::Malformed)?)?),
        };
        let tender = match a2.get("tender") {
            None | Some("balance") => Tender::Balance,
            Some("cash") => Tender::Cash,
            Some(_) => return Err(Errno::Malformed),
        };
        let limit = match a2.get("limit") {
            None => DEFAULT_HISTORY_LIMIT,
            Some(v) => crate::protocol::attr2::limit(v)?,
        };
        let int = |n: &str| -> Result<Option<Points>, Errno> {
            a2.get(n)
                .map(|v| v.parse::<Points>().map_err(|_| Errno::Malformed))
                .transpose()
        };
        let op = op_kind(form.op);
        let member = if op == OpKind::Register {
            let birthday = a2
                .get("birthday")
                .map(|b| NaiveDate::parse_from_str(b, "%Y-%m-%d").map_err(|_| Errno::Malformed))
                .transpose()?;
            Some(NewMember {
                name: get("name").ok_or(Errno::Malformed)?,
                phone: get("phone").ok_or(Errno::Malformed)?,
                birthday,
                referrer: get("referrer"),
            })
        } else {
            None
        };
        Ok(Request {
            op,
            order_no: form.order_no.clone(),
            operator: form.operator.clone().filter(|o| !o.is_empty()),
            attr1: form.attr1.clone().ok_or(Errno::Malformed)?,
            amount,
            pin: get("pin"),
            mpin: get("mpin"),
            tender,
            orig_terminal: get("terminal"),
            to: get("to"),
            new_card: get("new"),
            limit,
            delta: int("delta")?,
            reason: get("reason"),
            cost: int("cost")?,
            gift: get("gift"),
            member,
            level: get("level"),
        })
    }

    /// Cards whose rows the store locks before deciding (it sorts them).
    /// `reverse`/`refund` lock the original's cards instead; `register`
    /// locks none (its card is new).
    pub fn cards_to_lock(&self) -> Vec<String> {
        match self.op {
            OpKind::Register | OpKind::Reverse | OpKind::Refund => vec![],
            OpKind::Transfer => {
                let mut v = vec![self.attr1.clone()];
                v.extend(self.to.clone());
                v
            }
            _ => vec![self.attr1.clone()],
        }
    }

    /// A card number this request would create: the store serialises
    /// creators of one number so the loser sees 2012.
    pub fn card_to_create(&self) -> Option<&str> {
        match self.op {
            OpKind::Register => Some(&self.attr1),
            OpKind::Replace => self.new_card.as_deref(),
            _ => None,
        }
    }

    /// `(terminal, order_no)` of the original a `reverse`/`refund` names.
    pub fn original<'a>(&'a self, own_terminal: &'a str) -> Option<(&'a str, &'a str)> {
        matches!(self.op, OpKind::Reverse | OpKind::Refund).then(|| {
            (
                self.orig_terminal.as_deref().unwrap_or(own_terminal),
                self.attr1.as_str(),
            )
        })
    }
}

/// Money as the wire writes it: two decimals.
pub fn money_text(m: Money) -> String {
    format!("{:.2}", m.amount())
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
    pub req: &'a Request,
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
        OpKind::Replace => rc.req.attr1.clone(),
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
        OpKind::Register | OpKind::Lost | OpKind::Found | OpKind::Lock | OpKind::Unlock => {
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
        _ => {}
    }
    r
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

    fn form(s: &str) -> InnerForm {
        InnerForm::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn typed_requests() {
        let r = Request::from_form(&form(
            "op=debit&amount=12.5&order_no=O1&attr1=CARD1&attr2=pin%3D1234%26tender%3Dcash",
        ))
        .unwrap();
        assert_eq!(r.op, OpKind::Debit);
        assert_eq!(r.amount, Some(Money::from_cents(1250).unwrap()));
        assert_eq!(r.tender, Tender::Cash);
        assert_eq!(r.pin.as_deref(), Some("1234"));
        assert_eq!(r.cards_to_lock(), vec!["CARD1".to_string()]);

        let r = Request::from_form(&form(
            "op=transfer&amount=1&order_no=O2&operator=m1&attr1=CARD1&attr2=mpin%3D9999%26to%3DCARD0",
        ))
        .unwrap();
        assert_eq!(r.cards_to_lock(), vec!["CARD1".to_string(), "CARD0".into()]);
        assert_eq!(r.mpin.as_deref(), Some("9999"));

        let r = Request::from_form(&form(
            "op=refund&amount=1&order_no=O3&operator=m1&attr1=O1&attr2=mpin%3D9999%26terminal%3DT2",
        ))
        .unwrap();
        assert_eq!(r.original("T1"), Some(("T2", "O1")));
        assert!(r.cards_to_lock().is_empty());

        let r = Request::from_form(&form(
            "op=register&order_no=O4&attr1=CARD5&attr2=name%3DLi%26phone%3D13800000000%26level%3Dgold%26birthday%3D2000-02-29",
        ))
        .unwrap();
        assert_eq!(r.card_to_create(), Some("CARD5"));
        let m = r.member.unwrap();
        assert_eq!(m.birthday, NaiveDate::from_ymd_opt(2000, 2, 29));
        assert_eq!(r.level.as_deref(), Some("gold"));

        let r = Request::from_form(&form(
            "op=points&order_no=O5&attr1=CARD5&attr2=delta%3D-20%26reason%3Dfix",
        ))
        .unwrap();
        assert_eq!(r.delta, Some(-20));
        let r = Request::from_form(&form("op=history&attr1=CARD5&attr2=limit%3D7")).unwrap();
        assert_eq!(r.limit, 7);
        let r = Request::from_form(&form("op=history&attr1=CARD5")).unwrap();
        assert_eq!(r.limit, DEFAULT_HISTORY_LIMIT);
        let r = Request::from_form(&form("op=query&attr1=CARD5&attr2=pin%3D987654")).unwrap();
        assert!(!format!("{r:?}").contains("987654"));
    }

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
            },
            pin_fail_count: 0,
            has_pin: false,
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
        let req =
            Request::from_form(&form("op=topup&amount=12.5&order_no=O1&attr1=CARD1")).unwrap();
        let at = chrono::DateTime::from_timestamp_millis(1_795_000_000_123).unwrap();
        let ar = plan.answer.clone().into_row(42, at, false);
        let row = posting_row(
            &plan,
            &ar,
            &RowContext {
                req: &req,
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

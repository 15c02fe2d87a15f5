//! From a checked inner form to the typed request the ledger decides on, and
//! from a decided plan to the answer row of proto-spec §11. Pure: the store
//! calls these, the rules never see a form.
//!
//! The inner form is parsed here once ([`Request::from_form`]), into one
//! variant per op holding exactly what that op carries: nothing downstream
//! asks whether a field is there.

use chrono::NaiveDate;
use zeroize::Zeroizing;

use super::money::{Money, Points};
use super::ops_card::StatusOp;
use super::plan::{NewMember, OpKind, Payment, Tender};
use crate::protocol::attr2::DEFAULT_HISTORY_LIMIT;
use crate::protocol::errno::Errno;
use crate::protocol::form::Form;
use crate::protocol::message::InnerForm;
use crate::protocol::op::Op;

/// The ledger's name for a protocol op.
pub fn op_kind(op: Op) -> OpKind {
    match op {
        Op::Query => OpKind::Query,
        Op::Member => OpKind::Member,
        Op::History => OpKind::History,
        Op::Find => OpKind::Find,
        Op::Statement => OpKind::Statement,
        Op::Settlement => OpKind::Settlement,
        Op::Liability => OpKind::Liability,
        Op::Register => OpKind::Register,
        Op::Debit => OpKind::Debit,
        Op::Topup => OpKind::Topup,
        Op::Points => OpKind::Points,
        Op::Redeem => OpKind::Redeem,
        Op::Reverse => OpKind::Reverse,
        Op::Refund => OpKind::Refund,
        Op::Transfer => OpKind::Transfer,
        Op::Lost => OpKind::Lost,
        Op::Found => OpKind::Found,
        Op::Lock => OpKind::Lock,
        Op::Unlock => OpKind::Unlock,
        Op::Replace => OpKind::Replace,
        Op::Close => OpKind::Close,
        Op::Hold => OpKind::Hold,
        Op::Capture => OpKind::Capture,
        Op::Void => OpKind::Void,
        Op::VisitsAdd => OpKind::VisitsAdd,
        Op::Visit => OpKind::Visit,
        Op::Visits => OpKind::Visits,
        Op::Import => OpKind::Import,
    }
}

/// A PIN as the request carries it: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PinText(Zeroizing<String>);

impl PinText {
    pub fn new(pin: &str) -> PinText {
        PinText(Zeroizing::new(pin.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PinText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Who a request says runs it (protocol.md §4, the operator check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// No `operator`: allowed for the ops not marked M.
    Unnamed,
    /// An `operator` on an op not marked M: any active operator may.
    Named(String),
    /// An op marked M: an active manager and its PIN.
    Manager { id: String, mpin: PinText },
}

impl Operator {
    pub fn id(&self) -> Option<&str> {
        match self {
            Operator::Unnamed => None,
            Operator::Named(id) | Operator::Manager { id, .. } => Some(id),
        }
    }
}

/// A txn request, parsed once: who runs it, and the op with its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub operator: Operator,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Read(ReadReq),
    Office(OfficeReq),
    Posting(PostingReq),
}

/// `query`, `member`, `history`: one card, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReq {
    pub card: String,
    pub pin: Option<PinText>,
    pub op: ReadOp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOp {
    Query,
    Member,
    /// The newest `limit` postings.
    History {
        limit: u32,
    },
    /// A count card's live visits, per service.
    Visits,
}

/// The back-office ops of protocol.md §6.1, which only office terminals
/// send and which read no single card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfficeReq {
    /// The cards of the members whose phone, or one of whose cards, is
    /// `key`: at most `limit`.
    Find {
        key: String,
        limit: u32,
    },
    Statement(StatementReq),
    Settlement(SettlementReq),
    /// What the chain owes its card holders: every card's, or the cards
    /// issued at one store.
    Liability {
        store: String,
    },
}

/// `statement`: one card's postings in posting order, a page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementReq {
    pub card: String,
    /// Postings at or after this time (Unix ms).
    pub from_ms: Option<i64>,
    /// Postings before this time (Unix ms).
    pub to_ms: Option<i64>,
    /// Postings after the last one of this txn on the card (the last row
    /// of the page before).
    pub after_txn_id: Option<i64>,
    pub limit: u32,
}

/// `settlement`: one business day's postings, summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementReq {
    pub day: chrono::NaiveDate,
    /// A store id, `*` for every store, or `None`: the terminal's own.
    pub store: Option<String>,
    pub by: SettlementBy,
}

/// How a settlement's rows are grouped within a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettlementBy {
    /// By op and tender.
    Op,
    /// By terminal, op and tender.
    Terminal,
}

/// `find`'s default `limit` (protocol.md §6.1).
pub const FIND_LIMIT_DEFAULT: u32 = 10;
/// `statement`'s default `limit` (protocol.md §6.1).
pub const STATEMENT_LIMIT_DEFAULT: u32 = 50;

/// An op that posts, under its `order_no`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingReq {
    pub order_no: String,
    pub op: PostingOp,
}

/// The original order a `reverse` or `refund` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalRef {
    /// `None`: the sending terminal's own order.
    pub terminal: Option<String>,
    pub order_no: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostingOp {
    Register {
        card: String,
        member: NewMember,
        level: String,
        pin: Option<PinText>,
        /// What an import brings over from the chain's old system.
        opening: Option<Opening>,
    },
    Debit {
        card: String,
        sale: Money,
        payment: Payment,
        pin: Option<PinText>,
    },
    Topup {
        card: String,
        amount: Money,
        tender: Tender,
    },
    Points {
        card: String,
        delta: Points,
        reason: String,
    },
    Redeem {
        card: String,
        cost: Points,
        gift: String,
        pin: Option<PinText>,
    },
    Reverse {
        original: OriginalRef,
    },
    Refund {
        original: OriginalRef,
        amount: Money,
    },
    Transfer {
        card: String,
        to: String,
        amount: Money,
        pin: Option<PinText>,
    },
    Status {
        card: String,
        op: StatusOp,
    },
    Replace {
        card: String,
        new_card: String,
    },
    Close {
        card: String,
        pin: Option<PinText>,
    },
    /// Money reserved on the card for `expires_s` (protocol.md §6.2).
    Hold {
        card: String,
        sale: Money,
        pin: Option<PinText>,
        expires_s: u32,
    },
    /// `amount` of the sale taken against the hold `original` names.
    Capture {
        original: OriginalRef,
        amount: Money,
    },
    Void {
        original: OriginalRef,
    },
    /// `count` visits of `service` bought for `price` (protocol.md §6.2).
    VisitsAdd {
        card: String,
        price: Money,
        service: String,
        count: u32,
        days: Option<u32>,
        payment: Payment,
        pin: Option<PinText>,
    },
    Visit {
        card: String,
        service: String,
        count: u32,
        pin: Option<PinText>,
    },
}

/// An imported card's opening balance and points (`Op::Import`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    pub balance: Money,
    pub points: Points,
}

/// The values of one inner form, read by name as the parse needs them.
struct Fields<'a> {
    form: &'a InnerForm,
    attr2: Form,
}

impl Fields<'_> {
    fn text(&self, name: &str) -> Option<String> {
        self.attr2.get(name).map(str::to_owned)
    }

    fn required(&self, name: &str) -> Result<String, Errno> {
        self.text(name).ok_or(Errno::Malformed)
    }

    fn pin(&self, name: &str) -> Option<PinText> {
        self.attr2.get(name).map(PinText::new)
    }

    fn points(&self, name: &str) -> Result<Points, Errno> {
        self.attr2
            .get(name)
            .ok_or(Errno::Malformed)?
            .parse::<Points>()
            .map_err(|_| Errno::Malformed)
    }

    fn amount(&self) -> Result<Money, Errno> {
        Money::new(self.form.amount_decimal().ok_or(Errno::Malformed)?)
    }

    /// A top-up's tender: how the shop was paid; never split.
    fn tender(&self) -> Result<Tender, Errno> {
        match self.payment()? {
            Payment::Balance => Ok(Tender::Balance),
            Payment::Cash => Ok(Tender::Cash),
            Payment::Split { .. } => Err(Errno::Malformed),
        }
    }

    /// A sale's payment; a split carries its cash leg (protocol.md §6.2).
    fn payment(&self) -> Result<Payment, Errno> {
        match (self.attr2.get("tender"), self.attr2.get("cash")) {
            (None | Some("balance"), None) => Ok(Payment::Balance),
            (Some("cash"), None) => Ok(Payment::Cash),
            (Some("split"), Some(cash)) => {
                let cash = crate::protocol::grammar::amount(cash)?;
                Ok(Payment::Split {
                    cash: Money::new(cash).map_err(|_| Errno::Malformed)?,
                })
            }
            _ => Err(Errno::Malformed),
        }
    }

    /// `count` (protocol.md §6.2), at most `max`; `None` when absent.
    fn count(&self, max: u32) -> Result<Option<u32>, Errno> {
        let n = self
            .attr2
            .get("count")
            .map(|v| crate::protocol::attr2::positive(v, 4))
            .transpose()?;
        match n {
            Some(n) if n > max => Err(Errno::Malformed),
            n => Ok(n),
        }
    }

    /// `days` a visits lot is valid; `None`: for ever.
    fn days(&self) -> Result<Option<u32>, Errno> {
        self.attr2
            .get("days")
            .map(|v| crate::protocol::attr2::positive(v, 5))
            .transpose()
    }

    /// `limit`, within the op's largest; `default` when absent.
    fn limit(&self, op: Op, default: u32) -> Result<u32, Errno> {
        match self.attr2.get("limit") {
            None => Ok(default),
            Some(v) => crate::protocol::attr2::limit(v, crate::protocol::attr2::max_limit(op)),
        }
    }

    fn card(&self) -> Result<String, Errno> {
        self.form.attr1.clone().ok_or(Errno::Malformed)
    }

    fn original(&self) -> Result<OriginalRef, Errno> {
        Ok(OriginalRef {
            terminal: self.text("terminal"),
            order_no: self.card()?,
        })
    }

    fn opening(&self) -> Result<Opening, Errno> {
        let balance = crate::protocol::grammar::amount(&self.required("balance")?)?;
        Ok(Opening {
            balance: Money::new(balance).map_err(|_| Errno::Malformed)?,
            points: self
                .required("points")?
                .parse()
                .map_err(|_| Errno::Malformed)?,
        })
    }

    fn member(&self) -> Result<NewMember, Errno> {
        let birthday = self
            .attr2
            .get("birthday")
            .map(|b| NaiveDate::parse_from_str(b, "%Y-%m-%d").map_err(|_| Errno::Malformed))
            .transpose()?;
        Ok(NewMember {
            name: self.required("name")?,
            phone: self.required("phone")?,
            birthday,
            referrer: self.text("referrer"),
        })
    }
}

impl Request {
    /// The one parse of a checked inner form. `InnerForm::parse` checked the
    /// grammars and presence rules, so what is refused here (1001) is a
    /// value the grammar admits but the ledger cannot hold, or a hand-built
    /// form that skipped those checks.
    pub fn from_form(form: &InnerForm) -> Result<Request, Errno> {
        let f = Fields {
            form,
            attr2: form.attr2_form()?,
        };
        let operator = operator(form, &f)?;
        let body = match form.op {
            Op::Query | Op::Member | Op::History | Op::Visits => Body::Read(read(form.op, &f)?),
            op if op.is_office() => Body::Office(office(op, &f)?),
            op => Body::Posting(PostingReq {
                order_no: form.order_no.clone().ok_or(Errno::Malformed)?,
                op: posting(op, &f)?,
            }),
        };
        Ok(Request { operator, body })
    }

    pub fn op(&self) -> OpKind {
        match &self.body {
            Body::Read(r) => match r.op {
                ReadOp::Query => OpKind::Query,
                ReadOp::Member => OpKind::Member,
                ReadOp::History { .. } => OpKind::History,
                ReadOp::Visits => OpKind::Visits,
            },
            Body::Office(o) => match o {
                OfficeReq::Find { .. } => OpKind::Find,
                OfficeReq::Statement(_) => OpKind::Statement,
                OfficeReq::Settlement(_) => OpKind::Settlement,
                OfficeReq::Liability { .. } => OpKind::Liability,
            },
            Body::Posting(p) => p.op.kind(),
        }
    }

    pub fn order_no(&self) -> Option<&str> {
        match &self.body {
            Body::Read(_) | Body::Office(_) => None,
            Body::Posting(p) => Some(&p.order_no),
        }
    }

    /// Cards whose rows the store locks before deciding (it sorts them).
    /// `reverse`/`refund` lock the original's cards instead; `register`
    /// locks none (its card is new).
    pub fn cards_to_lock(&self) -> Vec<String> {
        match &self.body {
            Body::Read(r) => vec![r.card.clone()],
            Body::Office(_) => vec![],
            Body::Posting(p) => match &p.op {
                PostingOp::Register { .. }
                | PostingOp::Reverse { .. }
                | PostingOp::Refund { .. }
                | PostingOp::Capture { .. }
                | PostingOp::Void { .. } => {
                    vec![]
                }
                PostingOp::Transfer { card, to, .. } => vec![card.clone(), to.clone()],
                op => op.card().map(str::to_owned).into_iter().collect(),
            },
        }
    }

    /// A card number this request would create: the store serialises
    /// creators of one number so the loser sees 2012.
    pub fn card_to_create(&self) -> Option<&str> {
        match &self.body {
            Body::Posting(PostingReq {
                op: PostingOp::Register { card, .. },
                ..
            }) => Some(card),
            Body::Posting(PostingReq {
                op: PostingOp::Replace { new_card, .. },
                ..
            }) => Some(new_card),
            _ => None,
        }
    }

    /// `(terminal, order_no)` of the original a `reverse`/`refund` names.
    pub fn original<'a>(&'a self, own_terminal: &'a str) -> Option<(&'a str, &'a str)> {
        match &self.body {
            Body::Posting(PostingReq {
                op:
                    PostingOp::Reverse { original }
                    | PostingOp::Refund { original, .. }
                    | PostingOp::Capture { original, .. }
                    | PostingOp::Void { original },
                ..
            }) => Some((
                original.terminal.as_deref().unwrap_or(own_terminal),
                original.order_no.as_str(),
            )),
            _ => None,
        }
    }

    /// The card PIN the request carries, if any.
    pub fn pin(&self) -> Option<&PinText> {
        match &self.body {
            Body::Read(r) => r.pin.as_ref(),
            Body::Office(_) => None,
            Body::Posting(p) => match &p.op {
                PostingOp::Register { pin, .. }
                | PostingOp::Debit { pin, .. }
                | PostingOp::Redeem { pin, .. }
                | PostingOp::Transfer { pin, .. }
                | PostingOp::Close { pin, .. }
                | PostingOp::Hold { pin, .. }
                | PostingOp::VisitsAdd { pin, .. }
                | PostingOp::Visit { pin, .. } => pin.as_ref(),
                _ => None,
            },
        }
    }
}

impl PostingOp {
    pub fn kind(&self) -> OpKind {
        match self {
            PostingOp::Register { opening: None, .. } => OpKind::Register,
            PostingOp::Register {
                opening: Some(_), ..
            } => OpKind::Import,
            PostingOp::Debit { .. } => OpKind::Debit,
            PostingOp::Topup { .. } => OpKind::Topup,
            PostingOp::Points { .. } => OpKind::Points,
            PostingOp::Redeem { .. } => OpKind::Redeem,
            PostingOp::Reverse { .. } => OpKind::Reverse,
            PostingOp::Refund { .. } => OpKind::Refund,
            PostingOp::Transfer { .. } => OpKind::Transfer,
            PostingOp::Status { op, .. } => match op {
                StatusOp::Lost => OpKind::Lost,
                StatusOp::Found => OpKind::Found,
                StatusOp::Lock => OpKind::Lock,
                StatusOp::Unlock => OpKind::Unlock,
            },
            PostingOp::Replace { .. } => OpKind::Replace,
            PostingOp::Close { .. } => OpKind::Close,
            PostingOp::Hold { .. } => OpKind::Hold,
            PostingOp::Capture { .. } => OpKind::Capture,
            PostingOp::Void { .. } => OpKind::Void,
            PostingOp::VisitsAdd { .. } => OpKind::VisitsAdd,
            PostingOp::Visit { .. } => OpKind::Visit,
        }
    }

    /// The card the op names in `attr1` (`None` for `reverse`/`refund`,
    /// which name an order).
    pub fn card(&self) -> Option<&str> {
        match self {
            PostingOp::Register { card, .. }
            | PostingOp::Debit { card, .. }
            | PostingOp::Topup { card, .. }
            | PostingOp::Points { card, .. }
            | PostingOp::Redeem { card, .. }
            | PostingOp::Transfer { card, .. }
            | PostingOp::Status { card, .. }
            | PostingOp::Replace { card, .. }
            | PostingOp::Close { card, .. }
            | PostingOp::Hold { card, .. }
            | PostingOp::VisitsAdd { card, .. }
            | PostingOp::Visit { card, .. } => Some(card),
            PostingOp::Reverse { .. }
            | PostingOp::Refund { .. }
            | PostingOp::Capture { .. }
            | PostingOp::Void { .. } => None,
        }
    }
}

fn operator(form: &InnerForm, f: &Fields<'_>) -> Result<Operator, Errno> {
    let id = form.operator.clone().filter(|o| !o.is_empty());
    Ok(match (id, op_kind(form.op).is_manager_op()) {
        (None, false) => Operator::Unnamed,
        (Some(id), false) => Operator::Named(id),
        (Some(id), true) => Operator::Manager {
            id,
            mpin: f.pin("mpin").ok_or(Errno::Malformed)?,
        },
        (None, true) => return Err(Errno::Malformed),
    })
}

fn read(op: Op, f: &Fields<'_>) -> Result<ReadReq, Errno> {
    let op = match op {
        Op::Query => ReadOp::Query,
        Op::Member => ReadOp::Member,
        Op::Visits => ReadOp::Visits,
        _ => ReadOp::History {
            limit: f.limit(Op::History, DEFAULT_HISTORY_LIMIT)?,
        },
    };
    Ok(ReadReq {
        card: f.card()?,
        pin: f.pin("pin"),
        op,
    })
}

/// The ops of protocol.md §6.1.
fn office(op: Op, f: &Fields<'_>) -> Result<OfficeReq, Errno> {
    let number = |n: &str, digits: usize| {
        f.attr2
            .get(n)
            .map(|v| crate::protocol::attr2::count(v, digits))
            .transpose()
    };
    Ok(match op {
        Op::Find => OfficeReq::Find {
            key: f.card()?,
            limit: f.limit(op, FIND_LIMIT_DEFAULT)?,
        },
        Op::Statement => OfficeReq::Statement(StatementReq {
            card: f.card()?,
            from_ms: number("from", 15)?,
            to_ms: number("to", 15)?,
            after_txn_id: number("after", 18)?,
            limit: f.limit(op, STATEMENT_LIMIT_DEFAULT)?,
        }),
        Op::Settlement => OfficeReq::Settlement(SettlementReq {
            day: chrono::NaiveDate::parse_from_str(&f.card()?, "%Y-%m-%d")
                .map_err(|_| Errno::Malformed)?,
            store: f.text("store"),
            by: match f.attr2.get("by") {
                None | Some("op") => SettlementBy::Op,
                Some("terminal") => SettlementBy::Terminal,
                Some(_) => return Err(Errno::Malformed),
            },
        }),
        Op::Liability => OfficeReq::Liability { store: f.card()? },
        _ => return Err(Errno::Malformed),
    })
}

fn posting(op: Op, f: &Fields<'_>) -> Result<PostingOp, Errno> {
    let status = |op| -> Result<PostingOp, Errno> {
        Ok(PostingOp::Status {
            card: f.card()?,
            op,
        })
    };
    Ok(match op {
        Op::Register | Op::Import => PostingOp::Register {
            card: f.card()?,
            member: f.member()?,
            level: f.required("level")?,
            pin: f.pin("pin"),
            opening: (op == Op::Import).then(|| f.opening()).transpose()?,
        },
        Op::Debit => PostingOp::Debit {
            card: f.card()?,
            sale: f.amount()?,
            payment: f.payment()?,
            pin: f.pin("pin"),
        },
        Op::Topup => PostingOp::Topup {
            card: f.card()?,
            amount: f.amount()?,
            tender: f.tender()?,
        },
        Op::Points => PostingOp::Points {
            card: f.card()?,
            delta: f.points("delta")?,
            reason: f.required("reason")?,
        },
        Op::Redeem => PostingOp::Redeem {
            card: f.card()?,
            cost: f.points("cost")?,
            gift: f.required("gift")?,
            pin: f.pin("pin"),
        },
        Op::Reverse => PostingOp::Reverse {
            original: f.original()?,
        },
        Op::Refund => PostingOp::Refund {
            original: f.original()?,
            amount: f.amount()?,
        },
        Op::Transfer => PostingOp::Transfer {
            card: f.card()?,
            to: f.required("to")?,
            amount: f.amount()?,
            pin: f.pin("pin"),
        },
        Op::Lost => status(StatusOp::Lost)?,
        Op::Found => status(StatusOp::Found)?,
        Op::Lock => status(StatusOp::Lock)?,
        Op::Unlock => status(StatusOp::Unlock)?,
        Op::Replace => PostingOp::Replace {
            card: f.card()?,
            new_card: f.required("new")?,
        },
        Op::Close => PostingOp::Close {
            card: f.card()?,
            pin: f.pin("pin"),
        },
        Op::Hold => PostingOp::Hold {
            card: f.card()?,
            sale: f.amount()?,
            pin: f.pin("pin"),
            expires_s: match f.attr2.get("expires") {
                None => crate::protocol::attr2::HOLD_EXPIRES_DEFAULT_S,
                Some(v) => crate::protocol::attr2::hold_expires_s(v)?,
            },
        },
        Op::Capture => PostingOp::Capture {
            original: f.original()?,
            amount: f.amount()?,
        },
        Op::Void => PostingOp::Void {
            original: f.original()?,
        },
        Op::VisitsAdd => PostingOp::VisitsAdd {
            card: f.card()?,
            price: f.amount()?,
            service: f.required("service")?,
            count: f
                .count(crate::protocol::attr2::VISITS_COUNT_MAX)?
                .unwrap_or(1),
            days: f.days()?,
            payment: f.payment()?,
            pin: f.pin("pin"),
        },
        Op::Visit => PostingOp::Visit {
            card: f.card()?,
            service: f.required("service")?,
            count: f
                .count(crate::protocol::attr2::VISITS_COUNT_MAX)?
                .unwrap_or(1),
            pin: f.pin("pin"),
        },
        Op::Query
        | Op::Visits
        | Op::Member
        | Op::History
        | Op::Find
        | Op::Statement
        | Op::Settlement
        | Op::Liability => return Err(Errno::Malformed),
    })
}

//! The money rules of protocol.md §6, as pure "decide" functions.
//!
//! Each `decide_*` takes the rows involved, already loaded and locked by the
//! store, and the typed request, and returns either a refusal (an errno, plus
//! for a wrong PIN the counter the store must still write) or a [`Plan`]:
//! every balance and points delta, lot, status and PIN-counter change, and the
//! answer row. The store applies a plan in one transaction and computes
//! nothing itself, so every rule lives, and is tested, here. No I/O, no SQL,
//! no async.
//!
//! Rounding: money to 0.01 half-up, points floored (see [`money`]).
//!
//! How the store applies a decision, in one transaction:
//! - `Err(Refusal)`: answer its errno; if it carries a [`PinWrite`], write the
//!   card's PIN counter (and `Locked` status) and commit that alone.
//! - `Ok(Plan)`: insert `new_card` (and its member) first, active with zero
//!   balance and points; then for each [`CardChange`], in order: one
//!   `postings` row with its balance and points deltas; the card's balance,
//!   points, status and PIN counter set to the change's values; points taken
//!   from `lots_taken` and given back to `lots_restored`; `lots_created`
//!   inserted, their ids kept with the posting as [`CardChange::effect`] so a
//!   later reverse can undo exactly those lots. Then the `original`'s row
//!   updated, and [`Plan::answer`] stored with `txn_id`, `posted_at`,
//!   `replayed` as the answer row.
//! - Before an op that reads a card's points, post [`decide_expire`] for it in
//!   the same transaction, so answers and spending agree on live points.
//! - The business day of a posting is [`business_day`] of its time in the
//!   configured zone; a reverse passes today's.

pub mod answer_row;
pub mod lots;
pub mod money;
pub mod ops_card;
pub mod ops_holds;
pub mod ops_money;
pub mod ops_points;
pub mod plan;
pub mod request;
pub mod rules;
pub mod state;
pub mod visits;

#[cfg(test)]
mod card_tests;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod holds_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod model;
#[cfg(test)]
mod ops_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod split_tests;
#[cfg(test)]
mod validity_tests;
#[cfg(test)]
mod vectors_tests;
#[cfg(test)]
mod visits_tests;

pub use lots::{live_points, Lot, LotId, LotTake, NewLot, Ts};
pub use money::{round_half_up_cents, Money, Points, MAX_POINTS};
pub use ops_card::{
    check_read, decide_close, decide_register, decide_replace, decide_status, CloseReq,
    RegisterReq, ReplaceReq, StatusOp,
};
pub use ops_holds::{
    decide_capture, decide_hold, decide_void, expire_holds, ActiveHold, CaptureReq, HoldReq,
    VoidReq, MAX_ACTIVE_HOLDS,
};
pub use ops_money::{
    decide_debit, decide_refund, decide_reverse, decide_topup, decide_transfer, CardWithLots,
    DebitReq, RefundReq, ReverseReq, TopupReq, TransferReq,
};
pub use ops_points::{decide_expire, decide_points, decide_redeem, PointsReq, RedeemReq};
pub use plan::{
    business_day, Answer, AnswerRow, CardChange, Decision, Effect, HoldAnswer, HoldRef, HoldTerms,
    LedgerConfig, MemberRef, NewCard, NewMember, Original, OriginalUpdate, PinSource, Plan,
    SplitLegs, VisitsAnswer,
};
pub use rules::{BonusRule, Level, Limits};
pub use state::{
    authorize, check_pin, require_active, CardState, CardStatus, OpKind, Payment, Pin, PinWrite,
    Refusal, Role, Standing, Tender, TerminalKind, ALL_STORES, PIN_TRIES,
};
pub use visits::{
    decide_visit, decide_visits_add, decide_visits_expire, live_visits, visits_by_service,
    ServiceVisits, VisitReq, VisitsAddReq,
};

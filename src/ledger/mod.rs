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

pub mod lots;
pub mod money;
pub mod ops_card;
pub mod ops_money;
pub mod ops_points;
pub mod plan;
pub mod rules;

#[cfg(test)]
mod card_tests;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod model;
#[cfg(test)]
mod ops_tests;

pub use lots::{live_points, Lot, LotId, LotTake, NewLot, Ts};
pub use money::{round_half_up_cents, Money, Points, MAX_POINTS};
pub use ops_card::{
    check_read, decide_close, decide_register, decide_replace, decide_status, CloseReq,
    RegisterReq, ReplaceReq, StatusOp,
};
pub use ops_money::{
    decide_debit, decide_refund, decide_reverse, decide_topup, decide_transfer, DebitReq,
    RefundReq, ReverseReq, TopupReq, TransferReq,
};
pub use ops_points::{decide_expire, decide_points, decide_redeem, PointsReq, RedeemReq};
pub use plan::{
    authorize, Answer, AnswerRow, CardChange, CardState, CardStatus, Decision, Effect,
    LedgerConfig, OpKind, Original, OriginalUpdate, Pin, Plan, Refusal, Role, Tender,
};
pub use rules::{BonusRule, Level};

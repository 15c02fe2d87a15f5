//! The ledger through `store::txn::run`: every op's success path and its
//! errnos, asserting the database afterwards; idempotency; expiry. One
//! module per area; the shared setup (a fresh database, `req`, `Ledger`)
//! is in `ledger_support`.

pub(crate) mod back_office;
mod card_status;
mod cards;
mod contention;
mod errnos;
mod holds;
mod kept_statements;
mod limits;
mod money;
mod office;
mod operators;
mod partitions;
mod points;
mod replays;
mod reversals;
mod split_tender;
mod statements;
mod validity;
mod visits;

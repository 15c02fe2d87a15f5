//! cardswitch: a member-card transaction switch.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod import;
pub mod keys;
pub mod server;
pub mod store;

pub use error::{Error, Result};

// The pure core lives in its own crate so that it cannot reach for I/O; the
// shell names it by the same paths it always has.
pub use cardswitch_core::{crypto, integrity, ledger, protocol};

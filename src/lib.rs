//! cardswitch: a member-card transaction switch.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod error;
pub mod integrity;
pub mod keys;
pub mod ledger;
pub mod protocol;
pub mod server;
pub mod store;

pub use error::{Error, Result};

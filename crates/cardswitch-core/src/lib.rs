//! cardswitch's pure core: the wire format, the cryptography, the ledger's
//! money rules and the integrity images. Everything here works on bytes and
//! values; nothing opens a socket or a file, issues SQL or awaits. The
//! daemon crate (`cardswitch`) is the shell around it.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod integrity;
pub mod ledger;
pub mod protocol;

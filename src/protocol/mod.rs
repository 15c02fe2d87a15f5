//! The wire format of protocol.md, and nothing else: no I/O, no tokio, no SQL.
pub mod errno;

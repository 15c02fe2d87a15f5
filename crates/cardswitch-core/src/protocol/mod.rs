//! The wire format of protocol.md, and nothing else: forms, typed requests,
//! the canonical strings that are signed or MACed, and XML answers.
//!
//! Pure functions over bytes: no I/O, no SQL, no crypto calls, and this
//! module never imports tokio. Every parser takes `&[u8]` or `&str`, never
//! panics, and refuses with an [`errno::Errno`] (usually 1001).
pub mod answer;
pub mod attr2;
pub mod canonical;
pub mod errno;
pub mod events;
pub mod fault;
pub mod form;
pub mod grammar;
pub mod message;
pub mod op;
pub mod xml;

pub use answer::{HelloAnswer, LoginAnswer};
pub use errno::Errno;
pub use message::{HelloRequest, InnerForm, LoginRequest, Op, TxnRequest};
pub use xml::{Answer, AnswerBody, Row, Rows};

#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod xsd_tests;

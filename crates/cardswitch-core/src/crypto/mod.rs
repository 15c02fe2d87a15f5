//! Cryptography as pure functions over bytes: RSA (aws-lc-rs), AES-256-GCM,
//! HKDF, HMAC, key sealing and keyed hashes. No I/O, no SQL, no async; the
//! only outside input is the operating system's random generator.
//!
//! Key material lives in [`Secret32`] and [`SecretVec`], which zeroize on
//! drop and never print their contents.

pub mod aead;
pub mod kdf;
pub mod keyed_hash;
pub mod mac;
mod pem;
pub mod row;
pub mod rsa;
pub mod seal;
pub mod secret;

#[cfg(test)]
mod rsa_reference;

pub use secret::{Secret32, SecretVec};

/// What can go wrong in this module. Messages name the kind of failure only:
/// they end up in logs, so they must never carry key or plaintext bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key that could not be parsed, has an unsupported size, or does not
    /// fit the operation.
    #[error("key rejected")]
    BadKey,
    /// Authentication or decryption failed (AES-GCM tag, RSA-OAEP padding,
    /// sealed blob). Deliberately says nothing about why.
    #[error("decryption failed")]
    Decrypt,
    /// An input of the wrong length (IV, key, plaintext too long for OAEP).
    #[error("input has the wrong length")]
    BadLength,
    /// Malformed text or binary encoding (PEM, base64, key file, blob version).
    #[error("malformed encoding")]
    Encoding,
}

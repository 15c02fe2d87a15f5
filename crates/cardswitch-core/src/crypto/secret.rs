//! Containers for key material: zeroized on drop, never printed.
//!
//! Rust may leave copies behind when a value is moved (stack temporaries,
//! reallocations), so this is best effort; the containers avoid the copies
//! they can (no growth after construction, filled in place).

use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// Exactly 32 secret bytes: an AES-256 key, an HMAC key, `K_day`, `K_sid`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// 32 bytes from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut s = Secret32::zeroed();
        OsRng.fill_bytes(&mut s.0);
        s
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Secret32(bytes)
    }

    /// Copies `bytes`, which must be exactly 32 long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadLength)?;
        let mut s = Secret32::zeroed();
        s.0.copy_from_slice(arr);
        Ok(s)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// For filling a key in place inside this module, so no copy of it is
    /// left in a temporary.
    pub(super) fn zeroed() -> Self {
        Secret32([0u8; 32])
    }

    pub(super) fn expose_mut(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }
}

// Printing a key by accident (a `{:?}` in a log line) must not leak it; a
// redacted Debug still lets structs that hold keys derive Debug.
impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// Secret bytes of any length on the heap: decrypted plaintexts, PKCS#8 keys.
/// The whole allocation, spare capacity included, is zeroized on drop.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretVec(Vec<u8>);

impl SecretVec {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretVec(bytes)
    }

    /// Copies `bytes` into an allocation of exactly their size.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretVec(bytes.to_vec())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// For writing into the allocation in place (decrypting into it).
    pub(super) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// The bytes as a [`Secret32`]; `BadLength` unless exactly 32 long.
    pub fn to_secret32(&self) -> Result<Secret32, CryptoError> {
        Secret32::from_slice(&self.0)
    }
}

impl From<Vec<u8>> for SecretVec {
    fn from(bytes: Vec<u8>) -> Self {
        SecretVec(bytes)
    }
}

impl std::fmt::Debug for SecretVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretVec(<redacted>, {} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_differ() {
        let a = Secret32::random();
        let b = Secret32::random();
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), &[0u8; 32]);
    }

    #[test]
    fn from_slice_checks_length() {
        assert_eq!(
            Secret32::from_slice(&[7u8; 31]).unwrap_err(),
            CryptoError::BadLength
        );
        assert_eq!(
            Secret32::from_slice(&[7u8; 33]).unwrap_err(),
            CryptoError::BadLength
        );
        let s = Secret32::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(s.expose(), &[7u8; 32]);
        assert_eq!(Secret32::from_bytes([7u8; 32]).expose(), s.expose());
    }

    #[test]
    fn debug_never_shows_bytes() {
        let s = Secret32::from_bytes([0xAB; 32]);
        let v = SecretVec::from_slice(b"hunter2");
        let text = format!("{s:?} {v:?}");
        assert!(text.contains("redacted"));
        assert!(!text.to_lowercase().contains("abab"));
        assert!(!text.contains("171")); // 0xAB as a decimal byte
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("104")); // 'h' as a decimal byte
    }

    #[test]
    fn zeroize_clears_in_place() {
        let mut s = Secret32::from_bytes([9u8; 32]);
        s.zeroize();
        assert_eq!(s.expose(), &[0u8; 32]);
        let mut v = SecretVec::from_slice(&[9u8; 40]);
        v.zeroize();
        assert!(v.is_empty());
    }

    #[test]
    fn secret_vec_to_secret32() {
        let v = SecretVec::new(vec![1u8; 32]);
        assert_eq!(v.to_secret32().unwrap().expose(), &[1u8; 32]);
        assert_eq!(
            SecretVec::new(vec![1u8; 12]).to_secret32().unwrap_err(),
            CryptoError::BadLength
        );
        assert_eq!(v.len(), 32);
    }
}

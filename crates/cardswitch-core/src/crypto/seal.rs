//! Sealing stored secrets (day keys, `K_day`, row keys) under the master key,
//! and the master key's file format.
//!
//! Blob: `version (1 byte, = 1) || iv (12) || AES-256-GCM ciphertext || tag (16)`.
//! The version byte is also prefixed to the associated data, so a blob cannot
//! be re-labelled as another format version.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use super::aead::{self, IV_LEN, TAG_LEN};
use super::mac::sha256;
use super::{CryptoError, Secret32, SecretVec};

const VERSION: u8 = 1;
const FILE_HEADER: &str = "cardswitch-master-key v1";
const ID_LEN: usize = 16;

/// The master key and its id. The id is stored beside everything sealed
/// under the key, so rotation can tell which key opens what.
pub struct MasterKey {
    id: String,
    key: Secret32,
}

impl MasterKey {
    pub fn new(key: Secret32) -> Self {
        MasterKey {
            id: Self::id_for(&key),
            key,
        }
    }

    pub fn generate() -> Self {
        Self::new(Secret32::random())
    }

    /// First 16 hex digits of SHA-256("cardswitch master id\n" || key): names
    /// the key without revealing anything usable about it (64 bits of a
    /// one-way hash of a 256-bit random key).
    pub fn id_for(key: &Secret32) -> String {
        let mut input = Zeroizing::new(Vec::with_capacity(21 + 32));
        input.extend_from_slice(b"cardswitch master id\n");
        input.extend_from_slice(key.expose());
        let mut id = hex::encode(sha256(&input));
        id.truncate(ID_LEN);
        id
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn key(&self) -> &Secret32 {
        &self.key
    }

    /// Seals `plaintext` with a fresh random IV; `aad` names what is sealed
    /// (table, row, purpose) so a blob cannot be moved to another place.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let iv = aead::random_iv();
        let ct = aead::seal(&self.key, &iv, &versioned(aad), plaintext);
        let mut blob = Vec::with_capacity(1 + IV_LEN + ct.len());
        blob.push(VERSION);
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&ct);
        blob
    }

    /// Opens a blob from [`Self::seal`]. An unknown version byte is
    /// `Encoding`; a wrong key, wrong `aad`, or any change to the blob is
    /// `Decrypt`.
    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<SecretVec, CryptoError> {
        match blob.first() {
            Some(&VERSION) => {}
            _ => return Err(CryptoError::Encoding),
        }
        if blob.len() < 1 + IV_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (iv, ct) = blob[1..].split_at(IV_LEN);
        aead::open(&self.key, iv, &versioned(aad), ct)
    }

    /// The key file: `cardswitch-master-key v1\n{id}\n{base64 key}\n`.
    /// Zeroized on drop; the caller writes it with mode 0600.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(FILE_HEADER.len() + ID_LEN + 47));
        text.push_str(FILE_HEADER);
        text.push('\n');
        text.push_str(&self.id);
        text.push('\n');
        STANDARD.encode_string(self.key.expose(), &mut text);
        text.push('\n');
        text
    }

    /// Parses exactly the text [`Self::to_file_text`] writes: anything else
    /// (CRLF, extra lines, missing final newline) is `Encoding`, and an id
    /// that does not match the key is `BadKey` (a damaged or edited file).
    pub fn from_file_text(text: &str) -> Result<Self, CryptoError> {
        let body = text.strip_suffix('\n').ok_or(CryptoError::Encoding)?;
        let mut lines = body.split('\n');
        let (Some(header), Some(id), Some(b64), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(CryptoError::Encoding);
        };
        if header != FILE_HEADER
            || id.len() != ID_LEN
            || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            || b64.len() != 44
        {
            return Err(CryptoError::Encoding);
        }
        let mut key = Secret32::zeroed();
        let n = STANDARD
            .decode_slice(b64, key.expose_mut())
            .map_err(|_| CryptoError::Encoding)?;
        if n != 32 {
            return Err(CryptoError::Encoding);
        }
        let master = MasterKey::new(key);
        if master.id != id {
            return Err(CryptoError::BadKey);
        }
        Ok(master)
    }
}

fn versioned(aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + aad.len());
    out.push(VERSION);
    out.extend_from_slice(aad);
    out
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.id)
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;

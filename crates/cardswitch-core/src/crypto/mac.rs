//! HMAC-SHA256, SHA-256, and constant-time comparison.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 under `key` over the concatenation of `parts`. Taking parts
/// lets callers MAC `prefix || body` without copying the body. Through
/// aws-lc-rs, whose key schedule (the padded key) lives in memory it
/// cleanses when dropped (issue 12: the RustCrypto hmac crate's did not).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// An HMAC-SHA256 key made ready once: its padded inner and outer states
/// are computed when it is made, not for every MAC (that was 55,000
/// instructions of a debit's, ten MACs each setting up the row key again;
/// callgrind, issue 14). aws-lc-rs cleanses them when the key is dropped.
/// Deliberately not `Debug`.
#[derive(Clone)]
pub struct MacKey(hmac::Key);

impl MacKey {
    pub fn new(key: &[u8]) -> MacKey {
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `tag` is the MAC of `parts`, compared in constant time.
    #[must_use]
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        ct_eq(&self.sign(parts), tag)
    }
}

/// Whether `tag` is the HMAC-SHA256 of `parts` under `key`, compared in
/// constant time. A tag of the wrong length is simply false.
#[must_use]
pub fn verify_hmac(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    ct_eq(&hmac_sha256(key, parts), tag)
}

/// Constant-time equality of two byte strings. The time depends on the
/// lengths (which are public here: MAC and hash sizes), never on the content.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// By aws-lc, as the HMACs are (its assembly, not `sha2`'s portable code:
/// 2,800 fewer instructions a txn for the two digests a txn makes).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_ready_key_macs_as_the_raw_one() {
        let k = MacKey::new(b"Jefe");
        let parts: &[&[u8]] = &[b"what do ", b"ya want for nothing?"];
        assert_eq!(k.sign(parts), hmac_sha256(b"Jefe", parts));
        assert!(k.verify(parts, &hmac_sha256(b"Jefe", parts)));
        assert!(!k.verify(parts, &hmac_sha256(b"Jeff", parts)));
    }

    #[test]
    fn parts_are_concatenated() {
        let whole = hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"]);
        let split = hmac_sha256(b"Jefe", &[b"what do ", b"", b"ya want for nothing?"]);
        assert_eq!(whole, split);
    }

    #[test]
    fn verify_accepts_right_tag_only() {
        let key = [3u8; 32];
        let parts: &[&[u8]] = &[b"POST\n/v1/txn\n", b"terminal=T1&sid=x"];
        let tag = hmac_sha256(&key, parts);
        assert!(verify_hmac(&key, parts, &tag));

        let mut flipped = tag;
        flipped[31] ^= 1;
        assert!(!verify_hmac(&key, parts, &flipped));
        assert!(!verify_hmac(&key, parts, &tag[..31]));
        assert!(!verify_hmac(&key, parts, &[]));
        let mut longer = tag.to_vec();
        longer.push(0);
        assert!(!verify_hmac(&key, parts, &longer));
        assert!(!verify_hmac(&[4u8; 32], parts, &tag));
        assert!(!verify_hmac(&key, &[b"POST\n/v1/txn\n"], &tag));
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

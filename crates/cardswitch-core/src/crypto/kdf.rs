//! HKDF-SHA256 with 32 bytes of output (RFC 5869) and the protocol's key
//! derivations (protocol.md §2 and §3.2).

use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};

use super::mac::MacKey;
use super::Secret32;

const INFO_ENC: &[u8] = b"cardswitch v1 enc";
const INFO_MAC: &[u8] = b"cardswitch v1 mac";
const INFO_WRAP: &[u8] = b"cardswitch v1 wrap";

/// The output length of [`hkdf32`], as aws-lc-rs asks for it.
struct Len32;

impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// HKDF-SHA256 (extract then expand) to 32 bytes, through aws-lc-rs, whose
/// pseudorandom key lives in memory it cleanses (issue 12; the RustCrypto
/// hkdf crate left copies of it behind). An empty `salt` is the HMAC key of
/// no bytes, which HMAC pads to the 32 zero bytes RFC 5869 and protocol.md
/// §1 specify.
pub fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> Secret32 {
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    let mut out = Secret32::zeroed();
    prk.expand(&[info], Len32)
        .and_then(|okm| okm.fill(out.expose_mut()))
        .expect("32 bytes is far below HKDF-SHA256's 8160-byte limit");
    out
}

/// `K_sid = HKDF(ikm=K_day, salt="", info="cardswitch v1 sid\n{terminal}\n{sid}")`.
/// Both values are grammar-checked before they get here (no `\n` inside), so
/// the info string is unambiguous.
pub fn session_key(k_day: &Secret32, terminal: &str, sid: &str) -> Secret32 {
    let info = format!("cardswitch v1 sid\n{terminal}\n{sid}");
    hkdf32(k_day.expose(), b"", info.as_bytes())
}

/// The two keys a session uses: `enc` for AES-GCM of `data`, `mac` for the
/// request and answer MACs. Separate keys so that neither use can be turned
/// against the other.
#[derive(Clone)]
pub struct SessionKeys {
    pub enc: Secret32,
    pub mac: Secret32,
    /// `mac` made ready once: a request and its answer are MACed with it,
    /// and setting the key up again for each was 1.7 % of the daemon's
    /// instructions per txn (issue 14).
    pub mac_key: MacKey,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    pub fn derive(k_sid: &Secret32) -> Self {
        let mac = hkdf32(k_sid.expose(), b"", INFO_MAC);
        SessionKeys {
            enc: hkdf32(k_sid.expose(), b"", INFO_ENC),
            mac_key: MacKey::new(mac.expose()),
            mac,
        }
    }
}

/// The key that wraps `K_sid` in the login answer:
/// `HKDF(ikm=S, salt=server_random, info="cardswitch v1 wrap")`.
pub fn wrap_key(s: &Secret32, server_random: &[u8]) -> Secret32 {
    hkdf32(s.expose(), server_random, INFO_WRAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0b_u8; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        // The first 32 of the RFC's 42 OKM bytes: HKDF output is a prefix
        // of any longer output with the same inputs.
        let okm = unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf");
        assert_eq!(hkdf32(&ikm, &salt, &info).expose().as_slice(), okm);
    }

    #[test]
    fn rfc5869_test_case_3_empty_salt_and_info() {
        let ikm = [0x0b_u8; 22];
        let okm = unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
        assert_eq!(hkdf32(&ikm, b"", b"").expose().as_slice(), okm);
        // "Empty salt means 32 zero bytes" (protocol.md §1).
        assert_eq!(hkdf32(&ikm, &[0u8; 32], b"").expose().as_slice(), okm);
    }

    // Expected values computed independently with Python `cryptography`'s
    // HKDF (SHA256, length 32); also usable as proto-spec test vectors.
    #[test]
    fn protocol_derivations_known_answers() {
        let k_day = Secret32::from_slice(&(0u8..32).collect::<Vec<_>>()).unwrap();
        let k_sid = session_key(&k_day, "T001", "sid-42");
        assert_eq!(
            hex::encode(k_sid.expose()),
            "a996f514defcb104fa2268911246b38995023bb5046c0638625d640502779297"
        );
        let keys = SessionKeys::derive(&k_sid);
        assert_eq!(
            hex::encode(keys.enc.expose()),
            "0249b40a40b6727328669560bee3b5398b57fdc5c96c5348a24176c83e76e3f8"
        );
        assert_eq!(
            hex::encode(keys.mac.expose()),
            "9b7fee066655bf8dfa0db6d1bc456e3145f35df58cfb8867647add0fa2924d8a"
        );
        let s = Secret32::from_bytes([0x5a; 32]);
        let server_random: Vec<u8> = (100u8..132).collect();
        assert_eq!(
            hex::encode(wrap_key(&s, &server_random).expose()),
            "49079b099791ca786d3c7e55863e0a9508554cab6bb96a14d9e9c52218683a9c"
        );
    }

    #[test]
    fn derivations_separate_sessions_and_uses() {
        let k_day = Secret32::random();
        let a = session_key(&k_day, "T001", "s1");
        let b = session_key(&k_day, "T001", "s2");
        let c = session_key(&k_day, "T002", "s1");
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        assert_eq!(a.expose(), session_key(&k_day, "T001", "s1").expose());
        let keys = SessionKeys::derive(&a);
        assert_ne!(keys.enc.expose(), keys.mac.expose());
        assert_ne!(keys.enc.expose(), a.expose());
    }

    #[test]
    fn session_keys_debug_is_redacted() {
        let keys = SessionKeys::derive(&Secret32::from_bytes([1; 32]));
        let text = format!("{keys:?}");
        assert!(text.contains("redacted"));
    }
}

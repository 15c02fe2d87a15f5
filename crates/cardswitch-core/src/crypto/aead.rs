//! AES-256-GCM with a 12-byte IV and the 16-byte tag appended to the
//! ciphertext (protocol.md §1).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;

use super::{CryptoError, Secret32, SecretVec};

pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// A fresh IV from the operating system's CSPRNG. With random 96-bit IVs a
/// key stays safe for about 2^32 messages, far more than one business day of
/// a session or the master key's use between rotations.
pub fn random_iv() -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    iv
}

fn cipher(key: &Secret32) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()))
}

/// Encrypts `plaintext` and returns ciphertext || 16-byte tag. The caller
/// supplies the IV (normally [`random_iv`]) because the protocol sends it
/// beside the ciphertext; it must never repeat under one key.
pub fn seal(key: &Secret32, iv: &[u8; IV_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    cipher(key)
        .encrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption fails only for inputs over 64 GiB")
}

/// Decrypts ciphertext || tag. An IV that is not exactly 12 bytes is
/// `BadLength` (a malformed request, errno 1001); every authentication
/// failure, a too-short input included, is `Decrypt` and nothing more.
pub fn open(
    key: &Secret32,
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<SecretVec, CryptoError> {
    if iv.len() != IV_LEN {
        return Err(CryptoError::BadLength);
    }
    cipher(key)
        .decrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(SecretVec::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce as LcNonce, UnboundKey, AES_256_GCM};

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn key(hex_key: &str) -> Secret32 {
        Secret32::from_slice(&unhex(hex_key)).unwrap()
    }

    // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
    // (AES-256, 96-bit IV, with AAD), as used by NIST's GCM validation.
    const TC16_KEY: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const TC16_IV: &str = "cafebabefacedbaddecaf888";
    const TC16_AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const TC16_PT: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                           1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const TC16_CT: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                           8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const TC16_TAG: &str = "76fc6ece0f4e1768cddf8853bb2d551b";

    #[test]
    fn gcm_spec_test_case_16() {
        let k = key(TC16_KEY);
        let iv: [u8; 12] = unhex(TC16_IV).try_into().unwrap();
        let aad = unhex(TC16_AAD);
        let pt = unhex(TC16_PT);
        let sealed = seal(&k, &iv, &aad, &pt);
        assert_eq!(hex::encode(&sealed), format!("{TC16_CT}{TC16_TAG}"));
        assert_eq!(open(&k, &iv, &aad, &sealed).unwrap().expose(), pt);
    }

    #[test]
    fn gcm_spec_test_cases_13_and_14() {
        let k = Secret32::from_bytes([0; 32]);
        let iv = [0u8; 12];
        assert_eq!(
            hex::encode(seal(&k, &iv, b"", b"")),
            "530f8afbc74536b9a963b4f1c4cb738b"
        );
        assert_eq!(
            hex::encode(seal(&k, &iv, b"", &[0u8; 16])),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
    }

    #[test]
    fn agrees_with_aws_lc() {
        let k = Secret32::random();
        for len in [0usize, 1, 15, 16, 17, 168, 1000] {
            let iv = random_iv();
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let aad = b"cardswitch-v1-req\nT001\nsid\n1795000000000";
            let ours = seal(&k, &iv, aad, &pt);

            let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k.expose()).unwrap());
            let mut theirs = pt.clone();
            lc.seal_in_place_append_tag(
                LcNonce::assume_unique_for_key(iv),
                Aad::from(aad),
                &mut theirs,
            )
            .unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(ours.len(), len + TAG_LEN);
            assert_eq!(open(&k, &iv, aad, &theirs).unwrap().expose(), pt);
        }
    }

    #[test]
    fn open_rejects_tampering() {
        let k = Secret32::random();
        let iv = random_iv();
        let sealed = seal(&k, &iv, b"aad", b"the plaintext");
        assert!(open(&k, &iv, b"aad", &sealed).is_ok());

        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(&k, &iv, b"aad", &bad).unwrap_err(),
                CryptoError::Decrypt
            );
        }
        for cut in [0, 1, TAG_LEN - 1, TAG_LEN, sealed.len() - 1] {
            assert_eq!(
                open(&k, &iv, b"aad", &sealed[..cut]).unwrap_err(),
                CryptoError::Decrypt
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(
            open(&k, &iv, b"aad", &longer).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            open(&k, &iv, b"aaD", &sealed).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            open(&k, &iv, b"", &sealed).unwrap_err(),
            CryptoError::Decrypt
        );
        let mut other_iv = iv;
        other_iv[0] ^= 1;
        assert_eq!(
            open(&k, &other_iv, b"aad", &sealed).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            open(&Secret32::random(), &iv, b"aad", &sealed).unwrap_err(),
            CryptoError::Decrypt
        );
    }

    #[test]
    fn open_rejects_iv_of_wrong_length() {
        let k = Secret32::random();
        let iv = random_iv();
        let sealed = seal(&k, &iv, b"", b"x");
        let mut iv16 = iv.to_vec();
        iv16.extend_from_slice(&[0; 4]);
        assert_eq!(
            open(&k, &iv16, b"", &sealed).unwrap_err(),
            CryptoError::BadLength
        );
        assert_eq!(
            open(&k, &iv[..8], b"", &sealed).unwrap_err(),
            CryptoError::BadLength
        );
        assert_eq!(
            open(&k, &[], b"", &sealed).unwrap_err(),
            CryptoError::BadLength
        );
    }

    #[test]
    fn random_ivs_differ() {
        assert_ne!(random_iv(), random_iv());
    }
}

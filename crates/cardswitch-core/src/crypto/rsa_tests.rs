use super::test_keys::{k2048, other2048};
use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

// A public key and two signatures made with the OpenSSL 3.0 command line:
// `openssl dgst -sha256 -sign k.pem -sigopt rsa_padding_mode:pss
//  -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256` (and saltlen 20).
const OPENSSL_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAplin81GiyXF87qr5keLE
SB5wmjqB4PmAdavWFYB3F8/HbUqaG95aM76+t/7JmpTbmcbzhHkIP5a/EzGdOPbH
BKqF+iLyzCrD+UQiTXkI+iEQweoG4Ww3CrWXPVj5igGScPueypNlf/YFMqdGfI7x
1xHJhpwcx52H5NRsd3R91SO4LzIw0KtfdCzdHteNrLP8XvM4bv3nJUdeqwfmQiVJ
nJpnCopY122LIAY5Hzjtr25YIR7+c0Ti+Rtgy2SdRJa26nXf+e4QtNg1NZF8OQlP
FAejGOxezuyptHa01AHmL+DuyziWI8zfHFdW4mWajXNfpjeo7rLVhbcsm1YboP7b
MwIDAQAB
-----END PUBLIC KEY-----
";
const OPENSSL_FINGERPRINT: &str =
    "b4cc2c1fc23ebabd973b548bd89e3730d1cb57d8d5dfc1b7b3724db18ebcda8b";
const OPENSSL_MSG: &[u8] = b"cardswitch-v1-signer\nS1\n1795000000000\nAAAA";
const OPENSSL_SIG_SALT32: &str = "dpHR7r4AbsBRRU0zgJfTpt3H269phZ6SVYOEFX693phAbOvm5ZSddMlMZDG3rKLG/ZlBctB+MOVmrZ+VfNHRWSjmWZqIV0h3wThov2InaZnFxVHTHHmfkgK0XuHB7vPe1mXMeeVAhyyT6PdH54IODVPtxdj93U0+1XNWp2CPBda46e+kI1NFadMJV20UFI7vNBrJRaIG7z7sMoFncNTHtUUyBnbzDFKdGjA/kN3v9MNlvta2mBgg5OGnLVwuM32Cfqw8OUDx7WNy7LyKkXRy+my6jaQkiYgvztJvYs8ytxNsiSd4//UiYyUYW+csFaGJ4BQsW0uGKzwlCImlC086ng==";
const OPENSSL_SIG_SALT20: &str = "kFN2lm/cN0an1D1JqPelnj/H3aFhbTzdtws1ckZiolyNU7OAis3VxNQppAlHs/qdgU5WQbqIIGuHv5+2c0CXw+nxeh8wUsdu/WwO120IHBmtb2lexPY7WyKUQhvw74upXjwiP3Y0gMgjYq/Pp6zUAEVbSzXuutzvdPs0SSwe0JYT5l+v9OSJiGWX/HYuysgvxLB3PpP7d/3ar7Sz4fPyGvTzcuYrsZ0UwYPxSXrow3i37aFe/V0PHwOq7ruPkdVJZqQIXzaAJNbTIXfJivSg6TdBeawaPSxgDkP18uAElXaHAgoBBfNY92CZL/Yz9/IoDAZzuVq/ikNn05BVC7xCEA==";
// The same key as a bare PKCS#1 RSAPublicKey, which is not an SPKI.
const OPENSSL_PKCS1_B64: &str = "MIIBCgKCAQEAplin81GiyXF87qr5keLESB5wmjqB4PmAdavWFYB3F8/HbUqaG95aM76+t/7JmpTbmcbzhHkIP5a/EzGdOPbHBKqF+iLyzCrD+UQiTXkI+iEQweoG4Ww3CrWXPVj5igGScPueypNlf/YFMqdGfI7x1xHJhpwcx52H5NRsd3R91SO4LzIw0KtfdCzdHteNrLP8XvM4bv3nJUdeqwfmQiVJnJpnCopY122LIAY5Hzjtr25YIR7+c0Ti+Rtgy2SdRJa26nXf+e4QtNg1NZF8OQlPFAejGOxezuyptHa01AHmL+DuyziWI8zfHFdW4mWajXNfpjeo7rLVhbcsm1YboP7bMwIDAQAB";

fn b64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).unwrap()
}

#[test]
fn oaep_round_trip_2048() {
    let key = k2048();
    assert_eq!(key.bits(), 2048);
    let public = key.public();
    let msg = b"S (32 bytes)....................ts......password";
    let ct = public.encrypt_oaep_sha256(msg).unwrap();
    assert_eq!(ct.len(), 256);
    assert_eq!(key.decrypt_oaep_sha256(&ct).unwrap().expose(), msg);
    // OAEP is randomized.
    assert_ne!(ct, public.encrypt_oaep_sha256(msg).unwrap());
    let empty = public.encrypt_oaep_sha256(b"").unwrap();
    assert!(key.decrypt_oaep_sha256(&empty).unwrap().is_empty());
}

#[test]
fn oaep_capacity_of_2048() {
    let public = k2048().public();
    assert_eq!(public.max_oaep_plaintext(), 190);
    // The login secret: S(32) || ts(8) || password(<= 128) = 168 bytes.
    let login = [0x41u8; 168];
    let ct = public.encrypt_oaep_sha256(&login).unwrap();
    assert_eq!(k2048().decrypt_oaep_sha256(&ct).unwrap().expose(), login);
    assert!(public.encrypt_oaep_sha256(&[0u8; 190]).is_ok());
    assert_eq!(
        public.encrypt_oaep_sha256(&[0u8; 191]).unwrap_err(),
        CryptoError::BadLength
    );
}

#[test]
fn oaep_decrypt_failures_are_all_decrypt() {
    let key = k2048();
    let ct = key.public().encrypt_oaep_sha256(b"secret").unwrap();
    for i in [0usize, 1, 100, 255] {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            key.decrypt_oaep_sha256(&bad).unwrap_err(),
            CryptoError::Decrypt
        );
    }
    assert_eq!(
        key.decrypt_oaep_sha256(&ct[..255]).unwrap_err(),
        CryptoError::Decrypt
    );
    assert_eq!(
        key.decrypt_oaep_sha256(&[]).unwrap_err(),
        CryptoError::Decrypt
    );
    let mut longer = ct.clone();
    longer.push(0);
    assert_eq!(
        key.decrypt_oaep_sha256(&longer).unwrap_err(),
        CryptoError::Decrypt
    );
    assert_eq!(
        key.decrypt_oaep_sha256(&[0xff; 256]).unwrap_err(),
        CryptoError::Decrypt
    );
    assert_eq!(
        other2048().decrypt_oaep_sha256(&ct).unwrap_err(),
        CryptoError::Decrypt
    );
}

#[test]
fn pss_sign_verify() {
    let key = k2048();
    let public = key.public();
    let msg = b"cardswitch-v1-session\nT001\nk1\n1795000000000";
    let sig = key.sign_pss_sha256(msg);
    assert_eq!(sig.len(), 256);
    assert!(public.verify_pss_sha256(msg, &sig));
    // PSS is randomized; both signatures verify.
    let sig2 = key.sign_pss_sha256(msg);
    assert_ne!(sig, sig2);
    assert!(public.verify_pss_sha256(msg, &sig2));

    for i in [0usize, 128, 255] {
        let mut bad = sig.clone();
        bad[i] ^= 0x01;
        assert!(!public.verify_pss_sha256(msg, &bad));
    }
    let mut other_msg = msg.to_vec();
    other_msg[0] ^= 0x01;
    assert!(!public.verify_pss_sha256(&other_msg, &sig));
    assert!(!public.verify_pss_sha256(msg, &sig[..255]));
    assert!(!public.verify_pss_sha256(msg, &[]));
    assert!(!other2048().public().verify_pss_sha256(msg, &sig));
}

#[test]
fn generate_3072_works() {
    let key = RsaPrivate::generate(3072).unwrap();
    assert_eq!(key.bits(), 3072);
    let public = key.public();
    let sig = key.sign_pss_sha256(b"statement");
    assert_eq!(sig.len(), 384);
    assert!(public.verify_pss_sha256(b"statement", &sig));
    let ct = public.encrypt_oaep_sha256(&[7u8; 318]).unwrap();
    assert_eq!(key.decrypt_oaep_sha256(&ct).unwrap().expose(), [7u8; 318]);
    assert_eq!(
        public.encrypt_oaep_sha256(&[7u8; 319]).unwrap_err(),
        CryptoError::BadLength
    );
}

#[test]
fn generate_rejects_other_sizes() {
    for bits in [0usize, 1024, 2047, 2049, 8192] {
        assert_eq!(RsaPrivate::generate(bits).unwrap_err(), CryptoError::BadKey);
    }
}

#[test]
fn pkcs8_der_and_pem_round_trips() {
    let key = k2048();
    let der = key.to_pkcs8_der();
    let again = RsaPrivate::from_pkcs8_der(der.expose()).unwrap();
    assert_eq!(again.public(), key.public());
    assert_eq!(again.to_pkcs8_der().expose(), der.expose());

    let pem = key.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let from_pem = RsaPrivate::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(from_pem.public(), key.public());
    // The reloaded key decrypts and signs for the original public key.
    let ct = key.public().encrypt_oaep_sha256(b"x").unwrap();
    assert_eq!(from_pem.decrypt_oaep_sha256(&ct).unwrap().expose(), b"x");
    assert!(key
        .public()
        .verify_pss_sha256(b"m", &from_pem.sign_pss_sha256(b"m")));

    assert_eq!(
        RsaPrivate::from_pkcs8_der(b"not a key").unwrap_err(),
        CryptoError::BadKey
    );
    assert_eq!(
        RsaPrivate::from_pkcs8_der(&der.expose()[..der.len() - 1]).unwrap_err(),
        CryptoError::BadKey
    );
    let public_pem = key.public().to_pem();
    assert_eq!(
        RsaPrivate::from_pkcs8_pem(&public_pem).unwrap_err(),
        CryptoError::Encoding
    );
}

#[test]
fn public_pem_round_trip() {
    let public = k2048().public();
    let pem = public.to_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(RsaPublic::from_pem(&pem).unwrap(), public);
    assert_eq!(RsaPublic::from_spki_der(public.spki_der()).unwrap(), public);
    assert_eq!(public.bits(), 2048);
}

#[test]
fn from_spki_rejects_non_spki() {
    assert_eq!(
        RsaPublic::from_spki_der(b"").unwrap_err(),
        CryptoError::BadKey
    );
    assert_eq!(
        RsaPublic::from_spki_der(b"\x30\x00").unwrap_err(),
        CryptoError::BadKey
    );
    assert_eq!(
        RsaPublic::from_spki_der(&b64(OPENSSL_PKCS1_B64)).unwrap_err(),
        CryptoError::BadKey
    );
    let mut trailing = k2048().public().spki_der().to_vec();
    trailing.push(0);
    assert_eq!(
        RsaPublic::from_spki_der(&trailing).unwrap_err(),
        CryptoError::BadKey
    );
    // A private key where a public one is expected.
    assert_eq!(
        RsaPublic::from_spki_der(k2048().to_pkcs8_der().expose()).unwrap_err(),
        CryptoError::BadKey
    );
}

#[test]
fn interoperates_with_openssl() {
    let public = RsaPublic::from_pem(OPENSSL_PUB_PEM).unwrap();
    assert_eq!(public.fingerprint_hex(), OPENSSL_FINGERPRINT);
    assert_eq!(public.short_id(), &OPENSSL_FINGERPRINT[..16]);
    assert_eq!(public.to_pem(), OPENSSL_PUB_PEM);
    assert!(public.verify_pss_sha256(OPENSSL_MSG, &b64(OPENSSL_SIG_SALT32)));
    assert!(!public.verify_pss_sha256(b"other", &b64(OPENSSL_SIG_SALT32)));
    // Only a 32-byte salt is accepted, as protocol.md §1 requires.
    assert!(!public.verify_pss_sha256(OPENSSL_MSG, &b64(OPENSSL_SIG_SALT20)));
}

#[test]
fn fingerprint_and_short_id() {
    let public = k2048().public();
    let fp = public.fingerprint_hex();
    assert_eq!(fp, hex::encode(sha256(public.spki_der())));
    assert_eq!(fp.len(), 64);
    assert!(fp.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(public.short_id(), fp[..16]);
    assert_ne!(public.short_id(), other2048().public().short_id());
}

#[test]
fn debug_does_not_print_private_key() {
    let key = k2048();
    let text = format!("{key:?} {:?}", key.public());
    assert!(text.contains("redacted"));
    assert!(text.contains(&key.public().short_id()));
    let der_b64 = STANDARD.encode(key.to_pkcs8_der().expose());
    assert!(!text.contains(&der_b64[40..60]));
}

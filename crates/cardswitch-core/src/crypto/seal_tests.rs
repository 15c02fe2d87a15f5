use super::*;

fn fixed() -> MasterKey {
    MasterKey::new(Secret32::from_bytes([0x42; 32]))
}

// Id and file text computed independently with Python hashlib and base64.
const FIXED_ID: &str = "58822387db5d4a05";
const FIXED_FILE: &str =
    "cardswitch-master-key v1\n58822387db5d4a05\nQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n";

#[test]
fn id_known_answer() {
    assert_eq!(
        MasterKey::id_for(&Secret32::from_bytes([0x42; 32])),
        FIXED_ID
    );
    assert_eq!(fixed().id(), FIXED_ID);
    assert_ne!(MasterKey::generate().id(), FIXED_ID);
}

#[test]
fn seal_open_round_trip() {
    let mk = MasterKey::generate();
    for pt in [&b""[..], b"k", &[9u8; 1200]] {
        let blob = mk.seal(b"day_keys/T001/2026-11-22", pt);
        assert_eq!(blob.len(), 1 + 12 + pt.len() + 16);
        assert_eq!(blob[0], 1);
        assert_eq!(
            mk.open(b"day_keys/T001/2026-11-22", &blob)
                .unwrap()
                .expose(),
            pt
        );
    }
    // A fresh IV each time.
    assert_ne!(mk.seal(b"a", b"same"), mk.seal(b"a", b"same"));
}

#[test]
fn sealing_binds_aad_key_and_bytes() {
    let mk = MasterKey::generate();
    let blob = mk.seal(b"row 1", b"secret");
    assert_eq!(mk.open(b"row 2", &blob).unwrap_err(), CryptoError::Decrypt);
    assert_eq!(mk.open(b"", &blob).unwrap_err(), CryptoError::Decrypt);
    assert_eq!(
        MasterKey::generate().open(b"row 1", &blob).unwrap_err(),
        CryptoError::Decrypt
    );
    for i in 1..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x80;
        assert_eq!(mk.open(b"row 1", &bad).unwrap_err(), CryptoError::Decrypt);
    }
    for cut in [1, 13, 28, blob.len() - 1] {
        assert_eq!(
            mk.open(b"row 1", &blob[..cut]).unwrap_err(),
            CryptoError::Decrypt
        );
    }
}

#[test]
fn unknown_version_is_encoding() {
    let mk = MasterKey::generate();
    let mut blob = mk.seal(b"a", b"b");
    assert_eq!(mk.open(b"a", &[]).unwrap_err(), CryptoError::Encoding);
    blob[0] = 2;
    assert_eq!(mk.open(b"a", &blob).unwrap_err(), CryptoError::Encoding);
    blob[0] = 0;
    assert_eq!(mk.open(b"a", &blob).unwrap_err(), CryptoError::Encoding);
}

#[test]
fn version_is_bound_into_aad() {
    // Sealing `aad` under version 1 must not equal a plain AES-GCM of `aad`.
    let mk = fixed();
    let blob = mk.seal(b"x", b"y");
    let iv = &blob[1..13];
    assert!(aead::open(mk.key(), iv, b"x", &blob[13..]).is_err());
    assert!(aead::open(mk.key(), iv, b"\x01x", &blob[13..]).is_ok());
}

#[test]
fn file_text_round_trip() {
    assert_eq!(fixed().to_file_text().as_str(), FIXED_FILE);
    let back = MasterKey::from_file_text(FIXED_FILE).unwrap();
    assert_eq!(back.id(), FIXED_ID);
    assert_eq!(back.key().expose(), &[0x42; 32]);

    let mk = MasterKey::generate();
    let again = MasterKey::from_file_text(&mk.to_file_text()).unwrap();
    assert_eq!(again.id(), mk.id());
    assert_eq!(again.key().expose(), mk.key().expose());
}

#[test]
fn file_text_is_parsed_strictly() {
    let bad = [
        String::new(),
        FIXED_FILE.trim_end().to_string(),
        FIXED_FILE.replace('\n', "\r\n"),
        format!("{FIXED_FILE}\n"),
        format!("{FIXED_FILE}extra\n"),
        FIXED_FILE.replace("v1", "v2"),
        FIXED_FILE.replace(FIXED_ID, &FIXED_ID.to_uppercase()),
        FIXED_FILE.replace(FIXED_ID, &FIXED_ID[..15]),
        FIXED_FILE.replace("kI=", "kI"),
        FIXED_FILE.replace("kI=", "k=="),
        FIXED_FILE.replace("QkJC", "QkJ!"),
        FIXED_FILE.replace("kI=", "kJ="), // non-canonical trailing bits
        format!(" {FIXED_FILE}"),
    ];
    for text in bad {
        assert_eq!(
            MasterKey::from_file_text(&text).unwrap_err(),
            CryptoError::Encoding,
            "{text:?}"
        );
    }
    let wrong_id = FIXED_FILE.replace(FIXED_ID, "0000000000000000");
    assert_eq!(
        MasterKey::from_file_text(&wrong_id).unwrap_err(),
        CryptoError::BadKey
    );
}

#[test]
fn debug_shows_id_only() {
    let text = format!("{:?}", fixed());
    assert!(text.contains(FIXED_ID));
    assert!(text.contains("redacted"));
    assert!(!text.contains("QkJC"));
    assert!(!text.contains("66")); // 0x42 as a decimal byte
}

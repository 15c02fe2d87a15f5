//! Test-only: an independent, from-the-RFC implementation of the public
//! halves of RSASSA-PSS and RSAES-OAEP (RFC 8017 §9.1, §7.1), used to prove
//! that aws-lc-rs is driven with exactly the protocol's parameters: SHA-256,
//! MGF1-SHA256, a 32-byte PSS salt, and an empty OAEP label. Slow schoolbook
//! arithmetic is fine here; it never runs outside tests.

use aws_lc_rs::rsa::{PublicKey, PublicKeyComponents};

use super::mac::sha256;
use super::rsa::test_keys::k2048;
use super::rsa::RsaPublic;
use super::CryptoError;

const H_LEN: usize = 32;

/// Little-endian 64-bit limbs with one spare limb, so `2r` and `r + a`
/// (both below 2n) never overflow.
type Big = Vec<u64>;

fn from_be(bytes: &[u8], limbs: usize) -> Big {
    let mut out = vec![0u64; limbs];
    for (i, b) in bytes.iter().rev().enumerate() {
        out[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    out
}

fn to_be(v: &Big, len: usize) -> Vec<u8> {
    (0..len)
        .rev()
        .map(|i| (v[i / 8] >> (8 * (i % 8))) as u8)
        .collect()
}

fn geq(a: &Big, b: &Big) -> bool {
    for i in (0..a.len()).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

fn sub_assign(a: &mut Big, b: &Big) {
    let mut borrow = false;
    for i in 0..a.len() {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        a[i] = d;
        borrow = b1 || b2;
    }
}

fn add_assign(a: &mut Big, b: &Big) {
    let mut carry = false;
    for i in 0..a.len() {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        a[i] = s;
        carry = c1 || c2;
    }
}

fn shl1(a: &mut Big) {
    let mut carry = 0u64;
    for limb in a.iter_mut() {
        let next = *limb >> 63;
        *limb = (*limb << 1) | carry;
        carry = next;
    }
}

/// a·b mod n by double-and-add over the bits of b.
fn mul_mod(a: &Big, b: &Big, n: &Big) -> Big {
    let mut r = vec![0u64; n.len()];
    for i in (0..b.len() * 64).rev() {
        shl1(&mut r);
        if geq(&r, n) {
            sub_assign(&mut r, n);
        }
        if (b[i / 64] >> (i % 64)) & 1 == 1 {
            add_assign(&mut r, a);
            if geq(&r, n) {
                sub_assign(&mut r, n);
            }
        }
    }
    r
}

fn pow_mod(base: &Big, e: &[u8], n: &Big) -> Big {
    let mut r = from_be(&[1], n.len());
    for byte in e {
        for bit in (0..8).rev() {
            r = mul_mod(&r, &r, n);
            if (byte >> bit) & 1 == 1 {
                r = mul_mod(&r, base, n);
            }
        }
    }
    r
}

/// The RSA public operation x^e mod n, on big-endian bytes.
fn rsa_public(public: &RsaPublic, x: &[u8]) -> Vec<u8> {
    let parsed = PublicKey::from_der(public.spki_der()).unwrap();
    let c = PublicKeyComponents::<Vec<u8>>::from(&parsed);
    let k = c.n.len();
    let limbs = k.div_ceil(8) + 1;
    let n = from_be(&c.n, limbs);
    let base = from_be(x, limbs);
    assert!(!geq(&base, &n));
    to_be(&pow_mod(&base, &c.e, &n), k)
}

fn mgf1_sha256(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + H_LEN);
    let mut counter = 0u32;
    while out.len() < len {
        out.extend_from_slice(&sha256(&[seed, &counter.to_be_bytes()].concat()));
        counter += 1;
    }
    out.truncate(len);
    out
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// EMSA-PSS-VERIFY for a 2048-bit key (emBits = 2047, emLen = 256); returns
/// the salt when the signature is valid.
fn pss_recover_salt(public: &RsaPublic, msg: &[u8], sig: &[u8]) -> Option<Vec<u8>> {
    assert_eq!(public.bits(), 2048);
    let em = rsa_public(public, sig);
    let em_len = em.len();
    let (masked_db, rest) = em.split_at(em_len - H_LEN - 1);
    let (h, trailer) = rest.split_at(H_LEN);
    if trailer != [0xbc] || masked_db[0] & 0x80 != 0 {
        return None;
    }
    let mut db = xor(masked_db, &mgf1_sha256(h, masked_db.len()));
    db[0] &= 0x7f;
    let one = db.iter().position(|&b| b != 0)?;
    if db[one] != 0x01 {
        return None;
    }
    let salt = db[one + 1..].to_vec();
    let m_prime = [&[0u8; 8][..], &sha256(msg), &salt].concat();
    (sha256(&m_prime) == h).then_some(salt)
}

/// RSAES-OAEP-ENCRYPT with SHA-256, MGF1-SHA256 and the given label.
fn oaep_encrypt(public: &RsaPublic, label: &[u8], msg: &[u8], seed: &[u8; H_LEN]) -> Vec<u8> {
    let k = public.bits() / 8;
    let ps = vec![0u8; k - msg.len() - 2 * H_LEN - 2];
    let db = [&sha256(label)[..], &ps, &[0x01], msg].concat();
    let masked_db = xor(&db, &mgf1_sha256(seed, k - H_LEN - 1));
    let masked_seed = xor(seed, &mgf1_sha256(&masked_db, H_LEN));
    let em = [&[0x00][..], &masked_seed, &masked_db].concat();
    rsa_public(public, &em)
}

#[test]
fn pss_signatures_carry_a_32_byte_salt() {
    let key = k2048();
    let public = key.public();
    let msg = b"cardswitch-v1-daykey\nT001\nk1\n1\n2\nAAAA";
    let salt1 = pss_recover_salt(&public, msg, &key.sign_pss_sha256(msg)).unwrap();
    let salt2 = pss_recover_salt(&public, msg, &key.sign_pss_sha256(msg)).unwrap();
    assert_eq!(salt1.len(), 32);
    assert_ne!(salt1, salt2, "the salt must be random per signature");
    assert!(pss_recover_salt(&public, b"other", &key.sign_pss_sha256(msg)).is_none());
}

#[test]
fn oaep_parameters_are_sha256_mgf1_sha256_no_label() {
    let key = k2048();
    let public = key.public();
    let msg = [0x5au8; 168];
    let ct = oaep_encrypt(&public, b"", &msg, &[7u8; H_LEN]);
    assert_eq!(key.decrypt_oaep_sha256(&ct).unwrap().expose(), msg);

    let labelled = oaep_encrypt(&public, b"label", &msg, &[7u8; H_LEN]);
    assert_eq!(
        key.decrypt_oaep_sha256(&labelled).unwrap_err(),
        CryptoError::Decrypt
    );
}

#[test]
fn reference_arithmetic_obeys_fermat() {
    // p = 2^127 - 1 is prime, so a^(p-1) = 1 mod p for every a in 1..p.
    let p_bytes = [&[0x7f][..], &[0xff; 15]].concat();
    let p_minus_1 = [&[0x7f][..], &[0xff; 14], &[0xfe]].concat();
    let p = from_be(&p_bytes, 3);
    for a in [&[2u8][..], &[0x12, 0x34, 0x56, 0x78, 0x9a], &p_minus_1] {
        let r = pow_mod(&from_be(a, 3), &p_minus_1, &p);
        assert_eq!(r, from_be(&[1], 3));
    }
    // 3^5 mod 7 = 243 mod 7 = 5.
    assert_eq!(
        pow_mod(&from_be(&[3], 2), &[5], &from_be(&[7], 2)),
        from_be(&[5], 2)
    );
}

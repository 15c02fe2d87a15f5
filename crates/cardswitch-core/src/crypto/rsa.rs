//! RSA with aws-lc-rs: OAEP-SHA256 (MGF1-SHA256, no label) and PSS-SHA256
//! (MGF1-SHA256, 32-byte salt), protocol.md §1.
//!
//! Every private-key operation goes through aws-lc-rs, whose RSA decryption
//! and OAEP padding check run in constant time; the RustCrypto `rsa` crate is
//! open to the Marvin timing attack (RUSTSEC-2023-0071) and must not be used.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256};
use zeroize::Zeroizing;

use super::mac::sha256;
use super::{pem, CryptoError, SecretVec};

const PUBLIC_PEM_LABEL: &str = "PUBLIC KEY";
const PRIVATE_PEM_LABEL: &str = "PRIVATE KEY";

// PSS salt length: aws-lc-rs's RSA_PSS_SHA256 (signing) and
// RSA_PSS_2048_8192_SHA256 (verification) use RsaPssSaltLength::Digest, i.e.
// a salt as long as the digest: 32 bytes for SHA-256, with MGF1 over the same
// digest. That is exactly protocol.md §1, and verification accepts only that
// salt length, so a client using another one (Java's default of 20, PHP's
// phpseclib default) fails loudly instead of interoperating by luck. The
// rsa_reference tests recover the salt from a signature to prove it.

/// An RSA private key (day key, signer key, root key).
///
/// The key lives in AWS-LC memory. AWS-LC's allocator cleanses every
/// allocation when it frees it (`OPENSSL_free` calls `OPENSSL_cleanse`
/// unless an application installs its own allocator, which we do not), so
/// dropping this zeroizes the key even though it cannot derive
/// `ZeroizeOnDrop`.
pub struct RsaPrivate {
    sign: KeyPair,
    decrypt: OaepPrivateDecryptingKey,
    public: RsaPublic,
}

impl RsaPrivate {
    /// A new key of `bits` bits: 2048, 3072 or 4096. Slow (tens to hundreds
    /// of milliseconds); never on the request path.
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(CryptoError::BadKey),
        };
        let pair = KeyPair::generate(size).map_err(|_| CryptoError::BadKey)?;
        let der = pair.as_der().map_err(|_| CryptoError::BadKey)?;
        Self::from_pkcs8_der(der.as_ref())
    }

    /// Parses an unencrypted PKCS#8 (RFC 5208) RSA private key of 2048 to
    /// 8192 bits.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let sign = KeyPair::from_pkcs8(der).map_err(|_| CryptoError::BadKey)?;
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| CryptoError::BadKey)?;
        let spki = private
            .public_key()
            .as_der()
            .map_err(|_| CryptoError::BadKey)?;
        let public = RsaPublic::from_spki_der(spki.as_ref())?;
        let decrypt = OaepPrivateDecryptingKey::new(private).map_err(|_| CryptoError::BadKey)?;
        Ok(RsaPrivate {
            sign,
            decrypt,
            public,
        })
    }

    /// The key as unencrypted PKCS#8 DER, for sealing under the master key.
    pub fn to_pkcs8_der(&self) -> SecretVec {
        let der = self
            .sign
            .as_der()
            .expect("a parsed RSA key always serializes");
        SecretVec::from_slice(der.as_ref())
    }

    /// "PRIVATE KEY" PEM (PKCS#8), for key files. Zeroized on drop.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        pem::encode(PRIVATE_PEM_LABEL, self.to_pkcs8_der().expose())
    }

    pub fn from_pkcs8_pem(text: &str) -> Result<Self, CryptoError> {
        let der = pem::decode(PRIVATE_PEM_LABEL, text)?;
        Self::from_pkcs8_der(der.expose())
    }

    pub fn public(&self) -> RsaPublic {
        self.public.clone()
    }

    pub fn bits(&self) -> usize {
        self.public.bits()
    }

    /// RSA-OAEP decryption (SHA-256, MGF1-SHA256, no label). Every failure,
    /// a ciphertext of the wrong length included, is `Decrypt` and nothing
    /// more: the login answer must not tell an attacker why (protocol.md §3.2).
    pub fn decrypt_oaep_sha256(&self, ciphertext: &[u8]) -> Result<SecretVec, CryptoError> {
        if ciphertext.len() != self.decrypt.key_size_bytes() {
            return Err(CryptoError::Decrypt);
        }
        let mut out = SecretVec::new(vec![0u8; self.decrypt.min_output_size()]);
        let n = self
            .decrypt
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                ciphertext,
                out.as_mut_vec().as_mut_slice(),
                None,
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        out.as_mut_vec().truncate(n);
        Ok(out)
    }

    /// RSA-PSS signature (SHA-256, MGF1-SHA256, 32-byte random salt).
    pub fn sign_pss_sha256(&self, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.sign.public_modulus_len()];
        self.sign
            .sign(&RSA_PSS_SHA256, &SystemRandom::new(), msg, &mut sig)
            .expect("signing with a validated RSA key does not fail");
        sig
    }
}

impl std::fmt::Debug for RsaPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RsaPrivate(<redacted>, public {})",
            self.public.short_id()
        )
    }
}

/// An RSA public key, kept as its DER SubjectPublicKeyInfo (what the
/// protocol sends and fingerprints) and parsed once for use.
#[derive(Clone)]
pub struct RsaPublic {
    spki: Vec<u8>,
    encrypt: PublicEncryptingKey,
    verify: ParsedPublicKey,
}

impl RsaPublic {
    /// Parses a DER SubjectPublicKeyInfo holding an RSA key of 2048 to 8192
    /// bits. The input must be the canonical DER of the key, so that its
    /// fingerprint is the one every other implementation computes.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let encrypt = PublicEncryptingKey::from_der(der).map_err(|_| CryptoError::BadKey)?;
        let canonical = encrypt.as_der().map_err(|_| CryptoError::BadKey)?;
        if canonical.as_ref() != der {
            return Err(CryptoError::BadKey);
        }
        let verify = ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, der)
            .map_err(|_| CryptoError::BadKey)?;
        Ok(RsaPublic {
            spki: der.to_vec(),
            encrypt,
            verify,
        })
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    pub fn bits(&self) -> usize {
        self.encrypt.key_size_bits()
    }

    /// "PUBLIC KEY" PEM of the SubjectPublicKeyInfo.
    pub fn to_pem(&self) -> String {
        pem::encode(PUBLIC_PEM_LABEL, &self.spki).to_string()
    }

    pub fn from_pem(text: &str) -> Result<Self, CryptoError> {
        let der = pem::decode(PUBLIC_PEM_LABEL, text)?;
        Self::from_spki_der(der.expose())
    }

    /// The longest plaintext OAEP-SHA256 can carry under this key:
    /// k - 2·32 - 2 bytes, 190 for RSA-2048.
    pub fn max_oaep_plaintext(&self) -> usize {
        OaepPublicEncryptingKey::new(self.encrypt.clone())
            .map(|k| k.max_plaintext_size(&OAEP_SHA256_MGF1SHA256))
            .unwrap_or(0)
    }

    /// RSA-OAEP encryption (SHA-256, MGF1-SHA256, no label); `BadLength`
    /// when the plaintext is longer than [`Self::max_oaep_plaintext`].
    pub fn encrypt_oaep_sha256(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key =
            OaepPublicEncryptingKey::new(self.encrypt.clone()).map_err(|_| CryptoError::BadKey)?;
        if plaintext.len() > key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256) {
            return Err(CryptoError::BadLength);
        }
        let mut out = vec![0u8; key.ciphertext_size()];
        let n = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .map_err(|_| CryptoError::BadKey)?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// Whether `sig` is a valid RSA-PSS-SHA256 signature (32-byte salt) of
    /// `msg` under this key.
    #[must_use]
    pub fn verify_pss_sha256(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify.verify_sig(msg, sig).is_ok()
    }

    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (protocol.md §2).
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(sha256(&self.spki))
    }

    /// The first 16 hex digits of the fingerprint: a root key's `root` id.
    pub fn short_id(&self) -> String {
        let mut fp = self.fingerprint_hex();
        fp.truncate(16);
        fp
    }
}

impl PartialEq for RsaPublic {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for RsaPublic {}

impl std::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublic({}, {} bits)", self.short_id(), self.bits())
    }
}

#[cfg(test)]
pub(super) mod test_keys {
    use super::RsaPrivate;
    use std::sync::OnceLock;

    /// One RSA-2048 key shared by every test: generation is the slow part.
    pub(in crate::crypto) fn k2048() -> &'static RsaPrivate {
        static KEY: OnceLock<RsaPrivate> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivate::generate(2048).unwrap())
    }

    /// A second key, for "wrong key" checks.
    pub(in crate::crypto) fn other2048() -> &'static RsaPrivate {
        static KEY: OnceLock<RsaPrivate> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivate::generate(2048).unwrap())
    }
}

#[cfg(test)]
#[path = "rsa_tests.rs"]
mod tests;

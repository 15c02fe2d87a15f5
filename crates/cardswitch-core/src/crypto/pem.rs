//! PEM armour (RFC 7468) for DER keys, written by hand with the base64 crate:
//! `-----BEGIN {label}-----`, base64 in lines of 64, `-----END {label}-----`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use super::{CryptoError, SecretVec};

const LINE: usize = 64;

/// PEM text of `der`. The result may hold secret bytes (a private key), so it
/// is built once at its final size and zeroized on drop.
pub(super) fn encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let lines = b64.len().div_ceil(LINE);
    let mut out = Zeroizing::new(String::with_capacity(
        2 * (label.len() + 17) + b64.len() + lines,
    ));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The DER inside PEM text with exactly this label. Leading and trailing
/// whitespace and CRLF line ends are accepted (files pass through editors
/// and Windows tools); anything else outside or inside the armour is
/// `Encoding`, including encrypted-PEM headers and a second block.
pub(super) fn decode(label: &str, text: &str) -> Result<SecretVec, CryptoError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text
        .trim()
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some(begin.as_str()) {
        return Err(CryptoError::Encoding);
    }
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    let mut ended = false;
    for line in lines {
        if ended {
            return Err(CryptoError::Encoding);
        }
        if line == end {
            ended = true;
        } else if line.len() <= LINE && !line.is_empty() {
            body.push_str(line);
        } else {
            return Err(CryptoError::Encoding);
        }
    }
    if !ended || body.is_empty() {
        return Err(CryptoError::Encoding);
    }
    // Decode into a buffer of the final size so no unzeroized copy of a
    // private key is left behind by a reallocation.
    let mut der = SecretVec::new(vec![0u8; body.len() / 4 * 3 + 3]);
    let n = STANDARD
        .decode_slice(body.as_bytes(), der.as_mut_vec())
        .map_err(|_| CryptoError::Encoding)?;
    der.as_mut_vec().truncate(n);
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_line_length() {
        for len in [1usize, 47, 48, 49, 300] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let text = encode("PUBLIC KEY", &der);
            assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            assert!(text.ends_with("-----END PUBLIC KEY-----\n"));
            assert!(text.lines().all(|l| l.len() <= 64));
            assert_eq!(decode("PUBLIC KEY", &text).unwrap().expose(), der);
            let crlf = text.replace('\n', "\r\n");
            assert_eq!(decode("PUBLIC KEY", &crlf).unwrap().expose(), der);
        }
    }

    #[test]
    fn rejects_malformed_armour() {
        let text = encode("PUBLIC KEY", b"some der bytes");
        let bad = [
            String::new(),
            text.replace("PUBLIC KEY", "PRIVATE KEY"),
            text.replace("-----END PUBLIC KEY-----\n", ""),
            text.replace("\n-----END", "!\n-----END"),
            format!("junk\n{}", text.as_str()),
            format!("{}{}", text.as_str(), text.as_str()),
            text.replace("BEGIN PUBLIC KEY-----\n", "BEGIN PUBLIC KEY-----\n\n"),
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".to_string(),
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                "A".repeat(68)
            ),
        ];
        for b in bad {
            assert_eq!(
                decode("PUBLIC KEY", &b).unwrap_err(),
                CryptoError::Encoding,
                "{b}"
            );
        }
        assert_eq!(
            decode("PRIVATE KEY", &text).unwrap_err(),
            CryptoError::Encoding
        );
    }
}

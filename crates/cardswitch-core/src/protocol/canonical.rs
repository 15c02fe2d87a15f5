//! Every string the protocol signs, MACs, uses as AEAD associated data or as
//! HKDF info (protocol.md §1: lines joined by `\n`, no trailing newline).
//!
//! Each side builds these from its own values, never from echoed ones, so
//! the builders take typed values rather than received text.

use super::errno::Errno;

/// HKDF info for `K_enc` from `K_sid`.
pub const ENC_INFO: &str = "cardswitch v1 enc";
/// HKDF info for `K_mac` from `K_sid`.
pub const MAC_INFO: &str = "cardswitch v1 mac";
/// HKDF info for the key that wraps `K_sid` in the login answer
/// (salt = `server_random` decoded, ikm = the client's `S`).
pub const WRAP_INFO: &str = "cardswitch v1 wrap";

/// The literal path MACed in a txn request, whatever a proxy rewrote.
pub const TXN_PATH: &str = "/v1/txn";
/// Prefix of the `Referer` / `X-Cardswitch-Mac` header value.
pub const MAC_HEADER_PREFIX: &str = "hmac-sha256:";

fn lines(parts: &[&str]) -> String {
    parts.join("\n")
}

/// HKDF info deriving `K_sid` from `K_day`.
pub fn sid_info(terminal: &str, sid: &str) -> String {
    lines(&["cardswitch v1 sid", terminal, sid])
}

/// Signed by the signer key as `day_sig` (§3.1).
pub fn day_key_statement(
    terminal: &str,
    key_id: &str,
    not_before: u64,
    not_after: u64,
    public_key_b64: &str,
) -> String {
    lines(&[
        "cardswitch-v1-daykey",
        terminal,
        key_id,
        &not_before.to_string(),
        &not_after.to_string(),
        public_key_b64,
    ])
}

/// Signed by the root key as `signer_sig` (§3.1).
pub fn signer_statement(
    signer_id: &str,
    signer_not_after: u64,
    signer_public_key_b64: &str,
) -> String {
    lines(&[
        "cardswitch-v1-signer",
        signer_id,
        &signer_not_after.to_string(),
        signer_public_key_b64,
    ])
}

/// `T` of §3.2: the AAD of `wrapped` and the first line group of `sig`.
pub fn session_statement(
    terminal: &str,
    key_id: &str,
    ts: u64,
    sid: &str,
    not_after: u64,
    server_random_b64: &str,
) -> String {
    lines(&[
        "cardswitch-v1-session",
        terminal,
        key_id,
        &ts.to_string(),
        sid,
        &not_after.to_string(),
        server_random_b64,
    ])
}

/// What the day key signs as `sig` in the login answer: `T`, `iv`, `wrapped`.
pub fn session_sig_input(t: &str, iv_b64: &str, wrapped_b64: &str) -> String {
    lines(&[t, iv_b64, wrapped_b64])
}

/// AAD of a txn request's `data`.
pub fn request_aad(terminal: &str, sid: &str, ts: u64) -> String {
    lines(&["cardswitch-v1-req", terminal, sid, &ts.to_string()])
}

/// AAD of a txn answer's `data`.
pub fn response_aad(terminal: &str, sid: &str, ts: u64) -> String {
    lines(&["cardswitch-v1-resp", terminal, sid, &ts.to_string()])
}

/// HMAC input of a txn request: `POST\n/v1/txn\n` then the raw body bytes.
pub fn request_mac_input(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + body.len());
    out.extend_from_slice(b"POST\n");
    out.extend_from_slice(TXN_PATH.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// HMAC input of a txn answer: `RESP\n{ts}\n{request MAC}\n` then the raw
/// answer body. Takes the request MAC as bytes so that it is always written
/// in lower-case hex, whatever case the client sent.
pub fn response_mac_input(ts: u64, request_mac: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let head = response_mac_head(ts, request_mac);
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    out
}

/// The part of [`response_mac_input`] before the answer body, so that a
/// MAC can be computed over `[head, body]` without copying the body.
pub fn response_mac_head(ts: u64, request_mac: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + 20 + 1 + 64 + 1);
    out.extend_from_slice(b"RESP\n");
    out.extend_from_slice(ts.to_string().as_bytes());
    out.push(b'\n');
    let mut hex = [0u8; 64];
    hex::encode_to_slice(request_mac, &mut hex).expect("64 hex digits for 32 bytes");
    out.extend_from_slice(&hex);
    out.push(b'\n');
    out
}

/// Parses `hmac-sha256:{64 hex digits}`; hex in either case, nothing around
/// it (no spaces, no other scheme); anything else is 1001.
pub fn parse_mac_header(value: impl AsRef<[u8]>) -> Result<[u8; 32], Errno> {
    let hex = value
        .as_ref()
        .strip_prefix(MAC_HEADER_PREFIX.as_bytes())
        .ok_or(Errno::Malformed)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|_| Errno::Malformed)?;
    Ok(out)
}

/// `hmac-sha256:{lower-case hex}`.
pub fn format_mac_header(mac: &[u8; 32]) -> String {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(mac, &mut hex).expect("64 hex digits for 32 bytes");
    let mut out = String::with_capacity(MAC_HEADER_PREFIX.len() + hex.len());
    out.push_str(MAC_HEADER_PREFIX);
    out.push_str(std::str::from_utf8(&hex).expect("hex is ASCII"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn statements() {
        assert_eq!(
            day_key_statement("T1", "k1", 1_795_000_000_000, 1_795_086_400_000, "AAAA"),
            "cardswitch-v1-daykey\nT1\nk1\n1795000000000\n1795086400000\nAAAA"
        );
        assert_eq!(
            signer_statement("s1", 1_802_000_000_000, "BBBB"),
            "cardswitch-v1-signer\ns1\n1802000000000\nBBBB"
        );
        let t = session_statement(
            "T1",
            "k1",
            1_795_000_000_001,
            "sid.1",
            1_795_086_400_000,
            "CC==",
        );
        assert_eq!(
            t,
            "cardswitch-v1-session\nT1\nk1\n1795000000001\nsid.1\n1795086400000\nCC=="
        );
        assert_eq!(session_sig_input(&t, "IV", "W"), format!("{t}\nIV\nW"));
        assert_eq!(
            request_aad("T1", "s", 1_795_000_000_000),
            "cardswitch-v1-req\nT1\ns\n1795000000000"
        );
        assert_eq!(
            response_aad("T1", "s", 1_795_000_000_000),
            "cardswitch-v1-resp\nT1\ns\n1795000000000"
        );
        assert_eq!(sid_info("T1", "s"), "cardswitch v1 sid\nT1\ns");
        assert!(!t.ends_with('\n') && !t.contains('\r'));
    }

    #[test]
    fn mac_inputs() {
        assert_eq!(request_mac_input(b"a=1"), b"POST\n/v1/txn\na=1");
        let mac = [0xABu8; 32];
        let got = response_mac_input(1_795_000_000_000, &mac, b"<x/>");
        let want = format!("RESP\n1795000000000\n{}\n<x/>", "ab".repeat(32));
        assert_eq!(got, want.as_bytes());
        let mut split = response_mac_head(1_795_000_000_000, &mac);
        split.extend_from_slice(b"<x/>");
        assert_eq!(split, got);
        assert_eq!(response_mac_head(0, &mac)[..7], *b"RESP\n0\n");
    }

    #[test]
    fn mac_header() {
        let mac: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
        let h = format_mac_header(&mac);
        assert!(h.starts_with("hmac-sha256:") && h.len() == 12 + 64);
        assert_eq!(h, h.to_lowercase());
        assert_eq!(parse_mac_header(h.as_bytes()), Ok(mac));
        let upper = format!("hmac-sha256:{}", hex::encode_upper(mac));
        assert_eq!(parse_mac_header(upper.as_bytes()), Ok(mac));
        let hexs = hex::encode(mac);
        for bad in [
            String::new(),
            hexs.clone(),
            format!("HMAC-SHA256:{hexs}"),
            format!("hmac-sha256: {hexs}"),
            format!("hmac-sha256:{hexs} "),
            format!("hmac-sha256:{}", &hexs[..62]),
            format!("hmac-sha256:{hexs}00"),
            format!("hmac-sha256:{}zz", &hexs[..62]),
        ] {
            assert_eq!(
                parse_mac_header(bad.as_bytes()),
                Err(Errno::Malformed),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn mac_header_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_mac_header(&b);
        }
    }
}

//! Webhook events on the wire (protocol.md §8): the body sent, and the
//! `Cardswitch-Signature` header that proves it came from us.

use crate::crypto::mac::{ct_eq, hmac_sha256};

/// The header naming the event.
pub const EVENT_HEADER: &str = "Cardswitch-Event";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Cardswitch-Signature";
/// How far a receiver accepts `t` from its own clock (protocol.md §8).
pub const TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// The body sent for event `id`: its stored fields with `id` (a string).
pub fn body(id: i64, mut fields: serde_json::Value) -> Vec<u8> {
    if let Some(m) = fields.as_object_mut() {
        m.insert("id".into(), id.to_string().into());
    }
    serde_json::to_vec(&fields).expect("a JSON value always encodes")
}

/// `t={t_ms},v1={hex}`: HMAC-SHA256 under the endpoint's secret of
/// `{t_ms}.` then the raw body.
pub fn signature(secret: &[u8], t_ms: i64, body: &[u8]) -> String {
    let t = t_ms.to_string();
    let mac = hmac_sha256(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

/// What a receiver checks: the header's form, `t` within
/// [`TOLERANCE_MS`] of `now_ms`, and the MAC, compared in constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_ms: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => return false,
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_ms - t).abs() > TOLERANCE_MS {
        return false;
    }
    let t = t.to_string();
    ct_eq(&hmac_sha256(secret, &[t.as_bytes(), b".", body]), &v1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let body = body(7, serde_json::json!({"op": "debit", "amount": "1.00"}));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "7");
        let now = 1_795_000_000_000;
        let h = signature(b"0123456789abcdef", now, &body);
        assert!(h.starts_with(&format!("t={now},v1=")));
        assert!(verify(b"0123456789abcdef", &h, &body, now + 1000));
        assert!(!verify(b"0123456789abcdeX", &h, &body, now));
        assert!(!verify(b"0123456789abcdef", &h, b"{}", now));
        assert!(!verify(
            b"0123456789abcdef",
            &h,
            &body,
            now + TOLERANCE_MS + 1
        ));
        assert!(!verify(b"0123456789abcdef", "t=1", &body, now));
        assert!(!verify(
            b"0123456789abcdef",
            &format!("{h},x=1"),
            &body,
            now
        ));
    }

    #[test]
    fn the_signature_is_hmac_of_t_dot_body() {
        // The vector in proto-spec/README.md §16.
        let h = signature(
            b"whsec-test-0123456789",
            1_795_000_000_000,
            b"{\"id\":\"1\"}",
        );
        let want = hex::encode(hmac_sha256(
            b"whsec-test-0123456789",
            &[b"1795000000000.{\"id\":\"1\"}"],
        ));
        assert_eq!(h, format!("t=1795000000000,v1={want}"));
    }
}

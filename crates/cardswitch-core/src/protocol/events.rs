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
    fn the_vectors_of_proto_spec() {
        let file = include_str!("../../../../proto-spec/vectors/events-v1.json");
        let v: serde_json::Value = serde_json::from_str(file).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 2);
        for x in vectors {
            let secret = x["secret"].as_str().unwrap().as_bytes();
            let body = x["body"].as_str().unwrap().as_bytes();
            let t = x["t_ms"].as_i64().unwrap();
            let want = x["signature"].as_str().unwrap();
            assert_eq!(signature(secret, t, body), want);
            assert!(verify(secret, want, body, t));
        }
        assert_eq!(
            vectors[0]["signature"],
            "t=1795000000000,v1=0e851ee32cf79251a4b9e448043dbdccb687ca2c36ece73ab5c522c067551e0e"
        );
    }
}

//! The business day and day keys: which day it is in the shops' time zone,
//! when a day key is valid, and making one (RSA-2048 + `K_day`, signed once
//! by the signer, sealed under the master key).

use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use crate::crypto::rsa::RsaPrivate;
use crate::crypto::seal::MasterKey;
use crate::crypto::Secret32;
use crate::protocol::canonical;
use crate::protocol::grammar::base64_encode;
use crate::store::keys::DayKeyRow;

const DAY_MS: i64 = 86_400_000;

/// The business day `now` falls in, in the shops' time zone.
pub fn business_day(now: DateTime<Utc>, offset: FixedOffset) -> NaiveDate {
    now.with_timezone(&offset).date_naive()
}

/// `(not_before, not_after)` of a day key for `day`, Unix ms: from local
/// midnight to the next local midnight plus the grace period.
pub fn day_window(day: NaiveDate, offset: FixedOffset, grace: Duration) -> (i64, i64) {
    let local_midnight = day
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis();
    let start = local_midnight - i64::from(offset.local_minus_utc()) * 1000;
    (start, start + DAY_MS + grace.as_millis() as i64)
}

/// The signer as the daemon uses it: its private key opened from the database.
pub struct Signer {
    pub id: String,
    pub private: RsaPrivate,
    pub public_b64: String,
    pub not_after_ms: i64,
}

pub fn signer_aad(signer_id: &str) -> Vec<u8> {
    format!("cardswitch v1 signer key\n{signer_id}").into_bytes()
}

pub fn day_private_aad(key_id: &str) -> Vec<u8> {
    format!("cardswitch v1 day key\n{key_id}").into_bytes()
}

pub fn day_secret_aad(key_id: &str) -> Vec<u8> {
    format!("cardswitch v1 day secret\n{key_id}").into_bytes()
}

/// A random id part: `n` bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    hex::encode(bytes)
}

/// Makes a day key for `terminal` and `day`: RSA-2048 generation (slow:
/// call it off the async runtime), one signature by the signer, both secrets
/// sealed under `master`. Nothing is stored here.
pub fn make_day_key(
    terminal: &str,
    day: NaiveDate,
    window: (i64, i64),
    signer: &Signer,
    master: &MasterKey,
) -> anyhow::Result<DayKeyRow> {
    let key_id = format!("{terminal}.{}.{}", day.format("%Y%m%d"), random_hex(4));
    let private = RsaPrivate::generate(2048).map_err(|e| anyhow::anyhow!("RSA-2048: {e}"))?;
    let public = private.public();
    let public_b64 = base64_encode(public.spki_der());
    let statement = canonical::day_key_statement(
        terminal,
        &key_id,
        window.0 as u64,
        window.1 as u64,
        &public_b64,
    );
    let day_sig = signer.private.sign_pss_sha256(statement.as_bytes());
    let k_day = Secret32::random();
    Ok(DayKeyRow {
        sealed_private: Some(
            master.seal(&day_private_aad(&key_id), private.to_pkcs8_der().expose()),
        ),
        sealed_k_day: Some(master.seal(&day_secret_aad(&key_id), k_day.expose())),
        key_id,
        terminal_id: terminal.to_owned(),
        business_day: day,
        not_before_ms: window.0,
        not_after_ms: window.1,
        public_der: public.spki_der().to_vec(),
        master_key_id: master.id().to_owned(),
        signer_id: signer.id.clone(),
        day_sig,
        status: "active".into(),
        row_mac: None,
        mac_key_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_day_follows_the_offset() {
        let plus8 = FixedOffset::east_opt(8 * 3600).unwrap();
        // 2026-11-22 16:30 UTC is 2026-11-23 00:30 at +08:00.
        let t = DateTime::parse_from_rfc3339("2026-11-22T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            business_day(t, plus8),
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
        );
        let (nb, na) = day_window(
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            plus8,
            Duration::from_secs(600),
        );
        assert_eq!(
            nb,
            DateTime::parse_from_rfc3339("2026-11-22T16:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(na - nb, DAY_MS + 600_000);
        assert!(nb <= t.timestamp_millis() && t.timestamp_millis() < na);
    }
}

//! A terminal that resends as proto-spec §8.3 says, for fault runs (the
//! crash test, `cardswitch chaos`): no answer, an unMACed one, 1005, 1006,
//! 3002 or 3003 → the same `order_no` again with a new `ts`; 1009 → wait,
//! then the same; 1004 → log in again first. What it was told is logged, so
//! a run can be checked against the books afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Session};
use crate::crypto::rsa::RsaPublic;
use crate::protocol::errno::Errno;
use crate::protocol::xml::Rows;

/// Attempts at one order (or one login) before the client gives up: at
/// 20 ms apart and more, well past any failover it is meant to ride out.
pub const MAX_ATTEMPTS: u32 = 2_000;

/// One acknowledged posting, as its client recorded it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Acked {
    pub order: String,
    pub card: String,
    /// Its effect on the balance, in cents.
    pub cents: i64,
    pub replayed: bool,
    /// When the answer arrived (Unix ms).
    pub at_ms: u64,
}

/// What one client was told.
#[derive(Default, Debug)]
pub struct ClientLog {
    pub acked: Vec<Acked>,
    /// Orders refused for good, with their errno.
    pub refused: Vec<(String, Errno)>,
    pub resends: u64,
}

/// A terminal and its password.
#[derive(Clone, Serialize, Deserialize)]
pub struct Till {
    pub terminal: String,
    pub password: String,
}

/// Logs in, through whatever the faults are doing.
pub async fn login(c: &Client, root: &RsaPublic, till: &Till) -> anyhow::Result<Session> {
    for _ in 0..MAX_ATTEMPTS {
        if let Ok(s) = c.handshake(&till.terminal, &till.password, root).await {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{} could not log in", till.terminal)
}

/// Sends one order until it has a definitive answer: `Ok(Ok(rows))` when
/// it ran, `Ok(Err(errno))` when refused.
pub async fn until_answered(
    c: &Client,
    s: &mut Session,
    till: &Till,
    root: &RsaPublic,
    inner: &str,
    log: &mut ClientLog,
) -> anyhow::Result<Result<Rows, Errno>> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            log.resends += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = match c.txn_raw_inner(s, inner.as_bytes()).await {
            Ok(o) => o,
            Err(_) => continue,
        };
        match out.errno {
            Errno::KeyUnknown => *s = login(c, root, till).await?,
            _ if !out.mac_verified => {}
            Errno::Ok => return Ok(Ok(out.rows)),
            Errno::TsOutsideWindow | Errno::TsUsed | Errno::Unavailable | Errno::Internal => {}
            // Over the terminal's rate: wait (less than Retry-After asks,
            // to keep runs short), then resend.
            Errno::Throttled => tokio::time::sleep(Duration::from_millis(200)).await,
            e => return Ok(Err(e)),
        }
    }
    bail!("no answer for {inner} after {MAX_ATTEMPTS} attempts")
}

/// What a load client posts: random debits (`debit_percent` of them) and
/// top-ups of 0.01–5.00 on `cards`, its orders named
/// `{prefix}-{terminal}-{n}-{i}`.
pub struct Load {
    pub cards: Arc<Vec<String>>,
    pub prefix: String,
    pub debit_percent: u32,
    pub stop: Arc<AtomicBool>,
}

/// One client until `stop`; the order in flight when it comes is finished
/// first, so every order sent has its answer in the log.
pub async fn client(
    c: Arc<Client>,
    root: RsaPublic,
    till: Till,
    n: usize,
    load: Arc<Load>,
) -> anyhow::Result<ClientLog> {
    let salt = load
        .prefix
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b));
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64 ^ salt);
    let mut s = login(&c, &root, &till).await?;
    let mut log = ClientLog::default();
    for i in 0.. {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let card = load.cards[rng.gen_range(0..load.cards.len())].clone();
        let cents: i64 = rng.gen_range(1..=500);
        let debit = rng.gen_ratio(load.debit_percent.min(100), 100);
        let order = format!("{}-{}-{n}-{i}", load.prefix, till.terminal);
        let op = if debit { "debit" } else { "topup" };
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let inner = format!("op={op}&amount={amount}&order_no={order}&attr1={card}");
        match until_answered(&c, &mut s, &till, &root, &inner, &mut log).await? {
            Ok(rows) => log.acked.push(Acked {
                order,
                card,
                cents: if debit { -cents } else { cents },
                replayed: is_replay(&rows),
                at_ms: chrono::Utc::now().timestamp_millis() as u64,
            }),
            Err(e) => log.refused.push((order, e)),
        }
    }
    Ok(log)
}

/// Whether the answer was the stored one of an order posted before.
pub fn is_replay(rows: &Rows) -> bool {
    rows.0.first().and_then(|r| r.get("replayed")) == Some("1")
}

/// The longest time, in seconds, between two acknowledgements (or from the
/// run's start to the first, or from the last to its end): how long no
/// posting was written, as the tills saw it.
pub fn longest_gap_secs(acked_at_ms: &mut [u64], start_ms: u64, end_ms: u64) -> f64 {
    acked_at_ms.sort_unstable();
    let mut prev = start_ms;
    let mut gap = 0;
    for &t in acked_at_ms.iter().chain(std::iter::once(&end_ms)) {
        gap = gap.max(t.saturating_sub(prev));
        prev = prev.max(t);
    }
    gap as f64 / 1000.0
}

/// Every acknowledged order once, with the sum of what it did to each card.
pub fn expected_effects(acked: &[Acked]) -> anyhow::Result<HashMap<String, i64>> {
    let mut seen = std::collections::HashSet::new();
    let mut by_card = HashMap::new();
    for a in acked {
        if !seen.insert(a.order.as_str()) {
            bail!("order {} acknowledged twice in the logs", a.order);
        }
        *by_card.entry(a.card.clone()).or_insert(0) += a.cents;
    }
    Ok(by_card)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_edges_of_the_run() {
        assert_eq!(
            longest_gap_secs(&mut [1_500, 1_200, 4_000], 1_000, 4_500),
            2.5
        );
        assert_eq!(longest_gap_secs(&mut [], 1_000, 3_000), 2.0);
        assert_eq!(longest_gap_secs(&mut [1_100], 1_000, 9_100), 8.0);
    }

    #[test]
    fn an_order_acknowledged_twice_is_an_error() {
        let a = |order: &str, cents| Acked {
            order: order.into(),
            card: "C1".into(),
            cents,
            replayed: false,
            at_ms: 0,
        };
        let sums = expected_effects(&[a("o1", -5), a("o2", 7)]).unwrap();
        assert_eq!(sums["C1"], 2);
        assert!(expected_effects(&[a("o1", -5), a("o1", -5)]).is_err());
    }
}

//! Throttling (errno 1009): token buckets per source address and per
//! terminal, in memory per instance. A bucket refills at `rate` per second up
//! to `burst`; an empty bucket refuses. Idle full buckets are forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// When a refusal from this bucket was last audited (at most one a second).
    audited: Option<Instant>,
}

pub struct Buckets {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<String, Bucket>>,
}

/// What a request's check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Throttled; `audit` says whether to write this refusal to the audit
    /// table (the first of each second), so a flood cannot flood the table.
    Refuse {
        audit: bool,
    },
}

const FORGET_AFTER: usize = 10_000;

impl Buckets {
    pub fn new(rate: u32, burst: u32) -> Buckets {
        Buckets {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key: &str) -> Verdict {
        let now = Instant::now();
        let mut map = self.map.lock().expect("lock");
        if map.len() > FORGET_AFTER {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
            audited: None,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Pass;
        }
        let audit = b
            .audited
            .map_or(true, |t| now.duration_since(t).as_secs_f64() >= 1.0);
        if audit {
            b.audited = Some(now);
        }
        Verdict::Refuse { audit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let b = Buckets::new(1, 3);
        for _ in 0..3 {
            assert_eq!(b.check("a"), Verdict::Pass);
        }
        assert_eq!(b.check("a"), Verdict::Refuse { audit: true });
        assert_eq!(b.check("a"), Verdict::Refuse { audit: false });
        assert_eq!(b.check("b"), Verdict::Pass);
    }
}

//! Throttling (errno 1009): token buckets per source address and per
//! terminal, in memory per instance. A bucket refills at `rate` per second up
//! to `burst`; an empty bucket refuses. Idle full buckets are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
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

/// Failed logins in a row per (terminal, source address), in memory per
/// instance (issue 12). Keyed by both, so an outsider's failures slow down
/// only the outsider: the terminal's own login, from its own address, is
/// never delayed by them. A success from an address clears that address's
/// count; counts idle for [`FORGET_LOGINS_AFTER`] are forgotten.
#[derive(Default)]
pub struct LoginFailures {
    map: Mutex<HashMap<(String, IpAddr), (i32, Instant)>>,
}

/// Pairs kept at most; a pair met beyond it is not counted (an attacker that
/// spreads over that many pairs gains no more than fresh addresses give).
const MAX_LOGIN_PAIRS: usize = 100_000;
const FORGET_LOGINS_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl LoginFailures {
    /// Failed logins in a row of `terminal` from `source`.
    pub fn count(&self, terminal: &str, source: IpAddr) -> i32 {
        let map = self.map.lock().expect("lock");
        map.get(&(terminal.to_owned(), source))
            .filter(|(_, at)| at.elapsed() < FORGET_LOGINS_AFTER)
            .map_or(0, |(n, _)| *n)
    }

    pub fn failed(&self, terminal: &str, source: IpAddr) {
        let now = Instant::now();
        let mut map = self.map.lock().expect("lock");
        if map.len() >= MAX_LOGIN_PAIRS {
            map.retain(|_, (_, at)| now.duration_since(*at) < FORGET_LOGINS_AFTER);
        }
        let key = (terminal.to_owned(), source);
        if map.len() >= MAX_LOGIN_PAIRS && !map.contains_key(&key) {
            return;
        }
        let e = map.entry(key).or_insert((0, now));
        if now.duration_since(e.1) >= FORGET_LOGINS_AFTER {
            e.0 = 0;
        }
        *e = (e.0.saturating_add(1), now);
    }

    pub fn succeeded(&self, terminal: &str, source: IpAddr) {
        let mut map = self.map.lock().expect("lock");
        map.remove(&(terminal.to_owned(), source));
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

    #[test]
    fn login_failures_are_per_terminal_and_source() {
        let f = LoginFailures::default();
        let (outsider, till) = ("10.0.0.9".parse().unwrap(), "10.0.0.1".parse().unwrap());
        for _ in 0..5 {
            f.failed("T1", outsider);
        }
        assert_eq!(f.count("T1", outsider), 5);
        assert_eq!(f.count("T1", till), 0);
        assert_eq!(f.count("T2", outsider), 0);
        f.failed("T1", till);
        f.succeeded("T1", till);
        assert_eq!(f.count("T1", till), 0);
        assert_eq!(f.count("T1", outsider), 5);
    }
}

//! Rate limits and quotas, in process: GCRA for rates with a burst, fixed windows for long
//! quotas (per hour, day, month).
//!
//! GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival
//! time (TAT): a request at `t` is allowed when `max(TAT, t) + T - burst·T <= t`, where `T` is
//! the emission interval (`period / count`); allowing it moves TAT forward by `T`. It is exact
//! (no window edges to game), O(1), and tells how much is left and when to retry.
//!
//! Memory is bounded: a full shard drops the entries whose TAT has passed (they carry no
//! information), then, if still full, refuses to track more keys and answers as if the key
//! were fresh (fail open for tracking, never a panic).
//!
//! ```
//! use auth_core::apikey::limit::{InProcessLimiter, Rate};
//! use std::time::Duration;
//!
//! let limiter = InProcessLimiter::new(10_000);
//! let rate = Rate::per(Duration::from_secs(1), 2).burst(2);
//! let t0 = 1_000_000_000_000; // nanoseconds, any monotonic origin
//! assert!(limiter.check("key-1", &rate, t0).allowed);
//! assert!(limiter.check("key-1", &rate, t0).allowed);
//! let third = limiter.check("key-1", &rate, t0);
//! assert!(!third.allowed);
//! assert_eq!(third.retry_after, Duration::from_millis(500));
//! assert!(limiter.check("key-1", &rate, t0 + 500_000_000).allowed);
//! ```

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const SHARDS: usize = 16;

/// A rate: `count` requests per `period`, with a burst of `burst` requests at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    period: Duration,
    count: u32,
    burst: u32,
}

impl Rate {
    /// `count` per `period`; the burst defaults to `count`.
    pub fn per(period: Duration, count: u32) -> Self {
        Self {
            period,
            count: count.max(1),
            burst: count.max(1),
        }
    }

    /// Sets the burst (at least 1).
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Parses `N/s`, `N/m`, `N/h`, `N/d` (`10/s`).
    ///
    /// # Errors
    ///
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (n, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate (use e.g. 10/s, 100/m, 5000/h)"))?;
        let n: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{text}`: the count must be a positive number"))?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            u => return Err(format!("`{text}`: unknown period `{u}` (s, m, h or d)")),
        };
        Ok(Self::per(Duration::from_secs(period), n))
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
    /// The burst.
    pub fn get_burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval `T`, in nanoseconds (at least 1).
    fn interval_ns(&self) -> u64 {
        (u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX) / u64::from(self.count)).max(1)
    }
}

/// The answer of one limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitDecision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests left right now.
    pub remaining: u32,
    /// When the allowance is whole again.
    pub reset_after: Duration,
    /// When to try again (zero when allowed).
    pub retry_after: Duration,
    /// The limit (the burst), for the `RateLimit-Policy` header.
    pub limit: u32,
    /// The policy window in seconds, for the `RateLimit-Policy` header.
    pub window_secs: u64,
}

impl LimitDecision {
    /// The `RateLimit-Policy` and `RateLimit` header values of
    /// draft-ietf-httpapi-ratelimit-headers (policy named `default`).
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (
                "ratelimit-policy",
                format!("\"default\";q={};w={}", self.limit, self.window_secs),
            ),
            (
                "ratelimit",
                format!(
                    "\"default\";r={};t={}",
                    self.remaining,
                    self.reset_after.as_secs() + u64::from(self.reset_after.subsec_nanos() > 0)
                ),
            ),
        ]
    }
}

/// GCRA state per key, in process, bounded.
#[derive(Debug)]
pub struct InProcessLimiter {
    shards: Box<[Mutex<HashMap<String, u64>>]>,
    per_shard: usize,
    hasher: foldhash::fast::FixedState,
}

impl InProcessLimiter {
    /// A limiter tracking at most about `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    /// Checks (and, when allowed, counts) one request of `key` under `rate` at `now_ns`
    /// (nanoseconds on any monotonic clock, the same for every call).
    pub fn check(&self, key: &str, rate: &Rate, now_ns: u64) -> LimitDecision {
        let t = rate.interval_ns();
        let burst_ns = t.saturating_mul(u64::from(rate.burst));
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = map.get(key).copied().unwrap_or(now_ns).max(now_ns);
        let new_tat = tat.saturating_add(t);
        let allow_at = new_tat.saturating_sub(burst_ns);
        let window_secs = rate.period.as_secs().max(1);
        if now_ns < allow_at {
            let used = tat - now_ns;
            return LimitDecision {
                allowed: false,
                remaining: 0,
                reset_after: Duration::from_nanos(used),
                retry_after: Duration::from_nanos(allow_at - now_ns),
                limit: rate.burst,
                window_secs,
            };
        }
        if !map.contains_key(key) && map.len() >= self.per_shard {
            map.retain(|_, tat| *tat > now_ns);
        }
        if map.contains_key(key) || map.len() < self.per_shard {
            map.insert(key.to_owned(), new_tat);
        }
        let used = new_tat - now_ns;
        let remaining = (burst_ns.saturating_sub(used) / t).min(u64::from(rate.burst));
        LimitDecision {
            allowed: true,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_after: Duration::from_nanos(used),
            retry_after: Duration::ZERO,
            limit: rate.burst,
            window_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn steady_rate_and_burst() {
        let l = InProcessLimiter::new(100);
        let r = Rate::per(Duration::from_secs(1), 5).burst(5);
        let t0 = 10 * S;
        let allowed = (0..10).filter(|_| l.check("k", &r, t0).allowed).count();
        assert_eq!(allowed, 5, "the burst, then refusals");
        // One more every 200 ms.
        assert!(l.check("k", &r, t0 + S / 5).allowed);
        assert!(!l.check("k", &r, t0 + S / 5).allowed);
        // Over 10 s at 50 req/s offered, 5/s get through, plus the 4 of the burst that
        // refilled between t0 + 200 ms and t0 + 1 s.
        let mut ok = 0;
        for i in 0..500u64 {
            if l.check("k", &r, t0 + S + i * S / 50).allowed {
                ok += 1;
            }
        }
        assert!((53..=54).contains(&ok), "{ok} allowed in 10 s");
    }

    #[test]
    fn remaining_and_headers() {
        let l = InProcessLimiter::new(100);
        let r = Rate::per(Duration::from_secs(60), 3);
        let d = l.check("k", &r, S);
        assert_eq!((d.allowed, d.remaining), (true, 2));
        let [(p, policy), (n, now)] = d.headers();
        assert_eq!(
            (p, policy.as_str()),
            ("ratelimit-policy", "\"default\";q=3;w=60")
        );
        assert_eq!((n, now.as_str()), ("ratelimit", "\"default\";r=2;t=20"));
        l.check("k", &r, S);
        l.check("k", &r, S);
        let refused = l.check("k", &r, S);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        // Other keys are independent.
        assert!(l.check("other", &r, S).allowed);
    }

    #[test]
    fn parse_rates() {
        assert_eq!(
            Rate::parse("10/s").unwrap(),
            Rate::per(Duration::from_secs(1), 10)
        );
        assert_eq!(
            Rate::parse("1000/d").unwrap().period(),
            Duration::from_secs(86_400)
        );
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("10/fortnight").is_err());
        assert!(Rate::parse("ten").is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let l = InProcessLimiter::new(32);
        let r = Rate::per(Duration::from_secs(3600), 1);
        for i in 0..10_000 {
            l.check(&format!("key-{i}"), &r, S);
        }
        let tracked: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(tracked <= 32, "{tracked}");
    }

    #[test]
    fn near_the_clock_origin() {
        let l = InProcessLimiter::new(100);
        let r = Rate::per(Duration::from_secs(3600), 2);
        assert!(l.check("k", &r, 1_000).allowed);
        assert!(l.check("k", &r, 2_000).allowed);
        assert!(!l.check("k", &r, 3_000).allowed);
    }
}

//! Rate limits and quotas: the policies ([`Rate`], [`Quota`], [`KeyLimits`]), the [`Limiter`]
//! trait that backends implement, and the in-process backend ([`InProcessLimiter`]).
//!
//! **Rates** use GCRA (the generic cell rate algorithm), which keeps one number per bucket, the
//! theoretical arrival time (TAT): a request at `t` is allowed when
//! `max(TAT, t) + T - burst·T <= t`, where `T` is the emission interval (`period / count`);
//! allowing it moves TAT forward by `T`. It is exact (no window edges to game), O(1), and tells
//! how much is left and when to retry.
//!
//! **Quotas** count requests in calendar windows in UTC (an hour, a day, a month); the count
//! starts again at the window's start.
//!
//! A request is checked against every applicable limit at once ([`Limiter::check`]): it is
//! allowed only when all allow it, and a refused request counts against none of them.
//!
//! Memory is bounded: a full shard drops the entries that carry no information any more (a TAT
//! in the past, a quota window that ended), then, if still full, stops tracking new buckets and
//! answers as if they were fresh (fail open for tracking, never a panic).
//!
//! ```
//! use auth_core::apikey::limit::{InProcessLimiter, Rate};
//! use std::time::Duration;
//!
//! let limiter = InProcessLimiter::new(10_000);
//! let rate = Rate::per(Duration::from_secs(1), 2).burst(2);
//! let t0 = 1_000_000_000_000; // nanoseconds, any monotonic origin
//! assert!(limiter.check_rate("key-1", &rate, t0).allowed);
//! assert!(limiter.check_rate("key-1", &rate, t0).allowed);
//! let third = limiter.check_rate("key-1", &rate, t0);
//! assert!(!third.allowed);
//! assert_eq!(third.retry_after, Duration::from_millis(500));
//! assert!(limiter.check_rate("key-1", &rate, t0 + 500_000_000).allowed);
//! ```

use crate::authenticator::BoxFuture;
pub use crate::ratelimit::RateLimitStatus;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// A rate: `count` requests per `period`, with a burst of `burst` requests at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RateRepr", try_from = "RateRepr")]
pub struct Rate {
    period: Duration,
    count: u32,
    burst: u32,
}

/// The stored form of a [`Rate`].
#[derive(Serialize, Deserialize)]
struct RateRepr {
    count: u32,
    period_secs: u64,
    burst: u32,
}

impl From<Rate> for RateRepr {
    fn from(r: Rate) -> Self {
        Self {
            count: r.count,
            period_secs: r.period.as_secs(),
            burst: r.burst,
        }
    }
}

impl TryFrom<RateRepr> for Rate {
    type Error = String;
    fn try_from(r: RateRepr) -> Result<Self, String> {
        if r.count == 0 || r.period_secs == 0 {
            return Err("a rate needs a positive count and period".into());
        }
        Ok(Rate::per(Duration::from_secs(r.period_secs), r.count).burst(r.burst))
    }
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
    pub fn interval_ns(&self) -> u64 {
        (u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX) / u64::from(self.count)).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s".to_owned(),
            60 => "m".to_owned(),
            3600 => "h".to_owned(),
            86_400 => "d".to_owned(),
            n => format!("{n}s"),
        };
        write!(f, "{}/{unit}", self.count)?;
        if self.burst != self.count {
            write!(f, " (burst {})", self.burst)?;
        }
        Ok(())
    }
}

/// A calendar window of a [`Quota`], in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// From the start of an hour to the next.
    Hour,
    /// From midnight UTC to the next.
    Day,
    /// From the first of a month, midnight UTC, to the first of the next.
    Month,
}

impl Window {
    /// The window holding `now` (seconds since the Unix epoch), as `(start, end)`.
    pub fn bounds(self, now: i64) -> (i64, i64) {
        match self {
            Self::Hour => {
                let start = now - now.rem_euclid(3600);
                (start, start + 3600)
            }
            Self::Day => {
                let start = now - now.rem_euclid(86_400);
                (start, start + 86_400)
            }
            Self::Month => {
                let (y, m, _) = civil_from_days(now.div_euclid(86_400));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * 86_400,
                    days_from_civil(ny, nm, 1) * 86_400,
                )
            }
        }
    }

    /// The nominal length in seconds (a month counts 30 days), for the `RateLimit-Policy` header.
    pub fn nominal_secs(self) -> u64 {
        match self {
            Self::Hour => 3600,
            Self::Day => 86_400,
            Self::Month => 30 * 86_400,
        }
    }

    /// `hour`, `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A proleptic Gregorian date to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A long-window quota: at most `count` requests per calendar [`Window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Requests per window.
    pub count: u64,
    /// The window.
    pub window: Window,
}

impl Quota {
    /// `count` requests per `window`.
    pub fn new(count: u64, window: Window) -> Self {
        Self {
            count: count.max(1),
            window,
        }
    }

    /// Parses `N/hour`, `N/day`, `N/month` (also `h`, `d`, `mo`).
    ///
    /// # Errors
    ///
    /// A message naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (n, unit) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not a quota (use e.g. 1000/hour, 10000/day, 100000/month)")
        })?;
        let n: u64 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{text}`: the count must be a positive number"))?;
        let window = match unit.trim() {
            "h" | "hour" => Window::Hour,
            "d" | "day" => Window::Day,
            "mo" | "month" => Window::Month,
            u => {
                return Err(format!(
                    "`{text}`: unknown window `{u}` (hour, day or month)"
                ));
            }
        };
        Ok(Self::new(n, window))
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.window.as_str())
    }
}

/// The limits of one key or tenant: an optional rate and an optional quota. Stored with a key
/// (as JSON) to override the authenticator's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyLimits {
    /// A rate with a burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// A long-window quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl KeyLimits {
    /// Limits with this rate and quota.
    pub fn new(rate: Option<Rate>, quota: Option<Quota>) -> Self {
        Self { rate, quota }
    }

    /// Whether neither a rate nor a quota is set.
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.quota.is_none()
    }

    /// `self`, with `defaults` filling what `self` leaves unset.
    #[must_use]
    pub fn or(self, defaults: KeyLimits) -> Self {
        Self {
            rate: self.rate.or(defaults.rate),
            quota: self.quota.or(defaults.quota),
        }
    }
}

/// Whose allowance a limit counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// One key.
    Key,
    /// All keys of a tenant together.
    Tenant,
}

impl Dimension {
    /// `key` or `tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Tenant => "tenant",
        }
    }
}

/// One limit of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A rate (GCRA).
    Rate(Rate),
    /// A quota over a calendar window.
    Quota(Quota),
}

/// One limit to check for a request: whose allowance (`dimension` and `bucket`, the key id or
/// the tenant) and which limit.
#[derive(Debug, Clone, Copy)]
pub struct LimitCheck<'a> {
    /// Key or tenant.
    pub dimension: Dimension,
    /// The key id or tenant name.
    pub bucket: &'a str,
    /// The limit.
    pub limit: Limit,
}

impl LimitCheck<'_> {
    /// The policy name of the `RateLimit` headers (`key-rate`, `tenant-day`, ...).
    pub fn policy_name(&self) -> &'static str {
        match (self.dimension, self.limit) {
            (Dimension::Key, Limit::Rate(_)) => "key-rate",
            (Dimension::Key, Limit::Quota(q)) => match q.window {
                Window::Hour => "key-hour",
                Window::Day => "key-day",
                Window::Month => "key-month",
            },
            (Dimension::Tenant, Limit::Rate(_)) => "tenant-rate",
            (Dimension::Tenant, Limit::Quota(q)) => match q.window {
                Window::Hour => "tenant-hour",
                Window::Day => "tenant-day",
                Window::Month => "tenant-month",
            },
        }
    }
}

/// The answer of a limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitDecision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// When to try again (zero when allowed).
    pub retry_after: Duration,
    /// The limit closest to exhaustion (the refusing one, when refused), for the headers;
    /// `None` when no limit applied or the backend could not say (failing open).
    pub status: Option<RateLimitStatus>,
}

impl LimitDecision {
    /// Allowed, with no limit to report.
    pub const UNLIMITED: Self = Self {
        allowed: true,
        retry_after: Duration::ZERO,
        status: None,
    };

    /// A decision from its parts (for [`Limiter`] implementations).
    pub fn new(allowed: bool, retry_after: Duration, status: Option<RateLimitStatus>) -> Self {
        Self {
            allowed,
            retry_after,
            status,
        }
    }
}

/// Why a limiter could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The backend did not answer in time or failed; the detail is for logs.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// The answer of [`Limiter::check`]: at once (in process) or after I/O (a shared backend).
pub enum LimitOutcome {
    /// Decided without waiting.
    Ready(Result<LimitDecision, LimitError>),
    /// Decided by a backend round trip.
    Pending(BoxFuture<'static, Result<LimitDecision, LimitError>>),
}

impl fmt::Debug for LimitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Self::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

impl LimitOutcome {
    /// Waits for the answer.
    pub async fn resolve(self) -> Result<LimitDecision, LimitError> {
        match self {
            Self::Ready(r) => r,
            Self::Pending(f) => f.await,
        }
    }
}

/// A rate-limit backend: in process ([`InProcessLimiter`]) or shared between replicas (Redis,
/// feature `redis`).
pub trait Limiter: Send + Sync + 'static {
    /// Checks one request against all `checks` together at `now` (seconds since the Unix epoch;
    /// it places quota windows): allowed only when every check allows, and then counted by
    /// every one; a refused request counts against none.
    fn check(&self, checks: &[LimitCheck<'_>], now: i64) -> LimitOutcome;

    /// Whether [`Limiter::check`] waits for I/O (a shared backend): callers on a synchronous
    /// fast path then skip straight to their asynchronous one instead of preparing a check
    /// they would drop. `false` by default.
    fn needs_io(&self) -> bool {
        false
    }
}

/// A table of per-bucket state, sharded, bounded.
struct Table<T> {
    shards: Box<[Mutex<HashMap<String, T>>]>,
    per_shard: usize,
}

impl<T: Copy> Table<T> {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Runs `f` on the bucket's state (`None` when untracked); `f` returns the new state to
    /// keep, if any, and the result. `stale` says which entries may go when the shard is full.
    fn update<R>(
        &self,
        hash: u64,
        bucket: &str,
        stale: impl Fn(&T) -> bool,
        f: impl FnOnce(Option<T>) -> (Option<T>, R),
    ) -> R {
        let shard = &self.shards[hash as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let (new, r) = f(map.get(bucket).copied());
        if let Some(new) = new {
            if let Some(slot) = map.get_mut(bucket) {
                *slot = new;
            } else {
                if map.len() >= self.per_shard {
                    map.retain(|_, v| !stale(v));
                }
                if map.len() < self.per_shard {
                    map.insert(bucket.to_owned(), new);
                }
            }
        }
        r
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Quota state: the window's start and the requests counted in it.
#[derive(Clone, Copy)]
struct Count {
    window_start: i64,
    used: u64,
}

/// Rates and quotas in process, bounded: the default backend, exact for one process.
pub struct InProcessLimiter {
    /// GCRA TATs, per dimension.
    rates: [Table<u64>; 2],
    /// Quota counts, per dimension and window.
    quotas: [Table<Count>; 2],
    hasher: foldhash::fast::FixedState,
    origin: Instant,
}

impl fmt::Debug for InProcessLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessLimiter")
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

/// The outcome of one check before the others are known.
struct Step {
    allowed: bool,
    retry_after: Duration,
    status: RateLimitStatus,
}

fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

impl InProcessLimiter {
    /// A limiter tracking at most about `capacity` buckets of each kind.
    pub fn new(capacity: usize) -> Self {
        Self {
            rates: [Table::new(capacity), Table::new(capacity)],
            quotas: [Table::new(capacity), Table::new(capacity)],
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
            origin: Instant::now(),
        }
    }

    /// How many buckets are tracked now.
    pub fn tracked(&self) -> usize {
        self.rates.iter().map(Table::len).sum::<usize>()
            + self.quotas.iter().map(Table::len).sum::<usize>()
    }

    fn now_ns(&self) -> u64 {
        // Offset by a day so that "no state yet" (TAT = now) is never near zero.
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(86_400_000_000_000)
    }

    /// Checks (and, when allowed, counts) one request of `bucket` under `rate` at `now_ns`
    /// (nanoseconds on any monotonic clock, the same for every call), in the per-key table.
    pub fn check_rate(&self, bucket: &str, rate: &Rate, now_ns: u64) -> LimitDecision {
        let check = LimitCheck {
            dimension: Dimension::Key,
            bucket,
            limit: Limit::Rate(*rate),
        };
        let step = self.gcra(&check, rate, now_ns, true);
        LimitDecision::new(step.allowed, step.retry_after, Some(step.status))
    }

    fn table_index(d: Dimension) -> usize {
        match d {
            Dimension::Key => 0,
            Dimension::Tenant => 1,
        }
    }

    fn gcra(&self, check: &LimitCheck<'_>, rate: &Rate, now_ns: u64, commit: bool) -> Step {
        let t = rate.interval_ns();
        let burst_ns = t.saturating_mul(u64::from(rate.burst));
        let policy = check.policy_name();
        let window_secs = rate.period.as_secs().max(1);
        let hash = self.hasher.hash_one(check.bucket);
        self.rates[Self::table_index(check.dimension)].update(
            hash,
            check.bucket,
            |tat| *tat <= now_ns,
            |state| {
                let tat = state.unwrap_or(now_ns).max(now_ns);
                let new_tat = tat.saturating_add(t);
                let allow_at = new_tat.saturating_sub(burst_ns);
                if now_ns < allow_at {
                    let step = Step {
                        allowed: false,
                        retry_after: Duration::from_nanos(allow_at - now_ns),
                        status: RateLimitStatus {
                            policy,
                            limit: u64::from(rate.burst),
                            window_secs,
                            remaining: 0,
                            reset_secs: ceil_secs(tat - now_ns),
                        },
                    };
                    return (None, step);
                }
                let used = new_tat - now_ns;
                let step = Step {
                    allowed: true,
                    retry_after: Duration::ZERO,
                    status: RateLimitStatus {
                        policy,
                        limit: u64::from(rate.burst),
                        window_secs,
                        remaining: (burst_ns.saturating_sub(used) / t).min(u64::from(rate.burst)),
                        reset_secs: ceil_secs(used),
                    },
                };
                (commit.then_some(new_tat), step)
            },
        )
    }

    fn quota(&self, check: &LimitCheck<'_>, quota: &Quota, now: i64, commit: bool) -> Step {
        let (start, end) = quota.window.bounds(now);
        let policy = check.policy_name();
        let reset_secs = u64::try_from(end - now).unwrap_or(0);
        let hash = self.hasher.hash_one(check.bucket);
        self.quotas[Self::table_index(check.dimension)].update(
            hash,
            check.bucket,
            |c| c.window_start < start,
            |state| {
                let used = state
                    .filter(|c| c.window_start == start)
                    .map_or(0, |c| c.used);
                let status = RateLimitStatus {
                    policy,
                    limit: quota.count,
                    window_secs: quota.window.nominal_secs(),
                    remaining: quota.count.saturating_sub(used + 1),
                    reset_secs,
                };
                if used >= quota.count {
                    let step = Step {
                        allowed: false,
                        retry_after: Duration::from_secs(reset_secs),
                        status: RateLimitStatus {
                            remaining: 0,
                            ..status
                        },
                    };
                    return (None, step);
                }
                let new = Count {
                    window_start: start,
                    used: used + 1,
                };
                let step = Step {
                    allowed: true,
                    retry_after: Duration::ZERO,
                    status,
                };
                (commit.then_some(new), step)
            },
        )
    }

    /// Takes back one counted request (a later check of the same request refused it).
    fn undo(&self, check: &LimitCheck<'_>, now: i64) {
        match check.limit {
            Limit::Rate(rate) => {
                let hash = self.hasher.hash_one(check.bucket);
                self.rates[Self::table_index(check.dimension)].update(
                    hash,
                    check.bucket,
                    |_| false,
                    |state| (state.map(|tat| tat.saturating_sub(rate.interval_ns())), ()),
                );
            }
            Limit::Quota(quota) => {
                let (start, _) = quota.window.bounds(now);
                let hash = self.hasher.hash_one(check.bucket);
                self.quotas[Self::table_index(check.dimension)].update(
                    hash,
                    check.bucket,
                    |_| false,
                    |state| {
                        let new = state.filter(|c| c.window_start == start).map(|c| Count {
                            window_start: start,
                            used: c.used.saturating_sub(1),
                        });
                        (new, ())
                    },
                );
            }
        }
    }

    /// [`Limiter::check`], synchronously.
    pub fn check_now(&self, checks: &[LimitCheck<'_>], now: i64) -> LimitDecision {
        let now_ns = self.now_ns();
        let mut closest: Option<RateLimitStatus> = None;
        for (i, check) in checks.iter().enumerate() {
            let step = match &check.limit {
                Limit::Rate(rate) => self.gcra(check, rate, now_ns, true),
                Limit::Quota(quota) => self.quota(check, quota, now, true),
            };
            if !step.allowed {
                for done in &checks[..i] {
                    self.undo(done, now);
                }
                return LimitDecision::new(false, step.retry_after, Some(step.status));
            }
            if closest.is_none_or(|c| step.status.remaining < c.remaining) {
                closest = Some(step.status);
            }
        }
        LimitDecision::new(true, Duration::ZERO, closest)
    }
}

impl Limiter for InProcessLimiter {
    fn check(&self, checks: &[LimitCheck<'_>], now: i64) -> LimitOutcome {
        LimitOutcome::Ready(Ok(self.check_now(checks, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn key_rate(bucket: &str, rate: Rate) -> LimitCheck<'_> {
        LimitCheck {
            dimension: Dimension::Key,
            bucket,
            limit: Limit::Rate(rate),
        }
    }

    #[test]
    fn steady_rate_and_burst() {
        let l = InProcessLimiter::new(100);
        let r = Rate::per(Duration::from_secs(1), 5).burst(5);
        let t0 = 10 * S;
        let allowed = (0..10)
            .filter(|_| l.check_rate("k", &r, t0).allowed)
            .count();
        assert_eq!(allowed, 5, "the burst, then refusals");
        // One more every 200 ms.
        assert!(l.check_rate("k", &r, t0 + S / 5).allowed);
        assert!(!l.check_rate("k", &r, t0 + S / 5).allowed);
        // Over 10 s at 50 req/s offered, 5/s get through, plus the 4 of the burst that
        // refilled between t0 + 200 ms and t0 + 1 s.
        let mut ok = 0;
        for i in 0..500u64 {
            if l.check_rate("k", &r, t0 + S + i * S / 50).allowed {
                ok += 1;
            }
        }
        assert!((53..=54).contains(&ok), "{ok} allowed in 10 s");
    }

    #[test]
    fn remaining_and_headers() {
        let l = InProcessLimiter::new(100);
        let r = Rate::per(Duration::from_secs(60), 3);
        let d = l.check_rate("k", &r, S);
        let status = d.status.unwrap();
        assert_eq!((d.allowed, status.remaining), (true, 2));
        let [(p, policy), (n, now)] = status.headers();
        assert_eq!(
            (p, policy.as_str()),
            ("ratelimit-policy", "\"key-rate\";q=3;w=60")
        );
        assert_eq!((n, now.as_str()), ("ratelimit", "\"key-rate\";r=2;t=20"));
        l.check_rate("k", &r, S);
        l.check_rate("k", &r, S);
        let refused = l.check_rate("k", &r, S);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        // Other keys are independent.
        assert!(l.check_rate("other", &r, S).allowed);
    }

    #[test]
    fn parse_and_store_rates_and_quotas() {
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
        assert_eq!(
            Quota::parse("1000/day").unwrap(),
            Quota::new(1000, Window::Day)
        );
        assert_eq!(Quota::parse("5/mo").unwrap().window, Window::Month);
        assert!(Quota::parse("5/week").is_err());

        let limits = KeyLimits::new(
            Some(Rate::parse("5/s").unwrap().burst(8)),
            Some(Quota::parse("100/hour").unwrap()),
        );
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(
            json,
            r#"{"rate":{"count":5,"period_secs":1,"burst":8},"quota":{"count":100,"window":"hour"}}"#
        );
        assert_eq!(serde_json::from_str::<KeyLimits>(&json).unwrap(), limits);
        assert_eq!(
            serde_json::from_str::<KeyLimits>("{}").unwrap(),
            KeyLimits::default()
        );
        assert!(
            serde_json::from_str::<KeyLimits>(r#"{"rate":{"count":0,"period_secs":1,"burst":1}}"#)
                .is_err()
        );
        assert_eq!(limits.rate.unwrap().to_string(), "5/s (burst 8)");
        assert_eq!(limits.quota.unwrap().to_string(), "100/hour");
    }

    #[test]
    fn calendar_windows() {
        // 2024-02-29T13:45:00Z
        let t = 1_709_214_300;
        assert_eq!(Window::Hour.bounds(t), (1_709_211_600, 1_709_215_200));
        assert_eq!(Window::Day.bounds(t), (1_709_164_800, 1_709_251_200));
        // February 2024 (leap year) to March 2024.
        assert_eq!(Window::Month.bounds(t), (1_706_745_600, 1_709_251_200));
        // December rolls into the next year: 2023-12-31T23:59:59Z.
        assert_eq!(
            Window::Month.bounds(1_704_067_199),
            (1_701_388_800, 1_704_067_200)
        );
        assert_eq!(Window::Month.bounds(0), (0, 31 * 86_400));
    }

    #[test]
    fn quotas_count_per_window_and_refusals_count_nowhere() {
        let l = InProcessLimiter::new(100);
        let quota = LimitCheck {
            dimension: Dimension::Key,
            bucket: "k",
            limit: Limit::Quota(Quota::new(3, Window::Hour)),
        };
        let tenant_rate = LimitCheck {
            dimension: Dimension::Tenant,
            bucket: "acme",
            limit: Limit::Rate(Rate::per(Duration::from_secs(3600), 2)),
        };
        let t = 7200 + 100; // 100 s into an hour
        let first = l.check_now(&[quota, tenant_rate], t);
        assert!(first.allowed);
        assert_eq!(
            first.status.unwrap().policy,
            "tenant-rate",
            "closest to exhaustion"
        );
        assert_eq!(first.status.unwrap().remaining, 1);
        assert!(l.check_now(&[quota, tenant_rate], t).allowed);
        // The tenant's rate refuses the third: the key's quota must not count it.
        let third = l.check_now(&[quota, tenant_rate], t);
        assert!(!third.allowed);
        assert_eq!(third.status.unwrap().policy, "tenant-rate");
        let alone = l.check_now(&[quota], t);
        assert!(alone.allowed, "2 of 3 used, not 3");
        assert_eq!(alone.status.unwrap().remaining, 0);
        let over = l.check_now(&[quota], t + 1);
        assert!(!over.allowed);
        assert_eq!(over.retry_after, Duration::from_secs(3600 - 101));
        assert_eq!(over.status.unwrap().reset_secs, 3600 - 101);
        // The next hour starts afresh.
        assert!(l.check_now(&[quota], 10_800).allowed);
        // Dimensions are separate tables: the same name as a tenant is another bucket.
        let as_tenant = LimitCheck {
            dimension: Dimension::Tenant,
            ..quota
        };
        assert!(l.check_now(&[as_tenant], t).allowed);
    }

    #[test]
    fn memory_is_bounded() {
        let l = InProcessLimiter::new(32);
        let r = Rate::per(Duration::from_secs(3600), 1);
        let q = Quota::new(5, Window::Day);
        for i in 0..10_000 {
            let bucket = format!("key-{i}");
            l.check_now(
                &[
                    key_rate(&bucket, r),
                    LimitCheck {
                        dimension: Dimension::Key,
                        bucket: &bucket,
                        limit: Limit::Quota(q),
                    },
                ],
                1_000,
            );
        }
        assert!(l.tracked() <= 64, "{}", l.tracked());
    }

    #[test]
    fn near_the_clock_origin() {
        let l = InProcessLimiter::new(100);
        let r = Rate::per(Duration::from_secs(3600), 2);
        assert!(l.check_rate("k", &r, 1_000).allowed);
        assert!(l.check_rate("k", &r, 2_000).allowed);
        assert!(!l.check_rate("k", &r, 3_000).allowed);
    }
}

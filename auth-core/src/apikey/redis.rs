//! The Redis rate-limit backend (feature `redis`): [`RedisLimiter`], one [`Limiter`] shared by
//! every replica of a service, so that a key's rate and quota hold across all of them.
//!
//! # What it stores
//!
//! One Redis string per bucket, under a key prefix (`auth:rl:` by default):
//!
//! - a **rate** (GCRA, as in [`limit`](super::limit)) keeps its theoretical arrival time (TAT),
//!   in microseconds since the Unix epoch, at `<prefix>r:<k|t>:<bucket>` (`k` for a key, `t`
//!   for a tenant), e.g. `auth:rl:r:k:key-1`. It expires (`PX`) a second past the TAT, when it
//!   no longer says anything: a missing TAT and a TAT in the past mean the same.
//! - a **quota** keeps a counter per calendar window at
//!   `<prefix>q:<k|t>:<hour|day|month>:<window start>:<bucket>`, e.g.
//!   `auth:rl:q:t:day:1709164800:acme`. The window is placed by the `now` given to
//!   [`Limiter::check`] ([`Window::bounds`](super::limit::Window::bounds)); the counter
//!   expires a minute after the window ends.
//!
//! # One script, atomic
//!
//! A request is checked by one Lua script (`EVALSHA` of a script loaded at
//! [`connect`](RedisLimiterBuilder::connect), one round trip; after a Redis restart or a
//! `SCRIPT FLUSH` the first call finds no script, loads it again and retries, once). The script
//! runs atomically: it evaluates every check of the request first and, if one refuses, changes
//! nothing and answers which one and when to retry; otherwise it counts the request in every
//! bucket. So a request refused by its tenant's rate never spends its key's quota, as with
//! [`InProcessLimiter`](super::limit::InProcessLimiter), and both backends answer with the same
//! policy names, limits, windows, remaining counts and reset times.
//!
//! # Time
//!
//! Rates read the time inside the script (`TIME`, in microseconds), so replicas whose clocks
//! disagree still share one timeline; the emission interval is kept in whole microseconds
//! (rates finer than 1 µs per request are not distinguished). Quotas are placed by the caller's
//! `now` (seconds), as with the in-process limiter, so both agree on calendar windows.
//!
//! # Failures
//!
//! Every check is bounded by the [timeout](RedisLimiterBuilder::timeout) (100 ms by default),
//! connecting included: a Redis that is down, refusing connections or silently dropping
//! packets never holds a request longer than that. A failed check emits one `WARN` event with
//! target `auth::audit` and `outcome = "limiter_unavailable"` (with the fail mode and a short
//! error kind such as `timeout` or `connection_refused`; never the URL or a password), then
//! answers according to the [`FailMode`]: [`FailMode::Closed`] (the default) answers
//! [`LimitError::Unavailable`] (the request is refused as unavailable), [`FailMode::Open`]
//! lets the request through unlimited ([`LimitDecision::UNLIMITED`]).
//!
//! The connection is re-established in the background after a dropped connection; when a
//! connection stops answering without being dropped (a network partition), it is replaced once
//! no answer has come for a while (four timeouts, at least one second), so checks succeed again
//! soon after Redis is reachable again.
//!
//! # Limitations
//!
//! All the keys of one request must live on one Redis node, since one script touches them all.
//! A single Redis (with replicas for failover) is fine. On Redis Cluster, the keys of one
//! request usually hash to different slots and the script fails with `CROSSSLOT`; a prefix with
//! a hash tag (`{rl}:`) puts every bucket in one slot, which works but puts all the limiter's
//! load on one node.
//!
//! # Example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::apikey::ApiKeys;
//! use auth_core::apikey::limit::{Quota, Rate, Window};
//! use auth_core::apikey::redis::{FailMode, RedisLimiter};
//! use auth_core::apikey::store::MemoryStore;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let limiter = RedisLimiter::builder("redis://127.0.0.1:6379")
//!     .prefix("myapi:rl:")
//!     .timeout(Duration::from_millis(50))
//!     .fail_mode(FailMode::Closed)
//!     .connect()
//!     .await?;
//! let keys = ApiKeys::builder(Arc::new(MemoryStore::new()))
//!     .rate_per_key(Rate::parse("10/s")?)
//!     .quota_per_tenant(Quota::new(100_000, Window::Day))
//!     .limiter(Arc::new(limiter))
//!     .build()?;
//! # let _ = keys; Ok(()) }
//! ```

use super::limit::{
    Dimension, Limit, LimitCheck, LimitDecision, LimitError, LimitOutcome, Limiter, RateLimitStatus,
};
use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ScriptInvocation, ServerErrorKind};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// The script of one check; see the module docs. Numbers are written back with `%.0f`: Lua
/// numbers are doubles, exact for integers below 2^53 (microsecond timestamps are about 2^51),
/// and `tostring` would round them to 14 digits.
const LUA: &str = r"
-- KEYS[i]: the state of check i. ARGV[3i-2]: 'r' (a GCRA rate) or 'q' (a quota);
--   rate:  ARGV[3i-1] = the emission interval T (us), ARGV[3i] = burst * T (us)
--   quota: ARGV[3i-1] = the count per window,        ARGV[3i] = the counter's TTL (s)
-- Returns {1, 0, v1, ..., vn} when every check allows (every state then counts the request),
-- or {0, i, v1, ..., vi} when check i is the first to refuse (nothing is changed). v is
-- max(TAT, now) - now in microseconds for a rate, the count before this request for a quota.
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local state = {}
local out = {1, 0}
for i = 1, #KEYS do
  local key = KEYS[i]
  local a = tonumber(ARGV[3 * i - 1])
  local b = tonumber(ARGV[3 * i])
  local cur = state[key]
  if cur == nil then
    cur = tonumber(redis.call('GET', key)) or 0
  end
  local v
  local refused
  if ARGV[3 * i - 2] == 'r' then
    if cur < now then cur = now end
    v = cur - now
    refused = v + a > b
    cur = cur + a
  else
    v = cur
    refused = cur >= a
    cur = cur + 1
  end
  out[i + 2] = v
  if refused then
    out[1] = 0
    out[2] = i
    return out
  end
  state[key] = cur
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local new = state[key]
  if new ~= nil then
    state[key] = nil
    if ARGV[3 * i - 2] == 'r' then
      local ttl = math.ceil((new - now) / 1000) + 1000
      redis.call('SET', key, string.format('%.0f', new), 'PX', string.format('%.0f', ttl))
    else
      redis.call('SET', key, string.format('%.0f', new), 'EX', ARGV[3 * i])
    end
  end
end
return out
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LUA));

/// How long a quota counter outlives its window (absorbs clock differences between replicas).
const QUOTA_GRACE_SECS: i64 = 60;
/// The shortest silence after which a connection that times out is replaced.
const MIN_RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// What a [`RedisLimiter`] answers when Redis cannot (either way, the failure is logged as an
/// `auth::audit` event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailMode {
    /// Refuse: [`Limiter::check`] answers [`LimitError::Unavailable`] (the default; limits are
    /// never exceeded, at the price of availability while Redis is down).
    #[default]
    Closed,
    /// Let requests through unlimited ([`LimitDecision::UNLIMITED`]) while Redis is down: no
    /// outage from the limiter, but no limits either.
    Open,
}

impl FailMode {
    /// `closed` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// Configures a [`RedisLimiter`]; made by [`RedisLimiter::builder`].
#[derive(Clone)]
pub struct RedisLimiterBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    fail_mode: FailMode,
}

impl fmt::Debug for RedisLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiterBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("fail_mode", &self.fail_mode)
            .finish()
    }
}

impl RedisLimiterBuilder {
    /// The prefix of every Redis key (default `auth:rl:`); give each service (or test run) its
    /// own, or the same one to services that must share limits.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a check may take, connecting included (default 100 ms); past it the check
    /// fails as the [`FailMode`] says.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer when Redis cannot (default [`FailMode::Closed`]).
    #[must_use]
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Connects to Redis and loads the script, within the timeout.
    ///
    /// Needs a Tokio runtime (the connection is driven by a task on it).
    ///
    /// # Errors
    ///
    /// [`LimitError::Unavailable`] for a URL that does not parse, a zero timeout, or a Redis that
    /// does not answer in time or fails. The message names the URL with its password replaced
    /// by `***`.
    pub async fn connect(self) -> Result<RedisLimiter, LimitError> {
        let redacted = redact(&self.url);
        let secrets = secrets(&self.url);
        if self.timeout.is_zero() {
            return Err(LimitError::Unavailable(
                "the Redis limiter's timeout must be positive".into(),
            ));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            LimitError::Unavailable(format!(
                "invalid Redis URL {redacted}: {}",
                scrub(&e.to_string(), &secrets)
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(250));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| {
                LimitError::Unavailable(format!(
                    "Redis at {redacted}: {}",
                    scrub(&e.to_string(), &secrets)
                ))
            })?;
        let mut conn = manager.clone();
        match tokio::time::timeout(self.timeout, SCRIPT.load_async(&mut conn)).await {
            Ok(Ok(_sha)) => {}
            Ok(Err(e)) => {
                return Err(LimitError::Unavailable(format!(
                    "Redis at {redacted}: {} ({})",
                    Failure::Redis(e.clone()).kind(),
                    scrub(&e.to_string(), &secrets)
                )));
            }
            Err(_) => {
                return Err(LimitError::Unavailable(format!(
                    "Redis at {redacted} did not answer within {:?}",
                    self.timeout
                )));
            }
        }
        let origin = Instant::now();
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                conn: ArcSwap::from_pointee(manager),
                client,
                config,
                prefix: self.prefix,
                timeout: self.timeout,
                fail_mode: self.fail_mode,
                reconnect_after: (self.timeout * 4).max(MIN_RECONNECT_AFTER),
                origin,
                last_answer_ms: AtomicU64::new(0),
                last_replaced_ms: AtomicU64::new(0),
                redacted_url: redacted,
                secrets,
            }),
        })
    }
}

/// Rate limits and quotas in Redis, shared by every replica that uses the same Redis and key
/// prefix; see the [module docs](self). Cheap to clone (clones share the connection).
///
/// Its checks must be awaited on a Tokio runtime with the time driver enabled (they are
/// bounded by `tokio::time::timeout`).
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection in use; replaced when it stops answering.
    conn: ArcSwap<ConnectionManager>,
    client: redis::Client,
    config: ConnectionManagerConfig,
    prefix: String,
    timeout: Duration,
    fail_mode: FailMode,
    reconnect_after: Duration,
    origin: Instant,
    /// When Redis last answered, in ms since `origin`.
    last_answer_ms: AtomicU64,
    /// When the connection was last replaced, in ms since `origin`.
    last_replaced_ms: AtomicU64,
    redacted_url: String,
    /// The URL's password, scrubbed from error messages.
    secrets: Vec<String>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("url", &self.inner.redacted_url)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("fail_mode", &self.inner.fail_mode)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Starts configuring a limiter on the Redis at `url`
    /// (`redis://[user:password@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            url: url.into(),
            prefix: "auth:rl:".into(),
            timeout: Duration::from_millis(100),
            fail_mode: FailMode::Closed,
        }
    }

    /// The fail mode.
    pub fn fail_mode(&self) -> FailMode {
        self.inner.fail_mode
    }

    /// Sends `PING` on the limiter's connection, within its timeout: a readiness probe.
    ///
    /// # Errors
    ///
    /// [`LimitError::Unavailable`] when Redis does not answer in time or fails.
    pub async fn ping(&self) -> Result<(), LimitError> {
        let inner = &self.inner;
        let conn = inner.conn.load_full();
        let mut manager = ConnectionManager::clone(&conn);
        let cmd = redis::cmd("PING");
        let reply = match tokio::time::timeout(
            inner.timeout,
            cmd.query_async::<String>(&mut manager),
        )
        .await
        {
            Ok(Ok(_pong)) => Ok(()),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        };
        match reply {
            Ok(()) => {
                inner.answered();
                Ok(())
            }
            Err(f) => {
                inner.after_failure(&f, &conn);
                Err(LimitError::Unavailable(inner.describe(&f)))
            }
        }
    }
}

/// What the script's answer for one check means.
#[derive(Clone, Copy)]
enum Plan {
    Rate {
        interval_us: u64,
        burst_us: u64,
        burst: u32,
        window_secs: u64,
    },
    Quota {
        count: u64,
        window_secs: u64,
        reset_secs: u64,
    },
}

#[derive(Clone, Copy)]
struct Planned {
    policy: &'static str,
    plan: Plan,
}

fn ceil_secs_us(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

impl Planned {
    /// The status (and retry-after, when refused) of this check, from the script's value.
    fn step(&self, value: u64, allowed: bool) -> (Duration, RateLimitStatus) {
        match self.plan {
            Plan::Rate {
                interval_us,
                burst_us,
                burst,
                window_secs,
            } => {
                // value = max(TAT, now) - now.
                let used = value.saturating_add(interval_us);
                let status = RateLimitStatus {
                    policy: self.policy,
                    limit: u64::from(burst),
                    window_secs,
                    remaining: 0,
                    reset_secs: ceil_secs_us(value),
                };
                if allowed {
                    let remaining =
                        (burst_us.saturating_sub(used) / interval_us).min(u64::from(burst));
                    let status = RateLimitStatus {
                        remaining,
                        reset_secs: ceil_secs_us(used),
                        ..status
                    };
                    (Duration::ZERO, status)
                } else {
                    (Duration::from_micros(used.saturating_sub(burst_us)), status)
                }
            }
            Plan::Quota {
                count,
                window_secs,
                reset_secs,
            } => {
                // value = the count before this request.
                let status = RateLimitStatus {
                    policy: self.policy,
                    limit: count,
                    window_secs,
                    remaining: 0,
                    reset_secs,
                };
                if allowed {
                    let remaining = count.saturating_sub(value.saturating_add(1));
                    (
                        Duration::ZERO,
                        RateLimitStatus {
                            remaining,
                            ..status
                        },
                    )
                } else {
                    (Duration::from_secs(reset_secs), status)
                }
            }
        }
    }
}

/// The decision from the script's reply, or `None` for a reply of the wrong shape.
fn decide(plans: &[Planned], reply: &[i64]) -> Option<LimitDecision> {
    let (&flag, rest) = reply.split_first()?;
    let (&index, values) = rest.split_first()?;
    let value = |i: usize| values.get(i).and_then(|v| u64::try_from(*v).ok());
    match flag {
        1 if values.len() == plans.len() => {
            let mut closest: Option<RateLimitStatus> = None;
            for (i, plan) in plans.iter().enumerate() {
                let (_, status) = plan.step(value(i)?, true);
                if closest.is_none_or(|c| status.remaining < c.remaining) {
                    closest = Some(status);
                }
            }
            Some(LimitDecision::new(true, Duration::ZERO, closest))
        }
        0 => {
            let i = usize::try_from(index).ok()?.checked_sub(1)?;
            if values.len() != i + 1 {
                return None;
            }
            let (retry_after, status) = plans.get(i)?.step(value(i)?, false);
            Some(LimitDecision::new(false, retry_after, Some(status)))
        }
        _ => None,
    }
}

/// Why a check failed.
enum Failure {
    Timeout,
    Redis(RedisError),
    BadReply,
}

impl Failure {
    /// A short code for logs.
    fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::BadReply => "bad_reply",
            Self::Redis(e) => {
                if e.is_timeout() {
                    "timeout"
                } else if e.is_connection_refusal() {
                    "connection_refused"
                } else if e.is_connection_dropped() {
                    "connection_dropped"
                } else {
                    match e.kind() {
                        ErrorKind::Io => "io",
                        ErrorKind::AuthenticationFailed => "authentication_failed",
                        ErrorKind::Server(ServerErrorKind::ReadOnly) => "read_only",
                        ErrorKind::Server(_) | ErrorKind::Extension => "script_error",
                        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => "bad_reply",
                        _ => "client_error",
                    }
                }
            }
        }
    }

    /// Whether the connection may be stuck (no answer, or a replica after a failover) rather
    /// than dropped (which the connection manager handles itself).
    fn stuck(&self) -> bool {
        match self {
            Self::Timeout => true,
            Self::Redis(e) => {
                e.is_timeout() || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            }
            Self::BadReply => false,
        }
    }
}

impl Inner {
    fn ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn answered(&self) {
        self.last_answer_ms.store(self.ms(), Ordering::Relaxed);
    }

    /// Builds the script's keys and arguments and what its answer will mean.
    fn prepare(
        &self,
        checks: &[LimitCheck<'_>],
        now: i64,
    ) -> (ScriptInvocation<'static>, Vec<Planned>) {
        let mut invocation = SCRIPT.prepare_invoke();
        let mut plans = Vec::with_capacity(checks.len());
        for check in checks {
            let dim = match check.dimension {
                Dimension::Key => "k",
                Dimension::Tenant => "t",
            };
            let policy = check.policy_name();
            match check.limit {
                Limit::Rate(rate) => {
                    let interval_us = (rate.interval_ns() / 1000).max(1);
                    let burst = rate.get_burst();
                    let burst_us = interval_us.saturating_mul(u64::from(burst));
                    invocation
                        .key(format!("{}r:{dim}:{}", self.prefix, check.bucket))
                        .arg("r")
                        .arg(interval_us)
                        .arg(burst_us);
                    plans.push(Planned {
                        policy,
                        plan: Plan::Rate {
                            interval_us,
                            burst_us,
                            burst,
                            window_secs: rate.period().as_secs().max(1),
                        },
                    });
                }
                Limit::Quota(quota) => {
                    let (start, end) = quota.window.bounds(now);
                    let ttl = end.saturating_sub(now).max(0) + QUOTA_GRACE_SECS;
                    invocation
                        .key(format!(
                            "{}q:{dim}:{}:{start}:{}",
                            self.prefix,
                            quota.window.as_str(),
                            check.bucket
                        ))
                        .arg("q")
                        .arg(quota.count)
                        .arg(ttl);
                    plans.push(Planned {
                        policy,
                        plan: Plan::Quota {
                            count: quota.count,
                            window_secs: quota.window.nominal_secs(),
                            reset_secs: u64::try_from(end - now).unwrap_or(0),
                        },
                    });
                }
            }
        }
        (invocation, plans)
    }

    async fn run(
        &self,
        invocation: ScriptInvocation<'static>,
        plans: Vec<Planned>,
    ) -> Result<LimitDecision, LimitError> {
        let started = Instant::now();
        let conn = self.conn.load_full();
        let mut manager = ConnectionManager::clone(&conn);
        let reply = match tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<Vec<i64>>(&mut manager),
        )
        .await
        {
            Ok(Ok(reply)) => decide(&plans, &reply).ok_or(Failure::BadReply),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        };
        match reply {
            Ok(decision) => {
                self.answered();
                Ok(decision)
            }
            Err(failure) => {
                self.after_failure(&failure, &conn);
                let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let detail = self.describe(&failure);
                tracing::warn!(
                    target: "auth::audit",
                    outcome = "limiter_unavailable",
                    reason = failure.kind(),
                    backend = "redis",
                    fail_mode = self.fail_mode.as_str(),
                    latency_us,
                    detail = detail.as_str(),
                    "rate limiter unavailable"
                );
                match self.fail_mode {
                    FailMode::Closed => Err(LimitError::Unavailable(detail)),
                    FailMode::Open => Ok(LimitDecision::UNLIMITED),
                }
            }
        }
    }

    /// A message for logs: the error kind and Redis's own words, without the URL or password.
    fn describe(&self, failure: &Failure) -> String {
        match failure {
            Failure::Timeout => format!("redis: no answer within {:?}", self.timeout),
            Failure::BadReply => "redis: unexpected reply from the limit script".into(),
            Failure::Redis(e) => format!(
                "redis: {} ({})",
                failure.kind(),
                scrub(&e.to_string(), &self.secrets)
            ),
        }
    }

    /// Replaces a connection that seems stuck: one that has not answered for
    /// `reconnect_after`, and only if no other check replaced it already. The connection
    /// manager reconnects by itself after a dropped connection, but not after timeouts: a
    /// connection into a network black hole would otherwise stay in use forever.
    fn after_failure(&self, failure: &Failure, used: &Arc<ConnectionManager>) {
        if !failure.stuck() {
            return;
        }
        let now = self.ms();
        let last = self
            .last_answer_ms
            .load(Ordering::Relaxed)
            .max(self.last_replaced_ms.load(Ordering::Relaxed));
        let quiet = Duration::from_millis(now.saturating_sub(last));
        if quiet < self.reconnect_after {
            return;
        }
        let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return;
        };
        let previous = self.conn.compare_and_swap(used, Arc::new(fresh));
        if Arc::ptr_eq(&previous, used) {
            self.last_replaced_ms.store(now, Ordering::Relaxed);
            tracing::warn!(
                target: "auth::ratelimit",
                quiet_ms = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX),
                "no answer from Redis; replacing the rate limiter's connection"
            );
        }
    }
}

impl Limiter for RedisLimiter {
    fn check(&self, checks: &[LimitCheck<'_>], now: i64) -> LimitOutcome {
        if checks.is_empty() {
            return LimitOutcome::Ready(Ok(LimitDecision::UNLIMITED));
        }
        let (invocation, plans) = self.inner.prepare(checks, now);
        let inner = Arc::clone(&self.inner);
        LimitOutcome::Pending(Box::pin(async move { inner.run(invocation, plans).await }))
    }

    fn needs_io(&self) -> bool {
        true
    }
}

/// Splits `scheme://authority/rest` at the authority, when there is one.
fn authority(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://")? + 3;
    let len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    Some((&url[..start], &url[start..start + len], &url[start + len..]))
}

/// Whether a query parameter holds a password (`redis+unix:///path?pass=...`).
fn is_secret_param(name: &str) -> bool {
    name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password")
}

/// `url` with any password replaced by `***` (the whole user info when it has no `:`).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, auth, rest)) = authority(url) else {
        return url.to_owned();
    };
    let auth = match auth.rfind('@') {
        Some(at) => match auth[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***@{}", &auth[at + 1..]),
            None => format!("***@{}", &auth[at + 1..]),
        },
        None => auth.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{scheme}{auth}{rest}")
}

/// The secrets of `url` as written in it (to scrub them from messages).
pub(crate) fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some((_, auth, rest)) = authority(url) else {
        return out;
    };
    if let Some(at) = auth.rfind('@') {
        let info = &auth[..at];
        out.push(info.split_once(':').map_or(info, |(_, p)| p).to_owned());
    }
    if let Some((_, query)) = rest.split_once('?') {
        for p in query.split('&') {
            if let Some((k, v)) = p.split_once('=')
                && is_secret_param(k)
            {
                out.push(v.to_owned());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://user:s3cret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:s3cret@host"), "redis://:***@host");
        assert_eq!(redact("redis://s3cret@host"), "redis://***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(secrets("redis://u:p@w@host/0"), ["p@w"]);
        assert_eq!(
            scrub("auth failed for s3cret", &secrets("redis://:s3cret@h")),
            "auth failed for ***"
        );
        let builder = RedisLimiter::builder("redis://u:s3cret@h");
        assert!(!format!("{builder:?}").contains("s3cret"));
    }

    fn rate_plan(interval_us: u64, burst: u32) -> Planned {
        Planned {
            policy: "key-rate",
            plan: Plan::Rate {
                interval_us,
                burst_us: interval_us * u64::from(burst),
                burst,
                window_secs: 60,
            },
        }
    }

    #[test]
    fn replies_become_decisions() {
        let quota = Planned {
            policy: "tenant-day",
            plan: Plan::Quota {
                count: 10,
                window_secs: 86_400,
                reset_secs: 500,
            },
        };
        let plans = [rate_plan(20_000_000, 3), quota];
        // Fresh rate, 9 of 10 used: the quota is the closest.
        let d = decide(&plans, &[1, 0, 0, 9]).unwrap();
        assert!(d.allowed);
        let s = d.status.unwrap();
        assert_eq!(
            (s.policy, s.remaining, s.reset_secs),
            ("tenant-day", 0, 500)
        );
        // The rate refuses: TAT 50 s ahead, the third would need 70 s of a 60 s burst.
        let d = decide(&plans, &[0, 1, 50_000_000]).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(10));
        assert_eq!(d.status.unwrap().reset_secs, 50);
        // The quota refuses.
        let d = decide(&plans, &[0, 2, 0, 10]).unwrap();
        assert_eq!(d.retry_after, Duration::from_secs(500));
        // Malformed replies.
        for bad in [
            &[][..],
            &[1, 0, 0],
            &[0, 3, 0, 0],
            &[0, 0],
            &[2, 0, 0, 0],
            &[1, 0, -1, 0],
        ] {
            assert!(decide(&plans, bad).is_none(), "{bad:?}");
        }
    }
}

//! A denylist shared through Redis (feature `redis`): [`RedisDenylist`].
//!
//! Every replica keeps a local copy ([`MemoryDenylist`]) that answers the per-request check, so
//! requests never wait for Redis; a background task brings the copy up to date.
//!
//! # What it stores
//!
//! Under a key prefix (`auth:dl:` by default):
//!
//! - `<prefix>entries`: a sorted set whose members are the entries (`j:<jti>`, `t:<sha256 hex>`,
//!   `s:<cut-off>:<subject>`) scored by their expiry (Unix seconds). A revocation adds its member
//!   (`ZADD GT`, so a later expiry wins) and drops expired members, in one transaction.
//! - `<prefix>version`: a counter incremented by every change.
//!
//! Each replica reads the counter every [poll interval](RedisDenylistBuilder::poll_interval)
//! (250 ms by default) and reloads the live entries when it changed, so a revocation reaches every
//! replica within about one interval. The process that revokes applies the entry to its own copy
//! at once.
//!
//! # Failures
//!
//! When Redis cannot be reached, the copy keeps the entries it had and a `WARN` event (target
//! `auth::audit`, `outcome = "denylist_unavailable"`, never the URL's password) is emitted once,
//! then again when Redis answers again. Revoking fails with
//! [`RevocationError::Unavailable`] so that the caller knows the revocation did not happen.
//! [`RedisDenylist::staleness`] tells how long ago the copy was last confirmed, for readiness
//! probes that want to fail closed.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::revocation::Revocation;
//! use auth_core::revocation::redis::RedisDenylist;
//!
//! let denylist = RedisDenylist::builder("redis://127.0.0.1:6379")
//!     .prefix("myapi:dl:")
//!     .connect()
//!     .await?;
//! // Log alice out everywhere: tokens issued before now, for the longest token lifetime (1 h).
//! let now = auth_core::clock::Clock::now_unix(&auth_core::clock::SystemClock);
//! denylist.revoke(Revocation::subject("alice", now), now + 3600).await?;
//! // let gate = auth_core::Gate::builder(jwt).denylist(denylist).build();
//! # Ok(()) }
//! ```

use super::{Denylist, MemoryDenylist, Revocation, RevocationError};
use crate::apikey::redis::{redact, scrub, secrets};
use crate::clock::{Clock, SystemClock};
use crate::principal::Principal;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Configures a [`RedisDenylist`].
#[must_use]
pub struct RedisDenylistBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    poll: Duration,
    capacity: usize,
}

impl fmt::Debug for RedisDenylistBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDenylistBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl RedisDenylistBuilder {
    /// The key prefix (default `auth:dl:`): replicas that share a denylist use the same one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds every Redis command, connecting included (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the local copy looks for changes (default 250 ms, at least 10 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }

    /// The bound of the local copy for entries revoked through this process (default
    /// [`MemoryDenylist::DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, entries: usize) -> Self {
        self.capacity = entries;
        self
    }

    /// Connects, loads the entries and starts the background refresh (stopped when the last
    /// clone is dropped). Needs a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RevocationError::Unavailable`] for a URL that does not parse or a Redis that does not
    /// answer in time; the text names the URL with its password replaced by `***`.
    pub async fn connect(self) -> Result<RedisDenylist, RevocationError> {
        let redacted = redact(&self.url);
        let secrets = secrets(&self.url);
        let unavailable =
            |e: &dyn fmt::Display| RevocationError::Unavailable(scrub(&e.to_string(), &secrets));
        if self.timeout.is_zero() {
            return Err(RevocationError::Unavailable(
                "the Redis denylist's timeout must be positive".into(),
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| unavailable(&format_args!("invalid Redis URL {redacted}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(250));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| unavailable(&format_args!("Redis at {redacted}: {e}")))?;
        let inner = Arc::new(Inner {
            conn,
            entries_key: format!("{}entries", self.prefix),
            version_key: format!("{}version", self.prefix),
            prefix: self.prefix,
            timeout: self.timeout,
            poll: self.poll,
            mirror: MemoryDenylist::with_capacity(self.capacity),
            clock: Arc::new(SystemClock),
            seen: Mutex::new(None),
            origin: Instant::now(),
            synced_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            redacted_url: redacted,
            secrets,
        });
        inner.sync(true).await?;
        let weak = Arc::downgrade(&inner);
        tokio::spawn(refresh(weak, self.poll));
        Ok(RedisDenylist { inner })
    }
}

/// Reloads the local copy whenever the version moves, until the denylist is dropped.
async fn refresh(weak: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        match inner.sync(false).await {
            Ok(()) => {
                if inner.failing.swap(false, Ordering::AcqRel) {
                    tracing::warn!(target: "auth::audit", outcome = "denylist_recovered",
                        prefix = %inner.prefix, "the Redis denylist answers again");
                }
            }
            Err(e) => {
                if !inner.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(target: "auth::audit", outcome = "denylist_unavailable",
                        prefix = %inner.prefix, error = %e,
                        "the Redis denylist cannot be read; keeping the entries already known");
                }
            }
        }
    }
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    entries_key: String,
    version_key: String,
    timeout: Duration,
    poll: Duration,
    mirror: MemoryDenylist,
    clock: Arc<dyn Clock>,
    /// The version the copy reflects.
    seen: Mutex<Option<i64>>,
    origin: Instant,
    /// When the copy was last confirmed current, in ms since `origin`.
    synced_ms: AtomicU64,
    failing: AtomicBool,
    redacted_url: String,
    secrets: Vec<String>,
}

impl Inner {
    fn unavailable(&self, e: &redis::RedisError) -> RevocationError {
        RevocationError::Unavailable(format!(
            "Redis at {}: {}",
            self.redacted_url,
            scrub(&e.to_string(), &self.secrets)
        ))
    }

    fn timed_out(&self) -> RevocationError {
        RevocationError::Unavailable(format!(
            "Redis at {} did not answer within {:?}",
            self.redacted_url, self.timeout
        ))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, RevocationError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.unavailable(&e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Reloads the entries when the version moved (or always, with `force`).
    async fn sync(&self, force: bool) -> Result<(), RevocationError> {
        let version: Option<i64> = self
            .run(async |c| {
                redis::cmd("GET")
                    .arg(&self.version_key)
                    .query_async(c)
                    .await
            })
            .await?;
        let seen = *self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if force || version != seen {
            let now = self.clock.now_unix();
            let members: Vec<(String, f64)> = self
                .run(async |c| {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&self.entries_key)
                        .arg(format!("({now}"))
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .query_async(c)
                        .await
                })
                .await?;
            self.mirror.replace_all(
                members
                    .iter()
                    .filter_map(|(m, score)| Some((decode(m)?, *score as i64))),
            );
            *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = version;
        }
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.synced_ms.store(ms.max(1), Ordering::Release);
        Ok(())
    }
}

/// A denylist shared by every replica through Redis; see the [module docs](self). Cheap to
/// clone (clones share the connection and the local copy).
#[derive(Clone)]
pub struct RedisDenylist {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisDenylist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDenylist")
            .field("url", &self.inner.redacted_url)
            .field("prefix", &self.inner.prefix)
            .field("entries", &self.inner.mirror.len())
            .finish_non_exhaustive()
    }
}

impl RedisDenylist {
    /// Starts configuring a denylist on the Redis at `url`
    /// (`redis://[user:password@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisDenylistBuilder {
        RedisDenylistBuilder {
            url: url.into(),
            prefix: "auth:dl:".into(),
            timeout: Duration::from_millis(500),
            poll: Duration::from_millis(250),
            capacity: MemoryDenylist::DEFAULT_CAPACITY,
        }
    }

    /// Adds `entry` until `expires_at` (Unix seconds) for every replica, and to this process's
    /// copy at once.
    ///
    /// # Errors
    ///
    /// [`RevocationError::Invalid`] for an empty or oversized value,
    /// [`RevocationError::Unavailable`] when Redis fails or does not answer in time (the entry
    /// may then be missing: retry).
    pub async fn revoke(&self, entry: Revocation, expires_at: i64) -> Result<(), RevocationError> {
        entry.check()?;
        let inner = &*self.inner;
        let now = inner.clock.now_unix();
        if expires_at <= now {
            return Ok(());
        }
        let member = encode(&entry);
        let () = inner
            .run(async |c| {
                redis::pipe()
                    .atomic()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&inner.entries_key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&inner.entries_key)
                    .arg("GT")
                    .arg(expires_at)
                    .arg(&member)
                    .ignore()
                    .cmd("INCR")
                    .arg(&inner.version_key)
                    .ignore()
                    .query_async(c)
                    .await
            })
            .await?;
        // Redis has it: a full local copy must not hide it from this process.
        if let Err(e) = inner.mirror.revoke(entry, expires_at) {
            tracing::warn!(error = %e, "the revocation is in Redis but not in this process's copy yet");
        }
        Ok(())
    }

    /// Reloads the local copy now (it is reloaded in the background anyway).
    ///
    /// # Errors
    ///
    /// [`RevocationError::Unavailable`] when Redis fails or does not answer in time.
    pub async fn sync(&self) -> Result<(), RevocationError> {
        self.inner.sync(true).await
    }

    /// How long ago the local copy was last confirmed to match Redis.
    pub fn staleness(&self) -> Duration {
        let synced = Duration::from_millis(self.inner.synced_ms.load(Ordering::Acquire));
        self.inner.origin.elapsed().saturating_sub(synced)
    }

    /// How often the copy looks for changes.
    pub fn poll_interval(&self) -> Duration {
        self.inner.poll
    }

    /// The local copy (what the request path reads).
    pub fn local(&self) -> &MemoryDenylist {
        &self.inner.mirror
    }
}

impl Denylist for RedisDenylist {
    fn is_revoked(&self, principal: &Principal, token: Option<&[u8]>) -> bool {
        self.inner.mirror.is_revoked(principal, token)
    }
}

fn encode(entry: &Revocation) -> String {
    match entry {
        Revocation::Jti(j) => format!("j:{j}"),
        Revocation::Token(h) => h.iter().fold(String::from("t:"), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }),
        Revocation::Subject { subject, before } => format!("s:{before}:{subject}"),
    }
}

fn decode(member: &str) -> Option<Revocation> {
    let (kind, rest) = member.split_once(':')?;
    match kind {
        "j" => Some(Revocation::Jti(rest.to_owned())),
        "t" => {
            if rest.len() != 64 {
                return None;
            }
            let mut h = [0u8; 32];
            for (i, b) in h.iter_mut().enumerate() {
                *b = u8::from_str_radix(rest.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(Revocation::Token(h))
        }
        "s" => {
            let (before, subject) = rest.split_once(':')?;
            Some(Revocation::subject(subject, before.parse().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip() {
        for entry in [
            Revocation::jti("a:b c"),
            Revocation::token("opaque"),
            Revocation::subject("user:with:colons", -5),
        ] {
            assert_eq!(decode(&encode(&entry)), Some(entry));
        }
        assert_eq!(decode("x:1"), None);
        assert_eq!(decode("t:zz"), None);
        assert_eq!(decode("s:notanumber:bob"), None);
    }
}

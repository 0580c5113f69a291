//! Usage analytics: how often each key was used, per minute and [`Outcome`], and its last use.
//!
//! The authenticator reports every API-key request to a [`UsageRecorder`] ([`record`]: a
//! lock on one of 16 shards and a counter increment, no I/O, no allocation once the key is
//! tracked). The recorder sums the requests per key into minute buckets and writes them in
//! batches ([`flush`]; periodically with [`spawn_flusher`]): the counts with
//! [`KeyStore::record_usage`], and each key's latest allowed use with [`KeyStore::touch`]
//! (the only writer of `last_used_at`, so a busy key costs one write per flush, not one per
//! request). The store keeps minute rows; [`KeyStore::usage`] sums them per minute, hour or
//! day ([`Granularity`]) when asked.
//!
//! Memory is bounded: the recorder tracks at most a given number of keys (100 000 by default)
//! and about four minute buckets per key; records beyond that are dropped, counted, and
//! reported in a warning at the next flush. A flush that fails puts the counts back (within
//! the same bounds) for the next one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::apikey::store::{KeyRecord, KeyStore, MemoryStore};
//! use auth_core::apikey::usage::{Granularity, Outcome, UsageQuery, UsageRecorder};
//! use std::sync::Arc;
//!
//! let store = Arc::new(MemoryStore::new());
//! store.insert(KeyRecord::new("k1", "acme", "ci", [0; 32], 0)).await?;
//! let recorder = UsageRecorder::new(store.clone());
//!
//! // 2023-11-14T22:13:20Z and the minute after.
//! let t = 1_700_000_000;
//! recorder.record("k1", "acme", Outcome::Allowed, t);
//! recorder.record("k1", "acme", Outcome::Allowed, t + 5);
//! recorder.record("k1", "acme", Outcome::RateLimited, t + 6);
//! recorder.record("k1", "acme", Outcome::Allowed, t + 60);
//! assert_eq!(recorder.flush().await?, 3, "three (minute, outcome) rows written");
//!
//! // Per minute: 2 allowed and 1 rate-limited in the first, 1 allowed in the next.
//! let minutes = store.usage(&UsageQuery::key("k1", 0, Granularity::Minute)).await?;
//! let counts: Vec<_> = minutes.iter().map(|c| (c.bucket_start, c.outcome, c.count)).collect();
//! assert_eq!(counts, [
//!     (t - 20, Outcome::Allowed, 2),
//!     (t - 20, Outcome::RateLimited, 1),
//!     (t + 40, Outcome::Allowed, 1),
//! ]);
//! // Per hour, for the whole tenant.
//! let hours = store.usage(&UsageQuery::tenant("acme", 0, Granularity::Hour)).await?;
//! assert_eq!(hours[0].count, 3);
//! assert_eq!(hours[0].bucket_start, t - t % 3600);
//! // The flush recorded the last allowed use.
//! assert_eq!(store.get("k1").await?.unwrap().last_used_at, Some(t + 60));
//! # Ok(()) }
//! ```
//!
//! [`record`]: UsageRecorder::record
//! [`flush`]: UsageRecorder::flush
//! [`spawn_flusher`]: UsageRecorder::spawn_flusher

use super::store::{KeyStore, StoreError, bucket_floor};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

const SHARDS: usize = 16;
/// Minute buckets kept per tracked key on average (the bound is per shard).
const BUCKETS_PER_KEY: usize = 4;
/// How many outcomes there are (the length of [`Outcome::ALL`]).
const OUTCOMES: usize = Outcome::ALL.len();

/// What became of one API-key request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Authenticated and within its limits.
    Allowed,
    /// Authenticated, refused by a rate limit or quota.
    RateLimited,
    /// A key with this id, but the wrong secret (or the id is unknown).
    Invalid,
    /// The key was revoked (or its rotation's grace period ended).
    Revoked,
    /// The key was past its expiry.
    Expired,
    /// The key's use credit was spent.
    Exhausted,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: &'static [Outcome] = &[
        Self::Allowed,
        Self::RateLimited,
        Self::Invalid,
        Self::Revoked,
        Self::Expired,
        Self::Exhausted,
    ];

    /// The stored name: `allowed`, `rate_limited`, `invalid`, `revoked`, `expired` or
    /// `exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::RateLimited => "rate_limited",
            Self::Invalid => "invalid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
        }
    }

    /// The outcome with this stored name ([`Outcome::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.as_str() == name)
    }

    /// The position in [`Outcome::ALL`].
    fn index(self) -> usize {
        match self {
            Self::Allowed => 0,
            Self::RateLimited => 1,
            Self::Invalid => 2,
            Self::Revoked => 3,
            Self::Expired => 4,
            Self::Exhausted => 5,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many requests of one key had one outcome in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageCount {
    /// The key's id.
    pub key_id: String,
    /// The key's tenant.
    pub tenant: String,
    /// The bucket's start, in seconds since the Unix epoch (a multiple of the bucket length).
    pub bucket_start: i64,
    /// What became of the requests.
    pub outcome: Outcome,
    /// How many requests.
    pub count: u64,
}

/// The length of the buckets a [`UsageQuery`] sums into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// 60 s (the stored rows).
    #[default]
    Minute,
    /// 3 600 s, from the start of an hour (UTC).
    Hour,
    /// 86 400 s, from midnight UTC.
    Day,
}

impl Granularity {
    /// The bucket length in seconds.
    pub fn secs(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    /// `minute` or `m`, `hour` or `h`, `day` or `d`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "minute" | "m" => Some(Self::Minute),
            "hour" | "h" => Some(Self::Hour),
            "day" | "d" => Some(Self::Day),
            _ => None,
        }
    }

    /// `minute`, `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which counts [`KeyStore::usage`] returns. With neither `key_id` nor `tenant`, every key's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UsageQuery {
    /// Only this key's counts.
    pub key_id: Option<String>,
    /// Only the counts of this tenant's keys.
    pub tenant: Option<String>,
    /// Only the minutes starting at or after this time (seconds since the Unix epoch).
    pub since: i64,
    /// The bucket length to sum into.
    pub granularity: Granularity,
}

impl UsageQuery {
    /// One key's counts since `since`.
    pub fn key(key_id: impl Into<String>, since: i64, granularity: Granularity) -> Self {
        Self {
            key_id: Some(key_id.into()),
            tenant: None,
            since,
            granularity,
        }
    }

    /// The counts of a tenant's keys since `since`.
    pub fn tenant(tenant: impl Into<String>, since: i64, granularity: Granularity) -> Self {
        Self {
            key_id: None,
            tenant: Some(tenant.into()),
            since,
            granularity,
        }
    }

    /// Every key's counts since `since`.
    pub fn all(since: i64, granularity: Granularity) -> Self {
        Self {
            key_id: None,
            tenant: None,
            since,
            granularity,
        }
    }
}

/// One minute of one key: a count per outcome.
struct Bucket {
    start: i64,
    counts: [u64; OUTCOMES],
}

/// A key's counts since the last flush.
struct Tracked {
    tenant: String,
    /// Minute buckets not yet flushed (emptied, capacity kept, by a flush).
    buckets: Vec<Bucket>,
    /// The latest allowed use not yet flushed.
    last_allowed: Option<i64>,
}

impl Tracked {
    fn is_idle(&self) -> bool {
        self.buckets.is_empty() && self.last_allowed.is_none()
    }
}

#[derive(Default)]
struct Shard {
    keys: HashMap<String, Tracked, foldhash::fast::RandomState>,
    /// Buckets held by all keys of the shard.
    buckets: usize,
}

impl Shard {
    /// Adds `n` requests of `outcome` at `now` to a tracked key: `None` when the key is not
    /// tracked, `Some(false)` when its minute is new and the shard holds all the buckets it may
    /// (nothing added), `Some(true)` when added. A bucket vector keeps its capacity across
    /// flushes, so this allocates only when a key sees more minutes between two flushes than
    /// ever before.
    fn add(
        &mut self,
        key_id: &str,
        outcome: Outcome,
        now: i64,
        n: u64,
        max_buckets: usize,
    ) -> Option<bool> {
        let tracked = self.keys.get_mut(key_id)?;
        let start = bucket_floor(now, 60);
        // The current minute is almost always the last bucket.
        let i = match tracked.buckets.iter().rposition(|b| b.start == start) {
            Some(i) => i,
            None if self.buckets >= max_buckets => return Some(false),
            None => {
                self.buckets += 1;
                tracked.buckets.push(Bucket {
                    start,
                    counts: [0; OUTCOMES],
                });
                tracked.buckets.len() - 1
            }
        };
        let counts = &mut tracked.buckets[i].counts;
        let slot = &mut counts[outcome.index()];
        *slot = slot.saturating_add(n);
        if outcome == Outcome::Allowed {
            tracked.last_allowed = Some(tracked.last_allowed.map_or(now, |t| t.max(now)));
        }
        Some(true)
    }

    /// Starts tracking `key_id`; `false` when the shard is full even after dropping the keys
    /// with nothing left to flush.
    fn track(&mut self, key_id: &str, tenant: &str, max_keys: usize) -> bool {
        if self.keys.len() >= max_keys {
            self.keys.retain(|_, t| !t.is_idle());
        }
        if self.keys.len() >= max_keys {
            return false;
        }
        self.keys.insert(
            key_id.to_owned(),
            Tracked {
                tenant: tenant.to_owned(),
                buckets: Vec::with_capacity(2),
                last_allowed: None,
            },
        );
        true
    }
}

/// Counts API-key requests in memory, per key, minute and [`Outcome`], and writes them to a
/// [`KeyStore`] in batches. Shared behind an [`Arc`]; see the [module docs](self).
pub struct UsageRecorder {
    store: Arc<dyn KeyStore>,
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    max_keys_per_shard: usize,
    max_buckets_per_shard: usize,
    /// Records dropped since the last flush (reported by it).
    dropped_since_flush: AtomicU64,
    /// Records dropped since the recorder was created.
    dropped_total: AtomicU64,
}

impl fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("tracked", &self.tracked())
            .field("max_keys", &(self.max_keys_per_shard * SHARDS))
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl UsageRecorder {
    /// The default bound on tracked keys.
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    /// A recorder writing to `store`, tracking at most [`Self::DEFAULT_MAX_KEYS`] keys between
    /// flushes.
    pub fn new(store: Arc<dyn KeyStore>) -> Arc<Self> {
        Self::with_max_keys(store, Self::DEFAULT_MAX_KEYS)
    }

    /// A recorder tracking at most about `max_keys` keys (rounded up to a multiple of 16, at
    /// least 16) between flushes; requests of further keys are dropped and counted.
    pub fn with_max_keys(store: Arc<dyn KeyStore>, max_keys: usize) -> Arc<Self> {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        Arc::new(Self {
            store,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            max_keys_per_shard: per_shard,
            max_buckets_per_shard: per_shard.saturating_mul(BUCKETS_PER_KEY),
            dropped_since_flush: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
        })
    }

    fn shard(&self, key_id: &str) -> MutexGuard<'_, Shard> {
        // The remainder is below SHARDS, so the cast loses nothing.
        let i = (self.hasher.hash_one(key_id) % SHARDS as u64) as usize;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn drop_records(&self, n: u64) {
        self.dropped_since_flush.fetch_add(n, Ordering::Relaxed);
        self.dropped_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one request of `key_id` (of `tenant`) with `outcome` at `now` (seconds since the
    /// Unix epoch), in the minute holding `now`. Called on every API-key request: no I/O, and no
    /// allocation when the key is already tracked. Dropped (and counted, see
    /// [`dropped`](Self::dropped)) when the recorder is full.
    pub fn record(&self, key_id: &str, tenant: &str, outcome: Outcome, now: i64) {
        self.add(key_id, tenant, outcome, now, 1);
    }

    fn add(&self, key_id: &str, tenant: &str, outcome: Outcome, now: i64, n: u64) {
        let mut shard = self.shard(key_id);
        let added = match shard.add(key_id, outcome, now, n, self.max_buckets_per_shard) {
            Some(added) => added,
            None if shard.track(key_id, tenant, self.max_keys_per_shard) => shard
                .add(key_id, outcome, now, n, self.max_buckets_per_shard)
                .unwrap_or(false),
            None => false,
        };
        drop(shard);
        if !added {
            self.drop_records(n);
        }
    }

    /// How many keys are tracked now (with counts not yet flushed, or flushed by the last flush
    /// and kept for reuse).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).keys.len())
            .sum()
    }

    /// How many requests were dropped since the recorder was created, because too many keys
    /// or minutes were tracked.
    pub fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Takes the counts out of memory: the rows to add, and each key's latest allowed use.
    fn take(&self) -> (Vec<UsageCount>, Vec<(String, i64)>) {
        let mut counts = Vec::new();
        let mut touches = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            // Keys idle since the last flush go; the others are emptied but kept, so their
            // next requests allocate nothing.
            shard.keys.retain(|key_id, tracked| {
                if tracked.is_idle() {
                    return false;
                }
                for bucket in tracked.buckets.drain(..) {
                    for (outcome, &count) in Outcome::ALL.iter().zip(&bucket.counts) {
                        if count > 0 {
                            counts.push(UsageCount {
                                key_id: key_id.clone(),
                                tenant: tracked.tenant.clone(),
                                bucket_start: bucket.start,
                                outcome: *outcome,
                                count,
                            });
                        }
                    }
                }
                if let Some(at) = tracked.last_allowed.take() {
                    touches.push((key_id.clone(), at));
                }
                true
            });
            shard.buckets = 0;
        }
        (counts, touches)
    }

    /// Puts counts taken by a failed flush back, within the bounds.
    fn merge_back(&self, counts: &[UsageCount], touches: &[(String, i64)]) {
        for c in counts {
            self.add(&c.key_id, &c.tenant, c.outcome, c.bucket_start, c.count);
        }
        for (key_id, at) in touches {
            let mut shard = self.shard(key_id);
            if let Some(tracked) = shard.keys.get_mut(key_id.as_str()) {
                tracked.last_allowed = Some(tracked.last_allowed.map_or(*at, |t| t.max(*at)));
            }
            // A key whose counts could not be put back loses only its last-use time, which
            // its next allowed request sets again.
        }
    }

    /// Writes what was counted since the last flush: the last allowed use of each key with
    /// [`KeyStore::touch`], then the counts with [`KeyStore::record_usage`]. Returns how many
    /// count rows (key, minute, outcome) were written. Logs a warning when requests were
    /// dropped since the last flush.
    ///
    /// # Errors
    ///
    /// The store's error; the counts are then kept in memory (within the bounds) for the next
    /// flush.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let dropped = self.dropped_since_flush.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                max_keys = self.max_keys_per_shard * SHARDS,
                "API-key usage: requests not counted, too many keys or minutes tracked"
            );
        }
        let (counts, touches) = self.take();
        if counts.is_empty() && touches.is_empty() {
            return Ok(0);
        }
        // `touch` keeps the latest time, so writing it again after a failure is harmless.
        let written = async {
            self.store.touch(&touches).await?;
            self.store.record_usage(&counts).await
        }
        .await;
        match written {
            Ok(()) => Ok(counts.len()),
            Err(e) => {
                self.merge_back(&counts, &touches);
                Err(e)
            }
        }
    }
}

pub use flusher::UsageFlusher;

/// The periodic flush, on Tokio (compiled in with the features that bring Tokio: `jwks`,
/// `postgres`, `redis`).
mod flusher {
    use super::UsageRecorder;
    use crate::apikey::store::StoreError;
    use std::fmt;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    impl UsageRecorder {
        /// Starts a Tokio task that flushes every `every` (at least 1 ms), logging failures
        /// (the counts are kept for the next flush). Stop it with [`UsageFlusher::shutdown`],
        /// which flushes what is left; dropping the handle aborts the task.
        ///
        /// # Panics
        ///
        /// Outside a Tokio runtime.
        pub fn spawn_flusher(self: &Arc<Self>, every: Duration) -> UsageFlusher {
            let every = every.max(Duration::from_millis(1));
            let (stop, mut stopped) = oneshot::channel::<()>();
            let recorder = Arc::clone(self);
            let task = tokio::spawn(async move {
                let start = tokio::time::Instant::now() + every;
                let mut ticks = tokio::time::interval_at(start, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = ticks.tick() => {}
                    }
                    if let Err(e) = recorder.flush().await {
                        tracing::warn!(
                            error = %e,
                            "API-key usage flush failed; the counts are kept for the next one"
                        );
                    }
                }
            });
            UsageFlusher {
                recorder: Arc::clone(self),
                stop: Some(stop),
                task: Some(task),
            }
        }
    }

    /// The task started by [`UsageRecorder::spawn_flusher`]. Dropping it aborts the task
    /// (what was counted since the last flush stays in the recorder).
    #[must_use = "dropping the flusher stops it"]
    pub struct UsageFlusher {
        recorder: Arc<UsageRecorder>,
        stop: Option<oneshot::Sender<()>>,
        task: Option<JoinHandle<()>>,
    }

    impl fmt::Debug for UsageFlusher {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("UsageFlusher")
                .field(
                    "running",
                    &self.task.as_ref().is_some_and(|t| !t.is_finished()),
                )
                .finish_non_exhaustive()
        }
    }

    impl UsageFlusher {
        /// Stops the task (letting a flush in progress finish) and flushes what is left.
        /// Returns how many count rows the last flush wrote.
        ///
        /// # Errors
        ///
        /// The last flush's error (the counts stay in the recorder).
        pub async fn shutdown(mut self) -> Result<usize, StoreError> {
            if let Some(stop) = self.stop.take() {
                // The task may have ended already; then there is no one to tell.
                let _ = stop.send(());
            }
            if let Some(task) = self.task.take()
                && let Err(e) = task.await
            {
                tracing::warn!(error = %e, "the API-key usage flusher ended abnormally");
            }
            self.recorder.flush().await
        }
    }

    impl Drop for UsageFlusher {
        fn drop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::store::MemoryStore;

    #[test]
    fn names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
            assert_eq!(Outcome::ALL[o.index()], *o);
        }
        assert_eq!(Outcome::parse("Allowed"), None);
        assert_eq!(Outcome::RateLimited.to_string(), "rate_limited");
        assert_eq!(Granularity::parse("h"), Some(Granularity::Hour));
        assert_eq!(Granularity::parse("day"), Some(Granularity::Day));
        assert_eq!(Granularity::parse("week"), None);
        assert_eq!(Granularity::Minute.secs(), 60);
    }

    #[tokio::test]
    async fn buckets_per_minute_and_bounds() {
        let store = Arc::new(MemoryStore::new());
        let r = UsageRecorder::with_max_keys(store.clone(), 16);
        // Negative times floor too.
        r.record("k", "t", Outcome::Invalid, -1);
        r.record("k", "t", Outcome::Invalid, 59);
        r.record("k", "t", Outcome::Invalid, 0);
        assert_eq!(r.flush().await.unwrap(), 2);
        let rows = store
            .usage(&UsageQuery::all(i64::MIN, Granularity::Minute))
            .await
            .unwrap();
        let got: Vec<_> = rows.iter().map(|c| (c.bucket_start, c.count)).collect();
        assert_eq!(got, [(-60, 1), (0, 2)]);

        // One shard holds at most 4 minutes per key on average: a key seen in many minutes
        // fills its shard's allowance and the rest is dropped.
        for m in 0..100 {
            r.record("busy", "t", Outcome::Allowed, m * 60);
        }
        assert!(r.dropped() >= 90, "{}", r.dropped());
        assert_eq!(r.flush().await.unwrap() as u64 + r.dropped(), 100);
    }
}

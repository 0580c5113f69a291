//! The verified-token cache: a repeated valid token costs a keyed hash and a map look-up.
//!
//! Entries are keyed by a 64-bit keyed hash of the token (the key is random per process, so
//! collisions cannot be aimed) and keep the whole token, compared in constant time, so a
//! collision can never authenticate. An entry lives no longer than its token's `exp` (plus the
//! configured leeway) and the configured maximum, and is void as soon as the key that verified
//! it is retired from its key set.
//!
//! The map is sharded behind read-write locks: a hit takes one uncontended read lock (tens of
//! nanoseconds; `moka`, measured here, costs about five times as much per hit, which is most of
//! the budget of a cached request). It is bounded: a full shard first drops its expired entries,
//! then the entry that expires soonest. Inserts happen only after a full verification, which
//! costs a thousand times more than that scan.

use crate::error::TokenError;
use crate::keys::VerifyingKey;
use crate::principal::Principal;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

const SHARDS: usize = 16;

struct Entry<V> {
    token: Box<[u8]>,
    principal: V,
    /// `exp + leeway`: the token is expired from this second on.
    expires_at: Option<i64>,
    /// When this entry stops answering (never later than `expires_at`).
    deadline: i64,
    /// The key that verified it, when a key did (tokens); its retirement voids the entry.
    key: Option<Arc<VerifyingKey>>,
}

/// The keys are already hashes: use them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard<V> = RwLock<HashMap<u64, Arc<Entry<V>>, BuildHasherDefault<Identity>>>;

/// The cache; `V` is what a hit answers (a [`Principal`] for tokens).
pub(crate) struct TokenCache<V = Principal> {
    shards: Box<[Shard<V>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    max_ttl: i64,
}

impl<V: Clone> TokenCache<V> {
    pub(crate) fn new(capacity: u64, max_ttl: Duration) -> Self {
        let per_shard = usize::try_from(capacity)
            .unwrap_or(usize::MAX)
            .div_ceil(SHARDS)
            .max(1);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard,
            hasher: foldhash::fast::RandomState::default(),
            max_ttl: i64::try_from(max_ttl.as_secs()).unwrap_or(i64::MAX),
        }
    }

    fn locate(&self, token: &[u8]) -> (u64, &Shard<V>) {
        let h = self.hasher.hash_one(token);
        // The top bits pick the shard; the map uses all of them.
        (h, &self.shards[(h >> 60) as usize % SHARDS])
    }

    /// `None` on a miss (or a void entry); `Some(Err)` when the cached token has expired.
    pub(crate) fn get(&self, token: &[u8], now: i64) -> Option<Result<V, TokenError>> {
        let (h, shard) = self.locate(token);
        let map = shard.read().unwrap_or_else(PoisonError::into_inner);
        let e = map.get(&h)?;
        if !constant_time_eq(&e.token, token) || e.key.as_ref().is_some_and(|k| k.is_retired()) {
            return None;
        }
        if e.expires_at.is_some_and(|exp| now >= exp) {
            return Some(Err(TokenError::Expired));
        }
        if now >= e.deadline {
            return None;
        }
        Some(Ok(e.principal.clone()))
    }

    pub(crate) fn insert(
        &self,
        token: &str,
        principal: V,
        expires_at: Option<i64>,
        key: Arc<VerifyingKey>,
        now: i64,
    ) {
        let deadline = now
            .saturating_add(self.max_ttl)
            .min(expires_at.unwrap_or(i64::MAX));
        self.store(token, principal, expires_at, deadline, Some(key), now);
    }

    /// Caches a credential that has no expiry of its own to report (an API key: its state can
    /// change in the store at any time) until `deadline` at the latest, and never past the
    /// cache's maximum TTL.
    #[cfg_attr(not(feature = "api-keys"), allow(dead_code))]
    pub(crate) fn insert_until(&self, credential: &str, principal: V, deadline: i64, now: i64) {
        let deadline = deadline.min(now.saturating_add(self.max_ttl));
        self.store(credential, principal, None, deadline, None, now);
    }

    fn store(
        &self,
        token: &str,
        principal: V,
        expires_at: Option<i64>,
        deadline: i64,
        key: Option<Arc<VerifyingKey>>,
        now: i64,
    ) {
        if deadline <= now {
            return;
        }
        let token = token.as_bytes();
        let (h, shard) = self.locate(token);
        let entry = Arc::new(Entry {
            token: token.into(),
            principal,
            expires_at,
            deadline,
            key,
        });
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.per_shard && !map.contains_key(&h) {
            map.retain(|_, e| e.deadline > now && !e.key.as_ref().is_some_and(|k| k.is_retired()));
            if map.len() >= self.per_shard
                && let Some(victim) = map.iter().min_by_key(|(_, e)| e.deadline).map(|(k, _)| *k)
            {
                map.remove(&victim);
            }
        }
        map.insert(h, entry);
    }

    /// Drops every entry whose value matches (an API key revoked elsewhere).
    #[cfg_attr(not(feature = "api-keys"), allow(dead_code))]
    pub(crate) fn remove_where(&self, matches: impl Fn(&V) -> bool) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, e| !matches(&e.principal));
        }
    }

    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Compares two byte strings in time that depends only on their lengths: no early exit, eight
/// bytes at a time (the loop vectorises, unlike a byte-wise `subtle` comparison).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut acc = a8.iter().zip(b8).fold(0u64, |acc, (x, y)| {
        acc | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    acc |= a_rest
        .iter()
        .zip(b_rest)
        .fold(0u64, |acc, (x, y)| acc | u64::from(x ^ y));
    std::hint::black_box(acc) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    fn key() -> Arc<VerifyingKey> {
        Arc::new(VerifyingKey::hmac(&[1; 32], None).unwrap())
    }

    fn principal(sub: &str) -> Principal {
        Principal::builder(sub, AuthMethod::Jwt).build()
    }

    #[test]
    fn compares_exactly() {
        let a = b"eyJhbGciOiJSUzI1NiJ9.payload.signature-bytes";
        assert!(constant_time_eq(a, a));
        for i in 0..a.len() {
            let mut b = a.to_vec();
            b[i] ^= 1;
            assert!(!constant_time_eq(a, &b), "byte {i}");
        }
        assert!(!constant_time_eq(a, &a[..a.len() - 1]));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn hits_expiry_deadline_and_retired_keys() {
        let cache = TokenCache::new(100, Duration::from_secs(60));
        let k = key();
        cache.insert("t1", principal("a"), Some(1_100), k.clone(), 1_000);
        assert_eq!(cache.get(b"t1", 1_010).unwrap().unwrap().subject(), "a");
        assert!(cache.get(b"t2", 1_010).is_none());
        // The max TTL (60 s) ends the entry before `exp`: a miss, not an error.
        assert!(cache.get(b"t1", 1_060).is_none());
        cache.insert("t3", principal("b"), Some(1_030), k.clone(), 1_000);
        assert_eq!(
            cache.get(b"t3", 1_030).unwrap().unwrap_err(),
            TokenError::Expired
        );
        k.retire();
        assert!(cache.get(b"t1", 1_010).is_none());
        // Already expired: not inserted.
        cache.insert("t4", principal("c"), Some(900), key(), 1_000);
        assert!(cache.get(b"t4", 1_000).is_none());
    }

    #[test]
    fn stays_bounded() {
        let cache = TokenCache::new(32, Duration::from_secs(600));
        let k = key();
        for i in 0..10_000 {
            cache.insert(
                &format!("token-{i}"),
                principal("x"),
                Some(5_000 + i),
                k.clone(),
                1_000,
            );
        }
        assert!(cache.len() <= 32, "{} entries", cache.len());
        // The most recent insert is there.
        assert!(cache.get(b"token-9999", 1_000).is_some());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}

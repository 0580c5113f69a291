//! The verified-token cache: a repeated valid token costs a keyed hash and a map look-up.
//!
//! Entries are keyed by a 64-bit keyed hash of the token (the key is random per process, so
//! collisions cannot be aimed) and keep the whole token, compared in constant time, so a
//! collision can never authenticate. An entry lives no longer than its token's `exp` (plus the
//! configured leeway) and the configured maximum, and is void as soon as the key that verified
//! it is retired from its key set. The cache is bounded by entry count.

use crate::error::TokenError;
use crate::keys::VerifyingKey;
use crate::principal::Principal;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub(crate) struct Entry {
    token: Box<str>,
    principal: Principal,
    /// `exp + leeway`; the token is expired from this second on.
    expires_at: Option<i64>,
    key: Arc<VerifyingKey>,
    ttl: Duration,
}

struct TtlPolicy;

impl moka::Expiry<u64, Arc<Entry>> for TtlPolicy {
    fn expire_after_create(&self, _: &u64, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }
}

pub(crate) struct TokenCache {
    map: moka::sync::Cache<u64, Arc<Entry>>,
    hasher: foldhash::fast::RandomState,
    max_ttl: Duration,
}

impl TokenCache {
    pub(crate) fn new(capacity: u64, max_ttl: Duration) -> Self {
        Self {
            map: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(TtlPolicy)
                .build(),
            hasher: foldhash::fast::RandomState::default(),
            max_ttl,
        }
    }

    fn hash(&self, token: &str) -> u64 {
        self.hasher.hash_one(token.as_bytes())
    }

    /// `None` on a miss (or a void entry); `Some(Err)` when the cached token has expired.
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Result<Principal, TokenError>> {
        let h = self.hash(token);
        let e = self.map.get(&h)?;
        if !bool::from(e.token.as_bytes().ct_eq(token.as_bytes())) {
            return None;
        }
        if e.key.is_retired() {
            self.map.invalidate(&h);
            return None;
        }
        if e.expires_at.is_some_and(|exp| now >= exp) {
            self.map.invalidate(&h);
            return Some(Err(TokenError::Expired));
        }
        Some(Ok(e.principal.clone()))
    }

    pub(crate) fn insert(
        &self,
        token: &str,
        principal: Principal,
        expires_at: Option<i64>,
        key: Arc<VerifyingKey>,
        now: i64,
    ) {
        let ttl = match expires_at {
            Some(exp) if exp <= now => return,
            Some(exp) => {
                Duration::from_secs(u64::try_from(exp - now).unwrap_or(0)).min(self.max_ttl)
            }
            None => self.max_ttl,
        };
        self.map.insert(
            self.hash(token),
            Arc::new(Entry {
                token: token.into(),
                principal,
                expires_at,
                key,
                ttl,
            }),
        );
    }

    pub(crate) fn clear(&self) {
        self.map.invalidate_all();
    }
}

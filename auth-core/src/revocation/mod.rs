//! Token revocation: a [`Denylist`] that the [`Gate`](crate::Gate) consults on every request,
//! answers from its caches included.
//!
//! A token is refused as revoked (`401 invalid_token`, reason `revoked`) when an entry matches it:
//!
//! | Entry | Matches |
//! |---|---|
//! | [`Revocation::Jti`] | tokens whose `jti` claim is this value (from any issuer) |
//! | [`Revocation::Token`] | the token whose SHA-256 (of the bytes as presented) is this hash |
//! | [`Revocation::Subject`] | tokens of this subject issued (`iat`) before the given time: "log out everywhere"; a token without `iat` matches too, since nothing shows it is newer |
//!
//! Entries apply to bearer tokens (JWTs and introspected tokens), never to API keys or client
//! certificates, which are revoked in their own stores. Each entry has an expiry: the time after
//! which every token it could match has expired anyway (a token's `exp`, or, for a subject, the
//! cut-off plus the longest token lifetime). Expired entries no longer match and are dropped.
//!
//! Backends: [`MemoryDenylist`] (one process; bounded) and, with feature `redis`,
//! `redis::RedisDenylist`, shared by every replica (each keeps a local copy, so the check on
//! the request path never waits for the network).
//!
//! The check is cheap: with no entries it is one atomic load; otherwise a hash look-up of the
//! token's `jti` and subject, and a SHA-256 of the token only while token-hash entries exist.
//!
//! ```
//! use auth_core::revocation::{Denylist, MemoryDenylist, Revocation};
//! use auth_core::{AuthMethod, Principal};
//! use serde_json::json;
//!
//! let denylist = MemoryDenylist::new();
//! let now = auth_core::clock::Clock::now_unix(&auth_core::clock::SystemClock);
//! denylist.revoke(Revocation::jti("token-7"), now + 3600).unwrap();
//!
//! let claims = |jti: &str| auth_core::Claims::new(json!({"jti": jti, "iat": now}).as_object().unwrap().clone());
//! let revoked = Principal::builder("alice", AuthMethod::Jwt).claims(claims("token-7")).build();
//! let other = Principal::builder("alice", AuthMethod::Jwt).claims(claims("token-8")).build();
//! assert!(denylist.is_revoked(&revoked, None));
//! assert!(!denylist.is_revoked(&other, None));
//! ```

#[cfg(feature = "redis")]
pub mod redis;

use crate::clock::{Clock, SystemClock};
use crate::principal::{AuthMethod, Principal};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// The longest accepted `jti` or subject in an entry, in bytes.
pub const MAX_ENTRY_LEN: usize = 1024;

/// One denylist entry.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revocation {
    /// Tokens with this `jti`.
    Jti(String),
    /// The token with this SHA-256 hash (of the token as presented).
    Token([u8; 32]),
    /// The subject's tokens issued before `before` (Unix seconds), and its tokens without `iat`.
    Subject {
        /// The subject (`sub`, or `client_id` for client-credentials tokens).
        subject: String,
        /// The cut-off: tokens issued at or after it are not affected.
        before: i64,
    },
}

impl Revocation {
    /// Tokens with this `jti`.
    pub fn jti(jti: impl Into<String>) -> Self {
        Self::Jti(jti.into())
    }

    /// The token `token` (only its SHA-256 is kept).
    pub fn token(token: &str) -> Self {
        Self::Token(sha256(token.as_bytes()))
    }

    /// The subject's tokens issued before `before`.
    pub fn subject(subject: impl Into<String>, before: i64) -> Self {
        Self::Subject {
            subject: subject.into(),
            before,
        }
    }

    /// A short name of the kind (`jti`, `token`, `subject`), for logs and audit events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jti(_) => "jti",
            Self::Token(_) => "token",
            Self::Subject { .. } => "subject",
        }
    }

    fn check(&self) -> Result<(), RevocationError> {
        match self {
            Self::Jti(s) | Self::Subject { subject: s, .. } if s.is_empty() => {
                Err(RevocationError::Invalid("an entry needs a non-empty value"))
            }
            Self::Jti(s) | Self::Subject { subject: s, .. } if s.len() > MAX_ENTRY_LEN => {
                Err(RevocationError::Invalid("an entry's value is too long"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jti(j) => f.debug_tuple("Jti").field(j).finish(),
            // A hash says nothing about the token, but printing it would let logs correlate.
            Self::Token(_) => f.write_str("Token(<sha256>)"),
            Self::Subject { subject, before } => f
                .debug_struct("Subject")
                .field("subject", subject)
                .field("before", before)
                .finish(),
        }
    }
}

/// Errors of denylist changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The entry is not acceptable (empty or too long).
    #[error("invalid revocation: {0}")]
    Invalid(&'static str),
    /// The denylist holds as many live entries as it may: refusing is safer than forgetting one.
    #[error("the denylist is full ({0} live entries)")]
    Full(usize),
    /// The shared backend could not be reached or failed (the text is safe to show).
    #[error("the denylist backend is unavailable: {0}")]
    Unavailable(String),
}

/// Decides whether an authenticated caller's token was revoked.
///
/// Called by the [`Gate`](crate::Gate) on every request after authentication, answers from
/// caches included, so it must answer from memory without waiting.
pub trait Denylist: Send + Sync + 'static {
    /// Whether `principal`, authenticated with the bearer token `token` (as presented; `None`
    /// when the credential was not a bearer token), must be refused as revoked.
    fn is_revoked(&self, principal: &Principal, token: Option<&[u8]>) -> bool;
}

impl<D: Denylist + ?Sized> Denylist for Arc<D> {
    fn is_revoked(&self, principal: &Principal, token: Option<&[u8]>) -> bool {
        (**self).is_revoked(principal, token)
    }
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// The entries are looked up on every request: a fast hasher, randomly seeded per process (the
/// keys are tokens' claims, which a caller chooses, so collisions must not be aimable).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Maps {
    jtis: Map<Box<str>, i64>,
    tokens: Map<[u8; 32], i64>,
    /// subject -> (latest cut-off, expiry of the entry)
    subjects: Map<Box<str>, (i64, i64)>,
}

impl Maps {
    fn len(&self) -> usize {
        self.jtis.len() + self.tokens.len() + self.subjects.len()
    }

    /// Adds or widens an entry; `true` when it is new.
    fn add(&mut self, entry: Revocation, expires_at: i64) -> bool {
        match entry {
            Revocation::Jti(j) => merge(self.jtis.entry(j.into_boxed_str()), expires_at),
            Revocation::Token(h) => merge(self.tokens.entry(h), expires_at),
            Revocation::Subject { subject, before } => {
                match self.subjects.entry(subject.into_boxed_str()) {
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        let (b, e) = o.get_mut();
                        *b = (*b).max(before);
                        *e = (*e).max(expires_at);
                        false
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert((before, expires_at));
                        true
                    }
                }
            }
        }
    }

    fn purge(&mut self, now: i64) {
        self.jtis.retain(|_, exp| *exp > now);
        self.tokens.retain(|_, exp| *exp > now);
        self.subjects.retain(|_, (_, exp)| *exp > now);
    }
}

fn merge<K>(entry: std::collections::hash_map::Entry<'_, K, i64>, expires_at: i64) -> bool {
    match entry {
        std::collections::hash_map::Entry::Occupied(mut o) => {
            let e = o.get_mut();
            *e = (*e).max(expires_at);
            false
        }
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(expires_at);
            true
        }
    }
}

struct MemoryInner {
    maps: RwLock<Maps>,
    /// Entries held (live or not yet purged); 0 skips every look-up.
    len: AtomicUsize,
    /// Token-hash entries held; 0 skips hashing the token.
    tokens: AtomicUsize,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

/// A denylist in this process's memory: bounded, entries dropped once expired. Cheap to clone
/// (clones share the entries).
#[derive(Clone)]
pub struct MemoryDenylist {
    inner: Arc<MemoryInner>,
}

impl fmt::Debug for MemoryDenylist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDenylist")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl Default for MemoryDenylist {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDenylist {
    /// The default bound on live entries.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// An empty denylist holding at most [`Self::DEFAULT_CAPACITY`] live entries.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty denylist holding at most `capacity` live entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_clock(capacity, SystemClock)
    }

    /// An empty denylist reading the time from `clock` (tests).
    pub fn with_clock(capacity: usize, clock: impl Clock) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                maps: RwLock::default(),
                len: AtomicUsize::new(0),
                tokens: AtomicUsize::new(0),
                capacity: capacity.max(1),
                clock: Arc::new(clock),
            }),
        }
    }

    /// Adds `entry` until `expires_at` (Unix seconds). Adding an entry that exists keeps the
    /// later expiry (and, for a subject, the later cut-off).
    ///
    /// # Errors
    ///
    /// [`RevocationError::Invalid`] for an empty or oversized value; [`RevocationError::Full`]
    /// when the denylist holds `capacity` live entries (expired ones are dropped first).
    pub fn revoke(&self, entry: Revocation, expires_at: i64) -> Result<(), RevocationError> {
        entry.check()?;
        let now = self.inner.clock.now_unix();
        if expires_at <= now {
            return Ok(()); // every token it could match has expired already
        }
        let mut maps = self
            .inner
            .maps
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if maps.len() >= self.inner.capacity {
            maps.purge(now);
            if maps.len() >= self.inner.capacity {
                self.publish_counts(&maps);
                return Err(RevocationError::Full(maps.len()));
            }
        }
        maps.add(entry, expires_at);
        self.publish_counts(&maps);
        Ok(())
    }

    /// Replaces every entry at once (a shared backend's snapshot); entries beyond the capacity
    /// are kept too, since dropping a revocation would let its token back in.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (Revocation, i64)>) {
        let now = self.inner.clock.now_unix();
        let mut fresh = Maps::default();
        for (entry, expires_at) in entries {
            if expires_at > now && entry.check().is_ok() {
                fresh.add(entry, expires_at);
            }
        }
        let mut maps = self
            .inner
            .maps
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *maps = fresh;
        self.publish_counts(&maps);
    }

    /// Drops expired entries.
    pub fn purge_expired(&self) {
        let now = self.inner.clock.now_unix();
        let mut maps = self
            .inner
            .maps
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        maps.purge(now);
        self.publish_counts(&maps);
    }

    /// How many entries are held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn publish_counts(&self, maps: &Maps) {
        self.inner
            .tokens
            .store(maps.tokens.len(), Ordering::Release);
        self.inner.len.store(maps.len(), Ordering::Release);
    }
}

/// The `iat` claim as whole seconds, if present and numeric.
fn issued_at(principal: &Principal) -> Option<i64> {
    match principal.claims().get("iat")? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
}

impl Denylist for MemoryDenylist {
    fn is_revoked(&self, principal: &Principal, token: Option<&[u8]>) -> bool {
        let inner = &*self.inner;
        if inner.len.load(Ordering::Acquire) == 0
            || !matches!(
                principal.method(),
                AuthMethod::Jwt | AuthMethod::Introspection
            )
        {
            return false;
        }
        let now = inner.clock.now_unix();
        // Hash outside the lock; only while token entries exist.
        let hash = token
            .filter(|_| inner.tokens.load(Ordering::Acquire) > 0)
            .map(sha256);
        let maps = inner.maps.read().unwrap_or_else(PoisonError::into_inner);
        let live = |exp: &i64| *exp > now;
        if let Some(Value::String(jti)) = principal.claims().get("jti")
            && maps.jtis.get(jti.as_str()).is_some_and(live)
        {
            return true;
        }
        if let Some(hash) = hash
            && maps.tokens.get(&hash).is_some_and(live)
        {
            return true;
        }
        if let Some(&(before, exp)) = maps.subjects.get(principal.subject())
            && exp > now
        {
            return issued_at(principal).is_none_or(|iat| iat < before);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Claims;
    use crate::clock::FixedClock;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn token(sub: &str, claims: Value) -> Principal {
        Principal::builder(sub, AuthMethod::Jwt)
            .claims(Claims::new(claims.as_object().cloned().unwrap_or_default()))
            .build()
    }

    fn list() -> MemoryDenylist {
        MemoryDenylist::with_clock(10, FixedClock(NOW))
    }

    #[test]
    fn jti_entries_match_only_their_jti_until_they_expire() {
        let d = list();
        assert!(!d.is_revoked(&token("a", json!({"jti": "j1"})), None));
        d.revoke(Revocation::jti("j1"), NOW + 60).unwrap();
        assert!(d.is_revoked(&token("a", json!({"jti": "j1"})), None));
        assert!(!d.is_revoked(&token("a", json!({"jti": "j2"})), None));
        assert!(!d.is_revoked(&token("a", json!({})), None));
        let later = MemoryDenylist::with_clock(10, FixedClock(NOW + 60));
        later.replace_all([(Revocation::jti("j1"), NOW + 60)]);
        assert!(later.is_empty(), "an expired entry is not even kept");
    }

    #[test]
    fn token_entries_match_the_exact_token() {
        let d = list();
        d.revoke(Revocation::token("opaque-1"), NOW + 60).unwrap();
        let p = token("a", json!({}));
        assert!(d.is_revoked(&p, Some(b"opaque-1")));
        assert!(!d.is_revoked(&p, Some(b"opaque-2")));
        assert!(!d.is_revoked(&p, None));
    }

    #[test]
    fn subject_entries_match_tokens_issued_before_the_cut_off() {
        let d = list();
        d.revoke(Revocation::subject("alice", NOW - 10), NOW + 3600)
            .unwrap();
        assert!(d.is_revoked(&token("alice", json!({"iat": NOW - 11})), None));
        assert!(!d.is_revoked(&token("alice", json!({"iat": NOW - 10})), None));
        assert!(d.is_revoked(&token("alice", json!({})), None), "no iat");
        assert!(!d.is_revoked(&token("bob", json!({"iat": NOW - 11})), None));
        // A later cut-off widens the entry; an earlier one does not narrow it.
        d.revoke(Revocation::subject("alice", NOW), NOW + 60)
            .unwrap();
        d.revoke(Revocation::subject("alice", NOW - 100), NOW + 60)
            .unwrap();
        assert!(d.is_revoked(&token("alice", json!({"iat": NOW - 5})), None));
    }

    #[test]
    fn api_keys_and_certificates_are_not_affected() {
        let d = list();
        d.revoke(Revocation::subject("svc", NOW), NOW + 60).unwrap();
        let key = Principal::builder("svc", AuthMethod::ApiKey).build();
        let cert = Principal::builder("svc", AuthMethod::Mtls).build();
        assert!(!d.is_revoked(&key, None));
        assert!(!d.is_revoked(&cert, None));
        let opaque = Principal::builder("svc", AuthMethod::Introspection).build();
        assert!(d.is_revoked(&opaque, None));
    }

    #[test]
    fn full_denylists_refuse_new_entries_but_drop_expired_ones_first() {
        let d = MemoryDenylist::with_clock(2, FixedClock(NOW));
        d.revoke(Revocation::jti("a"), NOW + 1).unwrap();
        d.revoke(Revocation::jti("b"), NOW + 1).unwrap();
        assert_eq!(
            d.revoke(Revocation::jti("c"), NOW + 1),
            Err(RevocationError::Full(2))
        );
        assert!(d.is_revoked(&token("x", json!({"jti": "a"})), None));
        // Already expired: accepted without taking room.
        d.revoke(Revocation::jti("d"), NOW).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn invalid_entries_are_refused() {
        let d = list();
        assert!(matches!(
            d.revoke(Revocation::jti(""), NOW + 1),
            Err(RevocationError::Invalid(_))
        ));
        assert!(matches!(
            d.revoke(Revocation::jti("x".repeat(MAX_ENTRY_LEN + 1)), NOW + 1),
            Err(RevocationError::Invalid(_))
        ));
    }

    #[test]
    fn debug_output_hides_token_hashes() {
        let text = format!("{:?}", Revocation::token("secret-token"));
        assert_eq!(text, "Token(<sha256>)");
    }
}

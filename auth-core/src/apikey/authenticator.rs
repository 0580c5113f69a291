//! [`ApiKeys`]: the API-key [`Authenticator`].
//!
//! A presented key (from `X-API-Key` or `Authorization: ApiKey <key>`) is parsed (shape and
//! checksum: a mistyped or foreign key never reaches the store), looked up by its public id,
//! its secret hashed and compared in constant time with the stored hash, and its record's
//! status checked (revoked, past a rotation's grace period, expired, credit spent). The
//! resulting [`Principal`] (subject and key id: the key's id; method `api_key`; the record's
//! tenant, scopes and roles) is cached by the exact key bytes for at most
//! [`ApiKeysBuilder::cache_ttl`] (5 s by default): that bounds how long a revocation made
//! in the store by another process can take to be seen when no invalidation reaches this one
//! ([`ApiKeys::invalidate`], fed by PostgreSQL's `LISTEN`/`NOTIFY`, makes it immediate).
//!
//! Every request, cached or not, is then checked against the key's limits (its record's
//! [`KeyLimits`], or the per-key defaults of [`ApiKeysBuilder::rate_per_key`] and
//! [`ApiKeysBuilder::quota_per_key`]) and its tenant's ([`ApiKeysBuilder::rate_per_tenant`],
//! [`ApiKeysBuilder::quota_per_tenant`]), all at once, by a [`Limiter`]: in process by default,
//! or shared by replicas ([`ApiKeysBuilder::limiter`]). A refusal answers 429 with
//! `Retry-After` and the `RateLimit` headers; an allowed request carries the state of its
//! closest limit on the principal ([`Principal::rate_limit`]) for adapters to send. A key with a
//! use credit is never cached, and spends one use per request the limits let through. With a
//! [`UsageRecorder`] ([`ApiKeysBuilder::usage`]), every outcome of a known key is counted.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::apikey::{ApiKeys, format::KeyFormat, store::{KeyRecord, KeyStore, MemoryStore, SecretHasher}};
//! use auth_core::authenticator::OwnedCredentials;
//! use auth_core::{AuthMethod, Authenticator, Credentials};
//! use std::sync::Arc;
//!
//! let store = Arc::new(MemoryStore::new());
//! let keys = ApiKeys::builder(store.clone()).build().unwrap();
//! let (key, parsed) = keys.format().generate().unwrap();
//! let mut record = KeyRecord::new(parsed.id(), "acme", "ci", keys.hasher().hash(parsed.secret()), 0);
//! record.scopes = vec!["read".into()];
//! store.insert(record).await.unwrap();
//!
//! let principal = keys
//!     .authenticate(OwnedCredentials::from(&Credentials::with_api_key(&key)))
//!     .await
//!     .unwrap();
//! assert_eq!(principal.method(), AuthMethod::ApiKey);
//! assert_eq!(principal.tenant(), Some("acme"));
//! assert_eq!(principal.key_id(), Some(parsed.id()));
//! # }
//! ```

use super::format::KeyFormat;
use super::limit::{
    Dimension, InProcessLimiter, KeyLimits, Limit, LimitCheck, LimitDecision, LimitError,
    LimitOutcome, Limiter, Quota, Rate, Window,
};
use super::store::{Invalidation, KeyRecord, KeyStatus, KeyStore, SecretHasher};
use super::usage::{Outcome, UsageRecorder};
use crate::authenticator::{Authenticator, BoxFuture, OwnedCredentials};
use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::credentials::Credentials;
use crate::error::{AuthError, BuildError, TokenError};
use crate::principal::{AuthMethod, Principal};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A verified key as the cache keeps it: the principal and the limits that apply to it.
struct Verified {
    principal: Principal,
    /// The key's own limits, the authenticator's per-key defaults filling the gaps.
    limits: KeyLimits,
}

struct Inner {
    format: KeyFormat,
    hasher: SecretHasher,
    store: Arc<dyn KeyStore>,
    cache: Option<TokenCache<Arc<Verified>>>,
    clock: Arc<dyn Clock>,
    key_defaults: KeyLimits,
    tenant_limits: KeyLimits,
    limiter: Arc<dyn Limiter>,
    usage: Option<Arc<UsageRecorder>>,
}

/// The checks of one request (key rate and quota, tenant rate and quota, as configured), on
/// the stack: the array and how many of it are used.
fn checks<'a>(
    key: &KeyLimits,
    tenant: &KeyLimits,
    p: &'a Principal,
) -> ([LimitCheck<'a>; 4], usize) {
    let unused = LimitCheck {
        dimension: Dimension::Key,
        bucket: "",
        limit: Limit::Quota(Quota::new(1, Window::Hour)),
    };
    let mut out = [unused; 4];
    let mut n = 0;
    let key_id = p.key_id().unwrap_or_else(|| p.subject());
    let dims = [
        (Dimension::Key, key, Some(key_id)),
        (Dimension::Tenant, tenant, p.tenant()),
    ];
    for (dimension, limits, bucket) in dims {
        let Some(bucket) = bucket else { continue };
        let kinds = [limits.rate.map(Limit::Rate), limits.quota.map(Limit::Quota)];
        for limit in kinds.into_iter().flatten() {
            out[n] = LimitCheck {
                dimension,
                bucket,
                limit,
            };
            n += 1;
        }
    }
    (out, n)
}

/// Verifies API keys against a [`KeyStore`]. Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("prefix", &self.inner.format.prefix())
            .field("key_defaults", &self.inner.key_defaults)
            .field("tenant_limits", &self.inner.tenant_limits)
            .finish_non_exhaustive()
    }
}

/// Builds [`ApiKeys`].
#[must_use]
pub struct ApiKeysBuilder {
    store: Arc<dyn KeyStore>,
    prefix: String,
    pepper: Option<Vec<u8>>,
    cache_ttl: Duration,
    cache_capacity: u64,
    clock: Option<Arc<dyn Clock>>,
    key_defaults: KeyLimits,
    tenant_limits: KeyLimits,
    limiter: Option<Arc<dyn Limiter>>,
    usage: Option<Arc<UsageRecorder>>,
}

impl fmt::Debug for ApiKeysBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeysBuilder")
            .field("prefix", &self.prefix)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl ApiKeysBuilder {
    /// The key prefix (default `ak_live`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// A server-side pepper: secrets are stored as HMAC-SHA-256 keyed with it. Keys created
    /// with one pepper only verify with the same pepper.
    pub fn pepper(mut self, pepper: impl Into<Vec<u8>>) -> Self {
        self.pepper = Some(pepper.into());
        self
    }
    /// How long a verified key is answered from memory (default 5 s; zero disables the
    /// cache). This bounds how late a revocation made elsewhere is seen when no
    /// invalidation reaches this process ([`ApiKeys::invalidate`]).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }
    /// Replaces the system clock (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The rate of every key whose record sets none (refusals answer 429 with `Retry-After`).
    pub fn rate_per_key(mut self, rate: Rate) -> Self {
        self.key_defaults.rate = Some(rate);
        self
    }

    /// The quota of every key whose record sets none.
    pub fn quota_per_key(mut self, quota: Quota) -> Self {
        self.key_defaults.quota = Some(quota);
        self
    }

    /// Limits every tenant, all its keys together, to `rate`.
    pub fn rate_per_tenant(mut self, rate: Rate) -> Self {
        self.tenant_limits.rate = Some(rate);
        self
    }

    /// Limits every tenant, all its keys together, to `quota`.
    pub fn quota_per_tenant(mut self, quota: Quota) -> Self {
        self.tenant_limits.quota = Some(quota);
        self
    }

    /// Where limits are counted: in process by default ([`InProcessLimiter`], exact for one
    /// process), or a backend shared by replicas (Redis, feature `redis`).
    pub fn limiter(mut self, limiter: Arc<dyn Limiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Counts every outcome of a known key in `recorder` (usage analytics and the batched
    /// last-used time; flush it with [`UsageRecorder::spawn_flusher`]).
    pub fn usage(mut self, recorder: Arc<UsageRecorder>) -> Self {
        self.usage = Some(recorder);
        self
    }

    /// Builds the authenticator.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] for a bad prefix.
    pub fn build(self) -> Result<ApiKeys, BuildError> {
        let format = KeyFormat::new(self.prefix).map_err(BuildError::Invalid)?;
        Ok(ApiKeys {
            inner: Arc::new(Inner {
                format,
                hasher: SecretHasher::new(self.pepper.as_deref()),
                store: self.store,
                cache: (!self.cache_ttl.is_zero())
                    .then(|| TokenCache::new(self.cache_capacity, self.cache_ttl)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                key_defaults: self.key_defaults,
                tenant_limits: self.tenant_limits,
                limiter: self
                    .limiter
                    .unwrap_or_else(|| Arc::new(InProcessLimiter::new(100_000))),
                usage: self.usage,
            }),
        })
    }
}

fn refused(d: LimitDecision) -> AuthError {
    AuthError::RateLimited {
        retry_after: d.retry_after,
        status: d.status,
    }
}

/// The limiter failed closed. Limiters audit their own failures (with the fail mode and
/// cause), so this adds nothing to the logs but a debug line.
fn limiter_down(e: &LimitError) -> AuthError {
    tracing::debug!(target: "auth::apikey", error = %e, "rate limiter unavailable, refusing");
    AuthError::Unavailable("the rate limiter could not be reached")
}

impl ApiKeys {
    /// Starts configuring API keys over `store`.
    pub fn builder(store: Arc<dyn KeyStore>) -> ApiKeysBuilder {
        ApiKeysBuilder {
            store,
            prefix: "ak_live".into(),
            pepper: None,
            cache_ttl: Duration::from_secs(5),
            cache_capacity: 10_000,
            clock: None,
            key_defaults: KeyLimits::default(),
            tenant_limits: KeyLimits::default(),
            limiter: None,
            usage: None,
        }
    }

    /// The key format (to generate keys).
    pub fn format(&self) -> &KeyFormat {
        &self.inner.format
    }

    /// The secret hasher (to store new keys' hashes).
    pub fn hasher(&self) -> &SecretHasher {
        &self.inner.hasher
    }

    /// The store the keys are verified against.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// Forgets cached verifications of the keys `change` names, so the next request of such a
    /// key reads the store again. Wire it to the store's change notifications (PostgreSQL:
    /// `PostgresStore::listen`) to see revocations made by other processes at once instead
    /// of after the cache TTL.
    pub fn invalidate(&self, change: &Invalidation) {
        if let Some(cache) = &self.inner.cache {
            match change {
                Invalidation::Key(id) => {
                    cache.remove_where(|v| v.principal.key_id() == Some(id.as_str()));
                }
                Invalidation::Tenant(t) => {
                    cache.remove_where(|v| v.principal.tenant() == Some(t.as_str()));
                }
            }
        }
    }

    fn record(&self, record: &KeyRecord, outcome: Outcome, now: i64) {
        if let Some(usage) = &self.inner.usage {
            usage.record(&record.id, &record.tenant, outcome, now);
        }
    }

    fn record_principal(&self, p: &Principal, outcome: Outcome, now: i64) {
        if let (Some(usage), Some(id), Some(tenant)) = (&self.inner.usage, p.key_id(), p.tenant()) {
            usage.record(id, tenant, outcome, now);
        }
    }

    /// Applies the limits to one request of a verified key: at once when the limiter can
    /// answer without I/O (`Ok`), else the pending check (`Err`).
    fn admit(
        &self,
        verified: &Verified,
        now: i64,
    ) -> Result<Result<Principal, AuthError>, BoxFuture<'static, Result<Principal, AuthError>>>
    {
        let inner = &*self.inner;
        let p = &verified.principal;
        let (checks, n) = checks(&verified.limits, &inner.tenant_limits, p);
        if n == 0 {
            self.record_principal(p, Outcome::Allowed, now);
            return Ok(Ok(p.clone()));
        }
        match inner.limiter.check(&checks[..n], now) {
            LimitOutcome::Ready(r) => Ok(self.conclude(p, r, now)),
            LimitOutcome::Pending(f) => {
                let keys = self.clone();
                let p = p.clone();
                Err(Box::pin(async move {
                    let r = f.await;
                    keys.conclude(&p, r, now)
                }))
            }
        }
    }

    fn conclude(
        &self,
        p: &Principal,
        r: Result<LimitDecision, LimitError>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        match r {
            Ok(d) if d.allowed => {
                self.record_principal(p, Outcome::Allowed, now);
                Ok(p.clone().with_rate_limit(d.status))
            }
            Ok(d) => {
                self.record_principal(p, Outcome::RateLimited, now);
                Err(refused(d))
            }
            Err(e) => Err(limiter_down(&e)),
        }
    }

    /// Verifies a key and applies its limits (and, for a key with a use credit, spends one
    /// use).
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] with the `ApiKey*` reasons, [`AuthError::RateLimited`],
    /// or [`AuthError::Unavailable`] when the store or the limiter cannot answer.
    pub async fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
        let now = inner.clock.now_unix();
        if let Some(cache) = &inner.cache
            && let Some(hit) = cache.get(key.as_bytes(), now)
        {
            let verified = hit.map_err(AuthError::InvalidToken)?;
            return match self.admit(&verified, now) {
                Ok(r) => r,
                Err(pending) => pending.await,
            };
        }
        let parsed = inner
            .format
            .parse(key)
            .map_err(|_| AuthError::InvalidToken(TokenError::ApiKeyInvalid))?;
        let record = inner
            .store
            .get(parsed.id())
            .await
            .map_err(|e| {
                tracing::warn!(target: "auth::apikey", error = %e, "key store look-up failed");
                AuthError::Unavailable("the key store could not be reached")
            })?
            .ok_or(AuthError::InvalidToken(TokenError::ApiKeyInvalid))?;
        if !inner.hasher.verify(parsed.secret(), &record.secret_hash) {
            self.record(&record, Outcome::Invalid, now);
            return Err(AuthError::InvalidToken(TokenError::ApiKeyInvalid));
        }
        let refusal = match record.status(now) {
            KeyStatus::Active => None,
            KeyStatus::Revoked => Some((TokenError::ApiKeyRevoked, Outcome::Revoked)),
            KeyStatus::Expired => Some((TokenError::ApiKeyExpired, Outcome::Expired)),
            _ => Some((TokenError::ApiKeyExhausted, Outcome::Exhausted)),
        };
        if let Some((error, outcome)) = refusal {
            self.record(&record, outcome, now);
            return Err(error.into());
        }
        // A key ends at its expiry or at a scheduled revocation (a rotation's grace period).
        let ends = [record.expires_at, record.revoked_at]
            .into_iter()
            .flatten()
            .min();
        let mut b = Principal::builder(record.id.clone(), AuthMethod::ApiKey)
            .tenant(record.tenant.clone())
            .scopes(record.scopes.iter().cloned())
            .roles(record.roles.iter().cloned())
            .key_id(record.id.clone());
        if let Some(end) = ends {
            b = b.expires_at(end);
        }
        let verified = Arc::new(Verified {
            principal: b.build(),
            limits: record.limits.or(inner.key_defaults),
        });
        let has_credit = record.remaining_uses.is_some();
        // Keys with a use credit are checked against the store every time.
        if let Some(cache) = &inner.cache
            && !has_credit
        {
            cache.insert_until(key, verified.clone(), ends.unwrap_or(i64::MAX), now);
        }
        let principal = match self.admit(&verified, now) {
            Ok(r) => r,
            Err(pending) => pending.await,
        }?;
        // Spend the credit only for a request the limits let through.
        if has_credit {
            let spent = inner.store.consume_use(&record.id).await.map_err(|e| {
                tracing::warn!(target: "auth::apikey", error = %e, "spending a key's use failed");
                AuthError::Unavailable("the key store could not be reached")
            })?;
            if !spent {
                self.record(&record, Outcome::Exhausted, now);
                return Err(TokenError::ApiKeyExhausted.into());
            }
        }
        Ok(principal)
    }
}

impl Authenticator for ApiKeys {
    fn method(&self) -> AuthMethod {
        AuthMethod::ApiKey
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_api_key()
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        let cache = self.inner.cache.as_ref()?;
        let now = self.inner.clock.now_unix();
        let verified = match cache.get(credentials.api_key_unchecked()?, now)? {
            Ok(v) => v,
            Err(e) => return Some(Err(AuthError::InvalidToken(e))),
        };
        // Limits count every request, cached or not; a limiter that needs I/O answers on the
        // asynchronous path, so a check is not prepared here only to be dropped.
        let inner = &*self.inner;
        if inner.limiter.needs_io()
            && checks(&verified.limits, &inner.tenant_limits, &verified.principal).1 > 0
        {
            return None;
        }
        self.admit(&verified, now).ok()
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        let keys = self.clone();
        Box::pin(async move {
            match credentials.api_key {
                Some(key) => keys.verify(&key).await,
                None => Err(AuthError::MissingCredentials),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::store::MemoryStore;
    use crate::apikey::usage::{Granularity, UsageQuery};
    use crate::clock::FixedClock;

    struct Setup {
        store: Arc<MemoryStore>,
        keys: ApiKeys,
    }

    fn setup(now: i64, cache_ttl: Duration) -> Setup {
        let store = Arc::new(MemoryStore::new());
        let keys = ApiKeys::builder(store.clone())
            .prefix("ak_test")
            .cache_ttl(cache_ttl)
            .clock(FixedClock(now))
            .build()
            .unwrap();
        Setup { store, keys }
    }

    async fn issue(s: &Setup, tenant: &str, edit: impl FnOnce(&mut KeyRecord)) -> (String, String) {
        let (key, parsed) = s.keys.format().generate().unwrap();
        let mut record = KeyRecord::new(
            parsed.id(),
            tenant,
            "test",
            s.keys.hasher().hash(parsed.secret()),
            0,
        );
        edit(&mut record);
        s.store.insert(record).await.unwrap();
        (key, parsed.id().to_owned())
    }

    fn err(r: Result<Principal, AuthError>) -> TokenError {
        match r {
            Err(AuthError::InvalidToken(e)) => e,
            other => panic!("expected invalid_token, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn valid_unknown_and_malformed() {
        let s = setup(100, Duration::ZERO);
        let (key, id) = issue(&s, "acme", |r| r.scopes = vec!["read".into()]).await;
        let p = s.keys.verify(&key).await.unwrap();
        assert_eq!(
            (p.subject(), p.tenant(), p.scopes()),
            (id.as_str(), Some("acme"), &["read".to_owned()][..])
        );

        // Unknown id (a key of the right format that was never stored).
        let (stranger, _) = s.keys.format().generate().unwrap();
        assert_eq!(
            err(s.keys.verify(&stranger).await),
            TokenError::ApiKeyInvalid
        );
        // Malformed and foreign.
        assert_eq!(
            err(s.keys.verify("ak_test_nope").await),
            TokenError::ApiKeyInvalid
        );
        let mut typo = key.clone();
        typo.pop();
        typo.push(if key.ends_with('a') { 'b' } else { 'a' });
        assert_eq!(err(s.keys.verify(&typo).await), TokenError::ApiKeyInvalid);
    }

    #[tokio::test]
    async fn wrong_secret_for_a_stored_id_is_refused() {
        // Store a record whose hash belongs to a different secret than the key's.
        let s = setup(100, Duration::ZERO);
        let (key, parsed) = s.keys.format().generate().unwrap();
        let record = KeyRecord::new(
            parsed.id(),
            "acme",
            "t",
            s.keys.hasher().hash("another secret"),
            0,
        );
        s.store.insert(record).await.unwrap();
        assert_eq!(err(s.keys.verify(&key).await), TokenError::ApiKeyInvalid);
    }

    #[tokio::test]
    async fn revoked_expired_exhausted_and_rotation_grace() {
        let s = setup(1_000, Duration::ZERO);
        let (revoked, _) = issue(&s, "t", |r| r.revoked_at = Some(900)).await;
        assert_eq!(
            err(s.keys.verify(&revoked).await),
            TokenError::ApiKeyRevoked
        );
        let (expired, _) = issue(&s, "t", |r| r.expires_at = Some(1_000)).await;
        assert_eq!(
            err(s.keys.verify(&expired).await),
            TokenError::ApiKeyExpired
        );
        let (spent, _) = issue(&s, "t", |r| r.remaining_uses = Some(0)).await;
        assert_eq!(
            err(s.keys.verify(&spent).await),
            TokenError::ApiKeyExhausted
        );

        // Rotation: the old key works until the grace period ends.
        let (old, old_id) = issue(&s, "t", |_| {}).await;
        let (new_key, parsed) = s.keys.format().generate().unwrap();
        let successor = KeyRecord::new(
            parsed.id(),
            "t",
            "t",
            s.keys.hasher().hash(parsed.secret()),
            1_000,
        );
        s.store.rotate(&old_id, successor, 1_100).await.unwrap();
        let p = s.keys.verify(&old).await.unwrap();
        assert_eq!(
            p.expires_at(),
            Some(1_100),
            "the grace end is the principal's expiry"
        );
        assert!(s.keys.verify(&new_key).await.is_ok());
        let later = ApiKeys::builder(s.store.clone())
            .prefix("ak_test")
            .clock(FixedClock(1_100))
            .build()
            .unwrap();
        assert_eq!(err(later.verify(&old).await), TokenError::ApiKeyRevoked);
        assert!(later.verify(&new_key).await.is_ok());
    }

    #[tokio::test]
    async fn cache_answers_until_its_ttl_bounds_revocation() {
        let s = setup(1_000, Duration::from_secs(5));
        let (key, id) = issue(&s, "t", |_| {}).await;
        s.keys.verify(&key).await.unwrap();
        let creds = Credentials::with_api_key(&key);
        assert!(s.keys.authenticate_cached(&creds).unwrap().is_ok());
        s.store.revoke(&id, 1_000).await.unwrap();
        // Within the TTL the cache still answers (the documented delay)...
        assert!(s.keys.authenticate_cached(&creds).unwrap().is_ok());
        // ...and a process whose clock is past the TTL goes back to the store.
        let later = ApiKeys::builder(s.store.clone())
            .prefix("ak_test")
            .clock(FixedClock(1_005))
            .build()
            .unwrap();
        assert!(later.authenticate_cached(&creds).is_none());
        assert_eq!(err(later.verify(&key).await), TokenError::ApiKeyRevoked);
    }

    #[tokio::test]
    async fn rate_limits_per_key_and_per_tenant_apply_to_cached_requests_too() {
        let store = Arc::new(MemoryStore::new());
        let keys = ApiKeys::builder(store.clone())
            .prefix("ak_test")
            .rate_per_key(Rate::per(Duration::from_secs(3600), 2))
            .rate_per_tenant(Rate::per(Duration::from_secs(3600), 3))
            .build()
            .unwrap();
        let s = Setup { store, keys };
        let (a, _) = issue(&s, "acme", |_| {}).await;
        let (b, _) = issue(&s, "acme", |_| {}).await;
        let gate = crate::Gate::builder(s.keys.clone()).build();
        let call = |key: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-api-key", key.parse().unwrap());
            let gate = gate.clone();
            async move { gate.check_async(&h).await }
        };
        assert!(call(&a).await.is_ok(), "slow path");
        assert!(call(&a).await.is_ok(), "cached");
        let third = call(&a).await.unwrap_err();
        assert!(matches!(third, AuthError::RateLimited { .. }), "{third:?}");
        assert_eq!(third.http_status(), 429);
        assert!(third.retry_after_secs().unwrap() > 0);
        // The tenant's third request (key b's first) is within b's limit but over the tenant's.
        assert!(call(&b).await.is_ok());
        assert!(matches!(
            call(&b).await.unwrap_err(),
            AuthError::RateLimited { .. }
        ));
    }

    #[tokio::test]
    async fn chain_takes_one_kind_and_refuses_two() {
        let s = setup(1_000, Duration::ZERO);
        let (key, _) = issue(&s, "t", |_| {}).await;
        let jwt_keys = crate::keys::KeySet::new(vec![
            crate::keys::VerifyingKey::hmac(&[7; 32], None).unwrap(),
        ])
        .unwrap();
        let jwt = crate::jwt::Jwt::builder()
            .issuer(crate::jwt::Issuer::any().keys(jwt_keys))
            .build()
            .unwrap();
        let chain = crate::Chain::new().with(jwt).with(s.keys.clone());
        let gate = crate::Gate::builder(chain).build();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        let p = gate.check_async(&headers).await.unwrap().unwrap();
        assert_eq!(p.method(), AuthMethod::ApiKey);
        headers.insert("authorization", "Bearer a.b.c".parse().unwrap());
        assert_eq!(
            gate.check_async(&headers).await.unwrap_err(),
            AuthError::InvalidRequest(crate::error::RequestError::MultipleCredentials)
        );
        let mut by_scheme = http::HeaderMap::new();
        by_scheme.insert("authorization", format!("ApiKey {key}").parse().unwrap());
        assert!(gate.check_async(&by_scheme).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn per_key_limits_from_the_record_override_defaults_and_report_status() {
        let store = Arc::new(MemoryStore::new());
        let keys = ApiKeys::builder(store.clone())
            .prefix("ak_test")
            .rate_per_key(Rate::per(Duration::from_secs(3600), 100))
            .quota_per_tenant(Quota::new(1_000, Window::Day))
            .build()
            .unwrap();
        let s = Setup { store, keys };
        let (own, _) = issue(&s, "acme", |r| {
            r.limits = KeyLimits::new(Some(Rate::per(Duration::from_secs(3600), 2)), None);
        })
        .await;
        let (default, _) = issue(&s, "acme", |_| {}).await;
        let first = s.keys.verify(&own).await.unwrap();
        let status = first.rate_limit().copied().unwrap();
        assert_eq!((status.policy, status.remaining), ("key-rate", 1));
        assert!(s.keys.verify(&own).await.is_ok(), "cached, second of two");
        match s.keys.verify(&own).await {
            Err(AuthError::RateLimited {
                retry_after,
                status: Some(status),
            }) => {
                assert!(retry_after > Duration::ZERO);
                assert_eq!((status.policy, status.remaining), ("key-rate", 0));
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // The other key gets the defaults: 100/h per key, 1000/day for the tenant (2 used by
        // `own`, the refused third not counted).
        let p = s.keys.verify(&default).await.unwrap();
        let status = p.rate_limit().copied().unwrap();
        assert_eq!((status.policy, status.remaining), ("key-rate", 99));
        let c = Credentials::with_api_key(&default);
        let cached = s.keys.authenticate_cached(&c).unwrap().unwrap();
        assert_eq!(cached.rate_limit().unwrap().remaining, 98);
    }

    #[tokio::test]
    async fn a_use_credit_is_spent_once_per_allowed_request() {
        let store = Arc::new(MemoryStore::new());
        let keys = ApiKeys::builder(store.clone())
            .prefix("ak_test")
            .clock(FixedClock(1_000))
            .build()
            .unwrap();
        let s = Setup { store, keys };
        let (key, id) = issue(&s, "acme", |r| {
            r.remaining_uses = Some(3);
            r.limits = KeyLimits::new(Some(Rate::per(Duration::from_secs(3600), 2)), None);
        })
        .await;
        assert!(s.keys.verify(&key).await.is_ok());
        assert!(s.keys.verify(&key).await.is_ok());
        // Over the rate: refused, and the credit is not spent.
        assert!(matches!(
            s.keys.verify(&key).await,
            Err(AuthError::RateLimited { .. })
        ));
        assert_eq!(
            s.store.get(&id).await.unwrap().unwrap().remaining_uses,
            Some(1)
        );
        let (spent, _) = issue(&s, "acme", |r| r.remaining_uses = Some(1)).await;
        assert!(s.keys.verify(&spent).await.is_ok());
        assert_eq!(
            err(s.keys.verify(&spent).await),
            TokenError::ApiKeyExhausted
        );
    }

    #[tokio::test]
    async fn outcomes_of_known_keys_are_counted() {
        let store = Arc::new(MemoryStore::new());
        let recorder = UsageRecorder::new(store.clone());
        let keys = ApiKeys::builder(store.clone())
            .prefix("ak_test")
            .clock(FixedClock(6_000))
            .usage(recorder.clone())
            .build()
            .unwrap();
        let s = Setup { store, keys };
        let (key, id) = issue(&s, "acme", |r| {
            r.limits = KeyLimits::new(Some(Rate::per(Duration::from_secs(3600), 2)), None);
        })
        .await;
        let (revoked, revoked_id) = issue(&s, "acme", |r| r.revoked_at = Some(1)).await;
        for _ in 0..3 {
            let _ = s.keys.verify(&key).await;
        }
        let _ = s.keys.verify(&revoked).await;
        let (stranger, _) = s.keys.format().generate().unwrap();
        let _ = s.keys.verify(&stranger).await; // unknown id: counted nowhere
        recorder.flush().await.unwrap();
        let rows = s
            .store
            .usage(&UsageQuery::tenant("acme", 0, Granularity::Day))
            .await
            .unwrap();
        let count = |id: &str, o: Outcome| {
            rows.iter()
                .filter(|r| r.key_id == id && r.outcome == o)
                .map(|r| r.count)
                .sum::<u64>()
        };
        assert_eq!(count(&id, Outcome::Allowed), 2);
        assert_eq!(count(&id, Outcome::RateLimited), 1);
        assert_eq!(count(&revoked_id, Outcome::Revoked), 1);
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 4);
        // The batched last-used time.
        assert_eq!(
            s.store.get(&id).await.unwrap().unwrap().last_used_at,
            Some(6_000)
        );
    }

    #[tokio::test]
    async fn invalidation_drops_cached_verifications_at_once() {
        let s = setup(1_000, Duration::from_secs(60));
        let (key, id) = issue(&s, "acme", |_| {}).await;
        let (other, _) = issue(&s, "globex", |_| {}).await;
        s.keys.verify(&key).await.unwrap();
        s.keys.verify(&other).await.unwrap();
        s.store.revoke(&id, 1_000).await.unwrap();
        let creds = Credentials::with_api_key(&key);
        assert!(s.keys.authenticate_cached(&creds).is_some(), "still cached");
        s.keys.invalidate(&Invalidation::Key(id.clone()));
        assert!(s.keys.authenticate_cached(&creds).is_none());
        assert_eq!(err(s.keys.verify(&key).await), TokenError::ApiKeyRevoked);
        let other_creds = Credentials::with_api_key(&other);
        assert!(
            s.keys.authenticate_cached(&other_creds).is_some(),
            "other keys stay"
        );
        s.keys.invalidate(&Invalidation::Tenant("globex".into()));
        assert!(s.keys.authenticate_cached(&other_creds).is_none());
    }
}

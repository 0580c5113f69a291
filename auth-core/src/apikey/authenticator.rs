//! [`ApiKeys`]: the API-key [`Authenticator`].
//!
//! A presented key (from `X-API-Key` or `Authorization: ApiKey <key>`) is parsed (shape and
//! checksum: a mistyped or foreign key never reaches the store), looked up by its public id,
//! its secret hashed and compared in constant time with the stored hash, and its record's
//! status checked (revoked, past a rotation's grace period, expired, credit spent). The
//! resulting [`Principal`] (subject and key id: the key's id; method `api_key`; the record's
//! tenant, scopes and roles) is cached by the exact key bytes for at most
//! [`ApiKeysBuilder::cache_ttl`] (5 s by default): that bounds how long a revocation made
//! in the store, by this or another process, can take to be seen. Optional in-process rate
//! limits per key and per tenant ([`ApiKeysBuilder::rate_per_key`]) are checked on every
//! request, cached or not, and refuse with 429 and `Retry-After`.
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
use super::limit::{InProcessLimiter, Rate};
use super::store::{KeyStatus, KeyStore, SecretHasher};
use crate::authenticator::{Authenticator, BoxFuture, OwnedCredentials};
use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::credentials::Credentials;
use crate::error::{AuthError, BuildError, TokenError};
use crate::principal::{AuthMethod, Principal};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Inner {
    format: KeyFormat,
    hasher: SecretHasher,
    store: Arc<dyn KeyStore>,
    cache: Option<TokenCache>,
    clock: Arc<dyn Clock>,
    limits: Option<Limits>,
}

/// Rate limits applied to every authenticated request, per key and per tenant: one limiter per
/// dimension, keyed by the key id or the tenant as they are (nothing allocated per request).
struct Limits {
    per_key: Option<(Rate, InProcessLimiter)>,
    per_tenant: Option<(Rate, InProcessLimiter)>,
    origin: Instant,
}

impl Limits {
    /// Counts one request of `p`; the refusal when a limit is exceeded.
    fn check(&self, p: &Principal) -> Result<(), AuthError> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let dimensions = [
            (self.per_key.as_ref(), p.key_id()),
            (self.per_tenant.as_ref(), p.tenant()),
        ];
        for (limit, bucket) in dimensions {
            if let (Some((rate, limiter)), Some(bucket)) = (limit, bucket) {
                let d = limiter.check_rate(bucket, rate, now);
                if !d.allowed {
                    return Err(AuthError::RateLimited {
                        retry_after: d.retry_after,
                        status: d.status,
                    });
                }
            }
        }
        Ok(())
    }
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
    per_key: Option<Rate>,
    per_tenant: Option<Rate>,
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
    /// cache). This bounds how late a revocation is seen.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }
    /// Replaces the system clock (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Limits every key to `rate` (in process; refusals answer 429 with `Retry-After`).
    pub fn rate_per_key(mut self, rate: Rate) -> Self {
        self.per_key = Some(rate);
        self
    }

    /// Limits every tenant, all its keys together, to `rate` (in process).
    pub fn rate_per_tenant(mut self, rate: Rate) -> Self {
        self.per_tenant = Some(rate);
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
                limits: (self.per_key.is_some() || self.per_tenant.is_some()).then(|| Limits {
                    per_key: self.per_key.map(|r| (r, InProcessLimiter::new(100_000))),
                    per_tenant: self.per_tenant.map(|r| (r, InProcessLimiter::new(100_000))),
                    origin: Instant::now(),
                }),
            }),
        })
    }
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
            per_key: None,
            per_tenant: None,
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

    /// Verifies a key.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] with the `ApiKey*` reasons, or [`AuthError::Unavailable`]
    /// when the store cannot answer.
    pub async fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
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
            return Err(AuthError::InvalidToken(TokenError::ApiKeyInvalid));
        }
        let now = inner.clock.now_unix();
        match record.status(now) {
            KeyStatus::Active => {}
            KeyStatus::Revoked => return Err(TokenError::ApiKeyRevoked.into()),
            KeyStatus::Expired => return Err(TokenError::ApiKeyExpired.into()),
            _ => return Err(TokenError::ApiKeyExhausted.into()),
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
        let principal = b.build();
        // Keys with a use credit are checked against the store every time.
        if let Some(cache) = &inner.cache
            && record.remaining_uses.is_none()
        {
            cache.insert_until(key, principal.clone(), ends.unwrap_or(i64::MAX), now);
        }
        if let Some(limits) = &inner.limits {
            limits.check(&principal)?;
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
        let hit = cache
            .get(
                credentials.api_key_unchecked()?,
                self.inner.clock.now_unix(),
            )?
            .map_err(AuthError::InvalidToken);
        // Limits count every request, cached or not.
        Some(match (&self.inner.limits, hit) {
            (Some(limits), Ok(p)) => limits.check(&p).map(|()| p),
            (_, hit) => hit,
        })
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
    use crate::apikey::store::{KeyRecord, MemoryStore};
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
}

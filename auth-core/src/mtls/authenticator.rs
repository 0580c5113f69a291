//! The client-certificate [`Authenticator`]: [`Mtls`] (re-exported as `auth_core::mtls::Mtls`,
//! where its documentation explains what it accepts, caches and refuses).
//!
//! ```
//! use auth_core::mtls::Mtls;
//! use auth_core::mtls::mapping::IdentityMapping;
//! use auth_core::{AuthError, PeerCertificate, TokenError};
//!
//! let mtls = Mtls::builder(IdentityMapping::default()).build();
//! # let key = rcgen::KeyPair::generate().unwrap();
//! # let mut params = rcgen::CertificateParams::new(vec!["api.internal".to_owned()]).unwrap();
//! # params.distinguished_name = rcgen::DistinguishedName::new();
//! # let der = params.self_signed(&key).unwrap().der().to_vec();
//! // The leaf certificate the TLS handshake validated:
//! let peer = PeerCertificate::new(der);
//! assert_eq!(mtls.verify(&peer).unwrap().subject(), "api.internal");
//!
//! let garbage = PeerCertificate::new(b"not a certificate".to_vec());
//! assert_eq!(
//!     mtls.verify(&garbage).unwrap_err(),
//!     AuthError::InvalidToken(TokenError::CertificateRejected),
//! );
//! ```

use super::identity::CertIdentity;
use super::mapping::IdentityMapping;
use crate::authenticator::{Authenticator, BoxFuture, OwnedCredentials};
use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::credentials::{Credentials, PeerCertificate};
use crate::error::{AuthError, TokenError};
use crate::principal::{AuthMethod, Principal};
use base64::Engine;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The length of a base64url SHA-256 thumbprint without padding.
const X5T_LEN: usize = 43;

struct Inner {
    mapping: IdentityMapping,
    cache: Option<TokenCache<Principal>>,
    clock: Arc<dyn Clock>,
}

/// Authenticates requests by their TLS client certificate. Cheap to clone.
///
/// It takes requests that present a client certificate and no other credential: a bearer
/// token or an API key sent over mutual TLS is authenticated by its own authenticator, and
/// the certificate then only serves RFC 8705 binding, which the [`Gate`](crate::Gate)
/// enforces. Put `Mtls` in a [`Chain`](crate::Chain) with them.
///
/// The certificate was validated by the TLS handshake; `Mtls` reads its identity
/// ([`CertIdentity`]) and maps it to a [`Principal`] ([`IdentityMapping`]). That is CPU work
/// only (no I/O), and its result is cached by the certificate's SHA-256 thumbprint, for at
/// most [`MtlsBuilder::cache_ttl`] and never past the certificate's `notAfter`, so the
/// requests of a connection after the first cost a hash look-up. A certificate that cannot be
/// read or maps to no principal is refused with `401 invalid_token`
/// ([`TokenError::CertificateRejected`]); the log (target `auth::mtls`) says why.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use auth_core::mtls::Mtls;
/// use auth_core::mtls::mapping::{CertMatch, IdentityMapping};
/// use auth_core::{AuthError, AuthMethod, Gate, PeerCertificate, TokenError, WithPeer};
///
/// let mapping = IdentityMapping::builder()
///     .allow_trust_domains(["prod.example"])
///     .role(CertMatch::spiffe_path_prefix("/service/"), "service")
///     .build()
///     .unwrap();
/// let gate = Gate::builder(Mtls::builder(mapping).build()).build();
///
/// # let cert = |uri: &str| {
/// #     let key = rcgen::KeyPair::generate().unwrap();
/// #     let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
/// #     params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().unwrap()));
/// #     PeerCertificate::new(params.self_signed(&key).unwrap().der().to_vec())
/// # };
/// // The adapter hands over the connection's validated leaf certificate.
/// let headers = http::HeaderMap::new();
/// let billing = cert("spiffe://prod.example/service/billing");
/// let p = gate
///     .check_async(&WithPeer { headers: &headers, peer: Some(&billing) })
///     .await
///     .unwrap()
///     .unwrap();
/// assert_eq!(p.method(), AuthMethod::Mtls);
/// assert!(p.has_role("service"));
///
/// let stranger = cert("spiffe://other.example/service/billing");
/// let err = gate
///     .check_async(&WithPeer { headers: &headers, peer: Some(&stranger) })
///     .await
///     .unwrap_err();
/// assert_eq!(err, AuthError::InvalidToken(TokenError::CertificateRejected));
/// assert_eq!(err.http_status(), 401);
/// # }
/// ```
#[derive(Clone)]
pub struct Mtls {
    inner: Arc<Inner>,
}

impl fmt::Debug for Mtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mtls")
            .field("mapping", &self.inner.mapping)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds [`Mtls`].
#[must_use]
pub struct MtlsBuilder {
    mapping: IdentityMapping,
    cache_ttl: Duration,
    cache_capacity: u64,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for MtlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsBuilder")
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

impl MtlsBuilder {
    /// How long a mapped certificate is answered from memory (default 60 s; never past its
    /// `notAfter`; zero disables the cache). It bounds how late a change that the handshake
    /// does not see (a trust store reloaded with a new CRL, for connections already open) is
    /// seen; [`Mtls::invalidate`] forgets everything at once.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many certificates the cache holds at most (default 10 000).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Replaces the system clock (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Finishes the authenticator.
    pub fn build(self) -> Mtls {
        Mtls {
            inner: Arc::new(Inner {
                mapping: self.mapping,
                cache: (!self.cache_ttl.is_zero() && self.cache_capacity > 0)
                    .then(|| TokenCache::new(self.cache_capacity, self.cache_ttl)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            }),
        }
    }
}

/// The cache key of a certificate: its base64url thumbprint, on the stack.
fn cache_key(peer: &PeerCertificate) -> [u8; X5T_LEN] {
    let mut key = [0u8; X5T_LEN];
    // 32 bytes always encode to 43 characters.
    let _ = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(peer.sha256(), &mut key);
    key
}

fn rejected() -> AuthError {
    AuthError::InvalidToken(TokenError::CertificateRejected)
}

impl Mtls {
    /// Starts configuring the authenticator with `mapping`.
    pub fn builder(mapping: IdentityMapping) -> MtlsBuilder {
        MtlsBuilder {
            mapping,
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            clock: None,
        }
    }

    /// The identity mapping.
    pub fn mapping(&self) -> &IdentityMapping {
        &self.inner.mapping
    }

    /// Forgets every cached certificate (after the trust store or the policy behind the
    /// mapping changed).
    pub fn invalidate(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
    }

    /// The cached principal of `peer`, if it was mapped before and the entry is still valid.
    fn cached(&self, peer: &PeerCertificate) -> Option<Principal> {
        let cache = self.inner.cache.as_ref()?;
        // Entries carry no expiry error (they end at `notAfter` by their deadline).
        cache
            .get(&cache_key(peer), self.inner.clock.now_unix())?
            .ok()
    }

    /// Reads and maps the certificate `peer` (the leaf the handshake validated), answering
    /// from the cache when it can.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] with [`TokenError::CertificateRejected`] when the
    /// certificate cannot be read or its identity maps to no principal.
    pub fn verify(&self, peer: &PeerCertificate) -> Result<Principal, AuthError> {
        if let Some(p) = self.cached(peer) {
            return Ok(p);
        }
        let inner = &*self.inner;
        let now = inner.clock.now_unix();
        let identity = CertIdentity::from_peer(peer).map_err(|e| {
            tracing::info!(
                target: "auth::mtls",
                error = %e,
                x5t = %String::from_utf8_lossy(&cache_key(peer)),
                "client certificate refused: its identity cannot be read"
            );
            rejected()
        })?;
        let principal = inner.mapping.map(&identity, now).map_err(|e| {
            tracing::info!(
                target: "auth::mtls",
                error = %e,
                spiffe_id = identity.spiffe_id().map(|s| s.as_str()),
                x5t = %String::from_utf8_lossy(&cache_key(peer)),
                "client certificate refused by the identity mapping"
            );
            rejected()
        })?;
        if let Some(cache) = &inner.cache {
            let key = cache_key(peer);
            if let Ok(key) = std::str::from_utf8(&key) {
                cache.insert_until(key, principal.clone(), identity.not_after(), now);
            }
        }
        Ok(principal)
    }
}

impl Authenticator for Mtls {
    fn method(&self) -> AuthMethod {
        AuthMethod::Mtls
    }

    /// A client certificate and no header credential: a token or key sent over mutual TLS
    /// belongs to its own authenticator.
    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.peer_certificate().is_some() && credentials.kinds() == 0
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        if credentials.kinds() != 0 {
            return None;
        }
        self.cached(credentials.peer_certificate()?).map(Ok)
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        let result = match (&credentials.peer, credentials.bearer, credentials.api_key) {
            (Some(peer), None, None) => self.verify(peer),
            _ => Err(AuthError::MissingCredentials),
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;

    fn cert(uri: &str, not_after: (i32, u8, u8)) -> PeerCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        PeerCertificate::new(params.self_signed(&key).unwrap().der().to_vec())
    }

    #[test]
    fn caches_by_thumbprint_never_past_not_after() {
        let peer = cert("spiffe://a/svc", (2030, 1, 1));
        let not_after = rcgen::date_time_ymd(2030, 1, 1).unix_timestamp();
        let at = |now: i64| {
            Mtls::builder(IdentityMapping::default())
                .cache_ttl(Duration::from_secs(3600))
                .clock(FixedClock(now))
                .build()
        };
        let early = at(not_after - 7200);
        assert!(early.cached(&peer).is_none());
        let p = early.verify(&peer).unwrap();
        assert_eq!(p.subject(), "spiffe://a/svc");
        assert!(early.cached(&peer).is_some());
        early.invalidate();
        assert!(early.cached(&peer).is_none());

        // Mapped 10 s before notAfter: cached for 10 s, not the TTL's hour.
        let late = at(not_after - 10);
        late.verify(&peer).unwrap();
        assert!(late.cached(&peer).is_some());
        let inner = &late.inner;
        let cache = inner.cache.as_ref().unwrap();
        assert!(cache.get(&cache_key(&peer), not_after - 1).is_some());
        assert!(cache.get(&cache_key(&peer), not_after).is_none());

        // Past notAfter the mapping refuses (a connection can outlive its certificate).
        assert_eq!(
            at(not_after + 1).verify(&peer).unwrap_err(),
            AuthError::InvalidToken(TokenError::CertificateRejected)
        );
        assert_eq!(cache_key(&peer).len(), X5T_LEN);
    }

    #[test]
    fn takes_only_certificate_only_requests() {
        let peer = cert("spiffe://a/svc", (2090, 1, 1));
        let mtls = Mtls::builder(IdentityMapping::default()).build();
        assert!(mtls.accepts(&Credentials::with_peer(&peer)));
        assert!(!mtls.accepts(&Credentials::with_bearer("a.b.c").peer(&peer)));
        assert!(!mtls.accepts(&Credentials::with_api_key("ak_x").peer(&peer)));
        assert!(!mtls.accepts(&Credentials::default()));
        let garbage = PeerCertificate::new(b"not a certificate".to_vec());
        assert_eq!(
            mtls.verify(&garbage).unwrap_err(),
            AuthError::InvalidToken(TokenError::CertificateRejected)
        );
    }
}

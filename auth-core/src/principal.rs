//! Who is calling: the [`Principal`] an authenticator produces and adapters put into the request.
//!
//! A `Principal` is cheap to clone (one `Arc`), so adapters insert it into request extensions and
//! handlers take it by value.
//!
//! ```
//! use auth_core::{AuthMethod, Principal};
//!
//! let p = Principal::builder("alice", AuthMethod::Jwt)
//!     .issuer("https://issuer.example")
//!     .scopes(["read", "admin"])
//!     .build();
//! assert!(p.has_scope("admin"));
//! assert_eq!(p.subject(), "alice");
//! ```

use crate::ratelimit::RateLimitStatus;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A JWT access token verified locally.
    Jwt,
    /// An opaque token checked by introspection.
    Introspection,
    /// An API key.
    ApiKey,
    /// A TLS client certificate.
    Mtls,
}

impl AuthMethod {
    /// A short lower-case name (`jwt`, `introspection`, `api_key`, `mtls`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Introspection => "introspection",
            Self::ApiKey => "api_key",
            Self::Mtls => "mtls",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified claims of a token, available for typed access.
#[derive(Clone, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Wraps a claims object.
    pub fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// One claim, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A claim by a dotted path (`realm_access.roles`), if present.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let first = self.0.get(parts.next()?)?;
        parts.try_fold(first, |v, p| v.get(p))
    }

    /// All claims as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Deserializes the claims into `T`.
    ///
    /// # Errors
    ///
    /// When the claims do not have the shape of `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&Value::Object(self.0.clone()))
    }
}

impl fmt::Debug for Claims {
    // Claims can hold personal data: list the names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

struct Inner {
    subject: String,
    method: AuthMethod,
    issuer: Option<String>,
    tenant: Option<String>,
    scopes: Box<[String]>,
    roles: Box<[String]>,
    key_id: Option<String>,
    expires_at: Option<i64>,
    claims: Claims,
    certificate_binding: Option<[u8; 32]>,
    dpop_binding: Option<[u8; 32]>,
}

/// An authenticated caller.
#[derive(Clone)]
pub struct Principal {
    inner: Arc<Inner>,
    rate_limit: Option<RateLimitStatus>,
}

impl Principal {
    /// Starts building a principal (authenticators do this; tests and custom authenticators may).
    pub fn builder(subject: impl Into<String>, method: AuthMethod) -> PrincipalBuilder {
        PrincipalBuilder(Inner {
            subject: subject.into(),
            method,
            issuer: None,
            tenant: None,
            scopes: Box::new([]),
            roles: Box::new([]),
            key_id: None,
            expires_at: None,
            claims: Claims::default(),
            certificate_binding: None,
            dpop_binding: None,
        })
    }

    /// The subject (`sub` of a token, key id of an API key, identity of a certificate).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }
    /// How the caller authenticated.
    pub fn method(&self) -> AuthMethod {
        self.inner.method
    }
    /// The issuer that vouched for the caller, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }
    /// The caller's tenant, if configured and present.
    pub fn tenant(&self) -> Option<&str> {
        self.inner.tenant.as_deref()
    }
    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.scopes.iter().any(|s| s == scope)
    }
    /// The caller's roles.
    pub fn roles(&self) -> &[String] {
        &self.inner.roles
    }
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.inner.roles.iter().any(|r| r == role)
    }
    /// The id of the key or certificate that verified the credential, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.inner.key_id.as_deref()
    }
    /// When the credential expires, in seconds since the Unix epoch, if it does.
    pub fn expires_at(&self) -> Option<i64> {
        self.inner.expires_at
    }
    /// All verified claims.
    pub fn claims(&self) -> &Claims {
        &self.inner.claims
    }

    /// The SHA-256 thumbprint of the client certificate this credential is bound to (RFC 8705
    /// `cnf.x5t#S256`), if it is: the gate accepts it only over a connection presenting that
    /// certificate.
    pub fn certificate_binding(&self) -> Option<&[u8; 32]> {
        self.inner.certificate_binding.as_ref()
    }

    /// The RFC 7638 SHA-256 thumbprint of the DPoP key this credential is bound to (RFC 9449
    /// `cnf.jkt`), if it is: it is accepted only with the `DPoP` scheme and a proof signed by
    /// that key (see [`crate::dpop::check_binding`]).
    pub fn dpop_binding(&self) -> Option<&[u8; 32]> {
        self.inner.dpop_binding.as_ref()
    }

    /// The state of the caller's closest rate limit or quota, when one applied to this
    /// request; adapters send it as the `RateLimit-Policy` and `RateLimit` headers.
    pub fn rate_limit(&self) -> Option<&RateLimitStatus> {
        self.rate_limit.as_ref()
    }

    /// This principal with the rate-limit state of the current request (limiters set it).
    #[must_use]
    pub fn with_rate_limit(mut self, status: Option<RateLimitStatus>) -> Self {
        self.rate_limit = status;
        self
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.inner.subject)
            .field("method", &self.inner.method)
            .field("issuer", &self.inner.issuer)
            .field("tenant", &self.inner.tenant)
            .field("scopes", &self.inner.scopes)
            .field("roles", &self.inner.roles)
            .field("key_id", &self.inner.key_id)
            .field("expires_at", &self.inner.expires_at)
            .field("claims", &self.inner.claims)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// Builds a [`Principal`].
#[must_use]
pub struct PrincipalBuilder(Inner);

impl PrincipalBuilder {
    /// Sets the issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.0.issuer = Some(issuer.into());
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.0.tenant = Some(tenant.into());
        self
    }
    /// Sets the granted scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.0.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the roles.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.0.roles = roles.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the id of the verifying key or certificate.
    pub fn key_id(mut self, kid: impl Into<String>) -> Self {
        self.0.key_id = Some(kid.into());
        self
    }
    /// Sets the expiry (seconds since the Unix epoch).
    pub fn expires_at(mut self, exp: i64) -> Self {
        self.0.expires_at = Some(exp);
        self
    }
    /// Binds the credential to the client certificate with this SHA-256 thumbprint.
    pub fn bound_to_certificate(mut self, sha256: [u8; 32]) -> Self {
        self.0.certificate_binding = Some(sha256);
        self
    }
    /// Binds the credential to the DPoP key with this RFC 7638 SHA-256 thumbprint (`cnf.jkt`).
    pub fn bound_to_dpop_key(mut self, jkt: [u8; 32]) -> Self {
        self.0.dpop_binding = Some(jkt);
        self
    }
    /// Sets the verified claims.
    pub fn claims(mut self, claims: Claims) -> Self {
        self.0.claims = claims;
        self
    }
    /// Finishes the principal.
    pub fn build(self) -> Principal {
        Principal {
            inner: Arc::new(self.0),
            rate_limit: None,
        }
    }
}

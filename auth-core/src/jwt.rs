//! JWT access-token verification: the [`Jwt`] authenticator.
//!
//! A token is accepted only when all of this holds:
//! - it is a compact JWS no larger than the limit (8 KiB by default) whose header passes the
//!   RFC 8725 rules of [`crate::jws`], and whose claims are a JSON object without duplicate members;
//! - its `iss` names a configured [`Issuer`] (several may be configured; the token's `iss` picks
//!   one, and only that issuer's keys are tried);
//! - a key of that issuer, chosen by `kid`, allows the header's `alg` and verifies the signature;
//! - `exp` is present and in the future, `nbf` (if present) is not in the future, `iat` (if
//!   present) is not in the future, each within the issuer's leeway (default 60 s, at most 5 min);
//! - `aud` (string or array) names one of the issuer's audiences, when it has any;
//! - with [`Issuer::rfc9068`], `typ` is `at+jwt` and the claims RFC 9068 requires are present.
//!
//! A verified token is cached (see `cache`), so a repeated token costs a hash look-up.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use auth_core::{AuthError, TokenError};
//!
//! let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], Some("k1".into())).unwrap()]).unwrap();
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").audience("my-api").keys(keys))
//!     .build()
//!     .unwrap();
//! let err = jwt.verify("not-a-token").await.unwrap_err();
//! assert_eq!(err, AuthError::InvalidToken(TokenError::Malformed("not a compact JWS")));
//! # }
//! ```

use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::error::{AuthError, BuildError, TokenError};
use crate::json::{JsonError, parse_object};
use crate::jws::{self, Header};
use crate::keys::{KeySet, VerifyingKey};
use crate::principal::{AuthMethod, Claims, Principal};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "jwks")]
use crate::jwks::JwksCache;
#[cfg(feature = "issuer")]
use crate::rotation::KeyRotator;

/// The largest leeway an issuer may be configured with.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Where an issuer's keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// A fixed set of keys.
    Static(Arc<KeySet>),
    /// Keys fetched from a JWKS URL (or found by OIDC discovery) and refreshed in the background.
    #[cfg(feature = "jwks")]
    Jwks(JwksCache),
    /// The keys of a rotating ring ([`KeyRotator`]): read lock-free, reloaded from its store
    /// (rate-limited) when a token names an unknown key.
    #[cfg(feature = "issuer")]
    Rotating(Arc<KeyRotator>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(k) => f.debug_tuple("Static").field(k).finish(),
            #[cfg(feature = "jwks")]
            Self::Jwks(j) => f.debug_tuple("Jwks").field(j).finish(),
            #[cfg(feature = "issuer")]
            Self::Rotating(r) => f.debug_tuple("Rotating").field(r).finish(),
        }
    }
}

impl KeySource {
    fn current(&self) -> Arc<KeySet> {
        match self {
            Self::Static(k) => k.clone(),
            #[cfg(feature = "jwks")]
            Self::Jwks(j) => j.keys(),
            #[cfg(feature = "issuer")]
            Self::Rotating(r) => r.key_set(),
        }
    }

    /// Fetches again after a token named an unknown key: `Ok(None)` when no fetch was allowed
    /// or it failed, [`AuthError::Unavailable`] when no key is held at all.
    async fn refresh_for_unknown_key(&self) -> Result<Option<Arc<KeySet>>, AuthError> {
        match self {
            Self::Static(_) => Ok(None),
            #[cfg(feature = "jwks")]
            Self::Jwks(j) => j
                .refresh_for_unknown_key()
                .await
                .map_err(|()| AuthError::Unavailable("the issuer's keys could not be fetched")),
            #[cfg(feature = "issuer")]
            Self::Rotating(r) => Ok(r.refresh_for_unknown_key().await),
        }
    }
}

/// A trusted token issuer: its identifier, audiences, keys and validation rules.
#[derive(Debug, Clone)]
#[must_use]
pub struct Issuer {
    issuer: Option<String>,
    audiences: Vec<String>,
    keys: Option<KeySource>,
    leeway: Duration,
    require_exp: bool,
    rfc9068: bool,
    tenant_claim: Option<String>,
    roles_claim: Option<String>,
    require_binding: bool,
}

impl Issuer {
    /// An issuer whose tokens carry `iss` equal to `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: Some(issuer.into()),
            ..Self::any()
        }
    }

    /// An issuer that does not check `iss` (for tokens from a single, keyed source). It is chosen
    /// for tokens whose `iss` names no other configured issuer.
    pub fn any() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            keys: None,
            leeway: Duration::from_secs(60),
            require_exp: true,
            rfc9068: false,
            tenant_claim: None,
            roles_claim: Some("roles".into()),
            require_binding: false,
        }
    }

    /// Accepts tokens whose `aud` names `audience` (may be called several times; any matches).
    /// With at least one audience, a token without `aud` is refused.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Trusts a fixed set of keys.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(KeySource::Static(Arc::new(keys)));
        self
    }

    /// Trusts the keys of a [`JwksCache`].
    #[cfg(feature = "jwks")]
    pub fn jwks(mut self, jwks: JwksCache) -> Self {
        self.keys = Some(KeySource::Jwks(jwks));
        self
    }

    /// Trusts the keys of a rotating ring (next, current and retired keys).
    #[cfg(feature = "issuer")]
    pub fn rotating(mut self, rotator: Arc<KeyRotator>) -> Self {
        self.keys = Some(KeySource::Rotating(rotator));
        self
    }

    /// Sets the clock-skew leeway for `exp`, `nbf` and `iat` (default 60 s, at most
    /// [`MAX_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accepts tokens without `exp`. Such tokens are valid until their key is removed: use only
    /// for issuers that revoke by other means.
    pub fn allow_missing_exp(mut self) -> Self {
        self.require_exp = false;
        self
    }

    /// Enforces the RFC 9068 access-token profile: `typ` `at+jwt` and the claims `iss`, `exp`,
    /// `aud`, `sub`, `client_id`, `iat` and `jti`.
    pub fn rfc9068(mut self) -> Self {
        self.rfc9068 = true;
        self
    }

    /// Takes the principal's tenant from this claim (a dotted path, e.g. `org.id`).
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = Some(claim.into());
        self
    }

    /// Takes the principal's roles from this claim (a dotted path such as
    /// `realm_access.roles`; default `roles`), an array of strings or a space-separated string.
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = Some(claim.into());
        self
    }

    /// Refuses this issuer's tokens unless they are bound to a client certificate (RFC 8705
    /// `cnf.x5t#S256`). A bound token is accepted only over a connection presenting that
    /// certificate, whether or not this is set.
    pub fn require_certificate_binding(mut self) -> Self {
        self.require_binding = true;
        self
    }

    /// The issuer identifier, if `iss` is checked.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }
}

/// Builds a [`Jwt`].
#[derive(Debug)]
#[must_use]
pub struct JwtBuilder {
    issuers: Vec<Issuer>,
    max_token_len: usize,
    cache_capacity: u64,
    cache_max_ttl: Duration,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl JwtBuilder {
    /// Adds a trusted issuer.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }
    /// Sets the largest accepted token, in bytes (default 8 KiB).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }
    /// Sets the verified-token cache capacity in entries (default 10 000; 0 disables it).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }
    /// Sets the longest a verified token stays cached, whatever its `exp` (default 10 min).
    pub fn cache_max_ttl(mut self, ttl: Duration) -> Self {
        self.cache_max_ttl = ttl;
        self
    }
    /// Replaces the system clock (tests, conformance vectors).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the authenticator.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] when no issuer is configured, an issuer has no keys, two issuers
    /// share an identifier, more than one issuer skips the `iss` check, a leeway exceeds
    /// [`MAX_LEEWAY`], or an RFC 9068 issuer has no identifier or audience.
    pub fn build(self) -> Result<Jwt, BuildError> {
        if self.issuers.is_empty() {
            return Err(BuildError::Invalid(
                "at least one issuer is required".into(),
            ));
        }
        let mut by_iss = HashMap::new();
        let mut any_issuer = None;
        let mut issuers = Vec::with_capacity(self.issuers.len());
        for (i, iss) in self.issuers.into_iter().enumerate() {
            let name = iss.issuer.clone().unwrap_or_else(|| "(any)".into());
            if iss.leeway > MAX_LEEWAY {
                return Err(BuildError::Invalid(format!(
                    "issuer {name}: leeway above {} s",
                    MAX_LEEWAY.as_secs()
                )));
            }
            if iss.rfc9068 && (iss.issuer.is_none() || iss.audiences.is_empty()) {
                return Err(BuildError::Invalid(format!(
                    "issuer {name}: RFC 9068 needs an issuer identifier and an audience"
                )));
            }
            let keys = iss
                .keys
                .clone()
                .ok_or_else(|| BuildError::Invalid(format!("issuer {name}: no keys configured")))?;
            match &iss.issuer {
                Some(id) => {
                    if by_iss.insert(id.clone(), i).is_some() {
                        return Err(BuildError::Invalid(format!("issuer {id} configured twice")));
                    }
                }
                None if any_issuer.is_some() => {
                    return Err(BuildError::Invalid(
                        "at most one issuer may skip the iss check".into(),
                    ));
                }
                None => any_issuer = Some(i),
            }
            issuers.push(IssuerState {
                leeway: i64::try_from(iss.leeway.as_secs()).unwrap_or(300),
                keys,
                config: iss,
            });
        }
        Ok(Jwt {
            inner: Arc::new(Inner {
                issuers,
                by_iss,
                any_issuer,
                cache: (self.cache_capacity > 0)
                    .then(|| TokenCache::new(self.cache_capacity, self.cache_max_ttl)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                max_token_len: self.max_token_len,
            }),
        })
    }
}

struct IssuerState {
    config: Issuer,
    keys: KeySource,
    leeway: i64,
}

struct Inner {
    issuers: Vec<IssuerState>,
    by_iss: HashMap<String, usize>,
    any_issuer: Option<usize>,
    cache: Option<TokenCache>,
    clock: Arc<dyn Clock>,
    max_token_len: usize,
}

/// Verifies JWT access tokens from one or more trusted issuers. Cheap to clone.
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<Inner>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field(
                "issuers",
                &self
                    .inner
                    .issuers
                    .iter()
                    .map(|i| i.config.issuer.as_deref().unwrap_or("(any)"))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Starts configuring a verifier.
    pub fn builder() -> JwtBuilder {
        JwtBuilder {
            issuers: Vec::new(),
            max_token_len: 8 * 1024,
            cache_capacity: 10_000,
            cache_max_ttl: Duration::from_secs(600),
            clock: None,
        }
    }

    /// Answers from the verified-token cache, without verifying: `None` on a miss.
    pub fn verify_cached(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        self.verify_cached_bytes(token.as_bytes())
    }

    /// [`Jwt::verify_cached`] on raw bytes (as presented, before any syntax check: only an exact
    /// match of a verified token can answer).
    pub fn verify_cached_bytes(&self, token: &[u8]) -> Option<Result<Principal, AuthError>> {
        let cache = self.inner.cache.as_ref()?;
        cache
            .get(token, self.inner.clock.now_unix())
            .map(|r| r.map_err(AuthError::InvalidToken))
    }

    /// Verifies a token (from the cache when it was verified before).
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] with the reason the token was refused.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(hit) = self.verify_cached(token) {
            return hit;
        }
        self.verify_uncached(token).await
    }

    /// Drops every cached verification (e.g. after a revocation).
    pub fn clear_cache(&self) {
        if let Some(c) = &self.inner.cache {
            c.clear();
        }
    }

    async fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_len {
            return Err(TokenError::TooLarge.into());
        }
        let compact = jws::parse(token)?;
        let claims = parse_object(&compact.payload).map_err(|e| match e {
            JsonError::Duplicate => TokenError::DuplicateMember,
            JsonError::Invalid => TokenError::Malformed("claims are not a JSON object"),
        })?;
        let issuer = inner.route(&claims)?;
        let keys = issuer.keys.current();
        let key = match compact.verify_with(&keys) {
            Err(TokenError::UnknownKey) => match issuer.keys.refresh_for_unknown_key().await? {
                Some(fresh) => compact.verify_with(&fresh)?,
                None => return Err(TokenError::UnknownKey.into()),
            },
            other => other?,
        };
        let now = inner.clock.now_unix();
        let exp = validate(issuer, &compact.header, &claims, now)?;
        let principal = principal(issuer, &compact.header, &key, claims, exp)?;
        if let Some(cache) = &inner.cache {
            cache.insert(
                token,
                principal.clone(),
                exp.map(|e| e + issuer.leeway),
                key,
                now,
            );
        }
        Ok(principal)
    }
}

impl Inner {
    fn route(&self, claims: &Map<String, Value>) -> Result<&IssuerState, TokenError> {
        let idx = match claims.get("iss") {
            Some(Value::String(iss)) => self.by_iss.get(iss).copied().or(self.any_issuer),
            Some(_) => return Err(TokenError::InvalidClaim("iss")),
            None if self.any_issuer.is_some() => self.any_issuer,
            None => return Err(TokenError::MissingClaim("iss")),
        };
        idx.map(|i| &self.issuers[i])
            .ok_or(TokenError::UnknownIssuer)
    }
}

fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(TokenError::InvalidClaim(name)),
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

/// Checks the time, audience and profile claims; returns `exp`.
fn validate(
    issuer: &IssuerState,
    header: &Header,
    claims: &Map<String, Value>,
    now: i64,
) -> Result<Option<i64>, TokenError> {
    let cfg = &issuer.config;
    let leeway = issuer.leeway;
    let exp = numeric_date(claims, "exp")?;
    match exp {
        Some(exp) if now >= exp.saturating_add(leeway) => return Err(TokenError::Expired),
        None if cfg.require_exp => return Err(TokenError::MissingClaim("exp")),
        _ => {}
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(TokenError::IssuedInFuture);
    }
    if !cfg.audiences.is_empty() {
        let ok = match claims.get("aud") {
            None => return Err(TokenError::MissingClaim("aud")),
            Some(Value::String(a)) => cfg.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => {
                let mut ok = false;
                for a in list {
                    let a = a.as_str().ok_or(TokenError::InvalidClaim("aud"))?;
                    ok |= cfg.audiences.iter().any(|x| x == a);
                }
                ok
            }
            Some(_) => return Err(TokenError::InvalidClaim("aud")),
        };
        if !ok {
            return Err(TokenError::InvalidAudience);
        }
    }
    if cfg.rfc9068 {
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::InvalidType);
        }
        for claim in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
            if !claims.contains_key(claim) {
                return Err(TokenError::MissingClaim(claim));
            }
        }
    }
    Ok(exp)
}

/// A space-separated string or an array of strings (`scope`, `aud`, roles).
pub(crate) fn strings(v: Option<&Value>, name: &'static str) -> Result<Vec<String>, TokenError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_ascii_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or(TokenError::InvalidClaim(name))
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

fn principal(
    issuer: &IssuerState,
    header: &Header,
    key: &VerifyingKey,
    claims: Map<String, Value>,
    exp: Option<i64>,
) -> Result<Principal, TokenError> {
    let cfg = &issuer.config;
    let claims = Claims::new(claims);
    let subject = match (claims.get("sub"), claims.get("client_id")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.clone(),
        (Some(_), _) => return Err(TokenError::InvalidClaim("sub")),
        _ => return Err(TokenError::MissingClaim("sub")),
    };
    let mut scopes = strings(claims.get("scope"), "scope")?;
    if scopes.is_empty() {
        scopes = strings(claims.get("scp"), "scp")?;
    }
    let roles = match &cfg.roles_claim {
        Some(path) => strings(claims.get_path(path), "roles")?,
        None => Vec::new(),
    };
    let mut b = Principal::builder(subject, AuthMethod::Jwt)
        .scopes(scopes)
        .roles(roles);
    if let Some(Value::String(iss)) = claims.get("iss") {
        b = b.issuer(iss.clone());
    }
    if let Some(path) = &cfg.tenant_claim {
        match claims.get_path(path) {
            Some(Value::String(t)) => b = b.tenant(t.clone()),
            Some(Value::Number(n)) => b = b.tenant(n.to_string()),
            _ => {}
        }
    }
    if let Some(kid) = header.kid.as_deref().or(key.kid()) {
        b = b.key_id(kid);
    }
    if let Some(exp) = exp {
        b = b.expires_at(exp);
    }
    let cnf = confirmation(&claims)?;
    match cnf.certificate {
        Some(thumbprint) => b = b.bound_to_certificate(thumbprint),
        None if cfg.require_binding => return Err(TokenError::MissingClaim("cnf")),
        None => {}
    }
    if let Some(jkt) = cnf.dpop_key {
        b = b.bound_to_dpop_key(jkt);
    }
    Ok(b.claims(claims).build())
}

/// The confirmation thumbprints of a token's `cnf` claim: what it is bound to.
#[derive(Debug, Default)]
pub(crate) struct Confirmation {
    /// RFC 8705 `x5t#S256`: the SHA-256 of the client certificate.
    pub(crate) certificate: Option<[u8; 32]>,
    /// RFC 9449 `jkt`: the RFC 7638 SHA-256 thumbprint of the DPoP key.
    pub(crate) dpop_key: Option<[u8; 32]>,
}

/// Reads `cnf` (of a JWT, or of an introspection answer): an object whose `x5t#S256` and `jkt`
/// members, when present, are base64url without padding of exactly 32 bytes.
pub(crate) fn confirmation(claims: &Claims) -> Result<Confirmation, TokenError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(Confirmation::default());
    };
    let cnf = cnf.as_object().ok_or(TokenError::InvalidClaim("cnf"))?;
    let thumbprint = |name: &str| -> Result<Option<[u8; 32]>, TokenError> {
        let Some(v) = cnf.get(name) else {
            return Ok(None);
        };
        let text = v.as_str().ok_or(TokenError::InvalidClaim("cnf"))?;
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
            .map_err(|_| TokenError::InvalidClaim("cnf"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| TokenError::InvalidClaim("cnf"))
    };
    Ok(Confirmation {
        certificate: thumbprint("x5t#S256")?,
        dpop_key: thumbprint("jkt")?,
    })
}

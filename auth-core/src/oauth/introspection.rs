//! [`Introspection`]: an [`Authenticator`] for opaque access tokens, asking the authorization
//! server about each one (OAuth 2.0 Token Introspection, RFC 7662).
//!
//! - Request: `POST token=<t>&token_type_hint=access_token`, authenticated with the resource
//!   server's own [`ClientAuth`], `Accept: application/json`, with a time limit
//!   ([`IntrospectionBuilder::timeout`], 5 s by default) and a 64 KiB limit on the answer.
//! - Answer: `active: false` refuses the token ([`TokenError::Revoked`], or
//!   [`TokenError::Expired`] when the answer's `exp` has passed). An active answer is checked
//!   again: `exp` must not have passed, `nbf` (60 s leeway) must have, `iss` must equal
//!   [`IntrospectionBuilder::issuer`] when one is configured, `aud` must name one of the
//!   [`IntrospectionBuilder::audience`]s when any is configured, and a `token_type` of
//!   `refresh_token` is refused. The principal's subject is `sub`, else `client_id`, else
//!   `username`; scopes come from `scope`; tenant and roles from the configured claims (as in
//!   [`crate::jwt::Issuer`]); `cnf.x5t#S256` (RFC 8705) and `cnf.jkt` (RFC 9449) bind the
//!   token to a client certificate or a DPoP key; the whole answer is kept as the principal's
//!   claims.
//! - Failures of the endpoint (no connection, time-out, 5xx, an answer that is not an RFC 7662
//!   JSON object, an oversized answer) are [`AuthError::Unavailable`] (503), never 401. A 4xx
//!   answer (the server refused *our* client credentials) is a server misconfiguration and
//!   also answers 503, with a `tracing` warning (target `auth::introspection`) that never
//!   contains the token or the secret.
//! - Cache (opt-in, [`IntrospectionBuilder::cache`]): an active answer is reused until the
//!   answer's `exp` or the cache's maximum TTL, whichever comes first, so a token revoked at
//!   the server keeps working for at most that TTL. Refusals (inactive, expired, wrong
//!   audience...) are cached for `min(max_ttl, 30 s)`. Endpoint failures are never cached. The
//!   cache is bounded and works in whole seconds. A cached token is answered by
//!   [`Authenticator::authenticate_cached`]: a keyed hash and a map look-up, no future.
//! - Single-flight: concurrent requests presenting the same token send one introspection
//!   request and all wait for its answer.
//!
//! [`JwtOrOpaque`] puts a [`Jwt`] verifier and an `Introspection` behind one bearer token
//! authenticator: a token shaped like a compact JWS goes to the first, any other to the second.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::oauth::{ClientAuth, Introspection};
//! use auth_core::{Check, Gate};
//! use std::time::Duration;
//!
//! # let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! # let endpoint = format!("http://127.0.0.1:{port}/introspect");
//! // In production: "https://as.example/introspect".
//! let introspection = Introspection::builder(endpoint)
//!     .client_auth(ClientAuth::secret_basic("my-api", "s3cret"))
//!     .audience("https://api.example")
//!     .cache(10_000, Duration::from_secs(60))
//!     .build()
//!     .unwrap();
//! let gate = Gate::builder(introspection).build();
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", "Bearer opaque-token-1".parse().unwrap());
//! // The authorization server cannot be reached: 503 without a challenge, never 401.
//! let err = gate.check_async(&headers).await.unwrap_err();
//! assert_eq!(err.http_status(), 503);
//! assert_eq!(err.www_authenticate(gate.realm()), None);
//! # }
//! ```

use super::client_auth::{ClientAuth, encode_form};
use super::metadata::AuthorizationServer;
use super::{FetchError, check_url, read_limited};
use crate::authenticator::{Authenticator, BoxFuture, OwnedCredentials};
use crate::cache::TokenCache;
use crate::clock::{Clock, SystemClock};
use crate::credentials::Credentials;
use crate::error::{AuthError, BuildError, TokenError};
use crate::jwt::{Jwt, confirmation, strings};
use crate::principal::{AuthMethod, Claims, Principal};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Largest accepted introspection answer.
const MAX_BODY: usize = 64 * 1024;
/// Default time limit of one introspection request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time a refusal is cached.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Leeway on `nbf`, for clock skew with the authorization server.
const NBF_LEEWAY: i64 = 60;
/// Most distinct tokens waiting on an introspection at once; beyond, requests are not shared.
const MAX_FLIGHTS: usize = 4096;

/// What a cache entry answers: the principal, or the reason the token was refused.
type Answer = Result<Principal, TokenError>;
/// One introspection request shared by every concurrent caller presenting the same token.
type Flight = tokio::sync::OnceCell<Result<Principal, AuthError>>;

enum Endpoint {
    Fixed(String),
    Discover {
        issuer: String,
        resolved: tokio::sync::OnceCell<String>,
    },
}

/// How answers become principals.
#[derive(Debug, Clone, Default)]
struct Rules {
    issuer: Option<String>,
    audiences: Vec<String>,
    tenant_claim: Option<String>,
    roles_claim: Option<String>,
}

struct Inner {
    endpoint: Endpoint,
    auth: ClientAuth,
    rules: Rules,
    cache: Option<TokenCache<Answer>>,
    negative_ttl: i64,
    timeout: Duration,
    allow_http: bool,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    flights: Mutex<HashMap<Box<str>, Arc<Flight>>>,
}

/// Verifies opaque bearer tokens by introspection (RFC 7662). Cheap to clone. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Introspection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = match &self.inner.endpoint {
            Endpoint::Fixed(u) => u.as_str(),
            Endpoint::Discover { issuer, .. } => issuer.as_str(),
        };
        f.debug_struct("Introspection")
            .field("endpoint", &endpoint)
            .field("client_auth", &self.inner.auth)
            .field("rules", &self.inner.rules)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Introspection`].
#[must_use]
pub struct IntrospectionBuilder {
    endpoint: Result<Endpoint, String>,
    auth: Option<ClientAuth>,
    rules: Rules,
    cache: Option<(u64, Duration)>,
    timeout: Duration,
    allow_http: bool,
    http: Option<reqwest::Client>,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for IntrospectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionBuilder")
            .field("client_auth", &self.auth)
            .field("rules", &self.rules)
            .field("cache", &self.cache)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Introspection {
    fn builder_with(endpoint: Result<Endpoint, String>) -> IntrospectionBuilder {
        IntrospectionBuilder {
            endpoint,
            auth: None,
            rules: Rules {
                roles_claim: Some("roles".into()),
                ..Rules::default()
            },
            cache: None,
            timeout: DEFAULT_TIMEOUT,
            allow_http: false,
            http: None,
            clock: None,
        }
    }

    /// Introspects at `endpoint_url`.
    pub fn builder(endpoint_url: impl Into<String>) -> IntrospectionBuilder {
        Self::builder_with(Ok(Endpoint::Fixed(endpoint_url.into())))
    }

    /// Introspects at the `introspection_endpoint` of `issuer_url`'s metadata
    /// ([`AuthorizationServer::discover`]). The metadata is fetched on the first request that
    /// needs it (not by `build`, which stays synchronous); a failed fetch answers that request
    /// with 503 and is tried again by the next one; once found, the endpoint is kept.
    pub fn discover(issuer_url: impl Into<String>) -> IntrospectionBuilder {
        Self::builder_with(Ok(Endpoint::Discover {
            issuer: issuer_url.into(),
            resolved: tokio::sync::OnceCell::new(),
        }))
    }

    /// Introspects at the `introspection_endpoint` of metadata already fetched.
    pub fn from_metadata(metadata: &AuthorizationServer) -> IntrospectionBuilder {
        Self::builder_with(
            metadata
                .introspection_endpoint
                .clone()
                .map(Endpoint::Fixed)
                .ok_or_else(|| "the metadata names no introspection_endpoint".to_owned()),
        )
    }

    /// Checks `token` (from the cache when it can).
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidToken`] when the server or the checks refuse the token,
    /// [`AuthError::Unavailable`] when the server cannot answer.
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(hit) = self.cached(token.as_bytes()) {
            return hit;
        }
        let flight = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(token) {
                Some(f) => Some(f.clone()),
                None => {
                    // A flight that just finished filled the cache before leaving the map.
                    if let Some(hit) = self.cached(token.as_bytes()) {
                        return hit;
                    }
                    (flights.len() < MAX_FLIGHTS).then(|| {
                        let f = Arc::new(Flight::new());
                        flights.insert(token.into(), f.clone());
                        f
                    })
                }
            }
        };
        let Some(flight) = flight else {
            return self.introspect_uncached(token).await;
        };
        let guard = FlightGuard {
            flights: &self.inner.flights,
            token,
            flight,
        };
        guard
            .flight
            .get_or_init(|| self.introspect_uncached(token))
            .await
            .clone()
    }

    /// Drops every cached answer (e.g. after revoking tokens).
    pub fn clear_cache(&self) {
        if let Some(c) = &self.inner.cache {
            c.clear();
        }
    }

    fn cached(&self, token: &[u8]) -> Option<Result<Principal, AuthError>> {
        let cache = self.inner.cache.as_ref()?;
        match cache.get(token, self.inner.clock.now_unix())? {
            Ok(Ok(p)) => Some(Ok(p)),
            Ok(Err(e)) | Err(e) => Some(Err(AuthError::InvalidToken(e))),
        }
    }

    async fn endpoint(&self) -> Result<&str, AuthError> {
        match &self.inner.endpoint {
            Endpoint::Fixed(u) => Ok(u),
            Endpoint::Discover { issuer, resolved } => resolved
                .get_or_try_init(|| async {
                    let found = if self.inner.allow_http {
                        AuthorizationServer::discover_dangerous_allow_http(issuer, &self.inner.http)
                            .await
                    } else {
                        AuthorizationServer::discover(issuer, &self.inner.http).await
                    };
                    let md = found.map_err(|e| {
                        tracing::warn!(target: "auth::introspection", error = %e, "discovery of the introspection endpoint failed");
                        AuthError::Unavailable("the authorization server's metadata could not be fetched")
                    })?;
                    md.introspection_endpoint.ok_or_else(|| {
                        tracing::warn!(target: "auth::introspection", issuer = %issuer, "the metadata names no introspection_endpoint");
                        AuthError::Unavailable("the authorization server offers no introspection")
                    })
                })
                .await
                .map(String::as_str),
        }
    }

    /// One request to the endpoint; caches the result.
    async fn introspect_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
        let endpoint = self.endpoint().await?;
        let answer = self.request(endpoint, token).await?;
        let now = inner.clock.now_unix();
        let result = evaluate(&answer, &inner.rules, now).map_err(|malformed| {
            tracing::warn!(target: "auth::introspection", problem = malformed, "malformed introspection answer");
            AuthError::Unavailable("the introspection endpoint answered garbage")
        })?;
        if let Some(cache) = &inner.cache {
            match &result {
                Ok(p) => {
                    let deadline = p.expires_at().unwrap_or(i64::MAX);
                    cache.insert_until(token, Ok(p.clone()), deadline, now);
                }
                Err(e) => {
                    let deadline = now.saturating_add(inner.negative_ttl);
                    cache.insert_until(token, Err(e.clone()), deadline, now);
                }
            }
        }
        result.map_err(AuthError::InvalidToken)
    }

    async fn request(&self, endpoint: &str, token: &str) -> Result<Map<String, Value>, AuthError> {
        let inner = &*self.inner;
        let mut form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let req = inner
            .http
            .post(endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(inner.timeout);
        let req = inner.auth.apply(req, &mut form, endpoint).map_err(|e| {
            tracing::warn!(target: "auth::introspection", error = %e, "client authentication could not be prepared");
            AuthError::Unavailable("the introspection request could not be prepared")
        })?;
        let resp = req
            .body(encode_form(&form))
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(target: "auth::introspection", error = %FetchError::from(e), "introspection request failed");
                AuthError::Unavailable("the introspection endpoint could not be reached")
            })?;
        let status = resp.status();
        if status.is_client_error() {
            tracing::warn!(
                target: "auth::introspection",
                %status,
                client_id = inner.auth.client_id(),
                "the introspection endpoint refused this server's request (check the client credentials)"
            );
            return Err(AuthError::Unavailable(
                "the introspection endpoint refused this server's request",
            ));
        }
        if !status.is_success() {
            tracing::warn!(target: "auth::introspection", %status, "introspection endpoint failed");
            return Err(AuthError::Unavailable("the introspection endpoint failed"));
        }
        let body = read_limited(resp, MAX_BODY).await.map_err(|e| {
            tracing::warn!(target: "auth::introspection", error = %e, "introspection answer unreadable");
            AuthError::Unavailable("the introspection answer could not be read")
        })?;
        match serde_json::from_slice(&body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => {
                tracing::warn!(target: "auth::introspection", "introspection answer is not a JSON object");
                Err(AuthError::Unavailable(
                    "the introspection endpoint answered garbage",
                ))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes a flight out of the map when its last waiter leaves, whether it finished or was
/// cancelled (a cancelled flight's cell is still empty: the next caller starts a new request).
struct FlightGuard<'a> {
    flights: &'a Mutex<HashMap<Box<str>, Arc<Flight>>>,
    token: &'a str,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = lock(self.flights);
        let ours = flights
            .get(self.token)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight));
        // Waiters only join under this lock, so the count is stable: 2 is the map and us.
        if ours && (self.flight.initialized() || Arc::strong_count(&self.flight) <= 2) {
            flights.remove(self.token);
        }
    }
}

impl IntrospectionBuilder {
    /// How this resource server authenticates to the endpoint (required: RFC 7662 section 2.1).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }
    /// Requires the answer's `iss` to equal `issuer` (an answer without `iss` is refused).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuer = Some(issuer.into());
        self
    }
    /// Accepts tokens whose `aud` names `audience` (may be called several times; any matches).
    /// With at least one audience, an answer without `aud` is refused; with none, `aud` is not
    /// checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audiences.push(audience.into());
        self
    }
    /// Caches answers: at most `capacity` tokens, each for at most `max_ttl` (whole seconds,
    /// at least 1 s). Off by default: every request introspects.
    pub fn cache(mut self, capacity: u64, max_ttl: Duration) -> Self {
        self.cache = Some((capacity, max_ttl));
        self
    }
    /// Time limit of one introspection request, connection and answer included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Allows plain `http://` endpoints on hosts other than loopback. Tokens and client
    /// secrets then cross the network in clear: only for closed networks.
    pub fn dangerous_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }
    /// Uses `client` for requests (its own time-outs apply too; redirects should be off).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }
    /// Reads the tenant from this claim (a dotted path; strings and numbers).
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.rules.tenant_claim = Some(claim.into());
        self
    }
    /// Reads the roles from this claim (a dotted path; default `roles`).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.rules.roles_claim = Some(claim.into());
        self
    }
    /// Replaces the system clock (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Finishes the authenticator. No request is made here (see
    /// [`Introspection::discover`]).
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] without [`client_auth`](Self::client_auth), for an endpoint or
    /// issuer URL that is not `https://` (or `http://` on loopback), a zero time-out, or a
    /// cache with no capacity or a maximum TTL under one second; [`BuildError::HttpClient`]
    /// when the HTTP client cannot be built.
    pub fn build(self) -> Result<Introspection, BuildError> {
        let endpoint = self.endpoint.map_err(BuildError::Invalid)?;
        let auth = self.auth.ok_or_else(|| {
            BuildError::Invalid("introspection needs client authentication (client_auth)".into())
        })?;
        let url = match &endpoint {
            Endpoint::Fixed(u) | Endpoint::Discover { issuer: u, .. } => u,
        };
        check_url(url, self.allow_http)
            .map_err(|e| BuildError::Invalid(format!("introspection URL `{url}`: {e}")))?;
        if self.timeout.is_zero() {
            return Err(BuildError::Invalid("introspection timeout is zero".into()));
        }
        let cache = match self.cache {
            None => None,
            Some((capacity, max_ttl)) => {
                if capacity == 0 || max_ttl < Duration::from_secs(1) {
                    return Err(BuildError::Invalid(
                        "introspection cache: capacity 0 or max_ttl under 1 s".into(),
                    ));
                }
                Some((TokenCache::new(capacity, max_ttl), max_ttl))
            }
        };
        let negative_ttl = cache
            .as_ref()
            .map_or(0, |(_, ttl)| (*ttl).min(MAX_NEGATIVE_TTL).as_secs());
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("auth-core/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| BuildError::HttpClient(e.to_string()))?,
        };
        Ok(Introspection {
            inner: Arc::new(Inner {
                endpoint,
                auth,
                rules: self.rules,
                cache: cache.map(|(c, _)| c),
                negative_ttl: i64::try_from(negative_ttl).unwrap_or(i64::MAX),
                timeout: self.timeout,
                allow_http: self.allow_http,
                http,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                flights: Mutex::default(),
            }),
        })
    }
}

impl Authenticator for Introspection {
    fn method(&self) -> AuthMethod {
        AuthMethod::Introspection
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        self.cached(credentials.bearer_unchecked()?)
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        let this = self.clone();
        Box::pin(async move {
            match credentials.bearer {
                Some(token) => this.introspect(&token).await,
                None => Err(AuthError::MissingCredentials),
            }
        })
    }
}

/// Turns an introspection answer into a principal or the reason the token is refused;
/// `Err(problem)` when the answer is not an RFC 7662 answer at all.
fn evaluate(
    answer: &Map<String, Value>,
    rules: &Rules,
    now: i64,
) -> Result<Result<Principal, TokenError>, &'static str> {
    let active = match answer.get("active") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`active` is not a boolean"),
        None => return Err("`active` is missing"),
    };
    let exp = match answer.get("exp") {
        None | Some(Value::Null) => None,
        Some(v) => match number(v) {
            Some(n) => Some(n),
            None => return Ok(Err(TokenError::InvalidClaim("exp"))),
        },
    };
    if !active {
        return Ok(Err(if exp.is_some_and(|e| now >= e) {
            TokenError::Expired
        } else {
            TokenError::Revoked
        }));
    }
    Ok(principal(answer, rules, exp, now))
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

fn principal(
    answer: &Map<String, Value>,
    rules: &Rules,
    exp: Option<i64>,
    now: i64,
) -> Result<Principal, TokenError> {
    if exp.is_some_and(|e| now >= e) {
        return Err(TokenError::Expired);
    }
    match answer.get("nbf") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let nbf = number(v).ok_or(TokenError::InvalidClaim("nbf"))?;
            if nbf > now.saturating_add(NBF_LEEWAY) {
                return Err(TokenError::NotYetValid);
            }
        }
    }
    if let Some(Value::String(t)) = answer.get("token_type")
        && t.eq_ignore_ascii_case("refresh_token")
    {
        return Err(TokenError::InvalidType);
    }
    let iss = match answer.get("iss") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(TokenError::InvalidClaim("iss")),
    };
    if let Some(expected) = &rules.issuer
        && iss != Some(expected.as_str())
    {
        return Err(TokenError::UnknownIssuer);
    }
    if !rules.audiences.is_empty() {
        let names = strings(answer.get("aud"), "aud")?;
        if !names.iter().any(|a| rules.audiences.contains(a)) {
            return Err(TokenError::InvalidAudience);
        }
    }
    let subject = ["sub", "client_id", "username"]
        .iter()
        .find_map(|name| match answer.get(*name) {
            Some(Value::String(s)) if !s.is_empty() => Some(Ok(s.clone())),
            None | Some(Value::Null | Value::String(_)) => None,
            Some(_) => Some(Err(TokenError::InvalidClaim(name))),
        })
        .unwrap_or(Err(TokenError::MissingClaim("sub")))?;
    let claims = Claims::new(answer.clone());
    let scopes = strings(claims.get("scope"), "scope")?;
    let roles = match &rules.roles_claim {
        Some(path) => strings(claims.get_path(path), "roles")?,
        None => Vec::new(),
    };
    let mut b = Principal::builder(subject, AuthMethod::Introspection)
        .scopes(scopes)
        .roles(roles);
    if let Some(iss) = iss {
        b = b.issuer(iss);
    }
    if let Some(path) = &rules.tenant_claim {
        match claims.get_path(path) {
            Some(Value::String(t)) => b = b.tenant(t.clone()),
            Some(Value::Number(n)) => b = b.tenant(n.to_string()),
            _ => {}
        }
    }
    if let Some(exp) = exp {
        b = b.expires_at(exp);
    }
    let cnf = confirmation(&claims)?;
    if let Some(x5t) = cnf.certificate {
        b = b.bound_to_certificate(x5t);
    }
    if let Some(jkt) = cnf.dpop_key {
        b = b.bound_to_dpop_key(jkt);
    }
    Ok(b.claims(claims).build())
}

/// Bearer tokens of both kinds: a token shaped like a compact JWS (exactly two dots) is
/// verified locally by the [`Jwt`], any other is introspected. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), auth_core::BuildError> {
/// use auth_core::jwks::JwksCache;
/// use auth_core::jwt::{Issuer, Jwt};
/// use auth_core::oauth::{ClientAuth, Introspection, JwtOrOpaque};
///
/// let jwks = JwksCache::builder("https://as.example/jwks.json").build()?;
/// let jwt = Jwt::builder().issuer(Issuer::new("https://as.example").jwks(jwks)).build()?;
/// let opaque = Introspection::builder("https://as.example/introspect")
///     .client_auth(ClientAuth::secret_basic("my-api", "s3cret"))
///     .build()?;
/// let gate = auth_core::Gate::builder(JwtOrOpaque::new(jwt, opaque)).build();
/// # drop(gate); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct JwtOrOpaque {
    jwt: Jwt,
    opaque: Introspection,
}

impl JwtOrOpaque {
    /// JWTs to `jwt`, other bearer tokens to `opaque`.
    pub fn new(jwt: Jwt, opaque: Introspection) -> Self {
        Self { jwt, opaque }
    }

    /// Whether `token` has the shape of a compact JWS (exactly two dots).
    pub fn looks_like_jwt(token: &[u8]) -> bool {
        token.iter().filter(|b| **b == b'.').count() == 2
    }
}

impl Authenticator for JwtOrOpaque {
    fn method(&self) -> AuthMethod {
        AuthMethod::Jwt
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        if Self::looks_like_jwt(credentials.bearer_unchecked()?) {
            self.jwt.authenticate_cached(credentials)
        } else {
            self.opaque.authenticate_cached(credentials)
        }
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        match &credentials.bearer {
            Some(t) if Self::looks_like_jwt(t.as_bytes()) => self.jwt.authenticate(credentials),
            _ => self.opaque.authenticate(credentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn eval(answer: Value, rules: &Rules) -> Result<Result<Principal, TokenError>, &'static str> {
        let Value::Object(map) = answer else {
            panic!("not an object")
        };
        evaluate(&map, rules, NOW)
    }

    fn rules() -> Rules {
        Rules {
            roles_claim: Some("roles".into()),
            ..Rules::default()
        }
    }

    #[test]
    fn active_answer_becomes_a_principal() {
        let thumb = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let r = Rules {
            issuer: Some("https://as.example".into()),
            audiences: vec!["api".into()],
            tenant_claim: Some("ext.org".into()),
            roles_claim: Some("roles".into()),
        };
        let p = eval(
            json!({"active": true, "sub": "alice", "client_id": "app", "scope": "read  write",
                   "iss": "https://as.example", "aud": ["other", "api"], "exp": NOW + 60,
                   "ext": {"org": 42}, "roles": ["admin"], "cnf": {"x5t#S256": thumb}}),
            &r,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.subject(), "alice");
        assert_eq!(p.method(), AuthMethod::Introspection);
        assert_eq!(p.scopes(), ["read", "write"]);
        assert_eq!(p.tenant(), Some("42"));
        assert!(p.has_role("admin"));
        assert_eq!(p.expires_at(), Some(NOW + 60));
        assert_eq!(p.issuer(), Some("https://as.example"));
        assert_eq!(p.certificate_binding(), Some(&[7u8; 32]));
        assert_eq!(p.claims().get("client_id"), Some(&json!("app")));
    }

    #[test]
    fn subject_falls_back_to_client_id_then_username() {
        let p = eval(json!({"active": true, "client_id": "svc"}), &rules());
        assert_eq!(p.unwrap().unwrap().subject(), "svc");
        let p = eval(
            json!({"active": true, "sub": "", "username": "bob"}),
            &rules(),
        );
        assert_eq!(p.unwrap().unwrap().subject(), "bob");
        let p = eval(json!({"active": true, "scope": "x"}), &rules());
        assert_eq!(p.unwrap().unwrap_err(), TokenError::MissingClaim("sub"));
        let p = eval(json!({"active": true, "sub": 5}), &rules());
        assert_eq!(p.unwrap().unwrap_err(), TokenError::InvalidClaim("sub"));
    }

    #[test]
    fn refusals() {
        let r = rules();
        let e = |v: Value, r: &Rules| eval(v, r).unwrap().unwrap_err();
        assert_eq!(e(json!({"active": false}), &r), TokenError::Revoked);
        assert_eq!(
            e(json!({"active": false, "exp": NOW - 1}), &r),
            TokenError::Expired
        );
        // The server says active, but `exp` has passed by our clock.
        assert_eq!(
            e(json!({"active": true, "sub": "a", "exp": NOW}), &r),
            TokenError::Expired
        );
        assert_eq!(
            e(json!({"active": true, "sub": "a", "nbf": NOW + 61}), &r),
            TokenError::NotYetValid
        );
        assert!(
            eval(json!({"active": true, "sub": "a", "nbf": NOW + 30}), &r)
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            e(
                json!({"active": true, "sub": "a", "token_type": "refresh_token"}),
                &r
            ),
            TokenError::InvalidType
        );
        assert_eq!(
            e(json!({"active": true, "sub": "a", "exp": "soon"}), &r),
            TokenError::InvalidClaim("exp")
        );
        assert_eq!(
            e(json!({"active": true, "sub": "a", "scope": 3}), &r),
            TokenError::InvalidClaim("scope")
        );
        assert_eq!(
            e(
                json!({"active": true, "sub": "a", "cnf": {"x5t#S256": "c2hvcnQ"}}),
                &r
            ),
            TokenError::InvalidClaim("cnf")
        );
    }

    #[test]
    fn issuer_and_audience_only_when_configured() {
        let open = rules();
        let ok = json!({"active": true, "sub": "a", "iss": "https://evil.example", "aud": "x"});
        assert!(eval(ok.clone(), &open).unwrap().is_ok());

        let strict = Rules {
            issuer: Some("https://as.example".into()),
            ..rules()
        };
        assert_eq!(
            eval(ok, &strict).unwrap().unwrap_err(),
            TokenError::UnknownIssuer
        );
        let no_iss = json!({"active": true, "sub": "a"});
        assert_eq!(
            eval(no_iss.clone(), &strict).unwrap().unwrap_err(),
            TokenError::UnknownIssuer
        );

        let aud = Rules {
            audiences: vec!["api".into()],
            ..rules()
        };
        assert_eq!(
            eval(no_iss, &aud).unwrap().unwrap_err(),
            TokenError::InvalidAudience
        );
        let other = json!({"active": true, "sub": "a", "aud": ["x", "y"]});
        assert_eq!(
            eval(other, &aud).unwrap().unwrap_err(),
            TokenError::InvalidAudience
        );
        assert!(
            eval(json!({"active": true, "sub": "a", "aud": "api"}), &aud)
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn malformed_answers_are_not_refusals() {
        assert!(eval(json!({}), &rules()).is_err());
        assert!(eval(json!({"active": "true", "sub": "a"}), &rules()).is_err());
        assert!(eval(json!({"active": 1}), &rules()).is_err());
    }

    #[test]
    fn jws_shape() {
        assert!(JwtOrOpaque::looks_like_jwt(b"a.b.c"));
        assert!(JwtOrOpaque::looks_like_jwt(b".."));
        assert!(!JwtOrOpaque::looks_like_jwt(b"a.b.c.d.e"));
        assert!(!JwtOrOpaque::looks_like_jwt(b"opaque-token_xyz"));
    }

    #[tokio::test]
    async fn builder_checks() {
        let auth = || ClientAuth::secret_basic("rs", "secret");
        assert!(
            Introspection::builder("https://as.example/i")
                .build()
                .is_err()
        );
        assert!(
            Introspection::builder("http://as.example/i")
                .client_auth(auth())
                .build()
                .is_err()
        );
        assert!(
            Introspection::builder("http://as.example/i")
                .client_auth(auth())
                .dangerous_allow_http()
                .build()
                .is_ok()
        );
        assert!(
            Introspection::builder("https://as.example/i")
                .client_auth(auth())
                .cache(10, Duration::from_millis(500))
                .build()
                .is_err()
        );
        let md = AuthorizationServer {
            issuer: "https://as.example".into(),
            token_endpoint: None,
            introspection_endpoint: None,
            revocation_endpoint: None,
            jwks_uri: None,
        };
        assert!(
            Introspection::from_metadata(&md)
                .client_auth(auth())
                .build()
                .is_err()
        );
        let i = Introspection::builder("https://as.example/i")
            .client_auth(auth())
            .build()
            .unwrap();
        assert!(!format!("{i:?}").contains("secret\""));
        assert!(!format!("{i:?}").contains("\"secret"));
    }

    /// A one-route HTTP/1.1 server answering every request with `status` and `body`.
    async fn canned(status: u16, body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn endpoint_failures_are_unavailable() {
        let cases: [(u16, Vec<u8>); 5] = [
            (200, b"<html>not json</html>".to_vec()),
            (200, b"[true]".to_vec()),
            (200, b"{\"scope\": \"read\"}".to_vec()),
            (500, b"{\"active\": true, \"sub\": \"a\"}".to_vec()),
            (200, {
                let mut big = br#"{"active": true, "sub": "a", "pad": ""#.to_vec();
                big.resize(70 * 1024, b'x');
                big.extend_from_slice(b"\"}");
                big
            }),
        ];
        for (status, body) in cases {
            let (url, task) = canned(status, body).await;
            let i = Introspection::builder(url)
                .client_auth(ClientAuth::secret_post("rs", "secret"))
                .cache(10, Duration::from_secs(60))
                .build()
                .unwrap();
            let e = i.introspect("tok").await.unwrap_err();
            assert_eq!(e.http_status(), 503, "status {status}");
            // Failures are not cached.
            assert!(i.cached(b"tok").is_none());
            task.abort();
        }
        let (url, task) = canned(200, br#"{"active": true, "sub": "a"}"#.to_vec()).await;
        let i = Introspection::builder(url)
            .client_auth(ClientAuth::secret_post("rs", "secret"))
            .build()
            .unwrap();
        assert_eq!(i.introspect("tok").await.unwrap().subject(), "a");
        task.abort();
    }

    #[tokio::test]
    async fn cancelled_flight_leaves_no_entry() {
        // A server that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let i = Introspection::builder(url)
            .client_auth(ClientAuth::secret_basic("rs", "secret"))
            .build()
            .unwrap();
        let first = i.introspect("tok");
        let second = i.introspect("tok");
        let both = async { tokio::join!(first, second) };
        // Cancel both waiters; the shared flight must not stay behind.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), both)
                .await
                .is_err()
        );
        assert!(lock(&i.inner.flights).is_empty());
        hold.abort();
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_unavailable() {
        // Port 9 on loopback (discard) is closed in test environments.
        let i = Introspection::builder("http://127.0.0.1:9/introspect")
            .client_auth(ClientAuth::secret_basic("rs", "secret"))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let e = i.introspect("opaque").await.unwrap_err();
        assert_eq!(e.http_status(), 503);
    }
}

//! [`ClientCredentials`]: access tokens for outgoing calls, obtained with the OAuth 2.0 client
//! credentials grant (RFC 6749 section 4.4) and kept fresh.
//!
//! - [`ClientCredentials::token`] answers the held token while it is fresh: one lock-free
//!   snapshot load and an `Arc` clone, no lock and no allocation. When there is no token, or it
//!   has expired, it fetches one; concurrent callers share that one request (single-flight:
//!   never two requests to the token endpoint at once).
//! - [`ClientCredentials::spawn_refresh`] starts a background task that refreshes the token
//!   ahead of its expiry (see [`ClientCredentialsBuilder::refresh_ahead`]), so callers never
//!   wait on the network after the first token. It uses the `refresh_token` grant when the
//!   server issued a refresh token, and falls back to the client credentials grant when the
//!   refresh token is refused. The task ends when the last handle of the source is dropped.
//! - A failed request is retried with exponential backoff and jitter
//!   ([`ClientCredentialsBuilder::min_backoff`]..[`ClientCredentialsBuilder::max_backoff`]);
//!   the held token keeps being answered while it is valid. Once it has expired and the
//!   endpoint still fails, [`ClientCredentials::token`] answers
//!   [`TokenSourceError::Unavailable`] at once (never a hang: every request has a
//!   [timeout](ClientCredentialsBuilder::timeout), and no caller waits out a backoff).
//! - [`ClientCredentials::current`] is a non-blocking snapshot for synchronous callers (a tonic
//!   interceptor): the held token if it has not expired.
//! - Answers are parsed strictly (RFC 6749 section 5.1 and 5.2) with a size limit; error texts
//!   never contain a token, a refresh token or a client secret, and [`AccessToken`]'s `Debug`
//!   output is redacted.
//! - With [`ClientCredentialsBuilder::dpop`] the source obtains DPoP-bound tokens (RFC 9449
//!   section 5): every token request carries a `DPoP` proof made with the client's key, a
//!   server's `use_dpop_nonce` refusal is retried once with the nonce it sent, and the latest
//!   `DPoP-Nonce` is remembered for later requests (section 8). Such a source accepts only
//!   `token_type: DPoP` answers; [`ClientCredentials::dpop_key`] hands the key to whoever sends
//!   the token (auth-tower's `ClientCredentialsLayer` makes a proof per request).
//!
//! One source serves one set of token parameters (scope, resources, audience). A client that
//! calls several APIs needing different tokens builds one source per target; the sources can
//! share one HTTP client ([`ClientCredentialsBuilder::http_client`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::oauth::{ClientAuth, ClientCredentials};
//! use std::time::Duration;
//!
//! let source = ClientCredentials::builder(
//!     "https://as.example/token",
//!     ClientAuth::secret_basic("billing-client", "s3cret"),
//! )
//! .scope("invoices:read invoices:write")
//! .resource("https://billing.example/")
//! .refresh_ahead(Duration::from_secs(60))
//! .build()?;
//! let _refresh = source.spawn_refresh()?;
//!
//! let token = source.token().await?;
//! let response = reqwest::Client::new()
//!     .get("https://billing.example/invoices")
//!     .bearer_auth(token.secret())
//!     .send()
//!     .await?;
//! # drop(response); Ok(()) }
//! ```

use crate::credentials::Credentials;
use crate::dpop::DpopKey;
use crate::error::BuildError;
use crate::oauth::client_auth::{ClientAuth, encode_form};
use crate::oauth::metadata::AuthorizationServer;
use arc_swap::ArcSwapOption;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

/// Default time limit of one token request, connection included.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default first retry delay after a failed request.
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Default longest retry delay.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default lifetime of a token whose answer has no `expires_in`.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(300);
/// Default largest accepted answer body.
const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Lifetimes longer than this (one year) are capped.
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest accepted access token or refresh token (the suite's header limit is 16 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024 - 16;
/// Longest `error_description` kept from an error answer.
const MAX_DESCRIPTION_LEN: usize = 256;
/// Longest `DPoP-Nonce` kept from an answer.
const MAX_NONCE_LEN: usize = 512;

/// The `token_type` of an access token (RFC 6749 section 7.1), matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449): the token is bound to the client's key and must be sent with a
    /// DPoP proof for each request. A server issues such tokens only to clients that send
    /// proofs: sources built with [`ClientCredentialsBuilder::dpop`].
    DPoP,
}

impl TokenType {
    /// The scheme as written in an `Authorization` header (`Bearer`, `DPoP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An access token obtained from the token endpoint. Cheap to clone (one `Arc`); its `Debug`
/// output never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    data: Arc<TokenData>,
}

struct TokenData {
    secret: String,
    token_type: TokenType,
    expires_at: Instant,
    expires_at_utc: SystemTime,
    lifetime: Duration,
    scope: Option<String>,
}

impl AccessToken {
    /// The token itself, to send as a credential. Keep it out of logs.
    pub fn secret(&self) -> &str {
        &self.data.secret
    }

    /// The token type the server named.
    pub fn token_type(&self) -> TokenType {
        self.data.token_type
    }

    /// When the token expires (measured from the moment its request was sent, so slightly
    /// before the server's own expiry).
    pub fn expires_at(&self) -> Instant {
        self.data.expires_at
    }

    /// [`Self::expires_at`] as wall-clock time.
    pub fn expires_at_utc(&self) -> SystemTime {
        self.data.expires_at_utc
    }

    /// The lifetime the server granted (`expires_in`, or the configured default when the answer
    /// had none).
    pub fn lifetime(&self) -> Duration {
        self.data.lifetime
    }

    /// Time left before expiry (zero once expired).
    pub fn expires_in(&self) -> Duration {
        self.data
            .expires_at
            .saturating_duration_since(Instant::now())
    }

    /// Whether the token has expired.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.data.expires_at
    }

    /// The granted scope: the answer's `scope`, or the requested scope when the answer has none
    /// (RFC 6749 section 5.1: the server omits it when it granted what was asked).
    pub fn scope(&self) -> Option<&str> {
        self.data.scope.as_deref()
    }

    /// The `Authorization` header value, `<token_type> <token>` (e.g. `Bearer eyJ...`). Keep it
    /// out of logs.
    pub fn authorization(&self) -> String {
        format!("{} {}", self.data.token_type.as_str(), self.data.secret)
    }

    /// Whether `self` and `other` are the same token (the same answer of the token endpoint).
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("token_type", &self.data.token_type)
            .field("expires_in", &self.expires_in())
            .field("scope", &self.data.scope)
            .finish()
    }
}

/// An RFC 6749 section 5.2 error answer of the token endpoint. The code and description are
/// kept only when they use the characters the RFC allows, and the description is truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    status: u16,
    code: String,
    description: Option<String>,
}

impl ErrorResponse {
    /// The HTTP status of the answer (400 or 401 for conforming servers).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `error` code, e.g. `invalid_client`, `invalid_scope`, `invalid_grant`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The `error_description`, if the server sent a well-formed one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (HTTP {})", self.code, self.status)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Why one request to the token endpoint failed. The texts never contain a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request could not be sent or its answer not read (connection refused, TLS, DNS...).
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    /// No complete answer within the configured timeout.
    #[error("token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the request with an RFC 6749 error (bad client credentials, a scope
    /// or resource it does not grant...): a configuration problem, not a transient one.
    #[error("token endpoint refused the request: {0}")]
    Refused(ErrorResponse),
    /// An unsuccessful HTTP status without an RFC 6749 error body (e.g. 503).
    #[error("token endpoint answered HTTP {0}")]
    Status(u16),
    /// The answer body exceeded the configured limit.
    #[error("token endpoint answer larger than {0} bytes")]
    TooLarge(usize),
    /// A successful status with a body that is not a valid token answer.
    #[error("invalid token endpoint answer: {0}")]
    InvalidResponse(&'static str),
    /// The client's authentication could not be prepared (a `private_key_jwt` assertion that
    /// cannot be signed).
    #[error("client authentication: {0}")]
    ClientAuth(String),
    /// The DPoP proof of the request could not be made (signing failed, no randomness).
    #[error("DPoP proof: {0}")]
    DpopProof(String),
    /// A source configured with a DPoP key ([`ClientCredentialsBuilder::dpop`]) received a
    /// token of another type: the server ignored the proof and issued an unbound token. It is
    /// refused rather than sent as a bearer token the client meant to be bound.
    #[error(
        "the token endpoint issued a `{0}` token to a DPoP client (it ignored the DPoP proof); refused"
    )]
    NotDpopBound(TokenType),
}

impl FetchError {
    /// Whether the server refused the request (an RFC 6749 error answer), as opposed to being
    /// unreachable or answering garbage.
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    /// The RFC 6749 `error` code of a refusal.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Refused(e) => Some(e.code()),
            _ => None,
        }
    }
}

/// Why [`ClientCredentials::token`] has no token to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenSourceError {
    /// No valid token is held and the token endpoint did not give one: `attempts` requests in a
    /// row failed (the last with `last_error`). Further attempts follow the backoff; the source
    /// recovers by itself once the endpoint answers again.
    #[error(
        "no access token available: {attempts} failed request(s) in a row to the token endpoint; last: {last_error}"
    )]
    Unavailable {
        /// Consecutive failed requests since the last success.
        attempts: u32,
        /// The last failure.
        last_error: FetchError,
    },
}

impl TokenSourceError {
    /// Consecutive failed requests to the token endpoint since the last success.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Unavailable { attempts, .. } => *attempts,
        }
    }

    /// The last failure of the token endpoint.
    pub fn last_error(&self) -> &FetchError {
        match self {
            Self::Unavailable { last_error, .. } => last_error,
        }
    }
}

/// Builds a [`ClientCredentials`] source.
#[must_use]
pub struct ClientCredentialsBuilder {
    /// `None` when built from metadata that names no token endpoint.
    endpoint: Option<String>,
    auth: ClientAuth,
    assertion_audience: Option<String>,
    scope: Option<String>,
    resources: Vec<String>,
    audience: Option<String>,
    config: Config,
    client: Option<reqwest::Client>,
    allow_http: bool,
    dpop: Option<Arc<DpopKey>>,
}

#[derive(Debug, Clone)]
struct Config {
    refresh_ahead: Option<Duration>,
    timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    default_expires_in: Duration,
    max_body: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            refresh_ahead: None,
            timeout: DEFAULT_TIMEOUT,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            default_expires_in: DEFAULT_EXPIRES_IN,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("auth", &self.auth)
            .field("scope", &self.scope)
            .field("resources", &self.resources)
            .field("audience", &self.audience)
            .field("config", &self.config)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsBuilder {
    /// The `scope` to request (space-separated scope tokens). Without it the server grants its
    /// default scope for the client.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Adds an RFC 8707 `resource` indicator (an absolute URI without fragment) naming the API
    /// the token is for; may be called several times.
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resources.push(uri.into());
        self
    }

    /// The non-standard `audience` parameter some servers (e.g. Auth0) use instead of
    /// `resource`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The `aud` of `private_key_jwt` client assertions (default: the token endpoint URL; some
    /// servers want their issuer identifier).
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// How long before expiry the token is refreshed. At most half the token's lifetime is used
    /// (a longer setting would refresh more than twice per lifetime).
    ///
    /// Default: a tenth of the lifetime, but at least 30 s, and at most a fifth of the lifetime
    /// (a 1 h token is refreshed 6 min before expiry, a 5 min token 30 s before, a 60 s token
    /// 12 s before): at most 1.25 requests per lifetime.
    pub fn refresh_ahead(mut self, d: Duration) -> Self {
        self.config.refresh_ahead = Some(d);
        self
    }

    /// Time limit of one request, connection and body included (default 5 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.config.timeout = d;
        self
    }

    /// First retry delay after a failed request (default 1 s). The n-th consecutive failure
    /// waits between half and all of `min_backoff · 2^(n-1)`, at most `max_backoff` (random
    /// jitter, so that many clients do not retry in step). The same delay also separates two
    /// successful requests, which bounds the request rate even with very short token
    /// lifetimes.
    pub fn min_backoff(mut self, d: Duration) -> Self {
        self.config.min_backoff = d;
        self
    }

    /// Longest retry delay (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.config.max_backoff = d;
        self
    }

    /// Lifetime assumed for a token whose answer has no `expires_in` (default 5 min).
    pub fn default_expires_in(mut self, d: Duration) -> Self {
        self.config.default_expires_in = d;
        self
    }

    /// Largest accepted answer body (default 64 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.config.max_body = bytes;
        self
    }

    /// Sends requests with `client` (shared connection pool, proxies, custom roots). Its own
    /// timeout is overridden per request by [`Self::timeout`]. Configure it not to follow
    /// redirects (`reqwest::redirect::Policy::none()`): a redirected token request would carry
    /// the client's credentials elsewhere. Default: a client that follows no redirect.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Obtains DPoP-bound tokens (RFC 9449) for `key`: every request to the token endpoint
    /// (client credentials and refresh grants) carries a `DPoP` header with a fresh proof for
    /// `POST <token endpoint>`. When the server answers `400 use_dpop_nonce` with a
    /// `DPoP-Nonce` header, the request is retried once with that nonce in the proof; the
    /// latest nonce the server sent is used for later requests (RFC 9449 section 8).
    ///
    /// The source then accepts only `token_type: DPoP` answers: a server that ignores the
    /// proof and issues a bearer token makes the request fail with
    /// [`FetchError::NotDpopBound`], so that a token the client meant to be bound is never sent
    /// unbound. The key is shared (an `Arc`) with whatever sends the token
    /// ([`ClientCredentials::dpop_key`]), which must make a proof for each request.
    pub fn dpop(mut self, key: impl Into<Arc<DpopKey>>) -> Self {
        self.dpop = Some(key.into());
        self
    }

    /// Allows a plain `http://` token endpoint on hosts other than loopback. The client's
    /// credentials and the tokens would travel in clear text: only for closed networks.
    pub fn dangerous_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Builds the source. No request is sent yet: the first [`ClientCredentials::token`] or
    /// the background refresh ([`ClientCredentials::spawn_refresh`]) fetches the first token.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] for an endpoint that is not `https://` (or `http://` on a
    /// loopback host) or missing from the metadata, a `resource` that is not an absolute URI without fragment, a scope with
    /// characters RFC 6749 does not allow, or timing settings out of order;
    /// [`BuildError::HttpClient`] when the default HTTP client cannot be built.
    pub fn build(self) -> Result<ClientCredentials, BuildError> {
        let c = &self.config;
        if c.timeout.is_zero()
            || c.min_backoff.is_zero()
            || c.min_backoff > c.max_backoff
            || c.default_expires_in.is_zero()
            || c.max_body == 0
        {
            return Err(BuildError::Invalid(
                "client credentials: timeout, backoff, default lifetime and body limit must be non-zero, and min_backoff <= max_backoff".into(),
            ));
        }
        let endpoint = self.endpoint.ok_or_else(|| {
            BuildError::Invalid("the authorization server metadata names no token_endpoint".into())
        })?;
        check_endpoint(&endpoint, self.allow_http)?;
        for r in &self.resources {
            check_resource(r)?;
        }
        if let Some(s) = &self.scope {
            check_scope(s)?;
        }
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(c.timeout)
                .connect_timeout(c.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("auth-core/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| BuildError::HttpClient(e.to_string()))?,
        };
        let assertion_audience = self.assertion_audience.unwrap_or_else(|| endpoint.clone());
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                htu: endpoint_htu(&endpoint),
                endpoint,
                assertion_audience,
                auth: self.auth,
                scope: self.scope,
                resources: self.resources,
                audience: self.audience,
                config: self.config,
                client,
                held: ArcSwapOption::empty(),
                fetch_lock: tokio::sync::Mutex::new(()),
                status: Mutex::new(Status::default()),
                requests: AtomicU64::new(0),
                refresher: AtomicBool::new(false),
                stop: Arc::new(tokio::sync::Notify::new()),
                dpop: self.dpop,
                dpop_nonce: Mutex::new(None),
            }),
        })
    }
}

fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            // Userinfo may carry credentials.
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

fn check_endpoint(url: &str, allow_http: bool) -> Result<(), BuildError> {
    let shown = redact_url(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| BuildError::Invalid(format!("token endpoint `{shown}`: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_http => Ok(()),
        s => Err(BuildError::Invalid(format!(
            "token endpoint `{shown}`: scheme `{s}` (https required, http only on loopback)"
        ))),
    }
}

fn check_resource(uri: &str) -> Result<(), BuildError> {
    match reqwest::Url::parse(uri) {
        Ok(u) if u.fragment().is_none() => Ok(()),
        _ => Err(BuildError::Invalid(format!(
            "resource `{uri}`: RFC 8707 requires an absolute URI without fragment"
        ))),
    }
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated by spaces.
fn check_scope(scope: &str) -> Result<(), BuildError> {
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    };
    if scope.split(' ').all(token_ok) {
        Ok(())
    } else {
        Err(BuildError::Invalid(
            "scope: space-separated scope tokens of printable ASCII without `\"` or `\\` required"
                .into(),
        ))
    }
}

/// OAuth 2.0 client credentials token source. Cheap to clone: clones share the token, the
/// single-flight lock and the background refresh.
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    /// The endpoint as the `htu` of DPoP proofs.
    htu: String,
    assertion_audience: String,
    auth: ClientAuth,
    scope: Option<String>,
    resources: Vec<String>,
    audience: Option<String>,
    config: Config,
    client: reqwest::Client,
    /// The token held now: read lock-free on every call.
    held: ArcSwapOption<Held>,
    /// Held by the one task that talks to the token endpoint (single-flight).
    fetch_lock: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
    requests: AtomicU64,
    refresher: AtomicBool,
    stop: Arc<tokio::sync::Notify>,
    /// The key of DPoP proofs, when tokens are DPoP-bound.
    dpop: Option<Arc<DpopKey>>,
    /// The latest `DPoP-Nonce` of the token endpoint.
    dpop_nonce: Mutex<Option<String>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

struct Held {
    token: AccessToken,
    refresh_at: Instant,
}

/// A refresh token: never printed.
#[derive(Clone)]
struct Secret(String);

#[derive(Default)]
struct Status {
    /// Requests completed (successfully or not) since the start; waiters compare it to learn
    /// that a request finished while they waited.
    completed: u64,
    /// Consecutive failed requests.
    failures: u32,
    last_error: Option<FetchError>,
    /// No request before this instant (backoff after a failure, the minimal spacing after a
    /// success).
    not_before: Option<Instant>,
    refresh_token: Option<Secret>,
}

impl Status {
    fn unavailable(&self) -> TokenSourceError {
        TokenSourceError::Unavailable {
            attempts: self.failures,
            last_error: self
                .last_error
                .clone()
                .unwrap_or(FetchError::InvalidResponse(
                    "the token endpoint issued a token that expired at once",
                )),
        }
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("ClientCredentials")
            .field("endpoint", &redact_url(&i.endpoint))
            .field("client_id", &i.auth.client_id())
            .field("scope", &i.scope)
            .field("resources", &i.resources)
            .field("dpop", &i.dpop)
            .field("token", &self.current())
            .field("requests", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A source of tokens from `token_endpoint`, authenticating as `auth`.
    pub fn builder(
        token_endpoint: impl Into<String>,
        auth: ClientAuth,
    ) -> ClientCredentialsBuilder {
        Self::builder_with(Some(token_endpoint.into()), auth)
    }

    /// A source of tokens from the `token_endpoint` of discovered metadata (its
    /// [`build`](ClientCredentialsBuilder::build) fails when the metadata names none).
    pub fn from_metadata(
        metadata: &AuthorizationServer,
        auth: ClientAuth,
    ) -> ClientCredentialsBuilder {
        Self::builder_with(metadata.token_endpoint.clone(), auth)
    }

    fn builder_with(endpoint: Option<String>, auth: ClientAuth) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            endpoint,
            auth,
            assertion_audience: None,
            scope: None,
            resources: Vec::new(),
            audience: None,
            config: Config::default(),
            client: None,
            allow_http: false,
            dpop: None,
        }
    }

    /// The access token: the held one while it is fresh (no waiting, no lock); otherwise one
    /// from the token endpoint, shared by all concurrent callers.
    ///
    /// A held token that is due for refresh but still valid is answered as it is when a
    /// background refresh runs ([`Self::spawn_refresh`]); without one, the first caller that
    /// finds it due refreshes it while the others keep using it.
    ///
    /// # Errors
    ///
    /// [`TokenSourceError::Unavailable`] when no valid token is held and the token endpoint did
    /// not give one: the request failed, or failed recently and its backoff has not elapsed
    /// (the answer is then immediate).
    pub async fn token(&self) -> Result<AccessToken, TokenSourceError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        self.inner.token_slow().await
    }

    /// The token [`Self::token`] would answer at once, without any request: the held token
    /// when it is fresh, or when it is valid and a background refresh runs. `None` means
    /// `token()` would request one (or fail).
    pub fn cached(&self) -> Option<AccessToken> {
        let held = self.inner.held.load();
        let h = held.as_ref()?;
        let now = Instant::now();
        if now < h.refresh_at
            || (now < h.token.expires_at() && self.inner.refresher.load(Ordering::Acquire))
        {
            Some(h.token.clone())
        } else {
            None
        }
    }

    /// The held token if it has not expired, without waiting: for synchronous callers such as
    /// a tonic interceptor. Keep the source fresh with [`Self::spawn_refresh`] and prime it
    /// with one `token().await`.
    pub fn current(&self) -> Option<AccessToken> {
        self.inner.valid_token()
    }

    /// The last token obtained, even if it has expired (for diagnostics: tell "expired and
    /// not refreshed" from "never obtained"); `None` before the first.
    pub fn last_token(&self) -> Option<AccessToken> {
        self.inner.held.load().as_ref().map(|h| h.token.clone())
    }

    /// The last failure of the token endpoint, with the number of consecutive failures, while
    /// no request has succeeded since.
    pub fn last_error(&self) -> Option<TokenSourceError> {
        let st = self.inner.status();
        st.last_error.is_some().then(|| st.unavailable())
    }

    /// How many requests were sent to the token endpoint so far (a refresh that falls back to
    /// the client credentials grant counts two).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The client id the source authenticates as.
    pub fn client_id(&self) -> &str {
        self.inner.auth.client_id()
    }

    /// The DPoP key the tokens are bound to, when the source was built with
    /// [`ClientCredentialsBuilder::dpop`]: a request sending one of its tokens needs a proof
    /// made with it ([`DpopKey::proof`] with the token as `access_token`).
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.dpop.as_deref()
    }

    /// Starts the background refresh: it fetches a token at once when none is held, then
    /// refreshes each token ahead of its expiry, retrying failures with backoff. The task
    /// stops when the last clone of the source is dropped (or when the handle is aborted).
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRuntime`] outside a Tokio runtime; [`BuildError::Invalid`] when a
    /// background refresh already runs for this source.
    pub fn spawn_refresh(&self) -> Result<tokio::task::JoinHandle<()>, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        if self.inner.refresher.swap(true, Ordering::AcqRel) {
            return Err(BuildError::Invalid(
                "a background refresh already runs for this token source".into(),
            ));
        }
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        Ok(runtime.spawn(refresh_loop(weak, stop)))
    }
}

/// Clears the "a refresher runs" flag when the task ends, however it ends (abort included).
struct RefresherGuard(Weak<Inner>);

impl Drop for RefresherGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.refresher.store(false, Ordering::Release);
        }
    }
}

async fn refresh_loop(weak: Weak<Inner>, stop: Arc<tokio::sync::Notify>) {
    let _guard = RefresherGuard(weak.clone());
    loop {
        let wake = match weak.upgrade() {
            Some(inner) => inner.next_fetch_at(),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            () = stop.notified() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        let _lock = inner.fetch_lock.lock().await;
        if inner.next_fetch_at() > Instant::now() {
            // A caller fetched while this task slept or waited for the lock.
            continue;
        }
        // A failure is recorded (and logged) by `fetch_locked`; the loop then sleeps until
        // its backoff ends.
        let _ = inner.fetch_locked().await;
    }
}

#[derive(Clone, Copy)]
enum Grant<'a> {
    ClientCredentials,
    Refresh(&'a Secret),
}

/// A parsed RFC 6749 section 5.1 answer.
struct TokenResponse {
    access_token: String,
    token_type: TokenType,
    expires_in: Option<Duration>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

impl Inner {
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn valid_token(&self) -> Option<AccessToken> {
        let held = self.held.load();
        held.as_ref()
            .filter(|h| Instant::now() < h.token.expires_at())
            .map(|h| h.token.clone())
    }

    /// When the next request is due: the held token's refresh time (now when none is held),
    /// but not before the backoff or spacing of the previous request ends.
    fn next_fetch_at(&self) -> Instant {
        let now = Instant::now();
        let due = self.held.load().as_ref().map_or(now, |h| h.refresh_at);
        self.status().not_before.map_or(due, |nb| due.max(nb))
    }

    async fn token_slow(&self) -> Result<AccessToken, TokenSourceError> {
        let seen = self.status().completed;
        if self.valid_token().is_some() {
            // Due for refresh but still valid, and no background refresh: one caller
            // refreshes, the others use the valid token meanwhile.
            if let Ok(_lock) = self.fetch_lock.try_lock()
                && self.next_fetch_at() <= Instant::now()
                && let Ok(token) = self.fetch_locked().await
            {
                return Ok(token);
            }
            return self
                .valid_token()
                .ok_or_else(|| self.status().unavailable());
        }
        let _lock = self.fetch_lock.lock().await;
        if let Some(token) = self.valid_token() {
            return Ok(token);
        }
        {
            let st = self.status();
            // A request completed while this caller waited and left no valid token: share its
            // failure rather than sending another. Within a backoff, fail at once.
            if st.completed != seen || st.not_before.is_some_and(|nb| Instant::now() < nb) {
                return Err(st.unavailable());
            }
        }
        self.fetch_locked()
            .await
            .map_err(|last_error| TokenSourceError::Unavailable {
                attempts: self.status().failures,
                last_error,
            })
    }

    /// One attempt (a refresh, with its fallback, counts one); the caller holds `fetch_lock`.
    async fn fetch_locked(&self) -> Result<AccessToken, FetchError> {
        let started = Instant::now();
        let started_utc = SystemTime::now();
        let refresh = self.status().refresh_token.clone();
        let result = self.request(refresh.as_ref()).await;
        let mut st = self.status();
        st.completed = st.completed.wrapping_add(1);
        match result {
            Ok((answer, refreshed)) => {
                let lifetime = answer
                    .expires_in
                    .unwrap_or(self.config.default_expires_in)
                    .min(MAX_LIFETIME);
                let margin = refresh_margin(lifetime, self.config.refresh_ahead);
                let expires_at = started + lifetime;
                let token = AccessToken {
                    data: Arc::new(TokenData {
                        secret: answer.access_token,
                        token_type: answer.token_type,
                        expires_at,
                        expires_at_utc: started_utc + lifetime,
                        lifetime,
                        scope: answer.scope.or_else(|| self.scope.clone()),
                    }),
                };
                match answer.refresh_token {
                    Some(rt) => st.refresh_token = Some(Secret(rt)),
                    // RFC 6749 section 6: a refresh answer without a new refresh token leaves
                    // the old one in force.
                    None if refreshed => {}
                    None => st.refresh_token = None,
                }
                st.failures = 0;
                st.last_error = None;
                st.not_before = Some(started + self.config.min_backoff);
                self.held.store(Some(Arc::new(Held {
                    token: token.clone(),
                    refresh_at: expires_at - margin,
                })));
                drop(st);
                tracing::debug!(
                    target: "auth::oauth",
                    client_id = self.auth.client_id(),
                    lifetime_s = lifetime.as_secs(),
                    refreshed,
                    "access token obtained"
                );
                Ok(token)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let delay = backoff(
                    st.failures,
                    self.config.min_backoff,
                    self.config.max_backoff,
                    random_u64(),
                );
                st.not_before = Some(Instant::now() + delay);
                st.last_error = Some(e.clone());
                let failures = st.failures;
                drop(st);
                tracing::warn!(
                    target: "auth::oauth",
                    client_id = self.auth.client_id(),
                    error = %e,
                    failures,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "token request failed"
                );
                Err(e)
            }
        }
    }

    /// A refresh-token request when a refresh token is held, falling back to the client
    /// credentials grant when the server refuses it; the flag tells whether the refresh grant
    /// succeeded.
    async fn request(&self, refresh: Option<&Secret>) -> Result<(TokenResponse, bool), FetchError> {
        if let Some(rt) = refresh {
            match self.post(Grant::Refresh(rt)).await {
                Ok(answer) => return Ok((answer, true)),
                // The refresh token expired, was revoked, or the client may not use the grant:
                // the refresh token is useless, the client credentials still work. A refused
                // client (`invalid_client`) would be refused again, and a refused DPoP proof
                // says nothing about the refresh token: report those.
                Err(FetchError::Refused(e))
                    if !matches!(
                        e.code(),
                        "invalid_client" | "use_dpop_nonce" | "invalid_dpop_proof"
                    ) =>
                {
                    tracing::debug!(target: "auth::oauth", error = %e, "refresh token refused; using the client credentials grant");
                    self.status().refresh_token = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.post(Grant::ClientCredentials)
            .await
            .map(|answer| (answer, false))
    }

    /// One grant. With DPoP: a proof with the latest nonce, one retry when the server asks
    /// for another nonce (`use_dpop_nonce`), and only `DPoP` tokens accepted.
    async fn post(&self, grant: Grant<'_>) -> Result<TokenResponse, FetchError> {
        let Some(key) = &self.dpop else {
            let (status, body, _) = self.send(grant, None).await?;
            return parse_answer(status, &body);
        };
        let mut nonce = self
            .dpop_nonce
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut retried = false;
        loop {
            let proof = key
                .proof("POST", &self.htu, None, nonce.as_deref())
                .map_err(|e| FetchError::DpopProof(e.to_string()))?;
            let (status, body, new_nonce) = self.send(grant, Some(&proof)).await?;
            if let Some(n) = &new_nonce {
                *self
                    .dpop_nonce
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(n.clone());
            }
            match parse_answer(status, &body) {
                Err(FetchError::Refused(e))
                    if e.code() == "use_dpop_nonce" && new_nonce.is_some() && !retried =>
                {
                    tracing::debug!(
                        target: "auth::oauth",
                        client_id = self.auth.client_id(),
                        "the token endpoint asked for a DPoP nonce; retrying with it"
                    );
                    retried = true;
                    nonce = new_nonce;
                }
                Ok(answer) if answer.token_type != TokenType::DPoP => {
                    return Err(FetchError::NotDpopBound(answer.token_type));
                }
                other => return other,
            }
        }
    }

    /// Sends one request of `grant` (with the `DPoP` header `proof`, when given): the answer's
    /// status, body and valid `DPoP-Nonce` header.
    async fn send(
        &self,
        grant: Grant<'_>,
        proof: Option<&str>,
    ) -> Result<(u16, Vec<u8>, Option<String>), FetchError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut form: Vec<(&'static str, String)> = Vec::with_capacity(8);
        match grant {
            Grant::ClientCredentials => {
                form.push(("grant_type", "client_credentials".to_owned()));
            }
            Grant::Refresh(rt) => {
                form.push(("grant_type", "refresh_token".to_owned()));
                form.push(("refresh_token", rt.0.clone()));
            }
        }
        if let Some(s) = &self.scope {
            form.push(("scope", s.clone()));
        }
        for r in &self.resources {
            form.push(("resource", r.clone()));
        }
        if let Some(a) = &self.audience {
            form.push(("audience", a.clone()));
        }
        let timeout = self.config.timeout;
        let req = self
            .client
            .post(&self.endpoint)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        let req = match proof {
            Some(proof) => req.header("dpop", proof),
            None => req,
        };
        let req = self
            .auth
            .apply(req, &mut form, &self.assertion_audience)
            .map_err(|e| FetchError::ClientAuth(e.to_string()))?;
        let send = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(encode_form(&form))
            .send();
        // reqwest's timeout covers the body too; this one also bounds a custom client's
        // connector.
        let read = async {
            let resp = send.await.map_err(|e| http_error(e, timeout))?;
            let status = resp.status().as_u16();
            let nonce = resp
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .filter(|n| valid_nonce(n))
                .map(str::to_owned);
            let body = read_limited(resp, self.config.max_body, timeout).await?;
            Ok::<_, FetchError>((status, body, nonce))
        };
        tokio::time::timeout(timeout + Duration::from_millis(100), read)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }
}

/// RFC 9449 section 8: `nonce = 1*NQCHAR` (here with a length limit).
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The `htu` of proofs for the token endpoint: its URL without userinfo, query or fragment.
fn endpoint_htu(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => endpoint.to_owned(),
    }
}

fn http_error(e: reqwest::Error, timeout: Duration) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout(timeout);
    }
    // reqwest's own text is terse ("error sending request"); the causes say what happened
    // (connection refused, TLS...). The URL is left out: it may carry credentials.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    FetchError::Transport(text)
}

async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(FetchError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| http_error(e, timeout))? {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses the token endpoint's answer: RFC 6749 section 5.1 on success, 5.2 on error.
fn parse_answer(status: u16, body: &[u8]) -> Result<TokenResponse, FetchError> {
    if !(200..300).contains(&status) {
        return Err(
            parse_error(status, body).map_or(FetchError::Status(status), FetchError::Refused)
        );
    }
    // Parsed as a `Value` first: serde's messages for typed fields can quote the offending
    // value, which could be a token.
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| FetchError::InvalidResponse("the body is not JSON"))?;
    let obj = value
        .as_object()
        .ok_or(FetchError::InvalidResponse("the body is not a JSON object"))?;
    let access_token = match obj.get("access_token") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => return Err(FetchError::InvalidResponse("no access_token string")),
    };
    if access_token.len() > MAX_TOKEN_LEN {
        return Err(FetchError::InvalidResponse("access_token too long"));
    }
    if Credentials::with_bearer(&access_token).bearer().is_none() {
        return Err(FetchError::InvalidResponse(
            "access_token is empty or not RFC 6750 b64token syntax",
        ));
    }
    let token_type = match obj.get("token_type").and_then(serde_json::Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => TokenType::Bearer,
        Some(t) if t.eq_ignore_ascii_case("dpop") => TokenType::DPoP,
        Some(_) => return Err(FetchError::InvalidResponse("unsupported token_type")),
        None => return Err(FetchError::InvalidResponse("no token_type string")),
    };
    let expires_in = match obj.get("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(parse_expires_in(v)?),
    };
    let refresh_token = match obj.get("refresh_token") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN => {
            Some(t.clone())
        }
        Some(_) => return Err(FetchError::InvalidResponse("invalid refresh_token")),
    };
    let scope = match obj.get("scope") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if check_scope(s).is_ok() => Some(s.clone()),
        Some(_) => return Err(FetchError::InvalidResponse("invalid scope")),
    };
    Ok(TokenResponse {
        access_token,
        token_type,
        expires_in,
        refresh_token,
        scope,
    })
}

/// `expires_in`: a non-negative number of seconds (a numeric string is tolerated, as some
/// servers send one).
fn parse_expires_in(v: &serde_json::Value) -> Result<Duration, FetchError> {
    const BAD: FetchError = FetchError::InvalidResponse("expires_in is not a number of seconds");
    let secs = match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    secs.map(|s| Duration::from_secs(s.min(MAX_LIFETIME.as_secs())))
        .ok_or(BAD)
}

/// An RFC 6749 section 5.2 error body, when the answer is one.
fn parse_error(status: u16, body: &[u8]) -> Option<ErrorResponse> {
    if !(400..500).contains(&status) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?;
    // error = 1*( %x20-21 / %x23-5B / %x5D-7E ), here without spaces and at most 64 long.
    let code_ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    let description = value
        .get("error_description")
        .and_then(serde_json::Value::as_str)
        .map(|d| {
            d.chars()
                .filter(|&c| {
                    c == ' ' || c == '!' || (c.is_ascii_graphic() && c != '"' && c != '\\')
                })
                .take(MAX_DESCRIPTION_LEN)
                .collect::<String>()
        })
        .filter(|d| !d.trim().is_empty());
    Some(ErrorResponse {
        status,
        code: if code_ok {
            code.to_owned()
        } else {
            "invalid_error_code".to_owned()
        },
        description,
    })
}

/// How long before expiry a token of `lifetime` is refreshed.
fn refresh_margin(lifetime: Duration, configured: Option<Duration>) -> Duration {
    match configured {
        Some(d) => d.min(lifetime / 2),
        None => (lifetime / 10)
            .max(Duration::from_secs(30))
            .min(lifetime / 5),
    }
}

/// The delay after the `failures`-th consecutive failure: between half and all of
/// `min · 2^(failures-1)`, capped at `max`; `random` picks the point.
fn backoff(failures: u32, min: Duration, max: Duration, random: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << doublings).min(max);
    let half = base / 2;
    // The top 53 bits as a fraction in [0, 1).
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    half + (base - half).mul_f64(fraction)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness the jitter is lost, nothing else: retry at the middle of the window.
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => u64::MAX / 2,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_a_success_answer() {
        let a = parse_answer(
            200,
            br#"{"access_token":"abc.def","token_type":"bEaReR","expires_in":3600,"refresh_token":"rt","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(a.access_token, "abc.def");
        assert_eq!(a.token_type, TokenType::Bearer);
        assert_eq!(a.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(a.refresh_token.as_deref(), Some("rt"));
        assert_eq!(a.scope.as_deref(), Some("a b"));

        let a = parse_answer(200, br#"{"access_token":"x","token_type":"DPoP"}"#).unwrap();
        assert_eq!(a.token_type, TokenType::DPoP);
        assert_eq!(a.expires_in, None);
        assert_eq!(a.refresh_token, None);

        // A numeric string and a float are tolerated.
        let a = parse_answer(
            200,
            br#"{"access_token":"x","token_type":"bearer","expires_in":"60"}"#,
        )
        .unwrap();
        assert_eq!(a.expires_in, Some(Duration::from_secs(60)));
        let a = parse_answer(
            200,
            br#"{"access_token":"x","token_type":"bearer","expires_in":59.9}"#,
        )
        .unwrap();
        assert_eq!(a.expires_in, Some(Duration::from_secs(59)));
        // Absurd lifetimes are capped.
        let a = parse_answer(
            200,
            br#"{"access_token":"x","token_type":"bearer","expires_in":18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(a.expires_in, Some(MAX_LIFETIME));
    }

    #[test]
    fn refuses_bad_success_answers_without_echo() {
        let cases: &[&[u8]] = &[
            b"not json",
            b"[]",
            br#"{"token_type":"bearer"}"#,
            br#"{"access_token":"","token_type":"bearer"}"#,
            br#"{"access_token":"has space SECRETTOKEN","token_type":"bearer"}"#,
            br#"{"access_token":"SECRETTOKEN","token_type":"mac"}"#,
            br#"{"access_token":"SECRETTOKEN"}"#,
            br#"{"access_token":"SECRETTOKEN","token_type":"bearer","expires_in":-5}"#,
            br#"{"access_token":"SECRETTOKEN","token_type":"bearer","expires_in":"SECRETTOKEN"}"#,
            br#"{"access_token":"SECRETTOKEN","token_type":"bearer","refresh_token":7}"#,
            br#"{"access_token":"SECRETTOKEN","token_type":"bearer","scope":"a\"b"}"#,
            br#"{"access_token":5,"token_type":"bearer"}"#,
        ];
        for body in cases {
            let err = parse_answer(200, body).err().unwrap();
            assert!(matches!(err, FetchError::InvalidResponse(_)), "{err:?}");
            assert!(!err.to_string().contains("SECRETTOKEN"), "{err}");
        }
        let long = format!(
            r#"{{"access_token":"{}","token_type":"bearer"}}"#,
            "a".repeat(MAX_TOKEN_LEN + 1)
        );
        assert!(parse_answer(200, long.as_bytes()).is_err());
    }

    #[test]
    fn parses_error_answers() {
        let err = parse_answer(
            401,
            br#"{"error":"invalid_client","error_description":"unknown client"}"#,
        )
        .err()
        .unwrap();
        assert!(err.is_refused());
        assert_eq!(err.error_code(), Some("invalid_client"));
        assert_eq!(
            err.to_string(),
            "token endpoint refused the request: `invalid_client` (HTTP 401): unknown client"
        );

        // Not an RFC 6749 error body: the status only.
        assert_eq!(
            parse_answer(503, b"{\"error\":\"x\"}").err(),
            Some(FetchError::Status(503))
        );
        assert_eq!(
            parse_answer(400, b"<html>").err(),
            Some(FetchError::Status(400))
        );
        assert_eq!(parse_answer(302, b"").err(), Some(FetchError::Status(302)));

        // Out-of-syntax characters are dropped, long descriptions truncated, bad codes
        // replaced.
        let body = format!(
            r#"{{"error":"bad code\n","error_description":"a\u0007b{}"}}"#,
            "x".repeat(1000)
        );
        let FetchError::Refused(e) = parse_answer(400, body.as_bytes()).err().unwrap() else {
            panic!("not a refusal")
        };
        assert_eq!(e.code(), "invalid_error_code");
        let d = e.description().unwrap();
        assert!(d.starts_with("abx"));
        assert_eq!(d.len(), MAX_DESCRIPTION_LEN);
    }

    #[test]
    fn refresh_margins() {
        let s = Duration::from_secs;
        // Default: 10 %, at least 30 s, at most 20 %.
        assert_eq!(refresh_margin(s(3600), None), s(360));
        assert_eq!(refresh_margin(s(300), None), s(30));
        assert_eq!(refresh_margin(s(60), None), s(12));
        assert_eq!(refresh_margin(s(3), None), Duration::from_millis(600));
        // Configured: capped at half the lifetime.
        assert_eq!(refresh_margin(s(300), Some(s(60))), s(60));
        assert_eq!(refresh_margin(s(60), Some(s(120))), s(30));
        assert_eq!(refresh_margin(Duration::ZERO, None), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let ms = Duration::from_millis;
        let (min, max) = (ms(100), ms(1000));
        // Lowest and highest jitter.
        assert_eq!(backoff(1, min, max, 0), ms(50));
        assert!(backoff(1, min, max, u64::MAX) <= ms(100));
        assert!(backoff(1, min, max, u64::MAX) > ms(99));
        assert_eq!(backoff(2, min, max, 0), ms(100));
        assert_eq!(backoff(3, min, max, 0), ms(200));
        assert_eq!(backoff(5, min, max, 0), ms(500));
        assert_eq!(backoff(50, min, max, 0), ms(500));
        assert!(backoff(u32::MAX, min, max, u64::MAX) <= max);
        for n in 1..40 {
            let d = backoff(n, min, max, random_u64());
            assert!(d >= ms(50) && d <= max, "{n}: {d:?}");
        }
    }

    #[test]
    fn builder_checks() {
        let auth = || ClientAuth::secret_basic("c", "hunter2");
        assert!(
            ClientCredentials::builder("https://as.example/token", auth())
                .build()
                .is_ok()
        );
        assert!(
            ClientCredentials::builder("http://127.0.0.1:9/token", auth())
                .build()
                .is_ok()
        );
        let err = ClientCredentials::builder("http://as.example/token", auth())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("https required"), "{err}");
        assert!(
            ClientCredentials::builder("http://as.example/token", auth())
                .dangerous_allow_http()
                .build()
                .is_ok()
        );
        // Userinfo is not echoed.
        let err = ClientCredentials::builder("ftp://user:pw@as.example/token", auth())
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
        for bad in ["relative/path", "https://api.example/#frag"] {
            assert!(
                ClientCredentials::builder("https://as.example/token", auth())
                    .resource(bad)
                    .build()
                    .is_err()
            );
        }
        assert!(
            ClientCredentials::builder("https://as.example/token", auth())
                .scope("a  b")
                .build()
                .is_err()
        );
        assert!(
            ClientCredentials::builder("https://as.example/token", auth())
                .min_backoff(Duration::from_secs(10))
                .max_backoff(Duration::from_secs(1))
                .build()
                .is_err()
        );
        assert!(
            ClientCredentials::builder("https://as.example/token", auth())
                .timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let token = AccessToken {
            data: Arc::new(TokenData {
                secret: "SECRETTOKEN".into(),
                token_type: TokenType::Bearer,
                expires_at: Instant::now() + Duration::from_secs(60),
                expires_at_utc: SystemTime::now(),
                lifetime: Duration::from_secs(60),
                scope: Some("read".into()),
            }),
        };
        let d = format!("{token:?}");
        assert!(!d.contains("SECRETTOKEN") && d.contains("read"), "{d}");
        assert_eq!(token.authorization(), "Bearer SECRETTOKEN");
        assert!(token.same_as(&token.clone()));

        let source = ClientCredentials::builder(
            "https://user:pw@as.example/token",
            ClientAuth::secret_post("c", "hunter2"),
        )
        .build()
        .unwrap();
        source.inner.held.store(Some(Arc::new(Held {
            token,
            refresh_at: Instant::now(),
        })));
        source.inner.status().refresh_token = Some(Secret("REFRESHTOKEN".into()));
        let d = format!("{source:?}");
        for secret in ["SECRETTOKEN", "REFRESHTOKEN", "hunter2", "pw"] {
            assert!(!d.contains(secret), "{d}");
        }
    }

    /// A token endpoint on loopback that answers `answers` in order (the last one repeats),
    /// each after `delay`, and records the request bodies.
    async fn scripted(
        answers: Vec<(u16, String)>,
        delay: Duration,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let answers = answers
            .into_iter()
            .map(|(status, body)| (status, body, String::new()))
            .collect();
        let (url, bodies, _) = scripted_with_headers(answers, delay).await;
        (url, bodies)
    }

    /// [`scripted`] with extra answer header lines (`name: value\r\n` each), also recording
    /// each request's `DPoP` header.
    #[allow(clippy::type_complexity)]
    async fn scripted_with_headers(
        answers: Vec<(u16, String, String)>,
        delay: Duration,
    ) -> (
        String,
        Arc<Mutex<Vec<String>>>,
        Arc<Mutex<Vec<Option<String>>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
        let proofs = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
        let seen = bodies.clone();
        let seen_proofs = proofs.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = conn.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed before the request ended");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = conn.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8(buf[head_end..].to_vec()).unwrap();
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                seen_proofs.lock().unwrap().push(head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("dpop")
                        .then(|| value.trim().to_owned())
                }));
                let index = {
                    let mut b = seen.lock().unwrap();
                    b.push(body);
                    b.len() - 1
                };
                let (status, answer, extra) = answers[index.min(answers.len() - 1)].clone();
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            }
        });
        (url, bodies, proofs)
    }

    fn ok(body: &str) -> (u16, String) {
        (200, body.to_owned())
    }

    /// Makes the held token due for refresh (as if its refresh time had come).
    fn force_due(source: &ClientCredentials) {
        let held = source.inner.held.load_full().unwrap();
        source.inner.held.store(Some(Arc::new(Held {
            token: held.token.clone(),
            refresh_at: Instant::now(),
        })));
    }

    fn fast(url: &str, auth: ClientAuth) -> ClientCredentialsBuilder {
        ClientCredentials::builder(url, auth)
            .min_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(2))
    }

    #[tokio::test]
    async fn sends_the_form_and_applies_defaults() {
        let (url, bodies) = scripted(
            vec![ok(r#"{"access_token":"t1","token_type":"dpop"}"#)],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::secret_post("svc", "s&cret"))
            .scope("a b")
            .resource("https://one.example/")
            .resource("https://two.example/x?y=1")
            .audience("legacy-api")
            .default_expires_in(Duration::from_secs(120))
            .build()
            .unwrap();
        let token = source.token().await.unwrap();
        assert_eq!(token.secret(), "t1");
        assert_eq!(token.token_type(), TokenType::DPoP);
        assert_eq!(token.lifetime(), Duration::from_secs(120));
        assert_eq!(
            token.scope(),
            Some("a b"),
            "the requested scope when none is named"
        );
        assert_eq!(token.authorization(), "DPoP t1");
        assert_eq!(
            bodies.lock().unwrap().as_slice(),
            [
                "grant_type=client_credentials&scope=a+b&resource=https%3A%2F%2Fone.example%2F\
              &resource=https%3A%2F%2Ftwo.example%2Fx%3Fy%3D1&audience=legacy-api\
              &client_id=svc&client_secret=s%26cret"
            ]
        );
    }

    #[tokio::test]
    async fn oversized_and_garbage_answers_are_failures() {
        let big = format!(
            r#"{{"access_token":"{}","token_type":"bearer"}}"#,
            "a".repeat(500)
        );
        let (url, _) = scripted(vec![ok(&big)], Duration::ZERO).await;
        let source = fast(&url, ClientAuth::none("svc"))
            .max_body(100)
            .build()
            .unwrap();
        let err = source.token().await.unwrap_err();
        assert_eq!(*err.last_error(), FetchError::TooLarge(100));

        let (url, _) = scripted(vec![ok("<html>SECRET</html>")], Duration::ZERO).await;
        let source = fast(&url, ClientAuth::none("svc")).build().unwrap();
        let err = source.token().await.unwrap_err();
        assert!(matches!(err.last_error(), FetchError::InvalidResponse(_)));
        assert!(!err.to_string().contains("SECRET"));
    }

    #[tokio::test]
    async fn refresh_grant_keeps_an_unrotated_refresh_token() {
        let (url, bodies) = scripted(
            vec![
                ok(r#"{"access_token":"t1","token_type":"Bearer","expires_in":60,"refresh_token":"r1"}"#),
                ok(r#"{"access_token":"t2","token_type":"Bearer","expires_in":60}"#),
                ok(r#"{"access_token":"t3","token_type":"Bearer","expires_in":60,"refresh_token":"r2"}"#),
            ],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::secret_basic("svc", "s"))
            .build()
            .unwrap();
        assert_eq!(source.token().await.unwrap().secret(), "t1");
        for expected in ["t2", "t3"] {
            force_due(&source);
            tokio::time::sleep(Duration::from_millis(5)).await; // past min_backoff
            assert_eq!(source.token().await.unwrap().secret(), expected);
        }
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies[0], "grant_type=client_credentials");
        assert_eq!(bodies[1], "grant_type=refresh_token&refresh_token=r1");
        assert_eq!(bodies[2], "grant_type=refresh_token&refresh_token=r1");
    }

    #[tokio::test]
    async fn refused_client_does_not_fall_back() {
        let (url, bodies) = scripted(
            vec![
                ok(r#"{"access_token":"t1","token_type":"Bearer","expires_in":60,"refresh_token":"r1"}"#),
                (401, r#"{"error":"invalid_client"}"#.to_owned()),
            ],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::secret_basic("svc", "s"))
            .build()
            .unwrap();
        let first = source.token().await.unwrap();
        force_due(&source);
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Due but valid: the failed refresh leaves the held token in use.
        assert!(source.token().await.unwrap().same_as(&first));
        assert_eq!(
            bodies.lock().unwrap().len(),
            2,
            "no client credentials retry"
        );
        let err = source.last_error().unwrap();
        assert_eq!(err.attempts(), 1);
        assert_eq!(err.last_error().error_code(), Some("invalid_client"));
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_failure() {
        let (url, bodies) =
            scripted(vec![(503, "down".to_owned())], Duration::from_millis(100)).await;
        let source = ClientCredentials::builder(&url, ClientAuth::none("svc"))
            .build()
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let source = source.clone();
            tasks.spawn(async move { source.token().await });
        }
        for result in tasks.join_all().await {
            assert_eq!(*result.unwrap_err().last_error(), FetchError::Status(503));
        }
        assert_eq!(bodies.lock().unwrap().len(), 1);
        assert_eq!(source.request_count(), 1);
        // Within the backoff (1 s by default) the answer is immediate, with no request.
        assert!(source.token().await.is_err());
        assert_eq!(bodies.lock().unwrap().len(), 1);
    }

    /// The claims of a DPoP proof (not verified: the tests check what the client sent).
    fn proof_claims(proof: &str) -> serde_json::Value {
        use base64::Engine as _;
        let payload = proof.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn dpop_key() -> Arc<DpopKey> {
        Arc::new(DpopKey::generate(jsonwebtoken::Algorithm::ES256).unwrap())
    }

    #[tokio::test]
    async fn dpop_nonce_is_retried_once_and_the_latest_kept() {
        let nonce_answer = |n: &str| {
            (
                400,
                r#"{"error":"use_dpop_nonce","error_description":"nonce required"}"#.to_owned(),
                format!("DPoP-Nonce: {n}\r\n"),
            )
        };
        let (url, bodies, proofs) = scripted_with_headers(
            vec![
                nonce_answer("n-1"),
                (
                    200,
                    r#"{"access_token":"t1","token_type":"DPoP","expires_in":60,"refresh_token":"r1"}"#
                        .to_owned(),
                    "dpop-nonce: n-2\r\n".to_owned(),
                ),
                (
                    200,
                    r#"{"access_token":"t2","token_type":"DPoP","expires_in":60}"#.to_owned(),
                    String::new(),
                ),
            ],
            Duration::ZERO,
        )
        .await;
        let key = dpop_key();
        let source = fast(&url, ClientAuth::secret_basic("svc", "s"))
            .dpop(key.clone())
            .build()
            .unwrap();
        assert_eq!(source.dpop_key().unwrap().jkt(), key.jkt());
        let token = source.token().await.unwrap();
        assert_eq!(token.secret(), "t1");
        assert_eq!(token.token_type(), TokenType::DPoP);
        assert_eq!(source.request_count(), 2, "exactly one retry");

        // A refresh grant later: with a proof carrying the latest nonce (from the success).
        force_due(&source);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(source.token().await.unwrap().secret(), "t2");
        assert_eq!(
            bodies.lock().unwrap()[2],
            "grant_type=refresh_token&refresh_token=r1"
        );

        let proofs = proofs.lock().unwrap();
        assert_eq!(proofs.len(), 3);
        let claims: Vec<_> = proofs
            .iter()
            .map(|p| proof_claims(p.as_deref().unwrap()))
            .collect();
        for c in &claims {
            assert_eq!(c["htm"], "POST");
            assert_eq!(c["htu"], url.as_str());
            assert!(
                c.get("ath").is_none(),
                "no access token at the token endpoint"
            );
        }
        assert!(claims[0].get("nonce").is_none());
        assert_eq!(claims[1]["nonce"], "n-1");
        assert_eq!(claims[2]["nonce"], "n-2");
        assert_ne!(
            claims[0]["jti"], claims[1]["jti"],
            "a fresh proof per request"
        );
    }

    #[tokio::test]
    async fn dpop_nonce_refusals_are_retried_only_once() {
        let (url, _, proofs) = scripted_with_headers(
            vec![(
                400,
                r#"{"error":"use_dpop_nonce"}"#.to_owned(),
                "DPoP-Nonce: again\r\n".to_owned(),
            )],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::none("svc"))
            .dpop(dpop_key())
            .build()
            .unwrap();
        let err = source.token().await.unwrap_err();
        assert_eq!(err.last_error().error_code(), Some("use_dpop_nonce"));
        assert_eq!(proofs.lock().unwrap().len(), 2);

        // Without a (valid) nonce header there is nothing to retry with.
        let (url, _, proofs) = scripted_with_headers(
            vec![(
                400,
                r#"{"error":"use_dpop_nonce"}"#.to_owned(),
                "DPoP-Nonce: not valid\r\n".to_owned(),
            )],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::none("svc"))
            .dpop(dpop_key())
            .build()
            .unwrap();
        assert!(source.token().await.is_err());
        assert_eq!(proofs.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_dpop_source_refuses_bearer_tokens() {
        let (url, _, proofs) = scripted_with_headers(
            vec![(
                200,
                r#"{"access_token":"SECRETTOKEN","token_type":"Bearer"}"#.to_owned(),
                String::new(),
            )],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::none("svc"))
            .dpop(dpop_key())
            .build()
            .unwrap();
        let err = source.token().await.unwrap_err();
        assert_eq!(
            *err.last_error(),
            FetchError::NotDpopBound(TokenType::Bearer)
        );
        let text = err.to_string();
        assert!(text.contains("ignored the DPoP proof"), "{text}");
        assert!(!text.contains("SECRETTOKEN"), "{text}");
        assert!(source.last_token().is_none(), "the token is not kept");
        assert!(proofs.lock().unwrap()[0].is_some());

        // Without a DPoP key no proof is sent.
        let (url, _, proofs) = scripted_with_headers(
            vec![(
                200,
                r#"{"access_token":"t","token_type":"Bearer"}"#.to_owned(),
                String::new(),
            )],
            Duration::ZERO,
        )
        .await;
        let source = fast(&url, ClientAuth::none("svc")).build().unwrap();
        assert!(source.dpop_key().is_none());
        source.token().await.unwrap();
        assert_eq!(proofs.lock().unwrap().as_slice(), [None]);
    }

    #[test]
    fn dpop_helpers() {
        assert!(valid_nonce("abc-._~!#$%&'()*+,/:;<=>?@[]^`{|}"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!valid_nonce(bad), "{bad}");
        }
        assert!(!valid_nonce(&"a".repeat(MAX_NONCE_LEN + 1)));
        assert_eq!(
            endpoint_htu("https://user:pw@as.example/oauth/token?x=1#f"),
            "https://as.example/oauth/token"
        );
    }
}

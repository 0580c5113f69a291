//! Errors: what went wrong at request time ([`AuthError`]) and at configuration time
//! ([`BuildError`]).
//!
//! [`AuthError`] is the one place where every outcome of the suite is mapped to its answer on
//! each transport: the HTTP status, the RFC 6750 error code carried in `WWW-Authenticate`, the gRPC
//! status code and the GraphQL `extensions.code`. Adapters render from these methods and never
//! decide on their own.
//!
//! Descriptions ([`AuthError::description`]) are safe to show to a caller: they never contain the
//! credential, key material or internal details. The detailed cause, where there is one, is kept
//! for logs through [`std::error::Error::source`].
//!
//! ```
//! use auth_core::{AuthError, TokenError};
//!
//! let err = AuthError::InvalidToken(TokenError::Expired);
//! assert_eq!(err.http_status(), 401);
//! assert_eq!(err.rfc6750_code(), Some("invalid_token"));
//! assert_eq!(err.www_authenticate("api"), Some(
//!     r#"Bearer realm="api", error="invalid_token", error_description="the token has expired""#.to_owned()
//! ));
//! ```

use crate::ratelimit::RateLimitStatus;
use std::fmt;
use std::time::Duration;

/// The reason a request was refused or could not be decided.
///
/// Each variant maps to one row of the outcome table in `ARCHITECTURE.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were presented on a route that requires them.
    MissingCredentials,
    /// The request is malformed (two `Authorization` headers, bad scheme syntax, ...).
    InvalidRequest(RequestError),
    /// The credential is bad: malformed, expired, wrongly signed, from an unknown key or issuer.
    InvalidToken(TokenError),
    /// The caller is authenticated but lacks the scopes the route requires.
    InsufficientScope {
        /// The scopes the route requires, space-separated, as sent in the challenge.
        required: String,
    },
    /// The caller is authenticated but a policy denies the request.
    Forbidden {
        /// A short reason, safe to show.
        reason: String,
    },
    /// The caller is over its rate or quota.
    RateLimited {
        /// When the caller may try again.
        retry_after: Duration,
        /// The limit that refused, for the `RateLimit-Policy`/`RateLimit` headers.
        status: Option<RateLimitStatus>,
    },
    /// The verifier cannot decide (issuer or store unreachable); the request fails closed.
    Unavailable(&'static str),
    /// The authentication layer is missing where an extractor needs it: a server bug.
    Misconfigured(&'static str),
}

/// Why a request's credentials could not even be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// More than one `Authorization` header.
    DuplicateAuthorization,
    /// The `Authorization` header value is not valid `Bearer <token>` syntax.
    MalformedAuthorization,
    /// The header value is larger than the configured limit.
    HeaderTooLarge,
    /// More than one kind of credential (a bearer token and an API key).
    MultipleCredentials,
}

impl RequestError {
    /// A description that is safe to show to the caller.
    pub fn description(self) -> &'static str {
        match self {
            Self::DuplicateAuthorization => "more than one Authorization header",
            Self::MalformedAuthorization => "the Authorization header is malformed",
            Self::HeaderTooLarge => "the Authorization header is too large",
            Self::MultipleCredentials => "more than one kind of credential",
        }
    }

    /// A short machine-readable reason, used in audit events.
    pub fn reason(self) -> &'static str {
        match self {
            Self::DuplicateAuthorization => "duplicate_authorization",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::HeaderTooLarge => "header_too_large",
            Self::MultipleCredentials => "multiple_credentials",
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS: wrong number of parts, bad base64url, not JSON, not an object.
    Malformed(&'static str),
    /// The token is larger than the configured limit.
    TooLarge,
    /// A JSON object in the header or claims names the same member twice.
    DuplicateMember,
    /// `alg` is missing, `none`, or not an algorithm this suite verifies.
    UnsupportedAlgorithm,
    /// The header names a `crit` extension this verifier does not understand.
    UnsupportedCritical,
    /// The key that matched does not allow the algorithm in the header.
    AlgorithmNotAllowed,
    /// No trusted key matches the token (unknown `kid`, or no candidate key).
    UnknownKey,
    /// Several trusted keys share the token's `kid`: the choice would be ambiguous.
    AmbiguousKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is further in the future than the leeway allows.
    IssuedInFuture,
    /// A required claim is missing.
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    InvalidClaim(&'static str),
    /// `iss` is not a trusted issuer.
    UnknownIssuer,
    /// `aud` does not name this service.
    InvalidAudience,
    /// `typ` is not what the configured profile requires (RFC 9068 `at+jwt`).
    InvalidType,
    /// The token was revoked.
    Revoked,
    /// The token's claims do not have the shape the endpoint expects.
    ClaimsShape,
    /// The API key is malformed, unknown, or its secret does not match.
    ApiKeyInvalid,
    /// The API key was revoked (or its rotation's grace period is over).
    ApiKeyRevoked,
    /// The API key has expired.
    ApiKeyExpired,
    /// The API key's use credit is spent.
    ApiKeyExhausted,
    /// The token is bound to a client certificate (RFC 8705) that the connection did not
    /// present.
    CertificateMismatch,
    /// The client certificate is not acceptable (its identity maps to no principal, or it was
    /// refused by the trust store).
    CertificateRejected,
    /// The DPoP proof (RFC 9449) is missing or invalid; the detail, for logs only, names the
    /// failed check. RFC 9449 error code `invalid_dpop_proof`.
    DpopProofInvalid(&'static str),
    /// The token is DPoP-bound (`cnf.jkt`) to another key than the proof's, or was sent with the
    /// `DPoP` scheme without being bound at all.
    DpopBindingMismatch,
    /// A DPoP-bound token was sent with the `Bearer` scheme (RFC 9449 7.2).
    DpopRequired,
    /// The DPoP proof lacks a valid, fresh server nonce; the caller answers with a new
    /// `DPoP-Nonce` (RFC 9449 9). RFC 9449 error code `use_dpop_nonce`.
    DpopNonceRequired,
}

impl TokenError {
    /// A description that is safe to show to the caller.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "the token is malformed",
            Self::TooLarge => "the token is too large",
            Self::DuplicateMember => "the token has a duplicate JSON member",
            Self::UnsupportedAlgorithm => "the token's algorithm is not supported",
            Self::UnsupportedCritical => "the token has an unsupported critical header",
            Self::AlgorithmNotAllowed => "the token's algorithm is not allowed for its key",
            Self::UnknownKey => "the token's signing key is not trusted",
            Self::AmbiguousKey => "the token's signing key is ambiguous",
            Self::BadSignature => "the token's signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::IssuedInFuture => "the token was issued in the future",
            Self::MissingClaim(_) => "the token lacks a required claim",
            Self::InvalidClaim(_) => "the token has an invalid claim",
            Self::UnknownIssuer => "the token's issuer is not trusted",
            Self::InvalidAudience => "the token is not meant for this service",
            Self::InvalidType => "the token has the wrong type",
            Self::Revoked => "the token has been revoked",
            Self::ClaimsShape => "the token's claims are not what this endpoint expects",
            Self::ApiKeyInvalid => "the API key is not valid",
            Self::ApiKeyRevoked => "the API key has been revoked",
            Self::ApiKeyExpired => "the API key has expired",
            Self::ApiKeyExhausted => "the API key's use credit is spent",
            Self::CertificateMismatch => "the token is bound to another client certificate",
            Self::CertificateRejected => "the client certificate is not accepted",
            Self::DpopProofInvalid(_) => "the DPoP proof is invalid",
            Self::DpopBindingMismatch => "the token is not bound to the DPoP proof's key",
            Self::DpopRequired => "the token is DPoP-bound and must be sent with the DPoP scheme",
            Self::DpopNonceRequired => "the resource server requires a nonce in the DPoP proof",
        }
    }

    /// A short machine-readable reason, used in audit events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::TooLarge => "too_large",
            Self::DuplicateMember => "duplicate_member",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::AmbiguousKey => "ambiguous_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::UnknownIssuer => "unknown_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::InvalidType => "invalid_type",
            Self::Revoked => "revoked",
            Self::ClaimsShape => "claims_shape",
            Self::ApiKeyInvalid => "api_key_invalid",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::ApiKeyExpired => "api_key_expired",
            Self::ApiKeyExhausted => "api_key_exhausted",
            Self::CertificateMismatch => "certificate_mismatch",
            Self::CertificateRejected => "certificate_rejected",
            Self::DpopProofInvalid(_) => "dpop_proof_invalid",
            Self::DpopBindingMismatch => "dpop_binding_mismatch",
            Self::DpopRequired => "dpop_required",
            Self::DpopNonceRequired => "dpop_nonce_required",
        }
    }

    /// Whether this is about an API key (not a token).
    pub fn is_api_key(&self) -> bool {
        matches!(
            self,
            Self::ApiKeyInvalid | Self::ApiKeyRevoked | Self::ApiKeyExpired | Self::ApiKeyExhausted
        )
    }

    /// Internal detail for logs (the claim name or the parsing step); never shown to callers.
    pub fn detail(&self) -> Option<&'static str> {
        match self {
            Self::Malformed(d)
            | Self::MissingClaim(d)
            | Self::InvalidClaim(d)
            | Self::DpopProofInvalid(d) => Some(d),
            _ => None,
        }
    }
}

/// The coarse class of an [`AuthError`]: one row of the outcome table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401 without an error code.
    Unauthenticated,
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 403 `insufficient_scope` or a policy denial.
    Forbidden,
    /// 429.
    RateLimited,
    /// 503.
    Unavailable,
    /// 500.
    Internal,
}

/// gRPC status codes used by the suite (the numeric values of `google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated = 16,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8).
    ResourceExhausted = 8,
}

impl AuthError {
    /// The row of the outcome table this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MissingCredentials => ErrorKind::Unauthenticated,
            Self::InvalidRequest(_) => ErrorKind::InvalidRequest,
            Self::InvalidToken(_) => ErrorKind::InvalidToken,
            Self::InsufficientScope { .. } | Self::Forbidden { .. } => ErrorKind::Forbidden,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Misconfigured(_) => ErrorKind::Internal,
        }
    }

    /// The HTTP status code to answer with.
    pub fn http_status(&self) -> u16 {
        match self.kind() {
            ErrorKind::Unauthenticated | ErrorKind::InvalidToken => 401,
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The RFC 6750 `error` code, when the challenge carries one.
    pub fn rfc6750_code(&self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope { .. } | Self::Forbidden { .. } => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// The gRPC status code to answer with.
    pub fn grpc_code(&self) -> GrpcCode {
        match self.kind() {
            ErrorKind::Unauthenticated | ErrorKind::InvalidRequest | ErrorKind::InvalidToken => {
                GrpcCode::Unauthenticated
            }
            ErrorKind::Forbidden => GrpcCode::PermissionDenied,
            ErrorKind::RateLimited => GrpcCode::ResourceExhausted,
            ErrorKind::Unavailable => GrpcCode::Unavailable,
            ErrorKind::Internal => GrpcCode::Internal,
        }
    }

    /// The GraphQL `extensions.code`.
    pub fn graphql_code(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Unauthenticated | ErrorKind::InvalidRequest | ErrorKind::InvalidToken => {
                "UNAUTHENTICATED"
            }
            ErrorKind::Forbidden => "FORBIDDEN",
            ErrorKind::RateLimited => "RATE_LIMITED",
            ErrorKind::Unavailable => "SERVICE_UNAVAILABLE",
            ErrorKind::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    /// A description that is safe to show to the caller.
    pub fn description(&self) -> &str {
        match self {
            Self::MissingCredentials => "authentication is required",
            Self::InvalidRequest(e) => e.description(),
            Self::InvalidToken(e) => e.description(),
            Self::InsufficientScope { .. } => "the token lacks the required scope",
            Self::Forbidden { reason } => reason,
            Self::RateLimited { .. } => "rate limit exceeded",
            Self::Unavailable(_) => "authentication is temporarily unavailable",
            Self::Misconfigured(_) => "internal server error",
        }
    }

    /// A short machine-readable reason for audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidRequest(e) => e.reason(),
            Self::InvalidToken(e) => e.reason(),
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Misconfigured(_) => "misconfigured",
        }
    }

    /// The reason phrase of [`AuthError::http_status`].
    pub fn http_title(&self) -> &'static str {
        match self.http_status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// Seconds to send in `Retry-After` (429), rounded up.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            _ => None,
        }
    }

    /// The headers an HTTP answer to this error carries besides its content type, as
    /// `(lower-case name, value)`: `www-authenticate` with the challenge for `realm` (when the
    /// outcome table sends one), and for 429 `retry-after` and, when the refusing limit is
    /// known, `ratelimit-policy` and `ratelimit`. Every HTTP adapter sends exactly these.
    ///
    /// ```
    /// use auth_core::{AuthError, TokenError};
    /// let h = AuthError::InvalidToken(TokenError::Expired).http_headers("api");
    /// assert_eq!(h.len(), 1);
    /// assert_eq!(h[0].0, "www-authenticate");
    /// ```
    pub fn http_headers(&self, realm: &str) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(2);
        if let Some(challenge) = self.www_authenticate(realm) {
            headers.push(("www-authenticate", challenge));
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.push(("retry-after", secs.to_string()));
        }
        if let Self::RateLimited {
            status: Some(status),
            ..
        } = self
        {
            headers.extend(status.headers());
        }
        headers
    }

    /// The response body: an RFC 9457 problem-details object (`application/problem+json`) with
    /// the RFC 6750 code as the `error` extension member. Safe to send.
    pub fn problem_json(&self) -> String {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.http_title(),
            "status": self.http_status(),
            "detail": self.description(),
        });
        if let Some(code) = self.rfc6750_code() {
            body["error"] = code.into();
        }
        body.to_string()
    }

    /// The `WWW-Authenticate` value, or `None` where the outcome table sends no challenge
    /// (429, 503, 500). The scheme is `ApiKey` when an API key was refused, `Bearer`
    /// otherwise. An empty `realm` is left out of the challenge.
    ///
    /// ```
    /// use auth_core::{AuthError, TokenError};
    /// let key = AuthError::InvalidToken(TokenError::ApiKeyRevoked);
    /// assert!(key.www_authenticate("api").unwrap().starts_with("ApiKey realm=\"api\", error=\"invalid_token\""));
    /// assert!(AuthError::MissingCredentials.www_authenticate("").unwrap() == "Bearer");
    /// ```
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        self.challenge(self.scheme(), realm)
    }

    /// The authentication scheme a challenge for this error names: `ApiKey` for a refused API
    /// key, `Bearer` for everything else.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::InvalidToken(e) if e.is_api_key() => "ApiKey",
            _ => "Bearer",
        }
    }

    /// The challenge for any scheme (`Bearer`, `DPoP`, `ApiKey`, ...) in the RFC 6750 shape. An
    /// empty `realm` is left out.
    pub fn challenge(&self, scheme: &str, realm: &str) -> Option<String> {
        if matches!(
            self.kind(),
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Internal
        ) {
            return None;
        }
        let mut params: Vec<(&str, &str)> = Vec::with_capacity(4);
        if !realm.is_empty() {
            params.push(("realm", realm));
        }
        if let Some(code) = self.rfc6750_code() {
            params.push(("error", code));
            params.push(("error_description", self.description()));
        }
        if let Self::InsufficientScope { required } = self {
            params.push(("scope", required));
        }
        let mut out = String::with_capacity(96);
        out.push_str(scheme);
        for (i, (name, value)) in params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str("=\"");
            push_quoted(&mut out, value);
            out.push('"');
        }
        Some(out)
    }
}

/// Appends `s` as the inside of an RFC 9110 quoted-string, dropping characters that are not
/// allowed in one (controls) and escaping `"` and `\`.
fn push_quoted(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c == '\t' || (' '..='~').contains(&c) => out.push(c),
            _ => {}
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidToken(e) => match e.detail() {
                Some(d) => write!(f, "{} ({d})", e.description()),
                None => f.write_str(e.description()),
            },
            Self::Unavailable(why) => write!(f, "authentication unavailable: {why}"),
            Self::Misconfigured(why) => write!(f, "server misconfiguration: {why}"),
            other => f.write_str(other.description()),
        }
    }
}

impl std::error::Error for AuthError {}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        Self::InvalidToken(e)
    }
}

impl From<RequestError> for AuthError {
    fn from(e: RequestError) -> Self {
        Self::InvalidRequest(e)
    }
}

/// A configuration error, returned by builders; never seen at request time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A key could not be parsed or is not acceptable (too small, wrong curve, wrong use...).
    #[error("invalid key{}: {reason}", kid.as_deref().map(|k| format!(" `{k}`")).unwrap_or_default())]
    InvalidKey {
        /// The key id, when the key has one.
        kid: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A key set is not acceptable as a whole (mixed symmetric and asymmetric keys, empty).
    #[error("invalid key set: {0}")]
    InvalidKeySet(String),
    /// A setting is out of its allowed range or contradicts another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A background task needs a Tokio runtime and none is running.
    #[error("a Tokio runtime is required: call this from within a runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
}

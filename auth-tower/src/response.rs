//! Rendering an [`AuthError`] as an HTTP response: status, `WWW-Authenticate` challenge,
//! `Retry-After` and `RateLimit-Policy`/`RateLimit` (429), and a small RFC 9457
//! problem-details body. Everything comes from the core's
//! outcome table; nothing here decides.

use auth_core::ratelimit::RateLimitStatus;
use auth_core::{AuthError, Gate};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

/// Builds the response for `error`, with challenges for `realm`.
///
/// ```
/// use auth_core::{AuthError, TokenError};
///
/// let res: http::Response<axum::body::Body> =
///     auth_tower::error_response(&AuthError::InvalidToken(TokenError::Expired), "api");
/// assert_eq!(res.status(), 401);
/// assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
/// ```
pub fn error_response<B: From<Bytes>>(error: &AuthError, realm: &str) -> Response<B> {
    render(error, error.http_headers(realm))
}

/// Builds the response for `error` as `gate` answers it: [`error_response`] with the gate's
/// realm, plus the `DPoP` challenge and `DPoP-Nonce` when the gate accepts DPoP
/// ([`Gate::http_headers`]).
pub fn gate_error_response<B: From<Bytes>>(error: &AuthError, gate: &Gate) -> Response<B> {
    render(error, gate.http_headers(error))
}

fn render<B: From<Bytes>>(error: &AuthError, extra: Vec<(&'static str, String)>) -> Response<B> {
    if error.http_status() == 500 {
        // A server bug (such as a missing layer): say so in the log, not to the caller.
        tracing::error!(target: "auth::tower", error = %error, "authentication misconfigured");
    }
    let mut res = Response::new(B::from(Bytes::from(error.problem_json())));
    *res.status_mut() =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::try_from(value) {
            // `append`: a gate may challenge with two schemes (Bearer and DPoP).
            headers.append(name, v);
        }
    }
    res
}

/// Sets the `ratelimit-policy` and `ratelimit` headers of `status`, replacing any already there.
pub(crate) fn insert_rate_limit(headers: &mut HeaderMap, status: &RateLimitStatus) {
    for (name, value) in status.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

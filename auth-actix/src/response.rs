//! Rendering an [`AuthError`] as an actix-web response: status, `WWW-Authenticate` challenge,
//! `Retry-After` and `RateLimit-Policy`/`RateLimit` (429), and a small RFC 9457
//! problem-details body. Everything comes from the core's
//! outcome table; nothing here decides. The answer is the same, header for header and byte for
//! byte, as `auth_tower::error_response`.
//!
//! ```
//! use auth_core::{AuthError, TokenError};
//!
//! let res = auth_actix::error_response(&AuthError::InvalidToken(TokenError::Expired), "api");
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers().get("content-type").unwrap(), "application/problem+json");
//! assert!(res.headers().get("www-authenticate").unwrap().to_str().unwrap().contains("invalid_token"));
//! ```

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use auth_core::{AuthError, Gate};

/// Builds the response for `error`, with challenges for `realm` (an empty realm is left out of
/// the challenge). A 500 (a missing middleware) is also logged: it is a server bug.
pub fn error_response(error: &AuthError, realm: &str) -> HttpResponse {
    if error.http_status() == 500 {
        log_misconfigured(error);
    }
    render(error, realm)
}

/// Builds the response for `error` as `gate` answers it: [`error_response`] with the gate's
/// realm, plus the `DPoP` challenge and `DPoP-Nonce` when the gate accepts DPoP
/// ([`Gate::http_headers`]).
pub fn gate_error_response(error: &AuthError, gate: &Gate) -> HttpResponse {
    if error.http_status() == 500 {
        log_misconfigured(error);
    }
    render_headers(error, gate.http_headers(error))
}

/// Logs a server-side misconfiguration; callers never see the detail.
pub(crate) fn log_misconfigured(error: &AuthError) {
    tracing::error!(target: "auth::actix", error = %error, "authentication misconfigured");
}

/// The response for `error`, without logging.
pub(crate) fn render(error: &AuthError, realm: &str) -> HttpResponse {
    render_headers(error, error.http_headers(realm))
}

fn render_headers(error: &AuthError, extra: Vec<(&'static str, String)>) -> HttpResponse {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::with_body(status, error.problem_json()).map_into_boxed_body();
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::try_from(value) {
            // `append`: a gate may challenge with two schemes (Bearer and DPoP).
            headers.append(HeaderName::from_static(name), v);
        }
    }
    res
}

//! OAuth 2.0 client side (feature `oauth`): client authentication to an authorization server,
//! server metadata discovery (RFC 8414), token introspection (RFC 7662) as an
//! [`Authenticator`](crate::Authenticator) for opaque tokens, and token revocation (RFC 7009).
//!
//! - [`ClientAuth`]: `none`, `client_secret_basic`, `client_secret_post`, `private_key_jwt`.
//! - [`AuthorizationServer`]: the server's endpoints from its RFC 8414 / OpenID Connect
//!   metadata, with the issuer checked.
//! - [`Introspection`]: opaque access tokens checked at the introspection endpoint, with an
//!   opt-in bounded cache and single-flight requests; [`JwtOrOpaque`] sends JWTs to a local
//!   [`Jwt`](crate::jwt::Jwt) verifier and other tokens to introspection.
//! - [`TokenRevoker`]: RFC 7009 revocation of tokens this client holds.
//! - [`ClientCredentials`]: access tokens for outgoing calls (client credentials grant).
//!
//! ```
//! use auth_core::oauth::ClientAuth;
//!
//! let auth = ClientAuth::secret_basic("resource-server", "s3cret");
//! assert_eq!(auth.method_name(), "client_secret_basic");
//! ```

pub mod client_auth;
pub mod introspection;
pub mod metadata;
pub mod revoke;
pub mod token_source;

pub use client_auth::ClientAuth;
pub use introspection::{Introspection, IntrospectionBuilder, JwtOrOpaque};
pub use metadata::AuthorizationServer;
pub use revoke::{RevokeError, TokenRevoker, TokenTypeHint};
pub use token_source::{AccessToken, ClientCredentials, TokenSourceError};

/// Whether `url` is an acceptable endpoint: `https`, or `http` on a loopback host (or anywhere
/// with `allow_http`).
pub(crate) fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_http => Ok(()),
        s => Err(format!(
            "scheme `{s}` (https required, http only on loopback)"
        )),
    }
}

/// Why an HTTP exchange with the authorization server failed (for logs only: no URL, token or
/// secret).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Http(reqwest::Error),
    #[error("status {0}")]
    Status(reqwest::StatusCode),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

impl From<reqwest::Error> for FetchError {
    /// Drops the URL: it may carry credentials in its userinfo.
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e.without_url())
    }
}

/// Reads a response body of at most `max` bytes.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(FetchError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

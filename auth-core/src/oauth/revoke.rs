//! [`TokenRevoker`]: an OAuth 2.0 Token Revocation client (RFC 7009).
//!
//! A client revokes the access or refresh tokens it holds when it no longer needs them
//! (sign-out, shutdown). The server answers 200 for tokens it revoked *and* for tokens it does
//! not know (RFC 7009 section 2.2), so success means "this token is not usable any more", not
//! "this token existed". A 503 is [`RevokeError::Unavailable`] (try again later); an
//! `unsupported_token_type` error is [`RevokeError::UnsupportedTokenType`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::oauth::ClientAuth;
//! use auth_core::oauth::revoke::{TokenRevoker, TokenTypeHint};
//!
//! let revoker = TokenRevoker::new(
//!     "https://as.example/revoke",
//!     ClientAuth::secret_basic("my-client", "s3cret"),
//! )?;
//! revoker.revoke("the-refresh-token", Some(TokenTypeHint::RefreshToken)).await?;
//! # Ok(()) }
//! ```

use super::client_auth::{ClientAuth, encode_form};
use super::metadata::AuthorizationServer;
use super::{FetchError, check_url, read_limited};
use crate::error::BuildError;
use std::fmt;
use std::time::Duration;

/// Default time limit of one revocation request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest error answer read.
const MAX_BODY: usize = 16 * 1024;
/// Longest `error_description` kept.
const MAX_DESCRIPTION: usize = 256;

/// The `token_type_hint` of a revocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// The registered value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// Why a revocation failed. The text never contains the token or a client secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The server answered 503: revocation is temporarily impossible; retry later.
    #[error("the revocation endpoint is temporarily unavailable (503)")]
    Unavailable,
    /// The server does not revoke tokens of this type (`unsupported_token_type`).
    #[error("the server does not support revoking this token type")]
    UnsupportedTokenType,
    /// The server refused the request with an RFC 6749 error (`invalid_client`, ...).
    #[error("the revocation request was refused with `{error}` (status {status}){}",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` code.
        error: String,
        /// The `error_description`, shortened, if any.
        description: Option<String>,
    },
    /// Any other unsuccessful status, without an RFC 6749 error body.
    #[error("the revocation endpoint answered status {0}")]
    Status(u16),
    /// The request could not be sent or the answer not read.
    #[error("revocation request failed: {0}")]
    Transport(String),
    /// The client authentication could not be prepared (a `private_key_jwt` signing failure).
    #[error("client authentication failed locally: {0}")]
    ClientAuth(BuildError),
}

/// Revokes tokens at an RFC 7009 endpoint. Cheap to clone.
#[derive(Clone)]
pub struct TokenRevoker {
    endpoint: String,
    auth: ClientAuth,
    http: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for TokenRevoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRevoker")
            .field("endpoint", &self.endpoint)
            .field("client_auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenRevoker`].
#[must_use]
pub struct TokenRevokerBuilder {
    endpoint: Result<String, String>,
    auth: ClientAuth,
    http: Option<reqwest::Client>,
    timeout: Duration,
    allow_http: bool,
}

impl fmt::Debug for TokenRevokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRevokerBuilder")
            .field("client_auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl TokenRevokerBuilder {
    /// Time limit of one request (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Uses `client` for requests.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }
    /// Allows a plain `http://` endpoint on hosts other than loopback: tokens and secrets then
    /// cross the network in clear. Only for closed networks.
    pub fn dangerous_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }
    /// Finishes the revoker.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] for an endpoint that is not `https://` (or `http://` on
    /// loopback) or a zero time-out; [`BuildError::HttpClient`] when the HTTP client cannot be
    /// built.
    pub fn build(self) -> Result<TokenRevoker, BuildError> {
        let endpoint = self.endpoint.map_err(BuildError::Invalid)?;
        check_url(&endpoint, self.allow_http)
            .map_err(|e| BuildError::Invalid(format!("revocation URL `{endpoint}`: {e}")))?;
        if self.timeout.is_zero() {
            return Err(BuildError::Invalid("revocation timeout is zero".into()));
        }
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(self.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("auth-core/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| BuildError::HttpClient(e.to_string()))?,
        };
        Ok(TokenRevoker {
            endpoint,
            auth: self.auth,
            http,
            timeout: self.timeout,
        })
    }
}

impl TokenRevoker {
    /// A revoker for `endpoint_url` with the defaults.
    ///
    /// # Errors
    ///
    /// As [`TokenRevokerBuilder::build`].
    pub fn new(endpoint_url: impl Into<String>, auth: ClientAuth) -> Result<Self, BuildError> {
        Self::builder(endpoint_url, auth).build()
    }

    /// A builder for `endpoint_url`.
    pub fn builder(endpoint_url: impl Into<String>, auth: ClientAuth) -> TokenRevokerBuilder {
        TokenRevokerBuilder {
            endpoint: Ok(endpoint_url.into()),
            auth,
            http: None,
            timeout: DEFAULT_TIMEOUT,
            allow_http: false,
        }
    }

    /// A builder for the `revocation_endpoint` of `metadata` (its `build` fails when the
    /// metadata names none).
    pub fn from_metadata(metadata: &AuthorizationServer, auth: ClientAuth) -> TokenRevokerBuilder {
        TokenRevokerBuilder {
            endpoint: metadata
                .revocation_endpoint
                .clone()
                .ok_or_else(|| "the metadata names no revocation_endpoint".to_owned()),
            auth,
            http: None,
            timeout: DEFAULT_TIMEOUT,
            allow_http: false,
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Revokes `token`. `Ok` also when the server did not know the token (RFC 7009 section
    /// 2.2).
    ///
    /// # Errors
    ///
    /// See [`RevokeError`].
    pub async fn revoke(
        &self,
        token: &str,
        hint: Option<TokenTypeHint>,
    ) -> Result<(), RevokeError> {
        let mut form = vec![("token", token.to_owned())];
        if let Some(h) = hint {
            form.push(("token_type_hint", h.as_str().to_owned()));
        }
        let req = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(self.timeout);
        let req = self
            .auth
            .apply(req, &mut form, &self.endpoint)
            .map_err(RevokeError::ClientAuth)?;
        let resp = req
            .body(encode_form(&form))
            .send()
            .await
            .map_err(|e| RevokeError::Transport(FetchError::from(e).to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(RevokeError::Unavailable);
        }
        let body = read_limited(resp, MAX_BODY).await.unwrap_or_default();
        Err(error_from(status.as_u16(), &body))
    }
}

/// The error of an unsuccessful answer (RFC 6749 section 5.2 body when there is one).
fn error_from(status: u16, body: &[u8]) -> RevokeError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
        error_description: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return RevokeError::Status(status);
    };
    // Error codes are a restricted ASCII set (RFC 6749 5.2); keep nothing else.
    let printable = |s: &str| {
        s.chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
    };
    if !printable(&parsed.error) || parsed.error.len() > 64 {
        return RevokeError::Status(status);
    }
    if parsed.error == "unsupported_token_type" {
        return RevokeError::UnsupportedTokenType;
    }
    let description = parsed
        .error_description
        .filter(|d| printable(d))
        .map(|d| d.chars().take(MAX_DESCRIPTION).collect());
    RevokeError::Refused {
        status,
        error: parsed.error,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers() {
        assert!(matches!(
            error_from(400, br#"{"error":"unsupported_token_type"}"#),
            RevokeError::UnsupportedTokenType
        ));
        let e = error_from(
            401,
            br#"{"error":"invalid_client","error_description":"bad secret"}"#,
        );
        assert!(
            matches!(&e, RevokeError::Refused { status: 401, error, description: Some(d) }
                if error == "invalid_client" && d == "bad secret")
        );
        assert_eq!(
            e.to_string(),
            "the revocation request was refused with `invalid_client` (status 401): bad secret"
        );
        assert!(matches!(
            error_from(500, b"<html>"),
            RevokeError::Status(500)
        ));
        assert!(matches!(
            error_from(400, "{\"error\":\"x\\u0000y\"}".as_bytes()),
            RevokeError::Status(400)
        ));
    }

    #[test]
    fn builder_checks() {
        let auth = ClientAuth::secret_post("c", "s");
        assert!(TokenRevoker::new("http://as.example/revoke", auth.clone()).is_err());
        assert!(TokenRevoker::new("https://as.example/revoke", auth.clone()).is_ok());
        let md = AuthorizationServer {
            issuer: "https://as.example".into(),
            token_endpoint: None,
            introspection_endpoint: None,
            revocation_endpoint: None,
            jwks_uri: None,
        };
        assert!(
            TokenRevoker::from_metadata(&md, auth.clone())
                .build()
                .is_err()
        );
        let r = TokenRevoker::new("https://as.example/revoke", auth).unwrap();
        assert!(!format!("{r:?}").contains("\"s\""));
        assert_eq!(TokenTypeHint::RefreshToken.as_str(), "refresh_token");
    }
}

//! [`AuthorizationServer`]: an authorization server's endpoints from its metadata document
//! (RFC 8414, or OpenID Connect discovery).
//!
//! [`AuthorizationServer::discover`] first asks for
//! `/.well-known/oauth-authorization-server` (inserted before the issuer's path, RFC 8414
//! section 3.1), then, if that document does not exist, for the OpenID Connect
//! `{issuer}/.well-known/openid-configuration`. The document's `issuer` must equal the
//! requested issuer exactly (RFC 8414 section 3.3); every URL must be `https://` (plain
//! `http://` only on a loopback host, or with
//! [`AuthorizationServer::discover_dangerous_allow_http`]); the body is limited to 64 KiB.
//!
//! ```no_run
//! # async fn demo() -> Result<(), auth_core::oauth::metadata::DiscoveryError> {
//! use auth_core::oauth::AuthorizationServer;
//!
//! let client = reqwest::Client::new();
//! let server = AuthorizationServer::discover("https://as.example", &client).await?;
//! println!("introspect at {:?}", server.introspection_endpoint);
//! # Ok(()) }
//! ```

use super::{FetchError, check_url, read_limited};
use std::time::Duration;

/// Largest accepted metadata document.
const MAX_BODY: usize = 64 * 1024;
/// Time limit of one metadata request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints of an authorization server, from its metadata document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct AuthorizationServer {
    /// The issuer identifier (equal to the one requested).
    pub issuer: String,
    /// The token endpoint (RFC 6749).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The introspection endpoint (RFC 7662).
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// The revocation endpoint (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// The JWKS URL of the server's signing keys.
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

/// Why discovery failed. The text is safe to log (no credentials: URLs are the issuer's).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer identifier is not an acceptable URL (RFC 8414: `https`, no query or
    /// fragment).
    #[error("invalid issuer identifier: {0}")]
    InvalidIssuer(String),
    /// Neither metadata document could be fetched.
    #[error("metadata request failed: {0}")]
    Fetch(String),
    /// The document is not a JSON object with the expected members.
    #[error("malformed metadata document: {0}")]
    Malformed(String),
    /// The document names another issuer.
    #[error("the metadata document names issuer `{found}`, expected `{expected}`")]
    IssuerMismatch {
        /// The issuer requested.
        expected: String,
        /// The issuer the document names.
        found: String,
    },
    /// An endpoint in the document is not acceptable (`http` on a non-loopback host, not a
    /// URL).
    #[error("insecure or invalid endpoint `{member}`: {reason}")]
    InvalidEndpoint {
        /// The metadata member (`token_endpoint`, ...).
        member: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl AuthorizationServer {
    /// Fetches and checks the metadata of `issuer` (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// See [`DiscoveryError`].
    pub async fn discover(issuer: &str, client: &reqwest::Client) -> Result<Self, DiscoveryError> {
        discover(issuer, client, false).await
    }

    /// As [`AuthorizationServer::discover`], accepting plain `http://` URLs on any host.
    /// Metadata fetched over plain HTTP can be replaced by anyone on the path, sending
    /// tokens and client secrets to them: only for closed networks.
    ///
    /// # Errors
    ///
    /// See [`DiscoveryError`].
    pub async fn discover_dangerous_allow_http(
        issuer: &str,
        client: &reqwest::Client,
    ) -> Result<Self, DiscoveryError> {
        discover(issuer, client, true).await
    }

    /// The candidate metadata URLs of `issuer`, in the order tried.
    fn well_known_urls(issuer: &url::Url) -> [String; 2] {
        let origin = issuer.origin().ascii_serialization();
        let path = issuer.path().trim_end_matches('/');
        [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }

    fn check(self, expected: &str, allow_http: bool) -> Result<Self, DiscoveryError> {
        if self.issuer != expected {
            return Err(DiscoveryError::IssuerMismatch {
                expected: expected.to_owned(),
                found: self.issuer,
            });
        }
        for (member, value) in [
            ("token_endpoint", &self.token_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
            ("jwks_uri", &self.jwks_uri),
        ] {
            if let Some(u) = value {
                check_url(u, allow_http)
                    .map_err(|reason| DiscoveryError::InvalidEndpoint { member, reason })?;
            }
        }
        Ok(self)
    }

    fn parse(body: &[u8], expected: &str, allow_http: bool) -> Result<Self, DiscoveryError> {
        let doc: Self =
            serde_json::from_slice(body).map_err(|e| DiscoveryError::Malformed(e.to_string()))?;
        doc.check(expected, allow_http)
    }
}

async fn discover(
    issuer: &str,
    client: &reqwest::Client,
    allow_http: bool,
) -> Result<AuthorizationServer, DiscoveryError> {
    check_url(issuer, allow_http).map_err(DiscoveryError::InvalidIssuer)?;
    let parsed =
        url::Url::parse(issuer).map_err(|e| DiscoveryError::InvalidIssuer(e.to_string()))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(DiscoveryError::InvalidIssuer(
            "an issuer identifier has no query or fragment".into(),
        ));
    }
    let mut last = String::new();
    for url in AuthorizationServer::well_known_urls(&parsed) {
        match fetch(client, &url).await {
            Ok(body) => return AuthorizationServer::parse(&body, issuer, allow_http),
            // A missing document: try the next one.
            Err(FetchError::Status(s)) if s.is_client_error() => {
                last = format!("status {s}");
            }
            Err(e) => return Err(DiscoveryError::Fetch(e.to_string())),
        }
    }
    Err(DiscoveryError::Fetch(format!(
        "no metadata document ({last})"
    )))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(TIMEOUT)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    read_limited(resp, MAX_BODY).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://as.example";

    #[test]
    fn well_known_urls_insert_the_path() {
        let u = url::Url::parse("https://as.example/tenant/1/").unwrap();
        assert_eq!(
            AuthorizationServer::well_known_urls(&u),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant/1",
                "https://as.example/tenant/1/.well-known/openid-configuration",
            ]
        );
        let u = url::Url::parse("https://as.example").unwrap();
        assert_eq!(
            AuthorizationServer::well_known_urls(&u)[0],
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn parses_a_document() {
        let doc = serde_json::json!({
            "issuer": ISS,
            "token_endpoint": "https://as.example/token",
            "introspection_endpoint": "https://as.example/introspect",
            "grant_types_supported": ["client_credentials"],
        });
        let s = AuthorizationServer::parse(doc.to_string().as_bytes(), ISS, false).unwrap();
        assert_eq!(
            s.token_endpoint.as_deref(),
            Some("https://as.example/token")
        );
        assert_eq!(s.revocation_endpoint, None);
    }

    #[test]
    fn refuses_an_issuer_mismatch() {
        for other in [
            "https://evil.example",
            "https://as.example/",
            "https://AS.example",
        ] {
            let doc = serde_json::json!({"issuer": other});
            let e = AuthorizationServer::parse(doc.to_string().as_bytes(), ISS, false).unwrap_err();
            assert!(
                matches!(e, DiscoveryError::IssuerMismatch { .. }),
                "{other}: {e}"
            );
        }
    }

    #[test]
    fn refuses_insecure_endpoints_and_garbage() {
        let doc =
            serde_json::json!({"issuer": ISS, "introspection_endpoint": "http://as.example/i"});
        let e = AuthorizationServer::parse(doc.to_string().as_bytes(), ISS, false).unwrap_err();
        assert!(matches!(
            e,
            DiscoveryError::InvalidEndpoint {
                member: "introspection_endpoint",
                ..
            }
        ));
        assert!(AuthorizationServer::parse(doc.to_string().as_bytes(), ISS, true).is_ok());
        for bad in [&b"[]"[..], b"{\"issuer\": 1}", b"<html>", b"{}"] {
            assert!(matches!(
                AuthorizationServer::parse(bad, ISS, false),
                Err(DiscoveryError::Malformed(_))
            ));
        }
    }
}

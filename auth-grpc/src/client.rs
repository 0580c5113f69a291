//! Outgoing calls: [`BearerInterceptor`] attaches `authorization: Bearer <token>` from a
//! [`TokenSource`].
//!
//! tonic's [`Interceptor`] is synchronous, so a [`TokenSource`] hands out a token it already
//! holds: [`StaticToken`] a fixed one; a source that fetches tokens (OAuth 2.0 client
//! credentials) keeps the current token in memory, refreshes it in the background ahead of
//! expiry, and answers from that snapshot: `ClientCredentialsSource` (feature `oauth`) does this
//! over `auth_core::oauth::ClientCredentials`. A [`BearerToken`] is rendered once into a ready
//! metadata value marked sensitive (HPACK never indexes it), so each call costs a reference
//! count increment.
//!
//! An interceptor sees only the outgoing request, never the response: the server's
//! `ratelimit-policy` and `ratelimit` entries reach the caller in the response metadata
//! (`tonic::Response::metadata`, or `Status::metadata` on a refusal), not here.
//!
//! ```
//! use auth_grpc::{BearerInterceptor, StaticToken};
//! use tonic::service::Interceptor;
//!
//! let mut interceptor = BearerInterceptor::new(StaticToken::new("eyJhbGciOi.e30.c2ln").unwrap());
//! let request = interceptor.call(tonic::Request::new(())).unwrap();
//! let value = request.metadata().get("authorization").unwrap();
//! assert_eq!(value, "Bearer eyJhbGciOi.e30.c2ln");
//! assert!(value.is_sensitive());
//!
//! // With a generated client:
//! // let client = DemoClient::with_interceptor(channel, interceptor);
//!
//! // A token the server would refuse as malformed is refused here, without echoing it.
//! assert!(StaticToken::new("two words").is_err());
//! ```

use auth_core::{BuildError, Credentials};
use std::fmt;
use std::sync::Arc;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

/// A bearer token ready to send: the `Bearer <token>` metadata value, marked sensitive. Cheap to
/// clone; its `Debug` output never shows the token.
#[derive(Clone)]
pub struct BearerToken {
    value: MetadataValue<Ascii>,
}

impl BearerToken {
    /// Renders `token` as an `authorization` value.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] when `token` is empty or not RFC 6750 `b64token` syntax (the
    /// server would refuse it as a malformed request); the message never contains the token.
    pub fn new(token: impl AsRef<str>) -> Result<Self, BuildError> {
        let token = token.as_ref();
        if let Err(e) = Credentials::with_bearer(token).validate() {
            return Err(BuildError::Invalid(format!(
                "a bearer token must be RFC 6750 b64token syntax ({e})"
            )));
        }
        let mut value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|e| {
            BuildError::Invalid(format!(
                "a bearer token must be a valid metadata value ({e})"
            ))
        })?;
        value.set_sensitive(true);
        Ok(Self { value })
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Where outgoing calls get their token.
///
/// Implement it for a type, or pass a closure `Fn() -> Result<BearerToken, Status>`.
///
/// ```
/// use auth_grpc::{BearerInterceptor, BearerToken};
///
/// let token = BearerToken::new("abc.def.ghi").unwrap();
/// let interceptor = BearerInterceptor::new(move || Ok(token.clone()));
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// The token to send with the next call. It must not wait: sources that fetch tokens
    /// refresh them in the background and answer from what they hold.
    ///
    /// # Errors
    ///
    /// The status that fails the call without sending it, e.g. `UNAUTHENTICATED` when no token
    /// could be obtained, `UNAVAILABLE` while the token endpoint is unreachable.
    fn token(&self) -> Result<BearerToken, Status>;
}

impl<F> TokenSource for F
where
    F: Fn() -> Result<BearerToken, Status> + Send + Sync + 'static,
{
    fn token(&self) -> Result<BearerToken, Status> {
        self()
    }
}

/// A fixed token (from configuration, a secret store, a test).
#[derive(Debug, Clone)]
pub struct StaticToken {
    token: BearerToken,
}

impl StaticToken {
    /// A source that always sends `token`.
    ///
    /// # Errors
    ///
    /// As [`BearerToken::new`].
    pub fn new(token: impl AsRef<str>) -> Result<Self, BuildError> {
        BearerToken::new(token).map(|token| Self { token })
    }
}

impl From<BearerToken> for StaticToken {
    fn from(token: BearerToken) -> Self {
        Self { token }
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> Result<BearerToken, Status> {
        Ok(self.token.clone())
    }
}

/// A tonic [`Interceptor`] that sets `authorization: Bearer <token>` on every outgoing call,
/// replacing any `authorization` entry the call already had. Cheap to clone.
#[derive(Clone)]
pub struct BearerInterceptor {
    source: Arc<dyn TokenSource>,
}

impl BearerInterceptor {
    /// An interceptor taking tokens from `source`.
    pub fn new(source: impl TokenSource) -> Self {
        Self {
            source: Arc::new(source),
        }
    }

    /// An interceptor taking tokens from a shared `source`.
    pub fn from_shared(source: Arc<dyn TokenSource>) -> Self {
        Self { source }
    }
}

impl fmt::Debug for BearerInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerInterceptor").finish_non_exhaustive()
    }
}

impl Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let token = self.source.token()?;
        request.metadata_mut().insert("authorization", token.value);
        Ok(request)
    }
}

/// A [`TokenSource`] over an OAuth 2.0 client credentials source (feature `oauth`): answers the
/// token [`ClientCredentials`](auth_core::oauth::ClientCredentials) holds, without waiting.
///
/// The interceptor cannot wait for a token, so the source must hold one before the first call
/// and be kept fresh: start its background refresh and prime it once.
///
/// - No token yet: the call fails with `UNAVAILABLE` ("no access token yet").
/// - The token has expired and nothing refreshed it (no background refresh):
///   `UNAUTHENTICATED`.
/// - The token has expired and the token endpoint did not give a new one: `UNAVAILABLE` when
///   the endpoint is unreachable or failing (retrying later may succeed), `UNAUTHENTICATED`
///   when it refused the client (bad credentials, a scope it does not grant). The message is
///   the source's error, which never contains a secret or a token.
/// - A `DPoP` token: `UNAUTHENTICATED` ("the token endpoint issued a `DPoP` token; only bearer
///   tokens can be sent"). A DPoP proof names the request's method and URL (RFC 9449 section
///   7), and a tonic interceptor does not see the URI of the call, so this source cannot send
///   DPoP-bound tokens: do not build the source with `ClientCredentialsBuilder::dpop` for gRPC
///   calls (a source with a DPoP key only ever holds `DPoP` tokens). For HTTP clients,
///   auth-tower's `ClientCredentialsLayer` makes the proofs.
///
/// Each token is rendered into a [`BearerToken`] once and reused for every call until the next
/// token arrives.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use auth_core::oauth::{ClientAuth, ClientCredentials};
/// use auth_grpc::BearerInterceptor;
/// use auth_grpc::client::ClientCredentialsSource;
///
/// let source = ClientCredentials::builder(
///     "https://as.example/token",
///     ClientAuth::secret_basic("reports-client", "s3cret"),
/// )
/// .scope("reports:read")
/// .build()?;
/// let _refresh = source.spawn_refresh()?;
/// source.token().await?; // prime: the interceptor only answers what the source holds
///
/// let interceptor = BearerInterceptor::new(ClientCredentialsSource::new(source));
/// // let client = ReportsClient::with_interceptor(channel, interceptor);
/// # drop(interceptor); Ok(()) }
/// ```
#[cfg(feature = "oauth")]
pub struct ClientCredentialsSource {
    source: auth_core::oauth::ClientCredentials,
    rendered: std::sync::RwLock<Option<(auth_core::oauth::AccessToken, BearerToken)>>,
}

#[cfg(feature = "oauth")]
impl ClientCredentialsSource {
    /// A token source answering from `source`.
    pub fn new(source: auth_core::oauth::ClientCredentials) -> Self {
        Self {
            source,
            rendered: std::sync::RwLock::new(None),
        }
    }

    /// The underlying client credentials source.
    pub fn get_ref(&self) -> &auth_core::oauth::ClientCredentials {
        &self.source
    }

    fn unavailable(&self) -> Status {
        match self.source.last_error() {
            Some(e) if e.last_error().is_refused() => Status::unauthenticated(e.to_string()),
            Some(e) => Status::unavailable(e.to_string()),
            None if self.source.last_token().is_some() => Status::unauthenticated(
                "the access token expired and was not refreshed (start the source's background refresh with `spawn_refresh`)",
            ),
            None => Status::unavailable(
                "no access token yet: the client credentials source has not obtained one (prime it with `token().await` before the first call)",
            ),
        }
    }
}

#[cfg(feature = "oauth")]
impl fmt::Debug for ClientCredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsSource")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "oauth")]
impl TokenSource for ClientCredentialsSource {
    fn token(&self) -> Result<BearerToken, Status> {
        use auth_core::oauth::token_source::TokenType;
        use std::sync::PoisonError;

        let Some(current) = self.source.current() else {
            return Err(self.unavailable());
        };
        if let Some((token, bearer)) =
            &*self.rendered.read().unwrap_or_else(PoisonError::into_inner)
            && token.same_as(&current)
        {
            return Ok(bearer.clone());
        }
        if current.token_type() != TokenType::Bearer {
            return Err(Status::unauthenticated(format!(
                "the token endpoint issued a `{}` token; only bearer tokens can be sent",
                current.token_type()
            )));
        }
        let bearer = BearerToken::new(current.secret())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        *self
            .rendered
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some((current, bearer.clone()));
        Ok(bearer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn replaces_an_existing_authorization_entry() {
        let mut interceptor = BearerInterceptor::new(StaticToken::new("new.tok.en").unwrap());
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("authorization", "Bearer old".parse().unwrap());
        let request = interceptor.call(request).unwrap();
        let values: Vec<_> = request.metadata().get_all("authorization").iter().collect();
        assert_eq!(values, ["Bearer new.tok.en"]);
    }

    #[test]
    fn source_errors_fail_the_call() {
        let mut interceptor =
            BearerInterceptor::new(|| Err(Status::unavailable("token endpoint unreachable")));
        let err = interceptor.call(tonic::Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn invalid_tokens_are_refused_without_echo() {
        for bad in ["", "two words", "ä", "tab\there", "line\nbreak"] {
            let err = BearerToken::new(bad).unwrap_err().to_string();
            assert!(err.contains("b64token"), "{err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let token = StaticToken::new("secret.tok.en").unwrap();
        assert!(!format!("{token:?}").contains("secret"));
        let interceptor = BearerInterceptor::new(token);
        assert!(!format!("{interceptor:?}").contains("secret"));
    }
}

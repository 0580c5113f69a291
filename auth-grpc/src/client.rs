//! Outgoing calls: [`BearerInterceptor`] attaches `authorization: Bearer <token>` from a
//! [`TokenSource`].
//!
//! tonic's [`Interceptor`] is synchronous, so a [`TokenSource`] hands out a token it already
//! holds: [`StaticToken`] a fixed one; a source that fetches tokens (OAuth 2.0 client
//! credentials) keeps the current token in memory, refreshes it in the background ahead of
//! expiry, and answers from that snapshot. A [`BearerToken`] is rendered once into a ready
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

//! [`auth_error`]: an [`AuthError`] as a GraphQL error, rendered from the core's outcome table.
//!
//! The message is [`AuthError::description`] (safe to show: never the token, a key or an
//! internal detail); `extensions.code` is [`AuthError::graphql_code`]. A scope refusal also names
//! the missing scopes in `extensions.scope` (as the `scope` parameter of an RFC 6750 challenge
//! does), and a rate limit says when to retry in `extensions.retryAfter` (seconds). The
//! [`AuthError`] itself is kept as the error's `source`, for logs and tests; it is never
//! serialized.
//!
//! ```
//! use auth_core::{AuthError, TokenError};
//!
//! let err = auth_graphql::auth_error(&AuthError::InsufficientScope { required: "admin".into() });
//! assert_eq!(err.message, "the token lacks the required scope");
//! let ext = err.extensions.as_ref().unwrap();
//! assert_eq!(ext.get("code"), Some(&"FORBIDDEN".into()));
//! assert_eq!(ext.get("scope"), Some(&"admin".into()));
//!
//! let err = auth_graphql::auth_error(&AuthError::InvalidToken(TokenError::Expired));
//! assert_eq!(err.message, "the token has expired");
//! assert_eq!(err.extensions.unwrap().get("code"), Some(&"UNAUTHENTICATED".into()));
//! ```

use async_graphql::{Error, ErrorExtensionValues, Value};
use auth_core::AuthError;
use std::sync::Arc;

/// Builds the GraphQL error for `err`: message [`AuthError::description`], `extensions.code`
/// [`AuthError::graphql_code`], plus `extensions.scope` for `insufficient_scope` and
/// `extensions.retryAfter` for a rate limit. `err` is kept as the error's source.
pub fn auth_error(err: &AuthError) -> Error {
    let mut extensions = ErrorExtensionValues::default();
    for (name, value) in extension_values(err) {
        extensions.set(name, value);
    }
    Error {
        message: err.description().to_owned(),
        source: Some(Arc::new(err.clone())),
        extensions: Some(extensions),
    }
}

/// The `extensions` members of `err`'s GraphQL error, in order. The one source for
/// [`auth_error`] and for the bodies of requests refused before execution.
pub(crate) fn extension_values(err: &AuthError) -> impl Iterator<Item = (&'static str, Value)> {
    let scope = match err {
        AuthError::InsufficientScope { required } => {
            Some(("scope", Value::from(required.as_str())))
        }
        _ => None,
    };
    let retry_after = err
        .retry_after_secs()
        .map(|secs| ("retryAfter", Value::from(secs)));
    std::iter::once(("code", Value::from(err.graphql_code())))
        .chain(scope)
        .chain(retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_outcome_has_its_code() {
        let cases = [
            (AuthError::MissingCredentials, "UNAUTHENTICATED"),
            (
                AuthError::InvalidRequest(auth_core::RequestError::DuplicateAuthorization),
                "UNAUTHENTICATED",
            ),
            (
                AuthError::InvalidToken(auth_core::TokenError::BadSignature),
                "UNAUTHENTICATED",
            ),
            (
                AuthError::Forbidden {
                    reason: "no".into(),
                },
                "FORBIDDEN",
            ),
            (
                AuthError::RateLimited {
                    retry_after: Duration::from_millis(1500),
                    status: None,
                },
                "RATE_LIMITED",
            ),
            (AuthError::Unavailable("jwks"), "SERVICE_UNAVAILABLE"),
            (AuthError::Misconfigured("no gate"), "INTERNAL_SERVER_ERROR"),
        ];
        for (err, code) in cases {
            let gql = auth_error(&err);
            let ext = gql.extensions.as_ref().expect("extensions");
            assert_eq!(ext.get("code"), Some(&Value::from(code)), "{err:?}");
            assert_eq!(gql.message, err.description());
            let source = gql.source.as_ref().expect("source");
            assert_eq!(source.downcast_ref::<AuthError>(), Some(&err));
        }
    }

    #[test]
    fn internals_stay_out_of_the_message() {
        let err = AuthError::InvalidToken(auth_core::TokenError::Malformed("header is not base64"));
        assert_eq!(auth_error(&err).message, "the token is malformed");
        let err = AuthError::Unavailable("connect to https://idp.internal:8443 refused");
        assert_eq!(
            auth_error(&err).message,
            "authentication is temporarily unavailable"
        );
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let err = AuthError::RateLimited {
            retry_after: Duration::from_millis(1500),
            status: None,
        };
        let gql = auth_error(&err);
        let ext = gql.extensions.expect("extensions");
        assert_eq!(ext.get("retryAfter"), Some(&Value::from(2u64)));
        assert_eq!(ext.get("scope"), None);
    }
}

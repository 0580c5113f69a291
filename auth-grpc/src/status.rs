//! Rendering an [`AuthError`] as a gRPC [`Status`]: the code, a safe message and the RFC 6750
//! challenge, all from the core's outcome table; nothing here decides.

use auth_core::{AuthError, GrpcCode};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The `www-authenticate` metadata key: gRPC metadata travels as HTTP/2 headers, so the RFC 6750
/// challenge keeps its HTTP name.
const WWW_AUTHENTICATE: &str = "www-authenticate";
/// The `retry-after` metadata key (seconds), sent with `RESOURCE_EXHAUSTED`.
const RETRY_AFTER: &str = "retry-after";

/// The gRPC status for `error`, with challenges for `realm`.
///
/// - code: [`AuthError::grpc_code`];
/// - message: [`AuthError::description`] (safe to show: never the credential);
/// - metadata `www-authenticate`: [`AuthError::www_authenticate`], when the outcome has a
///   challenge (`UNAUTHENTICATED`, `PERMISSION_DENIED`);
/// - metadata `retry-after`: [`AuthError::retry_after_secs`] (`RESOURCE_EXHAUSTED`).
///
/// The layer answers with this; handlers that make decisions of their own (with
/// [`Gate::enforce`](auth_core::Gate::enforce)) can answer the same way.
///
/// ```
/// use auth_core::{AuthError, TokenError};
///
/// let status = auth_grpc::error_status(&AuthError::InvalidToken(TokenError::Expired), "api");
/// assert_eq!(status.code(), tonic::Code::Unauthenticated);
/// assert_eq!(status.message(), "the token has expired");
/// assert_eq!(
///     status.metadata().get("www-authenticate").unwrap(),
///     r#"Bearer realm="api", error="invalid_token", error_description="the token has expired""#,
/// );
///
/// let denied = AuthError::InsufficientScope { required: "admin".into() };
/// let status = auth_grpc::error_status(&denied, "api");
/// assert_eq!(status.code(), tonic::Code::PermissionDenied);
/// assert!(status.metadata().get("www-authenticate").unwrap().to_str().unwrap()
///     .ends_with(r#"scope="admin""#));
/// ```
pub fn error_status(error: &AuthError, realm: &str) -> Status {
    if error.grpc_code() == auth_core::GrpcCode::Internal {
        // A server bug (such as a missing layer): say so in the log, not to the caller.
        tracing::error!(target: "auth::grpc", error = %error, "authentication misconfigured");
    }
    let mut status = Status::new(code(error.grpc_code()), error.description());
    if let Some(challenge) = error.www_authenticate(realm)
        && let Ok(value) = MetadataValue::try_from(challenge)
    {
        status.metadata_mut().insert(WWW_AUTHENTICATE, value);
    }
    if let Some(secs) = error.retry_after_secs() {
        status
            .metadata_mut()
            .insert(RETRY_AFTER, MetadataValue::from(secs));
    }
    status
}

/// The tonic code of a core code: [`GrpcCode`] carries the numeric `google.rpc.Code` values.
fn code(code: GrpcCode) -> Code {
    Code::from_i32(code as i32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use auth_core::{RequestError, TokenError};
    use std::time::Duration;

    fn challenge(status: &Status) -> Option<&str> {
        status
            .metadata()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn every_outcome_maps_from_the_core() {
        let cases = [
            (AuthError::MissingCredentials, Code::Unauthenticated),
            (
                AuthError::InvalidRequest(RequestError::DuplicateAuthorization),
                Code::Unauthenticated,
            ),
            (
                AuthError::InvalidToken(TokenError::BadSignature),
                Code::Unauthenticated,
            ),
            (
                AuthError::InsufficientScope {
                    required: "admin".into(),
                },
                Code::PermissionDenied,
            ),
            (
                AuthError::Forbidden {
                    reason: "tenant mismatch".into(),
                },
                Code::PermissionDenied,
            ),
            (
                AuthError::RateLimited {
                    retry_after: Duration::from_millis(1500),
                    status: None,
                },
                Code::ResourceExhausted,
            ),
            (AuthError::Unavailable("jwks down"), Code::Unavailable),
            (AuthError::Misconfigured("no layer"), Code::Internal),
        ];
        for (error, expected) in cases {
            let status = error_status(&error, "api");
            assert_eq!(status.code(), expected, "{error:?}");
            assert_eq!(status.message(), error.description(), "{error:?}");
            assert_eq!(
                challenge(&status),
                error.www_authenticate("api").as_deref(),
                "{error:?}"
            );
        }
    }

    #[test]
    fn missing_credentials_challenge_has_no_error_code() {
        let status = error_status(&AuthError::MissingCredentials, "demo");
        assert_eq!(challenge(&status), Some(r#"Bearer realm="demo""#));
    }

    #[test]
    fn internal_details_stay_out_of_the_status() {
        let status = error_status(&AuthError::Unavailable("jwks.example is down"), "api");
        assert!(!status.message().contains("jwks.example"));
        assert!(challenge(&status).is_none());
        let status = error_status(&AuthError::Misconfigured("layer missing"), "api");
        assert_eq!(status.message(), "internal server error");
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let status = error_status(
            &AuthError::RateLimited {
                retry_after: Duration::from_millis(1500),
                status: None,
            },
            "api",
        );
        assert_eq!(status.metadata().get(RETRY_AFTER).unwrap(), "2");
        assert!(challenge(&status).is_none());
    }

    #[test]
    fn status_renders_as_a_trailers_only_response() {
        let res: http::Response<tonic::body::Body> =
            error_status(&AuthError::MissingCredentials, "api").into_http();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
    }
}

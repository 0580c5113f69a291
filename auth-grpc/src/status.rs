//! Rendering an [`AuthError`] as a gRPC [`Status`]: the code, a safe message and the RFC 6750
//! challenge, all from the core's outcome table; nothing here decides.

use auth_core::{AuthError, Gate, GrpcCode};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The gRPC status for `error`, with challenges for `realm`.
///
/// - code: [`AuthError::grpc_code`];
/// - message: [`AuthError::description`] (safe to show: never the credential);
/// - metadata `www-authenticate`: [`AuthError::www_authenticate`], when the outcome has a
///   challenge (`UNAUTHENTICATED`, `PERMISSION_DENIED`);
/// - metadata `retry-after`: [`AuthError::retry_after_secs`] (`RESOURCE_EXHAUSTED`);
/// - metadata `ratelimit-policy` and `ratelimit`: the refusing limit's
///   [`RateLimitStatus::headers`](auth_core::ratelimit::RateLimitStatus::headers), when it is
///   known (`RESOURCE_EXHAUSTED`).
///
/// gRPC metadata travels as HTTP/2 headers, so these are exactly the headers an HTTP adapter
/// sends ([`AuthError::http_headers`]), under their HTTP names.
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
    render(error, error.http_headers(realm))
}

/// The status for `error` as `gate` answers it: [`error_status`] with the gate's realm, plus
/// the `DPoP` challenge and `dpop-nonce` when the gate accepts DPoP ([`Gate::http_headers`]).
pub fn gate_error_status(error: &AuthError, gate: &Gate) -> Status {
    render(error, gate.http_headers(error))
}

fn render(error: &AuthError, extra: Vec<(&'static str, String)>) -> Status {
    if error.grpc_code() == auth_core::GrpcCode::Internal {
        // A server bug (such as a missing layer): say so in the log, not to the caller.
        tracing::error!(target: "auth::grpc", error = %error, "authentication misconfigured");
    }
    let mut status = Status::new(code(error.grpc_code()), error.description());
    for (name, value) in extra {
        if let Ok(value) = MetadataValue::try_from(value) {
            // `append`: a gate may challenge with two schemes (Bearer and DPoP).
            status.metadata_mut().append(name, value);
        }
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
    use auth_core::ratelimit::RateLimitStatus;
    use auth_core::{RequestError, TokenError};
    use std::time::Duration;

    const WWW_AUTHENTICATE: &str = "www-authenticate";
    const RETRY_AFTER: &str = "retry-after";

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
        assert!(status.metadata().get("ratelimit").is_none());
    }

    #[test]
    fn rate_limited_carries_the_refusing_limit() {
        let limit = RateLimitStatus {
            policy: "key-quota",
            limit: 100,
            window_secs: 86_400,
            remaining: 0,
            reset_secs: 3_600,
        };
        let status = error_status(
            &AuthError::RateLimited {
                retry_after: Duration::from_secs(3_600),
                status: Some(limit),
            },
            "api",
        );
        let md = status.metadata();
        assert_eq!(md.get(RETRY_AFTER).unwrap(), "3600");
        assert_eq!(
            md.get("ratelimit-policy").unwrap(),
            "\"key-quota\";q=100;w=86400"
        );
        assert_eq!(md.get("ratelimit").unwrap(), "\"key-quota\";r=0;t=3600");
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

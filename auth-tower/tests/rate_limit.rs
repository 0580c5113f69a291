//! `AuthLayer` sends the `RateLimit-Policy` and `RateLimit` headers of the principal's
//! rate-limit state on every answer to an authenticated request, on the cached and the slow
//! path alike, and nothing when no limit applied.
#![allow(clippy::unwrap_used)]

use auth_core::authenticator::OwnedCredentials;
use auth_core::policy::Scopes;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{AuthError, AuthMethod, Authenticator, BoxFuture, Credentials, Gate, Principal};
use auth_tower::AuthLayer;
use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use tower::ServiceExt;

const STATUS: RateLimitStatus = RateLimitStatus {
    policy: "key-rate",
    limit: 10,
    window_secs: 60,
    remaining: 7,
    reset_secs: 18,
};
const POLICY_HEADER: &str = "\"key-rate\";q=10;w=60";
const RATELIMIT_HEADER: &str = "\"key-rate\";r=7;t=18";

/// Accepts any bearer token: `fast-*` from its "cache" (no future), others through the slow
/// path; a token containing `limited` gets a principal with [`STATUS`].
struct Limited;

fn principal(token: &str) -> Principal {
    let p = Principal::builder(token, AuthMethod::ApiKey)
        .scopes(["read"])
        .build();
    p.with_rate_limit(token.contains("limited").then_some(STATUS))
}

impl Authenticator for Limited {
    fn method(&self) -> AuthMethod {
        AuthMethod::ApiKey
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        let token = std::str::from_utf8(credentials.bearer_unchecked()?).ok()?;
        token.starts_with("fast-").then(|| Ok(principal(token)))
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            credentials
                .bearer
                .as_deref()
                .map(principal)
                .ok_or(AuthError::MissingCredentials)
        })
    }
}

fn app(gate: Gate) -> Router {
    let auth = AuthLayer::new(gate);
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/teapot",
            get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
        )
        .route(
            "/admin",
            get(|| async { "admin" }).route_layer(auth.require(Scopes::all(["admin"]))),
        )
        .layer(auth)
}

async fn call(app: &Router, path: &str, token: &str) -> http::Response<Body> {
    let req = http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

fn rate_limit_headers(res: &http::Response<Body>) -> (Option<&str>, Option<&str>) {
    let header = |name| res.headers().get(name).map(|v| v.to_str().unwrap());
    (header("ratelimit-policy"), header("ratelimit"))
}

#[tokio::test]
async fn allowed_answers_carry_the_principals_rate_limit() {
    let app = app(Gate::builder(Limited).realm("api").build());
    for token in ["fast-limited", "slow-limited"] {
        let res = call(&app, "/", token).await;
        assert_eq!(res.status(), 200, "{token}");
        assert_eq!(
            rate_limit_headers(&res),
            (Some(POLICY_HEADER), Some(RATELIMIT_HEADER)),
            "{token}"
        );
    }
}

#[tokio::test]
async fn whatever_the_handler_answers() {
    let app = app(Gate::builder(Limited).realm("api").build());
    for token in ["fast-limited", "slow-limited"] {
        let res = call(&app, "/teapot", token).await;
        assert_eq!(res.status(), 418, "{token}");
        assert_eq!(
            rate_limit_headers(&res),
            (Some(POLICY_HEADER), Some(RATELIMIT_HEADER))
        );
        // A route policy's 403 is the inner service's answer too.
        let res = call(&app, "/admin", token).await;
        assert_eq!(res.status(), 403, "{token}");
        assert_eq!(
            rate_limit_headers(&res),
            (Some(POLICY_HEADER), Some(RATELIMIT_HEADER))
        );
    }
}

#[tokio::test]
async fn the_gate_wide_policys_refusal_carries_them_too() {
    let gate = Gate::builder(Limited)
        .realm("api")
        .policy(Scopes::all(["admin"]))
        .build();
    let app = app(gate);
    for token in ["fast-limited", "slow-limited"] {
        let res = call(&app, "/", token).await;
        assert_eq!(res.status(), 403, "{token}");
        assert_eq!(
            rate_limit_headers(&res),
            (Some(POLICY_HEADER), Some(RATELIMIT_HEADER))
        );
    }
}

#[tokio::test]
async fn no_headers_without_a_limit() {
    let app = app(Gate::builder(Limited).realm("api").build());
    for token in ["fast-plain", "slow-plain"] {
        let res = call(&app, "/", token).await;
        assert_eq!(res.status(), 200, "{token}");
        assert_eq!(rate_limit_headers(&res), (None, None), "{token}");
    }
    // Nor on an anonymous refusal.
    let res = app
        .clone()
        .oneshot(http::Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(rate_limit_headers(&res), (None, None));
}

//! `AuthMiddleware` sends the `RateLimit-Policy` and `RateLimit` headers of the principal's
//! rate-limit state on every answer to an authenticated request, on the cached and the slow
//! path alike, and nothing when no limit applied.
#![allow(clippy::unwrap_used)]

use actix_web::dev::ServiceResponse;
use actix_web::{App, HttpResponse, test, web};
use auth_actix::AuthMiddleware;
use auth_core::authenticator::OwnedCredentials;
use auth_core::policy::Scopes;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{AuthError, AuthMethod, Authenticator, BoxFuture, Credentials, Gate, Principal};

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

/// `/`, `/teapot` (418) and `/admin` (a route policy) behind a middleware on `gate`.
async fn call(gate: Gate, path: &str, token: Option<&str>) -> ServiceResponse {
    let auth = AuthMiddleware::new(gate);
    let app = test::init_service(
        App::new().service(
            web::scope("")
                .wrap(auth.clone())
                .route("/", web::get().to(|| async { "ok" }))
                .route(
                    "/teapot",
                    web::get().to(|| async { HttpResponse::ImATeapot().body("short and stout") }),
                )
                .service(
                    web::resource("/admin")
                        .wrap(auth.require(Scopes::all(["admin"])))
                        .route(web::get().to(|| async { "admin" })),
                ),
        ),
    )
    .await;
    let mut req = test::TestRequest::get().uri(path);
    if let Some(token) = token {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    test::call_service(&app, req.to_request()).await
}

fn gate() -> Gate {
    Gate::builder(Limited).realm("api").build()
}

fn rate_limit_headers(res: &ServiceResponse) -> (Option<String>, Option<String>) {
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (header("ratelimit-policy"), header("ratelimit"))
}

fn expected() -> (Option<String>, Option<String>) {
    (Some(POLICY_HEADER.into()), Some(RATELIMIT_HEADER.into()))
}

#[actix_web::test]
async fn allowed_answers_carry_the_principals_rate_limit() {
    for token in ["fast-limited", "slow-limited"] {
        let res = call(gate(), "/", Some(token)).await;
        assert_eq!(res.status(), 200, "{token}");
        assert_eq!(rate_limit_headers(&res), expected(), "{token}");
        assert_eq!(test::read_body(res).await, "ok");
    }
}

#[actix_web::test]
async fn whatever_the_handler_answers() {
    for token in ["fast-limited", "slow-limited"] {
        let res = call(gate(), "/teapot", Some(token)).await;
        assert_eq!(res.status(), 418, "{token}");
        assert_eq!(rate_limit_headers(&res), expected(), "{token}");
        // A route policy's 403 is the wrapped service's answer too.
        let res = call(gate(), "/admin", Some(token)).await;
        assert_eq!(res.status(), 403, "{token}");
        assert_eq!(rate_limit_headers(&res), expected(), "{token}");
    }
}

#[actix_web::test]
async fn the_gate_wide_policys_refusal_carries_them_too() {
    for token in ["fast-limited", "slow-limited"] {
        let gate = Gate::builder(Limited)
            .realm("api")
            .policy(Scopes::all(["admin"]))
            .build();
        let res = call(gate, "/", Some(token)).await;
        assert_eq!(res.status(), 403, "{token}");
        assert_eq!(rate_limit_headers(&res), expected(), "{token}");
    }
}

#[actix_web::test]
async fn no_headers_without_a_limit() {
    for token in ["fast-plain", "slow-plain"] {
        let res = call(gate(), "/", Some(token)).await;
        assert_eq!(res.status(), 200, "{token}");
        assert_eq!(rate_limit_headers(&res), (None, None), "{token}");
    }
    // Nor on an anonymous refusal.
    let res = call(gate(), "/", None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(rate_limit_headers(&res), (None, None));
}

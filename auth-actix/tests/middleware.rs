//! The actix-web adapter in process (`test::init_service`): every outcome of the core's table,
//! extractors, route policies with path parameters, optional gates, guards, the slow
//! (asynchronous) verification path, and a missing middleware.
#![allow(clippy::unwrap_used)]

mod common;

use actix_web::http::Method;
use actix_web::{App, HttpResponse, test, web};
use auth_actix::{AuthMiddleware, Claims, OptionalPrincipal, PolicyGuard, Principal, Require};
use auth_core::audit::{AuditEvent, AuditSink};
use auth_core::authenticator::OwnedCredentials;
use auth_core::jwt::Jwt;
use auth_core::policy::{Rule, Scopes};
use auth_core::{
    AuthError, AuthMethod, Authenticator, BoxFuture, Credentials, Gate, RequestError, TokenError,
};
use common::{REALM, Reply, TestIssuer};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Custom {
    sub: String,
    department: String,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct NeedsAge {
    age: u32,
}

async fn whoami(p: Principal) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "subject": p.subject(),
        "scopes": p.scopes(),
        "tenant": p.tenant(),
    }))
}

async fn subject_or_anonymous(OptionalPrincipal(p): OptionalPrincipal) -> String {
    p.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
}

async fn ok() -> &'static str {
    "ok"
}

/// The routes of the axum scenarios (`tests/tests/axum_http.rs`), plus actix-specific ones.
fn routes(cfg: &mut web::ServiceConfig, jwt: &Jwt) {
    let required = AuthMiddleware::new(Gate::builder(jwt.clone()).realm(REALM).build());
    let optional = AuthMiddleware::new(Gate::builder(jwt.clone()).realm(REALM).optional().build());
    let tenant = Rule::tenant_matches("path:tenant");
    cfg.service(
        web::resource("/whoami")
            .wrap(required.clone())
            .route(web::get().to(whoami)),
    )
    .service(
        web::resource("/admin")
            .wrap(required.require(Scopes::all(["admin"])))
            .wrap(required.clone())
            .route(web::get().to(ok)),
    )
    .service(
        web::resource("/reports")
            .wrap(Require::any_scope(["reports", "admin"]))
            .wrap(required.clone())
            .route(web::get().to(ok)),
    )
    .service(
        web::resource("/custom").wrap(required.clone()).route(
            web::get().to(|Claims(c): Claims<Custom>| async move {
                format!("{}@{}", c.sub, c.department)
            }),
        ),
    )
    .service(
        web::resource("/needs-age")
            .wrap(required.clone())
            .route(web::get().to(|_: Claims<NeedsAge>| async { "unreachable" })),
    )
    .service(
        web::resource("/tenants/{tenant}/items")
            .wrap(required.require(tenant.clone()))
            .wrap(required.clone())
            .route(web::get().to(ok)),
    )
    .service(
        web::scope("/orgs/{tenant}")
            .wrap(required.require(tenant))
            .wrap(required.clone())
            .route("/items", web::get().to(ok)),
    )
    .service(
        // The policy on the route only: other methods get 405, not 403.
        web::resource("/route-level").wrap(required.clone()).route(
            web::get()
                .to(ok)
                .wrap(required.require(Scopes::all(["admin"]))),
        ),
    )
    .service(
        web::resource("/maybe")
            .wrap(optional.clone())
            .route(web::get().to(subject_or_anonymous)),
    )
    .service(
        web::resource("/maybe/admin")
            .wrap(optional.require(Scopes::all(["admin"])))
            .wrap(optional.clone())
            .route(web::get().to(ok)),
    )
    .service(web::resource("/maybe/option").wrap(optional).route(
        web::get().to(|p: Option<Principal>| async move {
            p.map_or("none".to_owned(), |p| p.subject().to_owned())
        }),
    ))
    .route("/healthz", web::get().to(ok))
    .route("/nolayer", web::get().to(whoami))
    .route("/nolayer/optional", web::get().to(subject_or_anonymous))
    .route(
        "/nolayer/claims",
        web::get().to(|Claims(c): Claims<Custom>| async move { c.sub }),
    )
    .route(
        "/nolayer/option",
        web::get().to(|p: Option<Principal>| async move { format!("{}", p.is_some()) }),
    )
    .service(
        web::resource("/nolayer/require")
            .wrap(Require::all_scopes(["admin"]))
            .route(web::get().to(ok)),
    );
}

macro_rules! app {
    ($jwt:expr) => {{
        let jwt = $jwt;
        test::init_service(App::new().configure(|cfg| routes(cfg, &jwt))).await
    }};
}

fn get(path: &str) -> test::TestRequest {
    test::TestRequest::get().uri(path)
}

fn bearer(path: &str, token: &str) -> test::TestRequest {
    get(path).insert_header(("authorization", format!("Bearer {token}")))
}

/// Sends a request to an app and looks at the answer.
macro_rules! send {
    ($app:expr, $req:expr) => {
        Reply::of(test::call_service($app, $req.to_request()).await).await
    };
}

fn invalid_token(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    assert!(
        r.challenge()
            .starts_with(&format!(r#"Bearer realm="{REALM}", error="invalid_token""#)),
        "{what}: {r:?}"
    );
    assert_eq!(r.json()["error"], "invalid_token", "{what}");
}

#[actix_web::test]
async fn valid_token_is_accepted_and_then_served_from_the_cache() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let token = issuer.mint(json!({"scope": "read admin"}));
    let first = send!(&app, bearer("/whoami", &token));
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        first.json(),
        json!({"subject": "alice", "scopes": ["read", "admin"], "tenant": "acme"})
    );
    let again = send!(&app, bearer("/whoami", &token));
    assert_eq!(again, first);
    assert_eq!(send!(&app, bearer("/admin", &token)).status, 200);
    assert_eq!(send!(&app, bearer("/reports", &token)).status, 200);
}

#[actix_web::test]
async fn missing_credentials_get_a_bare_challenge() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let r = send!(&app, get("/whoami"));
    assert_eq!(r.status, 401);
    assert_eq!(r.challenge(), format!(r#"Bearer realm="{REALM}""#));
    assert_eq!(r.content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(r.body, AuthError::MissingCredentials.problem_json());
    // Another scheme is not a bearer credential.
    let basic = send!(
        &app,
        get("/whoami").insert_header(("authorization", "Basic YTpi"))
    );
    assert_eq!(basic, r);
    // Open routes stay open.
    assert_eq!(send!(&app, get("/healthz")).status, 200);
}

#[actix_web::test]
async fn malformed_requests_are_invalid_request() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let token = issuer.token();
    let two = send!(
        &app,
        get("/whoami")
            .append_header(("authorization", format!("Bearer {token}")))
            .append_header(("authorization", format!("Bearer {token}")))
    );
    assert_eq!(two.status, 400, "{two:?}");
    assert_eq!(
        two.challenge(),
        format!(
            r#"Bearer realm="{REALM}", error="invalid_request", error_description="more than one Authorization header""#
        )
    );
    assert_eq!(
        two.body,
        AuthError::InvalidRequest(RequestError::DuplicateAuthorization).problem_json()
    );
    for bad in ["Bearer", "Bearer a b", "Bearer a,b", "Bearer {x}"] {
        let r = send!(&app, get("/whoami").insert_header(("authorization", bad)));
        assert_eq!(r.status, 400, "{bad:?}: {r:?}");
        assert!(
            r.challenge().contains(r#"error="invalid_request""#),
            "{bad:?}"
        );
    }
}

#[actix_web::test]
async fn bad_tokens_are_invalid_token() {
    let issuer = TestIssuer::new();
    let other = TestIssuer::new();
    let app = app!(issuer.jwt());
    let cases = [
        ("garbage", "abc.def.ghi".to_owned()),
        ("foreign key", other.token()),
        ("expired", issuer.mint(json!({"exp": common::now() - 3600}))),
        (
            "wrong audience",
            issuer.mint(json!({"aud": "someone-else"})),
        ),
        (
            "wrong issuer",
            issuer.mint(json!({"iss": "https://evil.test"})),
        ),
    ];
    for (what, token) in &cases {
        let r = send!(&app, bearer("/whoami", token));
        invalid_token(&r, what);
        assert!(
            !r.body.contains(token.as_str()),
            "{what}: the token is echoed"
        );
    }
    let expired = send!(&app, bearer("/whoami", &cases[2].1));
    assert_eq!(
        expired.body,
        AuthError::InvalidToken(TokenError::Expired).problem_json()
    );
}

#[actix_web::test]
async fn insufficient_scope_is_403_with_the_required_scope() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let reader = issuer.token();
    let r = send!(&app, bearer("/admin", &reader));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.challenge(),
        format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope", error_description="the token lacks the required scope", scope="admin""#
        )
    );
    assert_eq!(r.json()["error"], "insufficient_scope");
    // A standalone `Require` does not know the realm: RFC 6750 makes it optional.
    let r = send!(&app, bearer("/reports", &reader));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.challenge(),
        r#"Bearer error="insufficient_scope", error_description="the token lacks the required scope", scope="reports admin""#
    );
    // A policy on one route: other methods are 405, never 403.
    assert_eq!(send!(&app, bearer("/route-level", &reader)).status, 403);
    let post = bearer("/route-level", &reader).method(Method::POST);
    assert_eq!(send!(&app, post).status, 405);
    let admin = issuer.mint(json!({"scope": "admin"}));
    assert_eq!(send!(&app, bearer("/route-level", &admin)).status, 200);
}

#[actix_web::test]
async fn optional_gate() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let anonymous = send!(&app, get("/maybe"));
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (200, "anonymous")
    );
    let token = issuer.token();
    assert_eq!(send!(&app, bearer("/maybe", &token)).body, "alice");
    invalid_token(&send!(&app, bearer("/maybe", "abc.def.ghi")), "optional");
    let two = get("/maybe")
        .append_header(("authorization", "Bearer a"))
        .append_header(("authorization", "Bearer b"));
    assert_eq!(send!(&app, two).status, 400);
    // A policy behind an optional gate: anonymous callers must authenticate first.
    let r = send!(&app, get("/maybe/admin"));
    assert_eq!(r.status, 401);
    assert_eq!(r.challenge(), format!(r#"Bearer realm="{REALM}""#));
    assert_eq!(send!(&app, bearer("/maybe/admin", &token)).status, 403);
    // actix-web's own `Option<T>`: fine behind a middleware.
    assert_eq!(send!(&app, get("/maybe/option")).body, "none");
    assert_eq!(send!(&app, bearer("/maybe/option", &token)).body, "alice");
}

#[actix_web::test]
async fn claims_extractor() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let r = send!(&app, bearer("/custom", &issuer.token()));
    assert_eq!((r.status, r.body.as_str()), (200, "alice@research"));
    let r = send!(&app, bearer("/needs-age", &issuer.token()));
    assert_eq!(r.status, 401);
    // As in auth-tower: after authentication the realm is not known to the extractor.
    let shape = AuthError::InvalidToken(TokenError::ClaimsShape);
    assert_eq!(r.challenge, shape.www_authenticate(""));
    assert!(r.challenge().starts_with(r#"Bearer error="invalid_token""#));
    assert_eq!(
        r.body,
        AuthError::InvalidToken(TokenError::ClaimsShape).problem_json()
    );
}

#[actix_web::test]
async fn tenant_from_a_path_parameter() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let token = issuer.token();
    for base in ["/tenants/acme/items", "/orgs/acme/items"] {
        assert_eq!(send!(&app, bearer(base, &token)).status, 200, "{base}");
    }
    for base in ["/tenants/globex/items", "/orgs/globex/items"] {
        let r = send!(&app, bearer(base, &token));
        assert_eq!(r.status, 403, "{base}");
        assert_eq!(
            r.challenge(),
            format!(
                r#"Bearer realm="{REALM}", error="insufficient_scope", error_description="the request is not allowed""#
            )
        );
    }
    let no_tenant = issuer.mint(json!({"tenant": null}));
    assert_eq!(
        send!(&app, bearer("/tenants/acme/items", &no_tenant)).status,
        403
    );
}

#[actix_web::test]
async fn a_missing_middleware_is_a_server_error() {
    let issuer = TestIssuer::new();
    let app = app!(issuer.jwt());
    let token = issuer.token();
    for path in [
        "/nolayer",
        "/nolayer/optional",
        "/nolayer/claims",
        "/nolayer/require",
    ] {
        for req in [get(path), bearer(path, &token)] {
            let r = send!(&app, req);
            assert_eq!(r.status, 500, "{path}: {r:?}");
            assert_eq!(r.challenge, None, "{path}");
            assert_eq!(
                r.json()["detail"],
                "internal server error",
                "{path}: nothing internal is shown"
            );
        }
    }
    // actix-web's `Option<T>` turns every extractor error into `None` (the error is logged):
    // the reason `OptionalPrincipal` exists.
    assert_eq!(send!(&app, bearer("/nolayer/option", &token)).body, "false");
}

#[actix_web::test]
async fn gate_wide_policy_sees_method_path_and_peer() {
    let issuer = TestIssuer::new();
    let policy = Rule::method(["GET"])
        .and(Rule::path("/api/*"))
        .and(Rule::source_in(["192.0.2.0/24".parse().unwrap()]));
    let gate = Gate::builder(issuer.jwt())
        .realm(REALM)
        .policy(policy)
        .build();
    let app = test::init_service(
        App::new()
            .wrap(AuthMiddleware::new(gate))
            .route("/api/x", web::route().to(ok))
            .route("/other", web::get().to(ok)),
    )
    .await;
    let token = issuer.token();
    let from =
        |req: test::TestRequest, ip: &str| req.peer_addr(format!("{ip}:5000").parse().unwrap());
    assert_eq!(
        send!(&app, from(bearer("/api/x", &token), "192.0.2.1")).status,
        200
    );
    let denied = [
        from(bearer("/api/x", &token), "198.51.100.1"),
        from(bearer("/api/x", &token).method(Method::POST), "192.0.2.1"),
        from(bearer("/other", &token), "192.0.2.1"),
    ];
    for req in denied {
        let r = send!(&app, req);
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.challenge().starts_with(&format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope""#
        )));
    }
    // No credentials: 401 before any policy.
    assert_eq!(send!(&app, get("/api/x")).status, 401);
}

#[actix_web::test]
async fn policy_guard_routes_instead_of_refusing() {
    let issuer = TestIssuer::new();
    let gate = Gate::builder(issuer.jwt()).optional().build();
    let app = test::init_service(
        App::new()
            .service(
                web::resource("/report")
                    .guard(PolicyGuard::all_scopes(["admin"]))
                    .to(|| async { "full" }),
            )
            .route("/report", web::get().to(|| async { "summary" }))
            .service(
                web::scope("/staff")
                    .guard(PolicyGuard::new(Rule::any_scope(["admin"])))
                    .route("", web::get().to(ok)),
            )
            .wrap(AuthMiddleware::new(gate)),
    )
    .await;
    let admin = issuer.mint(json!({"scope": "admin"}));
    assert_eq!(send!(&app, bearer("/report", &admin)).body, "full");
    assert_eq!(
        send!(&app, bearer("/report", &issuer.token())).body,
        "summary"
    );
    assert_eq!(send!(&app, get("/report")).body, "summary");
    assert_eq!(send!(&app, bearer("/staff", &admin)).status, 200);
    assert_eq!(send!(&app, bearer("/staff", &issuer.token())).status, 404);
}

/// An authenticator that always takes the slow path: it answers after yielding, with the
/// outcome the token names.
struct Slow;

impl Authenticator for Slow {
    fn method(&self) -> AuthMethod {
        AuthMethod::ApiKey
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<auth_core::Principal, AuthError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            match credentials.bearer.as_deref() {
                Some("limited") => Err(AuthError::RateLimited {
                    retry_after: Duration::from_millis(1500),
                    status: None,
                }),
                Some("down") => Err(AuthError::Unavailable("test store down")),
                Some("bad") => Err(AuthError::InvalidToken(TokenError::Revoked)),
                Some(sub) => Ok(auth_core::Principal::builder(sub, AuthMethod::ApiKey)
                    .scopes(["read"])
                    .build()),
                None => Err(AuthError::MissingCredentials),
            }
        })
    }
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<(String, &'static str)>>>);

impl AuditSink for Recorder {
    fn record(&self, event: &AuditEvent<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((event.outcome.as_str().to_owned(), event.reason));
    }
}

#[actix_web::test]
async fn slow_path_rate_limits_unavailability_and_audit() {
    let audit = Recorder::default();
    let auth = AuthMiddleware::new(
        Gate::builder(Slow)
            .realm(REALM)
            .audit(audit.clone())
            .build(),
    );
    let app = test::init_service(
        App::new()
            .service(
                web::resource("/admin")
                    .wrap(auth.require(Scopes::all(["admin"])))
                    .route(web::get().to(ok)),
            )
            .route("/whoami", web::get().to(whoami))
            .wrap(auth),
    )
    .await;

    let r = send!(&app, bearer("/whoami", "carol"));
    assert_eq!(
        (r.status, r.json()["subject"].as_str()),
        (200, Some("carol"))
    );

    let limited = send!(&app, bearer("/whoami", "limited"));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.retry_after.as_deref(), Some("2"));
    assert_eq!(limited.challenge, None);
    assert_eq!(
        limited.content_type.as_deref(),
        Some("application/problem+json")
    );

    let down = send!(&app, bearer("/whoami", "down"));
    assert_eq!((down.status, down.challenge.as_deref()), (503, None));
    assert!(
        !down.body.contains("test store down"),
        "internal detail shown"
    );

    invalid_token(&send!(&app, bearer("/whoami", "bad")), "revoked");
    assert_eq!(send!(&app, bearer("/admin", "carol")).status, 403);

    let events = audit.0.lock().unwrap().clone();
    let expected: Vec<(String, &str)> = [
        ("allowed", "ok"),
        ("denied", "rate_limited"),
        ("denied", "unavailable"),
        ("denied", "revoked"),
        ("allowed", "ok"),
        ("denied", "insufficient_scope"),
    ]
    .into_iter()
    .map(|(o, r)| (o.to_owned(), r))
    .collect();
    assert_eq!(
        events, expected,
        "the route policy records to the gate's sink"
    );
}

//! The actix-web adapter answers exactly like the tower/axum adapter: the same routes are built
//! with both, the same requests sent to both, and status, challenge, `Retry-After`,
//! content type and body compared byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use actix_web::{App, test, web};
use auth_actix::{AuthMiddleware, OptionalPrincipal, Require};
use auth_core::jwt::Jwt;
use auth_core::policy::{Rule, Scopes};
use auth_core::{AuthError, Gate, RequestError, TokenError};
use auth_tower::{AuthLayer, RequireLayer};
use axum::Router;
use axum::routing::get;
use common::{REALM, Reply, TestIssuer};
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt as _;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct NeedsAge {
    age: u32,
}

fn tower_reply(res: &http::Response<axum::body::Body>) -> Reply {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Reply {
        status: res.status().as_u16(),
        challenge: header("www-authenticate"),
        content_type: header("content-type"),
        retry_after: header("retry-after"),
        body: String::new(),
    }
}

#[actix_web::test]
async fn every_outcome_renders_the_same() {
    let errors = [
        AuthError::MissingCredentials,
        AuthError::InvalidRequest(RequestError::DuplicateAuthorization),
        AuthError::InvalidRequest(RequestError::MalformedAuthorization),
        AuthError::InvalidRequest(RequestError::HeaderTooLarge),
        AuthError::InvalidToken(TokenError::Expired),
        AuthError::InvalidToken(TokenError::Malformed("parts")),
        AuthError::InvalidToken(TokenError::ClaimsShape),
        AuthError::InsufficientScope {
            required: "admin write".into(),
        },
        AuthError::Forbidden {
            reason: "tenant \"x\" mismatch".into(),
        },
        AuthError::RateLimited {
            retry_after: Duration::from_millis(2500),
            status: None,
        },
        AuthError::Unavailable("store down"),
        AuthError::Misconfigured("no layer"),
    ];
    for error in &errors {
        for realm in ["", "api", "my \"realm\""] {
            let actix = auth_actix::error_response(error, realm);
            let tower: http::Response<axum::body::Body> = auth_tower::error_response(error, realm);
            let header = |name: &str| {
                actix
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let actix_reply = Reply {
                status: actix.status().as_u16(),
                challenge: header("www-authenticate"),
                content_type: header("content-type"),
                retry_after: header("retry-after"),
                body: String::new(),
            };
            assert_eq!(
                actix_reply,
                tower_reply(&tower),
                "{error:?} realm {realm:?}"
            );
            let actix = actix_web::body::to_bytes(actix.into_body()).await.unwrap();
            let tower = axum::body::to_bytes(tower.into_body(), 1 << 16)
                .await
                .unwrap();
            assert_eq!(actix, tower, "{error:?}");
        }
    }
}

fn axum_app(jwt: &Jwt) -> Router {
    let required = AuthLayer::new(Gate::builder(jwt.clone()).realm(REALM).build());
    let optional = AuthLayer::new(Gate::builder(jwt.clone()).realm(REALM).optional().build());
    let protected = Router::new()
        .route(
            "/whoami",
            get(|p: auth_tower::Principal| async move { p.subject().to_owned() }),
        )
        .route(
            "/admin",
            get(|| async { "ok" }).route_layer(required.require(Scopes::all(["admin"]))),
        )
        .route(
            "/reports",
            get(|| async { "ok" }).route_layer(RequireLayer::any_scope(["reports", "admin"])),
        )
        .route(
            "/needs-age",
            get(|_: auth_tower::Claims<NeedsAge>| async { "unreachable" }),
        )
        .route(
            "/tenants/{tenant}/items",
            get(|| async { "ok" })
                .route_layer(required.require(Rule::tenant_matches("path:tenant"))),
        )
        .layer(required);
    let open = Router::new()
        .route(
            "/maybe",
            get(|p: Option<auth_tower::Principal>| async move {
                p.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
            }),
        )
        .route(
            "/maybe/admin",
            get(|| async { "ok" }).route_layer(optional.require(Scopes::all(["admin"]))),
        )
        .layer(optional);
    Router::new()
        .route(
            "/nolayer",
            get(|p: auth_tower::Principal| async move { p.subject().to_owned() }),
        )
        .merge(protected)
        .merge(open)
}

fn actix_routes(cfg: &mut web::ServiceConfig, jwt: &Jwt) {
    let required = AuthMiddleware::new(Gate::builder(jwt.clone()).realm(REALM).build());
    let optional = AuthMiddleware::new(Gate::builder(jwt.clone()).realm(REALM).optional().build());
    let ok = || async { "ok" };
    cfg.service(
        web::resource("/whoami")
            .wrap(required.clone())
            .route(web::get().to(|p: auth_actix::Principal| async move { p.subject().to_owned() })),
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
        web::resource("/needs-age")
            .wrap(required.clone())
            .route(web::get().to(|_: auth_actix::Claims<NeedsAge>| async { "unreachable" })),
    )
    .service(
        web::resource("/tenants/{tenant}/items")
            .wrap(required.require(Rule::tenant_matches("path:tenant")))
            .wrap(required)
            .route(web::get().to(ok)),
    )
    .service(
        web::resource("/maybe")
            .wrap(optional.clone())
            .route(
                web::get().to(|OptionalPrincipal(p): OptionalPrincipal| async move {
                    p.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
                }),
            ),
    )
    .service(
        web::resource("/maybe/admin")
            .wrap(optional.require(Scopes::all(["admin"])))
            .wrap(optional)
            .route(web::get().to(ok)),
    )
    .route(
        "/nolayer",
        web::get().to(|p: auth_actix::Principal| async move { p.subject().to_owned() }),
    );
}

#[actix_web::test]
async fn the_same_requests_get_the_same_answers() {
    let issuer = TestIssuer::new();
    let jwt = issuer.jwt();
    let axum = axum_app(&jwt);
    let actix = test::init_service(App::new().configure(|cfg| actix_routes(cfg, &jwt))).await;

    let token = issuer.token();
    let admin = issuer.mint(json!({"scope": "admin"}));
    let bearer = |t: &str| format!("Bearer {t}");
    let huge = format!("Bearer {}", "a".repeat(17 * 1024));
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("/whoami", vec![]),
        ("/whoami", vec!["Basic YTpi".into()]),
        ("/whoami", vec![bearer(&token), bearer(&token)]),
        ("/whoami", vec!["Bearer".into()]),
        ("/whoami", vec!["Bearer a b".into()]),
        ("/whoami", vec![huge]),
        ("/whoami", vec![bearer("abc.def.ghi")]),
        ("/whoami", vec![bearer(&TestIssuer::new().token())]),
        (
            "/whoami",
            vec![bearer(&issuer.mint(json!({"exp": common::now() - 3600})))],
        ),
        (
            "/whoami",
            vec![bearer(&issuer.mint(json!({"aud": "other"})))],
        ),
        ("/whoami", vec![bearer(&token)]),
        ("/whoami", vec![bearer(&token)]),
        ("/admin", vec![]),
        ("/admin", vec![bearer(&token)]),
        ("/admin", vec![bearer(&admin)]),
        ("/reports", vec![bearer(&token)]),
        ("/needs-age", vec![bearer(&token)]),
        ("/tenants/acme/items", vec![bearer(&token)]),
        ("/tenants/globex/items", vec![bearer(&token)]),
        ("/maybe", vec![]),
        ("/maybe", vec![bearer(&token)]),
        ("/maybe", vec![bearer("abc.def.ghi")]),
        ("/maybe/admin", vec![]),
        ("/maybe/admin", vec![bearer(&token)]),
        ("/nolayer", vec![]),
        ("/nolayer", vec![bearer(&token)]),
    ];
    for (path, auth) in cases {
        let mut req = http::Request::get(path);
        let mut actix_req = test::TestRequest::get().uri(path);
        for a in &auth {
            req = req.header("authorization", a);
            actix_req = actix_req.append_header(("authorization", a.as_str()));
        }
        let res = axum
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let mut expected = tower_reply(&res);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        expected.body = String::from_utf8(bytes.to_vec()).unwrap();

        let got = Reply::of(test::call_service(&actix, actix_req.to_request()).await).await;
        let what = format!("{path} with {} Authorization header(s)", auth.len());
        assert_eq!(got.status, expected.status, "{what}: {got:?}");
        assert_eq!(got.body, expected.body, "{what}");
        if got.status >= 400 {
            assert_eq!(got, expected, "{what}");
        }
    }
}

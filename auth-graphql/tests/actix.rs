//! The actix-web adapter over real HTTP on 127.0.0.1: the same adapter contract as axum.

#![cfg(feature = "actix")]
#![allow(clippy::unwrap_used)]

mod common;

use actix_web::{App, HttpMessage, HttpRequest, HttpServer, web};
use async_graphql_actix_web::GraphQLBatchRequest;
use auth_core::{AuthMethod, Gate, Principal};
use auth_graphql::actix::{GraphQl, GraphQlResponse};
use common::{Fixture, Limited, TestSchema, post as send_query, schema};
use serde_json::json;

/// Serves the schema behind `gate` on an ephemeral port; the URL of `/graphql`. `configure`
/// may add routes or middleware.
fn serve(gate: Gate, configure: fn(&mut web::ServiceConfig)) -> String {
    let graphql = GraphQl::new(schema(), gate);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(graphql.clone()))
            .configure(configure)
            .service(graphql.clone().resource("/graphql"))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}/graphql")
}

fn nothing(_: &mut web::ServiceConfig) {}

#[actix_web::test]
async fn conformance() {
    let fx = Fixture::new();
    let url = serve(fx.gate(), nothing);
    common::conformance(&url, &fx).await;
}

#[actix_web::test]
async fn required_gate_refuses_anonymous_requests() {
    let fx = Fixture::new();
    let url = serve(fx.required_gate(), nothing);
    common::required_gate(&url, &fx).await;
}

#[actix_web::test]
async fn gate_wide_policy_applies_to_authenticated_callers() {
    let fx = Fixture::new();
    let url = serve(fx.policy_gate(), nothing);
    common::gate_policy(&url, &fx).await;
}

#[actix_web::test]
async fn answers_to_rate_limited_callers_carry_the_ratelimit_headers() {
    common::rate_limits(&serve(Limited::gate(), nothing)).await;
    common::rate_limited_policy_refusal(&serve(Limited::policy_gate(), nothing)).await;
}

/// A handler that reads the request with async-graphql-actix-web and lets `execute` decide.
async fn custom(
    graphql: web::Data<GraphQl<TestSchema>>,
    req: HttpRequest,
    request: GraphQLBatchRequest,
) -> GraphQlResponse {
    graphql.execute(&req, request.into_inner()).await
}

/// The same, after a "middleware" inserted a principal.
async fn inserted(
    graphql: web::Data<GraphQl<TestSchema>>,
    req: HttpRequest,
    request: GraphQLBatchRequest,
) -> GraphQlResponse {
    req.extensions_mut().insert(
        Principal::builder("from-middleware", AuthMethod::Mtls)
            .scopes(["admin"])
            .build(),
    );
    graphql.execute(&req, request.into_inner()).await
}

fn custom_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/custom", web::post().to(custom))
        .route("/inserted", web::post().to(inserted));
}

#[actix_web::test]
async fn custom_handlers_and_inserted_principals() {
    let fx = Fixture::new();
    let url = serve(fx.gate(), custom_routes);
    let base = url.trim_end_matches("/graphql");

    let token = fx.token("alice", "read", json!({}));
    let a = send_query(
        &format!("{base}/custom"),
        Some(&token),
        "{ whoami { subject } admin }",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body["data"],
        json!({"whoami": {"subject": "alice"}, "admin": null})
    );
    assert_eq!(a.code(0), "FORBIDDEN");

    let a = send_query(&format!("{base}/custom"), Some("not.a.jwt"), "{ hello }").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(0), "UNAUTHENTICATED");

    let a = send_query(
        &format!("{base}/inserted"),
        None,
        "{ whoami { subject method } admin }",
    )
    .await;
    assert_eq!(
        a.body,
        json!({"data": {"whoami": {"subject": "from-middleware", "method": "mtls"}, "admin": "welcome, admin"}})
    );
}

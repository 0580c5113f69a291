//! The axum handler over real HTTP on 127.0.0.1: the adapter contract of `common`, plus what
//! only axum has (a principal inserted by a middleware, custom handlers).

#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used)]

mod common;

use async_graphql_axum::GraphQLBatchRequest;
use auth_core::{AuthMethod, Gate, Principal};
use auth_graphql::axum::{GraphQl, GraphQlResponse};
use axum::extract::State;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Extension, Router};
use common::{Fixture, Limited, TestSchema, post as send_query, schema};
use serde_json::json;

/// Serves `app` on an ephemeral port; the URL of `/graphql`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/graphql")
}

fn app(gate: Gate) -> Router {
    let graphql = GraphQl::new(schema(), gate);
    Router::new().route("/graphql", get(graphql.clone()).post(graphql))
}

#[tokio::test]
async fn conformance() {
    let fx = Fixture::new();
    let url = serve(app(fx.gate())).await;
    common::conformance(&url, &fx).await;
}

#[tokio::test]
async fn required_gate_refuses_anonymous_requests() {
    let fx = Fixture::new();
    let url = serve(app(fx.required_gate())).await;
    common::required_gate(&url, &fx).await;
}

#[tokio::test]
async fn gate_wide_policy_applies_to_authenticated_callers() {
    let fx = Fixture::new();
    let url = serve(app(fx.policy_gate())).await;
    common::gate_policy(&url, &fx).await;
}

#[tokio::test]
async fn answers_to_rate_limited_callers_carry_the_ratelimit_headers() {
    common::rate_limits(&serve(app(Limited::gate())).await).await;
    common::rate_limited_policy_refusal(&serve(app(Limited::policy_gate())).await).await;
}

#[tokio::test]
async fn a_principal_from_a_middleware_is_used_as_is() {
    let fx = Fixture::new();
    let inserted = Principal::builder("from-middleware", AuthMethod::ApiKey)
        .scopes(["admin"])
        .build();
    let url = serve(app(fx.gate()).layer(Extension(inserted))).await;
    let a = send_query(&url, None, "{ whoami { subject method } admin }").await;
    assert_eq!(
        a.body,
        json!({"data": {"whoami": {"subject": "from-middleware", "method": "api_key"}, "admin": "welcome, admin"}})
    );
}

async fn custom(
    State(graphql): State<GraphQl<TestSchema>>,
    parts: Parts,
    request: GraphQLBatchRequest,
) -> GraphQlResponse {
    graphql.execute(&parts, request.into_inner()).await
}

#[tokio::test]
async fn custom_handlers_execute_with_the_same_answers() {
    let fx = Fixture::new();
    let app = Router::new()
        .route("/graphql", post(custom))
        .with_state(GraphQl::new(schema(), fx.gate()));
    let url = serve(app).await;
    let token = fx.token("alice", "read", json!({}));
    let a = send_query(&url, Some(&token), "{ whoami { subject } admin }").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body["data"],
        json!({"whoami": {"subject": "alice"}, "admin": null})
    );
    assert_eq!(a.code(0), "FORBIDDEN");

    let a = send_query(&url, Some("not.a.jwt"), "{ hello }").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(0), "UNAUTHENTICATED");
    assert!(a.body.get("data").is_none());
}

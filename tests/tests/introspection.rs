//! Token introspection (RFC 7662), revocation (RFC 7009) and discovery (RFC 8414) end to end:
//! `auth_core::oauth` against the in-process [`AuthzServer`] over real HTTP on loopback, through
//! the axum adapter and through `Gate` directly.
#![allow(clippy::unwrap_used)]

use auth_core::audit::{AuditEvent, AuditSink, Outcome};
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::oauth::{
    AuthorizationServer, ClientAuth, Introspection, IntrospectionBuilder, JwtOrOpaque, RevokeError,
    TokenRevoker, TokenTypeHint,
};
use auth_core::{Algorithm, AuthMethod, Gate};
use auth_tests::AuthzServer;
use auth_tests::fixtures::issuer::generate_key;
use auth_tower::{AuthLayer, Principal};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RS_ID: &str = "resource-server";
const RS_SECRET: &str = "rs-secret";
const API: &str = "https://api.example";

/// A running axum server; aborted on drop.
struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_gate(gate: Gate) -> Server {
    let router = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move {
                Json(json!({
                    "subject": p.subject(),
                    "scopes": p.scopes(),
                    "method": p.method().as_str(),
                }))
            }),
        )
        .layer(AuthLayer::new(gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server { base, task }
}

struct Reply {
    status: u16,
    challenge: Option<String>,
    body: String,
}

async fn call(client: &reqwest::Client, server: &Server, token: &str) -> Reply {
    let res = client
        .get(format!("{}/whoami", server.base))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    Reply {
        status: res.status().as_u16(),
        challenge: res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: res.text().await.unwrap(),
    }
}

/// An authorization server with the resource server registered as a client.
async fn authz() -> AuthzServer {
    let server = AuthzServer::start().await;
    server.add_client(RS_ID, RS_SECRET);
    server
}

fn introspection(server: &AuthzServer) -> IntrospectionBuilder {
    Introspection::builder(server.introspection_url())
        .client_auth(ClientAuth::secret_basic(RS_ID, RS_SECRET))
        .issuer(server.issuer())
}

fn headers(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

/// Records every audit event's outcome and reason.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Outcome, &'static str)>>>);

impl AuditSink for Recorder {
    fn record(&self, event: &AuditEvent<'_>) {
        self.0.lock().unwrap().push((event.outcome, event.reason));
    }
}

/// A token from `/token` with the client credentials grant; `form` is the rest of the body.
async fn client_credentials(server: &AuthzServer, id: &str, secret: &str, form: &str) -> Value {
    let res = reqwest::Client::new()
        .post(server.token_url())
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&{form}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn opaque_token_through_the_axum_layer() {
    let authz = authz().await;
    let gate = Gate::builder(introspection(&authz).build().unwrap())
        .realm("api")
        .build();
    let app = serve_gate(gate).await;
    let client = reqwest::Client::new();

    let token = authz.issue_token("alice", "read write", Duration::from_secs(300));
    let r = call(&client, &app, &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["subject"], "alice");
    assert_eq!(body["scopes"], json!(["read", "write"]));
    assert_eq!(body["method"], "introspection");
    assert_eq!(authz.introspections_of(&token), 1);

    // An unknown token: inactive at the server, 401 with a challenge, never echoed.
    let unknown = "not-a-token-the-server-knows";
    let r = call(&client, &app, unknown).await;
    assert_eq!(r.status, 401);
    let challenge = r.challenge.unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(!r.body.contains(unknown) && !challenge.contains(unknown));

    // An expired one (lifetime zero): refused.
    let expired = authz.issue_token("bob", "read", Duration::ZERO);
    assert_eq!(call(&client, &app, &expired).await.status, 401);
}

#[tokio::test]
async fn opaque_token_through_the_gate() {
    let authz = authz().await;
    let gate = Gate::builder(introspection(&authz).build().unwrap()).build();
    let token = authz.issue_token("carol", "admin", Duration::from_secs(300));
    let p = gate.check_async(&headers(&token)).await.unwrap().unwrap();
    assert_eq!(p.subject(), "carol");
    assert_eq!(p.method(), AuthMethod::Introspection);
    assert_eq!(p.issuer(), Some(authz.issuer().as_str()));
    assert!(p.has_scope("admin"));
    assert_eq!(
        p.claims().get("client_id"),
        Some(&json!(AuthzServer::DIRECT_CLIENT))
    );

    authz.revoke(&token);
    let e = gate.check_async(&headers(&token)).await.unwrap_err();
    assert_eq!(e.http_status(), 401);
    assert_eq!(e.reason(), "revoked");
}

#[tokio::test]
async fn cached_token_is_introspected_once() {
    let authz = authz().await;
    let intro = introspection(&authz)
        .cache(1000, Duration::from_secs(60))
        .build()
        .unwrap();
    let gate = Gate::builder(intro).build();
    let app = serve_gate(gate.clone()).await;
    let client = reqwest::Client::new();
    let token = authz.issue_token("dave", "read", Duration::from_secs(300));

    for _ in 0..50 {
        assert_eq!(call(&client, &app, &token).await.status, 200);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, base, token) = (client.clone(), app.base.clone(), token.clone());
        tasks.spawn(async move {
            client
                .get(format!("{base}/whoami"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(authz.introspections_of(&token), 1);

    // A fresh token presented by 50 concurrent requests while the server is slow: one
    // introspection for all of them (single-flight, then the cache).
    authz.set_delay(Duration::from_millis(200));
    let fresh = authz.issue_token("erin", "read", Duration::from_secs(300));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (gate, fresh) = (gate.clone(), fresh.clone());
        tasks.spawn(async move {
            gate.check_async(&headers(&fresh))
                .await
                .map(|p| p.is_some())
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().unwrap());
    }
    assert_eq!(authz.introspections_of(&fresh), 1);
    // The cached answer is served without a future.
    assert!(matches!(
        gate.check(&headers(&fresh)),
        auth_core::Check::Ready(Ok(Some(_)))
    ));
}

#[tokio::test]
async fn revoked_token_works_until_its_cache_entry_ends() {
    let authz = authz().await;
    let gate = Gate::builder(
        introspection(&authz)
            .cache(100, Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .build();
    let token = authz.issue_token("frank", "read", Duration::from_secs(300));
    assert!(gate.check_async(&headers(&token)).await.is_ok());
    authz.revoke(&token);
    // Still cached: whole-second TTL of 2 s leaves at least 1 s.
    assert!(gate.check_async(&headers(&token)).await.is_ok());
    assert_eq!(authz.introspections_of(&token), 1);

    let started = Instant::now();
    loop {
        match gate.check_async(&headers(&token)).await {
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(4),
                    "revoked token still accepted"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                assert_eq!(e.reason(), "revoked");
                break;
            }
        }
    }
    assert_eq!(authz.introspections_of(&token), 2);
    // The refusal is cached briefly too.
    assert!(gate.check_async(&headers(&token)).await.is_err());
    assert_eq!(authz.introspections_of(&token), 2);
}

#[tokio::test]
async fn without_cache_every_request_introspects() {
    let authz = authz().await;
    let gate = Gate::builder(introspection(&authz).build().unwrap()).build();
    let token = authz.issue_token("gina", "read", Duration::from_secs(300));
    for _ in 0..5 {
        assert!(gate.check_async(&headers(&token)).await.is_ok());
    }
    assert_eq!(authz.introspections_of(&token), 5);
}

#[tokio::test]
async fn server_down_is_503_and_audited() {
    let authz = authz().await;
    let audit = Recorder::default();
    let gate = Gate::builder(introspection(&authz).build().unwrap())
        .audit(audit.clone())
        .build();
    let app = serve_gate(gate).await;
    let client = reqwest::Client::new();
    let token = authz.issue_token("hank", "read", Duration::from_secs(300));

    authz.set_down(true);
    let r = call(&client, &app, &token).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.challenge, None);
    assert!(!r.body.contains(&token));
    assert_eq!(
        audit.0.lock().unwrap().last(),
        Some(&(Outcome::Denied, "unavailable"))
    );

    authz.set_down(false);
    assert_eq!(call(&client, &app, &token).await.status, 200);
    assert_eq!(
        audit.0.lock().unwrap().last(),
        Some(&(Outcome::Allowed, "ok"))
    );
}

#[tokio::test]
async fn slow_server_times_out_as_503() {
    let authz = authz().await;
    authz.set_delay(Duration::from_secs(3));
    let gate = Gate::builder(
        introspection(&authz)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .build();
    let token = authz.issue_token("ivy", "read", Duration::from_secs(300));
    let e = gate.check_async(&headers(&token)).await.unwrap_err();
    assert_eq!(e.http_status(), 503);
}

#[tokio::test]
async fn rejected_client_credentials_are_503_not_401() {
    let authz = authz().await;
    let gate = Gate::builder(
        Introspection::builder(authz.introspection_url())
            .client_auth(ClientAuth::secret_basic(RS_ID, "wrong-secret"))
            .build()
            .unwrap(),
    )
    .build();
    let token = authz.issue_token("jack", "read", Duration::from_secs(300));
    let e = gate.check_async(&headers(&token)).await.unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert!(!e.to_string().contains("wrong-secret"));
    // The server counted the request but no introspection of the token (client refused).
    assert_eq!(authz.introspections(), 1);
    assert_eq!(authz.introspections_of(&token), 0);
}

#[tokio::test]
async fn audience_is_checked_only_when_configured() {
    let authz = authz().await;
    let ours = authz.issue_token_for("kim", "read", &[API], Duration::from_secs(300));
    let theirs = authz.issue_token_for(
        "kim",
        "read",
        &["https://other.example"],
        Duration::from_secs(300),
    );
    let strict = Gate::builder(introspection(&authz).audience(API).build().unwrap()).build();
    assert!(strict.check_async(&headers(&ours)).await.is_ok());
    let e = strict.check_async(&headers(&theirs)).await.unwrap_err();
    assert_eq!(e.reason(), "invalid_audience");
    let no_aud = authz.issue_token("kim", "read", Duration::from_secs(300));
    assert!(strict.check_async(&headers(&no_aud)).await.is_err());

    let open = Gate::builder(introspection(&authz).build().unwrap()).build();
    assert!(open.check_async(&headers(&theirs)).await.is_ok());
}

#[tokio::test]
async fn issuer_is_checked_when_configured() {
    let authz = authz().await;
    let gate = Gate::builder(
        introspection(&authz)
            .issuer("https://someone-else.example")
            .build()
            .unwrap(),
    )
    .build();
    let token = authz.issue_token("lea", "read", Duration::from_secs(300));
    let e = gate.check_async(&headers(&token)).await.unwrap_err();
    assert_eq!(e.reason(), "unknown_issuer");
}

#[tokio::test]
async fn jwt_or_opaque_routes_by_shape() {
    let authz = authz().await;
    authz.set_jwt_access_tokens(true);
    authz.add_client("app", "app-secret");
    let answer = client_credentials(
        &authz,
        "app",
        "app-secret",
        "scope=read&resource=https%3A%2F%2Fapi.example",
    )
    .await;
    let jwt_token = answer["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_token.matches('.').count(), 2);

    let jwks = JwksCache::builder(authz.jwks_url()).build().unwrap();
    let jwt = Jwt::builder()
        .issuer(Issuer::new(authz.issuer()).audience(API).jwks(jwks))
        .build()
        .unwrap();
    let both = JwtOrOpaque::new(jwt, introspection(&authz).build().unwrap());
    let gate = Gate::builder(both).build();

    let p = gate
        .check_async(&headers(&jwt_token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.subject(), "app");
    assert_eq!(p.method(), AuthMethod::Jwt);
    assert!(p.has_scope("read"));
    assert_eq!(authz.introspections(), 0);

    let opaque = authz.issue_token("mia", "read", Duration::from_secs(300));
    let p = gate.check_async(&headers(&opaque)).await.unwrap().unwrap();
    assert_eq!(p.subject(), "mia");
    assert_eq!(p.method(), AuthMethod::Introspection);
    assert_eq!(authz.introspections(), 1);
}

#[tokio::test]
async fn every_client_authentication_method_works() {
    let authz = AuthzServer::start().await;
    // A secret with characters that RFC 6749 2.3.1 form-encodes inside Basic credentials.
    let secret = "p@ss:w rd+/%é";
    authz.add_client("basic client", secret);
    authz.add_client("post-client", secret);
    let key = generate_key(Algorithm::ES256, "client-key-1");
    authz.add_jwt_client("jwt-client", key.public_jwk());
    let token = authz.issue_token("nina", "read", Duration::from_secs(300));

    for auth in [
        ClientAuth::secret_basic("basic client", secret),
        ClientAuth::secret_post("post-client", secret),
        ClientAuth::private_key_jwt("jwt-client", key),
    ] {
        let method = auth.method_name();
        let intro = Introspection::builder(authz.introspection_url())
            .client_auth(auth)
            .build()
            .unwrap();
        let p = intro.introspect(&token).await;
        assert_eq!(p.unwrap().subject(), "nina", "{method}");
    }
    assert_eq!(authz.introspections_of(&token), 3);

    // A key the server does not know for that client is refused (503 for the resource server).
    let other = generate_key(Algorithm::ES256, "client-key-1");
    let intro = Introspection::builder(authz.introspection_url())
        .client_auth(ClientAuth::private_key_jwt("jwt-client", other))
        .build()
        .unwrap();
    assert_eq!(
        intro.introspect(&token).await.unwrap_err().http_status(),
        503
    );
}

#[tokio::test]
async fn revocation_makes_tokens_inactive() {
    let authz = authz().await;
    authz.add_client("app", "app-secret");
    authz.set_issue_refresh_tokens(true);
    let answer = client_credentials(&authz, "app", "app-secret", "scope=read").await;
    let access = answer["access_token"].as_str().unwrap().to_owned();
    let refresh = answer["refresh_token"].as_str().unwrap().to_owned();

    let gate = Gate::builder(introspection(&authz).build().unwrap()).build();
    assert!(gate.check_async(&headers(&access)).await.is_ok());
    // A refresh token is not an access token, even while active.
    assert_eq!(
        gate.check_async(&headers(&refresh))
            .await
            .unwrap_err()
            .reason(),
        "invalid_type"
    );

    let revoker = TokenRevoker::new(
        authz.revocation_url(),
        ClientAuth::secret_post("app", "app-secret"),
    )
    .unwrap();
    revoker
        .revoke(&access, Some(TokenTypeHint::AccessToken))
        .await
        .unwrap();
    revoker.revoke(&refresh, None).await.unwrap();
    assert_eq!(authz.revocations(), 2);
    let e = gate.check_async(&headers(&access)).await.unwrap_err();
    assert_eq!(e.reason(), "revoked");
    // Unknown tokens: success (RFC 7009 2.2).
    revoker.revoke("never-issued", None).await.unwrap();

    // Errors reported clearly.
    authz.set_refuse_revocation(true);
    assert!(matches!(
        revoker.revoke(&access, None).await,
        Err(RevokeError::UnsupportedTokenType)
    ));
    authz.set_refuse_revocation(false);
    authz.set_down(true);
    assert!(matches!(
        revoker.revoke(&access, None).await,
        Err(RevokeError::Unavailable)
    ));
    authz.set_down(false);
    let wrong = TokenRevoker::new(
        authz.revocation_url(),
        ClientAuth::secret_basic("app", "nope"),
    )
    .unwrap();
    let e = wrong.revoke(&access, None).await.unwrap_err();
    assert!(
        matches!(&e, RevokeError::Refused { status: 401, error, .. } if error == "invalid_client"),
        "{e}"
    );
    assert!(!e.to_string().contains("nope") && !e.to_string().contains(&access));
}

#[tokio::test]
async fn discovery_finds_the_endpoints() {
    let authz = authz().await;
    let client = reqwest::Client::new();
    let md = AuthorizationServer::discover(&authz.issuer(), &client)
        .await
        .unwrap();
    assert_eq!(md.issuer, authz.issuer());
    assert_eq!(md.token_endpoint, Some(authz.token_url()));
    assert_eq!(md.introspection_endpoint, Some(authz.introspection_url()));
    assert_eq!(md.revocation_endpoint, Some(authz.revocation_url()));
    assert_eq!(md.jwks_uri, Some(authz.jwks_url()));

    // A different issuer identifier (trailing slash) is refused.
    let e = AuthorizationServer::discover(&format!("{}/", authz.issuer()), &client)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("names issuer"), "{e}");

    // Introspection and revocation from discovery.
    let intro = Introspection::discover(authz.issuer())
        .client_auth(ClientAuth::secret_basic(RS_ID, RS_SECRET))
        .build()
        .unwrap();
    let token = authz.issue_token("olga", "read", Duration::from_secs(300));
    assert_eq!(intro.introspect(&token).await.unwrap().subject(), "olga");
    let revoker = TokenRevoker::from_metadata(&md, ClientAuth::secret_basic(RS_ID, RS_SECRET))
        .build()
        .unwrap();
    revoker.revoke(&token, None).await.unwrap();
    assert!(intro.introspect(&token).await.is_err());
}

#[tokio::test]
async fn authorization_server_token_endpoint_follows_rfc_6749() {
    let authz = authz().await;
    authz.add_client("app", "app-secret");
    authz.set_allowed_scopes("app", &["read", "write"]);
    authz.set_token_lifetime(Duration::from_secs(120));
    let client = reqwest::Client::new();
    let post = |body: &'static str, secret: &'static str| {
        client
            .post(authz.token_url())
            .basic_auth("app", Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    let r = post("grant_type=client_credentials", "bad").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    let r = post("grant_type=password", "app-secret").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    let r = post("grant_type=client_credentials&scope=admin", "app-secret")
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");

    let r = post("grant_type=client_credentials", "app-secret")
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 120);
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["access_token"].as_str().unwrap().len(), 43);
    assert_eq!(authz.token_requests(), 4);
}

#[tokio::test]
async fn demo_serve_accepts_opaque_tokens_with_introspection_flags() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: auth_examples::cli::ServeArgs,
    }
    let authz = authz().await;
    let url = authz.introspection_url();
    let parse = |extra: &[&str]| {
        let args = ["auth-demo", "--listen", "127.0.0.1:0"].iter().chain(extra);
        <Cli as clap::Parser>::try_parse_from(args).map(|c| c.serve)
    };
    // All three flags go together.
    assert!(parse(&["--introspection-url", &url, "--client-id", RS_ID]).is_err());
    let args = parse(&[
        "--introspection-url",
        &url,
        "--client-id",
        RS_ID,
        "--client-secret",
        RS_SECRET,
    ])
    .unwrap();
    assert!(!format!("{args:?}").contains(RS_SECRET));
    let opaque = auth_examples::cli::introspection(&args).unwrap().unwrap();
    let token = authz.issue_token("pat", "read", Duration::from_secs(300));
    assert_eq!(opaque.introspect(&token).await.unwrap().subject(), "pat");
    // Cached in the demo.
    assert!(opaque.introspect(&token).await.is_ok());
    assert_eq!(authz.introspections_of(&token), 1);

    assert!(
        auth_examples::cli::introspection(&parse(&[]).unwrap())
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn authorization_server_refresh_grant_rotates() {
    let authz = authz().await;
    authz.add_client("app", "app-secret");
    authz.set_issue_refresh_tokens(true);
    let first = client_credentials(&authz, "app", "app-secret", "scope=read%20write").await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let grant = |token: String, id: &'static str, secret: &'static str| {
        client
            .post(authz.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&refresh_token={token}&scope=read&client_id={id}&client_secret={secret}"
            ))
            .send()
    };
    // Another client cannot use it.
    authz.add_client("other", "other-secret");
    let r = grant(refresh.clone(), "other", "other-secret")
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let r = grant(refresh.clone(), "app", "app-secret").await.unwrap();
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["scope"], "read");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // The used refresh token is spent.
    let r = grant(refresh, "app", "app-secret").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // The new access token is active.
    let gate = Gate::builder(introspection(&authz).build().unwrap()).build();
    let access = second["access_token"].as_str().unwrap();
    let p = gate.check_async(&headers(access)).await.unwrap().unwrap();
    assert_eq!(p.subject(), "app");
    assert_eq!(p.scopes(), ["read"]);
}

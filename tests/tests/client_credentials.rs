//! OAuth 2.0 client credentials for outgoing calls, end to end over real HTTP on loopback:
//! `auth_core::oauth::ClientCredentials` against the `AuthzServer` fixture, the tower
//! `ClientCredentialsLayer` in front of a hyper-util client calling an axum API protected by
//! `AuthLayer`, and the tonic `ClientCredentialsSource`.
#![allow(clippy::unwrap_used)]

use auth_core::Gate;
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::oauth::metadata::AuthorizationServer;
use auth_core::oauth::token_source::FetchError;
use auth_core::oauth::{ClientAuth, ClientCredentials};
use auth_grpc::BearerInterceptor;
use auth_grpc::client::ClientCredentialsSource;
use auth_tests::AuthzServer;
use auth_tests::fixtures::issuer::generate_key;
use auth_tower::client::{AddBearerError, ClientCredentialsLayer};
use auth_tower::{AuthLayer, Principal};
use axum::Router;
use axum::routing::get;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::service::Interceptor;
use tower::{Layer, Service, ServiceExt};

const CLIENT: &str = "svc";
const SECRET: &str = "svc-secret-%:&+";

async fn server() -> AuthzServer {
    let server = AuthzServer::start().await;
    server.add_client(CLIENT, SECRET);
    server
}

fn source(server: &AuthzServer) -> auth_core::oauth::token_source::ClientCredentialsBuilder {
    ClientCredentials::builder(server.token_url(), ClientAuth::secret_basic(CLIENT, SECRET))
        .min_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
}

/// The server's RFC 7662 answer for `token`.
async fn introspect(server: &AuthzServer, token: &str) -> Value {
    let body = format!(
        "token={}",
        url_encode(token) // opaque tokens are base64url; JWTs are too
    );
    reqwest::Client::new()
        .post(server.introspection_url())
        .basic_auth(CLIENT, Some(url_encode(SECRET)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An axum API that accepts the authorization server's JWT access tokens (keys from its JWKS,
/// one second of leeway for its whole-second `exp`).
async fn protected_api(server: &AuthzServer) -> (String, tokio::task::JoinHandle<()>) {
    server.set_jwt_access_tokens(true);
    let jwks = JwksCache::builder(server.jwks_url()).build().unwrap();
    let jwt = Jwt::builder()
        .issuer(
            Issuer::new(server.issuer())
                .jwks(jwks)
                .leeway(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthLayer::new(Gate::builder(jwt).build()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, task)
}

#[tokio::test]
async fn each_client_auth_method_obtains_a_token() {
    let server = server().await;
    let key = generate_key(auth_core::Algorithm::ES256, "client-key");
    server.add_jwt_client("jwt-client", key.public_jwk());
    let methods = [
        ClientAuth::secret_basic(CLIENT, SECRET),
        ClientAuth::secret_post(CLIENT, SECRET),
        ClientAuth::private_key_jwt("jwt-client", key),
    ];
    for auth in methods {
        let method = auth.method_name();
        // Twice per method: the server refuses a reused `private_key_jwt` assertion (`jti`),
        // so the second token shows that every request signs a fresh one.
        for _ in 0..2 {
            let source = ClientCredentials::builder(server.token_url(), auth.clone())
                .build()
                .unwrap();
            let token = source.token().await.unwrap();
            let answer = introspect(&server, token.secret()).await;
            assert_eq!(answer["active"], true, "{method}: {answer}");
            assert_eq!(answer["client_id"], source.client_id(), "{method}");
            assert_eq!(token.token_type().as_str(), "Bearer");
            assert_eq!(token.lifetime(), Duration::from_secs(300));
        }
    }
    assert_eq!(server.token_requests(), 6);

    // Wrong credentials: a clear refusal that does not echo the secret.
    let source = ClientCredentials::builder(
        server.token_url(),
        ClientAuth::secret_basic(CLIENT, "wrong-secret"),
    )
    .build()
    .unwrap();
    let err = source.token().await.unwrap_err();
    let (attempts, last_error) = (err.attempts(), err.last_error());
    assert_eq!(attempts, 1);
    assert_eq!(last_error.error_code(), Some("invalid_client"));
    let text = err.to_string();
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}

#[tokio::test]
async fn scope_and_resources_reach_the_server() {
    let server = server().await;
    let source = source(&server)
        .scope("invoices:read invoices:write")
        .resource("https://billing.example/")
        .resource("https://ledger.example/")
        .build()
        .unwrap();
    let token = source.token().await.unwrap();
    assert_eq!(token.scope(), Some("invoices:read invoices:write"));
    let answer = introspect(&server, token.secret()).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "invoices:read invoices:write");
    assert_eq!(
        answer["aud"],
        serde_json::json!(["https://billing.example/", "https://ledger.example/"])
    );

    // A scope the server does not grant: a clear refusal.
    server.set_allowed_scopes(CLIENT, &["invoices:read"]);
    let refused = self::source(&server).scope("admin").build().unwrap();
    let err = refused.token().await.unwrap_err();
    assert_eq!(err.last_error().error_code(), Some("invalid_scope"));
}

#[tokio::test]
async fn from_discovered_metadata() {
    let server = server().await;
    let metadata = AuthorizationServer::discover_dangerous_allow_http(
        &server.issuer(),
        &reqwest::Client::new(),
    )
    .await
    .unwrap();
    let source =
        ClientCredentials::from_metadata(&metadata, ClientAuth::secret_post(CLIENT, SECRET))
            .build()
            .unwrap();
    let token = source.token().await.unwrap();
    assert_eq!(introspect(&server, token.secret()).await["active"], true);

    // Metadata without a token endpoint: a configuration error at build time.
    let mut partial = metadata.clone();
    partial.token_endpoint = None;
    let err = ClientCredentials::from_metadata(&partial, ClientAuth::none(CLIENT))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("token_endpoint"), "{err}");
}

#[tokio::test]
async fn concurrent_first_calls_share_one_request() {
    let server = server().await;
    server.set_delay(Duration::from_millis(200));
    let source = source(&server).build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let source = source.clone();
        tasks.spawn(async move { source.token().await.unwrap() });
    }
    let tokens = tasks.join_all().await;
    assert_eq!(server.token_requests(), 1);
    assert_eq!(source.request_count(), 1);
    assert!(tokens.iter().all(|t| t.same_as(&tokens[0])));

    // Fresh: answered from memory.
    for _ in 0..50 {
        assert!(source.token().await.unwrap().same_as(&tokens[0]));
    }
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn refresh_token_is_used_and_falls_back_when_refused() {
    let server = server().await;
    server.set_issue_refresh_tokens(true);
    server.set_token_lifetime(Duration::from_secs(2));
    let source = source(&server)
        .scope("reports")
        .refresh_ahead(Duration::from_secs(1))
        .build()
        .unwrap();
    let first = source.token().await.unwrap();
    assert_eq!(server.token_requests(), 1);

    // From now on the client credentials grant would be refused (`invalid_scope`): only the
    // refresh token can give a new access token. The server rotates refresh tokens; this answer
    // will carry none, so the source keeps the spent one.
    server.set_allowed_scopes(CLIENT, &[]);
    server.set_issue_refresh_tokens(false);
    wait_until_due(&source).await;
    let second = source.token().await.unwrap();
    assert!(!second.same_as(&first));
    assert_eq!(server.token_requests(), 2, "one refresh_token request");
    assert_eq!(
        introspect(&server, second.secret()).await["scope"],
        "reports"
    );

    // The kept refresh token was spent (rotation): refused with `invalid_grant`, the source
    // falls back to the client credentials grant within the same attempt.
    server.set_allowed_scopes(CLIENT, &["reports"]);
    wait_until_due(&source).await;
    let third = source.token().await.unwrap();
    assert!(!third.same_as(&second));
    assert_eq!(
        server.token_requests(),
        4,
        "refused refresh + client credentials"
    );
    assert_eq!(source.request_count(), 4);
    assert!(source.last_error().is_none());
}

/// Polls (no wall-clock assertion) until the held token is due for refresh.
async fn wait_until_due(source: &ClientCredentials) {
    for _ in 0..100 {
        if source.cached().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the token never became due for refresh");
}

#[tokio::test]
async fn endpoint_down_backs_off_reports_after_expiry_and_recovers() {
    let server = server().await;
    server.set_token_lifetime(Duration::from_secs(3));
    let source = source(&server)
        .refresh_ahead(Duration::from_millis(1500))
        .build()
        .unwrap();
    let _refresh = source.spawn_refresh().unwrap();
    let token = source.token().await.unwrap();
    let base = server.token_requests();
    server.set_down(true);

    // Before expiry, the held token keeps being answered although refreshes fail.
    while !token.is_expired() {
        match source.token().await {
            Ok(t) => assert!(t.same_as(&token)),
            Err(e) => assert!(token.is_expired(), "failed before expiry: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // After expiry: a clear error at once, no hang.
    let err = source.token().await.unwrap_err();
    let (attempts, last_error) = (err.attempts(), err.last_error());
    assert!(attempts >= 1);
    assert_eq!(*last_error, FetchError::Status(503));
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert!(source.current().is_none());
    // The refresh started 1.5 s before expiry: with backoff from 100 ms (doubling, 1 s cap)
    // that is a handful of attempts, not a hot loop.
    let attempts_while_down = server.token_requests() - base;
    eprintln!("{attempts_while_down} token requests while down; {err}");
    assert!(
        (2..20).contains(&attempts_while_down),
        "{attempts_while_down} attempts"
    );

    // Back up: the background refresh (or the next caller) recovers.
    server.set_down(false);
    let mut recovered = None;
    for _ in 0..100 {
        if let Ok(t) = source.token().await {
            recovered = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("the source recovered once the endpoint was back");
    assert!(!recovered.same_as(&token));
    assert!(source.last_error().is_none());
}

#[tokio::test]
async fn endpoint_down_without_a_token_fails_fast() {
    let server = server().await;
    server.set_down(true);
    let source = source(&server).build().unwrap();
    let err = source.token().await.unwrap_err();
    assert_eq!(*err.last_error(), FetchError::Status(503));
    // Within the backoff, callers get the error without a new request.
    let _ = source.token().await.unwrap_err();
    assert_eq!(server.token_requests(), 1);
    // A request that outlasts the timeout is abandoned, not awaited forever.
    server.set_down(false);
    server.set_delay(Duration::from_secs(5));
    let slow = self::source(&server)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = slow.token().await.unwrap_err();
    assert!(matches!(err.last_error(), FetchError::Timeout(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_through_the_tower_layer() {
    let server = server().await;
    server.set_token_lifetime(Duration::from_secs(3));
    let (api, api_task) = protected_api(&server).await;
    let source = source(&server)
        .refresh_ahead(Duration::from_millis(300))
        .build()
        .unwrap();
    let _refresh = source.spawn_refresh().unwrap();
    let client = ClientCredentialsLayer::new(source.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<String>());

    let load = Duration::from_secs(8);
    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < load {
        ticker.tick().await;
        let mut client = client.clone();
        let (failures, sent) = (failures.clone(), sent.clone());
        let url = format!("{api}/whoami");
        tasks.spawn(async move {
            sent.fetch_add(1, Ordering::Relaxed);
            let request = http::Request::get(url).body(String::new()).unwrap();
            let ok = match client.ready().await {
                Ok(svc) => match svc.call(request).await {
                    Ok(response) => response.status() == 200,
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        false
                    }
                },
                Err(_) => false,
            };
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tasks.join_all().await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 500, "{sent} requests sent");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed requests");
    // One token per lifetime: 8 s of 3 s tokens are 3 lifetimes.
    let lifetimes = load.as_secs().div_ceil(3);
    let fetched = server.token_requests();
    eprintln!("{sent} API requests, {fetched} token requests");
    assert!(
        (2..=lifetimes + 1).contains(&fetched),
        "{fetched} token requests for {lifetimes} lifetimes ({sent} API requests)"
    );
    api_task.abort();
}

#[tokio::test]
async fn tower_layer_sets_the_header_and_reports_token_errors() {
    let server = server().await;
    let (api, api_task) = protected_api(&server).await;
    let source = source(&server).build().unwrap();
    let mut client = ClientCredentialsLayer::new(source.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<String>());

    // First call: the future awaits the token, then calls the API, which sees the client as
    // the subject.
    let request = http::Request::get(format!("{api}/whoami"))
        .header("authorization", "Bearer stale")
        .body(String::new())
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 200);
    use http_body_util::BodyExt as _;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], CLIENT.as_bytes());

    // The header the inner service receives: the token, marked sensitive, replacing any.
    let token = source.token().await.unwrap();
    let inspect = tower::service_fn(|req: http::Request<String>| async move {
        let values: Vec<_> = req
            .headers()
            .get_all("authorization")
            .iter()
            .cloned()
            .collect();
        Ok::<_, std::convert::Infallible>(values)
    });
    let mut layered = ClientCredentialsLayer::new(source.clone()).layer(inspect);
    let request = http::Request::builder()
        .header("authorization", "Basic old")
        .body(String::new())
        .unwrap();
    let values = layered.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0], format!("Bearer {}", token.secret()));
    assert!(values[0].is_sensitive());

    // The token endpoint refuses the client: the request is not sent, the error says why.
    let refused =
        ClientCredentials::builder(server.token_url(), ClientAuth::secret_post(CLIENT, "wrong"))
            .build()
            .unwrap();
    let mut client = ClientCredentialsLayer::new(refused)
        .layer(Client::builder(TokioExecutor::new()).build_http::<String>());
    let request = http::Request::get(format!("{api}/whoami"))
        .body(String::new())
        .unwrap();
    let err = client
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    assert!(matches!(err, AddBearerError::Token(_)), "{err:?}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    api_task.abort();
}

#[tokio::test]
async fn tonic_interceptor_sends_the_held_token() {
    let server = server().await;
    let source = source(&server).build().unwrap();
    let mut interceptor = BearerInterceptor::new(ClientCredentialsSource::new(source.clone()));

    // Not primed: the call fails without waiting.
    let status = interceptor.call(tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("no access token yet"),
        "{status:?}"
    );

    let token = source.token().await.unwrap();
    for _ in 0..3 {
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        let value = request.metadata().get("authorization").unwrap();
        assert_eq!(value, format!("Bearer {}", token.secret()).as_str());
        assert!(value.is_sensitive());
    }

    // A client the server refuses: UNAUTHENTICATED, with the reason and no secret.
    let refused = ClientCredentials::builder(
        server.token_url(),
        ClientAuth::secret_basic(CLIENT, "not-the-secret"),
    )
    .build()
    .unwrap();
    let _ = refused.token().await.unwrap_err();
    let mut interceptor = BearerInterceptor::new(ClientCredentialsSource::new(refused));
    let status = interceptor.call(tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("invalid_client"), "{status:?}");
    assert!(!status.message().contains("not-the-secret"));

    // A token that expired with nothing refreshing it (no background refresh): UNAUTHENTICATED.
    server.set_token_lifetime(Duration::from_secs(1));
    let unrefreshed = self::source(&server).build().unwrap();
    let short = unrefreshed.token().await.unwrap();
    let mut interceptor = BearerInterceptor::new(ClientCredentialsSource::new(unrefreshed));
    assert!(interceptor.call(tonic::Request::new(())).is_ok());
    while !short.is_expired() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = interceptor.call(tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{status:?}");

    // Endpoint down: UNAVAILABLE.
    server.set_down(true);
    let down = self::source(&server).build().unwrap();
    let _ = down.token().await.unwrap_err();
    let mut interceptor = BearerInterceptor::new(ClientCredentialsSource::new(down));
    let status = interceptor.call(tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

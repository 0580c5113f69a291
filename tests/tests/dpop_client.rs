//! DPoP on the client side (RFC 9449 sections 5 and 7), end to end over real HTTP on loopback:
//! `ClientCredentials` with a DPoP key obtains bound tokens from the `AuthzServer` fixture (its
//! nonce flow included), and `ClientCredentialsLayer` in front of a hyper-util client sends them
//! with a fresh proof per request to an axum API whose gate verifies DPoP. A bound token sent as
//! `Bearer` is refused, and a server that ignores DPoP makes the source fail clearly.
#![allow(clippy::unwrap_used)]

use auth_core::dpop::{DpopKey, DpopVerifier};
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::oauth::token_source::{FetchError, TokenType};
use auth_core::oauth::{ClientAuth, ClientCredentials};
use auth_core::{Algorithm, Gate};
use auth_grpc::BearerInterceptor;
use auth_grpc::client::ClientCredentialsSource;
use auth_tests::AuthzServer;
use auth_tower::client::{AddBearerError, ClientCredentialsLayer};
use auth_tower::{AuthLayer, Principal};
use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;
use tonic::service::Interceptor;
use tower::{Layer, Service, ServiceExt};

const CLIENT: &str = "svc";
const SECRET: &str = "svc-secret";

async fn server() -> AuthzServer {
    let server = AuthzServer::start().await;
    server.add_client(CLIENT, SECRET);
    server
}

fn key() -> DpopKey {
    DpopKey::generate(Algorithm::ES256).unwrap()
}

fn source(server: &AuthzServer, key: DpopKey) -> ClientCredentials {
    ClientCredentials::builder(server.token_url(), ClientAuth::secret_basic(CLIENT, SECRET))
        .dpop(key)
        .min_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// The claims of a JWT (its signature is the resource server's business).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The server's RFC 7662 answer for `token`.
async fn introspect(server: &AuthzServer, token: &str) -> Value {
    reqwest::Client::new()
        .post(server.introspection_url())
        .basic_auth(CLIENT, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        // Opaque tokens and JWTs are base64url (and dots): nothing to escape.
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An axum API accepting the authorization server's JWT access tokens (keys from its JWKS),
/// DPoP-bound ones with a proof (`Gate::dpop`).
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
    let gate = Gate::builder(jwt)
        .dpop(DpopVerifier::builder().build().unwrap())
        .build();
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .route(
            "/orders",
            post(|p: Principal, body: String| async move { format!("{}:{body}", p.subject()) }),
        )
        .layer(AuthLayer::new(gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, task)
}

async fn body_text(response: http::Response<hyper::body::Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_dpop_source_obtains_bound_tokens() {
    let server = server().await;

    // Opaque token: introspection names the binding.
    let key1 = key();
    let jkt1 = key1.jkt();
    let source1 = source(&server, key1);
    let token = source1.token().await.unwrap();
    assert_eq!(token.token_type(), TokenType::DPoP);
    assert_eq!(token.authorization(), format!("DPoP {}", token.secret()));
    let answer = introspect(&server, token.secret()).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["cnf"]["jkt"], jkt1.as_str(), "{answer}");
    assert_eq!(answer["token_type"], "DPoP", "{answer}");

    // JWT access token: `cnf.jkt` is the key's thumbprint.
    server.set_jwt_access_tokens(true);
    let key2 = key();
    let jkt2 = key2.jkt();
    let source2 = source(&server, key2);
    assert_eq!(source2.dpop_key().unwrap().jkt(), jkt2);
    let token = source2.token().await.unwrap();
    assert_eq!(token.token_type(), TokenType::DPoP);
    let claims = jwt_claims(token.secret());
    assert_eq!(claims["cnf"]["jkt"], jkt2.as_str(), "{claims}");
    assert_eq!(claims["sub"], CLIENT);
    assert_ne!(jkt1, jkt2);

    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.dpop_token_requests(), 2);

    // A source without a key still gets bearer tokens from the same server.
    let plain =
        ClientCredentials::builder(server.token_url(), ClientAuth::secret_basic(CLIENT, SECRET))
            .build()
            .unwrap();
    let token = plain.token().await.unwrap();
    assert_eq!(token.token_type(), TokenType::Bearer);
    assert!(jwt_claims(token.secret()).get("cnf").is_none());
    assert_eq!(server.dpop_token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_sends_dpop_tokens_with_a_fresh_proof_per_request() {
    let server = server().await;
    let (api, api_task) = protected_api(&server).await;
    let source = source(&server, key());
    let client = ClientCredentialsLayer::new(source.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<String>());

    // 50 requests, concurrently: the gate's replay cache would refuse any proof sent twice.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let mut client = client.clone();
        let api = api.clone();
        tasks.spawn(async move {
            let request = if i % 2 == 0 {
                http::Request::get(format!("{api}/whoami?n={i}"))
                    .body(String::new())
                    .unwrap()
            } else {
                http::Request::post(format!("{api}/orders"))
                    .body(format!("order-{i}"))
                    .unwrap()
            };
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            let status = response.status();
            let body = body_text(response).await;
            (i, status, body)
        });
    }
    let mut failures = 0;
    for (i, status, body) in tasks.join_all().await {
        let expected = if i % 2 == 0 {
            CLIENT.to_owned()
        } else {
            format!("{CLIENT}:order-{i}")
        };
        if status != 200 || body != expected {
            eprintln!("request {i}: {status} {body}");
            failures += 1;
        }
    }
    assert_eq!(failures, 0, "failed requests");
    assert_eq!(server.token_requests(), 1, "one token for all requests");

    // The headers the inner service receives: `DPoP <token>` and a proof for this request,
    // both sensitive, replacing any the request had.
    let token = source.token().await.unwrap();
    let inspect = tower::service_fn(|req: http::Request<String>| async move {
        Ok::<_, std::convert::Infallible>(req.headers().clone())
    });
    let mut layered = ClientCredentialsLayer::new(source.clone()).layer(inspect);
    let url = format!("{api}/whoami");
    let mut proofs = Vec::new();
    for _ in 0..2 {
        let request = http::Request::get(format!("{url}?q=1"))
            .header("authorization", "Bearer stale")
            .header("dpop", "stale")
            .body(String::new())
            .unwrap();
        let headers = layered.ready().await.unwrap().call(request).await.unwrap();
        let auth: Vec<_> = headers.get_all("authorization").iter().collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0], format!("DPoP {}", token.secret()).as_str());
        assert!(auth[0].is_sensitive());
        let proof: Vec<_> = headers.get_all("dpop").iter().collect();
        assert_eq!(proof.len(), 1);
        assert!(proof[0].is_sensitive());
        let proof = proof[0].to_str().unwrap().to_owned();
        let verified = DpopVerifier::builder()
            .build()
            .unwrap()
            .verify(&proof, "GET", &url, Some(token.secret()))
            .unwrap();
        assert_eq!(verified.jkt_base64(), source.dpop_key().unwrap().jkt());
        proofs.push(proof);
    }
    assert_ne!(proofs[0], proofs[1], "a fresh proof per request");

    // A relative URI cannot be named in a proof: not sent.
    let request = http::Request::get("/whoami").body(String::new()).unwrap();
    let err = layered
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    assert!(matches!(err, AddBearerError::RelativeUri), "{err:?}");
    assert!(err.to_string().contains("absolute request URI"), "{err}");

    // The same token sent by hand as a bearer token, or as DPoP without a proof: refused.
    let http = Client::builder(TokioExecutor::new()).build_http::<String>();
    for scheme in ["Bearer", "DPoP"] {
        let request = http::Request::get(&url)
            .header("authorization", format!("{scheme} {}", token.secret()))
            .body(String::new())
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status(), 401, "{scheme}");
    }
    // A proof the layer made (never sent) is accepted once, then refused as a replay.
    for expected in [200, 401] {
        let request = http::Request::get(&url)
            .header("authorization", format!("DPoP {}", token.secret()))
            .header("dpop", &proofs[0])
            .body(String::new())
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status(), expected);
    }
    api_task.abort();
}

#[tokio::test]
async fn token_endpoint_nonces_cost_one_retry_and_are_remembered() {
    let server = server().await;
    server.set_require_dpop_nonce(true);
    server.set_token_lifetime(Duration::from_secs(2));
    let source = source(&server, key());

    let first = source.token().await.unwrap();
    assert_eq!(first.token_type(), TokenType::DPoP);
    assert_eq!(server.token_requests(), 2, "exactly one retry");
    assert_eq!(server.dpop_token_requests(), 2);
    assert_eq!(source.request_count(), 2);
    let answer = introspect(&server, first.secret()).await;
    assert_eq!(answer["cnf"]["jkt"], source.dpop_key().unwrap().jkt());

    // The next token: the remembered nonce is still valid, so no retry.
    while source.cached().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = source.token().await.unwrap();
    assert!(!second.same_as(&first));
    assert_eq!(server.token_requests(), 3);
    assert_eq!(source.request_count(), 3);
}

#[tokio::test]
async fn a_server_that_ignores_dpop_is_refused() {
    let server = server().await;
    server.set_ignore_dpop(true);
    let source = source(&server, key());
    let err = source.token().await.unwrap_err();
    assert_eq!(
        *err.last_error(),
        FetchError::NotDpopBound(TokenType::Bearer)
    );
    let text = err.to_string();
    assert!(
        text.contains("issued a `Bearer` token to a DPoP client"),
        "{text}"
    );
    assert_eq!(server.dpop_token_requests(), 1, "the proof was sent");
    assert!(
        source.last_token().is_none(),
        "the unbound token is not kept"
    );

    // Through the layer: the request is not sent.
    let inner = tower::service_fn(|_req: http::Request<String>| async {
        panic!("the inner service must not be called without a bound token");
        #[allow(unreachable_code)]
        Ok::<_, std::convert::Infallible>(())
    });
    let mut layered = ClientCredentialsLayer::new(source).layer(inner);
    let request = http::Request::get("http://127.0.0.1:9/x")
        .body(String::new())
        .unwrap();
    let err = layered
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    assert!(matches!(err, AddBearerError::Token(_)), "{err:?}");
    assert!(err.to_string().contains("ignored the DPoP proof"), "{err}");
}

#[tokio::test]
async fn the_tonic_interceptor_refuses_dpop_tokens() {
    let server = server().await;
    let source = source(&server, key());
    source.token().await.unwrap();
    let mut interceptor = BearerInterceptor::new(ClientCredentialsSource::new(source));
    let status = interceptor.call(tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("`DPoP` token"), "{status:?}");
}

/// One hand-built client credentials request with `proofs` as `DPoP` headers.
async fn token_request(server: &AuthzServer, proofs: &[&str]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.token_url())
        .basic_auth(CLIENT, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials");
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_token_endpoint_checks_proofs() {
    let server = server().await;
    let key = key();
    let url = server.token_url();

    // Wrong method or URL, a replay, two headers: `400 invalid_dpop_proof`, no token.
    let good = key.proof("POST", &url, None, None).unwrap();
    let wrong_method = key.proof("GET", &url, None, None).unwrap();
    let wrong_url = key
        .proof("POST", &format!("{}/other", server.issuer()), None, None)
        .unwrap();
    let response = token_request(&server, &[&good]).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["token_type"], "DPoP");
    let other = key.proof("POST", &url, None, None).unwrap();
    for proofs in [
        vec![wrong_method.as_str()],
        vec![wrong_url.as_str()],
        vec![good.as_str()],
        vec![other.as_str(), other.as_str()],
    ] {
        let response = token_request(&server, &proofs).await;
        assert_eq!(response.status(), 400);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "invalid_dpop_proof", "{answer}");
    }

    // Nonces required: a proof without one is answered `use_dpop_nonce` with a nonce, which
    // the next proof carries.
    server.set_require_dpop_nonce(true);
    let proof = key.proof("POST", &url, None, None).unwrap();
    let response = token_request(&server, &[&proof]).await;
    assert_eq!(response.status(), 400);
    let nonce = response.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "use_dpop_nonce", "{answer}");
    let proof = key.proof("POST", &url, None, Some(&nonce)).unwrap();
    let response = token_request(&server, &[&proof]).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["token_type"], "DPoP");

    // Without a `DPoP` header: a bearer token, as before.
    let response = token_request(&server, &[]).await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(server.dpop_token_requests(), 7);
    assert_eq!(server.token_requests(), 8);
}

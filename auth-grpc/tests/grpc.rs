//! End-to-end: a real tonic server on `127.0.0.1:0` behind [`GrpcAuthLayer`], called by a real
//! tonic client, for every outcome of the core's table that a gRPC call can meet.
#![allow(clippy::unwrap_used)]

use auth_core::authenticator::OwnedCredentials;
use auth_core::credentials::Credentials;
use auth_core::issuer::SigningKey;
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::policy::{Cidr, PolicyMap, Rule, Scopes};
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{Algorithm, AuthError, AuthMethod, Authenticator, BoxFuture, Gate, Principal};
use auth_examples::proto::demo_v1::demo_client::DemoClient;
use auth_examples::proto::demo_v1::demo_server::{Demo, DemoServer};
use auth_examples::proto::demo_v1::{AdminReply, WhoAmIReply};
use auth_grpc::layer::{HEALTH_CHECK, HEALTH_WATCH};
use auth_grpc::{BearerInterceptor, GrpcAuthLayer, PrincipalExt, StaticToken};
use serde_json::json;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

const ISS: &str = "https://issuer.test";
const AUD: &str = "demo-api";
const REALM: &str = "demo";
const WHOAMI: &str = "/demo.v1.Demo/WhoAmI";
const ADMIN: &str = "/demo.v1.Demo/Admin";

static SIGNER: LazyLock<SigningKey> =
    LazyLock::new(|| SigningKey::generate(Algorithm::ES256, "k1").unwrap());
static STRANGER: LazyLock<SigningKey> =
    LazyLock::new(|| SigningKey::generate(Algorithm::ES256, "k1").unwrap());

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token from `signer` for `sub` with `scope`; `extra` claims override the defaults.
fn mint_with(signer: &SigningKey, sub: &str, scope: &str, extra: serde_json::Value) -> String {
    let mut claims = json!({
        "iss": ISS, "aud": AUD, "sub": sub, "scope": scope,
        "iat": now(), "exp": now() + 300,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    signer.sign(&claims).unwrap()
}

fn mint(sub: &str, scope: &str) -> String {
    mint_with(&SIGNER, sub, scope, json!({}))
}

fn jwt() -> Jwt {
    let keys = KeySet::from_jwks(&auth_core::issuer::jwks([&*SIGNER]).to_string()).unwrap();
    Jwt::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .keys(keys)
                .tenant_claim("tenant"),
        )
        .build()
        .unwrap()
}

fn gate() -> Gate {
    Gate::builder(jwt()).realm(REALM).build()
}

fn admin_policies() -> PolicyMap {
    PolicyMap::new().route(ADMIN, Scopes::all(["admin"]))
}

/// The demo service as the tests need it: `WhoAmI` answers anonymous callers too (to show what
/// the layer let through), `Admin` insists on a principal through [`PrincipalExt`].
struct TestDemo;

#[tonic::async_trait]
impl Demo for TestDemo {
    async fn who_am_i(&self, request: Request<()>) -> Result<Response<WhoAmIReply>, Status> {
        Ok(Response::new(
            match request.extensions().get::<Principal>() {
                Some(p) => WhoAmIReply {
                    subject: p.subject().to_owned(),
                    method: p.method().to_string(),
                    scopes: p.scopes().to_vec(),
                    issuer: p.issuer().unwrap_or_default().to_owned(),
                },
                None => WhoAmIReply {
                    subject: "anonymous".into(),
                    ..WhoAmIReply::default()
                },
            },
        ))
    }

    async fn admin(&self, request: Request<()>) -> Result<Response<AdminReply>, Status> {
        let p = request.principal()?;
        Ok(Response::new(AdminReply {
            subject: p.subject().to_owned(),
            message: "hello, admin".into(),
        }))
    }
}

/// A running server; dropping it shuts the server down.
struct TestServer {
    channel: Channel,
    _shutdown: oneshot::Sender<()>,
}

impl TestServer {
    fn client(&self) -> DemoClient<Channel> {
        DemoClient::new(self.channel.clone())
    }
}

async fn start(layer: Option<GrpcAuthLayer>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener);
    let shutdown = async {
        let _ = rx.await;
    };
    let service = DemoServer::new(TestDemo);
    match layer {
        Some(layer) => tokio::spawn(
            Server::builder()
                .layer(layer)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown),
        ),
        None => tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown),
        ),
    };
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestServer {
        channel,
        _shutdown: tx,
    }
}

async fn serve(policies: PolicyMap) -> TestServer {
    start(Some(GrpcAuthLayer::new(gate(), policies))).await
}

fn bearer(token: &str) -> Request<()> {
    with_metadata(&[("authorization", &format!("Bearer {token}"))])
}

fn with_metadata(entries: &[(&'static str, &str)]) -> Request<()> {
    let mut request = Request::new(());
    for (k, v) in entries {
        request
            .metadata_mut()
            .append(*k, MetadataValue::try_from(*v).unwrap());
    }
    request
}

fn challenge(status: &Status) -> &str {
    status
        .metadata()
        .get("www-authenticate")
        .expect("a www-authenticate entry")
        .to_str()
        .unwrap()
}

/// Calls any method path with an empty request and an empty reply (`google.protobuf.Empty`).
async fn raw_call(channel: Channel, path: &'static str) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(Request::new(()), path, codec)
        .await
        .map(Response::into_inner)
}

#[tokio::test]
async fn no_token_is_unauthenticated_with_a_bare_challenge() {
    let server = serve(admin_policies()).await;
    let status = server.client().who_am_i(()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "authentication is required");
    assert_eq!(challenge(&status), r#"Bearer realm="demo""#);
}

#[tokio::test]
async fn malformed_authorization_is_invalid_request() {
    let server = serve(admin_policies()).await;
    let token = mint("alice", "read");
    let twice = with_metadata(&[
        ("authorization", &format!("Bearer {token}")),
        ("authorization", &format!("Bearer {token}")),
    ]);
    let status = server.client().who_am_i(twice).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "more than one Authorization header");
    assert!(
        challenge(&status).contains(r#"error="invalid_request""#),
        "{}",
        challenge(&status)
    );

    let spaced = with_metadata(&[("authorization", "Bearer two words")]);
    let status = server.client().who_am_i(spaced).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(challenge(&status).contains(r#"error="invalid_request""#));
}

#[tokio::test]
async fn bad_or_expired_tokens_are_invalid_token_and_never_echoed() {
    let server = serve(admin_policies()).await;
    let expired = mint_with(
        &SIGNER,
        "alice",
        "read",
        json!({"iat": now() - 7200, "exp": now() - 3600}),
    );
    let cases = [
        (expired, "the token has expired"),
        (
            mint_with(&STRANGER, "mallory", "admin", json!({})),
            "the token's signature is invalid",
        ),
        (
            mint_with(&SIGNER, "alice", "read", json!({"aud": "other-api"})),
            "the token is not meant for this service",
        ),
        ("abc.def.ghi".to_owned(), "the token is malformed"),
    ];
    for (token, message) in cases {
        let status = server.client().who_am_i(bearer(&token)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{message}");
        assert_eq!(status.message(), message);
        let challenge = challenge(&status);
        assert!(challenge.starts_with(r#"Bearer realm="demo", error="invalid_token""#));
        assert!(!challenge.contains(&token) && !status.message().contains(&token));
        for (_, value) in status.metadata().iter().filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => Some((k, v)),
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        }) {
            assert!(!value.to_str().unwrap().contains(&token));
        }
    }
}

#[tokio::test]
async fn valid_token_is_ok_and_the_handler_sees_the_principal() {
    let server = serve(admin_policies()).await;
    let token = mint("alice", "read write");
    // The first call verifies (slow path), the second one is a cache hit (no future boxed).
    for _ in 0..2 {
        let reply = server
            .client()
            .who_am_i(bearer(&token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.subject, "alice");
        assert_eq!(reply.method, "jwt");
        assert_eq!(reply.scopes, ["read", "write"]);
        assert_eq!(reply.issuer, ISS);
    }
}

#[tokio::test]
async fn admin_needs_scope_admin() {
    let server = serve(admin_policies()).await;
    let reader = mint("bob", "read");
    for _ in 0..2 {
        let status = server.client().admin(bearer(&reader)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "the token lacks the required scope");
        let challenge = challenge(&status);
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert!(challenge.contains(r#"scope="admin""#), "{challenge}");
    }

    let admin = mint("carol", "read admin");
    for _ in 0..2 {
        let reply = server
            .client()
            .admin(bearer(&admin))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.subject, "carol");
        assert_eq!(reply.message, "hello, admin");
    }
}

#[tokio::test]
async fn exempt_methods_skip_authentication() {
    let layer = GrpcAuthLayer::new(gate(), admin_policies().exempt(WHOAMI)).exempt_health();
    assert!(layer.policies().is_exempt(HEALTH_CHECK));
    assert!(layer.policies().is_exempt(HEALTH_WATCH));
    let server = start(Some(layer)).await;

    // An exempt method reaches its handler without a principal.
    let reply = server.client().who_am_i(()).await.unwrap().into_inner();
    assert_eq!(reply.subject, "anonymous");
    // Even a bad token is not looked at.
    let reply = server
        .client()
        .who_am_i(bearer("not.a.token"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.subject, "anonymous");
    // The health check passes the layer; this server has no health service, so the router
    // answers UNIMPLEMENTED (not UNAUTHENTICATED).
    let status = raw_call(server.channel.clone(), HEALTH_CHECK)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    // Methods not exempt still need credentials, known or not.
    let status = server.client().admin(()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = raw_call(server.channel.clone(), "/demo.v1.Demo/Unknown")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn health_is_not_exempt_unless_asked() {
    let server = serve(admin_policies()).await;
    let status = raw_call(server.channel.clone(), HEALTH_CHECK)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn interceptor_attaches_the_token() {
    let server = serve(admin_policies()).await;
    let source = StaticToken::new(mint("dave", "admin")).unwrap();
    let mut client =
        DemoClient::with_interceptor(server.channel.clone(), BearerInterceptor::new(source));
    let reply = client.who_am_i(()).await.unwrap().into_inner();
    assert_eq!(reply.subject, "dave");
    let reply = client.admin(()).await.unwrap().into_inner();
    assert_eq!(reply.subject, "dave");
}

#[tokio::test]
async fn tenant_rule_over_metadata_as_a_gate_wide_policy() {
    let gate = Gate::builder(jwt())
        .realm(REALM)
        .policy(Rule::tenant_matches("metadata:x-tenant"))
        .build();
    let server = start(Some(GrpcAuthLayer::new(gate, admin_policies()))).await;
    let token = mint_with(&SIGNER, "erin", "read", json!({"tenant": "acme"}));
    let auth = format!("Bearer {token}");

    let ok = with_metadata(&[("authorization", &auth), ("x-tenant", "acme")]);
    let reply = server.client().who_am_i(ok).await.unwrap().into_inner();
    assert_eq!(reply.subject, "erin");

    for tenant in [Some("globex"), None] {
        let mut entries = vec![("authorization", auth.as_str())];
        entries.extend(tenant.map(|t| ("x-tenant", t)));
        let status = server
            .client()
            .who_am_i(with_metadata(&entries))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{tenant:?}");
        assert!(challenge(&status).contains(r#"error="insufficient_scope""#));
    }
}

#[tokio::test]
async fn tenant_rule_over_metadata_per_method() {
    let policies = PolicyMap::new().route(WHOAMI, Rule::tenant_matches("metadata:x-tenant"));
    let server = serve(policies).await;
    let token = mint_with(&SIGNER, "erin", "read", json!({"tenant": "acme"}));
    let auth = format!("Bearer {token}");

    let ok = with_metadata(&[("authorization", &auth), ("x-tenant", "acme")]);
    assert_eq!(
        server
            .client()
            .who_am_i(ok)
            .await
            .unwrap()
            .into_inner()
            .subject,
        "erin"
    );
    let other = with_metadata(&[("authorization", &auth), ("x-tenant", "globex")]);
    let status = server.client().who_am_i(other).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // The rule is WhoAmI's only: Admin has no policy here.
    let any = with_metadata(&[("authorization", &auth)]);
    assert_eq!(
        server
            .client()
            .admin(any)
            .await
            .unwrap()
            .into_inner()
            .subject,
        "erin"
    );
}

#[tokio::test]
async fn the_peer_address_reaches_policies() {
    let lan: Cidr = "10.0.0.0/8".parse().unwrap();
    let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
    let policies = PolicyMap::new()
        .route(WHOAMI, Rule::source_in([loopback]))
        .route(ADMIN, Rule::source_in([lan]));
    let server = serve(policies).await;
    let token = mint("frank", "admin");
    server.client().who_am_i(bearer(&token)).await.unwrap();
    let status = server.client().admin(bearer(&token)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn optional_gate_lets_anonymous_calls_through_only_where_no_policy_applies() {
    let gate = Gate::builder(jwt()).realm(REALM).optional().build();
    let server = start(Some(GrpcAuthLayer::new(gate, admin_policies()))).await;
    let reply = server.client().who_am_i(()).await.unwrap().into_inner();
    assert_eq!(reply.subject, "anonymous");
    // Admin has a policy: the layer refuses the anonymous call.
    let status = server.client().admin(()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(challenge(&status), r#"Bearer realm="demo""#);
    // A presented token must still be valid.
    let status = server
        .client()
        .who_am_i(bearer("abc.def.ghi"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Without a method policy, the handler's `principal()` answers UNAUTHENTICATED itself.
    let gate = Gate::builder(jwt()).realm(REALM).optional().build();
    let server = start(Some(GrpcAuthLayer::new(gate, PolicyMap::new()))).await;
    let status = server.client().admin(()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(challenge(&status), r#"Bearer realm="demo""#);
}

#[tokio::test]
async fn a_handler_without_the_layer_is_a_server_bug() {
    let server = start(None).await;
    let status = server
        .client()
        .admin(bearer(&mint("x", "admin")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal server error");
}

#[tokio::test]
async fn concurrent_first_calls_take_the_slow_path_safely() {
    let server = serve(admin_policies()).await;
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let mut client = server.client();
            let token = mint(
                &format!("user-{i}"),
                if i % 2 == 0 { "admin" } else { "read" },
            );
            tokio::spawn(async move { (i, client.admin(bearer(&token)).await) })
        })
        .collect();
    for call in calls {
        let (i, result) = call.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(result.unwrap().into_inner().subject, format!("user-{i}"));
        } else {
            assert_eq!(result.unwrap_err().code(), Code::PermissionDenied);
        }
    }
}

#[tokio::test]
async fn unreachable_issuer_is_unavailable_without_a_challenge() {
    // Nothing listens on port 1: the keys are never fetched, and the core fails closed.
    let jwks = JwksCache::builder("http://127.0.0.1:1/jwks.json")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).audience(AUD).jwks(jwks))
        .build()
        .unwrap();
    let gate = Gate::builder(jwt).realm(REALM).build();
    let server = start(Some(GrpcAuthLayer::new(gate, admin_policies()))).await;
    let status = server
        .client()
        .who_am_i(bearer(&mint("alice", "read")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "authentication is temporarily unavailable"
    );
    assert!(status.metadata().get("www-authenticate").is_none());
}

/// An authenticator that always finds the caller over quota (API-key quotas will answer so).
struct OverQuota;

impl Authenticator for OverQuota {
    fn method(&self) -> AuthMethod {
        AuthMethod::ApiKey
    }
    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }
    fn authenticate(
        &self,
        _: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        Box::pin(async {
            Err(AuthError::RateLimited {
                retry_after: Duration::from_secs(30),
                status: None,
            })
        })
    }
}

#[tokio::test]
async fn over_quota_is_resource_exhausted_with_retry_after() {
    let gate = Gate::builder(OverQuota).realm(REALM).build();
    let server = start(Some(GrpcAuthLayer::new(gate, admin_policies()))).await;
    let status = server
        .client()
        .who_am_i(bearer("some.api.key"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "rate limit exceeded");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "30");
    assert!(status.metadata().get("www-authenticate").is_none());
}

const LIMIT: RateLimitStatus = RateLimitStatus {
    policy: "key-rate",
    limit: 10,
    window_secs: 60,
    remaining: 7,
    reset_secs: 18,
};
const POLICY_ENTRY: &str = "\"key-rate\";q=10;w=60";
const RATELIMIT_ENTRY: &str = "\"key-rate\";r=7;t=18";

/// Accepts any bearer token (scope `read`): `fast-*` from its "cache" (no future), others
/// through the slow path; a token containing `limited` gets a principal with [`LIMIT`].
struct Limited;

fn limited_principal(token: &str) -> Principal {
    Principal::builder(token, AuthMethod::ApiKey)
        .scopes(["read"])
        .build()
        .with_rate_limit(token.contains("limited").then_some(LIMIT))
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
        token
            .starts_with("fast-")
            .then(|| Ok(limited_principal(token)))
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
                .map(limited_principal)
                .ok_or(AuthError::MissingCredentials)
        })
    }
}

fn rate_limit_entries(md: &tonic::metadata::MetadataMap) -> (Option<&str>, Option<&str>) {
    let entry = |name| md.get(name).map(|v| v.to_str().unwrap());
    (entry("ratelimit-policy"), entry("ratelimit"))
}

async fn limited_server() -> TestServer {
    let gate = Gate::builder(Limited).realm(REALM).build();
    start(Some(GrpcAuthLayer::new(gate, admin_policies()))).await
}

#[tokio::test]
async fn allowed_calls_carry_the_rate_limit_in_the_initial_metadata() {
    let server = limited_server().await;
    for token in ["fast-limited", "slow-limited"] {
        let response = server.client().who_am_i(bearer(token)).await.unwrap();
        assert_eq!(
            rate_limit_entries(response.metadata()),
            (Some(POLICY_ENTRY), Some(RATELIMIT_ENTRY)),
            "{token}"
        );
        assert_eq!(response.into_inner().subject, token);
    }
}

#[tokio::test]
async fn a_method_policys_refusal_carries_the_rate_limit_too() {
    let server = limited_server().await;
    for token in ["fast-limited", "slow-limited"] {
        let status = server.client().admin(bearer(token)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{token}");
        assert_eq!(
            rate_limit_entries(status.metadata()),
            (Some(POLICY_ENTRY), Some(RATELIMIT_ENTRY)),
            "{token}"
        );
    }
}

#[tokio::test]
async fn no_rate_limit_entries_without_a_limit() {
    let server = limited_server().await;
    for token in ["fast-plain", "slow-plain"] {
        let response = server.client().who_am_i(bearer(token)).await.unwrap();
        assert_eq!(
            rate_limit_entries(response.metadata()),
            (None, None),
            "{token}"
        );
    }
    let status = server
        .client()
        .who_am_i(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(rate_limit_entries(status.metadata()), (None, None));
}

/// Over quota with the refusing limit known.
struct OverQuotaWithStatus;

impl Authenticator for OverQuotaWithStatus {
    fn method(&self) -> AuthMethod {
        AuthMethod::ApiKey
    }
    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }
    fn authenticate(
        &self,
        _: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        Box::pin(async {
            Err(AuthError::RateLimited {
                retry_after: Duration::from_secs(18),
                status: Some(RateLimitStatus {
                    remaining: 0,
                    ..LIMIT
                }),
            })
        })
    }
}

#[tokio::test]
async fn over_quota_carries_the_refusing_limit() {
    let gate = Gate::builder(OverQuotaWithStatus).realm(REALM).build();
    let server = start(Some(GrpcAuthLayer::new(gate, admin_policies()))).await;
    let status = server
        .client()
        .who_am_i(bearer("some.api.key"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "18");
    assert_eq!(
        rate_limit_entries(status.metadata()),
        (Some(POLICY_ENTRY), Some("\"key-rate\";r=0;t=18"))
    );
}

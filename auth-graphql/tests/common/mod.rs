//! Shared fixtures: a test issuer, the schema under test, and the HTTP scenarios every adapter
//! must pass the same way.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Object, Result, Schema, SimpleObject,
};
use auth_core::authenticator::OwnedCredentials;
use auth_core::issuer::{SigningKey, jwks};
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::policy::{Rule, Scopes};
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{
    Algorithm, AuthError, AuthMethod, Authenticator, BoxFuture, Credentials, Gate, Principal,
};
use auth_graphql::{PartialResults, PolicyGuard, RoleGuard, ScopeGuard, principal};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "graphql-api";
pub const REALM: &str = "graphql-test";

/// A test issuer: one ES256 key, tokens on demand.
pub struct Fixture {
    key: SigningKey,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_kid("k1")
    }

    pub fn with_kid(kid: &str) -> Self {
        Self {
            key: SigningKey::generate(Algorithm::ES256, kid).unwrap(),
        }
    }

    pub fn jwt(&self) -> Jwt {
        let keys = KeySet::from_jwks(&jwks([&self.key]).to_string()).unwrap();
        Jwt::builder()
            .issuer(
                Issuer::new(ISSUER)
                    .audience(AUDIENCE)
                    .tenant_claim("tenant")
                    .keys(keys),
            )
            .build()
            .unwrap()
    }

    /// The gate of most tests: optional, so anonymous requests reach public fields.
    pub fn gate(&self) -> Gate {
        Gate::builder(self.jwt()).optional().realm(REALM).build()
    }

    /// A gate in required mode.
    pub fn required_gate(&self) -> Gate {
        Gate::builder(self.jwt()).realm(REALM).build()
    }

    /// An optional gate whose gate-wide policy needs scope `graphql`.
    pub fn policy_gate(&self) -> Gate {
        Gate::builder(self.jwt())
            .optional()
            .realm(REALM)
            .policy(Scopes::all(["graphql"]))
            .build()
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.key.sign(claims).unwrap()
    }

    /// A valid token for `sub` with `scope` (space-separated) and extra claims.
    pub fn token(&self, sub: &str, scope: &str, extra: Value) -> String {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope, "exp": now() + 300,
        });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        self.sign(&claims)
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What `whoami` answers.
#[derive(SimpleObject)]
pub struct Whoami {
    pub subject: String,
    pub method: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
}

/// A nested object with a guarded field.
pub struct Account;

#[Object]
impl Account {
    async fn id(&self) -> i32 {
        7
    }

    #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
    async fn secret(&self) -> Option<&str> {
        Some("s3cret")
    }
}

pub struct Query;

#[Object]
impl Query {
    /// Public.
    async fn hello(&self) -> &str {
        "hello"
    }

    /// Any authenticated caller.
    async fn whoami(&self, ctx: &Context<'_>) -> Result<Option<Whoami>> {
        let p = principal(ctx)?;
        Ok(Some(Whoami {
            subject: p.subject().to_owned(),
            method: p.method().as_str().to_owned(),
            scopes: p.scopes().to_vec(),
            roles: p.roles().to_vec(),
            tenant: p.tenant().map(str::to_owned),
        }))
    }

    /// Scope `admin`.
    #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
    async fn admin(&self) -> Option<&str> {
        Some("welcome, admin")
    }

    /// A policy with a role rule, on its own operation name.
    #[graphql(
        guard = "PolicyGuard::new(Rule::role(\"auditor\").and(Rule::operation(\"Query.auditLog\"))).on::<Self>()"
    )]
    async fn audit_log(&self) -> Option<Vec<String>> {
        Some(vec!["alice signed in".to_owned()])
    }

    /// A policy over an argument.
    #[graphql(guard = "PolicyGuard::new(Rule::tenant_matches(\"arg:tenant\")).on::<Self>()")]
    async fn tenant_usage(&self, tenant: String) -> Option<i32> {
        Some(i32::try_from(tenant.len()).unwrap_or(0))
    }

    /// Guards composed with `or`.
    #[graphql(guard = "RoleGuard::new(\"editor\").or(ScopeGuard::all([\"admin\"]))")]
    async fn drafts(&self) -> Option<i32> {
        Some(3)
    }

    async fn account(&self) -> Account {
        Account
    }
}

pub type TestSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> TestSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .extension(PartialResults)
        .finish()
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub fn code(&self, i: usize) -> &str {
        self.body["errors"][i]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in error {i}: {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn errors(&self) -> usize {
        self.body["errors"].as_array().map_or(0, Vec::len)
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let res = request.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    Answer {
        status,
        headers,
        text,
        body,
    }
}

/// POSTs `{"query": query}` with an optional bearer token.
pub async fn post(url: &str, token: Option<&str>, query: &str) -> Answer {
    post_json(url, token, &json!({ "query": query })).await
}

pub async fn post_json(url: &str, token: Option<&str>, body: &Value) -> Answer {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    send(req).await
}

fn assert_graphql_body(a: &Answer) {
    assert_eq!(
        a.header("content-type"),
        Some("application/graphql-response+json"),
        "{a:?}"
    );
}

/// Asserts a refusal before execution: `status`, a challenge starting with `challenge`, and
/// a GraphQL body without `data` whose one error has `code`.
fn assert_refused(a: &Answer, status: u16, challenge: &str, code: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_graphql_body(a);
    let www = a.header("www-authenticate").unwrap_or_default();
    assert!(www.starts_with(challenge), "{www:?} vs {challenge:?}");
    assert!(a.body.get("data").is_none(), "no data entry: {}", a.text);
    assert_eq!(a.errors(), 1, "{}", a.text);
    assert_eq!(a.code(0), code, "{}", a.text);
}

/// Every scenario of the adapter contract, against the GraphQL endpoint at `url` served with
/// [`Fixture::gate`] and [`schema`].
pub async fn conformance(url: &str, fx: &Fixture) {
    anonymous_requests_reach_public_fields(url).await;
    guarded_fields_need_a_principal(url).await;
    bad_credentials_are_refused_before_execution(url, fx).await;
    valid_tokens_reach_whoami(url, fx).await;
    missing_scope_is_forbidden_and_the_rest_answers(url, fx).await;
    policy_guards_see_roles_operations_and_arguments(url, fx).await;
    guards_compose(url, fx).await;
    get_requests_and_bad_bodies(url, fx).await;
}

async fn anonymous_requests_reach_public_fields(url: &str) {
    let a = post(url, None, "{ hello }").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_graphql_body(&a);
    assert_eq!(a.body, json!({"data": {"hello": "hello"}}));
    assert_eq!(a.header("www-authenticate"), None);
}

async fn guarded_fields_need_a_principal(url: &str) {
    let a = post(url, None, "{ hello whoami { subject } admin }").await;
    assert_eq!(a.status, 200, "executed: {a:?}");
    assert_eq!(
        a.body["data"],
        json!({"hello": "hello", "whoami": null, "admin": null})
    );
    assert_eq!(a.errors(), 2, "{}", a.text);
    for i in 0..2 {
        assert_eq!(a.code(i), "UNAUTHENTICATED");
        assert_eq!(a.body["errors"][i]["message"], "authentication is required");
    }
    let paths: Vec<&Value> = (0..2).map(|i| &a.body["errors"][i]["path"]).collect();
    assert!(paths.contains(&&json!(["whoami"])), "{paths:?}");
    assert!(paths.contains(&&json!(["admin"])), "{paths:?}");
}

async fn bad_credentials_are_refused_before_execution(url: &str, fx: &Fixture) {
    let invalid = format!(r#"Bearer realm="{REALM}", error="invalid_token""#);

    // Garbage, another issuer's key, expired: 401 invalid_token.
    let unknown = Fixture::with_kid("k2").token("mallory", "admin", json!({}));
    let forged = Fixture::new().token("mallory", "admin", json!({}));
    let expired = fx.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() - 3600,
    }));
    for (token, description) in [
        ("not.a.jwt", "the token is malformed"),
        (unknown.as_str(), "the token's signing key is not trusted"),
        (forged.as_str(), "the token's signature is invalid"),
        (expired.as_str(), "the token has expired"),
    ] {
        let a = post(url, Some(token), "{ hello }").await;
        assert_refused(&a, 401, &invalid, "UNAUTHENTICATED");
        assert_eq!(a.body["errors"][0]["message"], description, "{}", a.text);
        assert!(!a.text.contains(token), "the token is never echoed");
        let www = a.header("www-authenticate").unwrap();
        assert!(www.contains(description), "{www}");
    }

    // Two Authorization headers, or a Bearer header without a token: 400 invalid_request.
    let dup = reqwest::Client::new()
        .post(url)
        .header("authorization", "Bearer a.b.c")
        .header("authorization", "Bearer d.e.f")
        .json(&json!({"query": "{ hello }"}));
    let a = send(dup).await;
    let invalid_request = format!(r#"Bearer realm="{REALM}", error="invalid_request""#);
    assert_refused(&a, 400, &invalid_request, "UNAUTHENTICATED");
    let empty = reqwest::Client::new()
        .post(url)
        .header("authorization", "Bearer ")
        .json(&json!({"query": "{ hello }"}));
    assert_refused(&send(empty).await, 400, &invalid_request, "UNAUTHENTICATED");
}

async fn valid_tokens_reach_whoami(url: &str, fx: &Fixture) {
    let token = fx.token("alice", "read write", json!({}));
    let a = post(url, Some(&token), "{ whoami { subject method scopes } }").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body,
        json!({"data": {"whoami": {"subject": "alice", "method": "jwt", "scopes": ["read", "write"]}}})
    );
    // Another scheme is not a bearer credential: anonymous.
    let basic = reqwest::Client::new()
        .post(url)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({"query": "{ hello whoami { subject } }"}));
    let a = send(basic).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.code(0), "UNAUTHENTICATED");
}

async fn missing_scope_is_forbidden_and_the_rest_answers(url: &str, fx: &Fixture) {
    let reader = fx.token("bob", "read", json!({}));
    let a = post(
        url,
        Some(&reader),
        "{ hello whoami { subject } admin account { id secret } }",
    )
    .await;
    assert_eq!(a.status, 200, "field refusals are field errors: {a:?}");
    assert_eq!(
        a.body["data"],
        json!({
            "hello": "hello",
            "whoami": {"subject": "bob"},
            "admin": null,
            "account": {"id": 7, "secret": null},
        })
    );
    assert_eq!(a.errors(), 2, "{}", a.text);
    for i in 0..2 {
        assert_eq!(a.code(i), "FORBIDDEN");
        assert_eq!(a.body["errors"][i]["extensions"]["scope"], "admin");
        assert_eq!(
            a.body["errors"][i]["message"],
            "the token lacks the required scope"
        );
    }
    let paths: Vec<&Value> = (0..2).map(|i| &a.body["errors"][i]["path"]).collect();
    assert!(paths.contains(&&json!(["admin"])), "{paths:?}");
    assert!(paths.contains(&&json!(["account", "secret"])), "{paths:?}");
    assert_eq!(a.header("www-authenticate"), None);

    let admin = fx.token("carol", "read admin", json!({}));
    let a = post(url, Some(&admin), "{ admin account { secret } }").await;
    assert_eq!(
        a.body,
        json!({"data": {"admin": "welcome, admin", "account": {"secret": "s3cret"}}})
    );
}

async fn policy_guards_see_roles_operations_and_arguments(url: &str, fx: &Fixture) {
    let plain = fx.token("dave", "read", json!({"tenant": "acme"}));
    let auditor = fx.token(
        "erin",
        "read",
        json!({"roles": ["auditor"], "tenant": "acme"}),
    );

    let a = post(url, Some(&plain), "{ auditLog }").await;
    assert_eq!(a.body["data"], json!({"auditLog": null}), "{}", a.text);
    assert_eq!(a.code(0), "FORBIDDEN");
    assert_eq!(a.body["errors"][0]["message"], "the request is not allowed");

    let a = post(url, Some(&auditor), "{ auditLog }").await;
    assert_eq!(a.body, json!({"data": {"auditLog": ["alice signed in"]}}));

    // An alias changes the response key, not the operation the policy sees.
    let a = post(url, Some(&auditor), "{ log: auditLog }").await;
    assert_eq!(a.body, json!({"data": {"log": ["alice signed in"]}}));

    let a = post(
        url,
        Some(&plain),
        r#"{ mine: tenantUsage(tenant: "acme") theirs: tenantUsage(tenant: "globex") }"#,
    )
    .await;
    assert_eq!(
        a.body["data"],
        json!({"mine": 4, "theirs": null}),
        "{}",
        a.text
    );
    assert_eq!(a.errors(), 1);
    assert_eq!(a.code(0), "FORBIDDEN");
    assert_eq!(a.body["errors"][0]["path"], json!(["theirs"]));

    // Arguments given through variables are seen too.
    let a = post_json(
        url,
        Some(&plain),
        &json!({
            "query": "query Q($t: String!) { tenantUsage(tenant: $t) }",
            "variables": {"t": "globex"},
        }),
    )
    .await;
    assert_eq!(a.body["data"], json!({"tenantUsage": null}), "{}", a.text);
    assert_eq!(a.code(0), "FORBIDDEN");
}

async fn guards_compose(url: &str, fx: &Fixture) {
    let editor = fx.token("frank", "read", json!({"roles": ["editor"]}));
    let admin = fx.token("grace", "admin", json!({}));
    let neither = fx.token("heidi", "read", json!({}));
    for (token, allowed) in [(&editor, true), (&admin, true), (&neither, false)] {
        let a = post(url, Some(token), "{ drafts }").await;
        if allowed {
            assert_eq!(a.body, json!({"data": {"drafts": 3}}));
        } else {
            assert_eq!(a.body["data"], json!({"drafts": null}));
            assert_eq!(a.code(0), "FORBIDDEN");
        }
    }
}

async fn get_requests_and_bad_bodies(url: &str, fx: &Fixture) {
    let token = fx.token("ivan", "read", json!({}));
    let with_query =
        reqwest::Url::parse_with_params(url, [("query", "{ hello whoami { subject } }")]).unwrap();
    let get = reqwest::Client::new().get(with_query).bearer_auth(&token);
    let a = send(get).await;
    assert_eq!(
        a.body,
        json!({"data": {"hello": "hello", "whoami": {"subject": "ivan"}}})
    );

    // A bad token is refused before the body is even read.
    let bad = reqwest::Client::new()
        .post(url)
        .bearer_auth("not.a.jwt")
        .header("content-type", "application/json")
        .body("{ not json");
    assert_eq!(send(bad).await.status, 401);

    let garbage = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body("{ not json");
    let a = send(garbage).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert_graphql_body(&a);
    assert!(a.body["errors"][0]["message"].is_string(), "{}", a.text);
}

/// Scenarios for a gate in required mode.
pub async fn required_gate(url: &str, fx: &Fixture) {
    let a = post(url, None, "{ hello }").await;
    assert_refused(
        &a,
        401,
        &format!(r#"Bearer realm="{REALM}""#),
        "UNAUTHENTICATED",
    );
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Bearer realm="graphql-test""#)
    );
    let token = fx.token("judy", "read", json!({}));
    let a = post(url, Some(&token), "{ hello }").await;
    assert_eq!(a.body, json!({"data": {"hello": "hello"}}));
}

/// Scenarios for a gate whose gate-wide policy needs scope `graphql`.
pub async fn gate_policy(url: &str, fx: &Fixture) {
    let without = fx.token("ken", "read", json!({}));
    let a = post(url, Some(&without), "{ hello }").await;
    assert_refused(
        &a,
        403,
        &format!(r#"Bearer realm="{REALM}", error="insufficient_scope""#),
        "FORBIDDEN",
    );
    assert_eq!(a.body["errors"][0]["extensions"]["scope"], "graphql");
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .ends_with(r#"scope="graphql""#)
    );

    let with = fx.token("leo", "read graphql", json!({}));
    let a = post(url, Some(&with), "{ hello }").await;
    assert_eq!(a.body, json!({"data": {"hello": "hello"}}));
    // Anonymous requests are not authenticated callers: the gate-wide policy does not apply.
    let a = post(url, None, "{ hello }").await;
    assert_eq!(a.body, json!({"data": {"hello": "hello"}}));
}

const LIMIT: RateLimitStatus = RateLimitStatus {
    policy: "key-rate",
    limit: 10,
    window_secs: 60,
    remaining: 7,
    reset_secs: 18,
};
const POLICY_HEADER: &str = "\"key-rate\";q=10;w=60";
const RATELIMIT_HEADER: &str = "\"key-rate\";r=7;t=18";

/// Accepts any bearer token (scope `read`; the token is the subject): `fast-*` from its
/// "cache", others through the slow path; a token containing `limited` gets a principal with
/// a rate-limit state.
pub struct Limited;

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

impl Limited {
    /// An optional gate over [`Limited`].
    pub fn gate() -> Gate {
        Gate::builder(Limited).optional().realm(REALM).build()
    }

    /// An optional gate over [`Limited`] whose gate-wide policy needs scope `graphql`.
    pub fn policy_gate() -> Gate {
        Gate::builder(Limited)
            .optional()
            .realm(REALM)
            .policy(Scopes::all(["graphql"]))
            .build()
    }
}

fn rate_limit_headers(a: &Answer) -> (Option<&str>, Option<&str>) {
    (a.header("ratelimit-policy"), a.header("ratelimit"))
}

/// Scenarios for the endpoint at `url` served with [`Limited::gate`]: every answer to an
/// authenticated caller with a rate-limit state carries its headers, others none.
pub async fn rate_limits(url: &str) {
    let limited = (Some(POLICY_HEADER), Some(RATELIMIT_HEADER));
    for token in ["fast-limited", "slow-limited"] {
        let a = post(url, Some(token), "{ whoami { subject } }").await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body["data"]["whoami"]["subject"], token, "{}", a.text);
        assert_eq!(rate_limit_headers(&a), limited, "{token}");

        // Field errors are part of an executed answer.
        let a = post(url, Some(token), "{ admin }").await;
        assert_eq!(a.code(0), "FORBIDDEN");
        assert_eq!(rate_limit_headers(&a), limited, "{token}");

        // A body that holds no GraphQL request, from an authenticated caller.
        let bad = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{not json");
        let a = send(bad).await;
        assert_eq!(a.status, 400, "{a:?}");
        assert_eq!(rate_limit_headers(&a), limited, "{token}");
    }
    for token in ["fast-plain", "slow-plain"] {
        let a = post(url, Some(token), "{ whoami { subject } }").await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(rate_limit_headers(&a), (None, None), "{token}");
    }
    let a = post(url, None, "{ hello }").await;
    assert_eq!(rate_limit_headers(&a), (None, None));
}

/// Scenarios for the endpoint at `url` served with [`Limited::policy_gate`]: the gate-wide
/// policy's refusal carries the caller's rate-limit headers.
pub async fn rate_limited_policy_refusal(url: &str) {
    for token in ["fast-limited", "slow-limited"] {
        let a = post(url, Some(token), "{ hello }").await;
        assert_refused(
            &a,
            403,
            &format!(r#"Bearer realm="{REALM}", error="insufficient_scope""#),
            "FORBIDDEN",
        );
        assert_eq!(
            rate_limit_headers(&a),
            (Some(POLICY_HEADER), Some(RATELIMIT_HEADER)),
            "{token}"
        );
    }
}

//! Scenarios through the axum adapter over real HTTP on loopback: every validation rule, attack
//! tokens, scopes, optional auth, extractors, and the JWKS behaviours (rotation, unknown-kid
//! flood, endpoint down, slow endpoint) seen from a client.
#![allow(clippy::unwrap_used)]

use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::policy::Scopes;
use auth_core::{Algorithm, Gate};
use auth_tests::fixtures::issuer::{generate_key, now};
use auth_tests::{JwksServer, Mode, TestIssuer};
use auth_tower::{AuthLayer, Claims, Principal, RequireLayer};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ISS: &str = "https://issuer.test";
const AUD: &str = "test-api";
const REALM: &str = "test";

/// A running server; aborted on drop.
struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(serde::Deserialize)]
struct Custom {
    sub: String,
    department: String,
}

fn router(jwt: Jwt) -> Router {
    let required = AuthLayer::new(Gate::builder(jwt.clone()).realm(REALM).build());
    let optional = Gate::builder(jwt).realm(REALM).optional().build();
    let protected = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move {
                Json(json!({"subject": p.subject(), "scopes": p.scopes(), "kid": p.key_id()}))
            }),
        )
        .route(
            "/admin",
            get(|| async { "admin area" }).route_layer(required.require(Scopes::all(["admin"]))),
        )
        .route(
            "/reports",
            get(|| async { "numbers" }).route_layer(RequireLayer::any_scope(["reports", "admin"])),
        )
        .route(
            "/custom",
            get(|Claims(c): Claims<Custom>| async move { format!("{}@{}", c.sub, c.department) }),
        )
        .layer(required);
    let open = Router::new()
        .route(
            "/maybe",
            get(|p: Option<Principal>| async move {
                p.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
            }),
        )
        .layer(AuthLayer::new(optional));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/nolayer",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .merge(protected)
        .merge(open)
}

async fn serve(router: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server { base, task }
}

fn static_jwt(issuer: &TestIssuer) -> Jwt {
    Jwt::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .keys(KeySet::from_jwks(&issuer.jwks().to_string()).unwrap()),
        )
        .build()
        .unwrap()
}

struct Reply {
    status: u16,
    challenge: String,
    body: String,
}

async fn get_with(client: &reqwest::Client, url: &str, auth: &[String]) -> Reply {
    let mut req = client.get(url);
    for a in auth {
        req = req.header("authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Reply {
        status,
        challenge,
        body: res.text().await.unwrap(),
    }
}

async fn bearer(client: &reqwest::Client, url: &str, token: &str) -> Reply {
    get_with(client, url, &[format!("Bearer {token}")]).await
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Asserts a 401 `invalid_token` that does not echo the token.
fn assert_invalid_token(r: &Reply, token: &str, what: &str) {
    assert_eq!(r.status, 401, "{what}: status (body {})", r.body);
    assert!(
        r.challenge.starts_with(&format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\""
        )),
        "{what}: challenge {}",
        r.challenge
    );
    if token.len() > 8 {
        assert!(
            !r.body.contains(token) && !r.challenge.contains(token),
            "{what}: token echoed"
        );
    }
}

#[tokio::test]
async fn valid_tokens_of_every_key_type_are_accepted() {
    let issuer = TestIssuer::new(ISS, AUD);
    let server = serve(router(static_jwt(&issuer))).await;
    let client = reqwest::Client::new();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = issuer.mint_with_alg(alg, json!({"scope": "read admin"}));
        let r = bearer(&client, &format!("{}/whoami", server.base), &token).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["subject"], TestIssuer::SUBJECT);
        assert_eq!(body["scopes"], json!(["read", "admin"]));
        // Second request: from the cache, same answer.
        let again = bearer(&client, &format!("{}/whoami", server.base), &token).await;
        assert_eq!(again.body, r.body);
    }
}

#[tokio::test]
async fn request_shape_rules() {
    let issuer = TestIssuer::new(ISS, AUD);
    let server = serve(router(static_jwt(&issuer))).await;
    let client = reqwest::Client::new();
    let url = format!("{}/whoami", server.base);
    let token = issuer.token();

    let none = get_with(&client, &url, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.challenge, format!("Bearer realm=\"{REALM}\""));

    let two = get_with(
        &client,
        &url,
        &[format!("Bearer {token}"), format!("Bearer {token}")],
    )
    .await;
    assert_eq!(two.status, 400);
    assert!(
        two.challenge.contains("error=\"invalid_request\""),
        "{}",
        two.challenge
    );

    for bad in ["Bearer", "Bearer a b", "Bearer a,b", "Bearer {x}"] {
        let r = get_with(&client, &url, &[bad.to_owned()]).await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(r.challenge.contains("invalid_request"), "{bad:?}");
    }

    // Another scheme is not a bearer credential: 401 without an error code.
    let basic = get_with(&client, &url, &["Basic dXNlcjpwYXNz".to_owned()]).await;
    assert_eq!(basic.status, 401);
    assert_eq!(basic.challenge, format!("Bearer realm=\"{REALM}\""));

    // The scheme is case-insensitive.
    let lower = get_with(&client, &url, &[format!("bearer {token}")]).await;
    assert_eq!(lower.status, 200);

    let health = get_with(&client, &format!("{}/healthz", server.base), &[]).await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn claim_validation_rules() {
    let issuer = TestIssuer::new(ISS, AUD);
    let server = serve(router(static_jwt(&issuer))).await;
    let client = reqwest::Client::new();
    let url = format!("{}/whoami", server.base);
    let t = now();
    let cases: Vec<(&str, Value)> = vec![
        ("expired beyond leeway", json!({"exp": t - 120})),
        ("exp not a number", json!({"exp": "tomorrow"})),
        ("no exp", json!({"exp": null})),
        ("nbf in the future", json!({"nbf": t + 600})),
        ("iat far in the future", json!({"iat": t + 600})),
        ("wrong audience", json!({"aud": "other-api"})),
        ("no aud", json!({"aud": null})),
        ("aud array without us", json!({"aud": ["a", "b"]})),
        ("no iss", json!({"iss": null})),
        ("unknown iss", json!({"iss": "https://evil.test"})),
        ("iss not a string", json!({"iss": 42})),
        ("no sub", json!({"sub": null})),
    ];
    for (what, overrides) in cases {
        let token = issuer.mint(overrides);
        let r = bearer(&client, &url, &token).await;
        assert_invalid_token(&r, &token, what);
    }
    // Within leeway (60 s) and other accepted shapes.
    let ok: Vec<(&str, Value)> = vec![
        ("expired within leeway", json!({"exp": t - 30})),
        ("nbf within leeway", json!({"nbf": t + 30})),
        ("aud array with us", json!({"aud": ["other", AUD]})),
        ("scp array", json!({"scope": null, "scp": ["read"]})),
    ];
    for (what, overrides) in ok {
        let r = bearer(&client, &url, &issuer.mint(overrides)).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
    }
}

#[tokio::test]
async fn attack_tokens_are_refused_and_the_server_stays_up() {
    let issuer = TestIssuer::new(ISS, AUD);
    let attacker = TestIssuer::new(ISS, AUD);
    let evil_jwks = JwksServer::start_with(attacker.jwks()).await;
    let server = serve(router(static_jwt(&issuer))).await;
    let client = reqwest::Client::new();
    let url = format!("{}/whoami", server.base);
    let claims = issuer.claims(Value::Null);
    let good = issuer.token();
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();

    // HMAC keyed with the RSA public key (algorithm confusion), in three encodings.
    let rsa_jwk = issuer.key(TestIssuer::RSA_KID).unwrap().public_jwk();
    let n = URL_SAFE_NO_PAD
        .decode(rsa_jwk["n"].as_str().unwrap())
        .unwrap();
    let mut confusion = Vec::new();
    for secret in [
        n.clone(),
        rsa_jwk.to_string().into_bytes(),
        issuer.jwks().to_string().into_bytes(),
    ] {
        let hmac = auth_core::issuer::SigningKey::from_pkcs8(
            Algorithm::HS256,
            TestIssuer::RSA_KID,
            &secret,
        )
        .unwrap();
        confusion.push(hmac.sign(&claims).unwrap());
    }
    let attacker_ec = attacker.key(TestIssuer::EC_KID).unwrap();
    let embedded_jwk = attacker_ec
        .sign_raw(
            &json!({"alg": "ES256", "jwk": attacker_ec.public_jwk()}).to_string(),
            &claims.to_string(),
        )
        .unwrap();
    let embedded_jwk_kid = attacker_ec
        .sign_raw(
            &json!({"alg": "ES256", "kid": TestIssuer::EC_KID, "jwk": attacker_ec.public_jwk()})
                .to_string(),
            &claims.to_string(),
        )
        .unwrap();
    let jku = attacker.mint_raw(
        TestIssuer::RSA_KID,
        &json!({"alg": "RS256", "kid": "evil-1", "jku": evil_jwks.jwks_url()}),
        &claims,
    );
    let x5u = attacker.mint_raw(
        TestIssuer::RSA_KID,
        &json!({"alg": "RS256", "kid": "evil-1", "x5u": evil_jwks.url()}),
        &claims,
    );
    let rsa = issuer.key(TestIssuer::RSA_KID).unwrap();
    let crit = issuer.mint_raw(
        TestIssuer::RSA_KID,
        &json!({"alg": "RS256", "kid": TestIssuer::RSA_KID, "crit": ["exp"], "exp": 1}),
        &claims,
    );
    let dup_header = rsa
        .sign_raw(
            &format!(
                r#"{{"alg":"RS256","kid":"{}","kid":"other"}}"#,
                TestIssuer::RSA_KID
            ),
            &claims.to_string(),
        )
        .unwrap();
    let dup_claims = rsa
        .sign_raw(
            &json!({"alg": "RS256", "kid": TestIssuer::RSA_KID}).to_string(),
            &format!(
                r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","sub":"admin","exp":{}}}"#,
                now() + 60
            ),
        )
        .unwrap();
    let mut tampered_claims = claims.clone();
    tampered_claims["scope"] = json!("admin");
    let tampered = format!("{head}.{}.{sig}", b64(&tampered_claims.to_string()));
    let same_kid_other_key = attacker.mint_with_key(TestIssuer::RSA_KID, Value::Null);
    let wrong_alg_for_key = issuer.mint_raw(
        TestIssuer::RSA_KID,
        &json!({"alg": "PS256", "kid": TestIssuer::RSA_KID}),
        &claims,
    );
    let attacks: Vec<(&str, String)> = vec![
        ("alg none, empty signature", format!("{}.{payload}.", b64(r#"{"alg":"none"}"#))),
        ("alg none, signature kept", format!("{}.{payload}.{sig}", b64(r#"{"alg":"none"}"#))),
        ("alg None", format!("{}.{payload}.{sig}", b64(r#"{"alg":"None"}"#))),
        ("stripped signature", format!("{head}.{payload}.")),
        ("two-part token", format!("{head}.{payload}")),
        ("HS256 with the RSA modulus", confusion[0].clone()),
        ("HS256 with the RSA JWK", confusion[1].clone()),
        ("HS256 with the JWKS", confusion[2].clone()),
        ("embedded jwk", embedded_jwk),
        ("embedded jwk with our kid", embedded_jwk_kid),
        ("jku to attacker keys", jku),
        ("x5u to attacker", x5u),
        ("crit header", crit),
        ("duplicate header member", dup_header),
        ("duplicate claim", dup_claims),
        ("tampered payload", tampered),
        ("our kid, attacker key", same_kid_other_key),
        ("alg not allowed for the key", wrong_alg_for_key),
        ("oversized token", format!("{head}.{}.{sig}", "A".repeat(9 * 1024))),
        ("garbage", "x".repeat(40)),
        ("three garbage parts", "abc.def.ghi".into()),
        ("header not JSON", format!("{}.{payload}.{sig}", b64("not json"))),
        ("header a JSON array", format!("{}.{payload}.{sig}", b64("[1]"))),
        ("claims not JSON", format!("{head}.{}.{sig}", b64("{"))),
        ("padded base64", format!("{head}.{payload}.{sig}==")),
        ("deeply nested claims", issuer.mint(json!({"x": serde_json::from_str::<Value>(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap()}))),
    ];
    for (what, token) in &attacks {
        let r = bearer(&client, &url, token).await;
        assert_invalid_token(&r, token, what);
    }
    assert_eq!(evil_jwks.fetch_count(), 0, "jku/x5u must never be fetched");
    // The server is still up and still accepts good tokens.
    assert_eq!(bearer(&client, &url, &good).await.status, 200);
}

#[tokio::test]
async fn scopes_optional_auth_and_extractors() {
    let issuer = TestIssuer::new(ISS, AUD);
    let server = serve(router(static_jwt(&issuer))).await;
    let client = reqwest::Client::new();
    let reader = issuer.mint(json!({"scope": "read"}));
    let admin = issuer.mint(json!({"scope": "read admin", "department": "ops"}));

    let denied = bearer(&client, &format!("{}/admin", server.base), &reader).await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.challenge,
        format!(
            "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"the token lacks the required scope\", scope=\"admin\""
        )
    );
    assert_eq!(
        bearer(&client, &format!("{}/admin", server.base), &admin)
            .await
            .status,
        200
    );

    let maybe = format!("{}/maybe", server.base);
    let anon = get_with(&client, &maybe, &[]).await;
    assert_eq!((anon.status, anon.body.as_str()), (200, "anonymous"));
    let known = bearer(&client, &maybe, &reader).await;
    assert_eq!(
        (known.status, known.body.as_str()),
        (200, TestIssuer::SUBJECT)
    );
    let bad = bearer(&client, &maybe, "abc.def.ghi").await;
    assert_invalid_token(&bad, "abc.def.ghi", "optional route, bad token");

    let custom = format!("{}/custom", server.base);
    let typed = bearer(&client, &custom, &admin).await;
    assert_eq!((typed.status, typed.body.as_str()), (200, "test-user@ops"));
    let wrong_shape = bearer(&client, &custom, &reader).await;
    assert_eq!(wrong_shape.status, 401);
    // The extractor runs after authentication and knows no realm: it leaves it out.
    assert!(
        wrong_shape
            .challenge
            .starts_with("Bearer error=\"invalid_token\""),
        "{}",
        wrong_shape.challenge
    );
    assert!(!wrong_shape.body.contains(&reader));

    let nolayer = bearer(&client, &format!("{}/nolayer", server.base), &reader).await;
    assert_eq!(nolayer.status, 500);
    assert!(!nolayer.body.contains(&reader));
}

async fn jwks_jwt(server: &JwksServer, cooldown: Duration) -> (Jwt, JwksCache) {
    let jwks = JwksCache::builder(server.jwks_url())
        .unknown_kid_cooldown(cooldown)
        .build()
        .unwrap();
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).audience(AUD).jwks(jwks.clone()))
        .build()
        .unwrap();
    (jwt, jwks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_causes_at_most_three_fetches() {
    let issuer = TestIssuer::new(ISS, AUD);
    let jwks_server = JwksServer::start_with(issuer.jwks()).await;
    let (jwt, _jwks) = jwks_jwt(&jwks_server, Duration::from_secs(5)).await;
    let server = serve(router(jwt)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/whoami", server.base);
    // Warm up: a good token (waits for the first fetch if needed).
    assert_eq!(bearer(&client, &url, &issuer.token()).await.status, 200);

    let attacker = generate_key(Algorithm::RS256, "x");
    let claims = issuer.claims(Value::Null);
    let tokens: Vec<String> = (0..500)
        .map(|i| {
            attacker
                .sign_raw(
                    &json!({"alg": "RS256", "kid": format!("random-{i}-{}", now())}).to_string(),
                    &claims.to_string(),
                )
                .unwrap()
        })
        .collect();
    for chunk in tokens.chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for t in chunk {
            let (client, url, t) = (client.clone(), url.clone(), t.clone());
            set.spawn(async move { (bearer(&client, &url, &t).await, t) });
        }
        while let Some(res) = set.join_next().await {
            let (r, t) = res.unwrap();
            assert_invalid_token(&r, &t, "random kid");
        }
    }
    let fetches = jwks_server.fetch_count();
    assert!(fetches <= 3, "{fetches} JWKS fetches for 500 random kids");
    assert_eq!(bearer(&client, &url, &issuer.token()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_removal_outage_and_slow_endpoint() {
    let mut issuer = TestIssuer::new(ISS, AUD);
    let jwks_server = JwksServer::start_with(issuer.jwks()).await;
    let (jwt, jwks) = jwks_jwt(&jwks_server, Duration::from_millis(300)).await;
    let server = serve(router(jwt)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/whoami", server.base);
    let old = issuer.token();
    assert_eq!(bearer(&client, &url, &old).await.status, 200);

    // Rotation: a new key is published; its tokens are accepted within seconds, no restart.
    issuer.add_key(Algorithm::ES384, "rotated-1");
    jwks_server.set_jwks(issuer.jwks());
    let fresh = issuer.mint_with_key("rotated-1", Value::Null);
    let started = Instant::now();
    loop {
        let r = bearer(&client, &url, &fresh).await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "rotated key not accepted: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Slow endpoint: a refresh stalls for 3 s; known keys answer at once meanwhile.
    jwks_server.set_mode(Mode::Stall(Duration::from_secs(3)));
    let stalled = {
        let jwks = jwks.clone();
        tokio::spawn(async move { jwks.refresh().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    assert_eq!(
        bearer(&client, &url, &issuer.mint(Value::Null))
            .await
            .status,
        200
    );
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "known key waited {:?}",
        t0.elapsed()
    );
    stalled.abort();

    // Outage: the endpoint fails or answers garbage; held keys keep working.
    for mode in [Mode::Fail, Mode::Garbage] {
        jwks_server.set_mode(mode);
        assert!(!jwks.refresh().await, "{mode:?} refresh must fail");
        assert_eq!(
            bearer(&client, &url, &issuer.mint(Value::Null))
                .await
                .status,
            200,
            "{mode:?}"
        );
        assert_eq!(
            bearer(&client, &url, &old).await.status,
            200,
            "{mode:?} cached"
        );
    }
    jwks_server.set_mode(Mode::Normal);

    // Removal: the RSA key is withdrawn; after the next refresh its tokens stop working,
    // including the one verified (and cached) before.
    issuer.remove_key(TestIssuer::RSA_KID);
    jwks_server.set_jwks(issuer.jwks());
    assert!(jwks.refresh().await);
    let r = bearer(&client, &url, &old).await;
    assert_invalid_token(&r, &old, "token of a removed key");
    assert_eq!(bearer(&client, &url, &fresh).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_unreachable_before_any_key_is_503_not_401() {
    let issuer = TestIssuer::new(ISS, AUD);
    let jwks_server = JwksServer::start_with(issuer.jwks()).await;
    jwks_server.set_mode(Mode::Fail);
    let (jwt, _jwks) = jwks_jwt(&jwks_server, Duration::from_millis(100)).await;
    let server = serve(router(jwt)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/whoami", server.base);
    let token = issuer.token();
    let r = bearer(&client, &url, &token).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.challenge.is_empty(),
        "no challenge on 503: {}",
        r.challenge
    );
    assert!(!r.body.contains(&token));
    // Once the issuer answers, the same token is accepted.
    jwks_server.set_mode(Mode::Normal);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(bearer(&client, &url, &token).await.status, 200);
}

//! The actix-web adapter over real HTTP on loopback: a server on `127.0.0.1:0` with two
//! workers, a reqwest client, the outcomes of the core's table, the peer address a policy sees,
//! and concurrent first-time verifications (the slow path) across workers.
#![allow(clippy::unwrap_used)]

mod common;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use auth_actix::{AuthMiddleware, Claims, OptionalPrincipal, Principal};
use auth_core::Gate;
use auth_core::jwt::Jwt;
use auth_core::policy::{Rule, Scopes};
use common::{REALM, TestIssuer};
use serde_json::{Value, json};

#[derive(serde::Deserialize)]
struct Custom {
    sub: String,
    department: String,
}

struct Server {
    base: String,
    handle: ServerHandle,
}

impl Server {
    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

fn start(jwt: Jwt) -> Server {
    let required = AuthMiddleware::new(Gate::builder(jwt.clone()).realm(REALM).build());
    let optional = AuthMiddleware::new(Gate::builder(jwt).realm(REALM).optional().build());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .service(
                web::scope("/api")
                    .service(
                        web::resource("/admin")
                            .wrap(required.require(Scopes::all(["admin"])))
                            .route(web::get().to(|| async { "admin area" })),
                    )
                    .service(
                        web::resource("/tenants/{tenant}")
                            .wrap(required.require(Rule::tenant_matches("path:tenant")))
                            .route(web::get().to(|| async { "tenant area" })),
                    )
                    .service(
                        web::resource("/loopback-only")
                            .wrap(
                                required.require(Rule::source_in(["127.0.0.0/8".parse().unwrap()])),
                            )
                            .route(web::get().to(|| async { "local" })),
                    )
                    .service(
                        web::resource("/private-net-only")
                            .wrap(
                                required.require(Rule::source_in(["10.0.0.0/8".parse().unwrap()])),
                            )
                            .route(web::get().to(|| async { "private" })),
                    )
                    .route(
                        "/whoami",
                        web::get().to(|p: Principal| async move {
                            web::Json(json!({"subject": p.subject(), "scopes": p.scopes()}))
                        }),
                    )
                    .route(
                        "/custom",
                        web::get().to(|Claims(c): Claims<Custom>| async move {
                            format!("{}@{}", c.sub, c.department)
                        }),
                    )
                    .wrap(required.clone()),
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
            .route(
                "/nolayer",
                web::get().to(|p: Principal| async move { p.subject().to_owned() }),
            )
    })
    .workers(2)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Server { base, handle }
}

struct Reply {
    status: u16,
    challenge: String,
    body: String,
}

async fn send(client: &reqwest::Client, url: &str, auth: &[String]) -> Reply {
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
    if status >= 400 {
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
    }
    Reply {
        status,
        challenge,
        body: res.text().await.unwrap(),
    }
}

async fn bearer(client: &reqwest::Client, url: &str, token: &str) -> Reply {
    send(client, url, &[format!("Bearer {token}")]).await
}

#[actix_web::test]
async fn outcomes_over_http() {
    let issuer = TestIssuer::new();
    let server = start(issuer.jwt());
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);
    let token = issuer.token();

    let ok = bearer(&client, &url("/api/whoami"), &token).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let body: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(body, json!({"subject": "alice", "scopes": ["read"]}));

    let none = send(&client, &url("/api/whoami"), &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.challenge, format!(r#"Bearer realm="{REALM}""#));

    let two = send(
        &client,
        &url("/api/whoami"),
        &[format!("Bearer {token}"), format!("Bearer {token}")],
    )
    .await;
    assert_eq!(two.status, 400);
    assert!(
        two.challenge.contains(r#"error="invalid_request""#),
        "{}",
        two.challenge
    );

    let bad = bearer(&client, &url("/api/whoami"), "abc.def.ghi").await;
    assert_eq!(bad.status, 401);
    assert!(
        bad.challenge
            .starts_with(&format!(r#"Bearer realm="{REALM}", error="invalid_token""#)),
        "{}",
        bad.challenge
    );

    let denied = bearer(&client, &url("/api/admin"), &token).await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.challenge.contains(r#"error="insufficient_scope""#)
            && denied.challenge.ends_with(r#"scope="admin""#),
        "{}",
        denied.challenge
    );
    let admin = issuer.mint(json!({"scope": "read admin"}));
    assert_eq!(
        bearer(&client, &url("/api/admin"), &admin).await.status,
        200
    );

    assert_eq!(
        bearer(&client, &url("/api/tenants/acme"), &token)
            .await
            .status,
        200
    );
    assert_eq!(
        bearer(&client, &url("/api/tenants/globex"), &token)
            .await
            .status,
        403
    );

    // The policy sees the socket's peer address, not a header the caller sends.
    assert_eq!(
        bearer(&client, &url("/api/loopback-only"), &token)
            .await
            .status,
        200
    );
    let spoofed = client
        .get(url("/api/private-net-only"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "10.1.2.3")
        .header("forwarded", "for=10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);

    let custom = bearer(&client, &url("/api/custom"), &token).await;
    assert_eq!(
        (custom.status, custom.body.as_str()),
        (200, "alice@research")
    );

    let anonymous = send(&client, &url("/maybe"), &[]).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (200, "anonymous")
    );
    assert_eq!(
        bearer(&client, &url("/maybe"), "abc.def.ghi").await.status,
        401
    );

    let nolayer = bearer(&client, &url("/nolayer"), &token).await;
    assert_eq!((nolayer.status, nolayer.challenge.as_str()), (500, ""));

    server.stop().await;
}

#[actix_web::test]
async fn concurrent_first_verifications() {
    let issuer = TestIssuer::new();
    let server = start(issuer.jwt());
    let client = reqwest::Client::new();
    let url = format!("{}/api/whoami", server.base);
    // Distinct tokens: each one is a cache miss, verified on the slow path.
    let tokens: Vec<String> = (0..32)
        .map(|i| issuer.mint(json!({"sub": format!("user-{i}")})))
        .collect();
    let replies =
        futures_util::future::join_all(tokens.iter().map(|t| bearer(&client, &url, t))).await;
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.status, 200, "{}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["subject"], format!("user-{i}"));
    }
    server.stop().await;
}

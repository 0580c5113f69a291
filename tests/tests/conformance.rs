//! The conformance matrix (`auth_tests::matrix`) run against every framework adapter over real
//! servers on loopback.
#![allow(clippy::unwrap_used)]

use auth_core::Gate;
use auth_core::policy::Scopes;
use auth_tests::matrix::{
    self, BoxFuture, Credential, Framework, Outcome, REALM, Running, Setup, Target,
    classify_challenge,
};
use auth_tower::{AuthLayer, Principal};
use axum::Router;
use axum::routing::get;

/// Classifies an HTTP answer, checking that the status agrees with the challenge.
fn classify_http(status: u16, challenge: Option<&str>, body: String) -> Outcome {
    if status == 200 {
        return Outcome::Ok(body);
    }
    let outcome = classify_challenge(None, challenge, &format!("HTTP {status}"));
    let expected_status = match &outcome {
        Outcome::Unauthenticated | Outcome::InvalidToken => 401,
        Outcome::InvalidRequest => 400,
        Outcome::Forbidden(_) => 403,
        _ => return outcome,
    };
    if status != expected_status {
        return Outcome::Other(format!("HTTP {status} with challenge {challenge:?}"));
    }
    if !challenge.is_some_and(|c| c.contains(&format!("realm=\"{REALM}\""))) {
        return Outcome::Other(format!(
            "HTTP {status}: challenge without the realm: {challenge:?}"
        ));
    }
    outcome
}

/// Calls an HTTP server with the standard paths.
struct HttpServer {
    base: String,
    client: reqwest::Client,
    _task: Task,
}

struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn path(target: &Target) -> String {
    match target {
        Target::WhoAmI => "/whoami".into(),
        Target::Admin => "/admin".into(),
        Target::Editor => "/editor".into(),
        Target::Tenant(t) => format!("/tenants/{t}/whoami"),
        Target::Optional => "/maybe".into(),
    }
}

impl Running for HttpServer {
    fn call<'a>(
        &'a self,
        target: &'a Target,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut req = self.client.get(format!("{}{}", self.base, path(target)));
            match credential {
                Credential::None => {}
                Credential::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
                Credential::TwoHeaders(t) => {
                    req = req
                        .header("authorization", format!("Bearer {t}"))
                        .header("authorization", format!("Bearer {t}"));
                }
                Credential::Raw(v) => req = req.header("authorization", v.as_str()),
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let challenge = res
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = res.text().await.unwrap();
            classify_http(status, challenge.as_deref(), body)
        })
    }
}

struct Axum;

impl Framework for Axum {
    fn name(&self) -> &'static str {
        "axum"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let jwt = setup.jwt();
        Box::pin(async move {
            let auth = AuthLayer::new(Gate::builder(jwt.clone()).realm(REALM).build());
            let optional = AuthLayer::new(Gate::builder(jwt).realm(REALM).optional().build());
            let subject = |p: Principal| async move { p.subject().to_owned() };
            let protected = Router::new()
                .route("/whoami", get(subject))
                .route(
                    "/admin",
                    get(subject).route_layer(auth.require(Scopes::all(["admin"]))),
                )
                .route(
                    "/editor",
                    get(subject).route_layer(auth.require(Setup::editor_policy())),
                )
                .route(
                    "/tenants/{tenant}/whoami",
                    get(subject).route_layer(auth.require(Setup::tenant_policy("path:tenant"))),
                )
                .layer(auth);
            let open = Router::new()
                .route(
                    "/maybe",
                    get(|p: Option<Principal>| async move {
                        p.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
                    }),
                )
                .layer(optional);
            let app = protected.merge(open);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let task = Task(tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            }));
            Box::new(HttpServer {
                base,
                client: reqwest::Client::new(),
                _task: task,
            }) as Box<dyn Running>
        })
    }
}

fn frameworks() -> Vec<Box<dyn Framework>> {
    vec![Box::new(Axum)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_on_every_framework() {
    let setup = Setup::new();
    let mut failures = Vec::new();
    let frameworks = frameworks();
    for fw in &frameworks {
        let f = matrix::run(fw.as_ref(), &setup).await;
        println!(
            "{}: {} scenarios, {} failed",
            fw.name(),
            matrix::scenarios(&setup).len(),
            f.len()
        );
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "conformance failures:\n  {}",
        failures.join("\n  ")
    );
    assert!(!frameworks.is_empty());
}

//! The conformance matrix (`auth_tests::matrix`) run against every framework adapter over real
//! servers on loopback.
#![allow(clippy::unwrap_used)]

use auth_core::Gate;
use auth_core::policy::{PolicyMap, Scopes};
use auth_examples::proto::demo_v1::demo_client::DemoClient;
use auth_examples::proto::demo_v1::demo_server::{Demo, DemoServer};
use auth_examples::proto::demo_v1::{AdminReply, WhoAmIReply};
use auth_grpc::GrpcAuthLayer;
use auth_tests::matrix::{
    self, BoxFuture, Credential, Framework, Outcome, REALM, Reply, Running, Setup, Target,
    classify_challenge,
};
use auth_tower::{AuthLayer, Principal};
use axum::Router;
use axum::routing::get;

/// The rate-limit fields of an answer: `retry-after`, `ratelimit-policy`, `ratelimit` (HTTP
/// headers or gRPC metadata).
#[derive(Debug, Default)]
struct RateFields {
    retry_after: Option<String>,
    policy: Option<String>,
    limit: Option<String>,
}

impl RateFields {
    fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            retry_after: get("retry-after"),
            policy: get("ratelimit-policy"),
            limit: get("ratelimit"),
        }
    }

    /// `RateLimited` when the refusal carries `retry-after` and both rate-limit fields and no
    /// challenge; what is wrong with it otherwise.
    fn rate_limited(&self, kind: &str, challenge: Option<&str>) -> Outcome {
        if challenge.is_none()
            && self.retry_after.is_some()
            && self.policy.is_some()
            && self.limit.is_some()
        {
            Outcome::RateLimited
        } else {
            Outcome::Other(format!(
                "{kind} without retry-after and rate-limit fields, or with a challenge: \
                 {self:?}, challenge {challenge:?}"
            ))
        }
    }

    fn reply(self, outcome: Outcome) -> Reply {
        Reply {
            outcome,
            rate_limit_policy: self.policy,
            rate_limit: self.limit,
        }
    }
}

/// One HTTP answer, as the matrix looks at it.
struct HttpAnswer {
    status: u16,
    challenge: Option<String>,
    fields: RateFields,
    body: String,
}

/// Classifies an HTTP answer, checking that the status agrees with the challenge.
fn classify_http(answer: &HttpAnswer) -> Outcome {
    let (status, challenge) = (answer.status, answer.challenge.as_deref());
    if status == 200 {
        return Outcome::Ok(answer.body.clone());
    }
    if status == 429 {
        return answer.fields.rate_limited("HTTP 429", challenge);
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

/// Sends `req` presenting `credential`.
async fn send(mut req: reqwest::RequestBuilder, credential: &Credential) -> HttpAnswer {
    match credential {
        Credential::None => {}
        Credential::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
        Credential::TwoHeaders(t) => {
            req = req
                .header("authorization", format!("Bearer {t}"))
                .header("authorization", format!("Bearer {t}"));
        }
        Credential::Raw(v) => req = req.header("authorization", v.as_str()),
        Credential::ApiKey(k) => req = req.header("x-api-key", k.as_str()),
        Credential::ApiKeyAndBearer(k, t) => {
            req = req
                .header("x-api-key", k.as_str())
                .header("authorization", format!("Bearer {t}"));
        }
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, challenge, fields) = (
        res.status().as_u16(),
        header("www-authenticate"),
        RateFields::read(header),
    );
    HttpAnswer {
        status,
        challenge,
        fields,
        body: res.text().await.unwrap(),
    }
}

/// Calls an HTTP server with the standard paths.
struct HttpClient {
    base: String,
    client: reqwest::Client,
}

/// An axum server running on the test's runtime.
struct AxumServer {
    http: HttpClient,
    _task: Task,
}

/// An actix-web server running on its own thread and system.
struct ActixServer {
    http: HttpClient,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ActixServer {
    fn drop(&mut self) {
        // Stop without waiting for graceful shutdown, then reap the thread.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Running for AxumServer {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        self.http.reply(target, credential)
    }
}

impl Running for ActixServer {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        self.http.reply(target, credential)
    }
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

impl HttpClient {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let req = self.client.get(format!("{}{}", self.base, path(target)));
            let answer = send(req, credential).await;
            let outcome = classify_http(&answer);
            answer.fields.reply(outcome)
        })
    }
}

struct Axum;

impl Framework for Axum {
    fn name(&self) -> &'static str {
        "axum"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.authenticator();
        Box::pin(async move {
            let auth = AuthLayer::new(Gate::builder(authn.clone()).realm(REALM).build());
            let optional = AuthLayer::new(Gate::builder(authn).realm(REALM).optional().build());
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
            Box::new(AxumServer {
                http: HttpClient {
                    base,
                    client: reqwest::Client::new(),
                },
                _task: task,
            }) as Box<dyn Running>
        })
    }
}

struct Actix;

impl Framework for Actix {
    fn name(&self) -> &'static str {
        "actix-web"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        use actix_web::{App, HttpServer, web};
        use auth_actix::{AuthMiddleware, OptionalPrincipal, Principal};
        let authn = setup.authenticator();
        Box::pin(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let thread = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        let auth =
                            AuthMiddleware::new(Gate::builder(authn.clone()).realm(REALM).build());
                        let optional = AuthMiddleware::new(
                            Gate::builder(authn.clone()).realm(REALM).optional().build(),
                        );
                        let subject = |p: Principal| async move { p.subject().to_owned() };
                        App::new()
                            .service(web::resource("/maybe").wrap(optional).route(web::get().to(
                                |p: OptionalPrincipal| async move {
                                    p.0.map_or_else(
                                        || "anonymous".to_owned(),
                                        |p| p.subject().to_owned(),
                                    )
                                },
                            )))
                            .service(
                                web::scope("")
                                    .wrap(auth.clone())
                                    .route("/whoami", web::get().to(subject))
                                    .service(
                                        web::resource("/admin")
                                            .wrap(auth.require(Scopes::all(["admin"])))
                                            .route(web::get().to(subject)),
                                    )
                                    .service(
                                        web::resource("/editor")
                                            .wrap(auth.require(Setup::editor_policy()))
                                            .route(web::get().to(subject)),
                                    )
                                    .service(
                                        web::resource("/tenants/{tenant}/whoami")
                                            .wrap(auth.require(Setup::tenant_policy("path:tenant")))
                                            .route(web::get().to(subject)),
                                    ),
                            )
                    })
                    .workers(1)
                    .listen(listener)
                    .unwrap()
                    .run();
                    let _ = ready_tx.send(server.handle());
                    server.await.unwrap();
                });
            });
            let handle = ready_rx.await.unwrap();
            Box::new(ActixServer {
                http: HttpClient {
                    base,
                    client: reqwest::Client::new(),
                },
                handle,
                thread: Some(thread),
            }) as Box<dyn Running>
        })
    }
}

/// The demo gRPC service as the matrix needs it: both methods answer the subject the layer let
/// through (`anonymous` when there is none).
struct MatrixDemo;

fn subject_of<T>(request: &tonic::Request<T>) -> String {
    request
        .extensions()
        .get::<auth_core::Principal>()
        .map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
}

#[tonic::async_trait]
impl Demo for MatrixDemo {
    async fn who_am_i(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<WhoAmIReply>, tonic::Status> {
        Ok(tonic::Response::new(WhoAmIReply {
            subject: subject_of(&request),
            ..WhoAmIReply::default()
        }))
    }

    async fn admin(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<AdminReply>, tonic::Status> {
        Ok(tonic::Response::new(AdminReply {
            subject: subject_of(&request),
            message: "hello, admin".into(),
        }))
    }
}

/// One tonic server behind the auth layer; dropping it shuts it down.
struct GrpcServer {
    channel: tonic::transport::Channel,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn grpc_server(gate: Gate, policies: PolicyMap) -> GrpcServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcAuthLayer::new(gate, policies))
            .add_service(DemoServer::new(MatrixDemo))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = rx.await;
                },
            ),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GrpcServer {
        channel,
        _shutdown: tx,
    }
}

/// Four tonic servers, one per policy shape the targets need (the demo service has two
/// methods): `WhoAmI`/`Admin` with scope `admin` on `Admin`; `WhoAmI` needing role `editor`;
/// `WhoAmI` needing the tenant of the `x-tenant` metadata entry; `WhoAmI` on an optional gate.
struct TonicServers {
    plain: GrpcServer,
    editor: GrpcServer,
    tenant: GrpcServer,
    optional: GrpcServer,
}

impl Running for TonicServers {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let mut request = tonic::Request::new(());
            let md = request.metadata_mut();
            let value = |v: &str| tonic::metadata::MetadataValue::try_from(v).unwrap();
            match credential {
                Credential::None => {}
                Credential::Bearer(t) => {
                    md.insert("authorization", value(&format!("Bearer {t}")));
                }
                Credential::TwoHeaders(t) => {
                    md.append("authorization", value(&format!("Bearer {t}")));
                    md.append("authorization", value(&format!("Bearer {t}")));
                }
                Credential::Raw(v) => {
                    md.insert("authorization", value(v));
                }
                Credential::ApiKey(k) => {
                    md.insert("x-api-key", value(k));
                }
                Credential::ApiKeyAndBearer(k, t) => {
                    md.insert("x-api-key", value(k));
                    md.insert("authorization", value(&format!("Bearer {t}")));
                }
            }
            let server = match target {
                Target::WhoAmI | Target::Admin => &self.plain,
                Target::Editor => &self.editor,
                Target::Tenant(t) => {
                    md.insert("x-tenant", value(t));
                    &self.tenant
                }
                Target::Optional => &self.optional,
            };
            let mut client = DemoClient::new(server.channel.clone());
            let result = match target {
                Target::Admin => client.admin(request).await.map(|r| {
                    let (md, reply, _) = r.into_parts();
                    (md, reply.subject)
                }),
                _ => client.who_am_i(request).await.map(|r| {
                    let (md, reply, _) = r.into_parts();
                    (md, reply.subject)
                }),
            };
            match result {
                Ok((md, subject)) => metadata_fields(&md).reply(Outcome::Ok(subject)),
                Err(status) => metadata_fields(status.metadata()).reply(classify_status(&status)),
            }
        })
    }
}

/// The rate-limit fields of gRPC response metadata (the initial metadata of an answer, or the
/// metadata of a status).
fn metadata_fields(md: &tonic::metadata::MetadataMap) -> RateFields {
    RateFields::read(|name| md.get(name).map(|v| v.to_str().unwrap().to_owned()))
}

/// Classifies a gRPC status, checking that the code agrees with the challenge.
fn classify_status(status: &tonic::Status) -> Outcome {
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok());
    if status.code() == tonic::Code::ResourceExhausted {
        return metadata_fields(status.metadata())
            .rate_limited("gRPC ResourceExhausted", challenge);
    }
    let outcome = classify_challenge(None, challenge, &format!("gRPC {:?}", status.code()));
    let expected = match &outcome {
        Outcome::Unauthenticated | Outcome::InvalidToken | Outcome::InvalidRequest => {
            tonic::Code::Unauthenticated
        }
        Outcome::Forbidden(_) => tonic::Code::PermissionDenied,
        _ => return outcome,
    };
    if status.code() != expected {
        return Outcome::Other(format!(
            "gRPC {:?} with challenge {challenge:?}",
            status.code()
        ));
    }
    outcome
}

struct Tonic;

impl Framework for Tonic {
    fn name(&self) -> &'static str {
        "tonic"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.authenticator();
        Box::pin(async move {
            let gate = || Gate::builder(authn.clone()).realm(REALM).build();
            let plain = grpc_server(
                gate(),
                PolicyMap::new().route("/demo.v1.Demo/Admin", Scopes::all(["admin"])),
            )
            .await;
            let editor = grpc_server(
                gate(),
                PolicyMap::new().default_policy(Setup::editor_policy()),
            )
            .await;
            let tenant = grpc_server(
                gate(),
                PolicyMap::new().default_policy(Setup::tenant_policy("metadata:x-tenant")),
            )
            .await;
            let optional = grpc_server(
                Gate::builder(authn.clone()).realm(REALM).optional().build(),
                PolicyMap::new(),
            )
            .await;
            Box::new(TonicServers {
                plain,
                editor,
                tenant,
                optional,
            }) as Box<dyn Running>
        })
    }
}

/// The matrix schema: one field per target.
mod schema {
    use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Result, Schema};
    use auth_graphql::{PartialResults, PolicyGuard, ScopeGuard, principal};
    use auth_tests::matrix::Setup;

    pub(crate) type MatrixSchema = Schema<Query, EmptyMutation, EmptySubscription>;

    pub(crate) fn build() -> MatrixSchema {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(PartialResults)
            .finish()
    }

    pub(crate) struct Query;

    #[Object]
    impl Query {
        async fn whoami(&self, ctx: &Context<'_>) -> Result<Option<String>> {
            Ok(Some(principal(ctx)?.subject().to_owned()))
        }

        #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
        async fn admin(&self, ctx: &Context<'_>) -> Result<Option<String>> {
            Ok(Some(principal(ctx)?.subject().to_owned()))
        }

        #[graphql(guard = "PolicyGuard::new(Setup::editor_policy())")]
        async fn editor(&self, ctx: &Context<'_>) -> Result<Option<String>> {
            Ok(Some(principal(ctx)?.subject().to_owned()))
        }

        #[graphql(guard = "PolicyGuard::new(Setup::tenant_policy(\"arg:tenant\"))")]
        async fn tenant(&self, ctx: &Context<'_>, tenant: String) -> Result<Option<String>> {
            let _ = tenant;
            Ok(Some(principal(ctx)?.subject().to_owned()))
        }

        async fn maybe(&self, ctx: &Context<'_>) -> Option<String> {
            Some(principal(ctx).map_or_else(|_| "anonymous".to_owned(), |p| p.subject().to_owned()))
        }
    }
}

/// The field and query for a target.
fn graphql_query(target: &Target) -> (&'static str, String) {
    match target {
        Target::WhoAmI => ("whoami", "{ whoami }".into()),
        Target::Admin => ("admin", "{ admin }".into()),
        Target::Editor => ("editor", "{ editor }".into()),
        Target::Tenant(t) => ("tenant", format!("{{ tenant(tenant: \"{t}\") }}")),
        Target::Optional => ("maybe", "{ maybe }".into()),
    }
}

/// Classifies a GraphQL-over-HTTP answer: refusals before execution carry the HTTP status and
/// challenge (checked like any HTTP answer, and the body must be a GraphQL error with the
/// matching code); refusals of a field are a `null` field with `extensions.code`.
fn classify_graphql(answer: &HttpAnswer, field: &str) -> Outcome {
    let (status, body) = (answer.status, answer.body.as_str());
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return Outcome::Other(format!("HTTP {status}, not JSON: {body}"));
    };
    let code = json["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned);
    if status != 200 {
        let outcome = classify_http(answer);
        let expected_code = match &outcome {
            Outcome::Forbidden(_) => "FORBIDDEN",
            Outcome::RateLimited => "RATE_LIMITED",
            _ => "UNAUTHENTICATED",
        };
        if code.as_deref() != Some(expected_code) {
            return Outcome::Other(format!("HTTP {status} with GraphQL code {code:?}"));
        }
        return outcome;
    }
    if let Some(value) = json["data"][field].as_str() {
        return Outcome::Ok(value.to_owned());
    }
    match code.as_deref() {
        Some("UNAUTHENTICATED") => Outcome::Unauthenticated,
        Some("FORBIDDEN") => Outcome::Forbidden(
            json["errors"][0]["extensions"]["scope"]
                .as_str()
                .map(str::to_owned),
        ),
        other => Outcome::Other(format!("HTTP 200, code {other:?}: {body}")),
    }
}

/// Posts GraphQL queries to `/graphql`.
struct GraphQlClient {
    http: HttpClient,
}

impl GraphQlClient {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let (field, query) = graphql_query(target);
            let req = self
                .http
                .client
                .post(format!("{}/graphql", self.http.base))
                .json(&serde_json::json!({ "query": query }));
            let answer = send(req, credential).await;
            let outcome = classify_graphql(&answer, field);
            answer.fields.reply(outcome)
        })
    }
}

struct GraphQlOverAxum;

struct GraphQlAxumServer {
    graphql: GraphQlClient,
    _task: Task,
}

impl Running for GraphQlAxumServer {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        self.graphql.reply(target, credential)
    }
}

impl Framework for GraphQlOverAxum {
    fn name(&self) -> &'static str {
        "graphql/axum"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.authenticator();
        Box::pin(async move {
            let gate = Gate::builder(authn).realm(REALM).optional().build();
            let graphql = auth_graphql::axum::GraphQl::new(schema::build(), gate);
            let app: Router = Router::new().route("/graphql", get(graphql.clone()).post(graphql));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let task = Task(tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            }));
            Box::new(GraphQlAxumServer {
                graphql: GraphQlClient {
                    http: HttpClient {
                        base,
                        client: reqwest::Client::new(),
                    },
                },
                _task: task,
            }) as Box<dyn Running>
        })
    }
}

struct GraphQlOverActix;

struct GraphQlActixServer {
    graphql: GraphQlClient,
    _server: ActixServer,
}

impl Running for GraphQlActixServer {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        self.graphql.reply(target, credential)
    }
}

impl Framework for GraphQlOverActix {
    fn name(&self) -> &'static str {
        "graphql/actix-web"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        use actix_web::{App, HttpServer};
        let authn = setup.authenticator();
        Box::pin(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let thread = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let gate = Gate::builder(authn).realm(REALM).optional().build();
                    let graphql = auth_graphql::actix::GraphQl::new(schema::build(), gate);
                    let server = HttpServer::new(move || {
                        App::new().service(graphql.clone().resource("/graphql"))
                    })
                    .workers(1)
                    .listen(listener)
                    .unwrap()
                    .run();
                    let _ = ready_tx.send(server.handle());
                    server.await.unwrap();
                });
            });
            let handle = ready_rx.await.unwrap();
            let http = || HttpClient {
                base: base.clone(),
                client: reqwest::Client::new(),
            };
            Box::new(GraphQlActixServer {
                graphql: GraphQlClient { http: http() },
                _server: ActixServer {
                    http: http(),
                    handle,
                    thread: Some(thread),
                },
            }) as Box<dyn Running>
        })
    }
}

fn frameworks() -> Vec<Box<dyn Framework>> {
    vec![
        Box::new(Axum),
        Box::new(Actix),
        Box::new(Tonic),
        Box::new(GraphQlOverAxum),
        Box::new(GraphQlOverActix),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_on_every_framework() {
    let setup = Setup::new().await;
    let mut failures = Vec::new();
    let frameworks = frameworks();
    for fw in &frameworks {
        let f = matrix::run(fw.as_ref(), &setup).await;
        println!(
            "{}: {} scenarios and {} rate-limit checks, {} failed",
            fw.name(),
            matrix::scenarios(&setup).len(),
            matrix::rate_limit_checks(&setup).len(),
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

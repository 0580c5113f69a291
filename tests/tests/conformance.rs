//! The conformance matrix (`auth_tests::matrix`) run against every framework adapter over real
//! servers on loopback.
//!
//! Each framework runs two servers: a plain HTTP one (the plain scenarios and rate-limit checks)
//! and a TLS one for the mTLS scenarios, served with the setup's one `ReloadingTls`
//! configuration: axum, the tonic routes (behind `GrpcAuthService`) and GraphQL over axum with
//! `auth_tower::tls::serve`; actix-web and GraphQL over actix-web with `listen_rustls_0_23` and
//! `auth_actix::tls::on_connect`. Each call over TLS opens its own connection (reqwest client or
//! tonic channel) trusting only the test CA and presenting the credential's certificate; a
//! connection or handshake error is `Outcome::HandshakeRefused`.
#![allow(clippy::unwrap_used)]

use auth_core::mtls::server::ReloadingTls;
use auth_core::policy::{PolicyMap, Scopes};
use auth_core::{Chain, Gate};
use auth_examples::proto::demo_v1::demo_client::DemoClient;
use auth_examples::proto::demo_v1::demo_server::{Demo, DemoServer};
use auth_examples::proto::demo_v1::{AdminReply, WhoAmIReply};
use auth_grpc::{GrpcAuthLayer, GrpcAuthService};
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

/// Sends `req` presenting `credential` (a client certificate is the client's: see
/// [`HttpClient::client_for`]); `Err` when no answer came (a refused TLS handshake, or any
/// other connection error).
async fn send(
    mut req: reqwest::RequestBuilder,
    credential: &Credential,
) -> Result<HttpAnswer, reqwest::Error> {
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
        Credential::ClientCert(_, token) => {
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
        }
        Credential::Dpop(call) => {
            // The proof names the exact method and URL of this request.
            let built = req.try_clone().unwrap().build()?;
            for (name, value) in call.headers(built.method().as_str(), built.url().as_str()) {
                req = req.header(name, value);
            }
            for _ in 1..call.sends() {
                req.try_clone().unwrap().send().await?;
            }
        }
    }
    let res = req.send().await?;
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
    Ok(HttpAnswer {
        status,
        challenge,
        fields,
        body: res.text().await?,
    })
}

/// Calls an HTTP server with the standard paths.
struct HttpClient {
    base: String,
    client: reqwest::Client,
    /// Over TLS: the CA (PEM) the server's certificate chains to; each call then gets its own
    /// client (and so its own connection and handshake), with the credential's certificate.
    ca: Option<String>,
}

impl HttpClient {
    /// A client of a plain HTTP server at `addr`.
    fn plain(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            ca: None,
        }
    }

    /// A client of a TLS server at `addr`, whose certificate chains to `ca` (PEM).
    fn tls(addr: std::net::SocketAddr, ca: &str) -> Self {
        Self {
            base: format!("https://{addr}"),
            client: reqwest::Client::new(),
            ca: Some(ca.to_owned()),
        }
    }

    /// The client to call with: over TLS, a fresh one trusting only the CA and presenting the
    /// credential's certificate, if any.
    fn client_for(&self, credential: &Credential) -> reqwest::Client {
        let Some(ca) = &self.ca else {
            return self.client.clone();
        };
        let ca = reqwest::Certificate::from_pem(ca.as_bytes()).unwrap();
        let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
        if let Credential::ClientCert(cert, _) = credential {
            builder = builder.identity(reqwest::Identity::from_pem(cert.pem().as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }
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
        Target::AlphaOnly => "/alpha-only".into(),
    }
}

impl HttpClient {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let req = self
                .client_for(credential)
                .get(format!("{}{}", self.base, path(target)));
            let Ok(answer) = send(req, credential).await else {
                return Reply::of(Outcome::HandshakeRefused);
            };
            let outcome = classify_http(&answer);
            answer.fields.reply(outcome)
        })
    }
}

struct Axum;

/// The axum app with the standard targets, authenticating with `authn`.
fn axum_app(authn: &Chain) -> Router {
    let auth = AuthLayer::new(matrix::gate(authn.clone()).build());
    let optional = AuthLayer::new(matrix::gate(authn.clone()).optional().build());
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
        .route(
            "/alpha-only",
            get(subject).route_layer(auth.require(Setup::alpha_policy())),
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
    protected.merge(open)
}

/// Serves `app` on loopback: plain HTTP, or over TLS with `tls` (`auth_tower::tls::serve`);
/// the client to call it with.
async fn serve_axum(app: Router, tls: Option<(&ReloadingTls, &str)>) -> (HttpClient, Task) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match tls {
        None => (
            HttpClient::plain(addr),
            Task(tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            })),
        ),
        Some((tls, ca)) => {
            let config = tls.server_config();
            (
                HttpClient::tls(addr, ca),
                Task(tokio::spawn(async move {
                    auth_tower::tls::serve(listener, config, app, std::future::pending())
                        .await
                        .unwrap();
                })),
            )
        }
    }
}

impl Framework for Axum {
    fn name(&self) -> &'static str {
        "axum"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let app = axum_app(&setup.authenticator());
        Box::pin(async move {
            let (http, task) = serve_axum(app, None).await;
            Box::new(AxumServer { http, _task: task }) as Box<dyn Running>
        })
    }

    fn start_tls(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let app = axum_app(&setup.mtls_authenticator());
        let (tls, ca) = (setup.tls.clone(), setup.pki.ca_pem.clone());
        Box::pin(async move {
            let (http, task) = serve_axum(app, Some((&tls, &ca))).await;
            Box::new(AxumServer { http, _task: task }) as Box<dyn Running>
        })
    }
}

struct Actix;

/// Serves an actix-web app made of `make()`'s configuration (called on the server's thread) on
/// loopback, on its own thread and system: plain HTTP, or over TLS with `tls`
/// (`listen_rustls_0_23` with `auth_actix::tls::on_connect`).
async fn serve_actix<M, C>(make: M, tls: Option<(&ReloadingTls, &str)>) -> ActixServer
where
    M: FnOnce() -> C + Send + 'static,
    C: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    use actix_web::{App, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (http, config) = match tls {
        None => (HttpClient::plain(addr), None),
        Some((tls, ca)) => (
            HttpClient::tls(addr, ca),
            Some((*tls.server_config()).clone()),
        ),
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let configure = make();
            let server =
                HttpServer::new(move || App::new().configure(configure.clone())).workers(1);
            let server = match config {
                None => server.listen(listener).unwrap(),
                Some(config) => server
                    .on_connect(auth_actix::tls::on_connect)
                    .listen_rustls_0_23(listener, config)
                    .unwrap(),
            }
            .run();
            let _ = ready_tx.send(server.handle());
            server.await.unwrap();
        });
    });
    let handle = ready_rx.await.unwrap();
    ActixServer {
        http,
        handle,
        thread: Some(thread),
    }
}

/// The actix-web app with the standard targets, authenticating with `authn`.
fn actix_app(authn: Chain) -> impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone {
    use actix_web::web;
    use auth_actix::{AuthMiddleware, OptionalPrincipal, Principal};
    move |cfg: &mut web::ServiceConfig| {
        let auth = AuthMiddleware::new(matrix::gate(authn.clone()).build());
        let optional = AuthMiddleware::new(matrix::gate(authn.clone()).optional().build());
        let subject = |p: Principal| async move { p.subject().to_owned() };
        cfg.service(web::resource("/maybe").wrap(optional).route(web::get().to(
            |p: OptionalPrincipal| async move {
                p.0.map_or_else(|| "anonymous".to_owned(), |p| p.subject().to_owned())
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
                )
                .service(
                    web::resource("/alpha-only")
                        .wrap(auth.require(Setup::alpha_policy()))
                        .route(web::get().to(subject)),
                ),
        );
    }
}

impl Framework for Actix {
    fn name(&self) -> &'static str {
        "actix-web"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.authenticator();
        Box::pin(async move {
            Box::new(serve_actix(move || actix_app(authn), None).await) as Box<dyn Running>
        })
    }

    fn start_tls(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.mtls_authenticator();
        let (tls, ca) = (setup.tls.clone(), setup.pki.ca_pem.clone());
        Box::pin(async move {
            Box::new(serve_actix(move || actix_app(authn), Some((&tls, &ca))).await)
                as Box<dyn Running>
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
    addr: std::net::SocketAddr,
    /// Plain: the connected channel. Over TLS: `None` (each call connects with its own
    /// certificate).
    channel: Option<tonic::transport::Channel>,
    /// Over TLS: the CA (PEM) the server's certificate chains to.
    ca: Option<String>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl GrpcServer {
    /// The channel to call with: the plain one, or over TLS a new connection trusting only the
    /// CA and presenting the credential's certificate, if any (`Err`: the handshake failed on
    /// the client's side).
    async fn channel_for(
        &self,
        credential: &Credential,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
        let Some(ca) = &self.ca else {
            return Ok(self.channel.clone().unwrap());
        };
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Credential::ClientCert(cert, _) = credential {
            tls = tls.identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
        }
        Channel::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
    }
}

/// Starts a tonic server: plain (tonic's server with `GrpcAuthLayer`), or over TLS with `tls`
/// (the tonic routes behind `GrpcAuthService`, served by `auth_tower::tls::serve`).
async fn grpc_server(
    gate: Gate,
    policies: PolicyMap,
    tls: Option<(&ReloadingTls, &str)>,
) -> GrpcServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    if let Some((tls, ca)) = tls {
        let service = GrpcAuthService::new(
            tonic::service::Routes::new(DemoServer::new(MatrixDemo)),
            gate,
            policies,
        );
        tokio::spawn(auth_tower::tls::serve(
            listener,
            tls.server_config(),
            service,
            shutdown,
        ));
        return GrpcServer {
            addr,
            channel: None,
            ca: Some(ca.to_owned()),
            _shutdown: tx,
        };
    }
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcAuthLayer::new(gate, policies))
            .add_service(DemoServer::new(MatrixDemo))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            ),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GrpcServer {
        addr,
        channel: Some(channel),
        ca: None,
        _shutdown: tx,
    }
}

/// Five tonic servers, one per policy shape the targets need (the demo service has two
/// methods): `WhoAmI`/`Admin` with scope `admin` on `Admin`; `WhoAmI` needing role `editor`;
/// `WhoAmI` needing the tenant of the `x-tenant` metadata entry; `WhoAmI` on an optional gate;
/// `WhoAmI` allowing only alpha's SPIFFE ID.
struct TonicServers {
    plain: GrpcServer,
    editor: GrpcServer,
    tenant: GrpcServer,
    optional: GrpcServer,
    alpha_only: GrpcServer,
}

impl Running for TonicServers {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let mut request = tonic::Request::new(());
            let md = request.metadata_mut();
            let value = |v: &str| tonic::metadata::MetadataValue::try_from(v).unwrap();
            match credential {
                Credential::None | Credential::ClientCert(_, None) => {}
                Credential::Bearer(t) | Credential::ClientCert(_, Some(t)) => {
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
                Credential::Dpop(_) => {} // below, once the server (and so the URL) is known
            }
            let server = match target {
                Target::WhoAmI | Target::Admin => &self.plain,
                Target::Editor => &self.editor,
                Target::Tenant(t) => {
                    md.insert("x-tenant", value(t));
                    &self.tenant
                }
                Target::Optional => &self.optional,
                Target::AlphaOnly => &self.alpha_only,
            };
            let Ok(channel) = server.channel_for(credential).await else {
                return Reply::of(Outcome::HandshakeRefused);
            };
            let mut client = DemoClient::new(channel);
            if let Credential::Dpop(call) = credential {
                // The proof names the method's URL (gRPC calls are POSTs).
                let method = if *target == Target::Admin {
                    "Admin"
                } else {
                    "WhoAmI"
                };
                let url = format!("http://{}/demo.v1.Demo/{method}", server.addr);
                let headers = call.headers("POST", &url);
                for (name, v) in &headers {
                    request.metadata_mut().insert(*name, value(v));
                }
                for _ in 1..call.sends() {
                    let mut earlier = tonic::Request::new(());
                    for (name, v) in &headers {
                        earlier.metadata_mut().insert(*name, value(v));
                    }
                    let _ = client.who_am_i(earlier).await;
                }
            }
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
                // No answer of the server: the transport failed (under TLS 1.3 the client
                // finishes its side of the handshake before the server refuses the
                // certificate, so the refusal surfaces at the first call).
                Err(status) if is_transport_error(&status) => Reply::of(Outcome::HandshakeRefused),
                Err(status) => metadata_fields(status.metadata()).reply(classify_status(&status)),
            }
        })
    }
}

/// Whether a call failed in the transport (no answer of the server at all): tonic reports
/// those as `UNKNOWN`, `UNAVAILABLE` or (when the connection closes while the call is in
/// flight) `CANCELLED`, with the transport's error as the source and no challenge.
fn is_transport_error(status: &tonic::Status) -> bool {
    use std::error::Error;
    matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled
    ) && status.metadata().get("www-authenticate").is_none()
        && status.source().is_some()
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

/// The five tonic servers of [`TonicServers`], authenticating with `authn`, plain or over TLS.
async fn tonic_servers(authn: Chain, tls: Option<(&ReloadingTls, &str)>) -> TonicServers {
    let gate = || matrix::gate(authn.clone()).build();
    let plain = grpc_server(
        gate(),
        PolicyMap::new().route("/demo.v1.Demo/Admin", Scopes::all(["admin"])),
        tls,
    )
    .await;
    let editor = grpc_server(
        gate(),
        PolicyMap::new().default_policy(Setup::editor_policy()),
        tls,
    )
    .await;
    let tenant = grpc_server(
        gate(),
        PolicyMap::new().default_policy(Setup::tenant_policy("metadata:x-tenant")),
        tls,
    )
    .await;
    let optional = grpc_server(
        matrix::gate(authn.clone()).optional().build(),
        PolicyMap::new(),
        tls,
    )
    .await;
    let alpha_only = grpc_server(
        gate(),
        PolicyMap::new().default_policy(Setup::alpha_policy()),
        tls,
    )
    .await;
    TonicServers {
        plain,
        editor,
        tenant,
        optional,
        alpha_only,
    }
}

impl Framework for Tonic {
    fn name(&self) -> &'static str {
        "tonic"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.authenticator();
        Box::pin(async move { Box::new(tonic_servers(authn, None).await) as Box<dyn Running> })
    }

    fn start_tls(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.mtls_authenticator();
        let (tls, ca) = (setup.tls.clone(), setup.pki.ca_pem.clone());
        Box::pin(async move {
            Box::new(tonic_servers(authn, Some((&tls, &ca))).await) as Box<dyn Running>
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

        #[graphql(guard = "PolicyGuard::new(Setup::alpha_policy())")]
        async fn alpha_only(&self, ctx: &Context<'_>) -> Result<Option<String>> {
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
        Target::AlphaOnly => ("alphaOnly", "{ alphaOnly }".into()),
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
                .client_for(credential)
                .post(format!("{}/graphql", self.http.base))
                .json(&serde_json::json!({ "query": query }));
            let Ok(answer) = send(req, credential).await else {
                return Reply::of(Outcome::HandshakeRefused);
            };
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

/// The GraphQL endpoint over axum, authenticating with `authn`.
fn graphql_axum_app(authn: Chain) -> Router {
    let gate = matrix::gate(authn).optional().build();
    let graphql = auth_graphql::axum::GraphQl::new(schema::build(), gate);
    Router::new().route("/graphql", get(graphql.clone()).post(graphql))
}

impl Framework for GraphQlOverAxum {
    fn name(&self) -> &'static str {
        "graphql/axum"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let app = graphql_axum_app(setup.authenticator());
        Box::pin(async move {
            let (http, task) = serve_axum(app, None).await;
            Box::new(GraphQlAxumServer {
                graphql: GraphQlClient { http },
                _task: task,
            }) as Box<dyn Running>
        })
    }

    fn start_tls(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let app = graphql_axum_app(setup.mtls_authenticator());
        let (tls, ca) = (setup.tls.clone(), setup.pki.ca_pem.clone());
        Box::pin(async move {
            let (http, task) = serve_axum(app, Some((&tls, &ca))).await;
            Box::new(GraphQlAxumServer {
                graphql: GraphQlClient { http },
                _task: task,
            }) as Box<dyn Running>
        })
    }
}

struct GraphQlOverActix;

/// Calls the GraphQL endpoint of an actix-web server.
struct GraphQlActixServer {
    server: ActixServer,
}

impl Running for GraphQlActixServer {
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let (field, query) = graphql_query(target);
            let http = &self.server.http;
            let req = http
                .client_for(credential)
                .post(format!("{}/graphql", http.base))
                .json(&serde_json::json!({ "query": query }));
            let Ok(answer) = send(req, credential).await else {
                return Reply::of(Outcome::HandshakeRefused);
            };
            let outcome = classify_graphql(&answer, field);
            answer.fields.reply(outcome)
        })
    }
}

/// The GraphQL endpoint over actix-web, authenticating with `authn` (made on the server's
/// thread).
fn graphql_actix_app(authn: Chain) -> impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone {
    let gate = matrix::gate(authn).optional().build();
    let graphql = auth_graphql::actix::GraphQl::new(schema::build(), gate);
    move |cfg: &mut actix_web::web::ServiceConfig| {
        cfg.service(graphql.clone().resource("/graphql"));
    }
}

impl Framework for GraphQlOverActix {
    fn name(&self) -> &'static str {
        "graphql/actix-web"
    }

    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.authenticator();
        Box::pin(async move {
            let server = serve_actix(move || graphql_actix_app(authn), None).await;
            Box::new(GraphQlActixServer { server }) as Box<dyn Running>
        })
    }

    fn start_tls(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>> {
        let authn = setup.mtls_authenticator();
        let (tls, ca) = (setup.tls.clone(), setup.pki.ca_pem.clone());
        Box::pin(async move {
            let server = serve_actix(move || graphql_actix_app(authn), Some((&tls, &ca))).await;
            Box::new(GraphQlActixServer { server }) as Box<dyn Running>
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
        let results = matrix::run(fw.as_ref(), &setup).await;
        let f = results.failures;
        println!(
            "{}: {} scenarios, {} mTLS scenarios and {} rate-limit checks, {} failed",
            fw.name(),
            matrix::scenarios(&setup).len(),
            matrix::mtls_scenarios(&setup).len(),
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

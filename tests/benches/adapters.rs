//! In-process requests through each framework adapter, against the bare framework, with one
//! repeated (cached) RS256 token.
//!
//! Every request of every variant carries the same `Authorization: Bearer` header (bare variants
//! ignore it); each adapter's verifier answers it from its verified-token cache (warmed during
//! setup). Each adapter is compared with its bare framework and, where the framework has a
//! natural one, with a middleware that does nothing:
//!
//! - **actix-web** (`actix_web::test::init_service` + `call_service`, on an actix `System`):
//!   `GET /whoami` on an `App` whose handler returns the subject as a `String`. Bare: the
//!   handler returns `"user-1234".to_owned()`. Auth: `.wrap(AuthMiddleware::new(gate))` and the
//!   handler takes `auth_actix::Principal` and returns `p.subject().to_owned()`. No-op:
//!   `.wrap(DefaultHeaders::new())` with no headers (an `Rc` clone and a future wrapper).
//!   Every request is built with `actix_web::test::TestRequest` (its cost is printed on its own).
//! - **tonic** (in-process through the tower stack, no socket): the `DemoServer` of
//!   `auth_examples::proto::demo_v1` in a prepared `tonic::service::Routes` (what
//!   `Server::builder().add_service(..)` serves), called with `oneshot` on a hand-built gRPC
//!   request (`POST /demo.v1.Demo/WhoAmI`, `content-type: application/grpc`, `te: trailers`,
//!   body: the frame of an empty message) whose response body (frame and trailers) is read to
//!   the end. Bare: the routes alone. Auth: `GrpcAuthLayer::new(gate, PolicyMap::new())`
//!   applied with `tower::Layer`, as `Server::builder().layer(..)` does. No-op:
//!   `tower::util::MapRequestLayer` with an identity closure.
//! - **GraphQL** over axum (`Router::with_state(())` + `oneshot`, response body read to the end):
//!   `POST /graphql` with `{"query":"{ whoami { subject } }"}`, on the same schema (the one of
//!   `example-graphql`: `whoami` reads the principal with `auth_graphql::principal`, and the
//!   `PartialResults` extension). Auth: the `auth_graphql::axum::GraphQl` handler. Bare: a plain
//!   axum handler doing what `GraphQl` does minus authentication (read the body with
//!   `Bytes::from_request`, parse it with `receive_batch_body`, `execute_batch`, the same JSON
//!   response and headers), with the principal the gate returns for the token, taken once at
//!   setup and inserted into the request data unverified (an `Arc` clone per request). A
//!   second reference: the handler async-graphql's own integration gives you
//!   (`async_graphql_axum::GraphQLRequest`/`GraphQLResponse`, same principal inserted). No-op:
//!   `MapRequestLayer` in front of the bare handler.
//!
//! The tonic handler answers the subject of the principal the layer inserted, or `anonymous`
//! (as long as `user-1234`) without one. Setup checks every variant's answer, and that each
//! adapter refuses a forged token (another token's signature).
//!
//! Diagnostics, ratio loop only: actix-web's `TestRequest` building alone (part of every actix
//! variant), the actix middleware in front of the bare handler (no `Principal` extractor), and
//! `Gate::check` alone on an `http::HeaderMap` holding the token (a cache hit).
//!
//! After criterion, the variants are timed again with a plain loop (interleaved batches of
//! `ITERS` requests, the order rotating every round, median of `BATCHES`) and the ratios to the
//! bare variant are printed. Keys are generated at start. Run with `cargo bench -p auth-tests --bench adapters`; under
//! `cargo test` (criterion's test mode) every benchmark runs once and the ratio loops are a
//! smoke test.

use actix_web::dev::{Service as ActixService, ServiceResponse};
use async_graphql::BatchRequest;
use async_graphql::http::{MultipartOptions, receive_batch_body};
use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::policy::PolicyMap;
use auth_core::{Check, Gate};
use auth_examples::proto::demo_v1::demo_server::{Demo, DemoServer};
use auth_examples::proto::demo_v1::{AdminReply, WhoAmIReply};
use auth_graphql::axum::GraphQl;
use auth_grpc::GrpcAuthLayer;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use criterion::Criterion;
use criterion::async_executor::AsyncExecutor;
use http_body_util::BodyExt as _;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;
use tower::util::MapRequestLayer;
use tower::{Layer as _, Service, ServiceExt as _};

const AUDIENCE: &str = "bench-api";
const SUBJECT: &str = "user-1234";
/// Requests per timed batch in the ratio loops.
const ITERS: u32 = 2000;
/// Timed batches per variant in the ratio loops; the median is reported.
const BATCHES: usize = 31;
/// The target: a cached-token request through an adapter at most this many times the bare one.
const TARGET: f64 = 1.3;
/// The gRPC frame of an empty message (`google.protobuf.Empty`): uncompressed, length 0.
const EMPTY_FRAME: &[u8] = &[0, 0, 0, 0, 0];
const GRAPHQL_QUERY: &str = r#"{"query":"{ whoami { subject } }"}"#;
const GRAPHQL_ANSWER: &str = r#"{"data":{"whoami":{"subject":"user-1234"}}}"#;
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The key, the token every request carries, and a forged token (to check that each adapter
/// does verify).
struct Fixture {
    signer: SigningKey,
    iss: String,
    token: HeaderValue,
    forged: HeaderValue,
}

impl Fixture {
    fn new() -> Self {
        let signer = SigningKey::generate(Algorithm::RS256, "bench-rs256").expect("RSA key");
        let iss = "https://issuer.example".to_owned();
        let now = now();
        let mint = |jti: &str| {
            signer
                .sign(&json!({
                    "iss": iss,
                    "aud": AUDIENCE,
                    "sub": SUBJECT,
                    "scope": "read write",
                    "jti": jti,
                    "iat": now,
                    "exp": now + 3600,
                }))
                .expect("signing")
        };
        let (token, other) = (mint("t0"), mint("t1"));
        let signing_input = token.rsplit_once('.').expect("compact JWS").0;
        let signature = other.rsplit_once('.').expect("compact JWS").1;
        Self {
            token: bearer(&token),
            forged: bearer(&format!("{signing_input}.{signature}")),
            signer,
            iss,
        }
    }

    /// A verifier of its own (with its own, cold cache) for one adapter.
    fn gate(&self, optional: bool) -> Gate {
        let keys = KeySet::new(vec![self.signer.verifying_key().expect("key")]).expect("key set");
        let jwt = Jwt::builder()
            .issuer(Issuer::new(self.iss.clone()).audience(AUDIENCE).keys(keys))
            .cache_capacity(10_000)
            .build()
            .expect("verifier");
        let builder = Gate::builder(jwt);
        if optional {
            builder.optional().build()
        } else {
            builder.build()
        }
    }
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).expect("header value")
}

/// Times `n` requests; returns nanoseconds per request.
type Timed<'a> = Box<dyn FnMut(u32) -> f64 + 'a>;

/// Runs the routines in interleaved batches (the order rotating every round) and returns each
/// one's median ns per request.
fn medians(routines: &mut [Timed<'_>], iters: u32, batches: usize) -> Vec<f64> {
    for r in routines.iter_mut() {
        r(iters.div_ceil(4));
    }
    let n = routines.len();
    let mut samples = vec![Vec::with_capacity(batches); n];
    for round in 0..batches {
        // Rotate the order every round, so that no variant always follows the same one.
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].push(routines[i](iters));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A difference, signed.
fn fmt_delta(ns: f64) -> String {
    let sign = if ns < 0.0 { "-" } else { "+" };
    format!("{sign}{}", fmt_ns(ns.abs()))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// `<name>: target <= 1.3x: met (1.18x)`.
fn target_line(name: &str, ratio: f64) -> String {
    format!(
        "{name}: target <= {TARGET}x: {} ({ratio:.2}x)",
        verdict(ratio <= TARGET)
    )
}

// ---------------------------------------------------------------------------------------------
// actix-web

/// Criterion's async benches on an actix `System` (its runtime and local task set).
struct ActixRunner(actix_web::rt::SystemRunner);

impl AsyncExecutor for &ActixRunner {
    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.0.block_on(future)
    }
}

/// A `GET /whoami` request with the token (`.to_request()` gives what the app serves).
fn actix_request(auth: &ActixHeaderValue) -> actix_web::test::TestRequest {
    actix_web::test::TestRequest::get()
        .uri("/whoami")
        .insert_header((actix_web::http::header::AUTHORIZATION, auth.clone()))
}

/// actix-web 4 has its own (`http` 0.2) header types.
type ActixHeaderValue = actix_web::http::header::HeaderValue;

fn actix_header(value: &HeaderValue) -> ActixHeaderValue {
    ActixHeaderValue::from_bytes(value.as_bytes()).expect("header value")
}

/// Times requests built by `make` through `app`.
fn actix_timed<'a, S, R, B>(
    runner: &'a ActixRunner,
    app: &'a S,
    make: impl Fn() -> R + 'a,
) -> Timed<'a>
where
    S: ActixService<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    Box::new(move |n| {
        runner.0.block_on(async {
            let t = Instant::now();
            for _ in 0..n {
                black_box(actix_web::test::call_service(app, make()).await);
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    })
}

/// Status and body of one answer of an actix-web app.
async fn actix_answer<S, R, B>(app: &S, req: R) -> (u16, Bytes)
where
    S: ActixService<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let res = actix_web::test::call_service(app, req).await;
    let status = res.status().as_u16();
    (status, actix_web::test::read_body(res).await)
}

fn actix(c: &mut Criterion, fx: &Fixture, iters: u32, batches: usize) -> Vec<String> {
    use actix_web::middleware::DefaultHeaders;
    use actix_web::test::{call_service, init_service};
    use actix_web::{App, web};
    use auth_actix::{AuthMiddleware, Principal};

    let runner = ActixRunner(actix_web::rt::System::new());
    let gate = fx.gate(false);
    let bare_handler = || async { SUBJECT.to_owned() };
    let (bare, auth, noop, no_extractor) = runner.0.block_on(async {
        let bare = init_service(App::new().route("/whoami", web::get().to(bare_handler))).await;
        let auth = init_service(App::new().wrap(AuthMiddleware::new(gate.clone())).route(
            "/whoami",
            web::get().to(|p: Principal| async move { p.subject().to_owned() }),
        ))
        .await;
        let noop = init_service(
            App::new()
                .wrap(DefaultHeaders::new())
                .route("/whoami", web::get().to(bare_handler)),
        )
        .await;
        // Diagnostic: the middleware without the extractor (the bare handler).
        let no_extractor = init_service(
            App::new()
                .wrap(AuthMiddleware::new(gate))
                .route("/whoami", web::get().to(bare_handler)),
        )
        .await;
        (bare, auth, noop, no_extractor)
    });
    let token = &actix_header(&fx.token);
    let req = || actix_request(token).to_request();
    runner.0.block_on(async {
        // The first request verifies the token and fills the cache; the others hit it.
        for _ in 0..2 {
            let ok = (200, Bytes::from_static(SUBJECT.as_bytes()));
            assert_eq!(actix_answer(&bare, req()).await, ok);
            assert_eq!(actix_answer(&auth, req()).await, ok);
            assert_eq!(actix_answer(&noop, req()).await, ok);
            assert_eq!(actix_answer(&no_extractor, req()).await, ok);
        }
        let forged = actix_request(&actix_header(&fx.forged)).to_request();
        assert_eq!(actix_answer(&auth, forged).await.0, 401);
    });

    let mut g = c.benchmark_group("adapters_actix_web");
    g.bench_function("a_bare", |b| {
        b.to_async(&runner).iter(|| call_service(&bare, req()));
    });
    g.bench_function("b_auth_middleware", |b| {
        b.to_async(&runner).iter(|| call_service(&auth, req()));
    });
    g.bench_function("c_noop_middleware", |b| {
        b.to_async(&runner).iter(|| call_service(&noop, req()));
    });
    g.finish();

    let m = medians(
        &mut [
            actix_timed(&runner, &bare, req),
            actix_timed(&runner, &auth, req),
            actix_timed(&runner, &noop, req),
            actix_timed(&runner, &no_extractor, req),
            Box::new(|n| {
                let t = Instant::now();
                for _ in 0..n {
                    black_box(req());
                }
                t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
            }),
        ],
        iters,
        batches,
    );
    let (bare, auth, noop, no_extractor, build) = (m[0], m[1], m[2], m[3], m[4]);
    vec![
        format!(
            "actix-web: bare {}, with AuthMiddleware {} = {:.2}x (no-op middleware {:.2}x); \
             {} per request",
            fmt_ns(bare),
            fmt_ns(auth),
            auth / bare,
            noop / bare,
            fmt_delta(auth - bare),
        ),
        format!(
            "actix-web: building the request with TestRequest costs {} of every variant; \
             without it: {:.2}x (no-op {:.2}x)",
            fmt_ns(build),
            (auth - build) / (bare - build),
            (noop - build) / (bare - build),
        ),
        format!(
            "actix-web: AuthMiddleware with the bare handler (no Principal extractor) {} = \
             {:.2}x; the extractor costs {}",
            fmt_ns(no_extractor),
            no_extractor / bare,
            fmt_delta(auth - no_extractor),
        ),
        target_line("actix-web", auth / bare),
    ]
}

// ---------------------------------------------------------------------------------------------
// Services over `http::Request<Body>`: tonic's routes and axum routers

/// Calls a clone of `svc` and reads the response body (data and trailers) to the end.
async fn drain<S, B>(svc: &S, req: Request) -> http::Response<http_body_util::Collected<Bytes>>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone,
    B: HttpBody<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let res = match svc.clone().oneshot(req).await {
        Ok(res) => res,
        Err(e) => match e {},
    };
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("response body");
    http::Response::from_parts(parts, body)
}

/// Times requests built by `make` through `svc` on `rt`.
fn tower_timed<'a, S, B>(rt: &'a Runtime, svc: &'a S, make: impl Fn() -> Request + 'a) -> Timed<'a>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone,
    B: HttpBody<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    Box::new(move |n| {
        rt.block_on(async {
            let t = Instant::now();
            for _ in 0..n {
                black_box(drain(svc, make()).await);
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// tonic

/// `WhoAmI` answers the subject the layer let through, `anonymous` (as long as `user-1234`)
/// without one.
struct BenchDemo;

#[tonic::async_trait]
impl Demo for BenchDemo {
    async fn who_am_i(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<WhoAmIReply>, tonic::Status> {
        let subject = request
            .extensions()
            .get::<auth_core::Principal>()
            .map_or("anonymous", |p| p.subject());
        Ok(tonic::Response::new(WhoAmIReply {
            subject: subject.to_owned(),
            ..WhoAmIReply::default()
        }))
    }

    async fn admin(
        &self,
        _request: tonic::Request<()>,
    ) -> Result<tonic::Response<AdminReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("not benchmarked"))
    }
}

/// A unary `WhoAmI` call as an HTTP/2 client sends it.
fn grpc_request(auth: &HeaderValue) -> Request {
    let mut req = Request::new(Body::from(Bytes::from_static(EMPTY_FRAME)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static("/demo.v1.Demo/WhoAmI");
    *req.version_mut() = http::Version::HTTP_2;
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(header::AUTHORIZATION, auth.clone());
    req
}

/// The `grpc-status` trailer and whether the message holds `subject`.
fn grpc_outcome(res: http::Response<http_body_util::Collected<Bytes>>, subject: &str) -> String {
    let status = res
        .headers()
        .get("grpc-status")
        .or_else(|| res.body().trailers().and_then(|t| t.get("grpc-status")))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let body = res.into_body().to_bytes();
    let found = body.windows(subject.len()).any(|w| w == subject.as_bytes());
    format!("grpc-status {status}, subject {subject}: {found}")
}

fn tonic(c: &mut Criterion, rt: &Runtime, fx: &Fixture, iters: u32, batches: usize) -> Vec<String> {
    let routes = tonic::service::Routes::new(DemoServer::new(BenchDemo)).prepare();
    let gate = fx.gate(false);
    let bare = routes.clone();
    let auth = GrpcAuthLayer::new(gate.clone(), PolicyMap::new()).layer(routes.clone());
    let noop = MapRequestLayer::new(|r: Request| r).layer(routes);
    let token = &fx.token;
    let req = || grpc_request(token);
    rt.block_on(async {
        for _ in 0..2 {
            let ok = |s: &str| format!("grpc-status 0, subject {s}: true");
            assert_eq!(
                grpc_outcome(drain(&bare, req()).await, "anonymous"),
                ok("anonymous")
            );
            assert_eq!(
                grpc_outcome(drain(&auth, req()).await, SUBJECT),
                ok(SUBJECT)
            );
            assert_eq!(
                grpc_outcome(drain(&noop, req()).await, "anonymous"),
                ok("anonymous")
            );
        }
        let forged = drain(&auth, grpc_request(&fx.forged)).await;
        assert_eq!(
            grpc_outcome(forged, SUBJECT),
            "grpc-status 16, subject user-1234: false"
        );
    });
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, token.clone());
    assert!(matches!(gate.check(&headers), Check::Ready(Ok(Some(_)))));

    let mut g = c.benchmark_group("adapters_tonic");
    g.bench_function("a_bare", |b| {
        b.to_async(rt).iter(|| drain(&bare, req()));
    });
    g.bench_function("b_grpc_auth_layer", |b| {
        b.to_async(rt).iter(|| drain(&auth, req()));
    });
    g.bench_function("c_noop_layer", |b| {
        b.to_async(rt).iter(|| drain(&noop, req()));
    });
    g.finish();

    let m = medians(
        &mut [
            tower_timed(rt, &bare, req),
            tower_timed(rt, &auth, req),
            tower_timed(rt, &noop, req),
            Box::new(|n| {
                let t = Instant::now();
                for _ in 0..n {
                    black_box(gate.check(black_box(&headers)));
                }
                t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
            }),
        ],
        iters,
        batches,
    );
    let (bare, auth, noop, check) = (m[0], m[1], m[2], m[3]);
    vec![
        format!(
            "tonic: bare {}, with GrpcAuthLayer {} = {:.2}x (no-op tower layer {:.2}x); \
             {} per request",
            fmt_ns(bare),
            fmt_ns(auth),
            auth / bare,
            noop / bare,
            fmt_delta(auth - bare),
        ),
        format!(
            "Gate::check alone on the same headers (a cache hit): {}",
            fmt_ns(check)
        ),
        target_line("tonic", auth / bare),
    ]
}

// ---------------------------------------------------------------------------------------------
// GraphQL over axum

/// The schema of `example-graphql` and `auth-demo`.
type BenchSchema = auth_examples::graphql_demo::DemoSchema;

/// What the bare handlers share: the schema and a principal inserted without verification.
#[derive(Clone)]
struct Plain {
    schema: BenchSchema,
    principal: auth_core::Principal,
}

/// `GraphQl`'s work minus authentication: read and parse the body, execute with the
/// principal in the data, answer the same JSON with the same headers.
async fn plain_graphql(State(plain): State<Plain>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = match Bytes::from_request(Request::from_parts(parts, body), &()).await {
        Ok(bytes) => {
            receive_batch_body(content_type, bytes.as_ref(), MultipartOptions::default()).await
        }
        Err(rejection) => return rejection.into_response(),
    };
    let request: BatchRequest = match request {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let batch = plain
        .schema
        .execute_batch(request.data(plain.principal.clone()))
        .await;
    let mut res = axum::Json(&batch).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(GRAPHQL_RESPONSE),
    );
    if batch.is_ok()
        && let Some(value) = batch.cache_control().value()
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.extend(batch.http_headers());
    res
}

/// The handler async-graphql's axum integration gives, with the same unverified principal.
async fn async_graphql_axum(
    State(plain): State<Plain>,
    req: async_graphql_axum::GraphQLRequest,
) -> async_graphql_axum::GraphQLResponse {
    plain
        .schema
        .execute(req.into_inner().data(plain.principal.clone()))
        .await
        .into()
}

fn graphql_request(auth: &HeaderValue) -> Request {
    let mut req = Request::new(Body::from(GRAPHQL_QUERY));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static("/graphql");
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::AUTHORIZATION, auth.clone());
    req
}

fn graphql(
    c: &mut Criterion,
    rt: &Runtime,
    fx: &Fixture,
    iters: u32,
    batches: usize,
) -> Vec<String> {
    let schema = auth_examples::graphql_demo::build();
    let token = &fx.token;
    let handler = GraphQl::new(schema.clone(), fx.gate(true));
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, token.clone());
    // The principal the gate makes of the token (verified once, here).
    let principal = match handler.gate().check(&headers) {
        Check::Ready(result) => result,
        Check::Pending(check) => rt.block_on(check),
    }
    .expect("valid token")
    .expect("a principal");
    let plain = Plain { schema, principal };
    let auth = Router::new()
        .route("/graphql", post(handler))
        .with_state(());
    let bare = Router::new()
        .route("/graphql", post(plain_graphql))
        .with_state(plain.clone());
    let noop = Router::new()
        .route("/graphql", post(plain_graphql))
        .layer(MapRequestLayer::new(|r: Request| r))
        .with_state(plain.clone());
    let integration = Router::new()
        .route("/graphql", post(async_graphql_axum))
        .with_state(plain);
    let req = || graphql_request(token);
    rt.block_on(async {
        let answer = |res: http::Response<http_body_util::Collected<Bytes>>| {
            (res.status(), res.into_body().to_bytes())
        };
        let ok = (
            StatusCode::OK,
            Bytes::from_static(GRAPHQL_ANSWER.as_bytes()),
        );
        for _ in 0..2 {
            assert_eq!(answer(drain(&bare, req()).await), ok);
            assert_eq!(answer(drain(&auth, req()).await), ok);
            assert_eq!(answer(drain(&noop, req()).await), ok);
            assert_eq!(answer(drain(&integration, req()).await), ok);
        }
        let forged = drain(&auth, graphql_request(&fx.forged)).await;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    });

    let mut g = c.benchmark_group("adapters_graphql");
    let variants = [
        ("a_bare", &bare),
        ("b_auth_graphql_axum", &auth),
        ("c_noop_layer", &noop),
        ("d_async_graphql_axum", &integration),
    ];
    for (name, router) in variants {
        g.bench_function(name, |b| {
            b.to_async(rt).iter(|| drain(router, req()));
        });
    }
    g.finish();

    let m = medians(
        &mut [
            tower_timed(rt, &bare, req),
            tower_timed(rt, &auth, req),
            tower_timed(rt, &noop, req),
            tower_timed(rt, &integration, req),
        ],
        iters,
        batches,
    );
    let (bare, auth, noop, integration) = (m[0], m[1], m[2], m[3]);
    vec![
        format!(
            "graphql: bare {}, with auth_graphql::axum::GraphQl {} = {:.2}x (no-op tower layer \
             {:.2}x); {} per request",
            fmt_ns(bare),
            fmt_ns(auth),
            auth / bare,
            noop / bare,
            fmt_delta(auth - bare),
        ),
        format!(
            "graphql: async-graphql-axum's own handler {} = {:.2}x bare; GraphQl/it = {:.2}x",
            fmt_ns(integration),
            integration / bare,
            auth / integration,
        ),
        target_line("graphql", auth / bare),
    ]
}

/// Whether this is a real benchmark run (`cargo bench`), not criterion's test, list or
/// profile mode.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let full = benchmarking();
    let (iters, batches) = if full { (ITERS, BATCHES) } else { (10, 1) };
    let fx = Fixture::new();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let mut lines = vec![
        String::new(),
        format!(
            "Ratios (median of {batches} interleaved batches of {iters} requests per variant, \
             same process; one cached RS256 token):"
        ),
    ];
    lines.extend(actix(&mut c, &fx, iters, batches));
    lines.extend(tonic(&mut c, &rt, &fx, iters, batches));
    lines.extend(graphql(&mut c, &rt, &fx, iters, batches));
    c.final_summary();
    if full {
        lines.iter().for_each(|l| println!("{l}"));
    } else {
        println!("ratio loops: smoke-tested (test mode; `cargo bench` prints the ratios)");
    }
}

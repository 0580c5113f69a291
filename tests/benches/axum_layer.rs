//! In-process requests through an axum 0.8 [`Router`], with and without authentication layers.
//!
//! Every variant serves `GET /` with a handler returning a small string, and every request
//! carries an `Authorization: Bearer` header (the bare router ignores it). Each router is
//! finished with `with_state(())`, as `axum::serve` does, and requests go through
//! `router.clone().oneshot(request)` on a tokio current-thread runtime:
//!
//! - (a) `bare`: the router alone;
//! - (b) `ours_cached`: the router behind [`AuthLayer`], with one repeated RS256 token (answered
//!   from the verified-token cache);
//! - (c) `ours_fresh`: the same, with a token the layer has not seen on every request (`FRESH`
//!   distinct tokens are minted at start and cycled; the cache is cleared at the start of each
//!   cycle, so every request is a full verification plus a cache insert);
//! - (d) `tower_oauth2`: the router behind the layer of `tower-oauth2-resource-server` 0.12.5,
//!   configured by OIDC discovery against a tiny JWKS/discovery server on `127.0.0.1:0` in this
//!   process, on the same RS256 token as (b) (it has no cache: every request is a full
//!   verification);
//! - (e) `jwt-authorizer` 0.15 is not measured; the reason is printed (see [`JWT_AUTHORIZER`]);
//! - (f) `key_cached`: the router behind [`AuthLayer`] over `ApiKeys` (an in-memory store), with
//!   one repeated API key in `X-API-Key` (answered from the verified-key cache);
//! - (g) `key_limited`: the same with a per-key rate the key never exhausts, so every request
//!   also takes an in-process limit check and the answer carries the `RateLimit` headers.
//!
//! Two diagnostic variants run in the ratio loop only, on the same fresh tokens as (c): our
//! layer with its cache disabled (the cost of cache look-up and insert, by difference), and (d)
//! (the cost of cold, never-seen token bytes, by difference with (d) on one repeated token).
//!
//! After criterion, the variants are timed again with a plain loop (interleaved batches of
//! `ITERS` requests, median of `BATCHES`) and the ratios to (a) are printed. Keys are generated
//! at start. Run with `cargo bench -p auth-tests --bench axum_layer`; under `cargo test`
//! (criterion's test mode) every benchmark runs once and the ratio loops are a smoke test.

use auth_core::Gate;
use auth_core::apikey::ApiKeys;
use auth_core::apikey::limit::Rate;
use auth_core::apikey::manage::{KeyManager, NewKey};
use auth_core::apikey::store::MemoryStore;
use auth_core::audit::NoAudit;
use auth_core::issuer::{self, SigningKey};
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_tower::{AuthLayer, AuthService};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::routing::get;
use criterion::Criterion;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;
use tower::Layer as _;
use tower::ServiceExt as _;
use tower_oauth2_resource_server::server::OAuth2ResourceServer;
use tower_oauth2_resource_server::tenant::TenantConfiguration;

const AUDIENCE: &str = "bench-api";
/// Distinct tokens cycled by the fresh-token variant (16 in criterion's test mode).
const FRESH: usize = 1000;
/// Requests per timed batch in the ratio loops.
const ITERS: u32 = 2000;
/// Timed batches per variant in the ratio loops; the median is reported.
const BATCHES: usize = 15;

/// Why (e) is not measured.
const JWT_AUTHORIZER: &str = "(e) jwt-authorizer 0.15: skipped. It is built on axum 0.7: its \
    AuthorizationService<S> needs `S::Response: From<jwt_authorizer::AuthError>`, implemented \
    only for axum 0.7's Response (axum-core 0.4 Body) and tonic's, while an axum 0.8 Router \
    answers Response<axum-core 0.5 Body>; `Router::layer(authorizer.into_layer())` fails with \
    E0277 (tried in a scratch crate), so it cannot share our router. Bridging would need axum \
    0.7 as a second axum in the workspace (plus jsonwebtoken 9 on ring, reqwest 0.12, \
    tower-http 0.5). OpenSSL is not the blocker: its default `default-tls` feature pulls \
    openssl-sys (native-tls), but `default-features = false, features = [\"rustls-tls\"]` \
    removes it.";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

async fn hello() -> &'static str {
    "hello"
}

fn app() -> Router {
    Router::new().route("/", get(hello))
}

/// Turns every handler into its final service (layers applied) once, as `axum::serve` does
/// (`into_make_service` calls `with_state`); a router used as a service without this converts
/// and layers its handlers again on every request.
fn ready(router: Router) -> Router {
    router.with_state(())
}

/// A request presenting `auth`: a bearer token in `Authorization`, anything else as an API key
/// in `X-API-Key`.
fn request(auth: &HeaderValue) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = Uri::from_static("/");
    let name = if auth.as_bytes().starts_with(b"Bearer ") {
        header::AUTHORIZATION
    } else {
        header::HeaderName::from_static("x-api-key")
    };
    req.headers_mut().insert(name, auth.clone());
    req
}

/// An API key in a memory store, and two layers over it: without and with a per-key rate.
fn api_key_layers(rt: &Runtime) -> (HeaderValue, AuthLayer, AuthLayer) {
    let store = Arc::new(MemoryStore::new());
    let keys = |limited: bool| {
        let b = ApiKeys::builder(store.clone()).prefix("ak_bench");
        let b = if limited {
            b.rate_per_key(Rate::per(Duration::from_secs(1), 1_000_000_000))
        } else {
            b
        };
        b.build().expect("API keys")
    };
    let (plain, limited) = (keys(false), keys(true));
    let (key, _) = rt
        .block_on(KeyManager::new(plain.clone()).audit(NoAudit).create(
            NewKey::new("acme", "bench").scopes(["read"]),
            i64::try_from(now()).expect("time"),
        ))
        .expect("store a key");
    let layer = |k: ApiKeys| AuthLayer::new(Gate::builder(k).build());
    (
        HeaderValue::try_from(key).expect("header value"),
        layer(plain),
        layer(limited),
    )
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).expect("header value")
}

async fn status(router: &Router, auth: &HeaderValue) -> StatusCode {
    match router.clone().oneshot(request(auth)).await {
        Ok(res) => res.status(),
        Err(e) => match e {},
    }
}

/// Serves `/.well-known/openid-configuration` and `/jwks` on `127.0.0.1:0`, on its own runtime
/// (kept alive by the returned value); returns the base URL, which is also the issuer.
fn jwks_server(jwks: serde_json::Value) -> (Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")});
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route("/jwks", get(move || async move { axum::Json(jwks) }));
    rt.spawn(async move { axum::serve(listener, router).await });
    (rt, base)
}

/// Cycles through the pre-minted distinct tokens.
struct FreshTokens {
    /// Cleared at the start of each cycle, so that each token of the new cycle is verified
    /// again.
    clear: Option<Jwt>,
    tokens: Vec<HeaderValue>,
    next: Cell<usize>,
}

impl FreshTokens {
    fn new(tokens: &[HeaderValue], clear: Option<Jwt>) -> Self {
        Self {
            clear,
            tokens: tokens.to_vec(),
            next: Cell::new(0),
        }
    }

    fn next(&self) -> &HeaderValue {
        let i = self.next.get();
        if i == 0
            && let Some(jwt) = &self.clear
        {
            jwt.clear_cache();
        }
        self.next.set((i + 1) % self.tokens.len());
        &self.tokens[i]
    }
}

struct Setup {
    bare: Router,
    noop_layer: Router,
    /// A layer that only inserts a principal into the extensions (what any authentication
    /// layer must at least do for handlers to see the caller).
    insert_layer: Router,
    ours_cached: Router,
    /// The layer around the whole router (`AuthLayer.layer(router)`), not per route.
    ours_outer: AuthService<Router>,
    ours_fresh: Router,
    ours_nocache: Router,
    tower_oauth2: Router,
    key_cached: Router,
    key_limited: Router,
    token: HeaderValue,
    /// The API key of (f) and (g).
    key: HeaderValue,
    /// Fresh tokens for `ours_fresh` (clearing its cache each cycle).
    fresh: FreshTokens,
    /// The same tokens for the diagnostic variants.
    fresh_nocache: FreshTokens,
    fresh_oauth2: FreshTokens,
    _server: Runtime,
}

fn setup(rt: &Runtime, fresh_tokens: usize) -> Setup {
    let signer = SigningKey::generate(Algorithm::RS256, "bench-rs256").expect("RSA key");
    let (server, iss) = jwks_server(issuer::jwks([&signer]));
    let now = now();
    let mint = |jti: usize| {
        bearer(
            &signer
                .sign(&json!({
                    "iss": iss,
                    "aud": AUDIENCE,
                    "sub": "user-1234",
                    "scope": "read write",
                    "jti": format!("t{jti}"),
                    "iat": now,
                    "exp": now + 3600,
                }))
                .expect("signing"),
        )
    };
    let jwt_with_cache = |capacity| {
        let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("key set");
        Jwt::builder()
            .issuer(Issuer::new(iss.clone()).audience(AUDIENCE).keys(keys))
            .cache_capacity(capacity)
            .build()
            .expect("verifier")
    };
    let jwt = || jwt_with_cache(10_000);
    let token = mint(0);
    let fresh_jwt = jwt();
    let tokens: Vec<HeaderValue> = (1..=fresh_tokens).map(mint).collect();

    let resource_server = rt.block_on(async {
        let tenant = TenantConfiguration::builder(iss.clone())
            .audiences(&[AUDIENCE])
            .jwks_refresh_interval(Duration::from_secs(3600))
            .build()
            .await
            .expect("OIDC discovery");
        <OAuth2ResourceServer>::builder()
            .add_tenant(tenant)
            .build()
            .await
            .expect("resource server")
    });

    let (key, key_layer, limited_layer) = api_key_layers(rt);
    let s = Setup {
        key_cached: ready(app().layer(key_layer)),
        key_limited: ready(app().layer(limited_layer)),
        key,
        bare: ready(app()),
        insert_layer: {
            let p = auth_core::Principal::builder("user-1234", auth_core::AuthMethod::Jwt).build();
            ready(app().layer(tower::util::MapRequestLayer::new(
                move |mut r: http::Request<Body>| {
                    r.extensions_mut().insert(p.clone());
                    r
                },
            )))
        },
        noop_layer: ready(app().layer(tower::util::MapRequestLayer::new(
            |r: http::Request<Body>| r,
        ))),
        ours_cached: ready(app().layer(AuthLayer::jwt(jwt()))),
        ours_outer: AuthLayer::jwt(jwt()).layer(ready(app())),
        ours_fresh: ready(app().layer(AuthLayer::jwt(fresh_jwt.clone()))),
        ours_nocache: ready(app().layer(AuthLayer::jwt(jwt_with_cache(0)))),
        tower_oauth2: ready(app().layer(resource_server.into_layer())),
        token,
        fresh: FreshTokens::new(&tokens, Some(fresh_jwt)),
        fresh_nocache: FreshTokens::new(&tokens, None),
        fresh_oauth2: FreshTokens::new(&tokens, None),
        _server: server,
    };

    rt.block_on(async {
        // The resource server fetches its JWKS in a background task: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while status(&s.tower_oauth2, &s.token).await != StatusCode::OK {
            assert!(
                Instant::now() < deadline,
                "tower-oauth2-resource-server never accepted the token"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status(&s.bare, &s.token).await, StatusCode::OK);
        assert_eq!(status(&s.ours_cached, &s.token).await, StatusCode::OK);
        assert_eq!(status(&s.key_cached, &s.key).await, StatusCode::OK);
        let limited = s.key_limited.clone().oneshot(request(&s.key)).await;
        let limited = limited.unwrap_or_else(|e| match e {});
        assert_eq!(limited.status(), StatusCode::OK);
        assert!(
            limited.headers().contains_key("ratelimit"),
            "(g) sends RateLimit"
        );
        let wrong = HeaderValue::from_static("ak_bench_not-a-key");
        assert_eq!(
            status(&s.key_cached, &wrong).await,
            StatusCode::UNAUTHORIZED
        );
        let outer = s.ours_outer.clone().oneshot(request(&s.token)).await;
        assert_eq!(outer.map(|r| r.status()).ok(), Some(StatusCode::OK));
        for t in &s.fresh.tokens {
            assert_eq!(status(&s.ours_fresh, t).await, StatusCode::OK);
            assert_eq!(status(&s.ours_nocache, t).await, StatusCode::OK);
            assert_eq!(status(&s.tower_oauth2, t).await, StatusCode::OK);
        }
        // Well-formed, but the signature belongs to another token.
        let signing_input = |h: &HeaderValue| {
            let t = h.to_str().expect("ascii");
            t.rsplit_once('.').expect("compact JWS").0.to_owned()
        };
        let signature = |h: &HeaderValue| {
            let t = h.to_str().expect("ascii");
            t.rsplit_once('.').expect("compact JWS").1.to_owned()
        };
        let forged = HeaderValue::try_from(format!(
            "{}.{}",
            signing_input(&s.token),
            signature(&s.fresh.tokens[0])
        ))
        .expect("header value");
        assert_eq!(
            status(&s.ours_cached, &forged).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&s.tower_oauth2, &forged).await,
            StatusCode::UNAUTHORIZED
        );
    });
    s
}

fn criterion_groups(c: &mut Criterion, rt: &Runtime, s: &Setup) {
    let mut g = c.benchmark_group("axum_layer");
    let with_token = [
        ("a_bare", &s.bare),
        ("b_ours_cached", &s.ours_cached),
        ("d_tower_oauth2", &s.tower_oauth2),
    ];
    for (name, router) in with_token {
        g.bench_function(name, |b| {
            b.to_async(rt)
                .iter(|| router.clone().oneshot(request(&s.token)));
        });
    }
    g.bench_function("c_ours_fresh", |b| {
        b.to_async(rt)
            .iter(|| s.ours_fresh.clone().oneshot(request(s.fresh.next())));
    });
    g.finish();
}

/// Times `n` requests; returns nanoseconds per request.
type Timed<'a> = Box<dyn FnMut(u32) -> f64 + 'a>;

fn timed_outer<'a>(
    rt: &'a Runtime,
    svc: &'a AuthService<Router>,
    auth: impl Fn() -> &'a HeaderValue + 'a,
) -> Timed<'a> {
    Box::new(move |n| {
        rt.block_on(async {
            let t = Instant::now();
            for _ in 0..n {
                black_box(svc.clone().oneshot(request(auth())).await.ok());
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    })
}

fn timed<'a>(
    rt: &'a Runtime,
    router: &'a Router,
    auth: impl Fn() -> &'a HeaderValue + 'a,
) -> Timed<'a> {
    Box::new(move |n| {
        rt.block_on(async {
            let t = Instant::now();
            for _ in 0..n {
                black_box(router.clone().oneshot(request(auth())).await.ok());
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    })
}

/// Runs the routines in interleaved batches and returns each one's median ns per request.
fn medians(routines: &mut [Timed<'_>], iters: u32, batches: usize) -> Vec<f64> {
    for r in routines.iter_mut() {
        r(iters.div_ceil(4));
    }
    let mut samples = vec![Vec::with_capacity(batches); routines.len()];
    for _ in 0..batches {
        for (r, s) in routines.iter_mut().zip(&mut samples) {
            s.push(r(iters));
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

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn ratios(rt: &Runtime, s: &Setup, iters: u32, batches: usize) -> Vec<String> {
    let mut out = Vec::new();
    let token = &s.token;
    let m = medians(
        &mut [
            timed(rt, &s.bare, move || token),
            timed(rt, &s.ours_cached, move || token),
            timed(rt, &s.ours_fresh, || s.fresh.next()),
            timed(rt, &s.tower_oauth2, move || token),
            timed(rt, &s.ours_nocache, || s.fresh_nocache.next()),
            timed(rt, &s.tower_oauth2, || s.fresh_oauth2.next()),
            timed(rt, &s.noop_layer, move || token),
            timed_outer(rt, &s.ours_outer, move || token),
            timed(rt, &s.key_cached, || &s.key),
            timed(rt, &s.key_limited, || &s.key),
            timed(rt, &s.insert_layer, move || token),
        ],
        iters,
        batches,
    );
    let (a, b, c, d, c_nocache, d_fresh, noop, outer) =
        (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]);
    let (f, g, insert) = (m[8], m[9], m[10]);
    let line = |label: &str, v: f64| format!("{label:<44} {:>9}  /(a) = {:.2}x", fmt_ns(v), v / a);
    out.push(String::new());
    out.push(format!(
        "Ratios (median of {batches} interleaved batches of {iters} requests, same process):"
    ));
    out.push(format!("{:<44} {:>9}", "(a) bare router", fmt_ns(a)));
    out.push(line("(b) AuthLayer, cached RS256 token", b));
    out.push(line("(b') AuthLayer around the router, cached", outer));
    out.push(line("(c) AuthLayer, fresh RS256 token", c));
    out.push(line("(d) tower-oauth2-resource-server, RS256", d));
    out.push(JWT_AUTHORIZER.to_owned());
    out.push(line("(f) AuthLayer, cached API key", f));
    out.push(line("(g) AuthLayer, cached API key + rate limit", g));
    out.push(format!(
        "diagnostics (same {} fresh tokens as (c)):",
        s.fresh.tokens.len()
    ));
    out.push(line("    AuthLayer, cache disabled", c_nocache));
    out.push(line("    tower-oauth2-resource-server", d_fresh));
    out.push(line("    a no-op layer (the floor of any layer)", noop));
    out.push(line("    a layer only inserting a principal", insert));
    out.push(format!(
        "layer cost over bare: (b) {}, (c) {}, (d) {}",
        fmt_ns(b - a),
        fmt_ns(c - a),
        fmt_ns(d - a)
    ));
    out.push(format!(
        "target (b) <= 1.3x bare: {} ((b)/(a) = {:.2}x; around the router (b')/(a) = {:.2}x: {})",
        verdict(b / a <= 1.3),
        b / a,
        outer / a,
        verdict(outer / a <= 1.3)
    ));
    out.push(format!(
        "target (f) <= 1.3x bare: {} ((f)/(a) = {:.2}x; with a limit check and RateLimit \
         headers (g)/(a) = {:.2}x)",
        verdict(f / a <= 1.3),
        f / a,
        g / a
    ));
    out.push(format!(
        "target (b) >= 10x cheaper than (d): {} ((d)/(b) = {:.1}x per request; \
         layer cost alone (d-a)/(b-a) = {:.1}x)",
        verdict(d / b >= 10.0),
        d / b,
        (d - a) / (b - a)
    ));
    out
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
    let s = setup(&rt, if full { FRESH } else { 16 });
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    criterion_groups(&mut c, &rt, &s);
    c.final_summary();
    if full {
        ratios(&rt, &s, ITERS, BATCHES)
            .iter()
            .for_each(|l| println!("{l}"));
    } else {
        // Criterion's test mode: exercise the loops, print no numbers.
        ratios(&rt, &s, 10, 1);
        println!("ratio loops: smoke-tested (test mode; `cargo bench` prints the ratios)");
    }
}

//! What the OAuth features cost at the gate, against a cached JWT measured in the same run:
//!
//! - `opaque_cached`: [`Gate::check`] on a repeated opaque token through [`JwtOrOpaque`], answered
//!   from the introspection cache (the endpoint, a tiny HTTP server on loopback, is asked once
//!   before timing);
//! - `dpop`: a DPoP-bound JWT (cached) with a fresh proof per request: the proof's signature,
//!   claims and replay cache are checked every time (proofs are made before timing);
//! - `bearer_cached`: the baseline, a repeated JWT through the same gate.
//!
//! Ratios are printed after criterion, from interleaved batches (medians).
//!
//! Run with `cargo bench -p auth-core --features oauth --bench oauth`; under `cargo test` every
//! benchmark runs once and the ratio loop is shortened to a smoke test.

use auth_core::dpop::{DpopKey, DpopVerifier};
use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::oauth::{ClientAuth, Introspection, JwtOrOpaque};
use auth_core::{Check, Gate, RequestTarget, WithTarget};
use criterion::Criterion;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://issuer.bench.example";
const URL_PATH: &str = "/orders";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        .try_into()
        .expect("time fits")
}

/// An introspection endpoint on loopback answering every request with one active token.
async fn introspection_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = json!({"active": true, "sub": "alice", "scope": "read", "client_id": "bench",
        "exp": now() + 3600})
    .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                // One request per connection is enough here: read until the end of the form.
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while let Ok(n) = socket.read(&mut buf[read..]).await {
                    read += n;
                    let text = String::from_utf8_lossy(&buf[..read]);
                    if n == 0 || text.contains("token_type_hint=") {
                        break;
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/introspect")
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

struct Setup {
    gate: Gate,
    jwt_headers: http::HeaderMap,
    opaque_headers: http::HeaderMap,
    dpop_token: String,
    dpop_key: DpopKey,
}

fn target() -> RequestTarget<'static> {
    RequestTarget {
        method: "GET",
        scheme: "https",
        authority: Some("api.example"),
        path: URL_PATH,
    }
}

impl Setup {
    fn new(rt: &tokio::runtime::Runtime) -> Self {
        let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").expect("key");
        let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
        let jwt = Jwt::builder()
            .issuer(Issuer::new(ISSUER).keys(keys))
            .build()
            .expect("jwt");
        let url = rt.block_on(introspection_endpoint());
        let introspection = Introspection::builder(url)
            .client_auth(ClientAuth::secret_basic("bench", "bench-secret"))
            .cache(10_000, Duration::from_secs(600))
            .dangerous_allow_http()
            .build()
            .expect("introspection");
        let verifier = DpopVerifier::builder()
            .replay_cache_capacity(1_000_000)
            .build()
            .expect("verifier");
        let gate = Gate::builder(JwtOrOpaque::new(jwt, introspection))
            .dpop(verifier)
            .build();
        let claims = |extra: serde_json::Value| {
            let mut c = json!({"iss": ISSUER, "sub": "alice", "scope": "read",
                "exp": now() + 3600, "jti": "j"});
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            c
        };
        let jwt_token = signer.sign(&claims(json!({}))).expect("sign");
        let dpop_key = DpopKey::generate(jsonwebtoken::Algorithm::ES256).expect("dpop key");
        let dpop_token = signer
            .sign(&claims(json!({"cnf": {"jkt": dpop_key.jkt()}})))
            .expect("sign");
        let s = Self {
            gate,
            jwt_headers: bearer(&jwt_token),
            opaque_headers: bearer("opaque-bench-token-0123456789abcdefghijklmnop"),
            dpop_token,
            dpop_key,
        };
        // Warm every cache: the JWTs' and the introspection answer.
        for h in [&s.jwt_headers, &s.opaque_headers] {
            let p = rt.block_on(s.gate.check_async(h)).expect("accepted");
            assert!(p.is_some());
            assert!(matches!(s.gate.check(h), Check::Ready(Ok(Some(_)))));
        }
        // The first DPoP request verifies the token (and caches it); later ones only their proof.
        let first = s.dpop_requests(2);
        let with = WithTarget {
            inner: &first[0],
            target: target(),
        };
        let p = rt
            .block_on(s.gate.check_async(&with))
            .expect("DPoP accepted");
        assert!(p.is_some());
        assert!(
            s.check_dpop(&first[1]),
            "a DPoP request is answered at once"
        );
        s
    }

    /// `n` DPoP requests, each with its own proof.
    fn dpop_requests(&self, n: usize) -> Vec<http::HeaderMap> {
        let url = format!("https://api.example{URL_PATH}");
        (0..n)
            .map(|_| {
                let proof = self
                    .dpop_key
                    .proof("GET", &url, Some(&self.dpop_token), None)
                    .expect("proof");
                let mut h = http::HeaderMap::new();
                h.insert(
                    "authorization",
                    format!("DPoP {}", self.dpop_token).parse().expect("header"),
                );
                h.insert("dpop", proof.parse().expect("proof header"));
                h
            })
            .collect()
    }

    fn check(&self, headers: &http::HeaderMap) -> bool {
        matches!(
            self.gate.check(black_box(headers)),
            Check::Ready(Ok(Some(_)))
        )
    }

    fn check_dpop(&self, headers: &http::HeaderMap) -> bool {
        let with = WithTarget {
            inner: headers,
            target: target(),
        };
        matches!(self.gate.check(black_box(&with)), Check::Ready(Ok(Some(_))))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ratios(s: &Setup, iters: u32, dpop_iters: usize, batches: usize) -> Vec<String> {
    let (mut jwt, mut opaque, mut dpop) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..iters {
            assert!(s.check(&s.jwt_headers));
        }
        jwt.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
        let t = Instant::now();
        for _ in 0..iters {
            assert!(s.check(&s.opaque_headers));
        }
        opaque.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
        let requests = s.dpop_requests(dpop_iters);
        let t = Instant::now();
        for h in &requests {
            assert!(s.check_dpop(h));
        }
        dpop.push(t.elapsed().as_secs_f64() * 1e9 / dpop_iters as f64);
    }
    let (jwt, opaque, dpop) = (median(jwt), median(opaque), median(dpop));
    vec![
        String::new(),
        format!(
            "Gate::check, medians of {batches} interleaved batches ({iters} cached checks, \
             {dpop_iters} DPoP requests each):"
        ),
        format!("  cached JWT (baseline):        {jwt:8.0} ns"),
        format!(
            "  cached opaque token:          {opaque:8.0} ns = {:.2}x the cached JWT",
            opaque / jwt
        ),
        format!(
            "  DPoP-bound JWT + fresh proof: {dpop:8.0} ns = {:.1}x the cached JWT",
            dpop / jwt
        ),
    ]
}

fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let s = Setup::new(&rt);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut g = c.benchmark_group("gate");
    g.bench_function("bearer_cached", |b| b.iter(|| s.check(&s.jwt_headers)));
    g.bench_function("opaque_cached", |b| b.iter(|| s.check(&s.opaque_headers)));
    g.bench_function("dpop", |b| {
        b.iter_batched(
            || s.dpop_requests(1).pop().expect("one request"),
            |h| s.check_dpop(&h),
            criterion::BatchSize::SmallInput,
        );
    });
    g.finish();
    c.final_summary();
    let (iters, dpop_iters, batches) = if benchmarking() {
        (20_000, 2_000, 11)
    } else {
        (10, 3, 3)
    };
    for line in ratios(&s, iters, dpop_iters, batches) {
        println!("{line}");
    }
}

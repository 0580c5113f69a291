//! Verification cost of [`Jwt`] against a bare `jsonwebtoken::decode`.
//!
//! Two criterion groups, then ratios measured in the same run:
//!
//! - `fresh/{alg}`: a full verification of a token the verifier has not seen, through a [`Jwt`]
//!   whose cache is disabled (`cache_capacity(0)`), awaited on a tokio current-thread runtime,
//!   against `jsonwebtoken::decode::<serde_json::Value>` with a pre-built [`DecodingKey`] and a
//!   [`Validation`] making the same `iss`, `aud` and `exp` checks, on the same token. Both keys
//!   are built from the same public JWK, so both hold the same `jsonwebtoken` key representation.
//! - `cached/{alg}`: a repeated token through a [`Jwt`] with its cache enabled, both the
//!   synchronous [`Jwt::verify_cached`] and the asynchronous [`Jwt::verify`]; compare with
//!   `fresh/{alg}/bare` (the bare decode has no cache).
//!
//! After criterion, each pair is timed again with a plain loop (batches of `ITERS` iterations,
//! ours and bare interleaved, median of `BATCHES` batches) and the ratios are printed, e.g.
//! `fresh RS256: ours/bare = 1.03x`.
//!
//! Keys are generated at start (nothing is committed). Run with
//! `cargo bench -p auth-core --features issuer --bench verify`; under `cargo test` (criterion's
//! test mode) every benchmark runs once and the ratio loops are shortened to a smoke test.

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use criterion::{BenchmarkId, Criterion};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;

const ISSUER: &str = "https://issuer.bench.example";
const AUDIENCE: &str = "bench-api";
/// Iterations per timed batch in the ratio loops.
const ITERS: u32 = 2000;
/// Timed batches per measurement in the ratio loops; the median is reported.
const BATCHES: usize = 15;

/// Everything one algorithm needs: a token, our verifiers and the bare key and validation.
struct Case {
    name: &'static str,
    token: String,
    /// Cache disabled: every call is a full verification.
    uncached: Jwt,
    /// Cache enabled and warmed with `token`.
    cached: Jwt,
    bare_key: DecodingKey,
    validation: Validation,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl Case {
    fn new(name: &'static str, alg: Algorithm, rt: &Runtime) -> Self {
        let signer = SigningKey::generate(alg, "bench-key").expect("key generation");
        let now = now();
        let token = signer
            .sign(&json!({
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": "user-1234",
                "client_id": "bench-client",
                "scope": "read write",
                "iat": now,
                "exp": now + 3600,
            }))
            .expect("signing");
        let jwt = |capacity| {
            let keys =
                KeySet::new(vec![signer.verifying_key().expect("verifying key")]).expect("key set");
            Jwt::builder()
                .issuer(Issuer::new(ISSUER).audience(AUDIENCE).keys(keys))
                .cache_capacity(capacity)
                .build()
                .expect("verifier")
        };
        let uncached = jwt(0);
        let cached = jwt(10_000);
        let jwk: Jwk = serde_json::from_value(signer.public_jwk()).expect("JWK");
        let bare_key = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 60;

        // Both sides must accept the token, and the cache must hold it, or the numbers mean
        // nothing.
        let p = rt
            .block_on(uncached.verify(&token))
            .expect("ours accepts the token");
        assert_eq!(p.subject(), "user-1234");
        assert!(uncached.verify_cached(&token).is_none(), "cache disabled");
        rt.block_on(cached.verify(&token)).expect("ours accepts");
        assert!(
            matches!(cached.verify_cached(&token), Some(Ok(_))),
            "token cached"
        );
        jsonwebtoken::decode::<Value>(&token, &bare_key, &validation).expect("bare accepts");

        Self {
            name,
            token,
            uncached,
            cached,
            bare_key,
            validation,
        }
    }

    fn bare(&self) -> jsonwebtoken::errors::Result<jsonwebtoken::TokenData<Value>> {
        jsonwebtoken::decode::<Value>(black_box(&self.token), &self.bare_key, &self.validation)
    }
}

fn cases(rt: &Runtime) -> Vec<Case> {
    [
        ("RS256", Algorithm::RS256),
        ("PS256", Algorithm::PS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
        ("HS256", Algorithm::HS256),
    ]
    .into_iter()
    .map(|(name, alg)| Case::new(name, alg, rt))
    .collect()
}

fn fresh(c: &mut Criterion, rt: &Runtime, cases: &[Case]) {
    let mut g = c.benchmark_group("fresh");
    for case in cases {
        let (jwt, token) = (&case.uncached, case.token.as_str());
        g.bench_function(BenchmarkId::new(case.name, "ours"), |b| {
            b.to_async(rt).iter(|| jwt.verify(black_box(token)));
        });
        g.bench_function(BenchmarkId::new(case.name, "bare"), |b| {
            b.iter(|| case.bare())
        });
    }
    g.finish();
}

fn cached(c: &mut Criterion, rt: &Runtime, cases: &[Case]) {
    let mut g = c.benchmark_group("cached");
    for case in cases {
        let (jwt, token) = (&case.cached, case.token.as_str());
        g.bench_function(BenchmarkId::new(case.name, "verify_cached"), |b| {
            b.iter(|| jwt.verify_cached(black_box(token)));
        });
        g.bench_function(BenchmarkId::new(case.name, "verify"), |b| {
            b.to_async(rt).iter(|| jwt.verify(black_box(token)));
        });
    }
    g.finish();
}

/// Times `iters` runs of a routine; returns nanoseconds per run.
type Timed<'a> = Box<dyn FnMut(u32) -> f64 + 'a>;

fn per_iter(elapsed: Duration, iters: u32) -> f64 {
    elapsed.as_secs_f64() * 1e9 / f64::from(iters)
}

/// Runs the routines in interleaved batches and returns each one's median ns per iteration.
fn medians(routines: &mut [Timed<'_>], iters: u32, batches: usize) -> Vec<f64> {
    // One untimed batch each, to warm caches and branch predictors.
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

fn ratios(rt: &Runtime, cases: &[Case], iters: u32, batches: usize) -> Vec<String> {
    let mut out = Vec::new();
    out.push(String::new());
    out.push(format!(
        "Ratios (median of {batches} batches of {iters} iterations, interleaved, same process):"
    ));
    let mut fresh_rs256 = None;
    for case in cases {
        let token = case.token.as_str();
        let ours_fresh: Timed<'_> = Box::new(|n| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..n {
                    black_box(case.uncached.verify(black_box(token)).await.ok());
                }
                per_iter(t.elapsed(), n)
            })
        });
        let bare: Timed<'_> = Box::new(|n| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(case.bare().ok());
            }
            per_iter(t.elapsed(), n)
        });
        let ours_cached_sync: Timed<'_> = Box::new(|n| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(case.cached.verify_cached(black_box(token)));
            }
            per_iter(t.elapsed(), n)
        });
        let ours_cached_async: Timed<'_> = Box::new(|n| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..n {
                    black_box(case.cached.verify(black_box(token)).await.ok());
                }
                per_iter(t.elapsed(), n)
            })
        });
        let m = medians(
            &mut [ours_fresh, bare, ours_cached_sync, ours_cached_async],
            iters,
            batches,
        );
        let (fresh, bare, sync, asynch) = (m[0], m[1], m[2], m[3]);
        out.push(format!(
            "fresh  {}: ours/bare = {:.2}x  (ours {}, bare {})",
            case.name,
            fresh / bare,
            fmt_ns(fresh),
            fmt_ns(bare)
        ));
        out.push(format!(
            "cached {}: ours verify_cached/bare = {:.4}x  (ours {}, bare {}; {:.0}x cheaper; \
             token {} bytes)",
            case.name,
            sync / bare,
            fmt_ns(sync),
            fmt_ns(bare),
            bare / sync,
            case.token.len()
        ));
        out.push(format!(
            "cached {}: ours verify/bare = {:.4}x  (ours {}, bare {}; {:.0}x cheaper)",
            case.name,
            asynch / bare,
            fmt_ns(asynch),
            fmt_ns(bare),
            bare / asynch
        ));
        if case.name == "RS256" {
            fresh_rs256 = Some(fresh / bare);
        }
    }
    if let Some(r) = fresh_rs256 {
        let verdict = if r <= 1.15 { "met" } else { "NOT met" };
        out.push(format!(
            "target: fresh RS256 within 1.15x of bare decode: {verdict} ({r:.2}x)"
        ));
    }
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
    let cases = cases(&rt);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    fresh(&mut c, &rt, &cases);
    cached(&mut c, &rt, &cases);
    c.final_summary();
    if benchmarking() {
        ratios(&rt, &cases, ITERS, BATCHES)
            .iter()
            .for_each(|l| println!("{l}"));
    } else {
        // Criterion's test mode: exercise the loops, print no numbers.
        ratios(&rt, &cases, 10, 1);
        println!("ratio loops: smoke-tested (test mode; `cargo bench` prints the ratios)");
    }
}

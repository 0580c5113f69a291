//! What the denylist adds to the hot path: [`Gate::check`] on a repeated (cached) JWT, without
//! a denylist (the baseline) and with a [`MemoryDenylist`] that is empty, holds 100 000 `jti`
//! entries, or also holds token-hash entries (each request then hashes the token).
//!
//! A criterion group (`gate_cached/*`), then ratios against the baseline measured in the same
//! run with interleaved batches, e.g. `100k jti entries: 1.08x the gate without a denylist`.
//!
//! Run with `cargo bench -p auth-core --features issuer --bench revocation`; under `cargo test`
//! every benchmark runs once and the ratio loop is shortened to a smoke test.

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::revocation::{MemoryDenylist, Revocation};
use auth_core::{Check, Gate};
use criterion::Criterion;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://issuer.bench.example";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        .try_into()
        .expect("time fits")
}

struct Setup {
    headers: http::HeaderMap,
    gates: Vec<(&'static str, Gate)>,
}

fn setup() -> Setup {
    let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISSUER).keys(keys))
        .build()
        .expect("jwt");
    let token = signer
        .sign(
            &json!({"iss": ISSUER, "sub": "alice", "jti": "live-token", "iat": now(),
            "exp": now() + 3600, "scope": "read write"}),
        )
        .expect("sign");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );

    let exp = now() + 3600;
    let empty = MemoryDenylist::new();
    let jtis = MemoryDenylist::new();
    for i in 0..100_000 {
        jtis.revoke(Revocation::jti(format!("revoked-{i}")), exp)
            .expect("room");
    }
    let hashes = MemoryDenylist::new();
    for i in 0..1_000 {
        hashes
            .revoke(Revocation::token(&format!("revoked-{i}")), exp)
            .expect("room");
        hashes
            .revoke(Revocation::subject(format!("user-{i}"), now()), exp)
            .expect("room");
    }
    let gates = vec![
        ("no denylist", Gate::builder(jwt.clone()).build()),
        (
            "empty denylist",
            Gate::builder(jwt.clone()).denylist(empty).build(),
        ),
        (
            "100k jti entries",
            Gate::builder(jwt.clone()).denylist(jtis).build(),
        ),
        (
            "1k token-hash + 1k subject entries",
            Gate::builder(jwt).denylist(hashes).build(),
        ),
    ];
    // Warm the verifier's cache (shared by every gate) and check every gate lets the token in.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (name, gate) in &gates {
        let p = rt.block_on(gate.check_async(&headers)).expect(name);
        assert!(p.is_some(), "{name}");
        assert!(
            matches!(gate.check(&headers), Check::Ready(Ok(Some(_)))),
            "{name}: cached"
        );
    }
    Setup { headers, gates }
}

fn check(gate: &Gate, headers: &http::HeaderMap) -> bool {
    matches!(gate.check(black_box(headers)), Check::Ready(Ok(Some(_))))
}

fn ratios(s: &Setup, iters: u32, batches: usize) -> Vec<String> {
    // Interleaved batches; median ns per check for each gate.
    let mut samples = vec![Vec::with_capacity(batches); s.gates.len()];
    for _ in 0..batches {
        for ((_, gate), out) in s.gates.iter().zip(&mut samples) {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(check(gate, &s.headers));
            }
            out.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
        }
    }
    let medians: Vec<f64> = samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let base = medians[0];
    let mut out = vec![
        String::new(),
        format!(
            "Gate::check on a cached ES256 token (median of {batches} batches of {iters}, \
             interleaved, same process):"
        ),
    ];
    for ((name, _), ns) in s.gates.iter().zip(&medians) {
        out.push(format!(
            "{name:>36}: {ns:7.0} ns  = {:.2}x the gate without a denylist",
            ns / base
        ));
    }
    out
}

fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn main() {
    let s = setup();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut g = c.benchmark_group("gate_cached");
    for (name, gate) in &s.gates {
        g.bench_function(*name, |b| b.iter(|| check(gate, &s.headers)));
    }
    g.finish();
    c.final_summary();
    let (iters, batches) = if benchmarking() {
        (20_000, 21)
    } else {
        (10, 3)
    };
    for line in ratios(&s, iters, batches) {
        println!("{line}");
    }
}

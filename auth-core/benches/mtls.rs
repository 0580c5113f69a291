//! The per-request cost of mTLS after the handshake: identity extraction, the principal, and a
//! policy by SPIFFE ID, against a cached bearer token through the same [`Gate`].
//!
//! - (a) `mtls/a_gate_jwt_cached`: the baseline, a repeated valid JWT (ES256) through
//!   `Gate::check` (answered from the verified-token cache).
//! - (b) `mtls/b_gate_cert_cached`: a request carrying only a client certificate through
//!   `Gate::check` with the [`Mtls`] authenticator: the principal comes from its cache, keyed
//!   by the certificate's thumbprint (computed once per connection, not per request).
//! - (c) `mtls/c_gate_cert_cached_policy`: (b) plus `Gate::enforce` of a
//!   `Rule::claim_prefix("spiffe_id", ...)` policy.
//! - (d) `mtls/d_identity_parse`: `CertIdentity::from_der` alone (what a new certificate costs).
//! - (e) `mtls/e_gate_cert_uncached`: (b) with the authenticator's cache disabled: parse and map
//!   on every request.
//! - (f) `mtls/f_peer_thumbprint`: `PeerCertificate::new` (SHA-256 of the DER), once per
//!   connection.
//!
//! After criterion, each is timed again in interleaved batches and the ratios to (a) printed.
//! Run with `cargo bench -p auth-core --features mtls,issuer --bench mtls`.

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer as JwtIssuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::mtls::Mtls;
use auth_core::mtls::identity::CertIdentity;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::policy::{RequestContext, Rule};
use auth_core::{Chain, Check, Gate, PeerCertificate, WithPeer};
use criterion::Criterion;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ITERS: u32 = 20_000;
const BATCHES: usize = 15;

fn client_certificate() -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "alpha");
    p.distinguished_name.push(DnType::OrganizationName, "bench");
    p.subject_alt_names.push(SanType::URI(
        "spiffe://demo.local/service/alpha".try_into().expect("uri"),
    ));
    p.subject_alt_names.push(SanType::DnsName(
        "alpha.demo.local".try_into().expect("dns"),
    ));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.self_signed(&key).expect("cert").der().to_vec()
}

struct Setup {
    jwt_gate: Gate,
    cert_gate: Gate,
    uncached_gate: Gate,
    token_headers: http::HeaderMap,
    empty: http::HeaderMap,
    peer: PeerCertificate,
    der: Vec<u8>,
    policy: Rule,
}

fn setup() -> Setup {
    let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(JwtIssuer::new("https://issuer.example").keys(keys))
        .build()
        .expect("jwt");
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let token = signer
        .sign(&serde_json::json!({"iss": "https://issuer.example", "sub": "svc", "exp": exp}))
        .expect("sign");
    let mut token_headers = http::HeaderMap::new();
    token_headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let mapping = || IdentityMapping::builder().build().expect("mapping");
    let der = client_certificate();
    Setup {
        jwt_gate: Gate::builder(jwt.clone()).build(),
        cert_gate: Gate::builder(
            Chain::new()
                .with(jwt)
                .with(Mtls::builder(mapping()).build()),
        )
        .build(),
        uncached_gate: Gate::builder(Mtls::builder(mapping()).cache_ttl(Duration::ZERO).build())
            .build(),
        token_headers,
        empty: http::HeaderMap::new(),
        peer: PeerCertificate::new(der.clone()),
        der,
        policy: Rule::claim_prefix("spiffe_id", "spiffe://demo.local/service/"),
    }
}

fn ready(check: Check) -> auth_core::Principal {
    match check {
        Check::Ready(Ok(Some(p))) => p,
        Check::Ready(other) => panic!("refused: {other:?}"),
        Check::Pending(f) => futures_block(f).expect("ok").expect("principal"),
    }
}

/// Runs a pending check to completion: polled once in place (a CPU-only verification is
/// ready at once), or on a runtime when it waits for something.
fn futures_block<T>(mut f: auth_core::BoxFuture<'static, T>) -> T {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f),
    }
}

type Routine<'a> = Box<dyn FnMut() + 'a>;

fn routines(s: &Setup) -> Vec<((&'static str, &'static str), Routine<'_>)> {
    let ctx = RequestContext::default();
    vec![
        (
            ("a_gate_jwt_cached", "(a) gate, cached JWT (baseline)"),
            Box::new(|| {
                black_box(ready(s.jwt_gate.check(&s.token_headers)));
            }),
        ),
        (
            ("b_gate_cert_cached", "(b) gate, cached client certificate"),
            Box::new(|| {
                let presented = WithPeer {
                    headers: &s.empty,
                    peer: Some(&s.peer),
                };
                black_box(ready(s.cert_gate.check(&presented)));
            }),
        ),
        (
            ("c_gate_cert_cached_policy", "(c) (b) + SPIFFE-ID policy"),
            Box::new(move || {
                let presented = WithPeer {
                    headers: &s.empty,
                    peer: Some(&s.peer),
                };
                let p = ready(s.cert_gate.check(&presented));
                black_box(s.cert_gate.enforce(&s.policy, &p, &ctx).is_ok());
            }),
        ),
        (
            ("d_identity_parse", "(d) CertIdentity::from_der"),
            Box::new(|| {
                black_box(CertIdentity::from_der(&s.der).expect("identity"));
            }),
        ),
        (
            (
                "e_gate_cert_uncached",
                "(e) gate, client certificate, no cache",
            ),
            Box::new(|| {
                let presented = WithPeer {
                    headers: &s.empty,
                    peer: Some(&s.peer),
                };
                black_box(ready(s.uncached_gate.check(&presented)));
            }),
        ),
        (
            (
                "f_peer_thumbprint",
                "(f) PeerCertificate::new (per connection)",
            ),
            Box::new(|| {
                black_box(PeerCertificate::new(s.der.clone()));
            }),
        ),
    ]
}

fn main() {
    let s = setup();
    let mut routines = routines(&s);
    // Warm the caches (the first check of each credential is a full verification).
    for (_, r) in &mut routines {
        r();
    }
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("mtls");
    for ((slug, _), r) in &mut routines {
        group.bench_function(*slug, |b| b.iter(&mut *r));
    }
    group.finish();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (iters, batches) = if benchmarking {
        (ITERS, BATCHES)
    } else {
        (10, 1)
    };
    let mut samples = vec![Vec::with_capacity(batches); routines.len()];
    for _ in 0..batches {
        for ((_, r), out) in routines.iter_mut().zip(&mut samples) {
            let t = Instant::now();
            for _ in 0..iters {
                r();
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
    if !benchmarking {
        println!("ratio loops: smoke-tested (test mode; `cargo bench` prints the numbers)");
        return;
    }
    println!("\nMedians of {batches} interleaved batches of {iters} (same process):");
    for (((_, name), _), ns) in routines.iter().zip(&medians) {
        println!("{name:<44} {ns:>9.0} ns  /(a) = {:.2}x", ns / medians[0]);
    }
    println!(
        "added per request for a cached certificate: {:.0} ns; with the policy: {:.0} ns",
        medians[1] - medians[0],
        medians[2] - medians[0]
    );
}

//! DPoP (RFC 9449) through the gate: `Authorization: DPoP <token>` with a `DPoP` proof for the
//! request's method and URL, on the first (full) and later (cached) verifications alike; a
//! replayed proof, a proof for another method or URL, a proof signed by another key and a bound
//! token sent as `Bearer` are refused; challenges name the accepted algorithms; nonces.
#![cfg(feature = "issuer")]

use auth_core::dpop::{DpopKey, DpopVerifier, NonceConfig};
use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::{AuthError, Gate, RequestTarget, TokenError, WithTarget};
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::time::Duration;

const ISS: &str = "https://issuer.example";
const URL: &str = "https://api.example/orders";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("time")
}

struct Setup {
    signer: SigningKey,
    gate: Gate,
}

fn setup(
    configure: impl FnOnce(
        auth_core::authenticator::GateBuilder,
    ) -> auth_core::authenticator::GateBuilder,
) -> Setup {
    let signer = SigningKey::generate(Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).keys(keys))
        .build()
        .expect("jwt");
    Setup {
        signer,
        gate: configure(Gate::builder(jwt)).build(),
    }
}

fn verifier() -> DpopVerifier {
    DpopVerifier::builder().build().expect("verifier")
}

/// A token bound to `key` (or unbound).
fn token(signer: &SigningKey, key: Option<&DpopKey>) -> String {
    let mut claims = json!({"iss": ISS, "sub": "alice", "exp": now() + 300, "jti": "t1"});
    if let Some(key) = key {
        claims["cnf"] = json!({ "jkt": key.jkt() });
    }
    signer.sign(&claims).expect("sign")
}

/// Sends `scheme token` (+ `proof`) as `GET https://api.example/orders` (host header form).
async fn send(
    gate: &Gate,
    method: &http::Method,
    path: &str,
    scheme: &str,
    token: &str,
    proof: Option<&str>,
) -> Result<(), AuthError> {
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("{scheme} {token}").parse().expect("header"),
    );
    h.insert("host", "api.example".parse().expect("host"));
    if let Some(proof) = proof {
        h.insert("dpop", proof.parse().expect("proof"));
    }
    let target = RequestTarget {
        method: method.as_str(),
        scheme: "https",
        authority: None,
        path,
    };
    gate.check_async(&WithTarget { inner: &h, target })
        .await
        .map(|p| assert_eq!(p.expect("principal").subject(), "alice"))
}

fn invalid(e: TokenError) -> AuthError {
    AuthError::InvalidToken(e)
}

#[tokio::test]
async fn a_valid_proof_is_accepted_first_and_from_the_cache() {
    let s = setup(|g| g.dpop(verifier()));
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let t = token(&s.signer, Some(&key));
    for _ in 0..3 {
        let proof = key.proof("GET", URL, Some(&t), None).expect("proof");
        send(
            &s.gate,
            &http::Method::GET,
            "/orders",
            "DPoP",
            &t,
            Some(&proof),
        )
        .await
        .expect("accepted");
    }
}

#[tokio::test]
async fn replayed_misdirected_and_foreign_proofs_are_refused() {
    let s = setup(|g| g.dpop(verifier()));
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let t = token(&s.signer, Some(&key));
    let get = &http::Method::GET;

    let proof = key.proof("GET", URL, Some(&t), None).expect("proof");
    send(&s.gate, get, "/orders", "DPoP", &t, Some(&proof))
        .await
        .expect("first use");
    let replay = send(&s.gate, get, "/orders", "DPoP", &t, Some(&proof)).await;
    assert!(
        matches!(
            replay,
            Err(AuthError::InvalidToken(TokenError::DpopProofInvalid(_)))
        ),
        "replay: {replay:?}"
    );

    let post = key.proof("POST", URL, Some(&t), None).expect("proof");
    let r = send(&s.gate, get, "/orders", "DPoP", &t, Some(&post)).await;
    assert!(
        matches!(
            r,
            Err(AuthError::InvalidToken(TokenError::DpopProofInvalid(_)))
        ),
        "{r:?}"
    );

    let elsewhere = key
        .proof("GET", "https://api.example/admin", Some(&t), None)
        .expect("proof");
    let r = send(&s.gate, get, "/orders", "DPoP", &t, Some(&elsewhere)).await;
    assert!(
        matches!(
            r,
            Err(AuthError::InvalidToken(TokenError::DpopProofInvalid(_)))
        ),
        "{r:?}"
    );

    let other = DpopKey::generate(Algorithm::ES256).expect("key");
    let foreign = other.proof("GET", URL, Some(&t), None).expect("proof");
    assert_eq!(
        send(&s.gate, get, "/orders", "DPoP", &t, Some(&foreign)).await,
        Err(invalid(TokenError::DpopBindingMismatch))
    );

    // The same query-less URL with a query string is the same resource.
    let fresh = key.proof("GET", URL, Some(&t), None).expect("proof");
    send(&s.gate, get, "/orders", "DPoP", &t, Some(&fresh))
        .await
        .expect("a fresh proof still works");
}

#[tokio::test]
async fn bound_tokens_need_the_dpop_scheme_and_a_proof() {
    let s = setup(|g| g.dpop(verifier()));
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let bound = token(&s.signer, Some(&key));
    let get = &http::Method::GET;
    for _ in 0..2 {
        // Full verification, then the cached one.
        assert_eq!(
            send(&s.gate, get, "/orders", "Bearer", &bound, None).await,
            Err(invalid(TokenError::DpopRequired))
        );
    }
    let r = send(&s.gate, get, "/orders", "DPoP", &bound, None).await;
    assert!(
        matches!(
            r,
            Err(AuthError::InvalidToken(TokenError::DpopProofInvalid(_)))
        ),
        "{r:?}"
    );

    // An unbound token is fine as Bearer, but not with the DPoP scheme.
    let plain = token(&s.signer, None);
    send(&s.gate, get, "/orders", "Bearer", &plain, None)
        .await
        .expect("bearer");
    let proof = key.proof("GET", URL, Some(&plain), None).expect("proof");
    assert_eq!(
        send(&s.gate, get, "/orders", "DPoP", &plain, Some(&proof)).await,
        Err(invalid(TokenError::DpopBindingMismatch))
    );
}

#[tokio::test]
async fn without_dpop_the_scheme_is_not_read_and_bound_tokens_are_refused() {
    let s = setup(|g| g);
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let bound = token(&s.signer, Some(&key));
    let proof = key.proof("GET", URL, Some(&bound), None).expect("proof");
    let get = &http::Method::GET;
    assert_eq!(
        send(&s.gate, get, "/orders", "DPoP", &bound, Some(&proof)).await,
        Err(AuthError::MissingCredentials)
    );
    assert_eq!(
        send(&s.gate, get, "/orders", "Bearer", &bound, None).await,
        Err(invalid(TokenError::DpopRequired))
    );
}

#[tokio::test]
async fn challenges_name_the_algorithms_and_nonces_are_issued_and_required() {
    let nonces = NonceConfig::random(Duration::from_secs(60)).expect("nonces");
    let v = DpopVerifier::builder()
        .nonces(nonces)
        .build()
        .expect("verifier");
    let s = setup(|g| g.dpop(v).realm("api"));
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let t = token(&s.signer, Some(&key));
    let get = &http::Method::GET;

    let headers = s.gate.http_headers(&AuthError::MissingCredentials);
    let challenges: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| *n == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(challenges.len(), 2, "{headers:?}");
    assert!(challenges[0].starts_with("Bearer"));
    assert!(
        challenges[1].starts_with("DPoP realm=\"api\"") && challenges[1].contains("algs=\""),
        "{}",
        challenges[1]
    );

    let proof = key.proof("GET", URL, Some(&t), None).expect("proof");
    let err = send(&s.gate, get, "/orders", "DPoP", &t, Some(&proof))
        .await
        .expect_err("a nonce is required");
    assert_eq!(err, invalid(TokenError::DpopNonceRequired));
    let headers = s.gate.http_headers(&err);
    let nonce = headers
        .iter()
        .find(|(n, _)| *n == "dpop-nonce")
        .map(|(_, v)| v.clone())
        .expect("a DPoP-Nonce header");
    assert!(
        headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.contains("use_dpop_nonce")),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|(_, v)| v.starts_with("Bearer")),
        "a proof refusal carries only the DPoP challenge: {headers:?}"
    );
    let proof = key
        .proof("GET", URL, Some(&t), Some(&nonce))
        .expect("proof");
    send(&s.gate, get, "/orders", "DPoP", &t, Some(&proof))
        .await
        .expect("accepted with the nonce");
}

#[tokio::test]
async fn a_configured_origin_is_what_htu_must_name() {
    let s = setup(|g| g.dpop(verifier()).dpop_origin("https://public.example/"));
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let t = token(&s.signer, Some(&key));
    let get = &http::Method::GET;
    let internal = key.proof("GET", URL, Some(&t), None).expect("proof");
    assert!(
        send(&s.gate, get, "/orders", "DPoP", &t, Some(&internal))
            .await
            .is_err()
    );
    let public = key
        .proof("GET", "https://public.example/orders", Some(&t), None)
        .expect("proof");
    send(&s.gate, get, "/orders", "DPoP", &t, Some(&public))
        .await
        .expect("the public URL");
}

#[tokio::test]
async fn without_a_request_target_dpop_is_a_server_error() {
    let s = setup(|g| g.dpop(verifier()));
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let t = token(&s.signer, Some(&key));
    let proof = key.proof("GET", URL, Some(&t), None).expect("proof");
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("DPoP {t}").parse().expect("header"),
    );
    h.insert("dpop", proof.parse().expect("proof"));
    let err = s.gate.check_async(&h).await.expect_err("no target");
    assert_eq!(err.http_status(), 500);
}

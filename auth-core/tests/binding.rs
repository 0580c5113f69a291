//! RFC 8705 certificate-bound tokens through the gate: a token carrying `cnf.x5t#S256` is
//! accepted only over a connection presenting that certificate, on the first (full) and on
//! later (cached) verifications alike.
#![cfg(feature = "issuer")]

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::{AuthError, Gate, PeerCertificate, TokenError, WithPeer};
use base64::Engine;
use serde_json::json;

const ISS: &str = "https://issuer.example";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("time")
}

fn setup(issuer: Issuer) -> (SigningKey, Gate) {
    let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(issuer.keys(keys))
        .build()
        .expect("jwt");
    (signer, Gate::builder(jwt).build())
}

fn token(signer: &SigningKey, cnf: Option<serde_json::Value>) -> String {
    let mut claims = json!({"iss": ISS, "sub": "svc", "exp": now() + 300});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    signer.sign(&claims).expect("sign")
}

fn headers(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

async fn check(gate: &Gate, token: &str, peer: Option<&PeerCertificate>) -> Result<(), AuthError> {
    let h = headers(token);
    gate.check_async(&WithPeer { headers: &h, peer })
        .await
        .map(|p| assert!(p.is_some()))
}

#[tokio::test]
async fn a_bound_token_needs_its_certificate_every_time() {
    let (signer, gate) = setup(Issuer::new(ISS));
    // Any bytes stand for a certificate here: the gate compares thumbprints only (the TLS
    // handshake validated the certificate).
    let alpha = PeerCertificate::new(b"certificate of alpha".to_vec());
    let beta = PeerCertificate::new(b"certificate of beta".to_vec());
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(alpha.sha256());
    let bound = token(&signer, Some(json!({"x5t#S256": x5t})));
    let mismatch = Err(AuthError::InvalidToken(TokenError::CertificateMismatch));

    // Refused first (full verification), with the other certificate and without any.
    assert_eq!(check(&gate, &bound, Some(&beta)).await, mismatch);
    assert_eq!(check(&gate, &bound, None).await, mismatch);
    // Accepted with its certificate, then answered from the cache...
    assert_eq!(check(&gate, &bound, Some(&alpha)).await, Ok(()));
    assert_eq!(check(&gate, &bound, Some(&alpha)).await, Ok(()));
    // ...where the binding still holds.
    assert_eq!(check(&gate, &bound, Some(&beta)).await, mismatch);
    assert_eq!(check(&gate, &bound, None).await, mismatch);
    assert_eq!(
        AuthError::InvalidToken(TokenError::CertificateMismatch).http_status(),
        401,
        "invalid_token, as RFC 8705 asks"
    );

    // An unbound token works with or without a certificate.
    let plain = token(&signer, None);
    assert_eq!(check(&gate, &plain, Some(&beta)).await, Ok(()));
    assert_eq!(check(&gate, &plain, None).await, Ok(()));

    // A malformed binding is an invalid token, not an unbound one.
    for bad in [
        json!({"x5t#S256": "not base64!"}),
        json!({"x5t#S256": "AAAA"}),
        json!({"x5t#S256": 42}),
        json!("x5t"),
    ] {
        let t = token(&signer, Some(bad.clone()));
        assert_eq!(
            check(&gate, &t, Some(&alpha)).await,
            Err(AuthError::InvalidToken(TokenError::InvalidClaim("cnf"))),
            "{bad}"
        );
    }
    // `cnf` without `x5t#S256` (another confirmation method, here RFC 7800 `kid`) does not
    // bind to a certificate. (A malformed `cnf.jkt` is an invalid claim: see tests/dpop.rs.)
    let other = token(&signer, Some(json!({"kid": "dfd1aa97-6d8a-4a1a"})));
    assert_eq!(check(&gate, &other, None).await, Ok(()));
}

#[tokio::test]
async fn an_issuer_can_require_binding() {
    let (signer, gate) = setup(Issuer::new(ISS).require_certificate_binding());
    let alpha = PeerCertificate::new(b"certificate of alpha".to_vec());
    assert_eq!(
        check(&gate, &token(&signer, None), Some(&alpha)).await,
        Err(AuthError::InvalidToken(TokenError::MissingClaim("cnf")))
    );
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(alpha.sha256());
    let bound = token(&signer, Some(json!({"x5t#S256": x5t})));
    assert_eq!(check(&gate, &bound, Some(&alpha)).await, Ok(()));
}

#[tokio::test]
async fn a_route_can_require_certificate_bound_access() {
    use auth_core::policy::{RequestContext, Rule};
    let (signer, gate) = setup(Issuer::new(ISS));
    let alpha = PeerCertificate::new(b"certificate of alpha".to_vec());
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(alpha.sha256());
    let principal = |token: String, peer: Option<PeerCertificate>| {
        let gate = gate.clone();
        async move {
            let h = headers(&token);
            gate.check_async(&WithPeer {
                headers: &h,
                peer: peer.as_ref(),
            })
            .await
            .expect("authenticated")
            .expect("a principal")
        }
    };
    let ctx = RequestContext::default();
    let rule = Rule::CertificateBound;
    let bound = principal(
        token(&signer, Some(json!({"x5t#S256": x5t}))),
        Some(alpha.clone()),
    )
    .await;
    assert_eq!(gate.enforce(&rule, &bound, &ctx), Ok(()));
    let plain = principal(token(&signer, None), Some(alpha)).await;
    let refused = gate
        .enforce(&rule, &plain, &ctx)
        .expect_err("an unbound token");
    assert_eq!(refused.http_status(), 403);
    // The rule reads from policy files too.
    let from_json: Rule = serde_json::from_str("\"certificate_bound\"").expect("a rule");
    assert_eq!(from_json, Rule::CertificateBound);
}

//! DPoP (RFC 9449) end to end: proofs made by `DpopKey` verified by `DpopVerifier`, every
//! refusal of section 4.3, nonces, the replay cache under pressure, tokens bound with
//! `cnf.jkt` (parsed by `Jwt`) and `check_binding`, and the RFC 7638 thumbprint vectors of
//! `shared/vectors/rfc/rfc7638-jwk-thumbprint.json`.
#![cfg(feature = "issuer")]

use auth_core::clock::Clock;
use auth_core::dpop::{
    self, DpopError, DpopKey, DpopVerifier, NonceConfig, VerifiedProof, check_binding,
};
use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::{Algorithm, AuthError, TokenError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const URL: &str = "https://api.example.com/orders";
const NOW: i64 = 1_800_000_000;

/// A clock tests can move.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new(now: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }
    fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn verifier() -> DpopVerifier {
    verifier_at(TestClock::new(NOW))
}

fn verifier_at(clock: TestClock) -> DpopVerifier {
    DpopVerifier::builder()
        .clock(clock)
        .build()
        .expect("verifier")
}

/// A DPoP key together with its signing key, to make hostile proofs by hand.
struct Client {
    dpop: DpopKey,
    signer: SigningKey,
}

fn client(alg: Algorithm) -> Client {
    let signer = SigningKey::generate(alg, "dpop").expect("key");
    let der = signer.to_pkcs8().expect("pkcs8");
    let dpop = DpopKey::new(SigningKey::from_pkcs8(alg, "dpop", &der).expect("key")).expect("dpop");
    Client { dpop, signer }
}

impl Client {
    fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        self.dpop
            .proof_at(htm, htu, token, None, NOW)
            .expect("proof")
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.dpop.public_jwk()})
    }

    fn claims(&self) -> Value {
        json!({"jti": "jti-1", "htm": "GET", "htu": URL, "iat": NOW})
    }

    /// Signs the exact header and claims given.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.signer
            .sign_raw(&header.to_string(), &claims.to_string())
            .expect("sign")
    }
}

#[test]
fn proofs_of_every_algorithm_verify_once() {
    let v = verifier();
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::PS256,
        Algorithm::RS256,
    ] {
        let v = if alg == Algorithm::ES384 {
            DpopVerifier::builder()
                .algorithms(&[Algorithm::ES384])
                .clock(TestClock::new(NOW))
                .build()
                .expect("verifier")
        } else {
            v.clone()
        };
        let key = DpopKey::generate(alg).expect("key");
        let proof = key
            .proof_at("GET", URL, Some("tok"), None, NOW)
            .expect("proof");
        let ok = v.verify(&proof, "GET", URL, Some("tok")).expect("valid");
        assert_eq!(ok.jkt, key.thumbprint(), "{alg:?}");
        assert_eq!(ok.jkt_base64(), key.jkt());
        assert_eq!(ok.alg, alg);
        assert_eq!(ok.iat, NOW);
        assert_eq!(
            v.verify(&proof, "GET", URL, Some("tok")),
            Err(DpopError::Replayed),
            "{alg:?}"
        );
    }
    assert!(DpopKey::generate(Algorithm::HS256).is_err());
}

#[test]
fn a_proof_made_now_verifies_with_the_system_clock() {
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let proof = key
        .proof("POST", "https://as.example/token", None, None)
        .expect("proof");
    let v = DpopVerifier::builder().build().expect("verifier");
    assert!(
        v.verify(&proof, "POST", "https://as.example/token", None)
            .is_ok()
    );
}

#[test]
fn method_and_url_must_match_after_normalisation() {
    let v = verifier();
    let c = client(Algorithm::ES256);
    // Another method (methods are case-sensitive) or another URL.
    assert_eq!(
        v.verify(&c.proof("GET", URL, None), "POST", URL, None),
        Err(DpopError::MethodMismatch)
    );
    assert_eq!(
        v.verify(&c.proof("GET", URL, None), "get", URL, None),
        Err(DpopError::MethodMismatch)
    );
    for other in [
        "https://api.example.com/orders/1",
        "https://api.example.com/Orders",
        "http://api.example.com/orders",
        "https://api.example.com:8443/orders",
        "https://evil.example.com/orders",
    ] {
        assert_eq!(
            v.verify(&c.proof("GET", URL, None), "GET", other, None),
            Err(DpopError::UrlMismatch),
            "{other}"
        );
    }
    // The same URL written differently, and with a query or fragment on either side.
    for same in [
        "https://api.example.com/orders?page=2",
        "https://api.example.com/orders#top",
        "https://api.example.com:443/orders",
        "HTTPS://API.Example.com/orders",
        "https://api.example.com/x/../orders",
        "https://api.example.com/%6Frders",
    ] {
        assert!(
            v.verify(&c.proof("GET", URL, None), "GET", same, None)
                .is_ok(),
            "{same}"
        );
        assert!(
            v.verify(&c.proof("GET", same, None), "GET", URL, None)
                .is_ok(),
            "{same}"
        );
    }
    // The client drops the query itself; a hand-made proof with one in `htu` is also accepted.
    let mut claims = c.claims();
    claims["htu"] = format!("{URL}?a=b").into();
    assert!(
        v.verify(&c.sign(&c.header(), &claims), "GET", URL, None)
            .is_ok()
    );
    // `htu` that is no http(s) URL.
    let mut claims = c.claims();
    claims["jti"] = "relative".into();
    claims["htu"] = "/orders".into();
    assert_eq!(
        v.verify(&c.sign(&c.header(), &claims), "GET", URL, None),
        Err(DpopError::InvalidClaim("htu"))
    );
}

#[test]
fn ath_is_required_with_a_token() {
    let v = verifier();
    let c = client(Algorithm::ES256);
    // No `ath` while a token is presented.
    assert_eq!(
        v.verify(&c.proof("GET", URL, None), "GET", URL, Some("tok")),
        Err(DpopError::MissingClaim("ath"))
    );
    // The hash of another token.
    assert_eq!(
        v.verify(&c.proof("GET", URL, Some("other")), "GET", URL, Some("tok")),
        Err(DpopError::AccessTokenMismatch)
    );
    // Not a string.
    let mut claims = c.claims();
    claims["ath"] = json!(42);
    assert_eq!(
        v.verify(&c.sign(&c.header(), &claims), "GET", URL, Some("tok")),
        Err(DpopError::InvalidClaim("ath"))
    );
    // Without a token, `ath` is neither needed nor looked at.
    assert!(
        v.verify(&c.proof("GET", URL, Some("tok")), "GET", URL, None)
            .is_ok()
    );
    assert!(
        v.verify(&c.proof("GET", URL, Some("tok")), "GET", URL, Some("tok"))
            .is_ok()
    );
}

#[test]
fn iat_must_be_inside_the_window() {
    let clock = TestClock::new(NOW);
    let v = verifier_at(clock.clone());
    let c = client(Algorithm::ES256);
    let proof = |iat| c.dpop.proof_at("GET", URL, None, None, iat).expect("proof");
    assert_eq!(
        v.verify(&proof(NOW - 61), "GET", URL, None),
        Err(DpopError::TooOld)
    );
    assert_eq!(
        v.verify(&proof(NOW + 6), "GET", URL, None),
        Err(DpopError::IssuedInFuture)
    );
    assert!(v.verify(&proof(NOW - 60), "GET", URL, None).is_ok());
    assert!(v.verify(&proof(NOW + 5), "GET", URL, None).is_ok());
    // A proof goes stale as time passes.
    let p = proof(NOW);
    clock.set(NOW + 61);
    assert_eq!(v.verify(&p, "GET", URL, None), Err(DpopError::TooOld));
    // `iat` missing or not a number.
    for bad in [json!(null), json!("1800000000")] {
        let mut claims = c.claims();
        claims["iat"] = bad;
        clock.set(NOW);
        assert_eq!(
            v.verify(&c.sign(&c.header(), &claims), "GET", URL, None),
            Err(DpopError::InvalidClaim("iat"))
        );
    }
    let mut claims = c.claims();
    claims.as_object_mut().expect("object").remove("iat");
    assert_eq!(
        v.verify(&c.sign(&c.header(), &claims), "GET", URL, None),
        Err(DpopError::MissingClaim("iat"))
    );
}

#[test]
fn header_rules() {
    let v = verifier();
    let c = client(Algorithm::ES256);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut h = c.header();
        f(&mut h);
        v.verify(&c.sign(&h, &c.claims()), "GET", URL, None)
    };
    assert_eq!(
        with(&|h| h["typ"] = "JWT".into()),
        Err(DpopError::InvalidType)
    );
    assert_eq!(
        with(&|h| h["typ"] = "DPoP+JWT".into()),
        Err(DpopError::InvalidType)
    );
    assert_eq!(
        with(&|h| {
            h.as_object_mut().expect("object").remove("typ");
        }),
        Err(DpopError::InvalidType)
    );
    assert_eq!(
        with(&|h| h["alg"] = "none".into()),
        Err(DpopError::UnsupportedAlgorithm)
    );
    assert_eq!(
        with(&|h| {
            h["crit"] = json!(["exp"]);
            h["exp"] = json!(1);
        }),
        Err(DpopError::UnsupportedCritical)
    );
    assert_eq!(
        with(&|h| {
            h.as_object_mut().expect("object").remove("jwk");
        }),
        Err(DpopError::InvalidKey("`jwk` is missing"))
    );
    assert_eq!(
        with(&|h| h["jwk"] = "a key".into()),
        Err(DpopError::InvalidKey("`jwk` is not an object"))
    );
    // A private member, even a well-formed one, is refused.
    assert_eq!(
        with(&|h| h["jwk"]["d"] = "AAAA".into()),
        Err(DpopError::InvalidKey("`jwk` holds private key material"))
    );
    // An EdDSA key for an ES256 proof.
    let ed = DpopKey::generate(Algorithm::EdDSA).expect("key");
    assert_eq!(
        with(&|h| h["jwk"] = Value::Object(ed.public_jwk().clone())),
        Err(DpopError::InvalidKey("`jwk` does not fit `alg`"))
    );
    // A curve point that is not on the curve (a changed coordinate) is refused one way or
    // another: as a key or by its signature.
    let broken = with(&|h| {
        let x = h["jwk"]["x"].as_str().expect("x").to_owned();
        let mut bytes = URL_SAFE_NO_PAD.decode(x).expect("x");
        bytes[31] ^= 1;
        h["jwk"]["x"] = URL_SAFE_NO_PAD.encode(bytes).into();
    });
    assert!(
        matches!(
            broken,
            Err(DpopError::BadSignature | DpopError::InvalidKey(_))
        ),
        "{broken:?}"
    );
    // Duplicate members, in the header or in the key.
    let dup = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{}}}"#,
        Value::Object(c.dpop.public_jwk().clone())
    );
    let proof = c
        .signer
        .sign_raw(&dup, &c.claims().to_string())
        .expect("sign");
    assert_eq!(
        v.verify(&proof, "GET", URL, None),
        Err(DpopError::DuplicateMember)
    );
}

#[test]
fn symmetric_algorithms_and_keys_are_refused() {
    let v = verifier();
    let hmac = SigningKey::generate(Algorithm::HS256, "k").expect("key");
    let secret = hmac.public_jwk();
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": secret});
    let claims = json!({"jti": "j", "htm": "GET", "htu": URL, "iat": NOW});
    let proof = hmac
        .sign_raw(&header.to_string(), &claims.to_string())
        .expect("sign");
    assert_eq!(
        v.verify(&proof, "GET", URL, None),
        Err(DpopError::AlgorithmNotAllowed)
    );
    // Even with HS256 out of the way, an `oct` key is refused as such.
    let c = client(Algorithm::ES256);
    let mut h = c.header();
    h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"});
    assert_eq!(
        v.verify(&c.sign(&h, &c.claims()), "GET", URL, None),
        Err(DpopError::InvalidKey("`jwk` is a symmetric key"))
    );
    assert!(
        DpopVerifier::builder()
            .algorithms(&[Algorithm::HS256])
            .build()
            .is_err()
    );
}

#[test]
fn a_proof_signed_by_another_key_than_its_jwk_is_refused() {
    let v = verifier();
    let victim = client(Algorithm::ES256);
    let attacker = client(Algorithm::ES256);
    // The attacker claims the victim's key but can only sign with its own.
    let proof = attacker.sign(&victim.header(), &victim.claims());
    assert_eq!(
        v.verify(&proof, "GET", URL, None),
        Err(DpopError::BadSignature)
    );
    // A bad signature is not recorded: the genuine proof with the same jti still verifies.
    let genuine = victim.sign(&victim.header(), &victim.claims());
    assert!(v.verify(&genuine, "GET", URL, None).is_ok());
    assert_eq!(
        v.verify(&genuine, "GET", URL, None),
        Err(DpopError::Replayed)
    );
}

#[test]
fn jti_is_required_and_scoped_to_the_key() {
    let v = verifier();
    let a = client(Algorithm::ES256);
    let b = client(Algorithm::ES256);
    let mut claims = a.claims();
    claims["jti"] = json!("");
    assert_eq!(
        v.verify(&a.sign(&a.header(), &claims), "GET", URL, None),
        Err(DpopError::InvalidClaim("jti"))
    );
    claims["jti"] = "x".repeat(257).into();
    assert_eq!(
        v.verify(&a.sign(&a.header(), &claims), "GET", URL, None),
        Err(DpopError::InvalidClaim("jti"))
    );
    claims["jti"] = json!(7);
    assert_eq!(
        v.verify(&a.sign(&a.header(), &claims), "GET", URL, None),
        Err(DpopError::InvalidClaim("jti"))
    );
    claims.as_object_mut().expect("object").remove("jti");
    assert_eq!(
        v.verify(&a.sign(&a.header(), &claims), "GET", URL, None),
        Err(DpopError::MissingClaim("jti"))
    );
    // The same jti from two keys: two different proofs.
    assert!(
        v.verify(&a.sign(&a.header(), &a.claims()), "GET", URL, None)
            .is_ok()
    );
    assert!(
        v.verify(&b.sign(&b.header(), &b.claims()), "GET", URL, None)
            .is_ok()
    );
    // A re-signed proof with a used jti (same key) is a replay.
    let mut again = a.claims();
    again["htm"] = "GET".into();
    assert_eq!(
        v.verify(&a.sign(&a.header(), &again), "GET", URL, None),
        Err(DpopError::Replayed)
    );
}

#[test]
fn nonces() {
    let clock = TestClock::new(NOW);
    let v = DpopVerifier::builder()
        .clock(clock.clone())
        .nonces(NonceConfig::new(&[9; 32], Duration::from_secs(120)).expect("nonces"))
        .build()
        .expect("verifier");
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    // No nonce: the caller answers `use_dpop_nonce` with a fresh one.
    let err = v
        .verify(
            &key.proof_at("GET", URL, None, None, NOW).expect("proof"),
            "GET",
            URL,
            None,
        )
        .unwrap_err();
    assert_eq!(err, DpopError::NonceRequired);
    let auth = AuthError::from(err);
    assert_eq!(auth, AuthError::InvalidToken(TokenError::DpopNonceRequired));
    assert_eq!(dpop::error_code(&auth), Some("use_dpop_nonce"));
    assert!(
        dpop::challenge(&auth, "api", v.algorithms())
            .expect("challenge")
            .starts_with(r#"DPoP realm="api", error="use_dpop_nonce""#)
    );
    let nonce = v.issue_nonce().expect("nonces are on");
    // With it, accepted.
    let ok = key
        .proof_at("GET", URL, None, Some(&nonce), NOW)
        .expect("proof");
    assert!(v.verify(&ok, "GET", URL, None).is_ok());
    // A nonce of our own making, or another server's, is refused.
    let other = DpopVerifier::builder()
        .clock(clock.clone())
        .nonces(NonceConfig::new(&[8; 32], Duration::from_secs(120)).expect("nonces"))
        .build()
        .expect("verifier")
        .issue_nonce()
        .expect("nonce");
    for bad in ["made-up", other.as_str()] {
        let p = key
            .proof_at("GET", URL, None, Some(bad), NOW)
            .expect("proof");
        assert_eq!(v.verify(&p, "GET", URL, None), Err(DpopError::NonceInvalid));
    }
    // A stale nonce: refused once its lifetime is over, even in a fresh proof.
    clock.set(NOW + 121);
    let stale = key
        .proof_at("GET", URL, None, Some(&nonce), NOW + 121)
        .expect("proof");
    assert_eq!(
        v.verify(&stale, "GET", URL, None),
        Err(DpopError::NonceInvalid)
    );
    assert_eq!(
        TokenError::from(DpopError::NonceInvalid),
        TokenError::DpopNonceRequired
    );
    let fresh = v.issue_nonce().expect("nonce");
    let p = key
        .proof_at("GET", URL, None, Some(&fresh), NOW + 121)
        .expect("proof");
    assert!(v.verify(&p, "GET", URL, None).is_ok());
    // A nonce of the wrong type.
    let c = client(Algorithm::ES256);
    let mut claims = c.claims();
    claims["iat"] = json!(NOW + 121);
    claims["nonce"] = json!(1);
    assert_eq!(
        v.verify(&c.sign(&c.header(), &claims), "GET", URL, None),
        Err(DpopError::NonceInvalid)
    );
}

#[test]
fn a_full_replay_cache_is_bounded_and_lets_no_replay_through() {
    let clock = TestClock::new(NOW);
    let v = DpopVerifier::builder()
        .clock(clock.clone())
        .replay_cache_capacity(16)
        .build()
        .expect("verifier");
    let key = DpopKey::generate(Algorithm::EdDSA).expect("key");
    let mut accepted = Vec::new();
    // Far more proofs than the cache holds, all inside the window, of varied age.
    for i in 0..400i64 {
        let p = key
            .proof_at("GET", URL, None, None, NOW - (i % 50))
            .expect("proof");
        match v.verify(&p, "GET", URL, None) {
            Ok(_) => accepted.push(p),
            Err(e) => assert_eq!(e, DpopError::ReplayUndecidable),
        }
    }
    assert!(accepted.len() > 16, "{} accepted", accepted.len());
    for p in &accepted {
        let again = v.verify(p, "GET", URL, None);
        assert!(
            matches!(
                again,
                Err(DpopError::Replayed | DpopError::ReplayUndecidable)
            ),
            "a replay got through: {again:?}"
        );
    }
    // A brand-new proof is still accepted.
    let p = key
        .proof_at("GET", URL, None, None, NOW + 1)
        .expect("proof");
    assert!(v.verify(&p, "GET", URL, None).is_ok());
    // Once the window has passed, the old proofs are refused for their age.
    clock.set(NOW + 120);
    for p in &accepted {
        assert_eq!(v.verify(p, "GET", URL, None), Err(DpopError::TooOld));
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens bound with cnf.jkt
// ---------------------------------------------------------------------------------------------

const ISS: &str = "https://issuer.example";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("time")
}

fn jwt() -> (SigningKey, Jwt) {
    let signer = SigningKey::generate(Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).keys(keys))
        .build()
        .expect("jwt");
    (signer, jwt)
}

fn token(signer: &SigningKey, cnf: Option<Value>) -> String {
    let mut claims = json!({"iss": ISS, "sub": "client-1", "exp": now() + 300});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    signer.sign(&claims).expect("sign")
}

#[tokio::test]
async fn jwt_reads_cnf_jkt() {
    let (signer, jwt) = jwt();
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let bound = token(&signer, Some(json!({"jkt": key.jkt()})));
    let p = jwt.verify(&bound).await.expect("valid");
    assert_eq!(p.dpop_binding(), Some(&key.thumbprint()));
    assert_eq!(p.certificate_binding(), None);
    // Both bindings at once.
    let both = token(
        &signer,
        Some(json!({"jkt": key.jkt(), "x5t#S256": URL_SAFE_NO_PAD.encode([3u8; 32])})),
    );
    let p = jwt.verify(&both).await.expect("valid");
    assert_eq!(p.dpop_binding(), Some(&key.thumbprint()));
    assert_eq!(p.certificate_binding(), Some(&[3u8; 32]));
    // Unbound.
    let p = jwt.verify(&token(&signer, None)).await.expect("valid");
    assert_eq!(p.dpop_binding(), None);
    let p = jwt
        .verify(&token(&signer, Some(json!({}))))
        .await
        .expect("valid");
    assert_eq!(p.dpop_binding(), None);
    // Malformed thumbprints.
    for bad in [
        json!({"jkt": 1}),
        json!({"jkt": "c2hvcnQ"}),
        json!({"jkt": format!("{}=", key.jkt())}),
        json!({"jkt": URL_SAFE_NO_PAD.encode([1u8; 33])}),
        json!({"jkt": hex(&key.thumbprint())}),
    ] {
        assert_eq!(
            jwt.verify(&token(&signer, Some(bad.clone()))).await.err(),
            Some(AuthError::InvalidToken(TokenError::InvalidClaim("cnf"))),
            "{bad}"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn a_bound_token_needs_a_proof_by_its_key_and_the_dpop_scheme() {
    let (signer, jwt) = jwt();
    let v = DpopVerifier::builder().build().expect("verifier");
    let holder = DpopKey::generate(Algorithm::ES256).expect("key");
    let thief = DpopKey::generate(Algorithm::ES256).expect("key");
    let bound = token(&signer, Some(json!({"jkt": holder.jkt()})));
    let principal = jwt.verify(&bound).await.expect("valid");
    let jkt = principal.dpop_binding();

    // The holder's proof for this token: accepted with the DPoP scheme.
    let proof: VerifiedProof = v
        .verify(
            &holder.proof("GET", URL, Some(&bound), None).expect("proof"),
            "GET",
            URL,
            Some(&bound),
        )
        .expect("proof");
    assert_eq!(check_binding(jkt, Some(&proof), true), Ok(()));
    // The same token as Bearer: refused, with or without a proof.
    assert_eq!(
        check_binding(jkt, None, false),
        Err(DpopError::BoundTokenAsBearer)
    );
    assert_eq!(
        check_binding(jkt, Some(&proof), false),
        Err(DpopError::BoundTokenAsBearer)
    );
    assert_eq!(
        AuthError::from(DpopError::BoundTokenAsBearer),
        AuthError::InvalidToken(TokenError::DpopRequired)
    );
    // A thief with its own key makes a valid proof, but not one for the token's key.
    let stolen: VerifiedProof = v
        .verify(
            &thief.proof("GET", URL, Some(&bound), None).expect("proof"),
            "GET",
            URL,
            Some(&bound),
        )
        .expect("a well-formed proof");
    assert_eq!(
        check_binding(jkt, Some(&stolen), true),
        Err(DpopError::BindingMismatch)
    );
    let err = AuthError::from(DpopError::BindingMismatch);
    assert_eq!(
        err,
        AuthError::InvalidToken(TokenError::DpopBindingMismatch)
    );
    assert_eq!(dpop::error_code(&err), Some("invalid_token"));
    // DPoP scheme without a proof, or with an unbound token.
    assert_eq!(check_binding(jkt, None, true), Err(DpopError::Missing));
    let unbound = jwt.verify(&token(&signer, None)).await.expect("valid");
    assert_eq!(
        check_binding(unbound.dpop_binding(), Some(&proof), true),
        Err(DpopError::TokenNotBound)
    );
    // An unbound token with Bearer needs no proof.
    assert_eq!(check_binding(unbound.dpop_binding(), None, false), Ok(()));
    // The proof of one token does not carry over to another.
    let other = token(&signer, Some(json!({"jkt": holder.jkt()})));
    assert_eq!(
        v.verify(
            &holder.proof("GET", URL, Some(&bound), None).expect("proof"),
            "GET",
            URL,
            Some(&other)
        ),
        Err(DpopError::AccessTokenMismatch)
    );
}

#[test]
fn verify_bound_checks_the_key_before_recording_the_proof() {
    let v = verifier();
    let holder = client(Algorithm::ES256);
    let thief = client(Algorithm::ES256);
    let jkt = holder.dpop.thumbprint();
    let mut claims = holder.claims();
    claims["ath"] = dpop::access_token_hash("tok").into();
    // The thief's proof, with the holder's jti, is refused and not recorded...
    assert_eq!(
        v.verify_bound(
            &thief.sign(&thief.header(), &claims),
            "GET",
            URL,
            "tok",
            &jkt
        ),
        Err(DpopError::BindingMismatch)
    );
    // ...so the holder's proof with that jti is still accepted, once.
    let proof = holder.sign(&holder.header(), &claims);
    let ok = v
        .verify_bound(&proof, "GET", URL, "tok", &jkt)
        .expect("valid");
    assert_eq!(ok.jkt, jkt);
    assert_eq!(
        v.verify_bound(&proof, "GET", URL, "tok", &jkt),
        Err(DpopError::Replayed)
    );
    // Every other check still applies.
    assert_eq!(
        v.verify_bound(&holder.proof("GET", URL, None), "GET", URL, "tok", &jkt),
        Err(DpopError::MissingClaim("ath"))
    );
}

#[test]
fn challenge_headers_carry_a_fresh_nonce() {
    let v = DpopVerifier::builder()
        .algorithms(&[Algorithm::ES256])
        .clock(TestClock::new(NOW))
        .nonces(NonceConfig::random(Duration::from_secs(60)).expect("nonces"))
        .build()
        .expect("verifier");
    let h = v.challenge_headers(&DpopError::NonceRequired.into(), "api");
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].0, "www-authenticate");
    assert!(h[0].1.contains(r#"error="use_dpop_nonce""#));
    assert!(h[0].1.ends_with(r#"algs="ES256""#));
    assert_eq!(h[1].0, "dpop-nonce");
    // The nonce it sends is one the verifier accepts.
    let key = DpopKey::generate(Algorithm::ES256).expect("key");
    let proof = key
        .proof_at("GET", URL, None, Some(&h[1].1), NOW)
        .expect("proof");
    assert!(v.verify(&proof, "GET", URL, None).is_ok());
    // Other refusals carry no nonce; errors without a challenge carry nothing.
    let h = v.challenge_headers(&DpopError::BadSignature.into(), "api");
    assert_eq!(h.len(), 1);
    assert!(h[0].1.contains(r#"error="invalid_dpop_proof""#));
    assert!(
        v.challenge_headers(&AuthError::Unavailable("down"), "api")
            .is_empty()
    );
    // Without nonces configured, no nonce header.
    let plain = verifier();
    assert_eq!(
        plain
            .challenge_headers(&DpopError::NonceRequired.into(), "")
            .len(),
        1
    );
}

#[test]
fn challenges_carry_the_rfc9449_codes() {
    let algs = DpopVerifier::builder()
        .algorithms(&[Algorithm::ES256, Algorithm::EdDSA])
        .build()
        .expect("verifier")
        .algorithms();
    let invalid = AuthError::from(DpopError::BadSignature);
    assert_eq!(dpop::error_code(&invalid), Some("invalid_dpop_proof"));
    assert_eq!(
        dpop::challenge(&invalid, "api", algs).as_deref(),
        Some(
            r#"DPoP realm="api", error="invalid_dpop_proof", error_description="the DPoP proof is invalid", algs="ES256 EdDSA""#
        )
    );
    // The detail stays in logs only.
    assert!(
        !dpop::challenge(&invalid, "api", algs)
            .expect("challenge")
            .contains("bad_signature")
    );
    assert_eq!(
        invalid.to_string(),
        "the DPoP proof is invalid (bad_signature)"
    );
    assert_eq!(
        dpop::challenge(&AuthError::MissingCredentials, "api", algs).as_deref(),
        Some(r#"DPoP realm="api", algs="ES256 EdDSA""#)
    );
    let expired = AuthError::InvalidToken(TokenError::Expired);
    assert_eq!(
        dpop::challenge(&expired, "", algs).as_deref(),
        Some(
            r#"DPoP error="invalid_token", error_description="the token has expired", algs="ES256 EdDSA""#
        )
    );
    // The Bearer challenge is unchanged.
    assert!(
        invalid
            .www_authenticate("api")
            .expect("challenge")
            .starts_with(r#"Bearer realm="api", error="invalid_token""#)
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 7638 vectors
// ---------------------------------------------------------------------------------------------

/// The vectors file, or `None` (after saying so) when it is absent outside CI.
fn vectors_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("AUTH_VECTORS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    let file = dir.join("rfc/rfc7638-jwk-thumbprint.json");
    if file.is_file() {
        return Some(file);
    }
    let msg = format!("RFC 7638 vectors not found at {}", file.display());
    assert!(std::env::var_os("CI").is_none(), "{msg}; required on CI");
    eprintln!("SKIPPED: {msg}");
    None
}

#[test]
fn rfc7638_thumbprint_vectors() {
    let Some(file) = vectors_file() else { return };
    let doc: Value =
        serde_json::from_slice(&std::fs::read(file).expect("read vectors")).expect("JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let id = case["id"].as_str().expect("id");
        let jwk = case["jwk"].as_object().expect("jwk");
        let jkt = dpop::jwk_thumbprint(jwk).expect(id);
        assert_eq!(
            dpop::encode_jkt(&jkt),
            case["thumbprint_sha256_b64"].as_str().expect("b64"),
            "{id}"
        );
        assert_eq!(
            hex(&jkt),
            case["thumbprint_sha256_hex"]
                .as_str()
                .expect("hex")
                .to_ascii_lowercase(),
            "{id}"
        );
    }
}

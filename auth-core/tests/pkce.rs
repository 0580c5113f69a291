//! RFC 7636 vectors (Appendix B and the derived cases of `../shared/vectors/rfc/rfc7636-pkce.json`)
//! through `auth_core::pkce`.

use auth_core::pkce::{CodeVerifier, Method, PkceError, verify};
use serde_json::Value;
use std::path::PathBuf;

#[test]
fn rfc7636_vectors() {
    // The vectors live outside the workspace, as for the other vector tests.
    let dir = std::env::var_os("AUTH_VECTORS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
        PathBuf::from,
    );
    let path = dir.join("rfc/rfc7636-pkce.json");
    if !path.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} missing; required on CI",
            path.display()
        );
        eprintln!(
            "SKIPPED: {} not found (set AUTH_VECTORS_DIR)",
            path.display()
        );
        return;
    }
    let text = std::fs::read_to_string(&path).expect("the RFC 7636 vectors");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let mut checked = 0;
    for case in doc["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("id");
        let Some(expected) = case["expected"].as_str() else {
            continue; // the base64url-only example
        };
        let method = Method::parse(case["code_challenge_method"].as_str().expect("method"))
            .expect("a known method");
        let verifier = case["code_verifier"].as_str().expect("verifier");
        let challenge = case["code_challenge"].as_str().expect("challenge");
        // `plain` vectors are checked with plain allowed; refusing it by default is tested below.
        let allow_plain = method == Method::Plain;
        let got = verify(challenge, method, verifier, allow_plain);
        let want = match expected {
            "match" => Ok(()),
            "mismatch" => Err(PkceError::Mismatch),
            "invalid_verifier" => Err(PkceError::InvalidVerifier),
            other => panic!("{id}: unknown expectation {other}"),
        };
        assert_eq!(got, want, "{id}");
        if expected == "match" && method == Method::S256 {
            let v = CodeVerifier::parse(verifier).expect("valid");
            assert_eq!(
                v.challenge().as_str(),
                challenge,
                "{id}: our S256 challenge"
            );
        }
        if method == Method::Plain {
            assert_eq!(
                verify(challenge, method, verifier, false),
                Err(PkceError::UnsupportedMethod),
                "{id}: plain refused by default"
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} cases checked");
}

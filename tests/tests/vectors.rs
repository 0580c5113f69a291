//! Conformance vectors from `shared/vectors/` run against `auth_core::jws::verify`.
//!
//! - Wycheproof `json_web_signature_test.json`, `json_web_key_test.json` and the JWS cases of
//!   `json_web_crypto_test.json`: each group's `public` (else `private`) JWK or JWKS is the
//!   trusted key set; a key set that fails to load makes every test of the group a failed
//!   verification. Only the compact serialization is accepted, so JSON-serialized tests must
//!   fail.
//! - RFC 7515 Appendix A, RFC 7520 Section 4 and RFC 8037 Appendix A JWS examples.
//!
//! Every disagreement with a vector must be listed in [`KNOWN_STRICTER`] (valid per the vector,
//! refused here on purpose), [`VECTOR_DEFECTS`] (invalid per the vector, but provably a correctly
//! signed token) or [`KNOWN_UNSUPPORTED`] (RFC examples using ES512 or detached payloads), and
//! every listed one must still occur: the set of deviations is compared exactly, so a new one
//! (or a fixed one) fails the test. Each Wycheproof entry's stated cause is also checked
//! mechanically, so an entry cannot hide a different failure.
//!
//! The vectors live outside the workspace (`../../shared/vectors` from this crate, or the
//! directory named by `AUTH_VECTORS_DIR`). When they are absent the tests are skipped with a
//! message, except on CI (`CI` set), where that is a failure.
//! `rfc7638-jwk-thumbprint.json` is not run: `auth-core` has no JWK thumbprint API.

#![allow(clippy::unwrap_used)]

use auth_core::jws;
use auth_core::keys::{KeySet, VerifyingKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why this verifier disagrees with a Wycheproof test. Each reason is checked mechanically
/// (see [`confirm`]), so an entry cannot hide a different failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The test expects `valid` for a token with a character outside the base64url alphabet
    /// inserted (a lenient decoder skips it); this verifier refuses non-base64url input.
    /// Confirmed: the token minus that character verifies.
    NotBase64url(char),
    /// The test expects `valid` for a token whose `alg` differs from the `alg` of the group's JWK;
    /// here the key decides the algorithm (RFC 8725 3.1), as Wycheproof itself requires in the
    /// `ps512` group (tcIds 331-340). Confirmed: the same key without `alg` verifies the token.
    KeyAlgMismatch,
    /// The test expects `valid` for ES512 on P-521 (JWK `alg` `ES521`), which this verifier
    /// does not support. Confirmed: the group key is a P-521 key.
    UnsupportedP521,
    /// The vector expects `invalid` for a well-formed, correctly signed token: its name says
    /// "invalid base64 padding" but the token has no padding. It is byte-identical to the
    /// tokens of tcIds 372/373 minus their '?'. Confirmed: every segment is canonical unpadded
    /// base64url and an independent HMAC-SHA256 (aws-lc-rs) over the signing input matches the
    /// signature, so accepting it is correct.
    VectorDefectValidToken,
}

impl Why {
    fn describe(self) -> String {
        match self {
            Self::NotBase64url(c) => format!("{c:?} inserted: non-base64url input is refused"),
            Self::KeyAlgMismatch => "token alg differs from the JWK alg: the key decides".into(),
            Self::UnsupportedP521 => "ES512 / P-521 is not supported".into(),
            Self::VectorDefectValidToken => {
                "vector defect: expects invalid for a correctly signed canonical token".into()
            }
        }
    }
}

/// Wycheproof tests (file, tcId, reason) that expect `valid` and that this verifier refuses on
/// purpose.
const KNOWN_STRICTER: &[(&str, u64, Why)] = &[
    ("json_web_signature_test.json", 346, Why::KeyAlgMismatch),
    ("json_web_signature_test.json", 347, Why::UnsupportedP521),
    ("json_web_signature_test.json", 350, Why::KeyAlgMismatch),
    ("json_web_signature_test.json", 351, Why::UnsupportedP521),
    ("json_web_signature_test.json", 372, Why::NotBase64url('?')),
    ("json_web_signature_test.json", 373, Why::NotBase64url('?')),
];

/// Wycheproof tests (file, tcId, reason) whose expected result is wrong: this verifier accepts a
/// token the vector calls invalid, and [`confirm`] proves independently that the token is valid.
const VECTOR_DEFECTS: &[(&str, u64, Why)] = &[
    (
        "json_web_signature_test.json",
        367,
        Why::VectorDefectValidToken,
    ),
    (
        "json_web_signature_test.json",
        370,
        Why::VectorDefectValidToken,
    ),
];

/// Checks that a listed deviation has the cause its entry claims; `Err` says why not.
fn confirm(why: Why, jwk: &Value, token: &str, expected: &str) -> Result<(), String> {
    let ok = |cond: bool, what: &str| if cond { Ok(()) } else { Err(what.to_owned()) };
    match why {
        Why::NotBase64url(c) => {
            ok(expected == "valid", "the vector does not expect valid")?;
            ok(
                token.contains(c),
                "the token does not contain the character",
            )?;
            let cleaned = token.replace(c, "");
            ok(
                verify(&Value::String(cleaned), &key_set(jwk)).is_ok(),
                "the token minus the character does not verify",
            )
        }
        Why::KeyAlgMismatch => {
            ok(expected == "valid", "the vector does not expect valid")?;
            let mut stripped = jwk.clone();
            let alg = stripped.as_object_mut().and_then(|o| o.remove("alg"));
            ok(alg.is_some(), "the JWK has no alg")?;
            let header = token.split('.').next().unwrap_or_default();
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            ok(
                header["alg"] != alg.unwrap_or_default(),
                "the algs are the same",
            )?;
            ok(
                verify(&Value::String(token.to_owned()), &key_set(&stripped)).is_ok(),
                "the token does not verify with the JWK minus alg",
            )
        }
        Why::UnsupportedP521 => {
            ok(expected == "valid", "the vector does not expect valid")?;
            ok(jwk["crv"] == "P-521", "the key is not a P-521 key")?;
            ok(key_set(jwk).is_err(), "the key loads")
        }
        Why::VectorDefectValidToken => {
            ok(expected == "invalid", "the vector does not expect invalid")?;
            let parts: Vec<&str> = token.split('.').collect();
            ok(parts.len() == 3, "not three segments")?;
            for part in &parts {
                let bytes = URL_SAFE_NO_PAD
                    .decode(part)
                    .map_err(|e| format!("segment {part:?}: {e}"))?;
                ok(
                    URL_SAFE_NO_PAD.encode(bytes) == *part,
                    "a segment is not canonical base64url",
                )?;
            }
            ok(
                jwk["kty"] == "oct" && jwk["alg"] == "HS256",
                "not an HS256 key",
            )?;
            let secret = URL_SAFE_NO_PAD
                .decode(jwk["k"].as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let signature = URL_SAFE_NO_PAD
                .decode(parts[2])
                .map_err(|e| e.to_string())?;
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
            let input = format!("{}.{}", parts[0], parts[1]);
            ok(
                aws_lc_rs::hmac::verify(&key, input.as_bytes(), &signature).is_ok(),
                "the HMAC does not match: the token really is invalid",
            )
        }
    }
}

/// RFC vectors (file, case id, reason) that expect `valid` but use features this verifier does
/// not support; they must be refused.
const KNOWN_UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "rfc7515-appendix-a.json",
        "rfc7515-A.4",
        "ES512 (P-521) is not supported",
    ),
    (
        "rfc7520-section4-jws.json",
        "rfc7520-4.3",
        "ES512 (P-521) is not supported",
    ),
    (
        "rfc7520-section4-jws.json",
        "rfc7520-4.5",
        "detached payloads are not supported",
    ),
];

/// The vectors directory, or `None` (after saying so) when it is absent outside CI.
fn vectors_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("AUTH_VECTORS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "conformance vectors not found at {} (set AUTH_VECTORS_DIR to override)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}; required on CI");
    eprintln!("SKIPPED: {msg}");
    None
}

fn load(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The trusted key set for one JWK or JWKS; `Err` (with the reason) when it does not load.
fn key_set(jwk: &Value) -> Result<KeySet, String> {
    let text = jwk.to_string();
    if jwk.get("keys").is_some() {
        KeySet::from_jwks(&text).map_err(|e| format!("key set refused: {e}"))
    } else {
        VerifyingKey::from_jwk_json(&text)
            .and_then(|k| KeySet::new(vec![k]))
            .map_err(|e| format!("key refused: {e}"))
    }
}

/// Verifies a compact JWS (any other JSON value is a JSON serialization: refused).
fn verify(jws_value: &Value, keys: &Result<KeySet, String>) -> Result<Vec<u8>, String> {
    let Value::String(token) = jws_value else {
        return Err("JSON serialization (only compact is accepted)".into());
    };
    let keys = keys.as_ref().map_err(Clone::clone)?;
    jws::verify(token, keys)
        .map(|v| v.payload)
        .map_err(|e| format!("{e:?}"))
}

/// A disagreement with a Wycheproof vector.
#[derive(Debug)]
struct Deviation {
    expected: String,
    got: String,
    comment: String,
    jwk: Value,
    token: Value,
}

// ---------------------------------------------------------------------------------------------
// Wycheproof
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct WycheproofRun {
    cases: usize,
    jwe_skipped: usize,
    agree: usize,
    deviations: BTreeMap<u64, Deviation>,
}

fn run_wycheproof(file: &str) -> Option<WycheproofRun> {
    let dir = vectors_dir()?;
    let doc = load(&dir.join("wycheproof").join(file));
    let mut run = WycheproofRun::default();
    for group in doc["testGroups"].as_array().expect("testGroups") {
        let jwk = group
            .get("public")
            .or_else(|| group.get("private"))
            .expect("group has no key");
        let keys = key_set(jwk);
        for test in group["tests"].as_array().expect("tests") {
            let tc_id = test["tcId"].as_u64().expect("tcId");
            let Some(jws_value) = test.get("jws") else {
                assert!(
                    test.get("jwe").is_some(),
                    "tcId {tc_id}: neither jws nor jwe"
                );
                run.jwe_skipped += 1;
                continue;
            };
            run.cases += 1;
            let result = test["result"].as_str().expect("result");
            let outcome = verify(jws_value, &keys);
            let agrees = match result {
                "valid" => outcome.is_ok(),
                "invalid" => outcome.is_err(),
                "acceptable" => true,
                other => panic!("tcId {tc_id}: unknown result {other:?}"),
            };
            if agrees {
                run.agree += 1;
            } else {
                let deviation = Deviation {
                    expected: result.to_owned(),
                    got: match &outcome {
                        Ok(_) => "verified".to_owned(),
                        Err(e) => format!("refused: {e}"),
                    },
                    comment: format!(
                        "group {:?}, test {:?}, flags {}",
                        group["comment"].as_str().unwrap_or_default(),
                        test["comment"].as_str().unwrap_or_default(),
                        test["flags"]
                    ),
                    jwk: jwk.clone(),
                    token: jws_value.clone(),
                };
                run.deviations.insert(tc_id, deviation);
            }
        }
    }
    let total = usize::try_from(doc["numberOfTests"].as_u64().expect("numberOfTests")).unwrap();
    assert_eq!(
        run.cases + run.jwe_skipped,
        total,
        "{file}: every test must be run or skipped as JWE"
    );

    let listed = |list: &[(&str, u64, Why)]| -> BTreeMap<u64, Why> {
        list.iter()
            .filter(|(f, _, _)| *f == file)
            .map(|(_, id, why)| (*id, *why))
            .collect()
    };
    let stricter = listed(KNOWN_STRICTER);
    let defects = listed(VECTOR_DEFECTS);
    let mut problems = Vec::new();
    for (id, d) in &run.deviations {
        let why = stricter.get(id).or_else(|| defects.get(id));
        let Some(why) = why else {
            problems.push(format!(
                "tcId {id}: expected {}, {} ({})",
                d.expected, d.got, d.comment
            ));
            continue;
        };
        let token = d.token.as_str().unwrap_or_default();
        if let Err(e) = confirm(*why, &d.jwk, token, &d.expected) {
            problems.push(format!(
                "tcId {id}: listed as {why:?}, but {e}; expected {}, {} ({})",
                d.expected, d.got, d.comment
            ));
        }
    }
    for (id, why) in stricter.iter().chain(&defects) {
        if !run.deviations.contains_key(id) {
            problems.push(format!(
                "tcId {id}: listed ({}) but agrees with the vector now",
                why.describe()
            ));
        }
    }
    let count = |m: &BTreeMap<u64, Why>| {
        run.deviations
            .keys()
            .filter(|id| m.contains_key(id))
            .count()
    };
    let jwe = if run.jwe_skipped > 0 {
        format!(", {} JWE skipped", run.jwe_skipped)
    } else {
        String::new()
    };
    let defect_note = if defects.is_empty() {
        String::new()
    } else {
        format!(", {} vector defects", count(&defects))
    };
    println!(
        "wycheproof {file}: {} cases, {} agree, {} known stricter{defect_note}{jwe}",
        run.cases,
        run.agree,
        count(&stricter),
    );
    for (id, why) in stricter.iter().chain(&defects) {
        if run.deviations.contains_key(id) {
            println!("  tcId {id}: {}", why.describe());
        }
    }
    assert!(
        problems.is_empty(),
        "{file}: deviations differ from KNOWN_STRICTER/VECTOR_DEFECTS:\n  {}",
        problems.join("\n  ")
    );
    Some(run)
}

#[test]
fn wycheproof_json_web_signature() {
    let Some(run) = run_wycheproof("json_web_signature_test.json") else {
        return;
    };
    assert_eq!(run.cases, 401);
}

#[test]
fn wycheproof_json_web_key() {
    let Some(run) = run_wycheproof("json_web_key_test.json") else {
        return;
    };
    assert_eq!(run.cases, 26);
}

#[test]
fn wycheproof_json_web_crypto_jws() {
    let Some(run) = run_wycheproof("json_web_crypto_test.json") else {
        return;
    };
    assert_eq!((run.cases, run.jwe_skipped), (49, 34));
}

/// Wycheproof `json_web_key_test.json` tcId 4 (duplicate `kid`) is refused before the
/// duplicate-kid rule is reached: the second key's `k` is not canonical base64url (non-zero
/// trailing bits). With that `k` made canonical, the set loads and the token must be refused as
/// ambiguous, which is what the vector is about.
#[test]
fn wycheproof_duplicate_kid_with_canonical_key_is_ambiguous() {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let Some(dir) = vectors_dir() else { return };
    let doc = load(&dir.join("wycheproof/json_web_key_test.json"));
    let group = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tests"][0]["tcId"] == 4)
        .expect("tcId 4");
    assert_eq!(group["tests"][0]["comment"], "rejectsDuplicateKid");
    let mut jwks = group["private"].clone();
    let lenient = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let keys = jwks["keys"].as_array_mut().unwrap();
    assert_eq!(keys[0]["kid"], keys[1]["kid"], "the two keys share a kid");
    let k = keys[1]["k"].as_str().unwrap().to_owned();
    assert!(URL_SAFE_NO_PAD.decode(&k).is_err(), "k is not canonical");
    keys[1]["k"] = Value::String(URL_SAFE_NO_PAD.encode(lenient.decode(&k).unwrap()));
    let set = key_set(&jwks).expect("canonical keys load");
    let token = group["tests"][0]["jws"].as_str().unwrap();
    assert_eq!(
        jws::verify(token, &set).unwrap_err(),
        auth_core::TokenError::AmbiguousKey
    );
}

// ---------------------------------------------------------------------------------------------
// RFC examples
// ---------------------------------------------------------------------------------------------

/// The verification key of an RFC case, if it names one.
fn rfc_case_key<'a>(doc: &'a Value, case: &'a Value) -> Option<&'a Value> {
    if let Some(name) = case.get("verification_key").and_then(Value::as_str) {
        return Some(
            doc["keys"]
                .get(name)
                .unwrap_or_else(|| panic!("no key {name:?}")),
        );
    }
    case.get("jwk_public").or_else(|| case.get("jwk"))
}

fn run_rfc(file: &str) {
    let Some(dir) = vectors_dir() else { return };
    let doc = load(&dir.join("rfc").join(file));
    let cases: Vec<&Value> = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c.get("jws_compact").is_some())
        .collect();
    assert!(!cases.is_empty(), "{file}: no JWS case");
    // Every key of the file, for the cases that name none (`alg: none`): those must be refused
    // whatever key is trusted, so that the refusal is not merely "no key".
    let all_keys: Vec<(&str, &Value)> = cases
        .iter()
        .filter_map(|c| {
            let jwk = rfc_case_key(&doc, c)?;
            key_set(jwk).is_ok().then_some((c["id"].as_str()?, jwk))
        })
        .collect();
    assert!(!all_keys.is_empty(), "{file}: no usable key");

    let known: BTreeMap<&str, &str> = KNOWN_UNSUPPORTED
        .iter()
        .filter(|(f, _, _)| *f == file)
        .map(|(_, id, why)| (*id, *why))
        .collect();
    let (mut agree, mut unsupported, mut derived) = (0, 0, 0);
    let mut problems = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().expect("id");
        let expected = case["expected"].as_str().expect("expected");
        let token = &case["jws_compact"];
        let outcome = match rfc_case_key(&doc, case) {
            Some(jwk) => verify(token, &key_set(jwk)),
            None => {
                let accepted: Vec<&str> = all_keys
                    .iter()
                    .filter(|(_, jwk)| verify(token, &key_set(jwk)).is_ok())
                    .map(|(key_of, _)| *key_of)
                    .collect();
                if accepted.is_empty() {
                    verify(token, &key_set(all_keys[0].1))
                } else {
                    Ok(format!("accepted with the key of {accepted:?}").into_bytes())
                }
            }
        };
        let agrees = match expected {
            "valid" => outcome.is_ok(),
            "invalid" | "reject" => outcome.is_err(),
            other => panic!("{id}: unknown expected {other:?}"),
        };
        if let (true, Ok(payload)) = (agrees, &outcome) {
            // The payload handed back must be the one signed.
            let b64 = case["payload_b64"].as_str().expect("payload_b64");
            assert_eq!(
                *payload,
                URL_SAFE_NO_PAD.decode(b64).unwrap(),
                "{id}: payload"
            );
        }
        match (agrees, known.get(id)) {
            (true, None) => agree += 1,
            (false, Some(_)) if expected == "valid" => unsupported += 1,
            (true, Some(why)) => problems.push(format!(
                "{id}: listed as unsupported ({why}) but now agrees with the vector"
            )),
            (false, _) => problems.push(format!(
                "{id}: expected {expected}, got {}",
                match &outcome {
                    Ok(_) => "verified".to_owned(),
                    Err(e) => format!("refused: {e}"),
                }
            )),
        }
        if case.get("detached").and_then(Value::as_bool) == Some(true) {
            // The detached form is refused; with its payload put back in, it must verify, which
            // shows the refusal is about the form and not the key or signature.
            let compact = token.as_str().expect("compact");
            let (head, sig) = compact.split_once("..").expect("detached form");
            let attached = format!(
                "{head}.{}.{sig}",
                case["detached_payload_b64"].as_str().expect("payload")
            );
            let jwk = rfc_case_key(&doc, case).expect("key");
            assert!(
                verify(&Value::String(attached), &key_set(jwk)).is_ok(),
                "{id}: payload re-attached must verify"
            );
            derived += 1;
        }
    }
    for (id, why) in &known {
        if !cases.iter().any(|c| c["id"] == *id) {
            problems.push(format!(
                "{id}: listed as unsupported ({why}) but not in the file"
            ));
        }
    }
    let extra = if derived > 0 {
        format!(", {derived} derived (detached payload re-attached) verified")
    } else {
        String::new()
    };
    println!(
        "rfc {file}: {} cases, {agree} agree, {unsupported} known unsupported (refused){extra}",
        cases.len()
    );
    assert!(
        problems.is_empty(),
        "{file}: deviations differ from KNOWN_UNSUPPORTED:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn rfc7515_appendix_a() {
    run_rfc("rfc7515-appendix-a.json");
}

#[test]
fn rfc7520_section4_jws() {
    run_rfc("rfc7520-section4-jws.json");
}

#[test]
fn rfc8037_appendix_a_ed25519() {
    run_rfc("rfc8037-appendix-a-ed25519.json");
}

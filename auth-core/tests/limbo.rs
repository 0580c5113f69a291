//! x509-limbo path-validation testcases (`shared/vectors/x509-limbo/limbo-client-subset.json`)
//! run through [`TrustStore`]: each case's `trusted_certs` become the store, its `crls` are
//! added, and `peer_certificate` with `untrusted_intermediates` is validated at
//! `validation_time` (`null`: now).
//!
//! - `CLIENT` cases (mutual-TLS client certificates, `clientAuth`) run through
//!   [`TrustStore::verify_client`].
//! - `SERVER` cases are generic path-validation cases (validity, EKU, name constraints, path
//!   length, basic constraints, AKI/SKI, critical extensions, CRLs, pathological chains); they
//!   run through [`TrustStore::verify_for`] with [`Usage::ServerAuth`], the usage their
//!   `extended_key_usage` and leaf certificates are written for. `expected_peer_name` is not
//!   checked: a client certificate is not matched against a host name (no case here depends on
//!   it: each one whose chain validates is decided by its chain).
//! - `key_usage` requirements of a case are checked on the leaf in this harness (the store has
//!   no key-usage option); the cases of feature `max-chain-depth` are not applicable (the store
//!   has no configurable depth; `rustls-webpki` has a fixed limit of 6 intermediates).
//!
//! Every disagreement with limbo must be listed in [`DEVIATIONS`] with its reason, and every
//! listed one must still occur: the set is compared exactly, so a new deviation, or one that
//! disappears, fails the test. Each case also has a time limit (the pathological chains are
//! built to make naive path builders take exponential time).
//!
//! The vectors live outside the workspace (`../../shared/vectors` from this crate, or the
//! directory named by `AUTH_VECTORS_DIR`). When they are absent the test is skipped with a
//! message, except on CI (`CI` set), where that is a failure.

#![cfg(feature = "mtls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use auth_core::mtls::trust::{CertError, TrustStore, Usage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why `TrustStore` disagrees with a limbo testcase, and how: accepting a chain limbo expects
/// to fail (`refused_with: None`), or refusing one limbo expects to pass, with an error whose
/// `Debug` text starts with `refused_with`. The direction and error are checked, so an entry
/// cannot hide a different disagreement.
#[derive(Debug, Clone, Copy)]
struct Why {
    refused_with: Option<&'static str>,
    text: &'static str,
}

const fn lenient(text: &'static str) -> Why {
    Why {
        refused_with: None,
        text,
    }
}

const fn stricter(refused_with: &'static str, text: &'static str) -> Why {
    Why {
        refused_with: Some(refused_with),
        text,
    }
}

const ANCHOR: Why = lenient(
    "a trust anchor counts only by its subject, key and name constraints (RFC 5280 6.1.1, \
     as in rustls-webpki): the rest of the root certificate is not checked",
);
const NO_KEY_IDS: Why =
    lenient("rustls-webpki builds paths by name and signature: AKI/SKI are not required");
const CA_LEAF: Why = stricter(
    "Other(\"a CA certificate was presented as the leaf\")",
    "rustls-webpki refuses a cA=TRUE certificate as the leaf, as limbo's own \
     webpki::ca-as-leaf expects",
);
// webpki reports the most specific error among the paths it tried: any refusal.
const SELF_ISSUED: Why = stricter(
    "",
    "rustls-webpki applies path length and name constraints to self-issued intermediates \
     too (RFC 5280 exempts them)",
);
const NC_FORMS: Why = stricter(
    "NameConstraints",
    "rustls-webpki does not evaluate rfc822Name/directoryName constraints and refuses such \
     chains (fails closed, as RFC 5280 4.2.1.10 allows)",
);
const EE_HYGIENE: Why = lenient(
    "rustls-webpki does not police this leaf field (name constraints, key usage, SAN syntax \
     or criticality, AIA, serial number) when no host name is matched",
);
const NC_SYNTAX: Why = lenient("rustls-webpki accepts this name-constraint encoding");
const NC_NONCRITICAL: Why = lenient(
    "conflicts with webpki::nc::permitted-dns-match-noncritical: non-critical name \
     constraints are honoured (CA/Browser Forum)",
);
const POLICIES: Why = lenient(
    "certificate policies and policy constraints are not processed (limbo feature \
     has-policy-constraints)",
);
const CABF_EKU: Why = lenient(
    "a CA/Browser Forum EKU rule (limbo feature pedantic-webpki-eku) that RFC 5280 does not \
     make",
);
const CABF_KEY: Why = lenient(
    "a CA/Browser Forum rule (RSA modulus a multiple of 8): the 2052-bit key is within the \
     2048-8192 bits accepted",
);
const NC_DOS: Why = lenient(
    "rustls-webpki finishes within its budgets and accepts the technically valid chain; \
     limbo expects the quadratic-blowup refusal of other verifiers",
);

/// Testcases where `TrustStore` (that is, `rustls-webpki` plus the checks the store adds) and
/// limbo's expected result differ, each with the reason.
const DEVIATIONS: &[(&str, Why)] = &[
    ("pathlen::self-issued-certs-pathlen", SELF_ISSUED),
    ("pathlen::validation-ignores-pathlen-in-leaf", CA_LEAF),
    ("pathological::nc-dos-3", NC_DOS),
    ("rfc5280::aki::critical-aki", ANCHOR),
    ("rfc5280::aki::cross-signed-root-missing-aki", ANCHOR),
    ("rfc5280::aki::intermediate-missing-aki", NO_KEY_IDS),
    ("rfc5280::aki::leaf-missing-aki", NO_KEY_IDS),
    ("rfc5280::ca-as-leaf", CA_LEAF),
    ("rfc5280::ca-empty-subject", ANCHOR),
    ("rfc5280::leaf-ku-keycertsign", EE_HYGIENE),
    ("rfc5280::nc::invalid-dnsname-leading-period", NC_SYNTAX),
    ("rfc5280::nc::nc-permits-email-domain", NC_FORMS),
    ("rfc5280::nc::nc-permits-email-exact", NC_FORMS),
    (
        "rfc5280::nc::nc-permits-email-literal-asterisk-exact-match",
        NC_FORMS,
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-double-asterisk",
        NC_FORMS,
    ),
    (
        "rfc5280::nc::nc-permits-email-literal-mid-asterisk",
        NC_FORMS,
    ),
    ("rfc5280::nc::not-allowed-in-ee-critical", EE_HYGIENE),
    ("rfc5280::nc::not-allowed-in-ee-noncritical", EE_HYGIENE),
    ("rfc5280::nc::permitted-dn-match", NC_FORMS),
    (
        "rfc5280::nc::permitted-dns-match-noncritical",
        NC_NONCRITICAL,
    ),
    ("rfc5280::nc::permitted-self-issued", SELF_ISSUED),
    ("rfc5280::pc::ica-noncritical-pc", POLICIES),
    ("rfc5280::root-inconsistent-ca-extensions", ANCHOR),
    ("rfc5280::root-missing-basic-constraints", ANCHOR),
    ("rfc5280::root-non-critical-basic-constraints", ANCHOR),
    ("rfc5280::san::ip-in-dns", EE_HYGIENE),
    ("rfc5280::san::noncritical-with-empty-subject", EE_HYGIENE),
    ("rfc5280::san::underscore-dns", EE_HYGIENE),
    ("rfc5280::serial::too-long", EE_HYGIENE),
    ("rfc5280::serial::zero", EE_HYGIENE),
    ("rfc5280::ski::critical-ski", ANCHOR),
    ("rfc5280::ski::intermediate-missing-ski", NO_KEY_IDS),
    ("rfc5280::ski::root-missing-ski", ANCHOR),
    ("rfc5280::unknown-critical-extension-root", ANCHOR),
    ("rfc5280::validity::expired-root", ANCHOR),
    ("webpki::aki::root-with-aki-all-fields", ANCHOR),
    ("webpki::aki::root-with-aki-authoritycertissuer", ANCHOR),
    (
        "webpki::aki::root-with-aki-authoritycertserialnumber",
        ANCHOR,
    ),
    ("webpki::aki::root-with-aki-missing-keyidentifier", ANCHOR),
    ("webpki::aki::root-with-aki-ski-mismatch", ANCHOR),
    ("webpki::eku::ee-anyeku", CABF_EKU),
    ("webpki::eku::ee-critical-eku", CABF_EKU),
    ("webpki::eku::ee-without-eku", CABF_EKU),
    ("webpki::eku::root-has-eku", ANCHOR),
    (
        "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
        CABF_KEY,
    ),
    ("webpki::forbidden-rsa-not-divisible-by-8-in-root", ANCHOR),
    ("webpki::malformed-aia", EE_HYGIENE),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-empty-sequences",
        NC_SYNTAX,
    ),
    (
        "webpki::nc::intermediate-permitted-excluded-subtrees-both-null",
        NC_SYNTAX,
    ),
];

/// The longest one testcase may take.
const TIME_LIMIT: Duration = Duration::from_secs(5);

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

/// Seconds since the epoch of an RFC 3339 time (`2024-03-01T00:00:00.999+00:00`); fractions
/// of a second are dropped (certificate times have whole seconds).
fn parse_time(s: &str) -> UnixTime {
    let num = |r: std::ops::Range<usize>| -> i64 {
        s.get(r.clone())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{s:?}: bad field at {r:?}"))
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    let rest = &s[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "Z" | "+00:00" | "-00:00" => 0,
        other => {
            let sign = if other.starts_with('-') { -1 } else { 1 };
            let hours: i64 = other[1..3].parse().unwrap();
            let minutes: i64 = other[4..6].parse().unwrap();
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(secs).unwrap()))
}

fn pems(value: &Value) -> Vec<CertificateDer<'static>> {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_str().unwrap().as_bytes()).unwrap())
        .collect()
}

/// What happened to one testcase.
#[derive(Debug)]
enum Outcome {
    /// Run; `Ok` or the refusal.
    Ran(Result<(), String>),
    /// Not applicable, with the reason.
    NotApplicable(&'static str),
}

/// Whether the leaf has every key usage bit the case requires.
fn has_key_usages(leaf: &CertificateDer<'_>, required: &[Value]) -> Result<(), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    if required.is_empty() {
        return Ok(());
    }
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
    let ku = cert
        .key_usage()
        .map_err(|e| e.to_string())?
        .ok_or("the leaf has no key usage extension")?
        .value;
    for usage in required {
        let ok = match usage.as_str().unwrap() {
            "digitalSignature" => ku.digital_signature(),
            "contentCommitment" => ku.non_repudiation(),
            "keyEncipherment" => ku.key_encipherment(),
            "dataEncipherment" => ku.data_encipherment(),
            "keyAgreement" => ku.key_agreement(),
            "keyCertSign" => ku.key_cert_sign(),
            "cRLSign" => ku.crl_sign(),
            "encipherOnly" => ku.encipher_only(),
            "decipherOnly" => ku.decipher_only(),
            other => panic!("unknown key usage {other:?}"),
        };
        if !ok {
            return Err(format!("the leaf lacks key usage {usage}"));
        }
    }
    Ok(())
}

fn run_case(case: &Value) -> Outcome {
    let features: Vec<&str> = case["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    if features.contains(&"max-chain-depth") {
        return Outcome::NotApplicable("max-chain-depth: no configurable chain depth");
    }
    assert!(
        case["signature_algorithms"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{}: signature_algorithms are not handled",
        case["id"]
    );
    let usage = match case["validation_kind"].as_str().unwrap() {
        "CLIENT" => Usage::ClientAuth,
        "SERVER" => Usage::ServerAuth,
        other => panic!("unknown validation_kind {other:?}"),
    };
    for eku in case["extended_key_usage"].as_array().unwrap() {
        let expected = match usage {
            Usage::ClientAuth => "clientAuth",
            _ => "serverAuth",
        };
        assert_eq!(eku, expected, "{}: EKU not handled", case["id"]);
    }
    let store = match TrustStore::from_pem(
        case["trusted_certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect::<String>()
            .as_bytes(),
    ) {
        Ok(s) => s,
        Err(e) => return Outcome::Ran(Err(format!("trust store refused: {e}"))),
    };
    let mut store = store;
    for crl in case["crls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        store = match store.with_crls(crl.as_str().unwrap().as_bytes()) {
            Ok(s) => s,
            Err(e) => return Outcome::Ran(Err(format!("CRL refused: {e}"))),
        };
    }
    let leaf =
        CertificateDer::from_pem_slice(case["peer_certificate"].as_str().unwrap().as_bytes())
            .unwrap();
    let intermediates = pems(&case["untrusted_intermediates"]);
    let now = case["validation_time"]
        .as_str()
        .map_or_else(UnixTime::now, parse_time);
    let result = store
        .verify_for(usage, &leaf, &intermediates, now)
        .map_err(|e: CertError| format!("{e:?}"))
        .and_then(|()| has_key_usages(&leaf, case["key_usage"].as_array().unwrap()));
    Outcome::Ran(result)
}

#[test]
fn limbo_client_subset() {
    let Some(dir) = vectors_dir() else { return };
    let path = dir.join("x509-limbo/limbo-client-subset.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = doc["testcases"].as_array().unwrap();

    let mut passed = 0;
    let mut deviations: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    let mut not_applicable: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut slow = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap().to_owned();
        let start = Instant::now();
        let outcome = run_case(case);
        let took = start.elapsed();
        if took > TIME_LIMIT {
            slow.push(format!("{id}: {took:?}"));
        }
        let expected_ok = match case["expected_result"].as_str().unwrap() {
            "SUCCESS" => true,
            "FAILURE" => false,
            other => panic!("{id}: unknown expected_result {other:?}"),
        };
        match outcome {
            Outcome::NotApplicable(why) => not_applicable.entry(why).or_default().push(id),
            Outcome::Ran(result) if result.is_ok() == expected_ok => passed += 1,
            Outcome::Ran(result) => {
                deviations.insert(id, result);
            }
        }
    }

    let listed: BTreeMap<&str, Why> = DEVIATIONS.iter().copied().collect();
    assert_eq!(
        listed.len(),
        DEVIATIONS.len(),
        "DEVIATIONS lists an id twice"
    );
    let describe = |result: &Result<(), String>| match result {
        Ok(()) => "accepted".to_owned(),
        Err(e) => format!("refused: {e}"),
    };
    let mut problems = Vec::new();
    for (id, result) in &deviations {
        let Some(why) = listed.get(id.as_str()) else {
            problems.push(format!(
                "{id}: {} (not listed in DEVIATIONS)",
                describe(result)
            ));
            continue;
        };
        let as_listed = match (result, why.refused_with) {
            (Ok(()), None) => true,
            (Err(e), Some(prefix)) => e.starts_with(prefix),
            _ => false,
        };
        if !as_listed {
            problems.push(format!(
                "{id}: {}, but listed as {:?}",
                describe(result),
                why.refused_with
                    .map_or("accepted".to_owned(), |p| format!("refused: {p}..."))
            ));
        }
    }
    for (id, why) in &listed {
        if !deviations.contains_key(*id) {
            problems.push(format!(
                "{id}: listed ({}) but agrees with limbo now, or was not run",
                why.text
            ));
        }
    }
    let skipped: usize = not_applicable.values().map(Vec::len).sum();
    let run = cases.len() - skipped;
    let why_skipped: Vec<String> = not_applicable
        .iter()
        .map(|(why, ids)| format!("{} {why}", ids.len()))
        .collect();
    let accepted = deviations.values().filter(|r| r.is_ok()).count();
    let client_ids: Vec<&str> = cases
        .iter()
        .filter(|c| c["validation_kind"] == "CLIENT")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let client_deviations = client_ids
        .iter()
        .filter(|id| deviations.contains_key(**id))
        .count();
    println!(
        "x509-limbo client subset: {} testcases, {run} run, {passed} passed, {} listed deviations \
         ({accepted} accepted where limbo expects failure, {} refused where it expects success), \
         {skipped} skipped as not applicable ({}); CLIENT kind: {} run, {} passed",
        cases.len(),
        deviations.len(),
        deviations.len() - accepted,
        why_skipped.join("; "),
        client_ids.len(),
        client_ids.len() - client_deviations,
    );
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, why) in &listed {
        by_reason.entry(why.text).or_default().push(id);
    }
    for (text, ids) in &by_reason {
        println!(
            "  deviation ({} cases): {text}: {}",
            ids.len(),
            ids.join(", ")
        );
    }
    for (why, ids) in &not_applicable {
        println!("  not applicable ({why}): {}", ids.join(", "));
    }
    assert!(slow.is_empty(), "testcases over {TIME_LIMIT:?}: {slow:?}");
    assert!(
        problems.is_empty(),
        "deviations differ from DEVIATIONS:\n  {}",
        problems.join("\n  ")
    );
    assert_eq!(run, passed + deviations.len());
}

#[test]
fn rfc3339_times() {
    assert_eq!(parse_time("1970-01-01T00:00:00Z").as_secs(), 0);
    assert_eq!(
        parse_time("2024-03-01T00:00:00+00:00").as_secs(),
        1_709_251_200
    );
    assert_eq!(
        parse_time("2024-03-01T00:00:00.999+00:00").as_secs(),
        1_709_251_200
    );
    assert_eq!(
        parse_time("2024-03-01T01:00:00+01:00").as_secs(),
        1_709_251_200
    );
}

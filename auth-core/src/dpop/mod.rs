//! DPoP (RFC 9449): proofs of possession of a client key, sent in the `DPoP` header, and
//! access tokens bound to that key (`cnf.jkt`).
//!
//! [`DpopVerifier::verify`] checks one proof for one request, as RFC 9449 section 4.3 asks:
//! a single compact JWS whose header passes the RFC 8725 rules of [`crate::jws`], with `typ`
//! `dpop+jwt`, an allowed asymmetric `alg`, and a public `jwk` (no private member, never a
//! symmetric key) that verifies the signature; claims `jti`, `htm` (exactly the request method),
//! `htu` (the request URL, compared after RFC 3986 normalisation, without query and fragment),
//! `iat` within the configured window, `ath` (the access token's hash) whenever a token is
//! presented, and a fresh server `nonce` when nonces are enabled. Each proof is accepted once:
//! its `jti` (with the key's thumbprint) is remembered in a bounded replay cache for as long as
//! the proof would be accepted, and only after its signature verified.
//!
//! [`check_binding`] then ties the proof to the token: the `DPoP` scheme needs a proof and a
//! token bound to the proof's key; a bound token is refused with the `Bearer` scheme.
//! [`DpopVerifier::verify_bound`] does both at once for a token already known to be bound, and
//! checks the key before the proof is recorded. [`challenge`] renders the
//! `WWW-Authenticate: DPoP` challenge of a refusal (with the RFC 9449 codes
//! `invalid_dpop_proof` and `use_dpop_nonce`), [`DpopVerifier::issue_nonce`] the `DPoP-Nonce`
//! header value that goes with `use_dpop_nonce`, and [`DpopVerifier::challenge_headers`] both.
//!
//! The replay cache is bounded; when it is full of proofs still inside their window it forgets
//! the oldest and from then on refuses proofs as old as those
//! ([`DpopError::ReplayUndecidable`]) until they would be too old anyway: under a flood it may
//! refuse, it never accepts a replay. Verify the access token first, so that only callers with a
//! valid token can reach the cache.
//!
//! With feature `issuer`, [`DpopKey`] is the client side: a key pair that makes proofs.
//!
//! ```
//! use auth_core::dpop::{self, DpopError, DpopVerifier};
//! use auth_core::keys::AlgorithmSet;
//! use auth_core::{AuthError, Algorithm};
//!
//! let verifier = DpopVerifier::builder().build().unwrap();
//! // A proof that is not a JWS is refused; the refusal maps to a 401 with a DPoP challenge.
//! let err = verifier
//!     .verify("not-a-proof", "GET", "https://api.example/orders", None)
//!     .unwrap_err();
//! assert_eq!(err, DpopError::Malformed("not a compact JWS"));
//! let err = AuthError::from(err);
//! assert_eq!(err.http_status(), 401);
//! assert_eq!(
//!     dpop::challenge(&err, "api", AlgorithmSet::of(&[Algorithm::ES256])).unwrap(),
//!     r#"DPoP realm="api", error="invalid_dpop_proof", error_description="the DPoP proof is invalid", algs="ES256""#
//! );
//! ```

#[cfg(feature = "issuer")]
mod client;
mod htu;
mod nonce;
mod replay;
mod verifier;

#[cfg(feature = "issuer")]
pub use client::DpopKey;
pub use nonce::NonceConfig;
pub use verifier::{DpopVerifier, DpopVerifierBuilder, VerifiedProof};

use crate::error::{AuthError, ErrorKind, TokenError};
use crate::keys::{AlgorithmSet, algorithm_name};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Why a DPoP proof, or the binding of a token to it, was refused.
///
/// The messages are safe to show to a caller: they never contain the proof, the token or key
/// material. Every variant maps into [`AuthError::InvalidToken`] (through [`TokenError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The `DPoP` scheme was used without a proof.
    #[error("no DPoP proof was presented")]
    Missing,
    /// The proof is larger than the configured limit.
    #[error("the DPoP proof is too large")]
    TooLarge,
    /// Not one compact JWS, bad base64url, or header or claims not a JSON object.
    #[error("the DPoP proof is malformed ({0})")]
    Malformed(&'static str),
    /// A JSON object in the header or claims names the same member twice.
    #[error("the DPoP proof has a duplicate JSON member")]
    DuplicateMember,
    /// The header names a `crit` extension (or `b64`), which this verifier does not understand.
    #[error("the DPoP proof has an unsupported critical header")]
    UnsupportedCritical,
    /// `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's `typ` is not `dpop+jwt`")]
    InvalidType,
    /// `alg` is missing, `none`, or not a JWS algorithm this suite knows.
    #[error("the DPoP proof's algorithm is not supported")]
    UnsupportedAlgorithm,
    /// `alg` is symmetric or not in the verifier's allow-list.
    #[error("the DPoP proof's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The header's `jwk` is missing, holds private or symmetric key material, is not an
    /// acceptable key, or does not fit `alg`.
    #[error("the DPoP proof's key is not acceptable ({0})")]
    InvalidKey(&'static str),
    /// The signature does not verify with the header's `jwk`.
    #[error("the DPoP proof's signature is invalid")]
    BadSignature,
    /// A required claim is missing.
    #[error("the DPoP proof lacks the `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or shape.
    #[error("the DPoP proof's `{0}` claim is invalid")]
    InvalidClaim(&'static str),
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for another HTTP method")]
    MethodMismatch,
    /// `htu` is not the request's URL.
    #[error("the DPoP proof is for another URL")]
    UrlMismatch,
    /// The request URL given to the verifier is not an absolute `http` or `https` URL (a server
    /// bug, not the caller's).
    #[error("the request URL cannot be compared with the DPoP proof")]
    InvalidRequestUrl,
    /// `iat` is older than the verifier's maximum age.
    #[error("the DPoP proof is too old")]
    TooOld,
    /// `iat` is further in the future than the verifier's leeway.
    #[error("the DPoP proof was issued in the future")]
    IssuedInFuture,
    /// An access token was presented and `ath` is missing or is not its hash.
    #[error("the DPoP proof is not for this access token")]
    AccessTokenMismatch,
    /// The proof was already used.
    #[error("the DPoP proof was already used")]
    Replayed,
    /// The replay cache is full of fresher proofs and had to forget this one's time slot, so the
    /// proof cannot be proven unused: refused (a fresh proof is accepted).
    #[error("the DPoP proof cannot be checked for replay; send a fresh one")]
    ReplayUndecidable,
    /// Nonces are enabled and the proof has none.
    #[error("a DPoP nonce is required")]
    NonceRequired,
    /// The proof's nonce was not issued by this server or has expired.
    #[error("the DPoP nonce is invalid or expired")]
    NonceInvalid,
    /// The token is bound to another key than the proof's.
    #[error("the access token is bound to another DPoP key")]
    BindingMismatch,
    /// The `DPoP` scheme was used with a token that is not DPoP-bound.
    #[error("the access token is not DPoP-bound")]
    TokenNotBound,
    /// A DPoP-bound token was sent with the `Bearer` scheme.
    #[error("a DPoP-bound access token must be sent with the DPoP scheme")]
    BoundTokenAsBearer,
}

impl DpopError {
    /// A short machine-readable name of the failed check, for logs and audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::DuplicateMember => "duplicate_member",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::InvalidType => "invalid_type",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::InvalidKey(_) => "invalid_key",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::MethodMismatch => "htm_mismatch",
            Self::UrlMismatch => "htu_mismatch",
            Self::InvalidRequestUrl => "invalid_request_url",
            Self::TooOld => "too_old",
            Self::IssuedInFuture => "issued_in_future",
            Self::AccessTokenMismatch => "ath_mismatch",
            Self::Replayed => "replayed",
            Self::ReplayUndecidable => "replay_undecidable",
            Self::NonceRequired => "nonce_required",
            Self::NonceInvalid => "nonce_invalid",
            Self::BindingMismatch => "binding_mismatch",
            Self::TokenNotBound => "token_not_bound",
            Self::BoundTokenAsBearer => "bound_token_as_bearer",
        }
    }

    /// The detail kept in [`TokenError::DpopProofInvalid`]: the parsing step, key problem or
    /// claim name where the variant has one, else [`DpopError::reason`].
    pub fn detail(&self) -> &'static str {
        match self {
            Self::Malformed(d)
            | Self::InvalidKey(d)
            | Self::MissingClaim(d)
            | Self::InvalidClaim(d) => d,
            other => other.reason(),
        }
    }
}

impl From<DpopError> for TokenError {
    fn from(e: DpopError) -> Self {
        match e {
            DpopError::NonceRequired | DpopError::NonceInvalid => Self::DpopNonceRequired,
            DpopError::BindingMismatch | DpopError::TokenNotBound => Self::DpopBindingMismatch,
            DpopError::BoundTokenAsBearer => Self::DpopRequired,
            other => Self::DpopProofInvalid(other.detail()),
        }
    }
}

impl From<DpopError> for AuthError {
    fn from(e: DpopError) -> Self {
        Self::InvalidToken(e.into())
    }
}

/// The SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: the SHA-256 of the JSON object of its
/// required members only (`EC`: `crv`, `kty`, `x`, `y`; `RSA`: `e`, `kty`, `n`; `OKP`: `crv`,
/// `kty`, `x`), in lexicographic order, without whitespace. This is the `jkt` of RFC 9449.
///
/// ```
/// let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
///     "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
///     "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"});
/// let jkt = auth_core::dpop::jwk_thumbprint(jwk.as_object().unwrap()).unwrap();
/// assert_eq!(auth_core::dpop::encode_jkt(&jkt), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
/// ```
///
/// # Errors
///
/// [`DpopError::InvalidKey`] when `kty` is missing or not `EC`, `RSA` or `OKP` (symmetric keys
/// are refused: their thumbprint would be a hash of a secret), or a required member is missing
/// or not a string.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Result<[u8; 32], DpopError> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(DpopError::InvalidKey("`kty` is missing"))?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err(DpopError::InvalidKey("unsupported `kty`")),
    };
    let mut canonical = String::with_capacity(160);
    canonical.push('{');
    for (i, name) in members.iter().enumerate() {
        let value = jwk
            .get(*name)
            .and_then(Value::as_str)
            .ok_or(DpopError::InvalidKey("a required JWK member is missing"))?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        // `Value`'s `Display` is the compact JSON text, with the escapes JSON requires.
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Ok(sha256(canonical.as_bytes()))
}

/// A `jkt` as sent in `cnf.jkt`: base64url without padding.
pub fn encode_jkt(jkt: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(jkt)
}

/// Decodes a `cnf.jkt` value: base64url without padding, exactly 32 bytes.
pub fn decode_jkt(text: &str) -> Option<[u8; 32]> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// The `ath` of an access token (RFC 9449 4.2): base64url of the SHA-256 of its ASCII text.
///
/// ```
/// assert_eq!(
///     auth_core::dpop::access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
///     "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
/// );
/// ```
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes()))
}

/// Ties a request's token to its DPoP proof (RFC 9449 7.1, 7.2), given the token's `cnf.jkt`
/// ([`crate::Principal::dpop_binding`]), the verified proof (if the request had one) and
/// whether the `Authorization` scheme was `DPoP`:
///
/// - with the `DPoP` scheme, a proof is required and the token must be bound to the proof's key
///   (the thumbprints are compared in constant time);
/// - with the `Bearer` scheme, a DPoP-bound token is refused (it would otherwise be usable by
///   anyone who stole it), and a token without `cnf.jkt` needs no proof.
///
/// ```
/// use auth_core::dpop::{DpopError, check_binding};
///
/// assert_eq!(check_binding(None, None, false), Ok(()));
/// assert_eq!(check_binding(Some(&[7; 32]), None, false), Err(DpopError::BoundTokenAsBearer));
/// assert_eq!(check_binding(Some(&[7; 32]), None, true), Err(DpopError::Missing));
/// ```
///
/// # Errors
///
/// [`DpopError::Missing`], [`DpopError::TokenNotBound`], [`DpopError::BindingMismatch`] or
/// [`DpopError::BoundTokenAsBearer`].
pub fn check_binding(
    principal_jkt: Option<&[u8; 32]>,
    proof: Option<&VerifiedProof>,
    scheme_is_dpop: bool,
) -> Result<(), DpopError> {
    if !scheme_is_dpop {
        return match principal_jkt {
            Some(_) => Err(DpopError::BoundTokenAsBearer),
            None => Ok(()),
        };
    }
    let proof = proof.ok_or(DpopError::Missing)?;
    let expected = principal_jkt.ok_or(DpopError::TokenNotBound)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(expected, &proof.jkt)
        .map_err(|_| DpopError::BindingMismatch)
}

/// The error code of a DPoP challenge for `err` (RFC 9449 7.1, 9): `invalid_dpop_proof` for a
/// bad or missing proof, `use_dpop_nonce` when a fresh nonce is required, otherwise the RFC 6750
/// code of [`AuthError::rfc6750_code`] (`invalid_token` for a binding mismatch, as in the
/// RFC's example).
pub fn error_code(err: &AuthError) -> Option<&'static str> {
    match err {
        AuthError::InvalidToken(TokenError::DpopProofInvalid(_)) => Some("invalid_dpop_proof"),
        AuthError::InvalidToken(TokenError::DpopNonceRequired) => Some("use_dpop_nonce"),
        other => other.rfc6750_code(),
    }
}

/// The `WWW-Authenticate` value of a `DPoP` challenge for `err` (RFC 9449 7.1): `realm` (left
/// out when empty), the error code of [`error_code`] with a safe `error_description`, `scope`
/// for an insufficient scope, and `algs`, the space-separated proof algorithms the server
/// accepts (left out when `algs` is empty). `None` where the outcome table sends no challenge
/// (429, 503, 500). A nonce refusal also needs the `DPoP-Nonce` header: see
/// [`DpopVerifier::issue_nonce`].
///
/// ```
/// use auth_core::dpop;
/// use auth_core::keys::AlgorithmSet;
/// use auth_core::{AuthError, Algorithm, TokenError};
///
/// let algs = AlgorithmSet::of(&[Algorithm::ES256, Algorithm::EdDSA]);
/// assert_eq!(
///     dpop::challenge(&AuthError::MissingCredentials, "", algs).unwrap(),
///     r#"DPoP algs="ES256 EdDSA""#
/// );
/// let nonce = AuthError::InvalidToken(TokenError::DpopNonceRequired);
/// assert!(dpop::challenge(&nonce, "api", algs).unwrap().contains(r#"error="use_dpop_nonce""#));
/// ```
pub fn challenge(err: &AuthError, realm: &str, algs: AlgorithmSet) -> Option<String> {
    if matches!(
        err.kind(),
        ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Internal
    ) {
        return None;
    }
    let names = algs
        .iter()
        .map(algorithm_name)
        .collect::<Vec<_>>()
        .join(" ");
    let mut params: Vec<(&str, &str)> = Vec::with_capacity(5);
    if !realm.is_empty() {
        params.push(("realm", realm));
    }
    if let Some(code) = error_code(err) {
        params.push(("error", code));
        params.push(("error_description", err.description()));
    }
    if let AuthError::InsufficientScope { required } = err {
        params.push(("scope", required));
    }
    if !names.is_empty() {
        params.push(("algs", &names));
    }
    let mut out = String::with_capacity(128);
    out.push_str("DPoP");
    for (i, (name, value)) in params.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(name);
        out.push_str("=\"");
        push_quoted(&mut out, value);
        out.push('"');
    }
    Some(out)
}

/// Appends `s` as the inside of an RFC 9110 quoted-string (controls dropped, `"` and `\`
/// escaped), as [`AuthError::challenge`] does.
fn push_quoted(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c == '\t' || (' '..='~').contains(&c) => out.push(c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn rfc7638_thumbprint_of_the_rsa_example() {
        // RFC 7638 section 3.1 (extra members are ignored).
        let jwk = obj(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }));
        assert_eq!(
            encode_jkt(&jwk_thumbprint(&jwk).unwrap()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc8037_thumbprint_of_the_ed25519_example() {
        let jwk = obj(json!({"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}));
        assert_eq!(
            encode_jkt(&jwk_thumbprint(&jwk).unwrap()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc9449_thumbprint_is_independent_of_member_order() {
        let a = obj(
            json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"}),
        );
        let b = obj(
            json!({"y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "kty": "EC", "kid": "ignored"}),
        );
        let jkt = jwk_thumbprint(&a).unwrap();
        assert_eq!(jkt, jwk_thumbprint(&b).unwrap());
        assert_eq!(
            encode_jkt(&jkt),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        assert_eq!(decode_jkt(&encode_jkt(&jkt)), Some(jkt));
        assert_eq!(decode_jkt("AAAA"), None);
    }

    #[test]
    fn thumbprint_refuses_symmetric_and_incomplete_keys() {
        for bad in [
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"crv": "P-256", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "P-256", "x": "AA"}),
            json!({"kty": "RSA", "n": "AA", "e": 3}),
        ] {
            assert!(
                matches!(
                    jwk_thumbprint(&obj(bad.clone())),
                    Err(DpopError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn binding_rules() {
        let jkt = [1; 32];
        let other = [2; 32];
        let proof = VerifiedProof::for_tests(jkt);
        // DPoP scheme: a proof by the bound key.
        assert_eq!(check_binding(Some(&jkt), Some(&proof), true), Ok(()));
        assert_eq!(
            check_binding(Some(&other), Some(&proof), true),
            Err(DpopError::BindingMismatch)
        );
        assert_eq!(
            check_binding(None, Some(&proof), true),
            Err(DpopError::TokenNotBound)
        );
        assert_eq!(
            check_binding(Some(&jkt), None, true),
            Err(DpopError::Missing)
        );
        // Bearer scheme: a bound token is refused, proof or not.
        assert_eq!(
            check_binding(Some(&jkt), Some(&proof), false),
            Err(DpopError::BoundTokenAsBearer)
        );
        assert_eq!(check_binding(None, None, false), Ok(()));
        assert_eq!(check_binding(None, Some(&proof), false), Ok(()));
    }

    #[test]
    fn errors_map_to_token_errors() {
        assert_eq!(
            TokenError::from(DpopError::BadSignature),
            TokenError::DpopProofInvalid("bad_signature")
        );
        assert_eq!(
            TokenError::from(DpopError::MissingClaim("jti")),
            TokenError::DpopProofInvalid("jti")
        );
        assert_eq!(
            TokenError::from(DpopError::NonceInvalid),
            TokenError::DpopNonceRequired
        );
        assert_eq!(
            TokenError::from(DpopError::TokenNotBound),
            TokenError::DpopBindingMismatch
        );
        assert_eq!(
            AuthError::from(DpopError::BoundTokenAsBearer),
            AuthError::InvalidToken(TokenError::DpopRequired)
        );
        let e = AuthError::from(DpopError::Replayed);
        assert_eq!(e.http_status(), 401);
        assert_eq!(e.to_string(), "the DPoP proof is invalid (replayed)");
        assert_eq!(e.reason(), "dpop_proof_invalid");
    }

    #[test]
    fn challenges() {
        let algs = AlgorithmSet::of(&[Algorithm::ES256, Algorithm::PS256]);
        let c = |e: AuthError| challenge(&e, "api", algs);
        assert_eq!(
            c(DpopError::NonceRequired.into()).unwrap(),
            "DPoP realm=\"api\", error=\"use_dpop_nonce\", error_description=\"the resource \
             server requires a nonce in the DPoP proof\", algs=\"ES256 PS256\""
        );
        assert_eq!(
            c(DpopError::BindingMismatch.into()).unwrap(),
            "DPoP realm=\"api\", error=\"invalid_token\", error_description=\"the token is not \
             bound to the DPoP proof's key\", algs=\"ES256 PS256\""
        );
        assert_eq!(
            c(AuthError::InsufficientScope {
                required: "write".into()
            })
            .unwrap(),
            "DPoP realm=\"api\", error=\"insufficient_scope\", error_description=\"the token \
             lacks the required scope\", scope=\"write\", algs=\"ES256 PS256\""
        );
        assert_eq!(c(AuthError::Unavailable("jwks")), None);
        assert_eq!(
            challenge(&AuthError::MissingCredentials, "", AlgorithmSet::EMPTY).unwrap(),
            "DPoP"
        );
        // The Bearer challenge of the same errors is unchanged.
        assert_eq!(
            AuthError::from(DpopError::BadSignature).rfc6750_code(),
            Some("invalid_token")
        );
    }
}

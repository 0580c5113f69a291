//! [`DpopVerifier`]: the checks of RFC 9449 section 4.3 for one proof and one request.

use super::nonce::NonceConfig;
use super::replay::ReplayCache;
use super::{DpopError, access_token_hash, encode_jkt, htu, jwk_thumbprint, sha256};
use crate::clock::{Clock, SystemClock};
use crate::error::{BuildError, TokenError};
use crate::json::{JsonError, parse_object};
use crate::jws;
use crate::keys::{AlgorithmSet, Jwk, VerifyingKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The proof algorithms accepted unless configured otherwise.
const DEFAULT_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::RS256,
    Algorithm::EdDSA,
];
/// The longest `jti` accepted, in bytes.
const MAX_JTI: usize = 256;
/// The longest `nonce` claim looked at, in bytes.
const MAX_NONCE: usize = 256;
/// JWK members that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A DPoP proof that passed every check of [`DpopVerifier::verify`]; only the verifier makes
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key: what a bound token's `cnf.jkt`
    /// must hold.
    pub jkt: [u8; 32],
    /// The proof's unique id.
    pub jti: String,
    /// When the proof was made, in seconds since the Unix epoch.
    pub iat: i64,
    /// The proof's signature algorithm.
    pub alg: Algorithm,
}

impl VerifiedProof {
    /// The thumbprint as sent in `cnf.jkt` (base64url without padding).
    pub fn jkt_base64(&self) -> String {
        encode_jkt(&self.jkt)
    }

    #[cfg(test)]
    pub(crate) fn for_tests(jkt: [u8; 32]) -> Self {
        Self {
            jkt,
            jti: "test".into(),
            iat: 0,
            alg: Algorithm::ES256,
        }
    }
}

struct Inner {
    algorithms: AlgorithmSet,
    max_age: i64,
    leeway: i64,
    max_proof_len: usize,
    capacity: usize,
    replay: ReplayCache,
    nonces: Option<NonceConfig>,
    clock: Arc<dyn Clock>,
}

/// Verifies DPoP proofs (RFC 9449 4.3) and remembers the accepted ones so that each is accepted
/// once. Cheap to clone (one `Arc`); clones share the replay cache.
///
/// ```
/// use auth_core::dpop::{DpopError, DpopVerifier};
/// use auth_core::Algorithm;
/// use std::time::Duration;
///
/// let verifier = DpopVerifier::builder()
///     .algorithms(&[Algorithm::ES256, Algorithm::EdDSA])
///     .max_age(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert!(verifier.algorithms().contains(Algorithm::EdDSA));
/// assert!(verifier.issue_nonce().is_none(), "nonces are off unless configured");
/// // HMAC algorithms can never verify a proof.
/// assert!(DpopVerifier::builder().algorithms(&[Algorithm::HS256]).build().is_err());
/// ```
#[derive(Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("DpopVerifier")
            .field("algorithms", &i.algorithms)
            .field("max_age", &i.max_age)
            .field("leeway", &i.leeway)
            .field("max_proof_len", &i.max_proof_len)
            .field("replay_cache_capacity", &i.capacity)
            .field("nonces", &i.nonces)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DpopVerifier`].
#[must_use]
pub struct DpopVerifierBuilder {
    algorithms: Vec<Algorithm>,
    max_age: Duration,
    leeway: Duration,
    capacity: usize,
    nonces: Option<NonceConfig>,
    clock: Arc<dyn Clock>,
    max_proof_len: usize,
}

impl fmt::Debug for DpopVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifierBuilder")
            .field("algorithms", &self.algorithms)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("replay_cache_capacity", &self.capacity)
            .field("nonces", &self.nonces)
            .field("max_proof_len", &self.max_proof_len)
            .finish_non_exhaustive()
    }
}

impl DpopVerifierBuilder {
    /// The proof algorithms to accept (default `ES256`, `PS256`, `RS256`, `EdDSA`); also what
    /// the `algs` parameter of the challenge lists. Only asymmetric algorithms are allowed.
    pub fn algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.algorithms = algs.to_vec();
        self
    }
    /// How old a proof's `iat` may be (default 60 s, at most 10 min). Accepted proofs are
    /// remembered this long, so it also sizes the replay cache's work.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }
    /// How far in the future a proof's `iat` may be, for client clocks ahead of ours (default
    /// 5 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// How many accepted proofs the replay cache holds (default 100 000, at least 16). When it
    /// is full of proofs still inside their window, it forgets the oldest ones and refuses
    /// proofs as old as those ([`DpopError::ReplayUndecidable`]), never a replay accepted: size
    /// it for the proofs per `max_age` the service expects.
    pub fn replay_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
    /// Requires a server nonce in every proof (RFC 9449 9); off by default.
    pub fn nonces(mut self, nonces: NonceConfig) -> Self {
        self.nonces = Some(nonces);
        self
    }
    /// Replaces the system clock (tests, conformance vectors).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// The largest proof accepted, in bytes (default 8 KiB, 1 KiB to 64 KiB).
    pub fn max_proof_len(mut self, len: usize) -> Self {
        self.max_proof_len = len;
        self
    }

    /// Finishes the verifier.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] when no algorithm or a symmetric one is configured, or a setting
    /// is out of its range.
    pub fn build(self) -> Result<DpopVerifier, BuildError> {
        let invalid = |why: &str| Err(BuildError::Invalid(format!("DPoP verifier: {why}")));
        if self.algorithms.is_empty() {
            return invalid("no proof algorithm");
        }
        if self
            .algorithms
            .iter()
            .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return invalid("HMAC algorithms cannot verify proofs of possession");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.max_age) {
            return invalid("max_age must be between 1 s and 10 min");
        }
        if self.leeway > crate::jwt::MAX_LEEWAY {
            return invalid("leeway must be at most 5 min");
        }
        if !(16..=10_000_000).contains(&self.capacity) {
            return invalid("the replay cache capacity must be between 16 and 10 000 000");
        }
        if !(1024..=64 * 1024).contains(&self.max_proof_len) {
            return invalid("max_proof_len must be between 1 KiB and 64 KiB");
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(DpopVerifier {
            inner: Arc::new(Inner {
                algorithms: AlgorithmSet::of(&self.algorithms),
                max_age: secs(self.max_age),
                leeway: secs(self.leeway),
                max_proof_len: self.max_proof_len,
                capacity: self.capacity,
                replay: ReplayCache::new(self.capacity),
                nonces: self.nonces,
                clock: self.clock,
            }),
        })
    }
}

fn from_jws(e: TokenError) -> DpopError {
    match e {
        TokenError::Malformed(d) => DpopError::Malformed(d),
        TokenError::DuplicateMember => DpopError::DuplicateMember,
        TokenError::UnsupportedAlgorithm => DpopError::UnsupportedAlgorithm,
        TokenError::UnsupportedCritical => DpopError::UnsupportedCritical,
        _ => DpopError::Malformed("header"),
    }
}

fn from_json(e: JsonError, what: &'static str) -> DpopError {
    match e {
        JsonError::Duplicate => DpopError::DuplicateMember,
        JsonError::Invalid => DpopError::Malformed(what),
    }
}

/// The string claim `name`, refused when missing or not a string.
fn string<'c>(claims: &'c Map<String, Value>, name: &'static str) -> Result<&'c str, DpopError> {
    match claims.get(name) {
        None => Err(DpopError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DpopError::InvalidClaim(name)),
    }
}

/// A NumericDate (RFC 7519 2): an integer, or a finite number whose integer part is used.
fn numeric_date(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?.floor();
    // Outside this range the cast would saturate; such dates are refused anyway.
    (f.is_finite() && f.abs() < 1e15).then_some(f as i64)
}

/// The header's `jwk` as a public key for `alg`, with its thumbprint.
fn proof_key(
    header: &Map<String, Value>,
    alg: Algorithm,
) -> Result<(VerifyingKey, [u8; 32]), DpopError> {
    let jwk = match header.get("jwk") {
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return Err(DpopError::InvalidKey("`jwk` is not an object")),
        None => return Err(DpopError::InvalidKey("`jwk` is missing")),
    };
    if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(DpopError::InvalidKey("`jwk` is a symmetric key"));
    }
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::InvalidKey("`jwk` holds private key material"));
    }
    let unusable = DpopError::InvalidKey("`jwk` is not an acceptable public key");
    let parsed: Jwk =
        serde_json::from_value(Value::Object(jwk.clone())).map_err(|_| unusable.clone())?;
    let key = VerifyingKey::from_jwk(&parsed).map_err(|_| unusable)?;
    if !key.allows(alg) {
        return Err(DpopError::InvalidKey("`jwk` does not fit `alg`"));
    }
    Ok((key, jwk_thumbprint(jwk)?))
}

impl DpopVerifier {
    /// Starts a verifier with the defaults: algorithms `ES256`, `PS256`, `RS256`, `EdDSA`;
    /// `max_age` 60 s; leeway 5 s; a replay cache of 100 000 proofs; no nonces; proofs up to
    /// 8 KiB; the system clock.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder {
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            max_age: Duration::from_secs(60),
            leeway: Duration::from_secs(5),
            capacity: 100_000,
            nonces: None,
            clock: Arc::new(SystemClock),
            max_proof_len: 8 * 1024,
        }
    }

    /// The accepted proof algorithms (the `algs` of the challenge).
    pub fn algorithms(&self) -> AlgorithmSet {
        self.inner.algorithms
    }

    /// A fresh nonce for the `DPoP-Nonce` response header, when nonces are enabled: send it
    /// with every `use_dpop_nonce` refusal (and, if wanted, on successful answers, so clients
    /// renew before the one they hold expires).
    pub fn issue_nonce(&self) -> Option<String> {
        let now = self.inner.clock.now_unix();
        self.inner.nonces.as_ref().map(|n| n.issue(now))
    }

    /// Verifies `proof` (the `DPoP` header value) for a request with method `htm` and URL `htu`
    /// (scheme, host, port and path; any query or fragment is ignored, and both URLs are
    /// normalised before they are compared), presenting `access_token` (`None` where no token is
    /// sent, as at a token endpoint). On success the proof is recorded as used.
    ///
    /// The checks run in this order, each with its own error: size, compact JWS and RFC 8725
    /// header rules, `typ`, `alg`, `jwk`, signature, then the claims `jti`, `htm`, `htu`, `iat`,
    /// `ath` (required with a token; ignored without), `nonce` (when enabled), and last the
    /// replay cache, so that only proofs with a valid signature are ever recorded.
    ///
    /// # Errors
    ///
    /// A [`DpopError`] naming the failed check; [`DpopError::NonceRequired`] and
    /// [`DpopError::NonceInvalid`] are answered with `use_dpop_nonce` and a fresh nonce.
    pub fn verify(
        &self,
        proof: &str,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
    ) -> Result<VerifiedProof, DpopError> {
        self.check(proof, htm, htu, access_token, None)
    }

    /// [`DpopVerifier::verify`] for a request whose access token is bound to the key with
    /// thumbprint `jkt` (its `cnf.jkt`, [`crate::Principal::dpop_binding`]): the proof must be
    /// signed by that key (compared in constant time), which is checked before the proof is
    /// recorded, so that only the holder of a bound token's key can ever fill the replay
    /// cache. Equivalent to [`DpopVerifier::verify`] followed by
    /// [`check_binding`](super::check_binding) with the `DPoP` scheme.
    ///
    /// # Errors
    ///
    /// As [`DpopVerifier::verify`], and [`DpopError::BindingMismatch`] when the proof's key is
    /// another.
    pub fn verify_bound(
        &self,
        proof: &str,
        htm: &str,
        htu: &str,
        access_token: &str,
        jkt: &[u8; 32],
    ) -> Result<VerifiedProof, DpopError> {
        self.check(proof, htm, htu, Some(access_token), Some(jkt))
    }

    /// The answer headers of a refusal on a DPoP-protected resource, as `(lower-case name,
    /// value)`: `www-authenticate` with the [`challenge`](super::challenge) for `realm` and this
    /// verifier's algorithms (when the outcome table sends one), and `dpop-nonce` with a fresh
    /// nonce when the refusal is [`TokenError::DpopNonceRequired`] and nonces are enabled. Other
    /// headers of the error ([`crate::AuthError::http_headers`]: `retry-after`, rate limits)
    /// are the caller's to add.
    pub fn challenge_headers(
        &self,
        err: &crate::AuthError,
        realm: &str,
    ) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(2);
        if let Some(c) = super::challenge(err, realm, self.algorithms()) {
            headers.push(("www-authenticate", c));
        }
        if matches!(
            err,
            crate::AuthError::InvalidToken(TokenError::DpopNonceRequired)
        ) && let Some(nonce) = self.issue_nonce()
        {
            headers.push(("dpop-nonce", nonce));
        }
        headers
    }

    fn check(
        &self,
        proof: &str,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        bound_to: Option<&[u8; 32]>,
    ) -> Result<VerifiedProof, DpopError> {
        let cfg = &*self.inner;
        if proof.len() > cfg.max_proof_len {
            return Err(DpopError::TooLarge);
        }
        let compact = jws::parse(proof).map_err(from_jws)?;
        if compact.header.typ.as_deref() != Some("dpop+jwt") {
            return Err(DpopError::InvalidType);
        }
        let alg = compact.header.alg;
        if !cfg.algorithms.contains(alg) {
            return Err(DpopError::AlgorithmNotAllowed);
        }
        // `jws::parse` checked the header and keeps only what token verification needs: read
        // it again for the `jwk`.
        let header_b64 = compact.signing_input.split_once('.').map_or("", |(h, _)| h);
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| DpopError::Malformed("header is not base64url"))?;
        let header =
            parse_object(&header_json).map_err(|e| from_json(e, "header is not a JSON object"))?;
        let (key, jkt) = proof_key(&header, alg)?;
        key.verify(alg, compact.signing_input.as_bytes(), compact.signature)
            .map_err(|_| DpopError::BadSignature)?;

        let claims = parse_object(&compact.payload)
            .map_err(|e| from_json(e, "claims are not a JSON object"))?;
        let jti = string(&claims, "jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI {
            return Err(DpopError::InvalidClaim("jti"));
        }
        if string(&claims, "htm")? != htm {
            return Err(DpopError::MethodMismatch);
        }
        let claimed =
            htu::normalize(string(&claims, "htu")?).ok_or(DpopError::InvalidClaim("htu"))?;
        let request = htu::normalize(htu).ok_or(DpopError::InvalidRequestUrl)?;
        if claimed != request {
            return Err(DpopError::UrlMismatch);
        }
        let iat = numeric_date(claims.get("iat").ok_or(DpopError::MissingClaim("iat"))?)
            .ok_or(DpopError::InvalidClaim("iat"))?;
        let now = cfg.clock.now_unix();
        if iat < now.saturating_sub(cfg.max_age) {
            return Err(DpopError::TooOld);
        }
        if iat > now.saturating_add(cfg.leeway) {
            return Err(DpopError::IssuedInFuture);
        }
        if let Some(token) = access_token {
            let ath = string(&claims, "ath")?;
            let expected = access_token_hash(token);
            aws_lc_rs::constant_time::verify_slices_are_equal(ath.as_bytes(), expected.as_bytes())
                .map_err(|_| DpopError::AccessTokenMismatch)?;
        }
        if let Some(nonces) = &cfg.nonces {
            match claims.get("nonce") {
                None => return Err(DpopError::NonceRequired),
                Some(Value::String(n))
                    if n.len() <= MAX_NONCE && nonces.accepts(n, now, cfg.leeway) => {}
                Some(_) => return Err(DpopError::NonceInvalid),
            }
        }
        if let Some(expected) = bound_to {
            aws_lc_rs::constant_time::verify_slices_are_equal(expected, &jkt)
                .map_err(|_| DpopError::BindingMismatch)?;
        }
        // The entry is the key and the id: one client cannot spend another's `jti`.
        let mut id = Vec::with_capacity(32 + jti.len());
        id.extend_from_slice(&jkt);
        id.extend_from_slice(jti.as_bytes());
        cfg.replay
            .record(sha256(&id), iat.saturating_add(cfg.max_age), now)?;
        Ok(VerifiedProof {
            jkt,
            jti: jti.to_owned(),
            iat,
            alg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;

    /// RFC 9449 figure 3/4: the token-request proof of section 4.1.
    const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    /// RFC 9449 figure 13: the protected-resource proof of section 7.1, with `ath`.
    const RFC_RESOURCE_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    const RFC_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

    fn at(now: i64) -> DpopVerifier {
        DpopVerifier::builder()
            .clock(FixedClock(now))
            .build()
            .unwrap()
    }

    #[test]
    fn rfc9449_token_request_proof() {
        let v = at(1_562_262_616);
        let p = v
            .verify(RFC_PROOF, "POST", "https://server.example.com/token", None)
            .unwrap();
        assert_eq!(p.jkt_base64(), RFC_JKT);
        assert_eq!(p.jti, "-BwC3ESc6acc2lTc");
        assert_eq!(p.iat, 1_562_262_616);
        assert_eq!(p.alg, Algorithm::ES256);
        // Once only.
        assert_eq!(
            v.verify(RFC_PROOF, "POST", "https://server.example.com/token", None),
            Err(DpopError::Replayed)
        );
        // A clone shares the cache.
        assert_eq!(
            v.clone()
                .verify(RFC_PROOF, "POST", "https://server.example.com/token", None),
            Err(DpopError::Replayed)
        );
    }

    #[test]
    fn rfc9449_resource_proof_needs_its_token() {
        let url = "https://resource.example.org/protectedresource";
        let v = at(1_562_262_618);
        assert_eq!(
            v.verify(RFC_RESOURCE_PROOF, "GET", url, Some("another token")),
            Err(DpopError::AccessTokenMismatch)
        );
        assert_eq!(
            v.verify(
                RFC_PROOF,
                "POST",
                "https://server.example.com/token",
                Some(RFC_TOKEN)
            ),
            Err(DpopError::MissingClaim("ath"))
        );
        let p = v
            .verify(RFC_RESOURCE_PROOF, "GET", url, Some(RFC_TOKEN))
            .unwrap();
        assert_eq!(p.jkt_base64(), RFC_JKT);
    }

    #[test]
    fn rfc9449_proof_is_refused_out_of_its_window_and_elsewhere() {
        let url = "https://server.example.com/token";
        assert_eq!(
            at(1_562_262_616 + 61).verify(RFC_PROOF, "POST", url, None),
            Err(DpopError::TooOld)
        );
        assert_eq!(
            at(1_562_262_616 - 6).verify(RFC_PROOF, "POST", url, None),
            Err(DpopError::IssuedInFuture)
        );
        let v = at(1_562_262_616 + 60);
        assert_eq!(
            v.verify(RFC_PROOF, "post", url, None),
            Err(DpopError::MethodMismatch)
        );
        assert_eq!(
            v.verify(RFC_PROOF, "POST", "https://server.example.com/token2", None),
            Err(DpopError::UrlMismatch)
        );
        assert_eq!(
            v.verify(RFC_PROOF, "POST", "/token", None),
            Err(DpopError::InvalidRequestUrl)
        );
        // Equivalent URLs are the same URL.
        v.verify(
            RFC_PROOF,
            "POST",
            "HTTPS://SERVER.example.com:443/token?x=1#f",
            None,
        )
        .unwrap();
    }

    #[test]
    fn tampered_rfc_proof_is_refused() {
        let (input, sig) = RFC_PROOF.rsplit_once('.').unwrap();
        let mut s = URL_SAFE_NO_PAD.decode(sig).unwrap();
        s[10] ^= 1;
        let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&s));
        assert_eq!(
            at(1_562_262_616).verify(&bad, "POST", "https://server.example.com/token", None),
            Err(DpopError::BadSignature)
        );
        assert_eq!(
            at(1_562_262_616).verify(
                &format!("{RFC_PROOF}.x"),
                "POST",
                "https://server.example.com/token",
                None
            ),
            Err(DpopError::Malformed("not a compact JWS"))
        );
        let long = "a".repeat(9 * 1024);
        assert_eq!(
            at(0).verify(&long, "POST", "https://a.example/", None),
            Err(DpopError::TooLarge)
        );
    }

    #[test]
    fn only_an_allowed_algorithm_is_accepted() {
        let v = DpopVerifier::builder()
            .algorithms(&[Algorithm::EdDSA])
            .clock(FixedClock(1_562_262_616))
            .build()
            .unwrap();
        assert_eq!(
            v.verify(RFC_PROOF, "POST", "https://server.example.com/token", None),
            Err(DpopError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn builder_refuses_unsafe_settings() {
        let b = DpopVerifier::builder;
        assert!(b().algorithms(&[]).build().is_err());
        assert!(
            b().algorithms(&[Algorithm::ES256, Algorithm::HS512])
                .build()
                .is_err()
        );
        assert!(b().max_age(Duration::ZERO).build().is_err());
        assert!(b().max_age(Duration::from_secs(3600)).build().is_err());
        assert!(b().leeway(Duration::from_secs(301)).build().is_err());
        assert!(b().replay_cache_capacity(0).build().is_err());
        assert!(b().max_proof_len(10).build().is_err());
        let v = b().build().unwrap();
        assert_eq!(
            v.algorithms(),
            AlgorithmSet::of(&[
                Algorithm::ES256,
                Algorithm::PS256,
                Algorithm::RS256,
                Algorithm::EdDSA
            ])
        );
        assert!(format!("{v:?}").contains("DpopVerifier"));
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(&Value::from(5)), Some(5));
        assert_eq!(numeric_date(&Value::from(5.9)), Some(5));
        assert_eq!(numeric_date(&Value::from(1e300)), None);
        assert_eq!(numeric_date(&Value::from("5")), None);
    }
}

//! Trusted verification keys and the per-key algorithm allow-list.
//!
//! A [`VerifyingKey`] is parsed once into a ready `jsonwebtoken` decoding key together with the
//! set of algorithms it may verify. **The key decides the algorithm**: a token's `alg` header only
//! selects among the algorithms its key allows, so `alg: none` and RSA/HMAC confusion cannot be
//! expressed. A JWK's `kty`, `crv`, `alg`, `use` and `key_ops` are all respected, and keys that are
//! unsafe to trust are refused when loaded: RSA moduli under 2048 bits, public exponents under 3
//! or even, ROCA-vulnerable moduli (CVE-2017-15361), HMAC secrets shorter than their hash.
//!
//! A [`KeySet`] indexes keys by `kid`. Two keys with the same `kid` make that `kid` ambiguous
//! (tokens naming it are refused), and a set that mixes symmetric and asymmetric keys is refused
//! as a whole, since a verifier must never guess which kind a token meant.
//!
//! ```
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use jsonwebtoken::Algorithm;
//!
//! let key = VerifyingKey::hmac(b"a secret of at least thirty-two bytes!!", Some("k1".into())).unwrap();
//! assert!(key.allows(Algorithm::HS256));
//! assert!(!key.allows(Algorithm::RS256));
//! let set = KeySet::new(vec![key]).unwrap();
//! assert_eq!(set.len(), 1);
//! ```

use crate::error::{BuildError, TokenError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most keys one set may hold; a larger JWKS is refused (bounded memory).
pub const MAX_KEYS: usize = 64;

/// A set of JWS algorithms, as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgorithmSet(u16);

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

fn bit(alg: Algorithm) -> u16 {
    1 << ALL.iter().position(|a| *a == alg).unwrap_or(15)
}

impl AlgorithmSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// A set of the given algorithms.
    pub fn of(algs: &[Algorithm]) -> Self {
        Self(algs.iter().fold(0, |acc, a| acc | bit(*a)))
    }
    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & bit(alg) != 0
    }
    /// The algorithms in both sets.
    pub fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The algorithms in the set.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Parses a JWS `alg` name; `none` and unknown names are `None`.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    ALL.into_iter().find(|a| algorithm_name(*a) == name)
}

/// The JWS name of an algorithm.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// The kind of key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA public key.
    Rsa,
    /// NIST P-256 or P-384 public key.
    Ec,
    /// Ed25519 public key.
    Ed25519,
    /// HMAC shared secret.
    Hmac,
}

/// One trusted key, ready to verify, with the algorithms it allows.
pub struct VerifyingKey {
    kid: Option<String>,
    kind: KeyKind,
    algorithms: AlgorithmSet,
    key: DecodingKey,
    retired: AtomicBool,
}

impl fmt::Debug for VerifyingKey {
    // Never print key material (HMAC secrets live in `key`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algorithms", &self.algorithms)
            .field("retired", &self.is_retired())
            .finish()
    }
}

fn invalid(kid: &Option<String>, reason: impl Into<String>) -> BuildError {
    BuildError::InvalidKey {
        kid: kid.clone(),
        reason: reason.into(),
    }
}

fn b64(kid: &Option<String>, member: &str, v: &str) -> Result<Vec<u8>, BuildError> {
    URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|_| invalid(kid, format!("`{member}` is not base64url")))
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl VerifyingKey {
    fn new(
        kid: Option<String>,
        kind: KeyKind,
        algorithms: AlgorithmSet,
        key: DecodingKey,
    ) -> Result<Self, BuildError> {
        if algorithms.is_empty() {
            return Err(invalid(&kid, "the key allows no supported algorithm"));
        }
        Ok(Self {
            kid,
            kind,
            algorithms,
            key,
            retired: AtomicBool::new(false),
        })
    }

    /// An HMAC secret; it allows each HS algorithm whose hash is no longer than the secret
    /// (RFC 7518 3.2).
    ///
    /// # Errors
    ///
    /// When the secret is shorter than 32 bytes.
    pub fn hmac(secret: &[u8], kid: Option<String>) -> Result<Self, BuildError> {
        let algs = hmac_algorithms(secret.len());
        if algs.is_empty() {
            return Err(invalid(&kid, "HMAC secrets must be at least 32 bytes"));
        }
        Self::new(kid, KeyKind::Hmac, algs, DecodingKey::from_secret(secret))
    }

    /// An RSA public key from its modulus and exponent (big-endian bytes).
    ///
    /// # Errors
    ///
    /// When the modulus is under 2048 or over 8192 bits, the exponent is even or under 3, or the
    /// modulus has the ROCA fingerprint.
    pub fn rsa(n: &[u8], e: &[u8], kid: Option<String>) -> Result<Self, BuildError> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) {
            return Err(invalid(
                &kid,
                format!("RSA modulus of {bits} bits (2048 to 8192 allowed)"),
            ));
        }
        if e.len() > 4 || e.last().is_none_or(|b| b & 1 == 0) || (e.len() == 1 && e[0] < 3) {
            return Err(invalid(
                &kid,
                "RSA public exponent must be odd, at least 3 and at most 32 bits",
            ));
        }
        if is_roca_modulus(n) {
            return Err(invalid(
                &kid,
                "RSA modulus is ROCA-vulnerable (CVE-2017-15361)",
            ));
        }
        Self::new(
            kid,
            KeyKind::Rsa,
            AlgorithmSet::of(&RSA_ALGS),
            DecodingKey::from_rsa_raw_components(n, e),
        )
    }

    /// An EC public key from its affine coordinates; the coordinate length decides the curve
    /// (32 bytes: P-256 and ES256, 48 bytes: P-384 and ES384).
    ///
    /// # Errors
    ///
    /// When the coordinates do not have the length of a supported curve.
    pub fn ec(x: &[u8], y: &[u8], kid: Option<String>) -> Result<Self, BuildError> {
        let alg = match (x.len(), y.len()) {
            (32, 32) => Algorithm::ES256,
            (48, 48) => Algorithm::ES384,
            _ => {
                return Err(invalid(
                    &kid,
                    "EC coordinates must be 32 (P-256) or 48 (P-384) bytes",
                ));
            }
        };
        let mut point = Vec::with_capacity(1 + x.len() + y.len());
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::new(
            kid,
            KeyKind::Ec,
            AlgorithmSet::of(&[alg]),
            DecodingKey::from_ec_der(&point),
        )
    }

    /// An Ed25519 public key (32 bytes).
    ///
    /// # Errors
    ///
    /// When the key is not 32 bytes.
    pub fn ed25519(x: &[u8], kid: Option<String>) -> Result<Self, BuildError> {
        if x.len() != 32 {
            return Err(invalid(&kid, "Ed25519 public keys are 32 bytes"));
        }
        Self::new(
            kid,
            KeyKind::Ed25519,
            AlgorithmSet::of(&[Algorithm::EdDSA]),
            DecodingKey::from_ed_der(x),
        )
    }

    /// A public key in PEM (`PUBLIC KEY` SPKI, or `RSA PUBLIC KEY`); RSA, EC P-256/P-384 and
    /// Ed25519 are recognised.
    ///
    /// # Errors
    ///
    /// When the PEM holds no supported public key, or the key fails the checks of
    /// [`VerifyingKey::rsa`], [`VerifyingKey::ec`] or [`VerifyingKey::ed25519`].
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<Self, BuildError> {
        if let Ok(k) = DecodingKey::from_rsa_pem(pem)
            && let Ok(der) = k.try_get_as_bytes()
        {
            let public = aws_lc_rs::rsa::PublicKey::from_der(der)
                .map_err(|e| invalid(&kid, format!("RSA public key: {e}")))?;
            let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&public);
            return Self::rsa(&c.n, &c.e, kid);
        }
        if let Ok(k) = DecodingKey::from_ec_pem(pem)
            && let Ok(point) = k.try_get_as_bytes()
        {
            return match point.len() {
                65 | 97 if point[0] == 4 => {
                    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                    Self::ec(x, y, kid)
                }
                _ => Err(invalid(&kid, "unsupported EC public key encoding")),
            };
        }
        if let Ok(k) = DecodingKey::from_ed_pem(pem)
            && let Ok(x) = k.try_get_as_bytes()
        {
            return Self::ed25519(x, kid);
        }
        Err(invalid(&kid, "no supported public key in PEM"))
    }

    /// A key from one JWK (JSON text).
    ///
    /// # Errors
    ///
    /// When the JWK is not valid JSON, is not a signature-verification key (`use` other than
    /// `sig`, `key_ops` without `verify`, an encryption `alg`), or fails the key checks.
    pub fn from_jwk_json(json: &str) -> Result<Self, BuildError> {
        let jwk: Jwk =
            serde_json::from_str(json).map_err(|e| invalid(&None, format!("JWK: {e}")))?;
        Self::from_jwk(&jwk)
    }

    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, BuildError> {
        let kid = jwk.kid.clone();
        if let Some(u) = &jwk.use_
            && u != "sig"
        {
            return Err(invalid(&kid, format!("`use` is `{u}`, not `sig`")));
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err(invalid(&kid, "`key_ops` does not include `verify`"));
        }
        fn need<'j>(
            kid: &Option<String>,
            member: &'static str,
            v: &'j Option<String>,
        ) -> Result<&'j str, BuildError> {
            v.as_deref()
                .ok_or_else(|| invalid(kid, format!("`{member}` is missing")))
        }
        let mut key = match jwk.kty.as_str() {
            "RSA" => Self::rsa(
                &b64(&kid, "n", need(&kid, "n", &jwk.n)?)?,
                &b64(&kid, "e", need(&kid, "e", &jwk.e)?)?,
                kid.clone(),
            )?,
            "EC" => {
                let crv = need(&kid, "crv", &jwk.crv)?;
                let key = Self::ec(
                    &b64(&kid, "x", need(&kid, "x", &jwk.x)?)?,
                    &b64(&kid, "y", need(&kid, "y", &jwk.y)?)?,
                    kid.clone(),
                )?;
                let expected = if key.allows(Algorithm::ES256) {
                    "P-256"
                } else {
                    "P-384"
                };
                if crv != expected {
                    return Err(invalid(
                        &kid,
                        format!("curve `{crv}` does not match the coordinates"),
                    ));
                }
                key
            }
            "OKP" => {
                let crv = need(&kid, "crv", &jwk.crv)?;
                if crv != "Ed25519" {
                    return Err(invalid(&kid, format!("unsupported OKP curve `{crv}`")));
                }
                Self::ed25519(&b64(&kid, "x", need(&kid, "x", &jwk.x)?)?, kid.clone())?
            }
            "oct" => {
                let k = b64(&kid, "k", need(&kid, "k", &jwk.k)?)?;
                Self::hmac(&k, kid.clone())?
            }
            other => return Err(invalid(&kid, format!("unsupported key type `{other}`"))),
        };
        if let Some(alg) = &jwk.alg {
            let a = parse_algorithm(alg).ok_or_else(|| {
                invalid(
                    &kid,
                    format!("`alg` `{alg}` is not a JWS signature algorithm"),
                )
            })?;
            if !key.allows(a) {
                return Err(invalid(&kid, format!("`alg` `{alg}` does not fit the key")));
            }
            key.algorithms = AlgorithmSet::of(&[a]);
        }
        Ok(key)
    }

    /// Restricts the key to `algs` (intersected with what the key can do).
    ///
    /// # Errors
    ///
    /// When no algorithm would remain.
    pub fn restrict(mut self, algs: &[Algorithm]) -> Result<Self, BuildError> {
        self.algorithms = self.algorithms.intersect(AlgorithmSet::of(algs));
        if self.algorithms.is_empty() {
            return Err(invalid(&self.kid, "no allowed algorithm fits the key"));
        }
        Ok(self)
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }
    /// Whether this key may verify `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(alg)
    }

    /// Verifies `signature` (base64url) over `message` with `alg`.
    ///
    /// # Errors
    ///
    /// [`TokenError::AlgorithmNotAllowed`] when the key does not allow `alg`,
    /// [`TokenError::BadSignature`] when the signature does not verify.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &str,
    ) -> Result<(), TokenError> {
        if !self.allows(alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        match jsonwebtoken::crypto::verify(signature, message, &self.key, alg) {
            Ok(true) => Ok(()),
            _ => Err(TokenError::BadSignature),
        }
    }

    /// Whether the key was removed from its trusted set; verifications it made are void.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether two keys hold the same public material, algorithms and id (used to carry keys
    /// over a JWKS refresh, so that cached verifications made with them stay valid).
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.kid == other.kid
            && self.kind == other.kind
            && self.algorithms == other.algorithms
            && material(&self.key) == material(&other.key)
    }
}

#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
fn material(key: &DecodingKey) -> Option<(&[u8], &[u8])> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(b) => Some((b, &[])),
        DecodingKeyKind::RsaModulusExponent { n, e } => Some((n, e)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn hmac_algorithms(len: usize) -> AlgorithmSet {
    let mut algs = Vec::new();
    if len >= 32 {
        algs.push(Algorithm::HS256);
    }
    if len >= 48 {
        algs.push(Algorithm::HS384);
    }
    if len >= 64 {
        algs.push(Algorithm::HS512);
    }
    AlgorithmSet::of(&algs)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// The ROCA fingerprint (Nemec et al., CCS 2017): moduli made by the vulnerable Infineon
/// library are, modulo each small prime p, in the subgroup generated by 65537. A random modulus
/// passes this test for all 38 primes with negligible probability.
fn is_roca_modulus(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let r = n
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let g = 65537 % p;
        let mut x = 1u32;
        loop {
            if x == r {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                return false;
            }
        }
    })
}

/// The members of a JWK this crate reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Jwk {
    pub(crate) kty: String,
    #[serde(rename = "use")]
    pub(crate) use_: Option<String>,
    pub(crate) key_ops: Option<Vec<String>>,
    pub(crate) alg: Option<String>,
    pub(crate) kid: Option<String>,
    pub(crate) crv: Option<String>,
    pub(crate) n: Option<String>,
    pub(crate) e: Option<String>,
    pub(crate) x: Option<String>,
    pub(crate) y: Option<String>,
    pub(crate) k: Option<String>,
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

enum Slot {
    One(Arc<VerifyingKey>),
    Ambiguous,
}

/// Trusted keys indexed by `kid`.
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, Slot>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

/// What [`KeySet::from_jwks_lenient`] skipped, for logs.
#[derive(Debug, Default)]
pub struct Skipped(pub Vec<String>);

impl KeySet {
    /// A set of keys.
    ///
    /// # Errors
    ///
    /// When there are more than [`MAX_KEYS`] keys, or symmetric and asymmetric keys are mixed.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, BuildError> {
        Self::from_arcs(keys.into_iter().map(Arc::new).collect())
    }

    pub(crate) fn from_arcs(keys: Vec<Arc<VerifyingKey>>) -> Result<Self, BuildError> {
        if keys.len() > MAX_KEYS {
            return Err(BuildError::InvalidKeySet(format!(
                "{} keys (at most {MAX_KEYS})",
                keys.len()
            )));
        }
        let symmetric = keys.iter().filter(|k| k.kind == KeyKind::Hmac).count();
        if symmetric != 0 && symmetric != keys.len() {
            return Err(BuildError::InvalidKeySet(
                "symmetric and asymmetric keys in one set".into(),
            ));
        }
        let mut by_kid = HashMap::new();
        for k in &keys {
            if let Some(kid) = &k.kid {
                by_kid
                    .entry(kid.clone())
                    .and_modify(|s| *s = Slot::Ambiguous)
                    .or_insert_with(|| Slot::One(k.clone()));
            }
        }
        Ok(Self { keys, by_kid })
    }

    /// An empty set.
    pub fn empty() -> Self {
        Self {
            keys: Vec::new(),
            by_kid: HashMap::new(),
        }
    }

    /// A set from a JWKS document, refusing it whole if any key is unacceptable.
    ///
    /// # Errors
    ///
    /// When the document is not a JWKS, any key fails [`VerifyingKey::from_jwk_json`]'s checks,
    /// or the set fails [`KeySet::new`]'s.
    pub fn from_jwks(json: &str) -> Result<Self, BuildError> {
        let doc: JwkSetDoc = serde_json::from_str(json)
            .map_err(|e| BuildError::InvalidKeySet(format!("JWKS: {e}")))?;
        let keys = doc
            .keys
            .iter()
            .map(|v| {
                let jwk: Jwk = serde_json::from_value(v.clone())
                    .map_err(|e| invalid(&None, format!("JWK: {e}")))?;
                VerifyingKey::from_jwk(&jwk)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// A set from a JWKS served by an issuer: keys that are not usable for verification
    /// (encryption keys, unsupported types, weak keys) are skipped and reported, and so are
    /// symmetric keys, which never belong in a published JWKS.
    ///
    /// # Errors
    ///
    /// When the document is not a JWKS, has more than [`MAX_KEYS`] keys, or no usable key.
    pub fn from_jwks_lenient(json: &[u8]) -> Result<(Self, Skipped), BuildError> {
        let doc: JwkSetDoc = serde_json::from_slice(json)
            .map_err(|e| BuildError::InvalidKeySet(format!("JWKS: {e}")))?;
        if doc.keys.len() > MAX_KEYS {
            return Err(BuildError::InvalidKeySet(format!(
                "{} keys (at most {MAX_KEYS})",
                doc.keys.len()
            )));
        }
        let mut skipped = Skipped::default();
        let mut keys = Vec::new();
        for v in doc.keys {
            match serde_json::from_value::<Jwk>(v)
                .map_err(|e| invalid(&None, format!("JWK: {e}")))
                .and_then(|jwk| VerifyingKey::from_jwk(&jwk))
            {
                Ok(k) if k.kind == KeyKind::Hmac => skipped.0.push(format!(
                    "key {:?}: symmetric key in a published JWKS",
                    k.kid
                )),
                Ok(k) => keys.push(k),
                Err(e) => skipped.0.push(e.to_string()),
            }
        }
        if keys.is_empty() {
            return Err(BuildError::InvalidKeySet("no usable signature key".into()));
        }
        Ok((Self::new(keys)?, skipped))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// The keys.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// The keys to try for a token with this `kid` and `alg`.
    ///
    /// With a `kid`, the one key of that id; without, every key that allows `alg` (at most
    /// three, so an id-less token cannot make the verifier try a whole large set).
    ///
    /// # Errors
    ///
    /// [`TokenError::UnknownKey`], [`TokenError::AmbiguousKey`] or
    /// [`TokenError::AlgorithmNotAllowed`].
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Candidates<'_>, TokenError> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(Slot::One(k)) if k.allows(alg) => Ok(Candidates::One(Some(k))),
                Some(Slot::One(_)) => Err(TokenError::AlgorithmNotAllowed),
                Some(Slot::Ambiguous) => Err(TokenError::AmbiguousKey),
                None => Err(TokenError::UnknownKey),
            },
            None => {
                let n = self.keys.iter().filter(|k| k.allows(alg)).count();
                match n {
                    0 => Err(TokenError::UnknownKey),
                    1..=3 => Ok(Candidates::Filter(self.keys.iter(), alg)),
                    _ => Err(TokenError::AmbiguousKey),
                }
            }
        }
    }

    /// Marks every key of this set that `next` does not hold as retired.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn retire_missing(&self, next: &KeySet) {
        for k in &self.keys {
            if !next.keys.iter().any(|n| Arc::ptr_eq(n, k)) {
                k.retire();
            }
        }
    }

    /// Marks every key retired.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn retire_all(&self) {
        self.keys.iter().for_each(|k| k.retire());
    }
}

/// Keys to try, from [`KeySet::select`].
pub enum Candidates<'a> {
    /// The one key named by `kid`.
    One(Option<&'a Arc<VerifyingKey>>),
    /// The keys that allow the algorithm.
    Filter(std::slice::Iter<'a, Arc<VerifyingKey>>, Algorithm),
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Arc<VerifyingKey>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::One(k) => k.take(),
            Self::Filter(it, alg) => it.find(|k| k.allows(*alg)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_algorithms_follow_secret_length() {
        assert!(VerifyingKey::hmac(&[1; 31], None).is_err());
        let k = VerifyingKey::hmac(&[1; 48], None).unwrap();
        assert!(k.allows(Algorithm::HS256) && k.allows(Algorithm::HS384));
        assert!(!k.allows(Algorithm::HS512));
    }

    #[test]
    fn rsa_checks() {
        let n = vec![0xc5; 256];
        assert!(VerifyingKey::rsa(&n, &[1, 0, 1], None).is_ok());
        assert!(
            VerifyingKey::rsa(&n[..128], &[1, 0, 1], None).is_err(),
            "1024 bits"
        );
        assert!(VerifyingKey::rsa(&n, &[1], None).is_err(), "e = 1");
        assert!(VerifyingKey::rsa(&n, &[1, 0, 0], None).is_err(), "even e");
    }

    #[test]
    fn jwk_use_and_key_ops_are_respected() {
        let k =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert!(VerifyingKey::from_jwk_json(k).is_ok());
        let enc = k.replace("{", r#"{"use":"enc","#);
        assert!(VerifyingKey::from_jwk_json(&enc).is_err());
        let ops = k.replace("{", r#"{"key_ops":["encrypt"],"#);
        assert!(VerifyingKey::from_jwk_json(&ops).is_err());
        let alg = k.replace("{", r#"{"alg":"RS256","#);
        assert!(VerifyingKey::from_jwk_json(&alg).is_err());
    }

    #[test]
    fn duplicate_kid_is_ambiguous() {
        let a = VerifyingKey::hmac(&[1; 32], Some("k".into())).unwrap();
        let b = VerifyingKey::hmac(&[2; 32], Some("k".into())).unwrap();
        let set = KeySet::new(vec![a, b]).unwrap();
        assert_eq!(
            set.select(Some("k"), Algorithm::HS256).err(),
            Some(TokenError::AmbiguousKey)
        );
    }

    #[test]
    fn mixed_sets_are_refused() {
        let a = VerifyingKey::hmac(&[1; 32], None).unwrap();
        let b = VerifyingKey::ed25519(&[9; 32], None).unwrap();
        assert!(KeySet::new(vec![a, b]).is_err());
    }
}

//! Token signing: the keys of a small issuer (the development issuer of `auth-demo`, test
//! fixtures, services that mint their own tokens).
//!
//! A [`SigningKey`] is generated (or loaded from PKCS#8) with `aws-lc-rs`, signs compact JWS, and
//! publishes its public half as a JWK. [`SigningKey::sign_raw`] signs any header and payload
//! text as given, which is what attack-token tests need.
//!
//! ```
//! use auth_core::issuer::SigningKey;
//! use auth_core::keys::KeySet;
//! use jsonwebtoken::Algorithm;
//!
//! let key = SigningKey::generate(Algorithm::ES256, "k1").unwrap();
//! let token = key.sign(&serde_json::json!({"sub": "alice"})).unwrap();
//! let set = KeySet::new(vec![key.verifying_key().unwrap()]).unwrap();
//! let verified = auth_core::jws::verify(&token, &set).unwrap();
//! assert_eq!(verified.header.kid.as_deref(), Some("k1"));
//! ```

use crate::error::BuildError;
use crate::keys::{VerifyingKey, algorithm_name};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
    Hmac(Box<aws_lc_rs::hmac::Key>, Vec<u8>),
}

/// A private signing key with its algorithm and key id.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn err(reason: impl Into<String>) -> BuildError {
    BuildError::InvalidKey {
        kid: None,
        reason: reason.into(),
    }
}

fn ec_alg(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn hmac_alg(alg: Algorithm) -> Option<(aws_lc_rs::hmac::Algorithm, usize)> {
    match alg {
        Algorithm::HS256 => Some((aws_lc_rs::hmac::HMAC_SHA256, 32)),
        Algorithm::HS384 => Some((aws_lc_rs::hmac::HMAC_SHA384, 48)),
        Algorithm::HS512 => Some((aws_lc_rs::hmac::HMAC_SHA512, 64)),
        _ => None,
    }
}

fn rsa_encoding(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_SHA512,
        _ => return None,
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA keys are 2048 bits; HMAC secrets as long as the
    /// hash).
    ///
    /// # Errors
    ///
    /// When key generation fails.
    pub fn generate(alg: Algorithm, kid: impl Into<String>) -> Result<Self, BuildError> {
        let pair = if rsa_encoding(alg).is_some() {
            Pair::Rsa(
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| err("RSA key generation failed"))?,
            )
        } else if let Some(a) = ec_alg(alg) {
            Pair::Ec(sig::EcdsaKeyPair::generate(a).map_err(|_| err("EC key generation failed"))?)
        } else if let Some((a, len)) = hmac_alg(alg) {
            let mut secret = vec![0; len];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| err("no randomness"))?;
            Pair::Hmac(Box::new(aws_lc_rs::hmac::Key::new(a, &secret)), secret)
        } else {
            Pair::Ed(
                sig::Ed25519KeyPair::generate()
                    .map_err(|_| err("Ed25519 key generation failed"))?,
            )
        };
        Ok(Self {
            kid: kid.into(),
            alg,
            pair,
        })
    }

    /// Loads a key from PKCS#8 DER (for HMAC algorithms: the raw secret).
    ///
    /// # Errors
    ///
    /// When the bytes are not a key of the algorithm's type.
    pub fn from_pkcs8(
        alg: Algorithm,
        kid: impl Into<String>,
        der: &[u8],
    ) -> Result<Self, BuildError> {
        let pair = if rsa_encoding(alg).is_some() {
            Pair::Rsa(
                aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                    .map_err(|e| err(format!("RSA key: {e}")))?,
            )
        } else if let Some(a) = ec_alg(alg) {
            Pair::Ec(
                sig::EcdsaKeyPair::from_pkcs8(a, der).map_err(|e| err(format!("EC key: {e}")))?,
            )
        } else if let Some((a, len)) = hmac_alg(alg) {
            if der.len() < len {
                return Err(err("HMAC secret shorter than the hash"));
            }
            Pair::Hmac(Box::new(aws_lc_rs::hmac::Key::new(a, der)), der.to_vec())
        } else {
            Pair::Ed(
                sig::Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|e| err(format!("Ed25519 key: {e}")))?,
            )
        };
        Ok(Self {
            kid: kid.into(),
            alg,
            pair,
        })
    }

    /// The private key as PKCS#8 DER (for HMAC: the secret). Treat as a secret.
    ///
    /// # Errors
    ///
    /// When the key cannot be serialized.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, BuildError> {
        let fail = |_| err("key serialization failed");
        Ok(match &self.pair {
            Pair::Rsa(k) => k.as_der().map_err(fail)?.as_ref().to_vec(),
            Pair::Ec(k) => k.to_pkcs8v1().map_err(fail)?.as_ref().to_vec(),
            Pair::Ed(k) => k.to_pkcs8().map_err(fail)?.as_ref().to_vec(),
            Pair::Hmac(_, s) => s.clone(),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (`use: sig`, with `alg` and `kid`); for HMAC keys, the secret JWK.
    pub fn public_jwk(&self) -> Value {
        let alg = algorithm_name(self.alg);
        match &self.pair {
            Pair::Rsa(k) => {
                let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "use": "sig", "alg": alg, "kid": self.kid, "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::Ec(k) => {
                let point = k.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = if self.alg == Algorithm::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "use": "sig", "alg": alg, "kid": self.kid, "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Pair::Ed(k) => {
                json!({"kty": "OKP", "use": "sig", "alg": alg, "kid": self.kid, "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            Pair::Hmac(_, s) => {
                json!({"kty": "oct", "use": "sig", "alg": alg, "kid": self.kid, "k": b64(s)})
            }
        }
    }

    /// The matching [`VerifyingKey`].
    ///
    /// # Errors
    ///
    /// Never for keys this type generates; kept fallible for loaded ones.
    pub fn verifying_key(&self) -> Result<VerifyingKey, BuildError> {
        VerifyingKey::from_jwk_json(&self.public_jwk().to_string())
    }

    /// Signs `claims` with the header `{"alg", "kid", "typ": "JWT"}`.
    ///
    /// # Errors
    ///
    /// When the claims cannot be serialized or signing fails.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, BuildError> {
        self.sign_typed(claims, "JWT")
    }

    /// Signs `claims` with the header `{"alg", "kid", "typ": typ}` (`at+jwt` for RFC 9068).
    ///
    /// # Errors
    ///
    /// When the claims cannot be serialized or signing fails.
    pub fn sign_typed<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, BuildError> {
        let header = json!({"alg": algorithm_name(self.alg), "kid": self.kid, "typ": typ});
        let payload = serde_json::to_string(claims).map_err(|e| err(format!("claims: {e}")))?;
        self.sign_raw(&header.to_string(), &payload)
    }

    /// Signs the exact header and payload text given, with this key's algorithm (whatever the
    /// header says). For tests that need unusual or hostile tokens.
    ///
    /// # Errors
    ///
    /// When signing fails.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> Result<String, BuildError> {
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let signature = self.sign_bytes(input.as_bytes())?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    /// Signs raw bytes with this key's algorithm.
    ///
    /// # Errors
    ///
    /// When signing fails.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, BuildError> {
        let rng = SystemRandom::new();
        let fail = |_| err("signing failed");
        Ok(match &self.pair {
            Pair::Rsa(k) => {
                let enc = rsa_encoding(self.alg).ok_or_else(|| err("not an RSA algorithm"))?;
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, message, &mut out).map_err(fail)?;
                out
            }
            Pair::Ec(k) => k.sign(&rng, message).map_err(fail)?.as_ref().to_vec(),
            Pair::Ed(k) => k.sign(message).as_ref().to_vec(),
            Pair::Hmac(k, _) => aws_lc_rs::hmac::sign(k, message).as_ref().to_vec(),
        })
    }
}

/// A JWKS document (`{"keys": [...]}`) of the public halves of `keys`.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Value {
    json!({"keys": keys.into_iter().map(SigningKey::public_jwk).collect::<Vec<_>>()})
}

//! [`DpopKey`]: the client side of DPoP, a key pair that makes proofs (feature `issuer`).

use super::{access_token_hash, encode_jkt, jwk_thumbprint};
use crate::error::BuildError;
use crate::issuer::SigningKey;
use crate::keys::algorithm_name;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A client's DPoP key: makes a proof for each request (RFC 9449 4.2), with the public key in
/// the proof's header.
///
/// ```
/// use auth_core::dpop::{DpopKey, DpopVerifier};
/// use auth_core::Algorithm;
///
/// let key = DpopKey::generate(Algorithm::ES256).unwrap();
/// let proof = key.proof("GET", "https://api.example/orders?page=2", Some("the-token"), None).unwrap();
/// let verifier = DpopVerifier::builder().build().unwrap();
/// let verified = verifier.verify(&proof, "GET", "https://api.example/orders", Some("the-token")).unwrap();
/// assert_eq!(verified.jkt, key.thumbprint());
/// ```
pub struct DpopKey {
    key: SigningKey,
    jwk: Map<String, Value>,
    thumbprint: [u8; 32],
}

impl fmt::Debug for DpopKey {
    // The thumbprint identifies the key without revealing anything private.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.key.algorithm())
            .field("jkt", &self.jkt())
            .finish_non_exhaustive()
    }
}

fn invalid(reason: &str) -> BuildError {
    BuildError::InvalidKey {
        kid: None,
        reason: reason.into(),
    }
}

impl DpopKey {
    /// A fresh key pair for `alg` (`ES256` is the usual choice; `ES384`, `EdDSA`, `PS*` and
    /// `RS*` work too).
    ///
    /// # Errors
    ///
    /// When `alg` is symmetric (`HS*`), or key generation fails.
    pub fn generate(alg: Algorithm) -> Result<Self, BuildError> {
        Self::new(SigningKey::generate(alg, "dpop")?)
    }

    /// A DPoP key from an existing asymmetric signing key (for example one loaded with
    /// [`SigningKey::from_pkcs8`], so that a client keeps its key across restarts).
    ///
    /// # Errors
    ///
    /// When the key is symmetric.
    pub fn new(key: SigningKey) -> Result<Self, BuildError> {
        if matches!(
            key.algorithm(),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(invalid("a DPoP key must be asymmetric"));
        }
        let Value::Object(full) = key.public_jwk() else {
            return Err(invalid("the public key is not a JWK object"));
        };
        // The proof header carries the key only: no `kid`, `use` or `alg`.
        let jwk: Map<String, Value> = full
            .into_iter()
            .filter(|(k, _)| matches!(k.as_str(), "kty" | "crv" | "x" | "y" | "n" | "e"))
            .collect();
        let thumbprint =
            jwk_thumbprint(&jwk).map_err(|_| invalid("the public key has no thumbprint"))?;
        Ok(Self {
            key,
            jwk,
            thumbprint,
        })
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The public key as it appears in the proof header.
    pub fn public_jwk(&self) -> &Map<String, Value> {
        &self.jwk
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key.
    pub fn thumbprint(&self) -> [u8; 32] {
        self.thumbprint
    }

    /// The thumbprint as an authorization server puts it in `cnf.jkt` (and as the `dpop_jkt`
    /// authorization request parameter): base64url without padding.
    pub fn jkt(&self) -> String {
        encode_jkt(&self.thumbprint)
    }

    /// A proof for one request, issued now: method `htm`, URL `htu` (its query and fragment are
    /// left out, as RFC 9449 4.2 requires), `ath` when an access token is sent, and the server's
    /// latest `DPoP-Nonce` when it asked for one.
    ///
    /// # Errors
    ///
    /// When signing fails or the system has no randomness.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, BuildError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.proof_at(htm, htu, access_token, nonce, now)
    }

    /// [`DpopKey::proof`] with `iat` given (seconds since the Unix epoch): for clients that
    /// correct for a server's clock, and for tests.
    ///
    /// # Errors
    ///
    /// When signing fails or the system has no randomness.
    pub fn proof_at(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: i64,
    ) -> Result<String, BuildError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| invalid("no randomness for `jti`"))?;
        let htu = &htu[..htu.find(['?', '#']).unwrap_or(htu.len())];
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = access_token_hash(token).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let header = json!({
            "typ": "dpop+jwt",
            "alg": algorithm_name(self.key.algorithm()),
            "jwk": self.jwk,
        });
        self.key.sign_raw(&header.to_string(), &claims.to_string())
    }
}

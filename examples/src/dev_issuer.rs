//! The embedded development issuer of `auth-demo`.
//!
//! On first use it generates an ES256 key and keeps it (PKCS#8, mode 0600) in a state directory
//! (`./.auth-demo/` by default), so tokens minted by `auth-demo token` are accepted by an
//! `auth-demo serve` started in the same directory. The key id is the key's RFC 7638 thumbprint.
//! It is for development only: a real deployment trusts its identity provider's JWKS.

use auth_core::issuer::{SigningKey, jwks};
use auth_core::keys::KeySet;
use auth_core::{Algorithm, BuildError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience of tokens the development issuer mints.
pub const AUDIENCE: &str = "auth-demo";

const KEY_FILE: &str = "issuer-es256.pk8";

/// Errors of the development issuer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    /// The state directory or key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored key is not usable.
    #[error("{path}: {source} (delete the file to generate a new key)")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: BuildError,
    },
}

/// A development issuer: identifier, signing key, and the JWKS that publishes it.
#[derive(Debug)]
pub struct DevIssuer {
    issuer: String,
    key: SigningKey,
}

impl DevIssuer {
    /// Loads the key from `state_dir`, or generates and stores one.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created, or the key cannot be read, written or parsed.
    pub fn load_or_create(
        state_dir: &Path,
        issuer: impl Into<String>,
    ) -> Result<Self, DevIssuerError> {
        let path = state_dir.join(KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DevIssuerError::Io { path, source }
        };
        let key_err = |source| DevIssuerError::Key {
            path: path.clone(),
            source,
        };
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
                let fresh = SigningKey::generate(Algorithm::ES256, "pending").map_err(key_err)?;
                let der = fresh.to_pkcs8().map_err(key_err)?;
                write_private(&path, &der).map_err(io(&path))?;
                tracing::info!(path = %path.display(), "generated a development signing key");
                der
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let probe = SigningKey::from_pkcs8(Algorithm::ES256, "probe", &der).map_err(key_err)?;
        let kid = thumbprint(&probe.public_jwk());
        let key = SigningKey::from_pkcs8(Algorithm::ES256, kid, &der).map_err(key_err)?;
        Ok(Self {
            issuer: issuer.into(),
            key,
        })
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS document publishing the public key.
    pub fn jwks(&self) -> Value {
        jwks([&self.key])
    }

    /// The key set to verify this issuer's tokens with.
    ///
    /// # Errors
    ///
    /// Never for a key this type loaded; kept fallible for symmetry with other key sources.
    pub fn key_set(&self) -> Result<KeySet, BuildError> {
        KeySet::new(vec![self.key.verifying_key()?])
    }

    /// The OIDC discovery document for an issuer served at its own identifier.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        })
    }

    /// Mints an RFC 9068 access token for `sub` with `scopes`, valid for `ttl`.
    ///
    /// # Errors
    ///
    /// When signing fails.
    pub fn mint(&self, sub: &str, scopes: &str, ttl: Duration) -> Result<String, BuildError> {
        self.mint_bound(sub, scopes, ttl, None)
    }

    /// [`DevIssuer::mint`], bound (RFC 8705 `cnf.x5t#S256`) to the client certificate with this
    /// SHA-256 thumbprint when one is given.
    ///
    /// # Errors
    ///
    /// As [`DevIssuer::mint`].
    pub fn mint_bound(
        &self,
        sub: &str,
        scopes: &str,
        ttl: Duration,
        certificate_sha256: Option<&[u8; 32]>,
    ) -> Result<String, BuildError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| BuildError::Invalid("no randomness".into()))?;
        let claims = json!({
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": sub,
            "client_id": "auth-demo",
            "scope": scopes,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        let mut claims = claims;
        if let Some(sha256) = certificate_sha256 {
            claims["cnf"] = json!({"x5t#S256": URL_SAFE_NO_PAD.encode(sha256)});
        }
        self.key.sign_typed(&claims, "at+jwt")
    }
}

/// RFC 7638 thumbprint of an EC public JWK.
fn thumbprint(jwk: &Value) -> String {
    let canonical = json!({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]});
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_kept_across_loads_and_tokens_verify() {
        let dir = std::env::temp_dir().join(format!("auth-demo-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = DevIssuer::load_or_create(&dir, "http://127.0.0.1:1").unwrap();
        let b = DevIssuer::load_or_create(&dir, "http://127.0.0.1:1").unwrap();
        assert_eq!(a.jwks(), b.jwks(), "the second load reuses the stored key");
        let token = a.mint("alice", "read", Duration::from_secs(60)).unwrap();
        let verified = auth_core::jws::verify(&token, &b.key_set().unwrap()).unwrap();
        assert_eq!(verified.header.typ.as_deref(), Some("at+jwt"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

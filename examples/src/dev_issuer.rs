//! The embedded development issuer of `auth-demo`, with rotating signing keys.
//!
//! Its keys are a [`KeyRotator`] ring kept in the demo's key store: the `--database-url` of
//! `serve` (SQLite or PostgreSQL, next to the API keys), or for `auth-demo token` its
//! `--issuer-store`. With the default `--database-url`, that is the SQLite file
//! `<state-dir>/auth.db`. `serve` notes its store in `<state-dir>/issuer-store.json` (mode
//! 0600: the URL may hold a password), which `token` without `--issuer-store` reads. So `auth-demo token` signs with the key an `auth-demo serve` in the
//! same directory verifies with, and two `serve`s on one state directory (or one PostgreSQL
//! schema) share the keys and accept each other's tokens.
//!
//! By default the key is never rotated; `serve --rotate-keys-every 1h` rotates it (the next
//! key is published in `/.well-known/jwks.json` before it signs, the old one stays published
//! until the longest-lived token it signed has expired). Key ids are RFC 7638 thumbprints.
//!
//! A key kept by earlier versions in `<state-dir>/issuer-es256.pk8` is imported into an empty
//! store on first start (the file is left in place, unused afterwards).
//!
//! The store holds **private keys**: protect it like a secret. This issuer is for development
//! only: a real deployment trusts its identity provider's JWKS.

use auth_core::Algorithm;
use auth_core::BuildError;
use auth_core::issuer::SigningKey;
use auth_core::keys::KeySet;
use auth_core::rotation::store::SigningKeyStore;
use auth_core::rotation::{KeyRotator, RotationError, RotationPolicy};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience of tokens the development issuer mints.
pub const AUDIENCE: &str = "auth-demo";

/// The key file of earlier versions, imported into an empty store.
const LEGACY_KEY_FILE: &str = "issuer-es256.pk8";

/// Errors of the development issuer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    /// The state directory or a key file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The legacy key file is not usable.
    #[error("{path}: {source} (delete the file to start with a new key)")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: BuildError,
    },
    /// The key store or the rotation failed.
    #[error("development issuer: {0}")]
    Rotation(#[from] RotationError),
    /// The key store could not be opened.
    #[error("development issuer key store: {0}")]
    Store(String),
}

/// The file in the state directory naming the store of the issuer's keys.
const STORE_FILE: &str = "issuer-store.json";

/// Where the development issuer's keys are kept: a key store URL (`sqlite://PATH` or
/// `postgres://...`) and, for PostgreSQL, a schema. `Debug` omits the URL (it may hold a
/// password).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreLocation {
    /// The key store URL.
    pub database_url: String,
    /// The PostgreSQL schema, if not the connection's default.
    pub schema: Option<String>,
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLocation")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl StoreLocation {
    /// The store of `serve`: its `--database-url` (and `--database-schema`), or
    /// `sqlite://<state_dir>/auth.db` for the default URL.
    pub fn for_serve(database_url: &str, schema: Option<&str>, state_dir: &Path) -> Self {
        if database_url == crate::keys::DEFAULT_DATABASE_URL {
            return Self::default_for(state_dir);
        }
        Self {
            database_url: database_url.to_owned(),
            schema: schema.map(str::to_owned),
        }
    }

    /// The store of `token`: `explicit` if given; otherwise the one the last `serve` on
    /// `state_dir` noted ([`StoreLocation::remember`]); otherwise
    /// `sqlite://<state_dir>/auth.db`.
    pub fn for_token(explicit: Option<&str>, schema: Option<&str>, state_dir: &Path) -> Self {
        if let Some(url) = explicit {
            return Self {
                database_url: url.to_owned(),
                schema: schema.map(str::to_owned),
            };
        }
        std::fs::read(state_dir.join(STORE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| Self::default_for(state_dir))
    }

    fn default_for(state_dir: &Path) -> Self {
        Self {
            database_url: format!("sqlite://{}", state_dir.join("auth.db").display()),
            schema: None,
        }
    }

    /// Notes this location in `<state_dir>/issuer-store.json` (mode 0600 where supported: the
    /// URL may hold a password), for `token` to find.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn remember(&self, state_dir: &Path) -> Result<(), DevIssuerError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DevIssuerError::Io { path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let path = state_dir.join(STORE_FILE);
        let tmp = state_dir.join(format!("{STORE_FILE}.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec(self).map_err(|e| DevIssuerError::Store(e.to_string()))?;
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Opens (creating and migrating it when needed) the store.
    ///
    /// # Errors
    ///
    /// When the URL is neither SQLite nor PostgreSQL, or the store cannot be opened or
    /// migrated.
    pub async fn open(&self) -> Result<Arc<dyn SigningKeyStore>, DevIssuerError> {
        use auth_core::apikey::sql::{PostgresStore, SqliteStore};
        let store_err =
            |e: auth_core::apikey::store::StoreError| DevIssuerError::Store(e.to_string());
        let url = &self.database_url;
        if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = Path::new(file).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| DevIssuerError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let store = SqliteStore::connect(url).await.map_err(store_err)?;
            // The store now holds private keys: a database made before (by `keys`, or an
            // older demo) may be readable by others.
            restrict_to_owner(Path::new(file)).map_err(|source| DevIssuerError::Io {
                path: file.into(),
                source,
            })?;
            Ok(Arc::new(store))
        } else if crate::keys::is_postgres(url) {
            let store = match &self.schema {
                Some(schema) => PostgresStore::connect_with_schema(url, schema).await,
                None => PostgresStore::connect(url).await,
            };
            Ok(Arc::new(store.map_err(store_err)?))
        } else {
            Err(DevIssuerError::Store(
                "the key store URL must be sqlite://PATH or postgres://...".into(),
            ))
        }
    }
}

/// Makes a SQLite database and its WAL files readable by their owner only (Unix).
fn restrict_to_owner(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
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

/// A development issuer: identifier and rotating signing keys.
#[derive(Debug)]
pub struct DevIssuer {
    issuer: String,
    rotator: Arc<KeyRotator>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        if let Some(t) = self
            .ticker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

impl DevIssuer {
    /// Opens the issuer's key ring in `store` with `policy`: a store without keys gets the key
    /// of `<state_dir>/issuer-es256.pk8` when that file exists, a new key otherwise.
    ///
    /// # Errors
    ///
    /// When the legacy key file cannot be read or parsed, the policy is unusable, or the store
    /// fails.
    pub async fn open(
        store: Arc<dyn SigningKeyStore>,
        state_dir: &Path,
        issuer: impl Into<String>,
        policy: RotationPolicy,
    ) -> Result<Self, DevIssuerError> {
        let path = state_dir.join(LEGACY_KEY_FILE);
        let rotator = match std::fs::read(&path) {
            Ok(der) => {
                let legacy =
                    SigningKey::from_pkcs8(Algorithm::ES256, "legacy", &der).map_err(|source| {
                        DevIssuerError::Key {
                            path: path.clone(),
                            source,
                        }
                    })?;
                KeyRotator::open_with_first_key(store, policy, &legacy).await?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                KeyRotator::open(store, policy).await?
            }
            Err(source) => return Err(DevIssuerError::Io { path, source }),
        };
        Ok(Self {
            issuer: issuer.into(),
            rotator: Arc::new(rotator),
            ticker: Mutex::new(None),
        })
    }

    /// Rotates (and reloads) the keys in the background every `every`, until the issuer is
    /// dropped.
    pub fn spawn(&self, every: Duration) {
        let task = self.rotator.clone().spawn(every);
        if let Some(old) = self
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key ring.
    pub fn rotator(&self) -> &Arc<KeyRotator> {
        &self.rotator
    }

    /// The JWKS document publishing the public keys (next, current and retired), as of now.
    pub fn jwks(&self) -> Value {
        self.rotator.jwks()
    }

    /// The keys to verify this issuer's tokens with, as of now.
    pub fn key_set(&self) -> Arc<KeySet> {
        self.rotator.key_set()
    }

    /// The longest lifetime of a token this issuer mints now.
    pub fn max_token_lifetime(&self) -> Duration {
        self.rotator.max_token_lifetime()
    }

    /// The OIDC discovery document for an issuer served at its own identifier.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "id_token_signing_alg_values_supported": [
                auth_core::keys::algorithm_name(self.rotator.policy().key_algorithm())
            ],
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        })
    }

    /// Mints an RFC 9068 access token for `sub` with `scopes`, valid for `ttl`, with the
    /// current key.
    ///
    /// # Errors
    ///
    /// When `ttl` exceeds [`DevIssuer::max_token_lifetime`] (the key would be unpublished
    /// before the token expires), or signing fails.
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
        let max = self.max_token_lifetime();
        if ttl > max {
            return Err(BuildError::Invalid(format!(
                "a lifetime of {} s exceeds the issuer's longest token lifetime ({} s)",
                ttl.as_secs(),
                max.as_secs()
            )));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| BuildError::Invalid("no randomness".into()))?;
        let mut claims = json!({
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
        if let Some(sha256) = certificate_sha256 {
            claims["cnf"] = json!({"x5t#S256": URL_SAFE_NO_PAD.encode(sha256)});
        }
        self.rotator.signer().sign_typed(&claims, "at+jwt")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("auth-demo-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn keys_are_kept_in_the_store_and_tokens_verify() {
        let dir = temp_dir("store");
        let open = || async {
            let store = StoreLocation::for_token(None, None, &dir)
                .open()
                .await
                .unwrap();
            DevIssuer::open(store, &dir, "http://127.0.0.1:1", RotationPolicy::never())
                .await
                .unwrap()
        };
        let a = open().await;
        let b = open().await;
        assert_eq!(a.jwks(), b.jwks(), "the second open reuses the stored key");
        let token = a.mint("alice", "read", Duration::from_secs(60)).unwrap();
        let verified = auth_core::jws::verify(&token, &b.key_set()).unwrap();
        assert_eq!(verified.header.typ.as_deref(), Some("at+jwt"));
        assert!(
            a.mint("alice", "read", Duration::from_secs(2 * 3600))
                .is_err(),
            "longer than the longest token lifetime"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The store holds private keys: its files are the owner's only, also when a database
    /// created before (readable by others) is reused.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_sqlite_store_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("private");
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("auth.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = StoreLocation::for_token(None, None, &dir)
            .open()
            .await
            .unwrap();
        DevIssuer::open(store, &dir, "http://127.0.0.1:1", RotationPolicy::never())
            .await
            .unwrap();
        for name in ["auth.db", "auth.db-wal", "auth.db-shm"] {
            let Ok(meta) = std::fs::metadata(dir.join(name)) else {
                continue;
            };
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{name}");
        }
        let fresh = temp_dir("fresh");
        std::fs::create_dir_all(&fresh).unwrap();
        let url = format!("sqlite://{}/new.db", fresh.display());
        auth_core::apikey::sql::SqliteStore::connect(&url)
            .await
            .unwrap();
        let mode = std::fs::metadata(fresh.join("new.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "a new database is created private");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&fresh).unwrap();
    }

    #[test]
    fn token_finds_the_store_serve_noted() {
        let dir = temp_dir("noted");
        let default = StoreLocation::for_token(None, None, &dir);
        assert_eq!(
            default,
            StoreLocation::for_serve(crate::keys::DEFAULT_DATABASE_URL, None, &dir)
        );
        assert!(default.database_url.ends_with("/auth.db"));
        let pg = StoreLocation::for_serve("postgres://u:secret@db/app", Some("auth"), &dir);
        pg.remember(&dir).unwrap();
        assert_eq!(StoreLocation::for_token(None, None, &dir), pg);
        assert!(!format!("{pg:?}").contains("secret"), "Debug hides the URL");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(STORE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by the owner only");
        }
        let explicit = StoreLocation::for_token(Some("sqlite://x.db"), None, &dir);
        assert_eq!(explicit.database_url, "sqlite://x.db");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_legacy_key_file_is_imported() {
        let dir = temp_dir("legacy");
        std::fs::create_dir_all(&dir).unwrap();
        let legacy = SigningKey::generate(Algorithm::ES256, "x").unwrap();
        std::fs::write(dir.join(LEGACY_KEY_FILE), legacy.to_pkcs8().unwrap()).unwrap();
        let store = StoreLocation::for_token(None, None, &dir)
            .open()
            .await
            .unwrap();
        let issuer = DevIssuer::open(store, &dir, "http://127.0.0.1:1", RotationPolicy::never())
            .await
            .unwrap();
        assert_eq!(
            issuer.rotator().signer().to_pkcs8().unwrap(),
            legacy.to_pkcs8().unwrap()
        );
        assert_eq!(
            Some(issuer.rotator().signer().kid().to_owned()),
            auth_core::rotation::thumbprint(&legacy.public_jwk()),
            "the key id stays the thumbprint, as before"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

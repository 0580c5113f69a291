//! A rustls server configuration for mutual TLS that reloads its files without a restart.
//!
//! [`ReloadingTls`] reads the server certificate chain and key, the CA bundles that client
//! certificates must chain to, and CRLs ([`TlsFiles`]). It builds one
//! [`rustls::ServerConfig`] (ALPN `h2` and `http/1.1`) whose client-certificate verifier and
//! certificate resolver read the *current* state from lock-free snapshots, so that
//! [`ReloadingTls::reload`] (or [`ReloadingTls::watch`], which polls the files) changes what new
//! handshakes see while connections already established carry on untouched.
//!
//! - A reload re-reads every file and replaces everything at once, or nothing: on any error
//!   the last good configuration stays in force, and the error (naming the file, never key
//!   material) is returned and logged at `WARN` with target `auth::tls`. A successful reload
//!   logs at `INFO` what changed.
//! - A CA removed from the bundles stops being trusted for new handshakes, resumed sessions
//!   included: the server's session cache is emptied whenever the files change, because a
//!   resumed TLS session is not re-validated.
//! - Client certificates are validated by the current [`TrustStore`] (the same validation as
//!   [`TrustStore::verify_client`] and the trusted-proxy mode), at the time of the handshake.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
//! use auth_core::mtls::trust::TrustError;
//! use std::time::Duration;
//! # let dir = std::env::temp_dir().join(format!("auth-core-doc-tls-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! # ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
//! # let server_key = rcgen::KeyPair::generate()?;
//! # let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?
//! #     .signed_by(&server_key, &ca)?;
//! # std::fs::write(dir.join("server.pem"), server.pem())?;
//! # std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;
//! # std::fs::write(dir.join("clients-ca.pem"), ca.pem())?;
//! let tls = ReloadingTls::load(
//!     TlsFiles {
//!         cert: dir.join("server.pem"),
//!         key: dir.join("server.key"),
//!         client_ca: vec![dir.join("clients-ca.pem")],
//!         crls: vec![],
//!     },
//!     ClientAuth::Required,
//! )?;
//! let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
//! let watcher = tls.watch(Duration::from_secs(5)); // picks up rotated files
//!
//! // A broken bundle is refused and the last good configuration stays in force.
//! std::fs::write(dir.join("clients-ca.pem"), "not a certificate")?;
//! let err = tls.reload().unwrap_err();
//! assert!(matches!(err, TrustError::NoCertificate { .. }));
//! assert!(err.to_string().contains("clients-ca.pem"));
//! assert_eq!(tls.trust().ca_certificates().len(), 1);
//! # watcher.abort();
//! # drop(acceptor);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use super::trust::{CertError, TrustError, TrustStore, pem_certificates, sha256};
use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::StoresServerSessions;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// Sessions kept for resumption (per cache generation; the cache is replaced on every change).
const SESSION_CACHE_SIZE: usize = 256;

/// The files of a TLS server with client authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundles (PEM) that client certificates must chain to; at least one.
    pub client_ca: Vec<PathBuf>,
    /// CRLs (PEM or DER) of those CAs; may be empty.
    pub crls: Vec<PathBuf>,
}

/// Whether the TLS handshake requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client may connect without a certificate (the request must then authenticate
    /// otherwise); a certificate that is presented must still be valid, or the handshake fails.
    Optional,
    /// A client must present a valid certificate.
    Required,
}

/// A rustls server configuration whose certificates, trust store and CRLs are reloaded from
/// their files without a restart. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ReloadingTls {
    inner: Arc<Inner>,
}

/// A function called after every reload that changed what is in force.
type ReloadHook = Arc<dyn Fn() + Send + Sync>;

struct Inner {
    files: TlsFiles,
    client_auth: ClientAuth,
    provider: Arc<CryptoProvider>,
    live: Arc<Live>,
    config: Arc<ServerConfig>,
    state: Mutex<ReloadState>,
    hooks: Mutex<Vec<ReloadHook>>,
}

/// What handshakes read: swapped as a whole on reload.
struct Live {
    trust: ArcSwap<TrustStore>,
    cert: ArcSwap<CertifiedKey>,
    sessions: ArcSwap<ServerSessionMemoryCache>,
}

/// Which file contents were applied, or refused, last (for [`ReloadingTls::watch`]).
struct ReloadState {
    applied: [u8; 32],
    refused: Option<[u8; 32]>,
    read_error: Option<String>,
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.inner.files)
            .field("client_auth", &self.inner.client_auth)
            .field("trust", &*self.inner.live.trust.load())
            .finish_non_exhaustive()
    }
}

/// The contents of every file, read in one go.
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    cas: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        // Best effort: do not leave the key file's bytes in freed memory.
        self.key.fill(0);
        std::hint::black_box(&self.key);
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    |source| TrustError::Io {
        file: path.to_path_buf(),
        source,
    }
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Self, TrustError> {
        let read = |path: &Path| std::fs::read(path).map_err(io_error(path));
        Ok(Self {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            cas: files
                .client_ca
                .iter()
                .map(|p| read(p))
                .collect::<Result<_, _>>()?,
            crls: files
                .crls
                .iter()
                .map(|p| read(p))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn read_async(files: &TlsFiles) -> Result<Self, TrustError> {
        async fn read(path: &Path) -> Result<Vec<u8>, TrustError> {
            tokio::fs::read(path).await.map_err(io_error(path))
        }
        let mut cas = Vec::with_capacity(files.client_ca.len());
        for path in &files.client_ca {
            cas.push(read(path).await?);
        }
        let mut crls = Vec::with_capacity(files.crls.len());
        for path in &files.crls {
            crls.push(read(path).await?);
        }
        Ok(Self {
            cert: read(&files.cert).await?,
            key: read(&files.key).await?,
            cas,
            crls,
        })
    }

    /// A hash over every file's contents (length-prefixed, in order).
    fn digest(&self) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let parts = [&self.cert, &self.key]
            .into_iter()
            .chain(&self.cas)
            .chain(&self.crls);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn build(&self, files: &TlsFiles, provider: &CryptoProvider) -> Result<Loaded, TrustError> {
        fn pairs<'a>(paths: &'a [PathBuf], data: &'a [Vec<u8>]) -> Vec<(&'a Path, &'a [u8])> {
            paths
                .iter()
                .map(PathBuf::as_path)
                .zip(data.iter().map(Vec::as_slice))
                .collect()
        }
        let trust = TrustStore::from_contents(
            &pairs(&files.client_ca, &self.cas),
            &pairs(&files.crls, &self.crls),
        )?;
        let chain = pem_certificates(&self.cert, Some(&files.cert))?;
        if chain.is_empty() {
            return Err(TrustError::NoCertificate {
                file: Some(files.cert.clone()),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TrustError::BadKey {
            file: files.key.clone(),
            reason: match e {
                pem::Error::NoItemsFound => {
                    "no private key found (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or \
                     `EC PRIVATE KEY` block)"
                }
                _ => "the private key is not well-formed PEM",
            },
        })?;
        let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TrustError::KeyMismatch {
                key: files.key.clone(),
                cert: files.cert.clone(),
            },
            rustls::Error::InvalidCertificate(_) => TrustError::BadCertificate {
                file: Some(files.cert.clone()),
                index: 1,
                reason: CertError::BadEncoding,
            },
            _ => TrustError::BadKey {
                file: files.key.clone(),
                reason: "the private key cannot be used (unsupported type or malformed)",
            },
        })?;
        Ok(Loaded {
            trust,
            cert: certified,
        })
    }
}

struct Loaded {
    trust: TrustStore,
    cert: CertifiedKey,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn leaf_digest(key: &CertifiedKey) -> [u8; 32] {
    key.cert.first().map_or([0; 32], |c| sha256(c))
}

impl ReloadingTls {
    /// Reads every file and builds the server configuration.
    ///
    /// # Errors
    ///
    /// A [`TrustError`] naming the file that cannot be read or used: no CA in a bundle, bad
    /// PEM, a bad CRL, no certificate or key, or a key that does not match the certificate.
    pub fn load(files: TlsFiles, client_auth: ClientAuth) -> Result<Self, TrustError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let contents = Contents::read(&files)?;
        let loaded = contents.build(&files, &provider)?;
        let live = Arc::new(Live {
            trust: ArcSwap::from_pointee(loaded.trust),
            cert: ArcSwap::from_pointee(loaded.cert),
            sessions: ArcSwap::new(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE)),
        });
        let verifier = Arc::new(CurrentTrust {
            live: Arc::clone(&live),
            mandatory: client_auth == ClientAuth::Required,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TrustError::Tls)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(CurrentCert {
                live: Arc::clone(&live),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = Arc::new(CurrentSessions {
            live: Arc::clone(&live),
        });
        {
            let trust = live.trust.load();
            tracing::info!(
                target: "auth::tls",
                cas = trust.ca_certificates().len(),
                crls = trust.crl_count(),
                server_cert_sha256 = %hex(&leaf_digest(&live.cert.load())),
                ?client_auth,
                "TLS configuration loaded"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                client_auth,
                provider,
                live,
                config: Arc::new(config),
                state: Mutex::new(ReloadState {
                    applied: contents.digest(),
                    refused: None,
                    read_error: None,
                }),
                hooks: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The server configuration, built once: hand it to `tokio_rustls::TlsAcceptor::from`,
    /// hyper, axum-server, actix-web or tonic. It always uses the current files; there is no
    /// need to fetch it again after a reload. To change other settings, clone the
    /// configuration (`ServerConfig` is `Clone`): the clone still follows reloads.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.inner.config)
    }

    /// The current trust store, for the trusted-proxy mode
    /// ([`TrustedProxy`](super::trust::TrustedProxy)) and other authenticators.
    pub fn trust(&self) -> Arc<TrustStore> {
        self.inner.live.trust.load_full()
    }

    /// Calls `hook` after every reload that changed the files in force, e.g.
    /// [`Mtls::invalidate`](crate::mtls::Mtls::invalidate), so that principals cached under the
    /// old trust store (pinned trust domains, CRLs) are computed again.
    pub fn on_reload(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(hook));
    }

    /// The files this configuration reads.
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// Re-reads every file and, when all of them are usable, puts them in force for new
    /// handshakes. Established connections are not affected.
    ///
    /// # Errors
    ///
    /// The first problem found (see [`ReloadingTls::load`]); the last good configuration then
    /// stays in force. The error is also logged at `WARN` (target `auth::tls`).
    pub fn reload(&self) -> Result<(), TrustError> {
        let contents = Contents::read(&self.inner.files);
        let mut state = self.state();
        match contents {
            Ok(contents) => self.apply(&contents, &mut state),
            Err(e) => {
                warn_refused(&e);
                Err(e)
            }
        }
    }

    /// Polls the files every `every` (at least 10 ms) in a background task and reloads when
    /// their contents change. Contents are compared by hash, so both a rewrite in place and a
    /// replacement by atomic rename are seen. A file that cannot be read (for instance missing
    /// for a moment during a rename) or contents that cannot be used keep the last good
    /// configuration; each such problem is logged once at `WARN`, and the files are read again
    /// at the next poll.
    ///
    /// The task ends when every clone of this `ReloadingTls` has been dropped, or when the
    /// returned handle is aborted.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let contents = Contents::read_async(&inner.files).await;
                Self { inner }.poll(contents);
            }
        })
    }

    fn state(&self) -> MutexGuard<'_, ReloadState> {
        // The state is a few hashes; a panic while it was held cannot leave it inconsistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One poll of [`ReloadingTls::watch`].
    fn poll(&self, contents: Result<Contents, TrustError>) {
        let mut state = self.state();
        let contents = match contents {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                if state.read_error.as_deref() == Some(message.as_str()) {
                    tracing::debug!(target: "auth::tls", error = %e, "TLS files still unreadable");
                } else {
                    warn_refused(&e);
                    state.read_error = Some(message);
                }
                return;
            }
        };
        state.read_error = None;
        let digest = contents.digest();
        if digest == state.applied || Some(digest) == state.refused {
            return;
        }
        // The error has been logged and is kept in `state`: the watcher has no caller to
        // return it to.
        let _ = self.apply(&contents, &mut state);
    }

    fn apply(&self, contents: &Contents, state: &mut ReloadState) -> Result<(), TrustError> {
        let digest = contents.digest();
        let loaded = match contents.build(&self.inner.files, &self.inner.provider) {
            Ok(loaded) => loaded,
            Err(e) => {
                warn_refused(&e);
                state.refused = Some(digest);
                return Err(e);
            }
        };
        let live = &self.inner.live;
        let old_trust = live.trust.load_full();
        let old_cert = leaf_digest(&live.cert.load());
        let new_cert = leaf_digest(&loaded.cert);
        let added = loaded
            .trust
            .ca_digests()
            .iter()
            .filter(|d| !old_trust.ca_digests().contains(d))
            .count();
        let removed = old_trust
            .ca_digests()
            .iter()
            .filter(|d| !loaded.trust.ca_digests().contains(d))
            .count();
        let crls_changed = old_trust.crl_digests() != loaded.trust.crl_digests();
        let cert_changed = old_cert != new_cert;
        let files_changed = digest != state.applied;
        let (cas, crls) = (
            loaded.trust.ca_certificates().len(),
            loaded.trust.crl_count(),
        );
        live.trust.store(Arc::new(loaded.trust));
        live.cert.store(Arc::new(loaded.cert));
        state.applied = digest;
        state.refused = None;
        if files_changed {
            // Resumed sessions are not re-validated: drop them so that every new connection
            // is checked against what is now in force.
            live.sessions
                .store(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE));
            let hooks = self
                .inner
                .hooks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            for hook in hooks {
                hook();
            }
            tracing::info!(
                target: "auth::tls",
                cas,
                cas_added = added,
                cas_removed = removed,
                crls,
                crls_changed,
                server_cert_changed = cert_changed,
                server_cert_sha256 = %hex(&new_cert),
                "TLS configuration reloaded"
            );
        } else {
            tracing::debug!(target: "auth::tls", "TLS files re-read: nothing changed");
        }
        Ok(())
    }
}

fn warn_refused(e: &TrustError) {
    let file = e
        .file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    tracing::warn!(
        target: "auth::tls",
        file = %file,
        error = %e,
        "TLS configuration not reloaded: keeping the last good one"
    );
}

// ---------------------------------------------------------------------------------------------
// rustls hooks reading the current state
// ---------------------------------------------------------------------------------------------

/// The client-certificate verifier: the current [`TrustStore`].
struct CurrentTrust {
    live: Arc<Live>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for CurrentTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentTrust")
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

fn to_rustls(e: CertError) -> rustls::Error {
    let cert_error = match e {
        CertError::Expired => CertificateError::Expired,
        CertError::NotYetValid => CertificateError::NotValidYet,
        CertError::UnknownIssuer => CertificateError::UnknownIssuer,
        CertError::Revoked => CertificateError::Revoked,
        CertError::WrongUsage => CertificateError::InvalidPurpose,
        CertError::BadEncoding => CertificateError::BadEncoding,
        CertError::BadSignature => CertificateError::BadSignature,
        _ => CertificateError::Other(rustls::OtherError(Arc::new(e))),
    };
    rustls::Error::InvalidCertificate(cert_error)
}

impl ClientCertVerifier for CurrentTrust {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No hints: the trust store can change under a running configuration, and an empty list
    /// tells clients to send whatever certificate they have.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .live
            .trust
            .load()
            .verify_client(end_entity, intermediates, now)
        {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(e) => {
                tracing::info!(
                    target: "auth::tls",
                    reason = e.as_str(),
                    "client certificate refused: {e}"
                );
                Err(to_rustls(e))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate resolver: the current certificate and key.
struct CurrentCert {
    live: Arc<Live>,
}

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCert").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.live.cert.load_full())
    }
}

/// The session cache: the current generation, replaced on every change of the files.
struct CurrentSessions {
    live: Arc<Live>,
}

impl fmt::Debug for CurrentSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSessions").finish_non_exhaustive()
    }
}

impl StoresServerSessions for CurrentSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.live.sessions.load().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.live.sessions.load().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.live.sessions.load().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

//! Trust stores for client certificates: CA bundles and CRLs, chain validation through
//! `rustls-webpki`, and the trusted-proxy mode for certificates forwarded by a TLS-terminating
//! proxy.
//!
//! A [`TrustStore`] holds the CA certificates of one or several PEM bundles (during a CA
//! rotation the old and the new CA overlap) and any number of CRLs. [`TrustStore::verify_client`]
//! builds and checks the chain from a client certificate to one of those CAs: signatures,
//! validity at the given time, basic and name constraints, path length, the `clientAuth`
//! extended key usage, and revocation. A refusal is a small [`CertError`] that is safe to show
//! and log: it never carries certificate bytes.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::mtls::trust::{CertError, TrustStore};
//! use rustls_pki_types::UnixTime;
//! # fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
//! #     let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
//! #     p.distinguished_name.push(rcgen::DnType::CommonName, name);
//! #     p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! #     rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap()
//! # }
//! # fn client(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> rcgen::Certificate {
//! #     let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
//! #     p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
//! #     p.signed_by(&rcgen::KeyPair::generate().unwrap(), issuer).unwrap()
//! # }
//! # let (our_ca, other_ca) = (ca("our CA"), ca("other CA"));
//! # let ca_pem = our_ca.pem();
//! # let (alice, mallory) = (client(&our_ca), client(&other_ca));
//! let store = TrustStore::from_pem(ca_pem.as_bytes())?;
//! store.verify_client(alice.der(), &[], UnixTime::now())?;
//!
//! // A certificate from a CA the store does not hold is refused (the connection or request
//! // then gets a 401 `invalid_token`).
//! assert_eq!(
//!     store.verify_client(mallory.der(), &[], UnixTime::now()),
//!     Err(CertError::UnknownIssuer)
//! );
//! # Ok(()) }
//! ```
//!
//! # Trusted proxies
//!
//! When TLS ends at a proxy (nginx, a load balancer), the proxy can forward the client
//! certificate in a header. [`TrustedProxy`] reads that header only from the proxy addresses it
//! is configured with, and validates the certificate against the [`TrustStore`] itself: the
//! proxy's own validation is not relied upon. From any other address the header is ignored, so
//! a client that reaches the service directly cannot claim a certificate by sending it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::mtls::trust::{TrustStore, TrustedProxy};
//! use rustls_pki_types::UnixTime;
//! # let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! # p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate()?)?;
//! # let leaf = rcgen::CertificateParams::new(Vec::<String>::new())?
//! #     .signed_by(&rcgen::KeyPair::generate()?, &ca)?;
//! # let store = TrustStore::from_pem(ca.pem().as_bytes())?;
//! // nginx: proxy_set_header X-Forwarded-Client-Cert $ssl_client_escaped_cert;
//! let proxy = TrustedProxy::new(["10.0.0.0/8".parse()?]);
//! let mut headers = http::HeaderMap::new();
//! let escaped = leaf.pem().replace('\n', "%0A").replace(' ', "%20").replace('+', "%2B");
//! headers.insert("x-forwarded-client-cert", escaped.parse()?);
//!
//! let from_proxy = proxy.peer_from(&headers, "10.1.2.3".parse()?, &store, UnixTime::now())?;
//! assert_eq!(from_proxy.map(|p| p.der().to_vec()), Some(leaf.der().to_vec()));
//!
//! // The same header from a client that is not the proxy is ignored.
//! let direct = proxy.peer_from(&headers, "203.0.113.9".parse()?, &store, UnixTime::now())?;
//! assert!(direct.is_none());
//! # Ok(()) }
//! ```

use crate::credentials::{HeaderSource, PeerCertificate};
use crate::error::BuildError;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a certificate chain was refused. Safe to show and to log: no variant carries
/// certificate bytes or names taken from the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// A certificate of the chain has expired (the time is after its `notAfter`).
    Expired,
    /// A certificate of the chain is not valid yet (the time is before its `notBefore`).
    NotYetValid,
    /// No chain leads to a trusted CA.
    UnknownIssuer,
    /// A certificate of the chain is listed on a CRL of its issuer.
    Revoked,
    /// The certificate's extended key usage does not allow client authentication.
    WrongUsage,
    /// A certificate (or the forwarded certificate header) is not well-formed.
    BadEncoding,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A signature or key algorithm in the chain is not supported (or too weak).
    UnsupportedAlgorithm,
    /// The certificate violates the name constraints of a CA in its chain.
    NameConstraints,
    /// Any other reason, described in a fixed text.
    Other(&'static str),
}

impl CertError {
    /// A short reason code for audit events and metrics (`expired`, `unknown_issuer`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Revoked => "revoked",
            Self::WrongUsage => "wrong_usage",
            Self::BadEncoding => "bad_encoding",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::NameConstraints => "name_constraints",
            Self::Other(_) => "invalid_certificate",
        }
    }

    /// Maps a `rustls-webpki` error (the one place where that is done).
    #[allow(deprecated)] // the deprecated variants are still returned by some code paths
    pub(crate) fn from_webpki(error: &webpki::Error) -> Self {
        use webpki::Error as E;
        match error {
            E::CertExpired { .. } => Self::Expired,
            E::CertNotValidYet { .. } => Self::NotYetValid,
            E::UnknownIssuer => Self::UnknownIssuer,
            E::CertRevoked => Self::Revoked,
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
                Self::WrongUsage
            }
            E::BadDer
            | E::BadDerTime
            | E::TrailingData(_)
            | E::MalformedExtensions
            | E::ExtensionValueInvalid
            | E::UnsupportedCertVersion
            | E::InvalidSerialNumber
            | E::MalformedDnsIdentifier
            | E::InvalidCertValidity => Self::BadEncoding,
            E::InvalidSignatureForPublicKey => Self::BadSignature,
            E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | E::SignatureAlgorithmMismatch => Self::UnsupportedAlgorithm,
            E::NameConstraintViolation
            | E::MalformedNameConstraint
            | E::InvalidNetworkMaskConstraint => Self::NameConstraints,
            E::CaUsedAsEndEntity => Self::Other("a CA certificate was presented as the leaf"),
            E::EndEntityUsedAsCa => Self::Other("an end-entity certificate was used as a CA"),
            E::PathLenConstraintViolated => Self::Other("the path length constraint is violated"),
            E::UnsupportedCriticalExtension => {
                Self::Other("a certificate has an unsupported critical extension")
            }
            E::CertDistrusted => Self::Other("a certificate's key is distrusted"),
            E::MaximumPathBuildCallsExceeded
            | E::MaximumPathDepthExceeded
            | E::MaximumSignatureChecksExceeded
            | E::MaximumNameConstraintComparisonsExceeded => {
                Self::Other("the chain is too complex to validate")
            }
            E::UnknownRevocationStatus => Self::Other("the revocation status is unknown"),
            E::CrlExpired { .. } => Self::Other("the CRL has expired"),
            E::IssuerNotCrlSigner
            | E::InvalidCrlSignatureForPublicKey
            | E::UnsupportedCrlSignatureAlgorithm
            | E::UnsupportedCrlSignatureAlgorithmContext(_)
            | E::UnsupportedCrlSignatureAlgorithmForPublicKey
            | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
            | E::InvalidCrlNumber
            | E::UnsupportedCrlIssuingDistributionPoint
            | E::UnsupportedCrlVersion
            | E::UnsupportedDeltaCrl
            | E::UnsupportedIndirectCrl
            | E::UnsupportedRevocationReason
            | E::UnsupportedRevocationReasonsPartitioning => {
                Self::Other("the issuer's CRL is not acceptable")
            }
            E::CertNotValidForName(_) | E::UnsupportedNameType => {
                Self::Other("the certificate is not valid for the expected name")
            }
            _ => Self::Other("the certificate chain is not acceptable"),
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "the certificate (or one in its chain) has expired",
            Self::NotYetValid => "the certificate (or one in its chain) is not valid yet",
            Self::UnknownIssuer => "the certificate is not issued by a trusted CA",
            Self::Revoked => "the certificate (or one in its chain) is revoked",
            Self::WrongUsage => "the certificate's extended key usage does not allow this use",
            Self::BadEncoding => "the certificate is malformed",
            Self::BadSignature => "a signature in the certificate chain is invalid",
            Self::UnsupportedAlgorithm => "the certificate uses an unsupported algorithm",
            Self::NameConstraints => "the certificate violates a CA's name constraints",
            Self::Other(reason) => reason,
        })
    }
}

impl std::error::Error for CertError {}

/// Why a trust store (or a TLS configuration) could not be built from its files. The message
/// names the file and what is wrong with it; it never contains key material.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrustError {
    /// A file could not be read.
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No CA bundle was given at all.
    NoBundle,
    /// A bundle (or the server certificate file) holds no certificate.
    NoCertificate {
        /// The file, or `None` for in-memory data.
        file: Option<PathBuf>,
    },
    /// Malformed PEM.
    BadPem {
        /// The file, or `None` for in-memory data.
        file: Option<PathBuf>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A certificate that cannot be used (as a CA, or as the server's certificate).
    BadCertificate {
        /// The file, or `None` for in-memory data.
        file: Option<PathBuf>,
        /// Its position in the file, from 1.
        index: usize,
        /// What is wrong.
        reason: CertError,
    },
    /// A CRL file (or CRL data) holds no CRL.
    NoCrl {
        /// The file, or `None` for in-memory data.
        file: Option<PathBuf>,
    },
    /// A CRL that cannot be parsed or uses unsupported features.
    BadCrl {
        /// The file, or `None` for in-memory data.
        file: Option<PathBuf>,
        /// Its position in the file, from 1.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The server's private key cannot be used.
    BadKey {
        /// The key file.
        file: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The server's private key does not match its certificate.
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// rustls refused the configuration.
    Tls(rustls::Error),
}

impl TrustError {
    /// The file concerned, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Io { file, .. } | Self::BadKey { file, .. } => Some(file),
            Self::KeyMismatch { key, .. } => Some(key),
            Self::NoCertificate { file }
            | Self::BadPem { file, .. }
            | Self::BadCertificate { file, .. }
            | Self::NoCrl { file }
            | Self::BadCrl { file, .. } => file.as_deref(),
            Self::NoBundle | Self::Tls(_) => None,
        }
    }
}

struct Origin<'a>(Option<&'a Path>, &'static str);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str(self.1),
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { file, source } => write!(f, "cannot read {}: {source}", file.display()),
            Self::NoBundle => f.write_str("no CA bundle was given"),
            Self::NoCertificate { file } => write!(
                f,
                "{}: no certificate found (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
                Origin(file.as_deref(), "PEM bundle")
            ),
            Self::BadPem { file, reason } => {
                write!(
                    f,
                    "{}: malformed PEM: {reason}",
                    Origin(file.as_deref(), "PEM data")
                )
            }
            Self::BadCertificate {
                file,
                index,
                reason,
            } => write!(
                f,
                "{}: certificate #{index} cannot be used: {reason}",
                Origin(file.as_deref(), "PEM bundle")
            ),
            Self::NoCrl { file } => write!(
                f,
                "{}: no CRL found (expected DER, or PEM `-----BEGIN X509 CRL-----` blocks)",
                Origin(file.as_deref(), "CRL data")
            ),
            Self::BadCrl {
                file,
                index,
                reason,
            } => write!(
                f,
                "{}: CRL #{index} cannot be used: {reason}",
                Origin(file.as_deref(), "CRL data")
            ),
            Self::BadKey { file, reason } => write!(f, "{}: {reason}", file.display()),
            Self::KeyMismatch { key, cert } => write!(
                f,
                "{}: the private key does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            Self::Tls(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for TrustError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::BadCertificate { reason, .. } => Some(reason),
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// A fixed description of a PEM error (the library's own messages may quote a line).
pub(crate) fn pem_problem(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "the data cannot be read as PEM",
    }
}

/// Reads every PEM certificate of `data`; `Err` names `file` and what is wrong.
pub(crate) fn pem_certificates(
    data: &[u8],
    file: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(data) {
        match item {
            Ok(cert) => certs.push(cert),
            Err(e) => {
                return Err(TrustError::BadPem {
                    file: file.map(Path::to_path_buf),
                    reason: pem_problem(&e),
                });
            }
        }
    }
    Ok(certs)
}

// ---------------------------------------------------------------------------------------------
// Trust store
// ---------------------------------------------------------------------------------------------

/// What a certificate is being validated for: the extended key usage it must allow (when it
/// has that extension at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// TLS client authentication (`id-kp-clientAuth`): what [`TrustStore::verify_client`]
    /// checks.
    ClientAuth,
    /// TLS server authentication (`id-kp-serverAuth`), for callers that validate servers
    /// (and conformance suites written for them).
    ServerAuth,
}

/// The CAs (and CRLs) that client certificates are validated against.
///
/// Built from PEM bundles ([`TrustStore::from_pem`], [`TrustStore::with_pem`],
/// [`TrustStore::load`]); never empty. Cheap to share behind an `Arc`; a
/// [`ReloadingTls`](super::server::ReloadingTls) swaps in a new one when its files change.
///
/// What is checked, and the policy choices made:
///
/// - The CA certificates are trust anchors: only their subject, public key and name
///   constraints count (RFC 5280 6.1.1, as in `rustls-webpki`); their validity period and
///   other extensions are not checked. Take a CA out of the bundle to stop trusting it.
/// - The chain: signatures, validity at the given time, basic constraints, path length (at
///   most 6 intermediates), name constraints (DNS and IP; `rustls-webpki` refuses chains whose
///   CAs constrain e-mail, URI or directory names, failing closed), unknown critical
///   extensions; the leaf's extended key usage must include the usage when the leaf has that
///   extension, and the leaf's key must be RSA (2048 to 8192 bits), ECDSA (P-256, P-384,
///   P-521) or Ed25519, as a TLS handshake requires.
/// - Revocation: every certificate of the chain whose issuer has a CRL in the store is
///   checked against it. A certificate whose issuer has no CRL here is accepted (CRLs are an
///   addition, not a requirement), a CRL past its `nextUpdate` is still used, and a CRL whose
///   issuer may not sign CRLs (a key usage without `cRLSign`) fails the chains of that issuer.
///   CRLs without a (non-critical) CRL number are refused when loaded.
pub struct TrustStore {
    cas: Vec<CertificateDer<'static>>,
    ca_digests: Vec<[u8; 32]>,
    anchors: Vec<TrustAnchor<'static>>,
    /// Per anchor: whether its certificate allows signing CRLs (no key usage extension, or
    /// one with `cRLSign`). `rustls-webpki` keeps no key usage for trust anchors.
    anchor_crl_signer: Vec<bool>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    crl_digests: Vec<[u8; 32]>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("cas", &self.cas.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref());
    out
}

impl TrustStore {
    fn empty() -> Self {
        Self {
            cas: Vec::new(),
            ca_digests: Vec::new(),
            anchors: Vec::new(),
            anchor_crl_signer: Vec::new(),
            crls: Vec::new(),
            crl_digests: Vec::new(),
        }
    }

    /// A store trusting the CA certificates of one PEM bundle.
    ///
    /// # Errors
    ///
    /// [`TrustError::BadPem`] when the PEM is malformed, [`TrustError::NoCertificate`] when the
    /// bundle holds no certificate, [`TrustError::BadCertificate`] when one cannot be parsed.
    pub fn from_pem(bundle: &[u8]) -> Result<Self, TrustError> {
        let mut store = Self::empty();
        store.add_cas(bundle, None)?;
        Ok(store)
    }

    /// Adds the CA certificates of another PEM bundle (a CA rotation: old and new CA trusted
    /// together). Certificates already trusted are not added twice.
    ///
    /// # Errors
    ///
    /// As [`TrustStore::from_pem`].
    pub fn with_pem(mut self, bundle: &[u8]) -> Result<Self, TrustError> {
        self.add_cas(bundle, None)?;
        Ok(self)
    }

    /// Adds CRLs, in DER (one CRL) or PEM (any number of `X509 CRL` blocks). A CRL takes effect
    /// for the certificates its issuer signed; its signature is checked when it is used.
    ///
    /// # Errors
    ///
    /// [`TrustError::NoCrl`] when the data holds no CRL, [`TrustError::BadPem`] /
    /// [`TrustError::BadCrl`] when it cannot be parsed or uses features `rustls-webpki` does not
    /// support (delta or indirect CRLs, for example).
    pub fn with_crls(mut self, crls: &[u8]) -> Result<Self, TrustError> {
        self.add_crls(crls, None)?;
        Ok(self)
    }

    /// A store from files: every CA bundle of `ca_paths` (PEM) and every CRL file of
    /// `crl_paths` (PEM or DER).
    ///
    /// # Errors
    ///
    /// [`TrustError::Io`] when a file cannot be read; otherwise as [`TrustStore::from_pem`] and
    /// [`TrustStore::with_crls`], naming the file. Each bundle must hold at least one
    /// certificate, each CRL file at least one CRL, and at least one bundle must be given
    /// ([`TrustError::NoBundle`]).
    pub fn load<P, Q>(
        ca_paths: impl IntoIterator<Item = P>,
        crl_paths: impl IntoIterator<Item = Q>,
    ) -> Result<Self, TrustError>
    where
        P: AsRef<Path>,
        Q: AsRef<Path>,
    {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TrustError::Io {
                file: path.to_path_buf(),
                source,
            })
        };
        let mut store = Self::empty();
        for path in ca_paths {
            let path = path.as_ref();
            store.add_cas(&read(path)?, Some(path))?;
        }
        if store.cas.is_empty() {
            return Err(TrustError::NoBundle);
        }
        for path in crl_paths {
            let path = path.as_ref();
            store.add_crls(&read(path)?, Some(path))?;
        }
        Ok(store)
    }

    /// Builds a store from contents already read (the reloading server configuration reads the
    /// files itself, to hash them).
    pub(crate) fn from_contents(
        cas: &[(&Path, &[u8])],
        crls: &[(&Path, &[u8])],
    ) -> Result<Self, TrustError> {
        let mut store = Self::empty();
        for (path, data) in cas {
            store.add_cas(data, Some(path))?;
        }
        if store.cas.is_empty() {
            return Err(TrustError::NoBundle);
        }
        for (path, data) in crls {
            store.add_crls(data, Some(path))?;
        }
        Ok(store)
    }

    fn add_cas(&mut self, bundle: &[u8], file: Option<&Path>) -> Result<(), TrustError> {
        let certs = pem_certificates(bundle, file)?;
        if certs.is_empty() {
            return Err(TrustError::NoCertificate {
                file: file.map(Path::to_path_buf),
            });
        }
        for (i, der) in certs.into_iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| TrustError::BadCertificate {
                    file: file.map(Path::to_path_buf),
                    index: i + 1,
                    reason: CertError::from_webpki(&e),
                })?
                .to_owned();
            let digest = sha256(&der);
            if self.ca_digests.contains(&digest) {
                continue;
            }
            self.anchors.push(anchor);
            self.anchor_crl_signer.push(may_sign_crls(&der));
            self.ca_digests.push(digest);
            self.cas.push(der);
        }
        Ok(())
    }

    fn add_crls(&mut self, data: &[u8], file: Option<&Path>) -> Result<(), TrustError> {
        let owned_file = || file.map(Path::to_path_buf);
        let ders: Vec<CertificateRevocationListDer<'static>> =
            if data.windows(10).any(|w| w == b"-----BEGIN") {
                let mut ders = Vec::new();
                for item in CertificateRevocationListDer::pem_slice_iter(data) {
                    ders.push(item.map_err(|e| TrustError::BadPem {
                        file: owned_file(),
                        reason: pem_problem(&e),
                    })?);
                }
                ders
            } else if data.first() == Some(&0x30) {
                vec![CertificateRevocationListDer::from(data.to_vec())]
            } else {
                Vec::new()
            };
        if ders.is_empty() {
            return Err(TrustError::NoCrl { file: owned_file() });
        }
        for (i, der) in ders.iter().enumerate() {
            let bad = |reason| TrustError::BadCrl {
                file: owned_file(),
                index: i + 1,
                reason,
            };
            let crl =
                webpki::OwnedCertRevocationList::from_der(der).map_err(|e| bad(crl_problem(&e)))?;
            check_crl_number(der).map_err(bad)?;
            let digest = sha256(der);
            if self.crl_digests.contains(&digest) {
                continue;
            }
            self.crls.push(crl.into());
            self.crl_digests.push(digest);
        }
        Ok(())
    }

    /// Validates a client certificate: a chain from `end_entity` through some of
    /// `intermediates` (in any order, extras ignored) to a trusted CA, valid at `now` (pass
    /// [`UnixTime::now()`] for the system clock), whose leaf allows client authentication when
    /// it has an extended key usage extension, and in which no certificate is revoked by a CRL
    /// of the store.
    ///
    /// # Errors
    ///
    /// The [`CertError`] that best describes why no acceptable chain was found.
    pub fn verify_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), CertError> {
        self.verify_for(Usage::ClientAuth, end_entity, intermediates, now)
    }

    /// Validates a certificate chain as [`TrustStore::verify_client`] does, for the given
    /// `usage`. Host names are not checked.
    ///
    /// # Errors
    ///
    /// The [`CertError`] that best describes why no acceptable chain was found.
    pub fn verify_for(
        &self,
        usage: Usage,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), CertError> {
        let cert =
            webpki::EndEntityCert::try_from(end_entity).map_err(|e| CertError::from_webpki(&e))?;
        let usage = match usage {
            Usage::ClientAuth => webpki::KeyUsage::client_auth(),
            Usage::ServerAuth => webpki::KeyUsage::server_auth(),
        };
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build()
        });
        // What `rustls-webpki` checks for intermediates but cannot for trust anchors: that a
        // CRL's issuer may sign CRLs. Refusing the path lets the search try another.
        let anchor_may_sign_its_crls = |path: &webpki::VerifiedPath<'_>| {
            let anchor = path.anchor();
            let signer = self
                .anchors
                .iter()
                .zip(&self.anchor_crl_signer)
                .find(|(a, _)| {
                    a.subject.as_ref() == anchor.subject.as_ref()
                        && a.subject_public_key_info.as_ref()
                            == anchor.subject_public_key_info.as_ref()
                })
                .is_none_or(|(_, may_sign)| *may_sign);
            let has_crl = self
                .crls
                .iter()
                .any(|crl| crl.issuer() == anchor.subject.as_ref());
            if has_crl && !signer {
                Err(webpki::Error::IssuerNotCrlSigner)
            } else {
                Ok(())
            }
        };
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            now,
            usage,
            revocation,
            Some(&anchor_may_sign_its_crls),
        )
        .map_err(|e| CertError::from_webpki(&e))?;
        check_leaf_key(&cert)
    }

    /// The trusted CA certificates (DER), without duplicates, in the order they were added.
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.cas
    }

    /// How many CRLs the store holds.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// SHA-256 of each CA certificate, in [`TrustStore::ca_certificates`] order.
    pub(crate) fn ca_digests(&self) -> &[[u8; 32]] {
        &self.ca_digests
    }

    /// SHA-256 of each CRL (DER).
    pub(crate) fn crl_digests(&self) -> &[[u8; 32]] {
        &self.crl_digests
    }
}

/// Whether a CA certificate allows signing CRLs: no key usage extension, or one with
/// `cRLSign` (RFC 5280 4.2.1.3). A certificate `x509-parser` cannot read is given the benefit of
/// the doubt: `rustls-webpki` accepted it as a trust anchor.
fn may_sign_crls(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => match cert.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) | Err(_) => true,
        },
        Err(_) => true,
    }
}

/// RFC 5280 5.2.3: a CRL carries a CRL number, in a non-critical extension. `rustls-webpki`
/// does not insist; a CRL without one is refused here, at configuration time.
fn check_crl_number(der: &[u8]) -> Result<(), &'static str> {
    let (_, crl) =
        x509_parser::parse_x509_crl(der).map_err(|_| "it is not a well-formed X.509 CRL")?;
    let number = crl
        .extensions()
        .iter()
        .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_CRL_NUMBER)
        .ok_or("it has no CRL number (RFC 5280 5.2.3)")?;
    if number.critical {
        return Err("its CRL number extension is marked critical (RFC 5280 5.2.3)");
    }
    Ok(())
}

/// The leaf's key must be one a TLS handshake can verify (RSA of 2048 to 8192 bits, ECDSA on
/// P-256, P-384 or P-521, Ed25519). `rustls-webpki` checks the keys of CAs through their
/// signatures, but not the leaf's; over TLS the handshake signature does, and this makes
/// certificates forwarded by a trusted proxy meet the same bar.
fn check_leaf_key(cert: &webpki::EndEntityCert<'_>) -> Result<(), CertError> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
        OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    use x509_parser::x509::SubjectPublicKeyInfo;
    let spki_der = cert.subject_public_key_info();
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(spki_der.as_ref()).map_err(|_| CertError::BadEncoding)?;
    let algorithm = &spki.algorithm.algorithm;
    let acceptable = if *algorithm == OID_PKCS1_RSAENCRYPTION {
        matches!(spki.parsed(), Ok(PublicKey::RSA(rsa)) if (2048..=8192).contains(&rsa.key_size()))
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        curve.is_some_and(|c| c == OID_EC_P256 || c == OID_NIST_EC_P384 || c == OID_NIST_EC_P521)
    } else {
        *algorithm == OID_SIG_ED25519
    };
    if acceptable {
        Ok(())
    } else {
        Err(CertError::UnsupportedAlgorithm)
    }
}

/// A fixed description of why a CRL cannot be used.
fn crl_problem(error: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match error {
        E::UnsupportedCrlVersion => "only version 2 CRLs are supported",
        E::UnsupportedDeltaCrl => "delta CRLs are not supported",
        E::UnsupportedIndirectCrl => "indirect CRLs are not supported",
        E::UnsupportedCrlIssuingDistributionPoint => {
            "its issuing distribution point is not supported"
        }
        E::UnsupportedRevocationReasonsPartitioning => {
            "CRLs partitioned by revocation reason are not supported"
        }
        E::UnsupportedRevocationReason => "it lists an unsupported revocation reason",
        E::InvalidCrlNumber => "its CRL number is invalid",
        E::InvalidSerialNumber => "it lists an invalid serial number",
        E::UnsupportedCriticalExtension => "it has an unsupported critical extension",
        _ => "it is not a well-formed X.509 CRL",
    }
}

// ---------------------------------------------------------------------------------------------
// Trusted proxies
// ---------------------------------------------------------------------------------------------

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or a single address (`192.0.2.7`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// The network `network/prefix`.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] when the prefix is longer than the address, or when `network`
    /// has bits set beyond the prefix (a typo that would otherwise silently widen or move the
    /// range).
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, BuildError> {
        let network = network.to_canonical();
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(BuildError::Invalid(format!(
                "IP range {network}/{prefix}: the prefix is longer than {bits} bits"
            )));
        }
        if mask(network, prefix) != to_bits(network) {
            return Err(BuildError::Invalid(format!(
                "IP range {network}/{prefix}: the address has bits set beyond the prefix"
            )));
        }
        Ok(Self { network, prefix })
    }

    /// One address.
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            network: addr,
            prefix,
        }
    }

    /// Whether `addr` is in the range (an IPv4-mapped IPv6 address counts as its IPv4
    /// address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.contains_canonical(addr.to_canonical())
    }

    fn contains_canonical(&self, addr: IpAddr) -> bool {
        self.network.is_ipv4() == addr.is_ipv4()
            && mask(addr, self.prefix) == mask(self.network, self.prefix)
    }
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

/// The address's bits with everything past `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> u128 {
    let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let host_bits = width.saturating_sub(u32::from(prefix));
    let bits = to_bits(addr);
    if host_bits >= 128 {
        0
    } else {
        (bits >> host_bits) << host_bits
    }
}

impl FromStr for IpRange {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || BuildError::Invalid(format!("{s:?} is not an IP address or CIDR range"));
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(Self::host).map_err(|_| bad()),
            Some((addr, prefix)) => {
                let addr = addr.parse::<IpAddr>().map_err(|_| bad())?;
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let prefix = prefix.parse::<u8>().map_err(|_| bad())?;
                Self::new(addr, prefix)
            }
        }
    }
}

impl From<IpAddr> for IpRange {
    fn from(addr: IpAddr) -> Self {
        Self::host(addr)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Client certificates forwarded by a TLS-terminating proxy, read from a header.
///
/// Off unless configured: a `TrustedProxy` accepts the header only from the addresses it was
/// built with (none by default), and validates the certificate against a [`TrustStore`] on
/// every request. The header carries a URL-encoded PEM certificate, as nginx's
/// `$ssl_client_escaped_cert` sends it (further certificates after the first are used as
/// intermediates); `+` is taken literally, as base64 needs it. The proxy must overwrite (not
/// append to) the header on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxy {
    header: &'static str,
    proxies: Vec<IpRange>,
    max_len: usize,
}

impl TrustedProxy {
    /// The default header: `x-forwarded-client-cert`.
    pub const DEFAULT_HEADER: &'static str = "x-forwarded-client-cert";
    /// The default size limit of the header value: 16 KiB.
    pub const DEFAULT_MAX_LEN: usize = 16 * 1024;

    /// Trusts the header from these proxy addresses only.
    pub fn new(proxies: impl IntoIterator<Item = IpRange>) -> Self {
        Self {
            header: Self::DEFAULT_HEADER,
            proxies: proxies.into_iter().collect(),
            max_len: Self::DEFAULT_MAX_LEN,
        }
    }

    /// Reads the certificate from header `name` instead.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] when `name` is not a lower-case header name.
    pub fn header(mut self, name: &'static str) -> Result<Self, BuildError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(BuildError::Invalid(format!(
                "{name:?} is not a lower-case header name"
            )));
        }
        self.header = name;
        Ok(self)
    }

    /// Refuses header values longer than `bytes` (default [`Self::DEFAULT_MAX_LEN`]).
    #[must_use]
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The header read.
    pub fn header_name(&self) -> &'static str {
        self.header
    }

    /// Whether `remote` is one of the trusted proxies.
    pub fn is_trusted(&self, remote: IpAddr) -> bool {
        let remote = remote.to_canonical();
        self.proxies.iter().any(|r| r.contains_canonical(remote))
    }

    /// The client certificate that the proxy at `remote` forwarded, validated against `trust`
    /// at `now`.
    ///
    /// `Ok(None)` when `remote` is not a trusted proxy (the header is then ignored, whatever it
    /// holds), or when the proxy forwarded no certificate (no header, or an empty one).
    ///
    /// # Errors
    ///
    /// From a trusted proxy: [`CertError::BadEncoding`] when the header is not a URL-encoded
    /// PEM certificate, [`CertError::Other`] when it is repeated or longer than the limit, and
    /// the validation error when the certificate is not trusted.
    pub fn peer_from<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        remote: IpAddr,
        trust: &TrustStore,
        now: UnixTime,
    ) -> Result<Option<PeerCertificate>, CertError> {
        if !self.is_trusted(remote) {
            if headers.header_values(self.header).next().is_some() {
                tracing::debug!(
                    target: "auth::tls",
                    header = self.header,
                    %remote,
                    "forwarded client certificate ignored: not from a trusted proxy"
                );
            }
            return Ok(None);
        }
        let mut values = headers.header_values(self.header);
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(CertError::Other(
                "the forwarded client certificate header is repeated",
            ));
        }
        if value.len() > self.max_len {
            return Err(CertError::Other(
                "the forwarded client certificate header is too large",
            ));
        }
        let value = value.trim_ascii();
        if value.is_empty() {
            return Ok(None);
        }
        let pem = percent_decode(value).ok_or(CertError::BadEncoding)?;
        let mut certs = pem_certificates(&pem, None).map_err(|_| CertError::BadEncoding)?;
        if certs.is_empty() {
            return Err(CertError::BadEncoding);
        }
        let leaf = certs.remove(0);
        trust.verify_client(&leaf, &certs, now)?;
        Ok(Some(PeerCertificate::new(leaf.as_ref())))
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape. `+` stays `+`.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (&hi, tail) = tail.split_first()?;
            let (&lo, tail) = tail.split_first()?;
            out.push((hex(hi)? << 4) | hex(lo)?);
            rest = tail;
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Some(out)
}

/// A [`TrustedProxy`] together with where the current [`TrustStore`] comes from (e.g.
/// `ReloadingTls::trust`): what an adapter's trusted-proxy mode holds. Off unless an adapter
/// is given one.
pub struct ForwardedCertificates {
    proxy: TrustedProxy,
    trust: Box<dyn Fn() -> std::sync::Arc<TrustStore> + Send + Sync>,
}

impl fmt::Debug for ForwardedCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedCertificates")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl ForwardedCertificates {
    /// Certificates forwarded by `proxy`, validated against `trust()` at each request.
    pub fn new(
        proxy: TrustedProxy,
        trust: impl Fn() -> std::sync::Arc<TrustStore> + Send + Sync + 'static,
    ) -> Self {
        Self {
            proxy,
            trust: Box::new(trust),
        }
    }

    /// The certificate a trusted proxy forwarded with a request from `remote` (`None` when the
    /// remote address is unknown: the header is then ignored), validated now.
    ///
    /// # Errors
    ///
    /// A forwarded certificate that does not validate, or a malformed header, is refused as
    /// [`TokenError::CertificateRejected`](crate::TokenError::CertificateRejected) (401
    /// `invalid_token`); the reason is logged at `INFO` (target `auth::tls`).
    pub fn peer<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        remote: Option<IpAddr>,
    ) -> Result<Option<PeerCertificate>, crate::AuthError> {
        let Some(remote) = remote else {
            return Ok(None);
        };
        let trust = (self.trust)();
        self.proxy
            .peer_from(headers, remote, &trust, UnixTime::now())
            .map_err(|e| {
                tracing::info!(target: "auth::tls", reason = e.as_str(), %remote, "forwarded client certificate refused");
                crate::AuthError::InvalidToken(crate::TokenError::CertificateRejected)
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SerialNumber, date_time_ymd,
    };

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        serial: u8,
        eku: ExtendedKeyUsagePurpose,
    ) -> rcgen::Certificate {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "client");
        p.serial_number = Some(SerialNumber::from_slice(&[serial]));
        p.extended_key_usages = vec![eku];
        p.signed_by(&KeyPair::generate().unwrap(), issuer).unwrap()
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn verifies_and_refuses() {
        let (a, b) = (ca("A"), ca("B"));
        let store = TrustStore::from_pem(a.pem().as_bytes()).unwrap();
        let ok = leaf(&a, 1, ExtendedKeyUsagePurpose::ClientAuth);
        assert_eq!(store.verify_client(ok.der(), &[], now()), Ok(()));
        let foreign = leaf(&b, 1, ExtendedKeyUsagePurpose::ClientAuth);
        assert_eq!(
            store.verify_client(foreign.der(), &[], now()),
            Err(CertError::UnknownIssuer)
        );
        let server_only = leaf(&a, 2, ExtendedKeyUsagePurpose::ServerAuth);
        assert_eq!(
            store.verify_client(server_only.der(), &[], now()),
            Err(CertError::WrongUsage)
        );
        assert_eq!(
            store.verify_for(Usage::ServerAuth, server_only.der(), &[], now()),
            Ok(())
        );
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(
            store.verify_client(&garbage, &[], now()),
            Err(CertError::BadEncoding)
        );
    }

    #[test]
    fn two_bundles_overlap_and_deduplicate() {
        let (a, b) = (ca("A"), ca("B"));
        let both = format!("{}{}", a.pem(), b.pem());
        let store = TrustStore::from_pem(a.pem().as_bytes())
            .unwrap()
            .with_pem(both.as_bytes())
            .unwrap();
        assert_eq!(store.ca_certificates().len(), 2);
        for issuer in [&a, &b] {
            let cert = leaf(issuer, 1, ExtendedKeyUsagePurpose::ClientAuth);
            assert_eq!(store.verify_client(cert.der(), &[], now()), Ok(()));
        }
    }

    #[test]
    fn crls_in_pem_and_der() {
        let a = ca("A");
        let revoked = leaf(&a, 7, ExtendedKeyUsagePurpose::ClientAuth);
        let fine = leaf(&a, 8, ExtendedKeyUsagePurpose::ClientAuth);
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2025, 1, 1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[7]),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&a)
        .unwrap();
        let base = || TrustStore::from_pem(a.pem().as_bytes()).unwrap();
        for store in [
            base().with_crls(crl.pem().unwrap().as_bytes()).unwrap(),
            base().with_crls(crl.der()).unwrap(),
        ] {
            assert_eq!(store.crl_count(), 1);
            // The CRL's nextUpdate is in the past: it is still used.
            assert_eq!(
                store.verify_client(revoked.der(), &[], now()),
                Err(CertError::Revoked)
            );
            assert_eq!(store.verify_client(fine.der(), &[], now()), Ok(()));
        }
    }

    #[test]
    fn a_crl_from_a_ca_that_may_not_sign_crls_is_not_accepted() {
        // The CA's certificate allows certificate signing only; a CRL made with the same name
        // and key (but parameters that allow it, as rcgen insists) must not be trusted, and
        // `rustls-webpki` keeps no key usage for trust anchors: the store checks it.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "no CRLs");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_cert = params.self_signed(&key).unwrap();
        let crl_params_issuer = {
            let mut p = params.clone();
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            rcgen::Issuer::new(p, key)
        };
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&crl_params_issuer)
        .unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params.serial_number = Some(SerialNumber::from_slice(&[9]));
        let leaf = leaf_params
            .signed_by(&KeyPair::generate().unwrap(), &crl_params_issuer)
            .unwrap();
        let store = TrustStore::from_pem(ca_cert.pem().as_bytes()).unwrap();
        assert_eq!(store.verify_client(leaf.der(), &[], now()), Ok(()));
        let store = store.with_crls(crl.der()).unwrap();
        assert_eq!(
            store.verify_client(leaf.der(), &[], now()),
            Err(CertError::Other("the issuer's CRL is not acceptable"))
        );
    }

    #[test]
    fn bad_bundles_say_what_is_wrong() {
        let e = TrustStore::from_pem(b"hello").unwrap_err();
        assert!(matches!(e, TrustError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("no certificate found"), "{e}");
        let e =
            TrustStore::from_pem(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(matches!(e, TrustError::BadPem { .. }), "{e}");
        let junk = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        let e = TrustStore::from_pem(junk.as_bytes()).unwrap_err();
        assert!(
            matches!(e, TrustError::BadCertificate { index: 1, .. }),
            "{e}"
        );
        let a = ca("A");
        let store = || TrustStore::from_pem(a.pem().as_bytes()).unwrap();
        assert!(matches!(
            store().with_crls(b"nothing here").unwrap_err(),
            TrustError::NoCrl { .. }
        ));
        assert!(matches!(
            store().with_crls(&[0x30, 0x00]).unwrap_err(),
            TrustError::BadCrl { index: 1, .. }
        ));

        let dir = std::env::temp_dir().join(format!("auth-core-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let e = TrustStore::load([&empty], Vec::<PathBuf>::new()).unwrap_err();
        assert_eq!(e.file(), Some(empty.as_path()));
        assert!(
            e.to_string().starts_with(&empty.display().to_string()),
            "{e}"
        );
        let missing = dir.join("missing.pem");
        let e = TrustStore::load([&missing], Vec::<PathBuf>::new()).unwrap_err();
        assert!(matches!(e, TrustError::Io { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = TrustStore::load(Vec::<PathBuf>::new(), Vec::<PathBuf>::new()).unwrap_err();
        assert!(matches!(e, TrustError::NoBundle), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ip_ranges() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains("10.200.3.4".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
        let one: IpRange = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "nope",
            "::/129",
            "1.2.3.4/+8",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
        assert_eq!(r.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%0A+c").unwrap(), b"a b\n+c");
        assert!(percent_decode(b"%2").is_none());
        assert!(percent_decode(b"%zz").is_none());
    }

    fn escaped(pem: &str) -> String {
        let mut out = String::new();
        for b in pem.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[test]
    fn trusted_proxy_reads_only_from_proxies() {
        let (a, b) = (ca("A"), ca("B"));
        let store = TrustStore::from_pem(a.pem().as_bytes()).unwrap();
        let good = leaf(&a, 1, ExtendedKeyUsagePurpose::ClientAuth);
        let foreign = leaf(&b, 1, ExtendedKeyUsagePurpose::ClientAuth);
        let proxy = TrustedProxy::new(["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        let proxy_ip: IpAddr = "10.9.8.7".parse().unwrap();
        let client_ip: IpAddr = "198.51.100.1".parse().unwrap();
        let headers = |value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-forwarded-client-cert", value.parse().unwrap());
            h
        };

        let h = headers(&escaped(&good.pem()));
        let peer = proxy
            .peer_from(&h, proxy_ip, &store, now())
            .unwrap()
            .unwrap();
        assert_eq!(peer.der(), good.der().as_ref());
        let v6 = proxy
            .peer_from(&h, "::1".parse().unwrap(), &store, now())
            .unwrap();
        assert!(v6.is_some());
        // Not from a proxy: ignored, even a valid certificate.
        assert_eq!(proxy.peer_from(&h, client_ip, &store, now()), Ok(None));
        // Off unless configured.
        assert_eq!(
            TrustedProxy::new([]).peer_from(&h, proxy_ip, &store, now()),
            Ok(None)
        );

        // From a proxy, the certificate is validated here.
        let h = headers(&escaped(&foreign.pem()));
        assert_eq!(
            proxy.peer_from(&h, proxy_ip, &store, now()),
            Err(CertError::UnknownIssuer)
        );
        assert_eq!(proxy.peer_from(&h, client_ip, &store, now()), Ok(None));

        // No certificate forwarded.
        assert_eq!(
            proxy.peer_from(&http::HeaderMap::new(), proxy_ip, &store, now()),
            Ok(None)
        );
        assert_eq!(
            proxy.peer_from(&headers(""), proxy_ip, &store, now()),
            Ok(None)
        );

        // Malformed, repeated, too large.
        for bad in ["garbage", "%ZZ", "-----BEGIN%20CERTIFICATE-----%0Axx"] {
            assert_eq!(
                proxy.peer_from(&headers(bad), proxy_ip, &store, now()),
                Err(CertError::BadEncoding),
                "{bad}"
            );
        }
        let mut twice = headers(&escaped(&good.pem()));
        twice.append(
            "x-forwarded-client-cert",
            escaped(&good.pem()).parse().unwrap(),
        );
        assert!(matches!(
            proxy.peer_from(&twice, proxy_ip, &store, now()),
            Err(CertError::Other(_))
        ));
        let small = proxy.clone().max_len(100);
        assert!(matches!(
            small.peer_from(&headers(&escaped(&good.pem())), proxy_ip, &store, now()),
            Err(CertError::Other(_))
        ));

        // Another header name.
        let custom = proxy.header("x-ssl-client-cert").unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-ssl-client-cert", escaped(&good.pem()).parse().unwrap());
        assert!(
            custom
                .peer_from(&h, proxy_ip, &store, now())
                .unwrap()
                .is_some()
        );
        assert!(TrustedProxy::new([]).header("X-Upper").is_err());
    }
}

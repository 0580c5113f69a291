//! The matrix's test PKI, generated when the tests run (rcgen): no key material is committed.
//!
//! One CA signs the server certificate (SANs `localhost` and `127.0.0.1`) and the workload
//! certificates (SPIFFE IDs in `spiffe://matrix.test/service/...`); a CRL of that CA revokes one
//! of them; a second CA, which no server trusts, signs a stranger. The server's files are
//! written to a temporary directory, for `ReloadingTls::load` to read as a deployment would.

use auth_core::mtls::identity::CertIdentity;
use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber, date_time_ymd,
};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The SPIFFE ID of the alpha workload.
pub const ALPHA: &str = "spiffe://matrix.test/service/alpha";
/// The SPIFFE ID of the beta workload.
pub const BETA: &str = "spiffe://matrix.test/service/beta";

type Ca = CertifiedIssuer<'static, KeyPair>;

/// A client certificate with its key, as PEM (what TLS clients read).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// A short name, for reports.
    pub name: &'static str,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientCert").field(&self.name).finish()
    }
}

impl ClientCert {
    /// Certificate and key in one PEM (as `reqwest::Identity::from_pem` reads them).
    pub fn pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// The RFC 8705 thumbprint (`cnf.x5t#S256`) a token is bound to.
    ///
    /// # Panics
    ///
    /// When the certificate cannot be parsed (a broken fixture).
    pub fn x5t_s256(&self) -> String {
        CertIdentity::from_der(&self.der)
            .expect("a test certificate")
            .x5t_s256()
    }
}

/// The PKI every mTLS server of the matrix is built from.
pub struct Pki {
    /// The CA (PEM) clients trust for the server, and the server trusts for clients.
    pub ca_pem: String,
    /// `spiffe://matrix.test/service/alpha`, clientAuth.
    pub alpha: ClientCert,
    /// `spiffe://matrix.test/service/beta`, clientAuth.
    pub beta: ClientCert,
    /// Alpha's identity, expired (notAfter in 2021).
    pub expired: ClientCert,
    /// Alpha's identity, with extended key usage serverAuth only.
    pub server_auth_only: ClientCert,
    /// Alpha's identity from a CA no server trusts.
    pub stranger: ClientCert,
    /// Alpha's identity, revoked by the CA's CRL.
    pub revoked: ClientCert,
    dir: PathBuf,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("a CA key")).expect("a CA")
}

/// A leaf of `ca` with serial `serial`; `edit` adjusts its parameters.
fn leaf(
    ca: &Ca,
    name: &'static str,
    serial: u8,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    edit: impl FnOnce(&mut CertificateParams),
) -> ClientCert {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.serial_number = Some(SerialNumber::from_slice(&[serial]));
    p.subject_alt_names = sans;
    p.extended_key_usages = vec![eku];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    edit(&mut p);
    let key = KeyPair::generate().expect("a leaf key");
    let cert = p.signed_by(&key, ca).expect("a leaf");
    ClientCert {
        name,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn spiffe(id: &str) -> Vec<SanType> {
    vec![SanType::URI(id.try_into().expect("a SPIFFE ID"))]
}

impl Pki {
    /// A fresh PKI, its server files written to a new temporary directory.
    ///
    /// # Panics
    ///
    /// When a certificate cannot be made or a file cannot be written.
    pub fn new() -> Self {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "auth-tests-matrix-pki-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let ca = ca("Matrix CA");
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let server = leaf(
            &ca,
            "localhost",
            1,
            vec![
                SanType::DnsName("localhost".try_into().expect("a DNS name")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
            |_| {},
        );
        let revoked = leaf(&ca, "revoked", 6, spiffe(ALPHA), client.clone(), |_| {});
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[6]),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .expect("a CRL");
        let write = |name: &str, contents: &str| {
            std::fs::write(dir.join(name), contents).expect("a PKI file");
        };
        write("server.pem", &server.cert_pem);
        write("server.key", &server.key_pem);
        write("clients-ca.pem", &ca.pem());
        write("clients-ca.crl", &crl.pem().expect("a CRL in PEM"));
        Self {
            alpha: leaf(&ca, "alpha", 2, spiffe(ALPHA), client.clone(), |_| {}),
            beta: leaf(&ca, "beta", 3, spiffe(BETA), client.clone(), |_| {}),
            expired: leaf(&ca, "expired", 4, spiffe(ALPHA), client.clone(), |p| {
                p.not_before = date_time_ymd(2020, 1, 1);
                p.not_after = date_time_ymd(2021, 1, 1);
            }),
            server_auth_only: leaf(
                &ca,
                "serverAuth only",
                5,
                spiffe(ALPHA),
                ExtendedKeyUsagePurpose::ServerAuth,
                |_| {},
            ),
            stranger: leaf(
                &self::ca("Unknown CA"),
                "stranger",
                2,
                spiffe(ALPHA),
                client,
                |_| {},
            ),
            revoked,
            ca_pem: ca.pem(),
            dir,
        }
    }

    /// The server configuration, from the files (CA bundle and CRL) as a deployment would load
    /// it; client certificates are optional (a client without one must send another
    /// credential), but one that is presented must be valid or the handshake fails.
    ///
    /// # Panics
    ///
    /// When the files cannot be loaded (a broken fixture).
    pub fn server_tls(&self) -> ReloadingTls {
        ReloadingTls::load(
            TlsFiles {
                cert: self.dir.join("server.pem"),
                key: self.dir.join("server.key"),
                client_ca: vec![self.dir.join("clients-ca.pem")],
                crls: vec![self.dir.join("clients-ca.crl")],
            },
            ClientAuth::Optional,
        )
        .expect("the matrix TLS configuration")
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

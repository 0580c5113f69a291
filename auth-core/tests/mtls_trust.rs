//! Trust stores and the reloading TLS server configuration (feature `mtls`), against a PKI
//! generated at test time with rcgen (no key is committed):
//!
//! - `TrustStore::verify_client` gives the right `CertError` for a valid client, expired, not
//!   yet valid, serverAuth-only, revoked (leaf and intermediate) and foreign certificates;
//! - real TLS on 127.0.0.1 with tokio-rustls on both sides (an echo server that answers with
//!   the thumbprint of the client certificate it saw): accepted and refused handshakes,
//!   optional client authentication, CA and server-certificate rotation by `reload()` and by
//!   `watch()` while a client stays connected, and broken files that keep the last good
//!   configuration.

#![cfg(feature = "mtls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use auth_core::PeerCertificate;
use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
use auth_core::mtls::trust::{CertError, TrustError, TrustStore};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

// ---------------------------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------------------------

type Issuer = CertifiedIssuer<'static, KeyPair>;

const SPIFFE_ID: &str = "spiffe://example.org/ns/prod/sa/billing";

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn root(name: &str) -> Issuer {
    CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap()).unwrap()
}

fn intermediate(name: &str, parent: &Issuer, serial: u8) -> Issuer {
    let mut p = ca_params(name);
    p.serial_number = Some(SerialNumber::from_slice(&[serial]));
    CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), parent).unwrap()
}

/// A certificate with its key.
struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Leaf {
    fn der(&self) -> &CertificateDer<'static> {
        self.cert.der()
    }
}

struct LeafSpec {
    serial: u8,
    eku: ExtendedKeyUsagePurpose,
    validity: Option<(i32, i32)>,
    sans: Vec<SanType>,
}

fn client_spec(serial: u8) -> LeafSpec {
    LeafSpec {
        serial,
        eku: ExtendedKeyUsagePurpose::ClientAuth,
        validity: None,
        sans: vec![SanType::URI(SPIFFE_ID.try_into().unwrap())],
    }
}

fn leaf(issuer: &Issuer, spec: LeafSpec) -> Leaf {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "leaf");
    p.serial_number = Some(SerialNumber::from_slice(&[spec.serial]));
    p.extended_key_usages = vec![spec.eku];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.subject_alt_names = spec.sans;
    p.use_authority_key_identifier_extension = true;
    if let Some((from, to)) = spec.validity {
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(to, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    Leaf { cert, key }
}

fn server_leaf(issuer: &Issuer, serial: u8) -> Leaf {
    leaf(
        issuer,
        LeafSpec {
            serial,
            eku: ExtendedKeyUsagePurpose::ServerAuth,
            validity: None,
            sans: vec![SanType::DnsName("localhost".try_into().unwrap())],
        },
    )
}

fn crl(issuer: &Issuer, serials: &[u8]) -> rcgen::CertificateRevocationList {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2100, 1, 1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[*s]),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
}

/// Root A → intermediate A1 → the client leaves; root A → intermediate A2 (revoked by A's CRL);
/// root B is foreign.
struct Pki {
    root_a: Issuer,
    inter_a1: Issuer,
    valid: Leaf,
    expired: Leaf,
    not_yet_valid: Leaf,
    server_auth_only: Leaf,
    revoked: Leaf,
    under_revoked_intermediate: Leaf,
    inter_a2: Issuer,
    foreign: Leaf,
    crl_a1: rcgen::CertificateRevocationList,
    crl_a: rcgen::CertificateRevocationList,
}

const REVOKED_SERIAL: u8 = 66;
const REVOKED_INTERMEDIATE_SERIAL: u8 = 77;

fn pki() -> Pki {
    let root_a = root("Root A");
    let inter_a1 = intermediate("Intermediate A1", &root_a, 10);
    let inter_a2 = intermediate("Intermediate A2", &root_a, REVOKED_INTERMEDIATE_SERIAL);
    let root_b = root("Root B");
    Pki {
        valid: leaf(&inter_a1, client_spec(1)),
        expired: leaf(
            &inter_a1,
            LeafSpec {
                validity: Some((2000, 2010)),
                ..client_spec(2)
            },
        ),
        not_yet_valid: leaf(
            &inter_a1,
            LeafSpec {
                validity: Some((2090, 2095)),
                ..client_spec(3)
            },
        ),
        server_auth_only: leaf(
            &inter_a1,
            LeafSpec {
                eku: ExtendedKeyUsagePurpose::ServerAuth,
                ..client_spec(4)
            },
        ),
        revoked: leaf(&inter_a1, client_spec(REVOKED_SERIAL)),
        under_revoked_intermediate: leaf(&inter_a2, client_spec(5)),
        foreign: leaf(&root_b, client_spec(1)),
        crl_a1: crl(&inter_a1, &[REVOKED_SERIAL]),
        crl_a: crl(&root_a, &[REVOKED_INTERMEDIATE_SERIAL]),
        root_a,
        inter_a1,
        inter_a2,
    }
}

fn store(pki: &Pki) -> TrustStore {
    TrustStore::from_pem(pki.root_a.pem().as_bytes())
        .unwrap()
        .with_crls(pki.crl_a1.pem().unwrap().as_bytes())
        .unwrap()
        .with_crls(pki.crl_a.der())
        .unwrap()
}

#[test]
fn verify_client_gives_the_right_error_for_each_certificate() {
    let pki = pki();
    let store = store(&pki);
    let a1 = [pki.inter_a1.der().clone()];
    let a2 = [pki.inter_a2.der().clone()];
    let now = UnixTime::now();
    type Case<'a> = (
        &'a str,
        &'a Leaf,
        &'a [CertificateDer<'a>],
        Result<(), CertError>,
    );
    let cases: [Case<'_>; 8] = [
        ("valid", &pki.valid, &a1, Ok(())),
        ("expired", &pki.expired, &a1, Err(CertError::Expired)),
        (
            "not yet valid",
            &pki.not_yet_valid,
            &a1,
            Err(CertError::NotYetValid),
        ),
        (
            "serverAuth only",
            &pki.server_auth_only,
            &a1,
            Err(CertError::WrongUsage),
        ),
        ("revoked", &pki.revoked, &a1, Err(CertError::Revoked)),
        (
            "revoked intermediate",
            &pki.under_revoked_intermediate,
            &a2,
            Err(CertError::Revoked),
        ),
        ("foreign", &pki.foreign, &[], Err(CertError::UnknownIssuer)),
        (
            "missing intermediate",
            &pki.valid,
            &[],
            Err(CertError::UnknownIssuer),
        ),
    ];
    for (name, leaf, intermediates, expected) in cases {
        assert_eq!(
            store.verify_client(leaf.der(), intermediates, now),
            expected,
            "{name}"
        );
    }
    // Without the CRLs the revoked ones pass: the revocation comes from the CRLs.
    let no_crls = TrustStore::from_pem(pki.root_a.pem().as_bytes()).unwrap();
    assert_eq!(no_crls.verify_client(pki.revoked.der(), &a1, now), Ok(()));
    // Time is injected: the expired certificate was valid in 2005.
    let in_2005 = UnixTime::since_unix_epoch(Duration::from_secs(1_104_537_600));
    assert_eq!(store.verify_client(pki.expired.der(), &a1, in_2005), Ok(()));
    // Errors are safe to show: fixed texts, no certificate content.
    for e in [
        CertError::Expired,
        CertError::UnknownIssuer,
        CertError::Revoked,
    ] {
        assert!(!e.to_string().contains("leaf"), "{e}");
    }
}

#[test]
fn load_from_files_names_the_broken_file() {
    let pki = pki();
    let dir = TempDir::new("load");
    let ca = dir.write("ca.pem", pki.root_a.pem());
    let crl = dir.write("a1.crl", pki.crl_a1.der());
    let store = TrustStore::load([&ca], [&crl]).unwrap();
    assert_eq!((store.ca_certificates().len(), store.crl_count()), (1, 1));
    let bad = dir.write("bad.crl", "not a CRL");
    let err = TrustStore::load([&ca], [&crl, &bad]).unwrap_err();
    assert!(matches!(err, TrustError::NoCrl { .. }), "{err}");
    assert_eq!(err.file(), Some(bad.as_path()));
}

// ---------------------------------------------------------------------------------------------
// Files, logs
// ---------------------------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "auth-core-mtls-{}-{name}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes in place.
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Replaces by atomic rename, as deployment tools and Kubernetes secrets do.
    fn replace(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        let path = self.path(name);
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// One captured `tracing` event.
#[derive(Debug, Clone)]
struct Captured {
    level: tracing::Level,
    target: String,
    fields: BTreeMap<String, String>,
}

/// A minimal subscriber that records events (the crate has no tracing-subscriber dev-dep).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// Runs `f` with this subscriber as the thread's default.
    fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::subscriber::with_default(self.clone(), f)
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// ---------------------------------------------------------------------------------------------
// TLS on loopback
// ---------------------------------------------------------------------------------------------

const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts an echo server: for each line it answers `<sha256 of the client certificate the
/// server saw, or "none"> <line>`. Failed handshakes (only) are reported on the channel.
async fn serve(tls: &ReloadingTls) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(tls.server_config());
    let (errors, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = errors.send(e.to_string());
                        return;
                    }
                };
                let seen = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map_or_else(|| "none".to_owned(), |c| thumbprint(c.as_ref()));
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    // End of the conversation (clients here just drop the connection).
                    if matches!(stream.read_line(&mut line).await, Ok(0) | Err(_)) {
                        return;
                    }
                    let reply = format!("{seen} {line}");
                    if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn thumbprint(der: &[u8]) -> String {
    PeerCertificate::new(der)
        .sha256()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `server_roots`, presenting `identity` (leaf, chain) if given. The config
/// keeps its session cache: reusing it tries TLS resumption.
fn client(server_roots: &[&Issuer], identity: Option<(&Leaf, &[&Issuer])>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for r in server_roots {
        roots.add(r.der().clone()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((leaf, chain)) => {
            let mut certs = vec![leaf.der().clone()];
            certs.extend(chain.iter().map(|c| c.der().clone()));
            let key = PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into());
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    Arc::new(config)
}

struct Conn(BufReader<TlsStream<TcpStream>>);

impl Conn {
    /// The certificate the server presented.
    fn server_cert(&self) -> Vec<u8> {
        self.0.get_ref().get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.0.get_ref().get_ref().1.handshake_kind()
    }

    /// Sends a line and reads the answer: the thumbprint the server saw, then the echo.
    async fn exchange(&mut self, msg: &str) -> std::io::Result<String> {
        tokio::time::timeout(TIMEOUT, async {
            self.0
                .get_mut()
                .write_all(format!("{msg}\n").as_bytes())
                .await?;
            let mut line = String::new();
            if self.0.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let (seen, echo) = line.trim_end().split_once(' ').unwrap_or_default();
            assert_eq!(echo, msg);
            Ok(seen.to_owned())
        })
        .await?
    }
}

async fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<Conn> {
    tokio::time::timeout(TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await?;
        Ok(Conn(BufReader::new(tls)))
    })
    .await?
}

/// Connects and talks; `Ok(thumbprint the server saw)` or the error (with TLS 1.3 a refused
/// client certificate shows on the first read).
async fn talk(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<String> {
    connect(addr, config).await?.exchange("hello").await
}

/// The next handshake error the server reported.
async fn server_error(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(TIMEOUT, errors.recv())
        .await
        .expect("the server reported no error")
        .unwrap()
}

struct Setup {
    dir: TempDir,
    files: TlsFiles,
}

/// Server certificate from `server_ca`, clients' CA bundle `client_ca`, CRLs.
fn setup(name: &str, server: &Leaf, client_ca: &str, crls: &[Vec<u8>]) -> Setup {
    let dir = TempDir::new(name);
    let cert = dir.write("server.pem", server.cert.pem());
    let key = dir.write("server.key", server.key.serialize_pem());
    let ca = dir.write("clients-ca.pem", client_ca);
    let crls = crls
        .iter()
        .enumerate()
        .map(|(i, c)| dir.write(&format!("crl-{i}.pem"), c))
        .collect();
    Setup {
        files: TlsFiles {
            cert,
            key,
            client_ca: vec![ca],
            crls,
        },
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_accept_valid_clients_and_refuse_the_others() {
    let pki = pki();
    let server = server_leaf(&pki.root_a, 90);
    let s = setup(
        "handshakes",
        &server,
        &pki.root_a.pem(),
        &[
            pki.crl_a1.pem().unwrap().into_bytes(),
            pki.crl_a.pem().unwrap().into_bytes(),
        ],
    );
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Required).unwrap();
    assert_eq!(
        tls.server_config().alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let (addr, mut errors) = serve(&tls).await;
    let a1 = [&pki.inter_a1];

    // The valid client connects and the server sees its certificate.
    let seen = talk(addr, &client(&[&pki.root_a], Some((&pki.valid, &a1))))
        .await
        .unwrap();
    assert_eq!(seen, thumbprint(pki.valid.der()));

    // Refused handshakes, with the reason on the server side.
    for (name, leaf, chain, reason) in [
        ("foreign", &pki.foreign, &[][..], "UnknownIssuer"),
        ("expired", &pki.expired, &a1[..], "Expired"),
        ("revoked", &pki.revoked, &a1[..], "Revoked"),
        (
            "serverAuth only",
            &pki.server_auth_only,
            &a1[..],
            "InvalidPurpose",
        ),
    ] {
        let result = talk(addr, &client(&[&pki.root_a], Some((leaf, chain)))).await;
        assert!(result.is_err(), "{name}: {result:?}");
        let error = server_error(&mut errors).await;
        assert!(error.contains(reason), "{name}: {error}");
    }
    // Required: no certificate, no connection.
    let result = talk(addr, &client(&[&pki.root_a], None)).await;
    assert!(result.is_err(), "{result:?}");
    server_error(&mut errors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_lets_clients_without_certificate_in() {
    let pki = pki();
    let server = server_leaf(&pki.root_a, 90);
    let s = setup("optional", &server, &pki.root_a.pem(), &[]);
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Optional).unwrap();
    let (addr, mut errors) = serve(&tls).await;

    let seen = talk(addr, &client(&[&pki.root_a], None)).await.unwrap();
    assert_eq!(seen, "none");
    let a1 = [&pki.inter_a1];
    let seen = talk(addr, &client(&[&pki.root_a], Some((&pki.valid, &a1))))
        .await
        .unwrap();
    assert_eq!(seen, thumbprint(pki.valid.der()));
    // A certificate that is presented must still be valid.
    let result = talk(addr, &client(&[&pki.root_a], Some((&pki.foreign, &[])))).await;
    assert!(result.is_err(), "{result:?}");
    assert!(server_error(&mut errors).await.contains("UnknownIssuer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_reload_keeps_connections_and_switches_trust() {
    let pki = pki();
    let root_b = root("Root B (new)");
    let server_a = server_leaf(&pki.root_a, 90);
    let server_b = server_leaf(&root_b, 91);
    let client_b = leaf(&root_b, client_spec(2));
    let s = setup("reload", &server_a, &pki.root_a.pem(), &[]);
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Required).unwrap();
    let (addr, _errors) = serve(&tls).await;
    let server_roots = [&pki.root_a, &root_b];
    let a1 = [&pki.inter_a1];
    let client_a = client(&server_roots, Some((&pki.valid, &a1)));
    let client_b = client(&server_roots, Some((&client_b, &[])));

    // A client connects and talks; a second connection with the same client config resumes
    // its TLS session (so the refusal after the rotation shows that resumption is not a way
    // around it).
    let mut connected = connect(addr, &client_a).await.unwrap();
    assert_eq!(connected.server_cert(), server_a.der().to_vec());
    connected.exchange("before").await.unwrap();
    let mut resumed = connect(addr, &client_a).await.unwrap();
    resumed.exchange("resumed").await.unwrap();
    assert_eq!(resumed.handshake_kind(), Some(HandshakeKind::Resumed));
    assert!(talk(addr, &client_b).await.is_err());

    // Rotate: a bundle with only the new CA, a new server certificate and key, all by atomic
    // rename; then reload.
    s.dir.replace("clients-ca.pem", root_b.pem());
    s.dir.replace("server.key", server_b.key.serialize_pem());
    s.dir.replace("server.pem", server_b.cert.pem());
    let capture = Capture::default();
    capture.during(|| tls.reload()).unwrap();
    let info = capture
        .events()
        .into_iter()
        .find(|e| e.level == tracing::Level::INFO && e.target == "auth::tls")
        .expect("an INFO event");
    assert_eq!(info.fields["cas_added"], "1");
    assert_eq!(info.fields["cas_removed"], "1");
    assert_eq!(info.fields["server_cert_changed"], "true");

    // The connected client keeps working, on its original handshake.
    assert_eq!(
        connected.exchange("after").await.unwrap(),
        thumbprint(pki.valid.der())
    );
    // New connections: the new CA's client is accepted, the removed CA's refused (with its
    // resumable session, and afresh), and the server presents its new certificate.
    let mut new_b = connect(addr, &client_b).await.unwrap();
    assert_eq!(new_b.server_cert(), server_b.der().to_vec());
    new_b.exchange("new").await.unwrap();
    let result = talk(addr, &client_a).await;
    assert!(result.is_err(), "resumed: {result:?}");
    let result = talk(addr, &client(&server_roots, Some((&pki.valid, &a1)))).await;
    assert!(result.is_err(), "fresh: {result:?}");
    assert_eq!(tls.trust().ca_certificates(), [root_b.der().clone()]);

    // A garbage bundle: the reload fails, naming the file, and the last good configuration
    // stays in force.
    s.dir.replace("clients-ca.pem", "garbage\n");
    let capture = Capture::default();
    let err = capture.during(|| tls.reload()).unwrap_err();
    assert!(matches!(err, TrustError::NoCertificate { .. }), "{err}");
    assert!(err.to_string().contains("clients-ca.pem"), "{err}");
    let warn = capture
        .events()
        .into_iter()
        .find(|e| e.level == tracing::Level::WARN && e.target == "auth::tls")
        .expect("a WARN event");
    assert!(warn.fields["file"].ends_with("clients-ca.pem"), "{warn:?}");
    talk(addr, &client_b).await.unwrap();
    assert!(talk(addr, &client_a).await.is_err());
    new_b.exchange("still").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_without_logging_it() {
    let pki = pki();
    let server_a = server_leaf(&pki.root_a, 90);
    let server_b = server_leaf(&pki.root_a, 91);
    let s = setup("key", &server_a, &pki.root_a.pem(), &[]);
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Required).unwrap();
    let (addr, _errors) = serve(&tls).await;
    let a1 = [&pki.inter_a1];
    let client_a = client(&[&pki.root_a], Some((&pki.valid, &a1)));

    // New certificate, old key: refused, the old pair is still served.
    s.dir.replace("server.pem", server_b.cert.pem());
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TrustError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("server.key"), "{err}");
    let mut conn = connect(addr, &client_a).await.unwrap();
    assert_eq!(conn.server_cert(), server_a.der().to_vec());
    conn.exchange("x").await.unwrap();

    // A key file that is not a usable key: the error names the file, and neither it nor the
    // log holds the file's contents.
    let secret = "U0VDUkVULUtFWS1NQVRFUklBTA";
    s.dir.replace(
        "server.key",
        format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
    );
    let capture = Capture::default();
    let err = capture.during(|| tls.reload()).unwrap_err();
    assert!(matches!(err, TrustError::BadKey { .. }), "{err}");
    assert!(err.to_string().contains("server.key"), "{err}");
    let events = capture.events();
    assert!(!events.is_empty());
    for e in &events {
        for value in e.fields.values() {
            assert!(!value.contains(secret), "{e:?}");
            assert!(!value.contains("BEGIN"), "{e:?}");
        }
    }
    assert!(!format!("{err:?}").contains(secret));

    // The matching key arrives: the reload goes through.
    s.dir.replace("server.key", server_b.key.serialize_pem());
    tls.reload().unwrap();
    let conn = connect(addr, &client_a).await.unwrap();
    assert_eq!(conn.server_cert(), server_b.der().to_vec());
}

/// Waits until `cond` holds (polling), up to `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_picks_up_renames_rewrites_and_survives_missing_files() {
    let pki = pki();
    let root_b = root("Root B (new)");
    let server = server_leaf(&pki.root_a, 90);
    let s = setup("watch", &server, &pki.root_a.pem(), &[]);
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Required).unwrap();
    let (addr, _errors) = serve(&tls).await;
    let watcher = tls.watch(Duration::from_millis(50));
    let a1 = [&pki.inter_a1];
    let client_a = client(&[&pki.root_a], Some((&pki.valid, &a1)));
    let leaf_b = leaf(&root_b, client_spec(2));
    let client_b = client(&[&pki.root_a], Some((&leaf_b, &[])));
    let trusted = |tls: &ReloadingTls| tls.trust().ca_certificates().to_vec();

    let mut connected = connect(addr, &client_a).await.unwrap();
    connected.exchange("before").await.unwrap();

    // Replace by atomic rename: seen within a few seconds.
    s.dir.replace("clients-ca.pem", root_b.pem());
    assert!(
        eventually(Duration::from_secs(5), || trusted(&tls)
            == [root_b.der().clone()])
        .await
    );
    talk(addr, &client_b).await.unwrap();
    assert!(talk(addr, &client_a).await.is_err());
    connected.exchange("during").await.unwrap();

    // Rewrite in place (same inode): seen too.
    s.dir.write(
        "clients-ca.pem",
        format!("{}{}", pki.root_a.pem(), root_b.pem()),
    );
    assert!(eventually(Duration::from_secs(5), || trusted(&tls).len() == 2).await);
    talk(addr, &client_a).await.unwrap();
    talk(addr, &client_b).await.unwrap();

    // A missing file (as in the middle of a rename done in two steps) and then garbage: the
    // last good state stays; the next good contents are picked up.
    std::fs::remove_file(s.dir.path("clients-ca.pem")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(trusted(&tls).len(), 2);
    s.dir.write("clients-ca.pem", "garbage");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(trusted(&tls).len(), 2);
    talk(addr, &client_a).await.unwrap();
    s.dir.replace("clients-ca.pem", root_b.pem());
    assert!(eventually(Duration::from_secs(5), || trusted(&tls).len() == 1).await);
    assert!(talk(addr, &client_a).await.is_err());
    talk(addr, &client_b).await.unwrap();
    connected.exchange("after").await.unwrap();

    // The watcher stops when it is aborted (or when every handle is dropped).
    watcher.abort();
    assert!(watcher.await.unwrap_err().is_cancelled());
}

#[tokio::test(flavor = "current_thread")]
async fn the_watcher_ends_with_the_last_handle() {
    let pki = pki();
    let server = server_leaf(&pki.root_a, 90);
    let s = setup("watch-end", &server, &pki.root_a.pem(), &[]);
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Required).unwrap();
    let config = tls.server_config();
    let watcher = tls.watch(Duration::from_millis(10));
    drop(tls);
    tokio::time::timeout(TIMEOUT, watcher)
        .await
        .unwrap()
        .unwrap();
    // The configuration itself stays usable.
    assert_eq!(config.alpn_protocols.len(), 2);
}

#[test]
fn load_errors_name_the_file() {
    let pki = pki();
    let server = server_leaf(&pki.root_a, 90);
    let s = setup("load-errors", &server, &pki.root_a.pem(), &[]);
    let mut files = s.files.clone();
    files.client_ca.push(s.dir.path("nope.pem"));
    let err = ReloadingTls::load(files, ClientAuth::Required).unwrap_err();
    assert!(matches!(err, TrustError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    let mut files = s.files.clone();
    files.client_ca.clear();
    let err = ReloadingTls::load(files, ClientAuth::Required).unwrap_err();
    assert!(matches!(err, TrustError::NoBundle), "{err}");

    let mut files = s.files.clone();
    files.cert = s.dir.write("empty.pem", "");
    let err = ReloadingTls::load(files, ClientAuth::Required).unwrap_err();
    assert!(matches!(err, TrustError::NoCertificate { .. }), "{err}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
}

#[test]
fn reload_hooks_run_when_what_is_in_force_changes() {
    let pki = pki();
    let server = server_leaf(&pki.root_a, 91);
    let s = setup("hooks", &server, &pki.root_a.pem(), &[]);
    let tls = ReloadingTls::load(s.files.clone(), ClientAuth::Optional).unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    tls.on_reload(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let count = || calls.load(std::sync::atomic::Ordering::SeqCst);
    tls.reload().unwrap();
    assert_eq!(count(), 0, "nothing changed");
    s.dir.replace("clients-ca.pem", root("Root C").pem());
    tls.reload().unwrap();
    assert_eq!(count(), 1, "the bundle changed");
    s.dir.replace("clients-ca.pem", "not a bundle");
    assert!(tls.reload().is_err());
    assert_eq!(count(), 1, "a refused reload changes nothing");
}

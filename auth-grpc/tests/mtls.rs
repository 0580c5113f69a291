//! Mutual TLS through tonic over real handshakes on loopback, with a PKI generated when the test
//! runs (rcgen) and a `Chain` of a JWT authenticator and `Mtls` behind `GrpcAuthLayer`, served
//! two ways:
//!
//! - `auth_tower::tls::serve` with the configuration of `ReloadingTls::load` over temporary
//!   files, serving the tonic routes: the layer reads the `PeerCertificate` the server inserted
//!   once per connection;
//! - tonic's own TLS server (`ServerTlsConfig` with the same CA as `client_ca_root`): the layer
//!   builds the certificate from tonic's `TlsConnectInfo`;
//! - tonic's server over `serve_with_incoming`, given connections handshaken with the
//!   `ReloadingTls` configuration: tonic inserts `TlsConnectInfo` for them too.
//!
//! All give the same answers: a certificate alone authenticates as its SPIFFE ID (method
//! `mtls`); neither certificate nor token is UNAUTHENTICATED; a certificate from an unknown CA
//! fails the handshake; a token bound to certificate A (RFC 8705) is accepted with A and
//! UNAUTHENTICATED (`invalid_token`) with B; a method policy by SPIFFE ID lets alpha in and
//! answers beta PERMISSION_DENIED. Under tonic's server, a policy also sees the peer address.
#![allow(clippy::unwrap_used)]

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::mtls::Mtls;
use auth_core::mtls::identity::CertIdentity;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
use auth_core::policy::{PolicyMap, Rule};
use auth_core::{Algorithm, Chain, Gate, PeerCertificate, Principal};
use auth_examples::proto::demo_v1::demo_client::DemoClient;
use auth_examples::proto::demo_v1::demo_server::{Demo, DemoServer};
use auth_examples::proto::demo_v1::{AdminReply, WhoAmIReply};
use auth_grpc::{GrpcAuthLayer, GrpcAuthService, PrincipalExt};
use futures_util::Stream;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::metadata::MetadataValue;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

const ISS: &str = "https://issuer.test";
const AUD: &str = "demo-api";
const REALM: &str = "demo";
const ADMIN: &str = "/demo.v1.Demo/Admin";
const ALPHA: &str = "spiffe://demo.local/service/alpha";
const BETA: &str = "spiffe://demo.local/service/beta";

// ---------------------------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------------------------

type Ca = CertifiedIssuer<'static, KeyPair>;

/// A certificate with its key.
struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Leaf {
    fn identity(&self) -> Identity {
        Identity::from_pem(self.cert.pem(), self.key.serialize_pem())
    }

    fn sha256(&self) -> [u8; 32] {
        *CertIdentity::from_der(self.cert.der()).unwrap().sha256()
    }

    /// The RFC 8705 thumbprint a token is bound to.
    fn x5t_s256(&self) -> String {
        CertIdentity::from_der(self.cert.der()).unwrap().x5t_s256()
    }
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(ca: &Ca, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> Leaf {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "leaf");
    p.subject_alt_names = sans;
    p.extended_key_usages = vec![eku];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    Leaf { cert, key }
}

fn workload(ca: &Ca, spiffe_id: &str) -> Leaf {
    leaf(
        ca,
        vec![SanType::URI(spiffe_id.try_into().unwrap())],
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}

/// One CA for the server and the workloads it trusts; a stranger from a CA it does not.
struct Pki {
    ca: Ca,
    server: Leaf,
    alpha: Leaf,
    beta: Leaf,
    stranger: Leaf,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "auth-grpc-mtls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = ca("Demo CA");
        let server = leaf(
            &ca,
            vec![SanType::DnsName("localhost".try_into().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(dir.join("server.pem"), server.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server.key.serialize_pem()).unwrap();
        std::fs::write(dir.join("clients-ca.pem"), ca.pem()).unwrap();
        Self {
            alpha: workload(&ca, ALPHA),
            beta: workload(&ca, BETA),
            stranger: workload(&self::ca("Unknown CA"), ALPHA),
            server,
            ca,
            dir,
        }
    }

    /// The reloading configuration, from the files as a deployment would load it. Clients may
    /// connect without a certificate (and then must send a token).
    fn reloading_tls(&self) -> ReloadingTls {
        ReloadingTls::load(
            TlsFiles {
                cert: self.dir.join("server.pem"),
                key: self.dir.join("server.key"),
                client_ca: vec![self.dir.join("clients-ca.pem")],
                crls: vec![],
            },
            ClientAuth::Optional,
        )
        .unwrap()
    }

    /// tonic's own TLS with the same certificate and CA.
    fn tonic_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.server.identity())
            .client_ca_root(Certificate::from_pem(self.ca.pem()))
            .client_auth_optional(true)
    }

    /// A channel trusting only the test CA, presenting `identity` if any.
    async fn channel(
        &self,
        addr: SocketAddr,
        identity: Option<&Leaf>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.pem()))
            .domain_name("localhost");
        if let Some(leaf) = identity {
            tls = tls.identity(leaf.identity());
        }
        Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Tokens {
    signer: SigningKey,
}

impl Tokens {
    fn new() -> Self {
        Self {
            signer: SigningKey::generate(Algorithm::ES256, "k1").unwrap(),
        }
    }

    fn jwt(&self) -> Jwt {
        let jwks = auth_core::issuer::jwks([&self.signer]).to_string();
        Jwt::builder()
            .issuer(
                Issuer::new(ISS)
                    .audience(AUD)
                    .keys(KeySet::from_jwks(&jwks).unwrap()),
            )
            .build()
            .unwrap()
    }

    /// A token for `client-app`; `extra` claims are added.
    fn mint(&self, extra: serde_json::Value) -> String {
        let mut claims = json!({
            "iss": ISS, "aud": AUD, "sub": "client-app", "scope": "read",
            "iat": now(), "exp": now() + 300,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.signer.sign(&claims).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// The demo service; it records the client certificate each call carried into the handler.
#[derive(Clone, Default)]
struct TestDemo {
    seen: Arc<Mutex<Vec<Option<[u8; 32]>>>>,
}

#[tonic::async_trait]
impl Demo for TestDemo {
    async fn who_am_i(&self, request: Request<()>) -> Result<Response<WhoAmIReply>, Status> {
        self.seen.lock().unwrap().push(
            request
                .extensions()
                .get::<PeerCertificate>()
                .map(|c| *c.sha256()),
        );
        let p: &Principal = request.principal()?;
        Ok(Response::new(WhoAmIReply {
            subject: p.subject().to_owned(),
            method: p.method().to_string(),
            scopes: p.scopes().to_vec(),
            issuer: p.issuer().unwrap_or_default().to_owned(),
        }))
    }

    async fn admin(&self, request: Request<()>) -> Result<Response<AdminReply>, Status> {
        let p = request.principal()?;
        Ok(Response::new(AdminReply {
            subject: p.subject().to_owned(),
            message: "hello, admin".into(),
        }))
    }
}

#[derive(Debug, Clone, Copy)]
enum Serving {
    /// `auth_tower::tls::serve` with `ReloadingTls`.
    TowerTls,
    /// tonic's `Server::builder().tls_config(...)`.
    TonicTls,
    /// tonic's `serve_with_incoming` over connections handshaken with `ReloadingTls`.
    TonicIncoming,
}

/// What `serve_with_incoming` is given: connections accepted and handshaken with `config`, each
/// handshake on its own task and with a timeout, so that a slow client stalls no other. Ends
/// when the server drops the stream.
fn tls_incoming(
    listener: TcpListener,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(16);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                },
                () = tx.closed() => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let handshake = acceptor.accept(tcp);
                // A refused or timed-out handshake concerns that connection only.
                if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), handshake).await
                {
                    let _ = tx.send(Ok(tls)).await;
                }
            });
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A running server; dropping it shuts the server down.
struct TestServer {
    addr: SocketAddr,
    demo: TestDemo,
    _shutdown: oneshot::Sender<()>,
}

fn gate(tokens: &Tokens) -> Gate {
    let mapping = IdentityMapping::builder()
        .allow_trust_domains(["demo.local"])
        .build()
        .unwrap();
    Gate::builder(
        Chain::new()
            .with(tokens.jwt())
            .with(Mtls::builder(mapping).build()),
    )
    .realm(REALM)
    .build()
}

fn policies() -> PolicyMap {
    PolicyMap::new().route(ADMIN, Rule::claim_prefix("spiffe_id", ALPHA))
}

async fn start(serving: Serving, pki: &Pki, tokens: &Tokens) -> TestServer {
    start_with(serving, pki, tokens, policies()).await
}

async fn start_with(
    serving: Serving,
    pki: &Pki,
    tokens: &Tokens,
    policies: PolicyMap,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    let demo = TestDemo::default();
    match serving {
        Serving::TowerTls => {
            let service = GrpcAuthService::new(
                Routes::new(DemoServer::new(demo.clone())),
                gate(tokens),
                policies,
            );
            let config = pki.reloading_tls().server_config();
            tokio::spawn(auth_tower::tls::serve(listener, config, service, shutdown));
        }
        Serving::TonicTls => {
            let server = Server::builder()
                .tls_config(pki.tonic_tls())
                .unwrap()
                .layer(GrpcAuthLayer::new(gate(tokens), policies))
                .add_service(DemoServer::new(demo.clone()))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown);
            tokio::spawn(server);
        }
        Serving::TonicIncoming => {
            let incoming = tls_incoming(listener, pki.reloading_tls().server_config());
            let server = Server::builder()
                .layer(GrpcAuthLayer::new(gate(tokens), policies))
                .add_service(DemoServer::new(demo.clone()))
                .serve_with_incoming_shutdown(incoming, shutdown);
            tokio::spawn(server);
        }
    }
    TestServer {
        addr,
        demo,
        _shutdown: tx,
    }
}

const ALL: [Serving; 3] = [Serving::TowerTls, Serving::TonicTls, Serving::TonicIncoming];

fn bearer(token: &str) -> Request<()> {
    let mut request = Request::new(());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

fn challenge(status: &Status) -> &str {
    status
        .metadata()
        .get("www-authenticate")
        .expect("a www-authenticate entry")
        .to_str()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_certificate_alone_authenticates_as_its_spiffe_id() {
    let (pki, tokens) = (Pki::new(), Tokens::new());
    for serving in ALL {
        let server = start(serving, &pki, &tokens).await;
        let mut alpha = DemoClient::new(pki.channel(server.addr, Some(&pki.alpha)).await.unwrap());
        // Several calls on one connection.
        for _ in 0..3 {
            let reply = alpha.who_am_i(()).await.unwrap().into_inner();
            assert_eq!(
                (reply.subject.as_str(), reply.method.as_str()),
                (ALPHA, "mtls"),
                "{serving:?}"
            );
        }
        // The handler sees the certificate the gate saw, under the same type either way.
        assert_eq!(
            *server.demo.seen.lock().unwrap(),
            vec![Some(pki.alpha.sha256()); 3],
            "{serving:?}"
        );
        let mut beta = DemoClient::new(pki.channel(server.addr, Some(&pki.beta)).await.unwrap());
        let reply = beta.who_am_i(()).await.unwrap().into_inner();
        assert_eq!(reply.subject, BETA, "{serving:?}");
    }
}

#[tokio::test]
async fn no_certificate_and_no_token_is_unauthenticated() {
    let (pki, tokens) = (Pki::new(), Tokens::new());
    for serving in ALL {
        let server = start(serving, &pki, &tokens).await;
        let mut anonymous = DemoClient::new(pki.channel(server.addr, None).await.unwrap());
        let status = anonymous.who_am_i(()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{serving:?}");
        assert_eq!(challenge(&status), format!(r#"Bearer realm="{REALM}""#));
        // Without a certificate, a token still works (the handshake made it optional).
        let reply = anonymous
            .who_am_i(bearer(&tokens.mint(json!({}))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (reply.subject.as_str(), reply.method.as_str()),
            ("client-app", "jwt"),
            "{serving:?}"
        );
        assert_eq!(*server.demo.seen.lock().unwrap(), vec![None]);
    }
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_fails_the_handshake() {
    let (pki, tokens) = (Pki::new(), Tokens::new());
    for serving in ALL {
        let server = start(serving, &pki, &tokens).await;
        // Under TLS 1.3 the client finishes its side of the handshake before the server has
        // checked its certificate: the refusal (an alert) may surface at connect or at the
        // first call. Either way no call reaches the service.
        let failure = match pki.channel(server.addr, Some(&pki.stranger)).await {
            Err(e) => format!("{e:?}"),
            Ok(channel) => {
                let status = DemoClient::new(channel)
                    .who_am_i(bearer(&tokens.mint(json!({}))))
                    .await
                    .expect_err("the handshake must fail");
                // A transport error, not an answer of the layer.
                assert!(
                    matches!(status.code(), Code::Unknown | Code::Unavailable),
                    "{serving:?}: {status:?}"
                );
                format!("{status:?}")
            }
        };
        assert!(failure.contains("UnknownCA"), "{serving:?}: {failure}");
        assert!(server.demo.seen.lock().unwrap().is_empty());
        // The server carries on for others.
        let mut alpha = DemoClient::new(pki.channel(server.addr, Some(&pki.alpha)).await.unwrap());
        assert!(alpha.who_am_i(()).await.is_ok(), "{serving:?}");
    }
}

#[tokio::test]
async fn a_bound_token_is_accepted_only_with_its_certificate() {
    let (pki, tokens) = (Pki::new(), Tokens::new());
    let bound = tokens.mint(json!({"cnf": {"x5t#S256": pki.alpha.x5t_s256()}}));
    for serving in ALL {
        let server = start(serving, &pki, &tokens).await;
        let mut alpha = DemoClient::new(pki.channel(server.addr, Some(&pki.alpha)).await.unwrap());
        let mut beta = DemoClient::new(pki.channel(server.addr, Some(&pki.beta)).await.unwrap());
        let mut anonymous = DemoClient::new(pki.channel(server.addr, None).await.unwrap());
        // Twice: the full verification, then the verified-token cache.
        for _ in 0..2 {
            let reply = alpha.who_am_i(bearer(&bound)).await.unwrap().into_inner();
            assert_eq!(
                (reply.subject.as_str(), reply.method.as_str()),
                ("client-app", "jwt"),
                "{serving:?}"
            );
            for (who, client) in [("beta", &mut beta), ("no certificate", &mut anonymous)] {
                let status = client.who_am_i(bearer(&bound)).await.unwrap_err();
                assert_eq!(status.code(), Code::Unauthenticated, "{serving:?} {who}");
                assert!(
                    challenge(&status)
                        .starts_with(&format!(r#"Bearer realm="{REALM}", error="invalid_token""#)),
                    "{serving:?} {who}: {}",
                    challenge(&status)
                );
            }
        }
    }
}

#[tokio::test]
async fn a_method_policy_grants_by_spiffe_id() {
    let (pki, tokens) = (Pki::new(), Tokens::new());
    for serving in ALL {
        let server = start(serving, &pki, &tokens).await;
        let mut alpha = DemoClient::new(pki.channel(server.addr, Some(&pki.alpha)).await.unwrap());
        let reply = alpha.admin(()).await.unwrap().into_inner();
        assert_eq!(reply.subject, ALPHA, "{serving:?}");
        let mut beta = DemoClient::new(pki.channel(server.addr, Some(&pki.beta)).await.unwrap());
        let status = beta.admin(()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{serving:?}");
        assert!(
            challenge(&status).contains(r#"error="insufficient_scope""#),
            "{serving:?}: {}",
            challenge(&status)
        );
        // Without a certificate: UNAUTHENTICATED, not PERMISSION_DENIED.
        let mut anonymous = DemoClient::new(pki.channel(server.addr, None).await.unwrap());
        assert_eq!(
            anonymous.admin(()).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
}

#[tokio::test]
async fn under_tonic_a_policy_sees_the_peer_address() {
    let (pki, tokens) = (Pki::new(), Tokens::new());
    let net = |cidr: &str| Rule::source_in([cidr.parse().unwrap()]);
    for serving in [Serving::TonicTls, Serving::TonicIncoming] {
        for (cidr, allowed) in [("127.0.0.0/8", true), ("10.0.0.0/8", false)] {
            let policies = PolicyMap::new().route(ADMIN, net(cidr));
            let server = start_with(serving, &pki, &tokens, policies).await;
            let channel = pki.channel(server.addr, Some(&pki.alpha)).await.unwrap();
            let reply = DemoClient::new(channel).admin(()).await;
            match reply {
                Ok(_) => assert!(allowed, "{serving:?} {cidr}"),
                Err(status) => {
                    assert!(!allowed, "{serving:?} {cidr}: {status:?}");
                    assert_eq!(status.code(), Code::PermissionDenied);
                }
            }
        }
    }
}

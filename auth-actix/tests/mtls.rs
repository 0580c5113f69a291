//! Mutual TLS through actix-web over real handshakes on loopback: a PKI generated when the test
//! runs (rcgen), a server configuration from `ReloadingTls::load` over temporary files,
//! `HttpServer::listen_rustls_0_23` with `auth_actix::tls::on_connect`, and a `Chain` of a JWT
//! authenticator and `Mtls` behind `AuthMiddleware`; reqwest clients with and without a client
//! certificate.
//!
//! - a certificate alone authenticates as its SPIFFE ID (method `mtls`), on every request of
//!   the connection;
//! - neither certificate nor token: 401; a certificate from an unknown CA: no handshake;
//! - a token bound to certificate A (RFC 8705 `cnf.x5t#S256`): accepted with A, 401
//!   `invalid_token` with B or without a certificate;
//! - a route policy by SPIFFE ID: alpha allowed, beta 403.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

mod common;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpServer, web};
use auth_actix::{AuthMiddleware, Principal};
use auth_core::mtls::Mtls;
use auth_core::mtls::identity::CertIdentity;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
use auth_core::policy::Rule;
use auth_core::{Chain, Gate, PeerCertificate};
use common::{REALM, TestIssuer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Certificate and key in one PEM, as `reqwest::Identity::from_pem` reads them.
    fn identity(&self) -> reqwest::Identity {
        let pem = format!("{}{}", self.cert.pem(), self.key.serialize_pem());
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
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
    alpha: Leaf,
    beta: Leaf,
    stranger: Leaf,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "auth-actix-mtls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = ca("Demo CA");
        let server = leaf(
            &ca,
            vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(dir.join("server.pem"), server.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server.key.serialize_pem()).unwrap();
        std::fs::write(dir.join("clients-ca.pem"), ca.pem()).unwrap();
        Self {
            alpha: workload(&ca, ALPHA),
            beta: workload(&ca, BETA),
            stranger: workload(&self::ca("Unknown CA"), ALPHA),
            ca,
            dir,
        }
    }

    /// The server configuration, from the files as a deployment would load it. Clients may
    /// connect without a certificate (and then must send a token).
    fn server_tls(&self) -> ReloadingTls {
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

    /// A client trusting only the test CA, presenting `identity` if any.
    fn client(&self, identity: Option<&Leaf>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).unwrap();
        let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
        if let Some(leaf) = identity {
            builder = builder.identity(leaf.identity());
        }
        builder.build().unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

struct Server {
    base: String,
    handle: ServerHandle,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn whoami(p: Principal, req: HttpRequest) -> web::Json<Value> {
    web::Json(json!({
        "subject": p.subject(),
        "method": p.method().to_string(),
        // The handler sees the same certificate the gate did.
        "peer_sha256": req.conn_data::<PeerCertificate>().map(|c| c.sha256().to_vec()),
    }))
}

fn start(pki: &Pki, issuer: &TestIssuer) -> Server {
    let mtls = Mtls::builder(
        IdentityMapping::builder()
            .allow_trust_domains(["demo.local"])
            .build()
            .unwrap(),
    )
    .build();
    let gate = Gate::builder(Chain::new().with(issuer.jwt()).with(mtls))
        .realm(REALM)
        .build();
    let auth = AuthMiddleware::new(gate);
    let tls = pki.server_tls();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .service(
                web::resource("/alpha-only")
                    .wrap(auth.require(Rule::claim_prefix("spiffe_id", ALPHA)))
                    .route(web::get().to(|| async { "alpha area" })),
            )
            .route("/whoami", web::get().to(whoami))
            .wrap(auth.clone())
    })
    .workers(1)
    .disable_signals()
    .on_connect(auth_actix::tls::on_connect)
    .listen_rustls_0_23(listener, (*tls.server_config()).clone())
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Server { base, handle }
}

struct Reply {
    status: u16,
    challenge: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> Reply {
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Reply {
        status,
        challenge,
        body: res.text().await.unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_certificate_alone_authenticates_as_its_spiffe_id() {
    let (pki, issuer) = (Pki::new(), TestIssuer::new());
    let server = start(&pki, &issuer);
    let alpha = pki.client(Some(&pki.alpha));
    let expected_sha256 = CertIdentity::from_der(pki.alpha.cert.der())
        .unwrap()
        .sha256()
        .to_vec();
    // Several requests on one kept-alive connection: the certificate is read once, and each
    // request carries it.
    for _ in 0..3 {
        let reply = get(&alpha, &server.url("/whoami"), None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.json(),
            json!({"subject": ALPHA, "method": "mtls", "peer_sha256": expected_sha256})
        );
    }
    let beta = get(&pki.client(Some(&pki.beta)), &server.url("/whoami"), None).await;
    assert_eq!(beta.json()["subject"], BETA);
    server.stop().await;
}

#[actix_web::test]
async fn no_certificate_and_no_token_is_401() {
    let (pki, issuer) = (Pki::new(), TestIssuer::new());
    let server = start(&pki, &issuer);
    let anonymous = pki.client(None);
    let reply = get(&anonymous, &server.url("/whoami"), None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge, format!(r#"Bearer realm="{REALM}""#));
    // Without a certificate, a token still works (the handshake made it optional).
    let reply = get(&anonymous, &server.url("/whoami"), Some(&issuer.token())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"subject": "alice", "method": "jwt", "peer_sha256": null})
    );
    server.stop().await;
}

#[actix_web::test]
async fn a_certificate_from_an_unknown_ca_fails_the_handshake() {
    let (pki, issuer) = (Pki::new(), TestIssuer::new());
    let server = start(&pki, &issuer);
    let stranger = pki.client(Some(&pki.stranger));
    // No HTTP answer at all: the server refuses the handshake, with or without a token.
    for token in [None, Some(issuer.token())] {
        let mut req = stranger.get(server.url("/whoami"));
        if let Some(token) = &token {
            req = req.bearer_auth(token);
        }
        let err = req.send().await.expect_err("the handshake must fail");
        // The server's alert: the client certificate's issuer is unknown.
        assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");
    }
    // The server carries on for others.
    let reply = get(&pki.client(Some(&pki.alpha)), &server.url("/whoami"), None).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[actix_web::test]
async fn a_bound_token_is_accepted_only_with_its_certificate() {
    let (pki, issuer) = (Pki::new(), TestIssuer::new());
    let server = start(&pki, &issuer);
    let bound = issuer.mint(json!({"cnf": {"x5t#S256": pki.alpha.x5t_s256()}}));
    let url = server.url("/whoami");
    let (alpha, beta, anonymous) = (
        pki.client(Some(&pki.alpha)),
        pki.client(Some(&pki.beta)),
        pki.client(None),
    );
    // Twice: the full verification, then the verified-token cache.
    for _ in 0..2 {
        let ok = get(&alpha, &url, Some(&bound)).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(
            (ok.json()["subject"].clone(), ok.json()["method"].clone()),
            (json!("alice"), json!("jwt"))
        );
        for (who, client) in [("beta", &beta), ("no certificate", &anonymous)] {
            let refused = get(client, &url, Some(&bound)).await;
            assert_eq!(refused.status, 401, "{who}");
            assert!(
                refused
                    .challenge
                    .starts_with(&format!(r#"Bearer realm="{REALM}", error="invalid_token""#)),
                "{who}: {}",
                refused.challenge
            );
        }
    }
    server.stop().await;
}

#[actix_web::test]
async fn a_route_policy_grants_by_spiffe_id() {
    let (pki, issuer) = (Pki::new(), TestIssuer::new());
    let server = start(&pki, &issuer);
    let url = server.url("/alpha-only");
    let alpha = get(&pki.client(Some(&pki.alpha)), &url, None).await;
    assert_eq!((alpha.status, alpha.body.as_str()), (200, "alpha area"));
    let beta = get(&pki.client(Some(&pki.beta)), &url, None).await;
    assert_eq!(beta.status, 403);
    assert!(
        beta.challenge.contains(r#"error="insufficient_scope""#),
        "{}",
        beta.challenge
    );
    // A token without the claim is refused the same way; no certificate at all is a 401.
    let token = get(&pki.client(None), &url, Some(&issuer.token())).await;
    assert_eq!(token.status, 403);
    let nothing = get(&pki.client(None), &url, None).await;
    assert_eq!(nothing.status, 401);
    server.stop().await;
}

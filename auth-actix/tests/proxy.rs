//! The trusted-proxy mode of `AuthMiddleware`: a client certificate forwarded (URL-encoded PEM)
//! by a proxy is accepted only from the proxy's addresses, and only when it validates.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)]

use actix_web::{App, test, web};
use auth_actix::{AuthMiddleware, Principal};
use auth_core::Gate;
use auth_core::mtls::Mtls;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::trust::{TrustStore, TrustedProxy};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// A CA (its PEM) and a client certificate it signed (its PEM).
fn pki(name: &str) -> (String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, "alpha");
    leaf.subject_alt_names.push(SanType::URI(
        "spiffe://demo.local/service/alpha".try_into().unwrap(),
    ));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    (ca_pem, leaf.signed_by(&key, &issuer).unwrap().pem())
}

/// What nginx's `$ssl_client_escaped_cert` sends: the PEM, percent-encoded.
fn escaped(pem: &str) -> String {
    pem.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn whoami(p: Principal) -> String {
    p.subject().to_owned()
}

#[actix_web::test]
async fn forwarded_certificates_count_only_from_the_proxy_and_only_when_valid() {
    let (ca, alpha) = pki("Proxy test CA");
    let (_, foreign) = pki("Another CA");
    let trust = Arc::new(TrustStore::from_pem(ca.as_bytes()).unwrap());
    let mtls = Mtls::builder(IdentityMapping::builder().build().unwrap()).build();
    let auth = AuthMiddleware::new(Gate::builder(mtls).build()).trusted_proxy(
        TrustedProxy::new(["127.0.0.1/32".parse().unwrap()]),
        move || trust.clone(),
    );
    let app = test::init_service(
        App::new().service(
            web::resource("/whoami")
                .wrap(auth)
                .route(web::get().to(whoami)),
        ),
    )
    .await;
    let call = |from: &str, header: String| {
        let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
        test::TestRequest::get()
            .uri("/whoami")
            .peer_addr(addr)
            .insert_header(("x-forwarded-client-cert", header))
            .to_request()
    };

    let res = test::call_service(&app, call("127.0.0.1", escaped(&alpha))).await;
    assert_eq!(res.status(), 200);
    let body = test::read_body(res).await;
    assert_eq!(body, "spiffe://demo.local/service/alpha");

    // From anywhere else the header is ignored: no credentials at all.
    let res = test::call_service(&app, call("10.0.0.7", escaped(&alpha))).await;
    assert_eq!(res.status(), 401);
    // From the proxy, another CA's certificate or a mangled header is refused.
    for bad in [escaped(&foreign), "not%20a%20certificate".to_owned()] {
        let res = test::call_service(&app, call("127.0.0.1", bad)).await;
        assert_eq!(res.status(), 401);
    }
}

//! The trusted-proxy mode: a client certificate forwarded (URL-encoded PEM) by a proxy is
//! accepted only from the proxy's addresses, and only when it validates against the trust store.
#![cfg(feature = "mtls")]
#![allow(clippy::unwrap_used)]

use auth_core::mtls::Mtls;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::trust::{TrustStore, TrustedProxy};
use auth_core::{AuthMethod, Gate};
use auth_tower::{AuthLayer, Principal};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Request, StatusCode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt as _;

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
    let leaf_pem = leaf.signed_by(&key, &issuer).unwrap().pem();
    (ca_pem, leaf_pem)
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

fn app(trust: Arc<TrustStore>) -> Router {
    let mtls = Mtls::builder(IdentityMapping::builder().build().unwrap()).build();
    let proxy = TrustedProxy::new(["127.0.0.1/32".parse().unwrap()]);
    Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move {
                assert_eq!(p.method(), AuthMethod::Mtls);
                p.subject().to_owned()
            }),
        )
        .layer(
            AuthLayer::new(Gate::builder(mtls).build()).trusted_proxy(proxy, move || trust.clone()),
        )
}

async fn call(app: &Router, from: Option<&str>, header: Option<String>) -> (StatusCode, String) {
    let mut req = Request::get("/whoami").body(Body::empty()).unwrap();
    if let Some(from) = from {
        let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    if let Some(h) = header {
        req.headers_mut()
            .insert("x-forwarded-client-cert", h.parse().unwrap());
    }
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn forwarded_certificates_count_only_from_the_proxy_and_only_when_valid() {
    let (ca, alpha) = pki("Proxy test CA");
    let (_, foreign) = pki("Another CA");
    let app = app(Arc::new(TrustStore::from_pem(ca.as_bytes()).unwrap()));

    let (status, body) = call(&app, Some("127.0.0.1"), Some(escaped(&alpha))).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "spiffe://demo.local/service/alpha")
    );

    // The same header from anywhere else is ignored: no credentials at all.
    assert_eq!(
        call(&app, Some("10.0.0.7"), Some(escaped(&alpha))).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Without the remote address (no ConnectInfo), it is ignored too.
    assert_eq!(
        call(&app, None, Some(escaped(&alpha))).await.0,
        StatusCode::UNAUTHORIZED
    );
    // From the proxy, a certificate of another CA or a mangled header is refused.
    for bad in [escaped(&foreign), "not%20a%20certificate".to_owned()] {
        let (status, _) = call(&app, Some("127.0.0.1"), Some(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

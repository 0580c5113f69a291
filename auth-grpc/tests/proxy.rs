//! The trusted-proxy mode of `GrpcAuthLayer`: a client certificate forwarded (URL-encoded PEM)
//! in the call's metadata is accepted only from the proxy's addresses (tonic's remote address),
//! and only when it validates.
#![cfg(feature = "mtls")]
#![allow(clippy::unwrap_used)]

use auth_core::mtls::Mtls;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::trust::{TrustStore, TrustedProxy};
use auth_core::policy::PolicyMap;
use auth_core::{Gate, Principal};
use auth_grpc::GrpcAuthLayer;
use http::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::convert::Infallible;
use std::sync::Arc;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer as _, ServiceExt as _};

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

/// Calls a service answering with the principal's subject in `x-subject`, from `from`, with the
/// forwarded certificate `header`; returns (grpc-status, subject).
async fn call(layer: &GrpcAuthLayer, from: &str, header: String) -> (String, Option<String>) {
    let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
        let subject = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.subject().to_owned());
        let mut res = Response::new(());
        if let Some(s) = subject {
            res.headers_mut().insert("x-subject", s.parse().unwrap());
        }
        res.headers_mut()
            .insert("grpc-status", "0".parse().unwrap());
        Ok::<_, Infallible>(res)
    }));
    let mut req = Request::post("/demo.v1.Demo/WhoAmI").body(()).unwrap();
    req.extensions_mut().insert(TcpConnectInfo {
        local_addr: Some("127.0.0.1:50051".parse().unwrap()),
        remote_addr: Some(format!("{from}:40000").parse().unwrap()),
    });
    req.headers_mut()
        .insert("x-forwarded-client-cert", header.parse().unwrap());
    let res = svc.oneshot(req).await.unwrap();
    let text = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (text("grpc-status").unwrap_or_default(), text("x-subject"))
}

#[tokio::test]
async fn forwarded_certificates_count_only_from_the_proxy_and_only_when_valid() {
    let (ca, alpha) = pki("Proxy test CA");
    let (_, foreign) = pki("Another CA");
    let trust = Arc::new(TrustStore::from_pem(ca.as_bytes()).unwrap());
    let mtls = Mtls::builder(IdentityMapping::builder().build().unwrap()).build();
    let layer = GrpcAuthLayer::new(Gate::builder(mtls).build(), PolicyMap::new()).trusted_proxy(
        TrustedProxy::new(["127.0.0.1/32".parse().unwrap()]),
        move || trust.clone(),
    );

    assert_eq!(
        call(&layer, "127.0.0.1", escaped(&alpha)).await,
        ("0".into(), Some("spiffe://demo.local/service/alpha".into()))
    );
    // From anywhere else the entry is ignored: no credentials, UNAUTHENTICATED (16).
    assert_eq!(
        call(&layer, "10.0.0.7", escaped(&alpha)).await,
        ("16".into(), None)
    );
    // From the proxy, another CA's certificate or a mangled entry is refused.
    for bad in [escaped(&foreign), "not%20a%20certificate".to_owned()] {
        assert_eq!(call(&layer, "127.0.0.1", bad).await, ("16".into(), None));
    }
}

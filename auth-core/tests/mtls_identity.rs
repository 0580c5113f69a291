//! Client-certificate identity, mapping and the `Mtls` authenticator, over a PKI generated at
//! test time (rcgen; no key is committed):
//!
//! - every field of `CertIdentity` from certificates with SPIFFE, DNS, e-mail and URI SANs
//!   and subject attributes; malformed or ambiguous SPIFFE IDs refused;
//! - `IdentityMapping`: subject order, tenant, roles and scopes, deny rules, allowed and
//!   pinned trust domains;
//! - `Mtls` through a `Gate` with `WithPeer`: certificate-only requests (cached the second
//!   time), bearer tokens over mTLS going to the JWT authenticator of a `Chain` and staying
//!   bound to their certificate (RFC 8705), and a policy granting by SPIFFE ID;
//! - the RFC 8705 `x5t#S256` vectors of `shared/vectors/rfc/rfc8705-x5t-s256.json`.
#![cfg(all(feature = "mtls", feature = "issuer"))]

use auth_core::audit::{AuditEvent, AuditSink, Outcome};
use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::mtls::Mtls;
use auth_core::mtls::identity::{CertIdentity, IdentityError, SpiffeIdError};
use auth_core::mtls::mapping::{
    CertMatch, IdentityMapping, MappingError, SubjectSource, TenantSource,
};
use auth_core::mtls::trust::{CertError, TrustStore};
use auth_core::policy::{RequestContext, Rule};
use auth_core::{
    AuthError, AuthMethod, Chain, Check, Gate, PeerCertificate, Principal, TokenError, WithPeer,
};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SanType, SerialNumber,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const ISS: &str = "https://issuer.example";
/// 2027-01-15, inside every test certificate's validity.
const NOW: i64 = 1_800_000_000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("time")
}

// ---------------------------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------------------------

/// What a test certificate says.
#[derive(Default)]
struct Spec<'a> {
    uris: &'a [&'a str],
    dns: &'a [&'a str],
    emails: &'a [&'a str],
    /// Subject attributes, in order (several of one type allowed).
    subject: &'a [(&'a str, &'a str)],
    serial: Option<&'a [u8]>,
    ca: bool,
}

fn oid(short: &str) -> Vec<u64> {
    match short {
        "CN" => vec![2, 5, 4, 3],
        "O" => vec![2, 5, 4, 10],
        "OU" => vec![2, 5, 4, 11],
        "C" => vec![2, 5, 4, 6],
        other => panic!("no OID for {other}"),
    }
}

fn params(spec: &Spec<'_>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let ia5 = |s: &str| s.to_owned().try_into().expect("IA5 string");
    p.subject_alt_names
        .extend(spec.uris.iter().map(|u| SanType::URI(ia5(u))));
    p.subject_alt_names
        .extend(spec.dns.iter().map(|d| SanType::DnsName(ia5(d))));
    p.subject_alt_names
        .extend(spec.emails.iter().map(|e| SanType::Rfc822Name(ia5(e))));
    p.subject_alt_names
        .push(SanType::IpAddress("10.1.2.3".parse().expect("ip")));
    // rcgen keeps one value per attribute type: custom types with the same OIDs give
    // repeated attributes.
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for (kind, value) in spec.subject {
        let ty = if seen.contains(kind) {
            DnType::CustomDnType(oid(kind))
        } else {
            seen.push(*kind);
            match *kind {
                "CN" => DnType::CommonName,
                "O" => DnType::OrganizationName,
                "OU" => DnType::OrganizationalUnitName,
                "C" => DnType::CountryName,
                other => DnType::CustomDnType(oid(other)),
            }
        };
        dn.push(ty, *value);
    }
    p.distinguished_name = dn;
    p.serial_number = spec.serial.map(SerialNumber::from_slice);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2090, 1, 1);
    if spec.ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

fn self_signed(spec: &Spec<'_>) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    params(spec).self_signed(&key).expect("cert").der().to_vec()
}

fn issued(ca: &CertifiedIssuer<'static, KeyPair>, spec: &Spec<'_>) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    params(spec)
        .signed_by(&key, ca)
        .expect("cert")
        .der()
        .to_vec()
}

fn ca(subject: &[(&str, &str)]) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = params(&Spec {
        subject,
        ca: true,
        ..Spec::default()
    });
    p.subject_alt_names.clear();
    p.not_before = rcgen::date_time_ymd(2019, 1, 1);
    p.not_after = rcgen::date_time_ymd(2095, 1, 1);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
}

fn spiffe(uri: &str) -> Vec<u8> {
    self_signed(&Spec {
        uris: &[uri],
        subject: &[("CN", "workload")],
        ..Spec::default()
    })
}

fn identity(der: &[u8]) -> CertIdentity {
    CertIdentity::from_der(der).expect("identity")
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

#[test]
fn identity_has_every_field() {
    let issuer = ca(&[
        ("C", "US"),
        ("O", "Example, Inc."),
        ("CN", "Example Issuing CA"),
    ]);
    let der = issued(
        &issuer,
        &Spec {
            uris: &[
                "https://billing.example/id",
                "spiffe://prod.example/service/billing",
            ],
            dns: &["Billing.Internal", "billing.prod.example"],
            emails: &["ops@example.com", "billing@example.com"],
            subject: &[
                ("C", "DE"),
                ("O", "Example Corp"),
                ("O", "Example Payments"),
                ("OU", "payments"),
                ("OU", "ops"),
                ("CN", "billing"),
            ],
            serial: Some(&[0x9a, 0xbc, 0x01]),
            ca: false,
        },
    );
    let id = identity(&der);
    let spiffe = id.spiffe_id().expect("SPIFFE ID");
    assert_eq!(spiffe.as_str(), "spiffe://prod.example/service/billing");
    assert_eq!(spiffe.trust_domain(), "prod.example");
    assert_eq!(spiffe.path(), "/service/billing");
    assert_eq!(id.trust_domain(), Some("prod.example"));
    assert_eq!(
        id.uris(),
        [
            "https://billing.example/id",
            "spiffe://prod.example/service/billing"
        ]
    );
    assert_eq!(id.dns_names(), ["billing.internal", "billing.prod.example"]);
    assert_eq!(id.emails(), ["ops@example.com", "billing@example.com"]);
    assert_eq!(id.common_name(), Some("billing"));
    assert_eq!(id.organizations(), ["Example Corp", "Example Payments"]);
    assert_eq!(id.organizational_units(), ["payments", "ops"]);
    // DER keeps the serial positive with a leading zero byte; the hex leaves it out.
    assert_eq!(id.serial(), "9abc01");
    assert_eq!(
        id.issuer(),
        r"CN=Example Issuing CA,O=Example\, Inc.,C=US",
        "RFC 4514: last RDN first, specials escaped"
    );
    assert_eq!(
        id.subject(),
        "CN=billing,OU=ops,OU=payments,O=Example Payments,O=Example Corp,C=DE"
    );
    let peer = PeerCertificate::new(der.clone());
    assert_eq!(id.sha256(), peer.sha256());
    assert_eq!(id.x5t_s256(), b64(peer.sha256()));
    assert_eq!(
        id.not_before(),
        rcgen::date_time_ymd(2020, 1, 1).unix_timestamp()
    );
    assert_eq!(
        id.not_after(),
        rcgen::date_time_ymd(2090, 1, 1).unix_timestamp()
    );
    assert_eq!(id.der(), der.as_slice());

    // From the connection's certificate: the same identity, sharing its thumbprint.
    let from_peer = CertIdentity::from_peer(&peer).expect("identity");
    assert_eq!(from_peer.spiffe_id(), id.spiffe_id());
    assert_eq!(from_peer.x5t_s256(), id.x5t_s256());
    // Debug output names the SPIFFE ID but not the personal parts.
    let debug = format!("{id:?}");
    assert!(debug.contains("spiffe://prod.example/service/billing"));
    assert!(!debug.contains("ops@example.com"), "{debug}");
}

#[test]
fn certificates_without_spiffe_or_san() {
    let id = identity(&self_signed(&Spec {
        dns: &["api.example"],
        subject: &[("CN", "api")],
        ..Spec::default()
    }));
    assert!(id.spiffe_id().is_none());
    assert_eq!(id.trust_domain(), None);
    assert!(id.uris().is_empty() && id.emails().is_empty());
    assert_eq!(id.dns_names(), ["api.example"]);
    let bare = identity(&self_signed(&Spec::default()));
    assert_eq!(bare.common_name(), None);
    assert!(bare.organizations().is_empty());
    assert_eq!(bare.subject(), "");
    // A URI SAN in another scheme is just a URI.
    let other = identity(&self_signed(&Spec {
        uris: &["urn:example:billing"],
        ..Spec::default()
    }));
    assert!(other.spiffe_id().is_none());
    assert_eq!(other.uris(), ["urn:example:billing"]);
}

#[test]
fn bad_spiffe_ids_are_refused() {
    let refused = |uris: &[&str]| {
        CertIdentity::from_der(&self_signed(&Spec {
            uris,
            ..Spec::default()
        }))
        .expect_err("refused")
    };
    for (uri, why) in [
        (
            "spiffe://Prod.example/service/a",
            SpiffeIdError::TrustDomainChar,
        ),
        ("spiffe://prod.example:8443/service/a", SpiffeIdError::Port),
        ("spiffe://prod.example/service/a?x=1", SpiffeIdError::Query),
        (
            "spiffe://prod.example/service/a#frag",
            SpiffeIdError::Fragment,
        ),
        (
            "spiffe://admin@prod.example/service/a",
            SpiffeIdError::UserInfo,
        ),
        (
            "spiffe://prod.example/service/../admin",
            SpiffeIdError::DotSegment,
        ),
        (
            "spiffe://prod.example/service/",
            SpiffeIdError::EmptySegment,
        ),
        (
            "spiffe://prod.example/service%2Fadmin",
            SpiffeIdError::PathChar,
        ),
        (
            "SPIFFE://prod.example/service/a",
            SpiffeIdError::WrongScheme,
        ),
        ("spiffe:prod.example/service/a", SpiffeIdError::WrongScheme),
    ] {
        let err = refused(&[uri]);
        assert_eq!(err, IdentityError::InvalidSpiffeId(why), "{uri}");
        // The message says what is wrong, not what the certificate holds.
        assert!(!err.to_string().contains("prod.example"), "{err}");
    }
    assert_eq!(
        refused(&[
            "spiffe://prod.example/service/a",
            "spiffe://prod.example/service/b"
        ]),
        IdentityError::MultipleSpiffeIds
    );
    assert_eq!(
        refused(&["spiffe://prod.example"]),
        IdentityError::SpiffeIdWithoutPath
    );
    // A CA certificate is not a workload.
    let ca_with_id = self_signed(&Spec {
        uris: &["spiffe://prod.example/service/a"],
        ca: true,
        ..Spec::default()
    });
    assert_eq!(
        CertIdentity::from_der(&ca_with_id).expect_err("refused"),
        IdentityError::NotALeaf
    );
}

#[test]
fn malformed_and_ambiguous_certificates_are_refused() {
    let der = spiffe("spiffe://prod.example/service/a");
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(
        CertIdentity::from_der(&trailing).expect_err("refused"),
        IdentityError::TrailingData
    );
    assert!(matches!(
        CertIdentity::from_der(&der[..der.len() - 1]),
        Err(IdentityError::Malformed(_))
    ));
    let mut big = der.clone();
    big.resize(16 * 1024 + 1, 0);
    assert_eq!(
        CertIdentity::from_der(&big).expect_err("refused"),
        IdentityError::TooLarge { len: 16 * 1024 + 1 }
    );
    let two_cns = self_signed(&Spec {
        subject: &[("CN", "a"), ("CN", "b")],
        ..Spec::default()
    });
    assert_eq!(
        CertIdentity::from_der(&two_cns).expect_err("refused"),
        IdentityError::AmbiguousCommonName
    );
}

// ---------------------------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------------------------

fn map(mapping: &IdentityMapping, der: &[u8]) -> Result<Principal, MappingError> {
    mapping.map(&identity(der), NOW)
}

#[test]
fn subject_follows_the_configured_order() {
    let full = self_signed(&Spec {
        uris: &["spiffe://prod.example/service/a", "urn:example:a"],
        dns: &["a.internal"],
        emails: &["a@example.com"],
        subject: &[("CN", "service-a")],
        ..Spec::default()
    });
    let dns_cn = self_signed(&Spec {
        dns: &["a.internal"],
        subject: &[("CN", "service-a")],
        ..Spec::default()
    });
    let cn_only = self_signed(&Spec {
        subject: &[("CN", "service-a")],
        ..Spec::default()
    });
    let nothing = self_signed(&Spec::default());
    let default = IdentityMapping::default();
    let subject = |m: &IdentityMapping, der: &[u8]| map(m, der).map(|p| p.subject().to_owned());
    assert_eq!(
        subject(&default, &full).as_deref(),
        Ok("spiffe://prod.example/service/a")
    );
    assert_eq!(subject(&default, &dns_cn).as_deref(), Ok("a.internal"));
    assert_eq!(subject(&default, &cn_only).as_deref(), Ok("service-a"));
    assert_eq!(subject(&default, &nothing), Err(MappingError::NoSubject));

    let cn_first = IdentityMapping::builder()
        .subject_order([SubjectSource::CommonName, SubjectSource::Dns])
        .build()
        .expect("mapping");
    assert_eq!(subject(&cn_first, &full).as_deref(), Ok("service-a"));
    let email = IdentityMapping::builder()
        .subject_order([SubjectSource::Email])
        .build()
        .expect("mapping");
    assert_eq!(subject(&email, &full).as_deref(), Ok("a@example.com"));
    assert_eq!(subject(&email, &dns_cn), Err(MappingError::NoSubject));
    let uri = IdentityMapping::builder()
        .subject_order([SubjectSource::Uri])
        .build()
        .expect("mapping");
    assert_eq!(
        subject(&uri, &full).as_deref(),
        Ok("urn:example:a"),
        "not the SPIFFE ID"
    );
}

#[test]
fn principal_carries_the_certificate() {
    let der = self_signed(&Spec {
        uris: &["spiffe://prod.example/service/billing"],
        dns: &["billing.internal"],
        emails: &["ops@example.com"],
        subject: &[("O", "Example Corp"), ("OU", "payments"), ("CN", "billing")],
        serial: Some(&[0x01, 0x02]),
        ..Spec::default()
    });
    let id = identity(&der);
    let p = IdentityMapping::default().map(&id, NOW).expect("principal");
    assert_eq!(p.method(), AuthMethod::Mtls);
    assert_eq!(p.subject(), "spiffe://prod.example/service/billing");
    assert_eq!(p.tenant(), Some("prod.example"));
    assert_eq!(p.key_id(), Some(b64(id.sha256()).as_str()));
    assert_eq!(p.expires_at(), Some(id.not_after()));
    assert_eq!(p.issuer(), Some(id.issuer()));
    assert_eq!(p.certificate_binding(), Some(id.sha256()));
    assert!(p.roles().is_empty() && p.scopes().is_empty());
    assert_eq!(
        serde_json::Value::Object(p.claims().as_map().clone()),
        json!({
            "spiffe_id": "spiffe://prod.example/service/billing",
            "trust_domain": "prod.example",
            "dns": ["billing.internal"],
            "email": ["ops@example.com"],
            "uri": ["spiffe://prod.example/service/billing"],
            "cn": "billing",
            "o": ["Example Corp"],
            "ou": ["payments"],
            "serial": "0102",
            "issuer": id.issuer(),
            "x5t#S256": b64(id.sha256()),
        })
    );
    // Without a SPIFFE ID or a CN, those claims are absent (a policy on them fails).
    let plain = map(
        &IdentityMapping::default(),
        &self_signed(&Spec {
            dns: &["a.internal"],
            ..Spec::default()
        }),
    )
    .expect("principal");
    assert!(plain.claims().get("spiffe_id").is_none());
    assert!(plain.claims().get("cn").is_none());
    assert_eq!(plain.tenant(), None);
}

#[test]
fn tenant_sources() {
    let der = self_signed(&Spec {
        uris: &["spiffe://prod.example/service/a"],
        subject: &[("O", "acme"), ("O", "acme-sub")],
        ..Spec::default()
    });
    let tenant = |source: TenantSource| {
        let m = IdentityMapping::builder()
            .tenant(source)
            .build()
            .expect("mapping");
        map(&m, &der)
            .expect("principal")
            .tenant()
            .map(str::to_owned)
    };
    assert_eq!(
        tenant(TenantSource::TrustDomain).as_deref(),
        Some("prod.example")
    );
    assert_eq!(tenant(TenantSource::Organization).as_deref(), Some("acme"));
    assert_eq!(
        tenant(TenantSource::Fixed("internal".into())).as_deref(),
        Some("internal")
    );
    assert_eq!(tenant(TenantSource::None), None);
}

#[test]
fn roles_scopes_and_refusals() {
    let mapping = IdentityMapping::builder()
        .role(CertMatch::spiffe_path_prefix("/service/"), "service")
        .role(CertMatch::trust_domain("partner.example"), "partner")
        .role(CertMatch::organizational_unit("ops"), "operator")
        .roles(
            CertMatch::spiffe_id_prefix("spiffe://prod.example/service/billing"),
            ["billing", "service"],
        )
        .scopes(CertMatch::dns("Reports.Internal"), ["reports:read"])
        .deny(CertMatch::spiffe_id(
            "spiffe://prod.example/service/retired",
        ))
        .build()
        .expect("mapping");
    let p = |spec: Spec<'_>| map(&mapping, &self_signed(&spec));
    let billing = p(Spec {
        uris: &["spiffe://prod.example/service/billing"],
        subject: &[("OU", "ops")],
        ..Spec::default()
    })
    .expect("principal");
    assert_eq!(
        billing.roles(),
        ["service", "operator", "billing"],
        "no duplicates"
    );
    let partner = p(Spec {
        uris: &["spiffe://partner.example/batch/export"],
        ..Spec::default()
    })
    .expect("principal");
    assert_eq!(partner.roles(), ["partner"]);
    // Prefixes match whole segments.
    let services = p(Spec {
        uris: &["spiffe://prod.example/services/a"],
        ..Spec::default()
    })
    .expect("principal");
    assert!(services.roles().is_empty());
    let reports = p(Spec {
        dns: &["reports.internal"],
        ..Spec::default()
    })
    .expect("principal");
    assert_eq!(reports.scopes(), ["reports:read"]);
    assert_eq!(
        p(Spec {
            uris: &["spiffe://prod.example/service/retired"],
            ..Spec::default()
        })
        .expect_err("denied"),
        MappingError::Denied
    );

    // Deny one certificate by its thumbprint, whatever it says.
    let revoked = spiffe("spiffe://prod.example/service/billing");
    let deny_one = IdentityMapping::builder()
        .deny(CertMatch::thumbprint(
            *PeerCertificate::new(revoked.clone()).sha256(),
        ))
        .build()
        .expect("mapping");
    assert_eq!(map(&deny_one, &revoked).err(), Some(MappingError::Denied));
    assert!(map(&deny_one, &spiffe("spiffe://prod.example/service/billing")).is_ok());
}

#[test]
fn allowed_trust_domains() {
    let mapping = IdentityMapping::builder()
        .allow_trust_domains(["prod.example"])
        .allow_trust_domains(["partner.example"])
        .build()
        .expect("mapping");
    assert!(map(&mapping, &spiffe("spiffe://prod.example/service/a")).is_ok());
    assert!(map(&mapping, &spiffe("spiffe://partner.example/service/a")).is_ok());
    for refused in [
        spiffe("spiffe://dev.example/service/a"),
        spiffe("spiffe://prod.example.evil/service/a"),
        // No SPIFFE ID, so no trust domain.
        self_signed(&Spec {
            dns: &["prod.example"],
            ..Spec::default()
        }),
    ] {
        assert_eq!(
            map(&mapping, &refused).err(),
            Some(MappingError::TrustDomainNotAllowed)
        );
    }
}

#[test]
fn validity_is_checked_against_the_given_time() {
    let id = identity(&spiffe("spiffe://prod.example/service/a"));
    let m = IdentityMapping::default();
    assert!(m.map(&id, id.not_after()).is_ok());
    assert_eq!(
        m.map(&id, id.not_after() + 1).err(),
        Some(MappingError::Expired)
    );
    assert_eq!(
        m.map(&id, id.not_before() - 1).err(),
        Some(MappingError::NotYetValid)
    );
}

#[test]
fn a_pinned_trust_domain_must_chain_to_its_own_cas() {
    let prod_ca = ca(&[("CN", "prod CA")]);
    let dev_ca = ca(&[("CN", "dev CA")]);
    let prod_store = TrustStore::from_pem(prod_ca.pem().as_bytes()).expect("store");
    let mapping = IdentityMapping::builder()
        .pin_trust_domain("prod.example", prod_store)
        .build()
        .expect("mapping");
    let prod_id = Spec {
        uris: &["spiffe://prod.example/service/a"],
        ..Spec::default()
    };
    let now = now();
    let ok = mapping.map(&identity(&issued(&prod_ca, &prod_id)), now);
    assert_eq!(
        ok.expect("principal").subject(),
        "spiffe://prod.example/service/a"
    );
    // The handshake accepts the dev CA too; it must not speak for prod.example.
    let forged = issued(&dev_ca, &prod_id);
    assert_eq!(
        mapping.map(&identity(&forged), now).err(),
        Some(MappingError::WrongTrustDomainCa(CertError::UnknownIssuer))
    );
    // Domains that are not pinned are not checked.
    let dev = issued(
        &dev_ca,
        &Spec {
            uris: &["spiffe://dev.example/service/a"],
            ..Spec::default()
        },
    );
    assert!(mapping.map(&identity(&dev), now).is_ok());

    let twice = IdentityMapping::builder()
        .pin_trust_domain(
            "prod.example",
            TrustStore::from_pem(prod_ca.pem().as_bytes()).expect("store"),
        )
        .pin_trust_domain(
            "prod.example",
            TrustStore::from_pem(dev_ca.pem().as_bytes()).expect("store"),
        )
        .build();
    assert!(twice.is_err());
}

// ---------------------------------------------------------------------------------------------
// The authenticator through a gate
// ---------------------------------------------------------------------------------------------

type Seen = (Outcome, &'static str, Option<AuthMethod>, Option<String>);

/// An audit sink that keeps (outcome, reason, method, subject).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl AuditSink for Recorder {
    fn record(&self, e: &AuditEvent<'_>) {
        self.0.lock().expect("lock").push((
            e.outcome,
            e.reason,
            e.method,
            e.principal.map(|p| p.subject().to_owned()),
        ));
    }
}

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

fn bearer(token: Option<&str>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Some(t) = token {
        h.insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    h
}

async fn check(
    gate: &Gate,
    token: Option<&str>,
    peer: Option<&PeerCertificate>,
) -> Result<Principal, AuthError> {
    let headers = bearer(token);
    gate.check_async(&WithPeer {
        headers: &headers,
        peer,
    })
    .await
    .map(|p| p.expect("a principal"))
}

fn mapping() -> IdentityMapping {
    IdentityMapping::builder()
        .allow_trust_domains(["prod.example", "dev.example"])
        .role(CertMatch::spiffe_path_prefix("/service/"), "service")
        .build()
        .expect("mapping")
}

#[tokio::test]
async fn a_certificate_alone_authenticates_and_is_cached() {
    let audit = Recorder::default();
    let gate = Gate::builder(Mtls::builder(mapping()).build())
        .audit(audit.clone())
        .build();
    let billing = PeerCertificate::new(spiffe("spiffe://prod.example/service/billing"));
    let headers = http::HeaderMap::new();
    let request = WithPeer {
        headers: &headers,
        peer: Some(&billing),
    };

    // First request: parsed and mapped (a ready future: no I/O).
    let Check::Pending(first) = gate.check(&request) else {
        panic!("the first request is a full verification");
    };
    let p = first.await.expect("allowed").expect("principal");
    assert_eq!(p.method(), AuthMethod::Mtls);
    assert_eq!(p.subject(), "spiffe://prod.example/service/billing");
    assert!(p.has_role("service"));
    // Second request: from the cache, without a future.
    let Check::Ready(Ok(Some(again))) = gate.check(&request) else {
        panic!("the second request is answered from the cache");
    };
    assert_eq!(again.subject(), p.subject());
    assert_eq!(again.key_id(), p.key_id());

    // Refused: another trust domain, and garbage; neither is cached as allowed.
    let stranger = PeerCertificate::new(spiffe("spiffe://other.example/service/billing"));
    let garbage = PeerCertificate::new(b"not a certificate".to_vec());
    for peer in [&stranger, &garbage, &stranger] {
        let err = check(&gate, None, Some(peer)).await.expect_err("refused");
        assert_eq!(
            err,
            AuthError::InvalidToken(TokenError::CertificateRejected)
        );
        assert_eq!(err.http_status(), 401);
        assert_eq!(err.rfc6750_code(), Some("invalid_token"));
        assert!(!err.description().contains("other.example"));
    }
    // Nothing at all: 401 without an error code.
    assert_eq!(
        check(&gate, None, None).await.expect_err("refused"),
        AuthError::MissingCredentials
    );

    let subject = Some("spiffe://prod.example/service/billing".to_owned());
    let mtls = Some(AuthMethod::Mtls);
    assert_eq!(
        audit.take(),
        vec![
            (Outcome::Allowed, "ok", mtls, subject.clone()),
            (Outcome::Allowed, "ok", mtls, subject),
            (Outcome::Denied, "certificate_rejected", mtls, None),
            (Outcome::Denied, "certificate_rejected", mtls, None),
            (Outcome::Denied, "certificate_rejected", mtls, None),
            (Outcome::Denied, "missing_credentials", mtls, None),
        ]
    );
}

struct Jwts {
    signer: SigningKey,
    jwt: Jwt,
}

fn jwts() -> Jwts {
    let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).keys(keys))
        .build()
        .expect("jwt");
    Jwts { signer, jwt }
}

fn token(signer: &SigningKey, cnf: Option<serde_json::Value>) -> String {
    let mut claims = json!({"iss": ISS, "sub": "client-app", "exp": now() + 300});
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    signer.sign(&claims).expect("sign")
}

#[tokio::test]
async fn a_bearer_token_over_mtls_goes_to_the_jwt_authenticator_and_stays_bound() {
    let Jwts { signer, jwt } = jwts();
    let gate = Gate::builder(
        Chain::new()
            .with(jwt)
            .with(Mtls::builder(mapping()).build()),
    )
    .build();
    let alpha = PeerCertificate::new(spiffe("spiffe://prod.example/service/alpha"));
    let beta = PeerCertificate::new(spiffe("spiffe://prod.example/service/beta"));
    let bound = token(&signer, Some(json!({"x5t#S256": b64(alpha.sha256())})));
    let mismatch = AuthError::InvalidToken(TokenError::CertificateMismatch);

    // Twice each: the full verification, then the cached one.
    for _ in 0..2 {
        let p = check(&gate, Some(&bound), Some(&alpha))
            .await
            .expect("allowed");
        assert_eq!((p.method(), p.subject()), (AuthMethod::Jwt, "client-app"));
        let err = check(&gate, Some(&bound), Some(&beta))
            .await
            .expect_err("refused");
        assert_eq!(err, mismatch);
        assert_eq!(err.http_status(), 401);
        assert_eq!(
            check(&gate, Some(&bound), None).await.expect_err("refused"),
            mismatch
        );
    }
    // An unbound token over mTLS is still the token's principal, not the certificate's.
    let plain = token(&signer, None);
    let p = check(&gate, Some(&plain), Some(&beta))
        .await
        .expect("allowed");
    assert_eq!(p.method(), AuthMethod::Jwt);
    // The certificate alone is the certificate's principal.
    let p = check(&gate, None, Some(&beta)).await.expect("allowed");
    assert_eq!(
        (p.method(), p.subject()),
        (AuthMethod::Mtls, "spiffe://prod.example/service/beta")
    );
    // A bad token over mTLS is refused, not "rescued" by the certificate.
    let err = check(&gate, Some("a.b.c"), Some(&alpha))
        .await
        .expect_err("refused");
    assert_eq!(err.http_status(), 401);
}

#[tokio::test]
async fn a_policy_grants_by_spiffe_id_and_trust_domain() {
    let gate = Gate::builder(Mtls::builder(mapping()).build()).build();
    let billing = PeerCertificate::new(spiffe("spiffe://prod.example/service/billing"));
    let batch = PeerCertificate::new(spiffe("spiffe://prod.example/batch/nightly"));
    let dev = PeerCertificate::new(spiffe("spiffe://dev.example/service/billing"));
    let ctx = RequestContext::new().method("POST").path("/payments");

    let services = Rule::claim_prefix("spiffe_id", "spiffe://prod.example/service/");
    let prod_or_staging = Rule::claim_equals("trust_domain", "prod.example")
        .or(Rule::claim_equals("trust_domain", "staging.example"));
    let exact = Rule::claim_equals("spiffe_id", "spiffe://prod.example/batch/nightly");
    for (peer, rule, allowed) in [
        (&billing, &services, true),
        (&batch, &services, false),
        (&dev, &services, false),
        (&billing, &prod_or_staging, true),
        (&batch, &prod_or_staging, true),
        (&dev, &prod_or_staging, false),
        (&batch, &exact, true),
        (&billing, &exact, false),
    ] {
        let p = check(&gate, None, Some(peer)).await.expect("authenticated");
        let decision = gate.enforce(rule, &p, &ctx);
        assert_eq!(decision.is_ok(), allowed, "{} {rule:?}", p.subject());
        if let Err(e) = decision {
            assert_eq!(e.http_status(), 403);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 8705 vectors
// ---------------------------------------------------------------------------------------------

/// The vectors file, or `None` (after saying so) when it is absent outside CI.
fn vectors_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("AUTH_VECTORS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    let file = dir.join("rfc/rfc8705-x5t-s256.json");
    if file.is_file() {
        return Some(file);
    }
    let msg = format!("RFC 8705 vectors not found at {}", file.display());
    assert!(std::env::var_os("CI").is_none(), "{msg}; required on CI");
    eprintln!("SKIPPED: {msg}");
    None
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM certificate")
        .to_vec()
}

#[tokio::test]
async fn rfc8705_thumbprint_vectors() {
    let Some(file) = vectors_file() else { return };
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).expect("read vectors")).expect("JSON");
    let Jwts { signer, jwt } = jwts();
    let gate = Gate::builder(jwt).build();
    let (mut matched, mut mismatched) = (0, 0);
    for case in doc["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("id");
        match case["kind"].as_str().expect("kind") {
            "thumbprint" => {
                let peer =
                    PeerCertificate::new(pem_der(case["certificate_pem"].as_str().expect("pem")));
                let hex: String = peer.sha256().iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(hex, case["der_sha256_hex"], "{id}");
                assert_eq!(b64(peer.sha256()), case["x5t_s256"], "{id}");
                assert_eq!(case["expected"], "match", "{id}");
                // A token bound to that thumbprint is accepted with that certificate.
                let t = token(&signer, Some(json!({"x5t#S256": case["x5t_s256"]})));
                check(&gate, Some(&t), Some(&peer)).await.expect(id);
                matched += 1;
            }
            "binding_check" => {
                let peer =
                    PeerCertificate::new(pem_der(case["certificate_pem"].as_str().expect("pem")));
                let cnf = &case["cnf"]["x5t#S256"];
                assert_eq!(case["expected"], "mismatch", "{id}");
                assert_ne!(cnf.as_str(), Some(b64(peer.sha256()).as_str()), "{id}");
                let t = token(&signer, Some(json!({"x5t#S256": cnf})));
                let err = check(&gate, Some(&t), Some(&peer)).await.expect_err(id);
                assert_eq!(err.rfc6750_code(), Some("invalid_token"), "{id}: {err:?}");
                assert_eq!(err.http_status(), 401, "{id}");
                mismatched += 1;
            }
            _ => {
                // The RFC's own examples come without a certificate: a token carrying the
                // example value matches none of ours.
                let x5t = &case["claims"]["cnf"]["x5t#S256"];
                let x5t = if x5t.is_null() {
                    &case["response"]["cnf"]["x5t#S256"]
                } else {
                    x5t
                };
                let example = x5t.as_str().expect("example value");
                let any = PeerCertificate::new(spiffe("spiffe://prod.example/service/a"));
                let t = token(&signer, Some(json!({"x5t#S256": example})));
                let err = check(&gate, Some(&t), Some(&any)).await.expect_err(id);
                assert_eq!(err.http_status(), 401, "{id}");
            }
        }
    }
    assert_eq!((matched, mismatched), (2, 3), "every vector was checked");
}

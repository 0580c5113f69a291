//! [`IdentityMapping`]: the rules that turn a certificate's [`CertIdentity`] into a
//! [`Principal`].
//!
//! - **Subject**: the SPIFFE ID if there is one, else the first DNS SAN, else the common
//!   name ([`IdentityMappingBuilder::subject_order`] changes the order and the sources).
//! - **Tenant**: the SPIFFE trust domain by default, or the first organization (`O`), a fixed
//!   value, or none ([`TenantSource`]).
//! - **Roles and scopes** from rules: "SPIFFE path under `/service/` → role `service`",
//!   "trust domain `partner.example` → role `partner`", "OU `ops` → role `operator`"
//!   ([`CertMatch`]).
//! - **Refusals**: an identity matching a [`deny`](IdentityMappingBuilder::deny) rule,
//!   outside the [allowed trust domains](IdentityMappingBuilder::allow_trust_domains) when a
//!   list is configured, or claiming a [pinned](IdentityMappingBuilder::pin_trust_domain)
//!   trust domain without chaining to that domain's own CAs, maps to no principal ([`MappingError`]; the [`Mtls`](super::Mtls)
//!   authenticator answers `invalid_token` with
//!   [`TokenError::CertificateRejected`](crate::TokenError::CertificateRejected)).
//!
//! The principal's method is [`AuthMethod::Mtls`], its key id the base64url SHA-256
//! thumbprint (`x5t#S256`), its expiry the certificate's `notAfter`, its issuer the
//! certificate issuer's RFC 4514 name, and it is bound to the certificate
//! ([`Principal::certificate_binding`]). The certificate's attributes are its claims, so
//! that policies ([`Rule`](crate::policy::Rule)) can test them:
//!
//! | claim | value |
//! | --- | --- |
//! | `spiffe_id`, `trust_domain` | the SPIFFE ID and its trust domain (absent without one) |
//! | `dns`, `email`, `uri` | arrays of the SANs of each kind |
//! | `cn` | the common name (absent without one) |
//! | `o`, `ou` | arrays of the organizations and organizational units |
//! | `serial` | the serial number in lower-case hex |
//! | `issuer` | the issuer's RFC 4514 name |
//! | `x5t#S256` | the base64url SHA-256 thumbprint |
//!
//! `Rule::claim_prefix("spiffe_id", "spiffe://prod.example/service/")` grants by SPIFFE ID
//! prefix, `Rule::claim_equals("trust_domain", ...)` combined with `or` by trust domain.
//!
//! ```
//! use auth_core::mtls::identity::CertIdentity;
//! use auth_core::mtls::mapping::{CertMatch, IdentityMapping, MappingError};
//! use auth_core::policy::{Policy, RequestContext, Rule};
//! use auth_core::AuthError;
//!
//! let mapping = IdentityMapping::builder()
//!     .allow_trust_domains(["prod.example"])
//!     .role(CertMatch::spiffe_path_prefix("/service/"), "service")
//!     .deny(CertMatch::spiffe_id("spiffe://prod.example/service/retired"))
//!     .build()
//!     .unwrap();
//!
//! # let cert = |uri: &str| {
//! #     let key = rcgen::KeyPair::generate().unwrap();
//! #     let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
//! #     params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().unwrap()));
//! #     CertIdentity::from_der(params.self_signed(&key).unwrap().der()).unwrap()
//! # };
//! # let now = 1_800_000_000;
//! let billing = cert("spiffe://prod.example/service/billing");
//! let p = mapping.map(&billing, now).unwrap();
//! assert_eq!(p.subject(), "spiffe://prod.example/service/billing");
//! assert_eq!(p.tenant(), Some("prod.example"));
//! assert!(p.has_role("service"));
//!
//! let rule = Rule::claim_prefix("spiffe_id", "spiffe://prod.example/service/");
//! let ctx = RequestContext::new();
//! assert!(rule.evaluate(&p, &ctx).is_allowed());
//! let batch = mapping.map(&cert("spiffe://prod.example/batch/nightly"), now).unwrap();
//! let err = rule.evaluate(&batch, &ctx).into_result().unwrap_err();
//! assert_eq!(err.http_status(), 403);
//!
//! let retired = cert("spiffe://prod.example/service/retired");
//! assert_eq!(mapping.map(&retired, now).unwrap_err(), MappingError::Denied);
//! let stranger = cert("spiffe://other.example/service/billing");
//! assert_eq!(mapping.map(&stranger, now).unwrap_err(), MappingError::TrustDomainNotAllowed);
//! ```

use super::identity::{CertIdentity, SpiffeId, validate_trust_domain};
use super::trust::{CertError, TrustStore};
use crate::error::BuildError;
use crate::principal::{AuthMethod, Claims, Principal};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Where the principal's subject can come from; [`IdentityMappingBuilder::subject_order`]
/// lists them in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectSource {
    /// The SPIFFE ID (`spiffe://prod.example/service/billing`).
    SpiffeId,
    /// The first DNS SAN.
    Dns,
    /// The subject's common name.
    CommonName,
    /// The first e-mail SAN.
    Email,
    /// The first URI SAN that is not a SPIFFE ID.
    Uri,
}

/// Where the principal's tenant comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TenantSource {
    /// The SPIFFE trust domain (no tenant without a SPIFFE ID). The default.
    #[default]
    TrustDomain,
    /// The subject's first organization (`O`); no tenant without one.
    Organization,
    /// This tenant for every certificate.
    Fixed(String),
    /// No tenant.
    None,
}

/// A condition on a certificate's identity, for role, scope and deny rules. Comparisons are
/// exact (DNS names ignore ASCII case); the prefix conditions match whole path segments:
/// `/service` and `/service/` both match `/service/billing` and `/service` but not
/// `/services`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertMatch {
    /// The SPIFFE ID is this one.
    SpiffeId(String),
    /// The SPIFFE ID starts with this one, on a segment boundary
    /// (`spiffe://prod.example/service/`).
    SpiffeIdPrefix(String),
    /// The SPIFFE ID's path starts with this one, on a segment boundary (`/service/`), in any
    /// trust domain (combine with [`IdentityMappingBuilder::allow_trust_domains`], or use
    /// [`CertMatch::SpiffeIdPrefix`] to name the domain too).
    SpiffePathPrefix(String),
    /// The SPIFFE trust domain is this one.
    TrustDomain(String),
    /// One of the DNS SANs is this name (ASCII case ignored).
    Dns(String),
    /// One of the e-mail SANs is this address.
    Email(String),
    /// One of the URI SANs is this URI.
    Uri(String),
    /// The subject's common name is this one.
    CommonName(String),
    /// One of the subject's organizations (`O`) is this one.
    Organization(String),
    /// One of the subject's organizational units (`OU`) is this one.
    OrganizationalUnit(String),
    /// The issuer's RFC 4514 name is this one ([`CertIdentity::issuer`]).
    Issuer(String),
    /// The certificate is this one: its SHA-256 thumbprint (to deny one certificate).
    Thumbprint([u8; 32]),
}

impl CertMatch {
    /// [`CertMatch::SpiffeId`].
    pub fn spiffe_id(id: impl Into<String>) -> Self {
        Self::SpiffeId(id.into())
    }
    /// [`CertMatch::SpiffeIdPrefix`].
    pub fn spiffe_id_prefix(prefix: impl Into<String>) -> Self {
        Self::SpiffeIdPrefix(prefix.into())
    }
    /// [`CertMatch::SpiffePathPrefix`].
    pub fn spiffe_path_prefix(prefix: impl Into<String>) -> Self {
        Self::SpiffePathPrefix(prefix.into())
    }
    /// [`CertMatch::TrustDomain`].
    pub fn trust_domain(domain: impl Into<String>) -> Self {
        Self::TrustDomain(domain.into())
    }
    /// [`CertMatch::Dns`].
    pub fn dns(name: impl Into<String>) -> Self {
        Self::Dns(name.into())
    }
    /// [`CertMatch::Email`].
    pub fn email(address: impl Into<String>) -> Self {
        Self::Email(address.into())
    }
    /// [`CertMatch::Uri`].
    pub fn uri(uri: impl Into<String>) -> Self {
        Self::Uri(uri.into())
    }
    /// [`CertMatch::CommonName`].
    pub fn common_name(cn: impl Into<String>) -> Self {
        Self::CommonName(cn.into())
    }
    /// [`CertMatch::Organization`].
    pub fn organization(o: impl Into<String>) -> Self {
        Self::Organization(o.into())
    }
    /// [`CertMatch::OrganizationalUnit`].
    pub fn organizational_unit(ou: impl Into<String>) -> Self {
        Self::OrganizationalUnit(ou.into())
    }
    /// [`CertMatch::Issuer`].
    pub fn issuer(dn: impl Into<String>) -> Self {
        Self::Issuer(dn.into())
    }
    /// [`CertMatch::Thumbprint`].
    pub fn thumbprint(sha256: [u8; 32]) -> Self {
        Self::Thumbprint(sha256)
    }

    /// Whether `identity` meets the condition.
    pub fn matches(&self, identity: &CertIdentity) -> bool {
        let spiffe = identity.spiffe_id();
        match self {
            Self::SpiffeId(id) => spiffe.is_some_and(|s| s.as_str() == id),
            Self::SpiffeIdPrefix(p) => spiffe.is_some_and(|s| segment_prefix(s.as_str(), p)),
            Self::SpiffePathPrefix(p) => spiffe.is_some_and(|s| segment_prefix(s.path(), p)),
            Self::TrustDomain(d) => identity.trust_domain() == Some(d.as_str()),
            Self::Dns(d) => identity
                .dns_names()
                .iter()
                .any(|n| n.eq_ignore_ascii_case(d)),
            Self::Email(e) => identity.emails().iter().any(|x| x == e),
            Self::Uri(u) => identity.uris().iter().any(|x| x == u),
            Self::CommonName(cn) => identity.common_name() == Some(cn.as_str()),
            Self::Organization(o) => identity.organizations().iter().any(|x| x == o),
            Self::OrganizationalUnit(ou) => identity.organizational_units().iter().any(|x| x == ou),
            Self::Issuer(dn) => identity.issuer() == dn,
            Self::Thumbprint(t) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(t, identity.sha256()).is_ok()
            }
        }
    }

    /// Refuses conditions that could never match (a malformed SPIFFE ID or trust domain).
    fn validate(&self) -> Result<(), BuildError> {
        let invalid = |what: &str, e: &dyn fmt::Display| {
            Err(BuildError::Invalid(format!(
                "certificate rule: {what}: {e}"
            )))
        };
        match self {
            Self::SpiffeId(id) => match SpiffeId::parse(id) {
                Ok(_) => Ok(()),
                Err(e) => invalid("SPIFFE ID", &e),
            },
            Self::SpiffeIdPrefix(p) => match SpiffeId::parse(p.trim_end_matches('/')) {
                Ok(_) => Ok(()),
                Err(e) => invalid("SPIFFE ID prefix", &e),
            },
            Self::SpiffePathPrefix(p) if !p.starts_with('/') => {
                invalid("SPIFFE path prefix", &"it must start with `/`")
            }
            Self::SpiffePathPrefix(p) => {
                let trimmed = p.trim_end_matches('/');
                match SpiffeId::parse(&format!("spiffe://x{trimmed}")) {
                    Ok(_) => Ok(()),
                    Err(e) => invalid("SPIFFE path prefix", &e),
                }
            }
            Self::TrustDomain(d) => match validate_trust_domain(d) {
                Ok(()) => Ok(()),
                Err(e) => invalid("trust domain", &e),
            },
            _ => Ok(()),
        }
    }
}

/// Whether `text` starts with `prefix` on a `/` boundary (a trailing `/` of the prefix is
/// optional): `/a` and `/a/` match `/a` and `/a/b`, not `/ab`.
fn segment_prefix(text: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    match text.strip_prefix(p) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Why an identity maps to no principal. The messages name the rule, never the certificate's
/// contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The identity matches a deny rule.
    #[error("the certificate matches a deny rule")]
    Denied,
    /// A list of allowed trust domains is configured and the identity's is not on it (or it
    /// has no SPIFFE ID).
    #[error("the certificate's trust domain is not allowed")]
    TrustDomainNotAllowed,
    /// None of the subject sources is present in the certificate.
    #[error("the certificate has no name to use as the subject")]
    NoSubject,
    /// The certificate's `notAfter` has passed (a long-lived connection can outlast it).
    #[error("the certificate has expired")]
    Expired,
    /// The certificate's `notBefore` is in the future.
    #[error("the certificate is not valid yet")]
    NotYetValid,
    /// The identity's trust domain is pinned to a CA bundle and the certificate does not
    /// chain to it (another trust domain's CA issued it, or it is revoked there).
    #[error("the certificate does not chain to its trust domain's CAs: {0}")]
    WrongTrustDomainCa(#[source] CertError),
}

#[derive(Debug, Clone)]
struct Grant {
    when: CertMatch,
    roles: Vec<String>,
    scopes: Vec<String>,
}

/// Turns certificate identities into principals. Build it with
/// [`IdentityMapping::builder`]; the [`Default`] is the builder's defaults.
#[derive(Debug, Clone)]
pub struct IdentityMapping {
    subject_order: Vec<SubjectSource>,
    tenant: TenantSource,
    grants: Vec<Grant>,
    deny: Vec<CertMatch>,
    allowed_trust_domains: Option<Vec<String>>,
    pins: Vec<(String, Arc<TrustStore>)>,
}

impl Default for IdentityMapping {
    fn default() -> Self {
        Self {
            subject_order: vec![
                SubjectSource::SpiffeId,
                SubjectSource::Dns,
                SubjectSource::CommonName,
            ],
            tenant: TenantSource::TrustDomain,
            grants: Vec::new(),
            deny: Vec::new(),
            allowed_trust_domains: None,
            pins: Vec::new(),
        }
    }
}

/// Builds an [`IdentityMapping`].
#[derive(Debug)]
#[must_use]
pub struct IdentityMappingBuilder {
    mapping: IdentityMapping,
}

impl IdentityMappingBuilder {
    /// The sources of the subject, tried in order (default: SPIFFE ID, DNS, common name).
    pub fn subject_order(mut self, order: impl IntoIterator<Item = SubjectSource>) -> Self {
        self.mapping.subject_order = order.into_iter().collect();
        self
    }

    /// Where the tenant comes from (default: the SPIFFE trust domain).
    pub fn tenant(mut self, source: TenantSource) -> Self {
        self.mapping.tenant = source;
        self
    }

    /// Grants `role` to identities that match `when`.
    pub fn role(self, when: CertMatch, role: impl Into<String>) -> Self {
        self.roles(when, [role])
    }

    /// Grants `roles` to identities that match `when`.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        when: CertMatch,
        roles: I,
    ) -> Self {
        self.mapping.grants.push(Grant {
            when,
            roles: roles.into_iter().map(Into::into).collect(),
            scopes: Vec::new(),
        });
        self
    }

    /// Grants `scopes` to identities that match `when` (for routes guarded by scopes).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        when: CertMatch,
        scopes: I,
    ) -> Self {
        self.mapping.grants.push(Grant {
            when,
            roles: Vec::new(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Refuses identities that match `when`, whatever else matches.
    pub fn deny(mut self, when: CertMatch) -> Self {
        self.mapping.deny.push(when);
        self
    }

    /// Accepts only identities with a SPIFFE ID in one of these trust domains (calls add
    /// to the list). Without a list, every trust domain the TLS trust store accepts is
    /// accepted, and so are certificates without a SPIFFE ID.
    pub fn allow_trust_domains<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        domains: I,
    ) -> Self {
        self.mapping
            .allowed_trust_domains
            .get_or_insert_with(Vec::new)
            .extend(domains.into_iter().map(Into::into));
        self
    }

    /// Pins the trust domain `domain` to the CAs of `store`: a certificate whose SPIFFE ID is
    /// in `domain` is accepted only if it also chains to one of them.
    ///
    /// The TLS handshake validates a certificate against the union of every trusted CA, so
    /// without a pin any of those CAs can issue a SPIFFE ID in any trust domain. The leaf is
    /// checked alone (the connection's intermediates do not reach the core): `store` must
    /// hold the CA that issues the domain's leaves (an intermediate is accepted as a trust
    /// anchor). The check runs once per certificate and is cached with its principal
    /// ([`MtlsBuilder::cache_ttl`](super::MtlsBuilder::cache_ttl)).
    pub fn pin_trust_domain(
        mut self,
        domain: impl Into<String>,
        store: impl Into<Arc<TrustStore>>,
    ) -> Self {
        self.mapping.pins.push((domain.into(), store.into()));
        self
    }

    /// Finishes the mapping.
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] for an empty subject order, an empty list of allowed trust
    /// domains, an invalid trust domain, a malformed SPIFFE ID or prefix in a rule, an empty
    /// role, scope or fixed tenant, a trust domain pinned twice.
    pub fn build(self) -> Result<IdentityMapping, BuildError> {
        let m = self.mapping;
        let invalid = |msg: &str| Err(BuildError::Invalid(msg.to_owned()));
        if m.subject_order.is_empty() {
            return invalid("the subject order names no source");
        }
        if matches!(&m.tenant, TenantSource::Fixed(t) if t.is_empty()) {
            return invalid("the fixed tenant is empty");
        }
        if let Some(domains) = &m.allowed_trust_domains {
            if domains.is_empty() {
                return invalid("the list of allowed trust domains is empty");
            }
            for d in domains {
                validate_trust_domain(d)
                    .map_err(|e| BuildError::Invalid(format!("allowed trust domain `{d}`: {e}")))?;
            }
        }
        for g in &m.grants {
            g.when.validate()?;
            if g.roles.iter().chain(&g.scopes).any(String::is_empty) {
                return invalid("a certificate rule grants an empty role or scope");
            }
        }
        for d in &m.deny {
            d.validate()?;
        }
        for (i, (d, _)) in m.pins.iter().enumerate() {
            validate_trust_domain(d)
                .map_err(|e| BuildError::Invalid(format!("pinned trust domain `{d}`: {e}")))?;
            if m.pins[..i].iter().any(|(x, _)| x == d) {
                return Err(BuildError::Invalid(format!(
                    "trust domain `{d}` is pinned twice"
                )));
            }
        }
        Ok(m)
    }
}

impl IdentityMapping {
    /// Starts a mapping with the defaults: subject from the SPIFFE ID, DNS name or common
    /// name; tenant from the trust domain; no roles, no refusals.
    pub fn builder() -> IdentityMappingBuilder {
        IdentityMappingBuilder {
            mapping: Self::default(),
        }
    }

    /// Maps `identity` to a principal at the Unix time `now`.
    ///
    /// # Errors
    ///
    /// [`MappingError`]: outside its validity period, denied, not in an allowed trust
    /// domain, not chaining to its pinned trust domain's CAs, or no subject.
    pub fn map(&self, identity: &CertIdentity, now: i64) -> Result<Principal, MappingError> {
        if now < identity.not_before() {
            return Err(MappingError::NotYetValid);
        }
        if now > identity.not_after() {
            return Err(MappingError::Expired);
        }
        if self.deny.iter().any(|d| d.matches(identity)) {
            return Err(MappingError::Denied);
        }
        if let Some(allowed) = &self.allowed_trust_domains {
            let domain = identity.trust_domain();
            if !allowed.iter().any(|d| Some(d.as_str()) == domain) {
                return Err(MappingError::TrustDomainNotAllowed);
            }
        }
        if let Some(domain) = identity.trust_domain()
            && let Some((_, store)) = self.pins.iter().find(|(d, _)| d == domain)
        {
            let since_epoch = Duration::from_secs(u64::try_from(now).unwrap_or(0));
            store
                .verify_client(
                    &CertificateDer::from(identity.der()),
                    &[],
                    UnixTime::since_unix_epoch(since_epoch),
                )
                .map_err(MappingError::WrongTrustDomainCa)?;
        }
        let subject = self
            .subject_order
            .iter()
            .find_map(|s| subject_from(*s, identity))
            .ok_or(MappingError::NoSubject)?;
        let tenant = match &self.tenant {
            TenantSource::TrustDomain => identity.trust_domain(),
            TenantSource::Organization => identity.organizations().first().map(String::as_str),
            TenantSource::Fixed(t) => Some(t.as_str()),
            TenantSource::None => None,
        };
        let mut roles: Vec<&str> = Vec::new();
        let mut scopes: Vec<&str> = Vec::new();
        for g in self.grants.iter().filter(|g| g.when.matches(identity)) {
            for (from, into) in [(&g.roles, &mut roles), (&g.scopes, &mut scopes)] {
                for r in from {
                    if !into.contains(&r.as_str()) {
                        into.push(r);
                    }
                }
            }
        }
        let mut p = Principal::builder(subject, AuthMethod::Mtls)
            .issuer(identity.issuer())
            .roles(roles)
            .scopes(scopes)
            .key_id(identity.x5t_s256())
            .expires_at(identity.not_after())
            .bound_to_certificate(*identity.sha256())
            .claims(claims(identity));
        if let Some(t) = tenant {
            p = p.tenant(t);
        }
        Ok(p.build())
    }
}

fn subject_from(source: SubjectSource, id: &CertIdentity) -> Option<&str> {
    match source {
        SubjectSource::SpiffeId => id.spiffe_id().map(SpiffeId::as_str),
        SubjectSource::Dns => id.dns_names().first().map(String::as_str),
        SubjectSource::CommonName => id.common_name(),
        SubjectSource::Email => id.emails().first().map(String::as_str),
        SubjectSource::Uri => {
            let spiffe = id.spiffe_id().map(SpiffeId::as_str);
            id.uris()
                .iter()
                .map(String::as_str)
                .find(|u| Some(*u) != spiffe)
        }
    }
}

/// The certificate's attributes as claims (see the module table).
fn claims(id: &CertIdentity) -> Claims {
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    let mut m = Map::new();
    if let Some(s) = id.spiffe_id() {
        m.insert("spiffe_id".into(), s.as_str().into());
        m.insert("trust_domain".into(), s.trust_domain().into());
    }
    m.insert("dns".into(), strings(id.dns_names()));
    m.insert("email".into(), strings(id.emails()));
    m.insert("uri".into(), strings(id.uris()));
    if let Some(cn) = id.common_name() {
        m.insert("cn".into(), cn.into());
    }
    m.insert("o".into(), strings(id.organizations()));
    m.insert("ou".into(), strings(id.organizational_units()));
    m.insert("serial".into(), id.serial().into());
    m.insert("issuer".into(), id.issuer().into());
    m.insert("x5t#S256".into(), id.x5t_s256().into());
    Claims::new(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_prefixes() {
        assert!(segment_prefix("/service/billing", "/service/"));
        assert!(segment_prefix("/service/billing", "/service"));
        assert!(segment_prefix("/service", "/service/"));
        assert!(!segment_prefix("/services/billing", "/service"));
        assert!(!segment_prefix("/services/billing", "/service/"));
        assert!(segment_prefix(
            "spiffe://prod.example/service/a",
            "spiffe://prod.example"
        ));
        assert!(!segment_prefix(
            "spiffe://prod.example.evil/service/a",
            "spiffe://prod.example"
        ));
        assert!(segment_prefix("/anything", "/"));
    }

    #[test]
    fn refuses_rules_that_cannot_match() {
        let bad = [
            IdentityMapping::builder().subject_order([]).build(),
            IdentityMapping::builder()
                .allow_trust_domains(["Prod.example"])
                .build(),
            IdentityMapping::builder()
                .allow_trust_domains(Vec::<String>::new())
                .build(),
            IdentityMapping::builder()
                .role(CertMatch::spiffe_path_prefix("service/"), "s")
                .build(),
            IdentityMapping::builder()
                .role(CertMatch::spiffe_path_prefix("/a//b"), "s")
                .build(),
            IdentityMapping::builder()
                .role(CertMatch::spiffe_id_prefix("spiffe://a:1/"), "s")
                .build(),
            IdentityMapping::builder()
                .deny(CertMatch::spiffe_id("https://a/b"))
                .build(),
            IdentityMapping::builder()
                .role(CertMatch::trust_domain("a"), "")
                .build(),
            IdentityMapping::builder()
                .tenant(TenantSource::Fixed(String::new()))
                .build(),
        ];
        for (i, b) in bad.into_iter().enumerate() {
            assert!(matches!(b, Err(BuildError::Invalid(_))), "case {i}");
        }
        assert!(
            IdentityMapping::builder()
                .role(CertMatch::spiffe_path_prefix("/"), "any")
                .role(CertMatch::spiffe_id_prefix("spiffe://a/"), "a")
                .build()
                .is_ok()
        );
    }
}

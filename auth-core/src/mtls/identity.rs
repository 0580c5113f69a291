//! The identity a client certificate carries: [`CertIdentity`], read once from the leaf's DER.
//!
//! [`CertIdentity::from_der`] parses the certificate (at most [`MAX_CERT_LEN`] bytes) and keeps
//! what access decisions need: the SPIFFE ID ([`SpiffeId`], validated per the SPIFFE and
//! X509-SVID specifications), every URI, DNS and e-mail (`rfc822Name`) subject alternative
//! name, the subject's common name, organizations and organizational units, the serial number
//! (lower-case hex), the subject and issuer distinguished names (RFC 4514 strings), the SHA-256
//! thumbprint (RFC 8705 `x5t#S256`) and the validity period. It does not validate the chain:
//! the TLS handshake did that (see [`trust`](super::trust)).
//!
//! A certificate that would make the identity ambiguous is refused rather than guessed at:
//! two SPIFFE IDs, two common names, a SAN that does not decode, a SPIFFE ID without a path
//! (a trust domain is not a workload) or on a CA certificate.
//!
//! ```
//! use auth_core::mtls::identity::{CertIdentity, IdentityError, SpiffeId};
//!
//! let key = rcgen::KeyPair::generate().unwrap();
//! let mut params = rcgen::CertificateParams::new(vec!["billing.internal".to_owned()]).unwrap();
//! params.subject_alt_names.push(rcgen::SanType::URI(
//!     "spiffe://prod.example/service/billing".try_into().unwrap(),
//! ));
//! let cert = params.self_signed(&key).unwrap();
//!
//! let id = CertIdentity::from_der(cert.der()).unwrap();
//! let spiffe = id.spiffe_id().unwrap();
//! assert_eq!(spiffe.trust_domain(), "prod.example");
//! assert_eq!(spiffe.path(), "/service/billing");
//! assert_eq!(id.dns_names(), ["billing.internal"]);
//!
//! // SPIFFE IDs are strict: no upper case in the trust domain, no port, query or fragment.
//! assert!(SpiffeId::parse("spiffe://Prod.example/service").is_err());
//! assert!(SpiffeId::parse("spiffe://prod.example:443/service").is_err());
//! assert_eq!(
//!     CertIdentity::from_der(&[0x30, 0x03, 0x02, 0x01, 0x01]).unwrap_err().to_string(),
//!     "the certificate is not a valid X.509 certificate",
//! );
//! ```

use crate::credentials::PeerCertificate;
use base64::Engine;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The largest certificate [`CertIdentity::from_der`] reads (16 KiB).
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// The longest SPIFFE ID (SPIFFE-ID section 2.3).
const MAX_SPIFFE_ID_LEN: usize = 2048;

/// The longest trust domain name (the URI host limit of RFC 3986).
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a certificate's identity could not be read. The messages name what is wrong, never
/// the certificate's contents.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate is larger than [`MAX_CERT_LEN`].
    #[error("the certificate is larger than {max} bytes", max = MAX_CERT_LEN)]
    TooLarge {
        /// Its size in bytes.
        len: usize,
    },
    /// The bytes are not a DER X.509 certificate.
    #[error("the certificate is not a valid X.509 certificate")]
    Malformed(#[source] X509Error),
    /// Bytes follow the certificate.
    #[error("the certificate is followed by trailing data")]
    TrailingData,
    /// A subject alternative name could not be decoded.
    #[error("a subject alternative name of the certificate cannot be decoded")]
    InvalidAltName,
    /// A subject attribute the identity needs (`CN`, `O`, `OU`) is not a decodable string.
    #[error("the subject attribute {0} of the certificate is not a string")]
    InvalidSubject(&'static str),
    /// The subject has more than one common name: which one names the caller is ambiguous.
    #[error("the certificate's subject has more than one common name")]
    AmbiguousCommonName,
    /// A URI SAN with the `spiffe` scheme is not a valid SPIFFE ID.
    #[error("the certificate's SPIFFE ID is invalid: {0}")]
    InvalidSpiffeId(#[from] SpiffeIdError),
    /// More than one URI SAN is a SPIFFE ID.
    #[error("the certificate has more than one SPIFFE ID")]
    MultipleSpiffeIds,
    /// The SPIFFE ID has no path: it names a trust domain, not a workload (X509-SVID 3.1).
    #[error("the certificate's SPIFFE ID has no path")]
    SpiffeIdWithoutPath,
    /// The certificate carries a SPIFFE ID but is a CA (basic constraints `cA`, or key usage
    /// `keyCertSign`/`cRLSign`): X509-SVID 5.2 forbids authenticating with it.
    #[error("the certificate is a CA certificate, not a leaf SVID")]
    NotALeaf,
}

/// What is wrong with a SPIFFE ID (never the ID itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The ID does not start with `spiffe://` (the scheme must be lower-case).
    #[error("the scheme is not `spiffe://`")]
    WrongScheme,
    /// The ID is longer than 2048 bytes.
    #[error("longer than 2048 bytes")]
    TooLong,
    /// The trust domain is empty.
    #[error("the trust domain is empty")]
    EmptyTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("the trust domain is longer than 255 bytes")]
    TrustDomainTooLong,
    /// The authority has user information (`user@`).
    #[error("the authority has user information")]
    UserInfo,
    /// The authority has a port (or a `:`).
    #[error("the authority has a port")]
    Port,
    /// The trust domain has a character outside `[a-z0-9.-_]` (upper case included).
    #[error("the trust domain has a character outside [a-z0-9.-_]")]
    TrustDomainChar,
    /// The ID has a query (`?`).
    #[error("the ID has a query")]
    Query,
    /// The ID has a fragment (`#`).
    #[error("the ID has a fragment")]
    Fragment,
    /// A path segment is empty (`//`) or the path ends with `/`.
    #[error("the path has an empty segment or a trailing slash")]
    EmptySegment,
    /// A path segment is `.` or `..`.
    #[error("the path has a `.` or `..` segment")]
    DotSegment,
    /// The path has a character outside `[a-zA-Z0-9.-_]` (percent-encoding included).
    #[error("the path has a character outside [a-zA-Z0-9.-_]")]
    PathChar,
}

/// A SPIFFE ID: `spiffe://<trust-domain><path>`, validated per the SPIFFE specification
/// (SPIFFE-ID section 2): a lower-case trust domain of `[a-z0-9.-_]` without user
/// information or port, a path of non-empty segments of `[a-zA-Z0-9.-_]` other than `.` and
/// `..` with no trailing slash, no query, no fragment, 2048 bytes at most.
///
/// The path may be empty (`spiffe://example.org` names the trust domain itself); leaf
/// certificates must have one, which [`CertIdentity::from_der`] checks.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The whole ID.
    id: Box<str>,
    /// Where the path starts in `id` (`id.len()` when there is none).
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    ///
    /// # Errors
    ///
    /// [`SpiffeIdError`] naming the first rule the ID breaks.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = id
            .strip_prefix("spiffe://")
            .ok_or(SpiffeIdError::WrongScheme)?;
        // Query and fragment first: their `?`/`#` would otherwise read as bad characters.
        if rest.contains('#') {
            return Err(SpiffeIdError::Fragment);
        }
        if rest.contains('?') {
            return Err(SpiffeIdError::Query);
        }
        let (domain, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        validate_trust_domain(domain)?;
        if !path.is_empty() {
            validate_path(path)?;
        }
        Ok(Self {
            id: id.into(),
            path_start: id.len() - path.len(),
        })
    }

    /// The trust domain (`prod.example` of `spiffe://prod.example/service/billing`).
    pub fn trust_domain(&self) -> &str {
        &self.id["spiffe://".len()..self.path_start]
    }

    /// The path (`/service/billing`), empty for the ID of a trust domain.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

/// Checks a trust domain name: not empty, at most 255 bytes, only `[a-z0-9.-_]`, with the
/// user-information and port forms named as such.
pub(crate) fn validate_trust_domain(domain: &str) -> Result<(), SpiffeIdError> {
    if domain.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if domain.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    if domain.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b);
    if !domain.bytes().all(ok) {
        return Err(SpiffeIdError::TrustDomainChar);
    }
    Ok(())
}

/// Checks a non-empty path (it starts with `/`).
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            s if !s.bytes().all(ok) => return Err(SpiffeIdError::PathChar),
            _ => {}
        }
    }
    Ok(())
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

/// What a client certificate says about its holder, read once; accessors borrow.
#[derive(Clone)]
pub struct CertIdentity {
    der: Arc<[u8]>,
    sha256: [u8; 32],
    spiffe_id: Option<SpiffeId>,
    uris: Vec<String>,
    dns_names: Vec<String>,
    emails: Vec<String>,
    common_name: Option<String>,
    organizations: Vec<String>,
    organizational_units: Vec<String>,
    serial: String,
    subject: String,
    issuer: String,
    not_before: i64,
    not_after: i64,
}

impl CertIdentity {
    /// Reads the identity of the DER certificate `der` (its SHA-256 is computed here).
    ///
    /// # Errors
    ///
    /// [`IdentityError`]: too large, not a certificate, an undecodable name, an invalid or
    /// ambiguous SPIFFE ID, a SPIFFE ID on a CA certificate, two common names.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        if der.len() > MAX_CERT_LEN {
            return Err(IdentityError::TooLarge { len: der.len() });
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref());
        Self::read(Arc::from(der), sha256)
    }

    /// Reads the identity of a connection's certificate, reusing the thumbprint computed for
    /// the connection.
    ///
    /// # Errors
    ///
    /// As [`CertIdentity::from_der`].
    pub fn from_peer(peer: &PeerCertificate) -> Result<Self, IdentityError> {
        let der = peer.der();
        if der.len() > MAX_CERT_LEN {
            return Err(IdentityError::TooLarge { len: der.len() });
        }
        Self::read(Arc::from(der), *peer.sha256())
    }

    fn read(der: Arc<[u8]>, sha256: [u8; 32]) -> Result<Self, IdentityError> {
        let (rest, cert) = X509Certificate::from_der(&der).map_err(|e| match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
                IdentityError::Malformed(e)
            }
            x509_parser::nom::Err::Incomplete(_) => {
                IdentityError::Malformed(X509Error::InvalidCertificate)
            }
        })?;
        if !rest.is_empty() {
            return Err(IdentityError::TrailingData);
        }

        let mut uris = Vec::new();
        let mut dns_names = Vec::new();
        let mut emails = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(IdentityError::Malformed)?;
        for name in san.iter().flat_map(|ext| &ext.value.general_names) {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns_names.push(d.to_ascii_lowercase()),
                GeneralName::RFC822Name(e) => emails.push((*e).to_owned()),
                GeneralName::Invalid(..) => return Err(IdentityError::InvalidAltName),
                _ => {}
            }
        }

        let mut spiffe_id = None;
        for uri in &uris {
            if !has_spiffe_scheme(uri) {
                continue;
            }
            let id = SpiffeId::parse(uri)?;
            if spiffe_id.replace(id).is_some() {
                return Err(IdentityError::MultipleSpiffeIds);
            }
        }
        if let Some(id) = &spiffe_id {
            if id.path().is_empty() {
                return Err(IdentityError::SpiffeIdWithoutPath);
            }
            if is_ca(&cert) {
                return Err(IdentityError::NotALeaf);
            }
        }

        let subject = cert.subject();
        let mut cns = subject.iter_common_name();
        let common_name = cns
            .next()
            .map(|cn| attribute_string(cn.attr_value()).ok_or(IdentityError::InvalidSubject("CN")))
            .transpose()?;
        if cns.next().is_some() {
            return Err(IdentityError::AmbiguousCommonName);
        }
        let organizations = strings(subject.iter_organization(), "O")?;
        let organizational_units = strings(subject.iter_organizational_unit(), "OU")?;

        let validity = cert.validity();
        Ok(Self {
            spiffe_id,
            uris,
            dns_names,
            emails,
            common_name,
            organizations,
            organizational_units,
            serial: serial_hex(cert.raw_serial()),
            subject: rfc4514(subject),
            issuer: rfc4514(cert.issuer()),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            sha256,
            der: der.clone(),
        })
    }

    /// The SPIFFE ID (the URI SAN with the `spiffe` scheme), if there is one.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id.as_ref()
    }

    /// The SPIFFE trust domain, if there is a SPIFFE ID.
    pub fn trust_domain(&self) -> Option<&str> {
        self.spiffe_id.as_ref().map(SpiffeId::trust_domain)
    }

    /// Every URI SAN, the SPIFFE ID included, in certificate order.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// Every DNS SAN, in ASCII lower case (DNS names are case-insensitive), in certificate
    /// order.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// Every e-mail SAN (`rfc822Name`), in certificate order.
    pub fn emails(&self) -> &[String] {
        &self.emails
    }

    /// The subject's common name (`CN`), if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The subject's organizations (`O`), in order.
    pub fn organizations(&self) -> &[String] {
        &self.organizations
    }

    /// The subject's organizational units (`OU`), in order.
    pub fn organizational_units(&self) -> &[String] {
        &self.organizational_units
    }

    /// The serial number in lower-case hex, two digits per byte, without the zero byte DER
    /// adds to keep a high bit positive (`04a1...`, as `openssl x509 -serial` shows it, in
    /// lower case).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The subject distinguished name as an RFC 4514 string (`CN=billing,O=Example`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The issuer distinguished name as an RFC 4514 string (`CN=Issuing CA,O=Example`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The SHA-256 thumbprint of the certificate's DER.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The thumbprint in base64url without padding: the RFC 8705 `x5t#S256` value.
    pub fn x5t_s256(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sha256)
    }

    /// The start of the validity period, in seconds since the Unix epoch.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// The end of the validity period (`notAfter`), in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl fmt::Debug for CertIdentity {
    // Names and addresses can be personal data: the SPIFFE ID and the certificate's own
    // coordinates only, and counts of the rest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertIdentity")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial", &self.serial)
            .field("issuer", &self.issuer)
            .field("not_after", &self.not_after)
            .field("uris", &self.uris.len())
            .field("dns_names", &self.dns_names.len())
            .field("emails", &self.emails.len())
            .finish_non_exhaustive()
    }
}

/// Whether a URI's scheme is `spiffe` in any case (RFC 3986 schemes are case-insensitive; the
/// SPIFFE ID must then use the lower-case form, which [`SpiffeId::parse`] checks).
fn has_spiffe_scheme(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("spiffe"))
}

/// Whether the certificate is a CA: basic constraints `cA`, or a key usage that signs
/// certificates or CRLs.
fn is_ca(cert: &X509Certificate<'_>) -> bool {
    let signs = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.key_cert_sign() || ku.value.crl_sign());
    cert.is_ca() || signs
}

/// Lower-case hex of the serial's bytes without DER's sign-padding zeros (one byte at least).
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex(&raw[start..])
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The texts of some subject attributes; `what` names them in the error.
fn strings<'r, 'a: 'r>(
    attrs: impl Iterator<Item = &'r AttributeTypeAndValue<'a>>,
    what: &'static str,
) -> Result<Vec<String>, IdentityError> {
    attrs
        .map(|a| attribute_string(a.attr_value()).ok_or(IdentityError::InvalidSubject(what)))
        .collect()
}

/// A directory string's text, for the string types certificates use; `None` for anything
/// else (or bad encodings).
fn attribute_string(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// The short names RFC 4514 section 3 lists, and two more that are registered and common in
/// client certificates.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "2.5.4.5" => "serialNumber",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// A distinguished name as an RFC 4514 string: RDNs from the last to the first, separated by
/// `,`; multi-valued RDNs joined by `+`; known types by short name with escaped string
/// values, others as the dotted OID with `#` and the hex of the value's DER.
fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name
        .iter_rdn()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            let text =
                short_name(&oid).and_then(|n| Some((n, attribute_string(attr.attr_value())?)));
            match text {
                Some((short, value)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(&value, &mut out);
                }
                None => {
                    out.push_str(&oid);
                    out.push_str("=#");
                    let der = attr.attr_value().to_der_vec().unwrap_or_default();
                    out.push_str(&hex(&der));
                }
            }
        }
    }
    out
}

/// RFC 4514 section 2.4 escaping; control characters are escaped too (as `\XX`), so that a
/// DN is safe in a log line.
fn escape_value(value: &str, out: &mut String) {
    use fmt::Write;
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        let id = SpiffeId::parse("spiffe://prod.example/ns/default/sa/web").unwrap();
        assert_eq!(id.trust_domain(), "prod.example");
        assert_eq!(id.path(), "/ns/default/sa/web");
        assert_eq!(id.to_string(), "spiffe://prod.example/ns/default/sa/web");
        let td = SpiffeId::parse("spiffe://a-b_c.9").unwrap();
        assert_eq!((td.trust_domain(), td.path()), ("a-b_c.9", ""));
        for (bad, why) in [
            ("http://prod.example/x", SpiffeIdError::WrongScheme),
            ("SPIFFE://prod.example/x", SpiffeIdError::WrongScheme),
            ("spiffe:prod.example/x", SpiffeIdError::WrongScheme),
            ("spiffe:///x", SpiffeIdError::EmptyTrustDomain),
            ("spiffe://", SpiffeIdError::EmptyTrustDomain),
            ("spiffe://Prod.example/x", SpiffeIdError::TrustDomainChar),
            ("spiffe://prod example/x", SpiffeIdError::TrustDomainChar),
            ("spiffe://prod.example:8443/x", SpiffeIdError::Port),
            ("spiffe://prod.example:/x", SpiffeIdError::Port),
            ("spiffe://u@prod.example/x", SpiffeIdError::UserInfo),
            ("spiffe://prod.example/x?a=b", SpiffeIdError::Query),
            ("spiffe://prod.example/x#f", SpiffeIdError::Fragment),
            ("spiffe://prod.example/", SpiffeIdError::EmptySegment),
            ("spiffe://prod.example/x/", SpiffeIdError::EmptySegment),
            ("spiffe://prod.example//x", SpiffeIdError::EmptySegment),
            ("spiffe://prod.example/./x", SpiffeIdError::DotSegment),
            ("spiffe://prod.example/x/..", SpiffeIdError::DotSegment),
            ("spiffe://prod.example/x%20y", SpiffeIdError::PathChar),
            ("spiffe://prod.example/ü", SpiffeIdError::PathChar),
        ] {
            assert_eq!(SpiffeId::parse(bad), Err(why), "{bad}");
        }
        let long = format!("spiffe://{}/x", "a".repeat(256));
        assert_eq!(
            SpiffeId::parse(&long),
            Err(SpiffeIdError::TrustDomainTooLong)
        );
        let longer = format!("spiffe://a/{}", "b".repeat(2048));
        assert_eq!(SpiffeId::parse(&longer), Err(SpiffeIdError::TooLong));
        // Path characters are case-sensitive and may be upper case.
        assert!(SpiffeId::parse("spiffe://a/Service.v1/x-y_z").is_ok());
    }

    #[test]
    fn serials_and_escaping() {
        assert_eq!(serial_hex(&[0x00, 0x9a, 0x01]), "9a01");
        assert_eq!(serial_hex(&[0x04, 0x28]), "0428");
        assert_eq!(serial_hex(&[0x00]), "00");
        let mut s = String::new();
        escape_value("#a, b+c \"d\" ", &mut s);
        assert_eq!(s, r#"\#a\, b\+c \"d\"\ "#);
        let mut s = String::new();
        escape_value(" x\n", &mut s);
        assert_eq!(s, r"\ x\0a");
    }

    #[test]
    fn refuses_oversized_input_before_parsing() {
        let big = vec![0u8; MAX_CERT_LEN + 1];
        assert_eq!(
            CertIdentity::from_der(&big).unwrap_err(),
            IdentityError::TooLarge {
                len: MAX_CERT_LEN + 1
            }
        );
        assert!(matches!(
            CertIdentity::from_der(b"not a certificate"),
            Err(IdentityError::Malformed(_))
        ));
    }
}

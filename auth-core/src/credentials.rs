//! Reading credentials out of a request.
//!
//! The core knows no web framework: it reads headers through [`HeaderSource`], which each adapter
//! implements over its own request type (an `http` 1 [`http::HeaderMap`] implementation ships
//! with the default `http` feature; actix-web, still on `http` 0.2, gets its own in its adapter).
//!
//! [`Credentials::from_headers`] borrows from the request: the hot path copies nothing.
//!
//! ```
//! use auth_core::credentials::{Credentials, CredentialLimits};
//! use auth_core::{AuthError, RequestError};
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
//! let creds = Credentials::from_headers(&headers, &CredentialLimits::default()).unwrap();
//! assert_eq!(creds.bearer(), Some("abc.def.ghi"));
//!
//! headers.append("authorization", "Bearer other".parse().unwrap());
//! assert_eq!(
//!     Credentials::from_headers(&headers, &CredentialLimits::default()).unwrap_err(),
//!     AuthError::InvalidRequest(RequestError::DuplicateAuthorization),
//! );
//! ```

use crate::error::{AuthError, RequestError};

/// Read access to a request's headers, implemented by each adapter over its request type.
pub trait HeaderSource {
    /// Iterator over the raw values of one header name.
    type Values<'a>: Iterator<Item = &'a [u8]>
    where
        Self: 'a;

    /// All values of the header `name` (lower-case), in order.
    fn header_values<'a>(&'a self, name: &'static str) -> Self::Values<'a>;

    /// The client certificate of the connection, when the request came over mutual TLS (the
    /// handshake validated its chain). Adapters that serve TLS override this; plain header
    /// maps have none.
    fn peer_certificate(&self) -> Option<&PeerCertificate> {
        None
    }

    /// The request's method and target, which DPoP proofs are bound to (RFC 9449 `htm`,
    /// `htu`). Adapters provide it through [`WithTarget`]; plain header maps have none, and a
    /// DPoP request checked without it is refused.
    fn request_target(&self) -> Option<RequestTarget<'_>> {
        None
    }
}

/// A request's method and target URL, as an adapter sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    /// The method (`GET`, `POST`, ...).
    pub method: &'a str,
    /// `https` when the request came over TLS (or the URI says so), else `http`.
    pub scheme: &'a str,
    /// The URI's authority when the request line carries one (HTTP/2 `:authority`, absolute
    /// form); the `Host` header is read otherwise.
    pub authority: Option<&'a str>,
    /// The path (a query, if included, is ignored by DPoP).
    pub path: &'a str,
}

#[cfg(feature = "http")]
impl<'a> RequestTarget<'a> {
    /// The target of an `http` 1 request: method, URI path and authority; `scheme` is `https`
    /// when `tls` is set or the URI says so.
    pub fn from_http(method: &'a http::Method, uri: &'a http::Uri, tls: bool) -> Self {
        let https = tls || uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        Self {
            method: method.as_str(),
            scheme: if https { "https" } else { "http" },
            authority: uri.authority().map(http::uri::Authority::as_str),
            path: uri.path(),
        }
    }
}

/// Headers (and whatever else `H` carries, e.g. [`WithPeer`]) together with the request's
/// [`RequestTarget`]: what adapters hand to [`Gate::check`](crate::Gate::check) so that DPoP
/// proofs can be checked.
#[derive(Debug, Clone, Copy)]
pub struct WithTarget<'a, H: ?Sized> {
    /// The headers (and peer certificate, if `H` carries one).
    pub inner: &'a H,
    /// The method and target.
    pub target: RequestTarget<'a>,
}

impl<H: HeaderSource + ?Sized> HeaderSource for WithTarget<'_, H> {
    type Values<'b>
        = H::Values<'b>
    where
        Self: 'b;

    fn header_values<'b>(&'b self, name: &'static str) -> Self::Values<'b> {
        self.inner.header_values(name)
    }

    fn peer_certificate(&self) -> Option<&PeerCertificate> {
        self.inner.peer_certificate()
    }

    fn request_target(&self) -> Option<RequestTarget<'_>> {
        Some(self.target)
    }
}

/// The client certificate a TLS connection presented, as the handshake validated it: the leaf
/// in DER and its SHA-256 thumbprint (computed once per connection; RFC 8705 binds tokens to
/// it). Cheap to clone; adapters keep one per connection and put it into request extensions.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    der: std::sync::Arc<[u8]>,
    sha256: [u8; 32],
}

impl PeerCertificate {
    /// The certificate `der` (the leaf of the validated chain).
    pub fn new(der: impl Into<std::sync::Arc<[u8]>>) -> Self {
        let der = der.into();
        let mut sha256 = [0u8; 32];
        sha256
            .copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref());
        Self { der, sha256 }
    }

    /// The leaf of a TLS peer's certificate chain (as rustls' `peer_certificates()` gives it,
    /// leaf first), or `None` for an empty chain: what TLS-serving adapters call once per
    /// connection.
    pub fn from_chain<C: AsRef<[u8]>>(chain: &[C]) -> Option<Self> {
        chain.first().map(|leaf| Self::new(leaf.as_ref()))
    }

    /// The certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Its SHA-256 thumbprint (the `x5t#S256` of RFC 8705, before base64url).
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
}

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("len", &self.der.len())
            .finish_non_exhaustive()
    }
}

/// Request headers together with the connection's client certificate: what TLS-serving
/// adapters hand to [`Gate::check`](crate::Gate::check).
#[derive(Debug, Clone, Copy)]
pub struct WithPeer<'a, H: ?Sized> {
    /// The request's headers.
    pub headers: &'a H,
    /// The connection's client certificate, if any.
    pub peer: Option<&'a PeerCertificate>,
}

impl<H: HeaderSource + ?Sized> HeaderSource for WithPeer<'_, H> {
    type Values<'b>
        = H::Values<'b>
    where
        Self: 'b;

    fn header_values<'b>(&'b self, name: &'static str) -> Self::Values<'b> {
        self.headers.header_values(name)
    }

    fn peer_certificate(&self) -> Option<&PeerCertificate> {
        self.peer
    }

    fn request_target(&self) -> Option<RequestTarget<'_>> {
        self.headers.request_target()
    }
}

#[cfg(feature = "http")]
impl HeaderSource for http::HeaderMap {
    type Values<'a> = std::iter::Map<
        http::header::ValueIter<'a, http::HeaderValue>,
        fn(&'a http::HeaderValue) -> &'a [u8],
    >;

    fn header_values<'a>(&'a self, name: &'static str) -> Self::Values<'a> {
        // The constant skips parsing the name on the hot path.
        let values = if name == "authorization" {
            self.get_all(http::header::AUTHORIZATION)
        } else {
            self.get_all(name)
        };
        values
            .iter()
            .map(http::HeaderValue::as_bytes as fn(&'a http::HeaderValue) -> &'a [u8])
    }
}

/// Size limits applied while reading credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialLimits {
    /// Largest accepted `Authorization` header value, in bytes (default 16 KiB). Tokens have
    /// their own, smaller limit in their verifier (8 KiB for JWTs), answered with
    /// `invalid_token`; this one guards the header itself and is answered with
    /// `invalid_request`.
    pub max_header_len: usize,
    /// The header that carries an API key (default `x-api-key`); `Authorization: ApiKey <key>`
    /// is read too.
    pub api_key_header: &'static str,
}

impl Default for CredentialLimits {
    fn default() -> Self {
        Self {
            max_header_len: 16 * 1024,
            api_key_header: "x-api-key",
        }
    }
}

/// What a request presents, borrowed from the request.
///
/// Reading is split in two so that the hot path stays cheap: [`Credentials::from_headers`]
/// finds the credential (one `Authorization` header, its scheme, the size limit), and
/// [`Credentials::validate`] checks its full syntax. A cache may answer from the raw bytes
/// ([`Credentials::bearer_unchecked`]) before validation, because it only answers for the exact
/// bytes of a credential that was validated before; everything else must validate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Credentials<'a> {
    bearer: Option<&'a [u8]>,
    api_key: Option<&'a [u8]>,
    peer: Option<&'a PeerCertificate>,
    /// The token came with the `DPoP` scheme (RFC 9449).
    dpop: bool,
    /// The `DPoP` proof header, read only with the `DPoP` scheme.
    proof: Option<&'a [u8]>,
    /// More than one `DPoP` header.
    proofs: u8,
}

impl<'a> Credentials<'a> {
    /// Credentials carrying a bearer token (for callers that read it themselves).
    pub fn with_bearer(token: &'a str) -> Self {
        Self {
            bearer: Some(token.as_bytes()),
            ..Self::default()
        }
    }

    /// A borrowed view of owned credentials.
    pub fn from_owned(owned: &'a crate::authenticator::OwnedCredentials) -> Self {
        Self {
            bearer: owned.bearer.as_deref().map(str::as_bytes),
            api_key: owned.api_key.as_deref().map(str::as_bytes),
            peer: owned.peer.as_ref(),
            ..Self::default()
        }
    }

    /// Credentials carrying an API key (for callers that read it themselves).
    pub fn with_api_key(key: &'a str) -> Self {
        Self {
            api_key: Some(key.as_bytes()),
            ..Self::default()
        }
    }

    /// Credentials carrying only a client certificate.
    pub fn with_peer(peer: &'a PeerCertificate) -> Self {
        Self {
            peer: Some(peer),
            ..Self::default()
        }
    }

    /// These credentials over a connection with this client certificate.
    #[must_use]
    pub fn peer(mut self, peer: &'a PeerCertificate) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Finds the credentials of a request.
    ///
    /// An `Authorization` header with another scheme (e.g. `Basic`) is not a bearer credential
    /// and yields no bearer token.
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidRequest`] when there is more than one `Authorization` header, when the
    /// header is larger than [`CredentialLimits::max_header_len`], or when a `Bearer` header has
    /// no token.
    pub fn from_headers<H: HeaderSource + ?Sized>(
        headers: &'a H,
        limits: &CredentialLimits,
    ) -> Result<Self, AuthError> {
        let mut creds = Self {
            peer: headers.peer_certificate(),
            ..Self::default()
        };
        let mut values = headers.header_values("authorization");
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(AuthError::InvalidRequest(
                    RequestError::DuplicateAuthorization,
                ));
            }
            if value.len() > limits.max_header_len {
                return Err(AuthError::InvalidRequest(RequestError::HeaderTooLarge));
            }
            match split_scheme(value)? {
                Some((Scheme::Bearer, token)) => creds.bearer = Some(token),
                Some((Scheme::Dpop, token)) => {
                    creds.bearer = Some(token);
                    creds.dpop = true;
                    // RFC 9449 4.3: exactly one DPoP header.
                    for proof in headers.header_values("dpop") {
                        creds.proofs = creds.proofs.saturating_add(1);
                        if proof.len() <= limits.max_header_len {
                            creds.proof = Some(proof);
                        }
                    }
                }
                Some((Scheme::ApiKey, key)) => creds.api_key = Some(key),
                None => {}
            }
        }
        let mut keys = headers.header_values(limits.api_key_header);
        if let Some(key) = keys.next() {
            if keys.next().is_some() || creds.api_key.is_some() {
                // Two API keys, or one in each place: which one counts is ambiguous.
                return Err(AuthError::InvalidRequest(
                    RequestError::DuplicateAuthorization,
                ));
            }
            if key.len() > limits.max_header_len {
                return Err(AuthError::InvalidRequest(RequestError::HeaderTooLarge));
            }
            creds.api_key = Some(key);
        }
        Ok(creds)
    }

    /// Checks the full RFC 6750 syntax of the credential (`b64token` characters).
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidRequest`] when the bearer token has characters outside `b64token`.
    pub fn validate(&self) -> Result<(), AuthError> {
        let bad = |v: Option<&[u8]>| v.is_some_and(|t| !is_b64token(t));
        if bad(self.bearer) || bad(self.api_key) {
            return Err(AuthError::InvalidRequest(
                RequestError::MalformedAuthorization,
            ));
        }
        Ok(())
    }

    /// The bearer token, if one was presented and its syntax is valid.
    pub fn bearer(&self) -> Option<&'a str> {
        self.bearer
            .filter(|t| is_b64token(t))
            .and_then(|t| std::str::from_utf8(t).ok())
    }

    /// The bearer token's bytes as presented, syntax unchecked: only for exact-match look-ups of
    /// credentials validated before.
    pub fn bearer_unchecked(&self) -> Option<&'a [u8]> {
        self.bearer
    }

    /// Whether a bearer token was presented (with the `Bearer` or the `DPoP` scheme).
    pub fn has_bearer(&self) -> bool {
        self.bearer.is_some()
    }

    /// Whether the token came with the `DPoP` scheme (RFC 9449) rather than `Bearer`.
    pub fn is_dpop(&self) -> bool {
        self.dpop
    }

    /// The `DPoP` proof header sent with a `DPoP`-scheme token: `Ok(None)` when there is none,
    /// an error when there is more than one or it is not text.
    ///
    /// # Errors
    ///
    /// A description of what is wrong with the header, for the `invalid_dpop_proof` answer.
    pub fn dpop_proof(&self) -> Result<Option<&'a str>, &'static str> {
        if self.proofs > 1 {
            return Err("more than one DPoP header");
        }
        if self.proofs == 1 && self.proof.is_none() {
            return Err("the DPoP header is too large");
        }
        self.proof
            .map(|p| std::str::from_utf8(p).map_err(|_| "the DPoP header is not text"))
            .transpose()
    }

    /// These credentials without their `DPoP`-scheme token (for a gate that does not accept
    /// DPoP: such a token is then not a credential it reads).
    #[must_use]
    pub fn without_dpop(mut self) -> Self {
        if self.dpop {
            self.bearer = None;
            self.dpop = false;
            self.proof = None;
            self.proofs = 0;
        }
        self
    }

    /// The API key, if one was presented and its syntax is valid.
    pub fn api_key(&self) -> Option<&'a str> {
        self.api_key
            .filter(|t| is_b64token(t))
            .and_then(|t| std::str::from_utf8(t).ok())
    }

    /// The API key's bytes as presented, syntax unchecked: only for exact-match look-ups of
    /// credentials validated before.
    pub fn api_key_unchecked(&self) -> Option<&'a [u8]> {
        self.api_key
    }

    /// Whether an API key was presented.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// The connection's client certificate, if any.
    pub fn peer_certificate(&self) -> Option<&'a PeerCertificate> {
        self.peer
    }

    /// How many kinds of credential in headers the request presents (a bearer token, an API
    /// key). The client certificate does not count: it is the connection's, and a token can be
    /// bound to it.
    pub fn kinds(&self) -> usize {
        usize::from(self.bearer.is_some()) + usize::from(self.api_key.is_some())
    }

    /// Whether the request presents no credential at all (no header credential and no client
    /// certificate).
    pub fn is_empty(&self) -> bool {
        self.kinds() == 0 && self.peer.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
    ApiKey,
}

/// Splits `Bearer <token>`, `DPoP <token>` or `ApiKey <key>`; `Ok(None)` for another scheme. The credential's
/// characters are checked by [`Credentials::validate`].
fn split_scheme(value: &[u8]) -> Result<Option<(Scheme, &[u8])>, AuthError> {
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let scheme = match &value[..scheme_end] {
        s if s.eq_ignore_ascii_case(b"bearer") => Scheme::Bearer,
        s if s.eq_ignore_ascii_case(b"dpop") => Scheme::Dpop,
        s if s.eq_ignore_ascii_case(b"apikey") => Scheme::ApiKey,
        _ => return Ok(None),
    };
    // RFC 6750 2.1: "Bearer" 1*SP b64token (the same shape for ApiKey)
    let rest = &value[scheme_end..];
    match rest.iter().position(|&b| b != b' ') {
        Some(start) => Ok(Some((scheme, &rest[start..]))),
        None => Err(AuthError::InvalidRequest(
            RequestError::MalformedAuthorization,
        )),
    }
}

/// Splits and checks `Bearer <b64token>` (tests and callers that want both at once).
#[cfg(test)]
fn parse_bearer(value: &[u8]) -> Result<Option<&str>, AuthError> {
    let c = Credentials {
        bearer: split_scheme(value)?
            .filter(|(s, _)| *s == Scheme::Bearer)
            .map(|(_, t)| t),
        ..Credentials::default()
    };
    c.validate()?;
    Ok(c.bearer())
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
///
/// Branch-free per byte, so the scan vectorises: this runs on every request.
fn is_b64token(token: &[u8]) -> bool {
    let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let invalid = token[..body_end]
        .iter()
        .fold(0u8, |acc, &b| acc | u8::from(!is_b64token_byte(b)));
    body_end > 0 && invalid == 0
}

#[inline(always)]
fn is_b64token_byte(b: u8) -> bool {
    let lower = b | 0x20;
    (lower.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<Option<&str>, AuthError> {
        parse_bearer(v.as_bytes())
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse("BEARER t.o.k").unwrap(), Some("t.o.k"));
        assert_eq!(parse("bEaReR   t.o.k").unwrap(), Some("t.o.k"));
    }

    #[test]
    fn other_schemes_are_not_bearer() {
        assert_eq!(parse("Basic dXNlcjpwYXNz").unwrap(), None);
        assert_eq!(parse("Bearerx abc").unwrap(), None);
    }

    #[test]
    fn malformed_bearer_values_are_invalid_request() {
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\tb",
            "Bearer =abc",
            "Bearer a,b",
            "Bearer ä",
        ] {
            assert_eq!(
                parse(bad),
                Err(AuthError::InvalidRequest(
                    RequestError::MalformedAuthorization
                )),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn b64token_bytes() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64token_byte(b), expected, "byte {b}");
        }
    }

    #[test]
    fn padding_is_allowed_only_at_the_end() {
        assert_eq!(parse("Bearer abc==").unwrap(), Some("abc=="));
        assert!(parse("Bearer ab=c").is_err());
    }

    #[test]
    fn api_keys_from_either_place_but_not_both() {
        let limits = CredentialLimits::default();
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "ak_abc".parse().unwrap());
        assert_eq!(
            Credentials::from_headers(&h, &limits).unwrap().api_key(),
            Some("ak_abc")
        );
        let mut a = http::HeaderMap::new();
        a.insert("authorization", "apikey ak_def".parse().unwrap());
        let c = Credentials::from_headers(&a, &limits).unwrap();
        assert_eq!((c.api_key(), c.bearer()), (Some("ak_def"), None));
        h.insert("authorization", "ApiKey ak_def".parse().unwrap());
        assert_eq!(
            Credentials::from_headers(&h, &limits).unwrap_err(),
            AuthError::InvalidRequest(RequestError::DuplicateAuthorization)
        );
        let mut both = http::HeaderMap::new();
        both.insert("x-api-key", "ak_abc".parse().unwrap());
        both.insert("authorization", "Bearer a.b.c".parse().unwrap());
        assert_eq!(
            Credentials::from_headers(&both, &limits).unwrap().kinds(),
            2
        );
        let mut bad = http::HeaderMap::new();
        bad.insert("x-api-key", "ak abc".parse().unwrap());
        assert!(
            Credentials::from_headers(&bad, &limits)
                .unwrap()
                .validate()
                .is_err()
        );
    }

    #[test]
    fn oversized_header_is_refused() {
        let mut h = http::HeaderMap::new();
        let big = format!("Bearer {}", "a".repeat(17 * 1024));
        h.insert("authorization", big.parse().unwrap());
        assert_eq!(
            Credentials::from_headers(&h, &CredentialLimits::default()),
            Err(AuthError::InvalidRequest(RequestError::HeaderTooLarge))
        );
    }
}

//! Compact JWS (RFC 7515) parsing and signature verification against a [`KeySet`].
//!
//! This is the layer below JWT: it knows nothing of claims. It enforces the header rules of
//! RFC 8725: `alg` must be a supported signature algorithm (never `none`), a `crit` header is
//! refused unless every extension it names is understood (this verifier understands none),
//! `b64: false` payloads are refused, duplicate JSON members are refused, and the `jku`, `x5u`,
//! `jwk` and `x5c` headers are ignored: keys come only from the configured key set.
//!
//! ```
//! use auth_core::jws;
//! use auth_core::keys::{KeySet, VerifyingKey};
//!
//! let set = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let err = jws::verify("eyJhbGciOiJub25lIn0.e30.c2ln", &set).unwrap_err();
//! assert_eq!(err, auth_core::TokenError::UnsupportedAlgorithm);
//! ```

use crate::error::TokenError;
use crate::json::{JsonError, parse_object};
use crate::keys::{KeySet, VerifyingKey, parse_algorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::sync::Arc;

/// The header members this verifier acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The signature algorithm.
    pub alg: Algorithm,
    /// The key id, if any.
    pub kid: Option<String>,
    /// The media type, if any.
    pub typ: Option<String>,
}

/// A compact JWS split into its parts, header parsed, signature not yet checked.
#[derive(Debug)]
pub struct Compact<'a> {
    /// `base64url(header) "." base64url(payload)`: the signed bytes.
    pub signing_input: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
    /// The parsed header.
    pub header: Header,
    /// The decoded payload.
    pub payload: Vec<u8>,
}

/// A JWS whose signature verified.
#[derive(Debug)]
#[non_exhaustive]
pub struct Verified {
    /// The parsed header.
    pub header: Header,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The key that verified it.
    pub key: Arc<VerifyingKey>,
}

fn decode(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

/// Splits and checks a compact JWS without verifying its signature.
///
/// # Errors
///
/// [`TokenError::Malformed`] (not three base64url parts, header not a JSON object),
/// [`TokenError::DuplicateMember`], [`TokenError::UnsupportedAlgorithm`],
/// [`TokenError::UnsupportedCritical`].
pub fn parse(token: &str) -> Result<Compact<'_>, TokenError> {
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("not a compact JWS"))?;
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .ok_or(TokenError::Malformed("not a compact JWS"))?;
    if payload_b64.contains('.') {
        return Err(TokenError::Malformed("not a compact JWS"));
    }
    if signature.is_empty() {
        return Err(TokenError::Malformed("empty signature"));
    }
    // Check the signature's encoding here, so that a bad one is `Malformed`, not a failed
    // verification.
    if !signature
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TokenError::Malformed("signature is not base64url"));
    }
    let header = parse_header(&decode(header_b64, "header is not base64url")?)?;
    let payload = decode(payload_b64, "payload is not base64url")?;
    Ok(Compact {
        signing_input,
        signature,
        header,
        payload,
    })
}

fn parse_header(bytes: &[u8]) -> Result<Header, TokenError> {
    let map = parse_object(bytes).map_err(|e| match e {
        JsonError::Duplicate => TokenError::DuplicateMember,
        JsonError::Invalid => TokenError::Malformed("header is not a JSON object"),
    })?;
    let alg = match map.get("alg") {
        Some(Value::String(a)) => parse_algorithm(a).ok_or(TokenError::UnsupportedAlgorithm)?,
        _ => return Err(TokenError::UnsupportedAlgorithm),
    };
    if let Some(crit) = map.get("crit") {
        // RFC 7515 4.1.11: a non-empty array of names; we understand no extension, so any
        // well-formed `crit` is refused as unsupported, and a malformed one as malformed.
        match crit {
            Value::Array(names) if !names.is_empty() && names.iter().all(Value::is_string) => {
                return Err(TokenError::UnsupportedCritical);
            }
            _ => return Err(TokenError::Malformed("crit is not a list of names")),
        }
    }
    if map.contains_key("b64") {
        // RFC 7797 unencoded payloads are not supported.
        return Err(TokenError::UnsupportedCritical);
    }
    let string = |name: &'static str| match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed(name)),
    };
    Ok(Header {
        alg,
        kid: string("kid")?,
        typ: string("typ")?,
    })
}

impl Compact<'_> {
    /// Verifies the signature with the key the header selects from `keys`.
    ///
    /// # Errors
    ///
    /// [`TokenError::UnknownKey`], [`TokenError::AmbiguousKey`],
    /// [`TokenError::AlgorithmNotAllowed`] or [`TokenError::BadSignature`].
    pub fn verify_with(&self, keys: &KeySet) -> Result<Arc<VerifyingKey>, TokenError> {
        let mut last = TokenError::UnknownKey;
        for key in keys.select(self.header.kid.as_deref(), self.header.alg)? {
            match key.verify(
                self.header.alg,
                self.signing_input.as_bytes(),
                self.signature,
            ) {
                Ok(()) => return Ok(key.clone()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Parses a compact JWS and verifies it against `keys`.
///
/// # Errors
///
/// Any error of [`parse`] or [`Compact::verify_with`].
pub fn verify(token: &str, keys: &KeySet) -> Result<Verified, TokenError> {
    let c = parse(token)?;
    let key = c.verify_with(keys)?;
    Ok(Verified {
        header: c.header,
        payload: c.payload,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_rules() {
        let tok = |h: &str| format!("{}.{}.c2ln", b(h), b("{}"));
        assert_eq!(
            parse(&tok(r#"{"alg":"none"}"#)).unwrap_err(),
            TokenError::UnsupportedAlgorithm
        );
        assert_eq!(
            parse(&tok(r#"{"typ":"JWT"}"#)).unwrap_err(),
            TokenError::UnsupportedAlgorithm
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#)).unwrap_err(),
            TokenError::UnsupportedCritical
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"HS256","alg":"RS256"}"#)).unwrap_err(),
            TokenError::DuplicateMember
        );
        assert_eq!(
            parse(&tok(r#"{"alg":"HS256","b64":false}"#)).unwrap_err(),
            TokenError::UnsupportedCritical
        );
        let jku = tok(r#"{"alg":"ES256","kid":"k","jku":"https://evil"}"#);
        let ok = parse(&jku).unwrap();
        assert_eq!(ok.header.kid.as_deref(), Some("k"));
    }

    #[test]
    fn shape_rules() {
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "e30.e30.",
            "e30=.e30.c2ln",
            "e30.e30.c2l+",
        ] {
            assert!(
                matches!(parse(bad), Err(TokenError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}

//! PKCE (RFC 7636): the code verifier a client keeps, the challenge it sends with the
//! authorization request, and the check an authorization server makes at the token endpoint.
//!
//! Verifiers are 43 to 128 unreserved characters (`A-Z a-z 0-9 - . _ ~`); generated ones carry
//! 256 random bits from the system's CSPRNG (43 base64url characters) or more. The `S256`
//! challenge is `BASE64URL(SHA-256(verifier))`; `plain` (the challenge is the verifier) is
//! refused unless a caller explicitly allows it. Challenges are compared in constant time.
//!
//! ```
//! use auth_core::pkce::{CodeVerifier, Method, verify};
//!
//! let verifier = CodeVerifier::generate();
//! let challenge = verifier.challenge();            // send with the authorization request
//! assert_eq!(challenge.method(), Method::S256);
//! // At the token endpoint, the client sends the verifier; the server checks it:
//! assert!(verify(challenge.as_str(), Method::S256, verifier.as_str(), false).is_ok());
//! let other = CodeVerifier::generate();
//! assert!(verify(challenge.as_str(), Method::S256, other.as_str(), false).is_err());
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// The shortest verifier RFC 7636 allows.
pub const MIN_LEN: usize = 43;
/// The longest verifier RFC 7636 allows.
pub const MAX_LEN: usize = 128;

/// How the challenge is derived from the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `BASE64URL(SHA-256(verifier))`.
    S256,
    /// The challenge is the verifier itself (refused unless explicitly allowed).
    Plain,
}

impl Method {
    /// Parses `code_challenge_method` (`S256` or `plain`, case-sensitive as in the RFC).
    ///
    /// # Errors
    ///
    /// [`PkceError::UnsupportedMethod`] for anything else.
    pub fn parse(text: &str) -> Result<Self, PkceError> {
        match text {
            "S256" => Ok(Self::S256),
            "plain" => Ok(Self::Plain),
            _ => Err(PkceError::UnsupportedMethod),
        }
    }

    /// `S256` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S256 => "S256",
            Self::Plain => "plain",
        }
    }
}

/// Why a PKCE check failed. Safe to show: it never contains the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkceError {
    /// The verifier is not 43–128 unreserved characters.
    #[error("the code verifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~")]
    InvalidVerifier,
    /// The verifier does not match the challenge.
    #[error("the code verifier does not match the code challenge")]
    Mismatch,
    /// `plain` was used where only `S256` is allowed, or the method is unknown.
    #[error("the code challenge method is not allowed (use S256)")]
    UnsupportedMethod,
    /// The system's random source failed.
    #[error("no randomness available for a code verifier")]
    Randomness,
}

/// A code verifier (kept by the client until the token request). Its `Debug` output does not
/// show it.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CodeVerifier").field(&"<redacted>").finish()
    }
}

impl CodeVerifier {
    /// A verifier of 43 characters: 256 random bits, base64url-encoded.
    ///
    /// # Panics
    ///
    /// When the system's random source fails (see [`CodeVerifier::try_generate`] for a
    /// fallible version).
    pub fn generate() -> Self {
        #[allow(clippy::expect_used)]
        Self::try_generate(32).expect("the system's random source failed")
    }

    /// A verifier from `random_bytes` random bytes (24 to 96: 32 to 128 characters, at least 43
    /// after the minimum is applied), base64url-encoded.
    ///
    /// # Errors
    ///
    /// [`PkceError::Randomness`] when the random source fails, [`PkceError::InvalidVerifier`]
    /// when the length would fall outside 43–128 characters.
    pub fn try_generate(random_bytes: usize) -> Result<Self, PkceError> {
        let mut bytes = vec![0u8; random_bytes];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkceError::Randomness)?;
        Self::parse(&URL_SAFE_NO_PAD.encode(&bytes))
    }

    /// A verifier received or stored as text, checked against the RFC's grammar.
    ///
    /// # Errors
    ///
    /// [`PkceError::InvalidVerifier`].
    pub fn parse(text: &str) -> Result<Self, PkceError> {
        valid_verifier(text)
            .then(|| Self(text.to_owned()))
            .ok_or(PkceError::InvalidVerifier)
    }

    /// The verifier's text (sent as `code_verifier` at the token endpoint).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its `S256` challenge.
    pub fn challenge(&self) -> CodeChallenge {
        CodeChallenge {
            value: s256(&self.0),
            method: Method::S256,
        }
    }
}

/// A code challenge and its method (sent as `code_challenge` and `code_challenge_method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge {
    value: String,
    method: Method,
}

impl CodeChallenge {
    /// The challenge text.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }
}

fn valid_verifier(text: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// Checks `verifier` against the `challenge` made with `method` (what an authorization server
/// does at the token endpoint). `plain` is accepted only with `allow_plain`.
///
/// # Errors
///
/// [`PkceError::InvalidVerifier`] for a verifier outside the grammar,
/// [`PkceError::UnsupportedMethod`] for `plain` when not allowed, [`PkceError::Mismatch`]
/// otherwise. The comparison is in constant time.
pub fn verify(
    challenge: &str,
    method: Method,
    verifier: &str,
    allow_plain: bool,
) -> Result<(), PkceError> {
    if !valid_verifier(verifier) {
        return Err(PkceError::InvalidVerifier);
    }
    let expected = match method {
        Method::S256 => s256(verifier),
        Method::Plain if allow_plain => verifier.to_owned(),
        Method::Plain => return Err(PkceError::UnsupportedMethod),
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), challenge.as_bytes())
        .map_err(|_| PkceError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_verifiers_are_valid_distinct_and_hidden() {
        let a = CodeVerifier::generate();
        let b = CodeVerifier::generate();
        assert_eq!(a.as_str().len(), 43);
        assert_ne!(a, b);
        assert!(CodeVerifier::parse(a.as_str()).is_ok());
        assert!(!format!("{a:?}").contains(a.as_str()));
        assert_eq!(CodeVerifier::try_generate(96).unwrap().as_str().len(), 128);
        assert_eq!(
            CodeVerifier::try_generate(16),
            Err(PkceError::InvalidVerifier),
            "22 characters"
        );
        assert_eq!(
            CodeVerifier::try_generate(97),
            Err(PkceError::InvalidVerifier),
            "130 characters"
        );
    }

    #[test]
    fn methods() {
        assert_eq!(Method::parse("S256"), Ok(Method::S256));
        assert_eq!(Method::parse("plain"), Ok(Method::Plain));
        assert_eq!(Method::parse("s256"), Err(PkceError::UnsupportedMethod));
        let v = CodeVerifier::generate();
        assert_eq!(
            verify(v.as_str(), Method::Plain, v.as_str(), false),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(verify(v.as_str(), Method::Plain, v.as_str(), true), Ok(()));
    }
}

//! Server-provided DPoP nonces (RFC 9449 9), stateless: a nonce is the time it was issued and an
//! HMAC-SHA-256 tag over it, so any replica holding the same secret accepts it until it expires.

use crate::error::BuildError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::time::Duration;

/// The shortest and longest nonce lifetimes accepted.
const LIFETIMES: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);
/// Bytes of the HMAC tag kept in a nonce.
const TAG: usize = 16;
/// Domain separation of the HMAC input.
const CONTEXT: &[u8] = b"auth-core DPoP nonce v1\0";

/// How the verifier issues and checks nonces: an HMAC secret and how long a nonce stays valid.
///
/// Replicas that share a secret accept each other's nonces; [`NonceConfig::random`] makes a
/// per-process secret, which suits a single instance (a client that meets another replica is
/// simply asked for a new nonce).
///
/// ```
/// use auth_core::dpop::NonceConfig;
/// use std::time::Duration;
///
/// assert!(NonceConfig::new(&[7; 32], Duration::from_secs(300)).is_ok());
/// assert!(NonceConfig::new(&[7; 16], Duration::from_secs(300)).is_err(), "short secret");
/// assert!(NonceConfig::random(Duration::from_secs(0)).is_err(), "no lifetime");
/// ```
pub struct NonceConfig {
    key: aws_lc_rs::hmac::Key,
    lifetime: i64,
}

impl fmt::Debug for NonceConfig {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceConfig")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl NonceConfig {
    /// Nonces keyed with `secret` (at least 32 bytes; share it between replicas) and valid for
    /// `lifetime` after they are issued (1 s to 1 h; a few minutes is usual).
    ///
    /// # Errors
    ///
    /// [`BuildError::Invalid`] when the secret is shorter than 32 bytes or the lifetime is out of
    /// range.
    pub fn new(secret: &[u8], lifetime: Duration) -> Result<Self, BuildError> {
        if secret.len() < 32 {
            return Err(BuildError::Invalid(
                "the DPoP nonce secret must be at least 32 bytes".into(),
            ));
        }
        if !LIFETIMES.contains(&lifetime) {
            return Err(BuildError::Invalid(
                "the DPoP nonce lifetime must be between 1 s and 1 h".into(),
            ));
        }
        Ok(Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            lifetime: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        })
    }

    /// Nonces keyed with a random per-process secret, valid for `lifetime`.
    ///
    /// # Errors
    ///
    /// As [`NonceConfig::new`], or when the system has no randomness.
    pub fn random(lifetime: Duration) -> Result<Self, BuildError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| BuildError::Invalid("no randomness for the DPoP nonce secret".into()))?;
        Self::new(&secret, lifetime)
    }

    fn tag(&self, issued: i64) -> aws_lc_rs::hmac::Tag {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(&issued.to_be_bytes());
        ctx.sign()
    }

    /// A nonce issued at `now`.
    pub(crate) fn issue(&self, now: i64) -> String {
        let mut raw = [0u8; 8 + TAG];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(now).as_ref()[..TAG]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was issued by this configuration no longer than the lifetime before `now`
    /// (and not after `now + leeway`, for clocks of replicas that differ a little).
    pub(crate) fn accepts(&self, nonce: &str, now: i64, leeway: i64) -> bool {
        // 24 bytes are 32 base64url characters: refuse anything else before decoding.
        if nonce.len() != 32 {
            return false;
        }
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(issued) = <[u8; 8]>::try_from(&raw[..8]) else {
            return false;
        };
        let issued = i64::from_be_bytes(issued);
        let tag = self.tag(issued);
        let authentic =
            aws_lc_rs::constant_time::verify_slices_are_equal(&tag.as_ref()[..TAG], &raw[8..])
                .is_ok();
        authentic
            && issued <= now.saturating_add(leeway)
            && now.saturating_sub(issued) <= self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_expire_and_are_bound_to_the_secret() {
        let a = NonceConfig::new(&[1; 32], Duration::from_secs(60)).unwrap();
        let b = NonceConfig::new(&[2; 32], Duration::from_secs(60)).unwrap();
        let n = a.issue(1_000);
        assert_eq!(n.len(), 32);
        assert!(a.accepts(&n, 1_000, 5));
        assert!(a.accepts(&n, 1_060, 5));
        assert!(!a.accepts(&n, 1_061, 5), "expired");
        assert!(a.accepts(&n, 995, 5), "within the leeway of a slower clock");
        assert!(!a.accepts(&n, 994, 5), "from the future");
        assert!(!b.accepts(&n, 1_000, 5), "another secret");
        // A changed time or tag is refused.
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[7] ^= 1;
        assert!(!a.accepts(&URL_SAFE_NO_PAD.encode(&raw), 1_000, 5));
        raw[7] ^= 1;
        raw[23] ^= 1;
        assert!(!a.accepts(&URL_SAFE_NO_PAD.encode(&raw), 1_000, 5));
        for junk in ["", "x", &"A".repeat(32), &"A".repeat(33), "!!!!"] {
            assert!(!a.accepts(junk, 1_000, 5), "{junk:?}");
        }
        assert!(format!("{a:?}").contains("lifetime"));
    }
}

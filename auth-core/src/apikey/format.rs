//! The API key format: readable, self-checking, and shown only once.
//!
//! A key reads `<prefix>_<id>_<secret><check>`, e.g.
//! `ak_live_7m2xq4p9k3fa8d2c_<52 characters><7 characters>`:
//! - `prefix` says whose key it is and where it belongs (`ak_live`, `ak_test`), so secret
//!   scanners can recognise it;
//! - `id` (16 characters, 80 random bits) is public: the store looks the key up by it;
//! - `secret` is 256 random bits (52 base32 characters); only a hash of it is stored;
//! - `check` is the CRC-32 of everything before it (7 base32 characters), so a mistyped or
//!   foreign key is refused without a look-up.
//!
//! ```
//! use auth_core::apikey::format::KeyFormat;
//!
//! let format = KeyFormat::new("ak_test").unwrap();
//! let (key, parsed) = format.generate().unwrap();
//! assert!(key.starts_with("ak_test_"));
//! let again = format.parse(&key).unwrap();
//! assert_eq!(again.id(), parsed.id());
//! let mut typo = key.clone();
//! typo.replace_range(20..21, if &key[20..21] == "a" { "b" } else { "a" });
//! assert!(format.parse(&typo).is_err());
//! ```

use std::fmt;

/// Lower-case RFC 4648 base32 alphabet (no padding): letters and digits only, so a key is one
/// "word" for editors, shells and URLs.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const ID_BYTES: usize = 10;
const ID_CHARS: usize = 16;
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 52;
const CHECK_CHARS: usize = 7;

/// Why a presented string is not a key of this format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// Not `<prefix>_<id>_<secret><check>` with this prefix.
    Shape,
    /// A character outside the key alphabet.
    Character,
    /// The checksum does not match: mistyped, truncated or not one of ours.
    Checksum,
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shape => "not an API key of this service",
            Self::Character => "the API key has an invalid character",
            Self::Checksum => "the API key's checksum does not match",
        })
    }
}

impl std::error::Error for KeyFormatError {}

/// A prefix, and the rules to make and read keys with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
}

/// A key split into its public id and its secret. The secret is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedKey {
    id: String,
    secret: String,
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ParsedKey {
    /// The public key id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The secret part (hash it; never log it).
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl KeyFormat {
    /// A format with `prefix` (lower-case letters, digits and `_`, 1 to 16 characters, e.g.
    /// `ak_live`).
    ///
    /// # Errors
    ///
    /// A message when the prefix does not follow those rules.
    pub fn new(prefix: impl Into<String>) -> Result<Self, String> {
        let prefix = prefix.into();
        let ok = (1..=16).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !prefix.starts_with('_')
            && !prefix.ends_with('_');
        if ok {
            Ok(Self { prefix })
        } else {
            Err(format!(
                "key prefix `{prefix}`: 1 to 16 lower-case letters, digits or inner `_`"
            ))
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A fresh key: the full key text (show it once) and its parts.
    ///
    /// # Errors
    ///
    /// When the system has no randomness.
    pub fn generate(&self) -> Result<(String, ParsedKey), String> {
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| "no randomness".to_owned())?;
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no randomness".to_owned())?;
        let parsed = ParsedKey {
            id: base32(&id),
            secret: base32(&secret),
        };
        let body = format!("{}_{}_{}", self.prefix, parsed.id, parsed.secret);
        let check = checksum(body.as_bytes());
        Ok((format!("{body}{check}"), parsed))
    }

    /// Splits and checks a presented key.
    ///
    /// # Errors
    ///
    /// [`KeyFormatError`] saying what is wrong.
    pub fn parse(&self, key: &str) -> Result<ParsedKey, KeyFormatError> {
        let rest = key
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('_'))
            .ok_or(KeyFormatError::Shape)?;
        if rest.len() != ID_CHARS + 1 + SECRET_CHARS + CHECK_CHARS
            || rest.as_bytes()[ID_CHARS] != b'_'
        {
            return Err(KeyFormatError::Shape);
        }
        let (id, tail) = rest.split_at(ID_CHARS);
        let tail = &tail[1..];
        if !id
            .bytes()
            .chain(tail.bytes())
            .all(|b| ALPHABET.contains(&b))
        {
            return Err(KeyFormatError::Character);
        }
        let (secret, check) = tail.split_at(SECRET_CHARS);
        let body = &key[..key.len() - CHECK_CHARS];
        if checksum(body.as_bytes()) != check {
            return Err(KeyFormatError::Checksum);
        }
        Ok(ParsedKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// Base32 (lower case, no padding).
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// CRC-32 (IEEE) of `data`, as 7 base32 characters.
fn checksum(data: &[u8]) -> String {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    base32(&(!crc).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // CRC-32/ISO-HDLC of "123456789" is 0xCBF43926.
        assert_eq!(
            checksum(b"123456789"),
            base32(&0xCBF4_3926u32.to_be_bytes())
        );
    }

    #[test]
    fn shapes() {
        let f = KeyFormat::new("ak_live").unwrap();
        let (key, parsed) = f.generate().unwrap();
        assert_eq!(parsed.id().len(), ID_CHARS);
        assert_eq!(parsed.secret().len(), SECRET_CHARS);
        assert_eq!(f.parse(&key).unwrap(), parsed);
        assert_eq!(f.parse(&key[..key.len() - 1]), Err(KeyFormatError::Shape));
        assert_eq!(
            KeyFormat::new("ak_test").unwrap().parse(&key),
            Err(KeyFormatError::Shape)
        );
        let upper = key.to_uppercase().replace("AK_LIVE", "ak_live");
        assert_eq!(f.parse(&upper), Err(KeyFormatError::Character));
        assert!(!format!("{parsed:?}").contains(parsed.secret()));
        assert!(KeyFormat::new("Bad Prefix").is_err());
        assert!(KeyFormat::new("").is_err());
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let f = KeyFormat::new("ak").unwrap();
        let (key, _) = f.generate().unwrap();
        for i in 3..key.len() {
            if key.as_bytes()[i] == b'_' {
                continue;
            }
            let mut bytes = key.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(f.parse(&changed).is_err(), "position {i}");
        }
    }
}

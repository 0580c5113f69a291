//! [`ActixHeaders`]: the core's [`HeaderSource`] over actix-web's header map.
//!
//! actix-web 4 has its own [`HeaderMap`] (on `http` 0.2), so `auth-core`'s implementation for
//! `http` 1 does not apply, and the orphan rule keeps this crate from implementing the core's
//! trait on actix's type directly: a borrowed newtype does it. It copies nothing; the
//! `Authorization` look-up uses the header-name constant, so nothing is parsed on the hot path.
//!
//! ```
//! use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
//! use auth_actix::ActixHeaders;
//! use auth_core::credentials::{CredentialLimits, Credentials};
//!
//! let mut map = HeaderMap::new();
//! map.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc.def.ghi"));
//! let headers = ActixHeaders::new(&map);
//! let creds = Credentials::from_headers(&headers, &CredentialLimits::default()).unwrap();
//! assert_eq!(creds.bearer(), Some("abc.def.ghi"));
//! ```

use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use auth_core::HeaderSource;
use std::iter::Map;
use std::slice::Iter;

/// A borrowed actix-web [`HeaderMap`], readable by [`auth_core::Gate::check`] and
/// [`auth_core::Credentials::from_headers`].
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'h>(&'h HeaderMap);

impl<'h> ActixHeaders<'h> {
    /// Wraps `headers`.
    pub fn new(headers: &'h HeaderMap) -> Self {
        Self(headers)
    }

    /// The wrapped map.
    pub fn get_ref(&self) -> &'h HeaderMap {
        self.0
    }
}

impl<'h> From<&'h HeaderMap> for ActixHeaders<'h> {
    fn from(headers: &'h HeaderMap) -> Self {
        Self(headers)
    }
}

impl HeaderSource for ActixHeaders<'_> {
    type Values<'a>
        = Map<Iter<'a, HeaderValue>, fn(&'a HeaderValue) -> &'a [u8]>
    where
        Self: 'a;

    fn header_values<'a>(&'a self, name: &'static str) -> Self::Values<'a> {
        // The constant skips parsing the name on the hot path.
        let values = if name == "authorization" {
            self.0.get_all(AUTHORIZATION)
        } else {
            self.0.get_all(name)
        };
        values.map(HeaderValue::as_bytes as fn(&'a HeaderValue) -> &'a [u8])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use actix_web::http::header::HeaderName;

    fn collect<'a>(h: &'a ActixHeaders<'_>, name: &'static str) -> Vec<&'a [u8]> {
        h.header_values(name).collect()
    }

    #[test]
    fn all_values_in_order() {
        let mut map = HeaderMap::new();
        map.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        map.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        map.append(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("k"),
        );
        let h = ActixHeaders::new(&map);
        assert_eq!(
            collect(&h, "authorization"),
            [b"Bearer a".as_slice(), b"Bearer b"]
        );
        assert_eq!(collect(&h, "x-api-key"), [b"k".as_slice()]);
        assert!(collect(&h, "dpop").is_empty());
        assert!(collect(&h, "not a header name").is_empty());
    }
}

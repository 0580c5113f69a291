//! [`ClientAuth`]: how an OAuth 2.0 client authenticates to an authorization server's
//! token-endpoint style endpoints (token, introspection, revocation).
//!
//! Four methods are supported:
//!
//! - [`ClientAuth::none`]: a public client, only `client_id` in the form;
//! - [`ClientAuth::secret_basic`]: `client_secret_basic` (RFC 6749 section 2.3.1): the id and the
//!   secret are each form-urlencoded, then joined by `:` and base64-encoded into an
//!   `Authorization: Basic` header;
//! - [`ClientAuth::secret_post`]: `client_secret_post`, the id and secret as form fields;
//! - [`ClientAuth::private_key_jwt`]: an RFC 7523 client assertion signed with the client's key
//!   (`iss` = `sub` = client id, `aud` = the endpoint, a random `jti`, valid for 60 s).
//!
//! Secrets and keys never appear in `Debug` output.
//!
//! ```
//! use auth_core::oauth::ClientAuth;
//!
//! let auth = ClientAuth::secret_post("my-client", "s3cret");
//! assert_eq!(auth.client_id(), "my-client");
//! assert!(!format!("{auth:?}").contains("s3cret"));
//!
//! let client = reqwest::Client::new();
//! let mut form = Vec::new();
//! let req = client.post("https://as.example/token");
//! let _req = auth.apply(req, &mut form, "https://as.example/token").unwrap();
//! assert_eq!(form, [("client_id", "my-client".to_owned()), ("client_secret", "s3cret".to_owned())]);
//! ```

use crate::error::BuildError;
use crate::issuer::SigningKey;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `client_assertion_type` of RFC 7523 JWT client assertions.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a `private_key_jwt` assertion, in seconds.
const ASSERTION_LIFETIME: u64 = 60;

/// How a client authenticates to the authorization server. Cheap to clone.
#[derive(Clone)]
pub struct ClientAuth {
    client_id: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    None,
    SecretBasic(Arc<str>),
    SecretPost(Arc<str>),
    PrivateKeyJwt(Arc<SigningKey>),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientAuth");
        d.field("method", &self.method_name())
            .field("client_id", &self.client_id);
        match &self.kind {
            Kind::None => {}
            Kind::SecretBasic(_) | Kind::SecretPost(_) => {
                d.field("secret", &"<redacted>");
            }
            Kind::PrivateKeyJwt(key) => {
                d.field("kid", &key.kid())
                    .field("alg", &key.algorithm())
                    .field("key", &"<redacted>");
            }
        }
        d.finish()
    }
}

impl ClientAuth {
    fn new(client_id: impl Into<String>, kind: Kind) -> Self {
        Self {
            client_id: client_id.into(),
            kind,
        }
    }

    /// A public client: only `client_id` is sent, in the form.
    pub fn none(client_id: impl Into<String>) -> Self {
        Self::new(client_id, Kind::None)
    }

    /// `client_secret_basic` (RFC 6749 section 2.3.1): HTTP Basic authentication with the
    /// form-urlencoded id and secret.
    pub fn secret_basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::new(client_id, Kind::SecretBasic(secret.into().into()))
    }

    /// `client_secret_post`: `client_id` and `client_secret` as form fields.
    pub fn secret_post(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::new(client_id, Kind::SecretPost(secret.into().into()))
    }

    /// `private_key_jwt` (RFC 7523 section 2.2): a fresh assertion signed with `key` for every
    /// request.
    pub fn private_key_jwt(client_id: impl Into<String>, key: SigningKey) -> Self {
        Self::new(client_id, Kind::PrivateKeyJwt(Arc::new(key)))
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The method's registered name (`none`, `client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`), as in `token_endpoint_auth_methods_supported`.
    pub fn method_name(&self) -> &'static str {
        match self.kind {
            Kind::None => "none",
            Kind::SecretBasic(_) => "client_secret_basic",
            Kind::SecretPost(_) => "client_secret_post",
            Kind::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }

    /// Adds the client's authentication to a token-endpoint style POST: headers on `req`,
    /// fields into `form`. `audience` is the `aud` of a `private_key_jwt` assertion (the
    /// endpoint URL, or the issuer when the server wants that); other methods ignore it.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidKey`] when a `private_key_jwt` assertion cannot be signed.
    pub fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
        audience: &str,
    ) -> Result<reqwest::RequestBuilder, BuildError> {
        let id = &self.client_id;
        match &self.kind {
            Kind::None => {
                form.push(("client_id", id.clone()));
                Ok(req)
            }
            Kind::SecretBasic(secret) => {
                let mut value = reqwest::header::HeaderValue::try_from(basic_header(id, secret))
                    .map_err(|_| {
                        BuildError::Invalid("the Basic credentials are not a header value".into())
                    })?;
                // Never indexed by HPACK, hidden in reqwest's Debug output.
                value.set_sensitive(true);
                Ok(req.header(reqwest::header::AUTHORIZATION, value))
            }
            Kind::SecretPost(secret) => {
                form.push(("client_id", id.clone()));
                form.push(("client_secret", secret.to_string()));
                Ok(req)
            }
            Kind::PrivateKeyJwt(key) => {
                let assertion = assertion(key, id, audience, now_unix())?;
                form.push(("client_id", id.clone()));
                form.push((
                    "client_assertion_type",
                    JWT_BEARER_ASSERTION_TYPE.to_owned(),
                ));
                form.push(("client_assertion", assertion));
                Ok(req)
            }
        }
    }
}

/// An RFC 7523 client assertion for `client_id`, valid for [`ASSERTION_LIFETIME`] seconds.
fn assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
    now: u64,
) -> Result<String, BuildError> {
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| BuildError::InvalidKey {
        kid: Some(key.kid().to_owned()),
        reason: "no randomness for the assertion's jti".into(),
    })?;
    key.sign(&serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": URL_SAFE_NO_PAD.encode(jti),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    }))
}

/// The `Authorization` value of `client_secret_basic`: RFC 6749 section 2.3.1 requires the id
/// and secret to be encoded with `application/x-www-form-urlencoded` before Basic encoding.
fn basic_header(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret)))
    )
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serializes form fields as `application/x-www-form-urlencoded`.
pub(crate) fn encode_form(form: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySet;

    fn parts(req: reqwest::RequestBuilder) -> reqwest::Request {
        req.build().unwrap()
    }

    #[test]
    fn basic_form_encodes_before_base64() {
        // RFC 6749 2.3.1: "client id" and "p@ss:w rd/+" are form-urlencoded first.
        let h = basic_header("client id", "p@ss:w rd/+é");
        let raw = STANDARD.decode(h.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "client+id:p%40ss%3Aw+rd%2F%2B%C3%A9"
        );
        let h = basic_header("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw");
        assert_eq!(h, "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3");
    }

    #[test]
    fn each_method_places_its_fields() {
        let client = reqwest::Client::new();
        let url = "https://as.example/token";

        let mut form = Vec::new();
        let req = ClientAuth::none("pub")
            .apply(client.post(url), &mut form, url)
            .unwrap();
        assert!(parts(req).headers().get("authorization").is_none());
        assert_eq!(form, [("client_id", "pub".to_owned())]);

        let mut form = Vec::new();
        let req = ClientAuth::secret_basic("c", "s")
            .apply(client.post(url), &mut form, url)
            .unwrap();
        let basic = parts(req);
        assert_eq!(basic.headers()["authorization"], "Basic Yzpz");
        assert!(basic.headers()["authorization"].is_sensitive());
        assert!(form.is_empty());

        let mut form = Vec::new();
        let req = ClientAuth::secret_post("c", "s&=x")
            .apply(client.post(url), &mut form, url)
            .unwrap();
        assert!(parts(req).headers().get("authorization").is_none());
        assert_eq!(encode_form(&form), "client_id=c&client_secret=s%26%3Dx");
    }

    #[test]
    fn private_key_jwt_assertion_claims() {
        let key = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "ck").unwrap();
        let set = KeySet::new(vec![key.verifying_key().unwrap()]).unwrap();
        let auth = ClientAuth::private_key_jwt("svc", key);
        let client = reqwest::Client::new();
        let mut form = Vec::new();
        let _req = auth
            .apply(
                client.post("https://as.example/token"),
                &mut form,
                "https://as.example/token",
            )
            .unwrap();
        assert_eq!(form[0], ("client_id", "svc".to_owned()));
        assert_eq!(
            form[1],
            (
                "client_assertion_type",
                JWT_BEARER_ASSERTION_TYPE.to_owned()
            )
        );
        let verified = crate::jws::verify(&form[2].1, &set).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&verified.payload).unwrap();
        assert_eq!(c["iss"], "svc");
        assert_eq!(c["sub"], "svc");
        assert_eq!(c["aud"], "https://as.example/token");
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);
        assert!(c["jti"].as_str().unwrap().len() >= 22);

        // A fresh jti every time.
        let mut again = Vec::new();
        let _req = auth
            .apply(client.post("https://as.example/token"), &mut again, "x")
            .unwrap();
        let c2: serde_json::Value =
            serde_json::from_slice(&crate::jws::verify(&again[2].1, &set).unwrap().payload)
                .unwrap();
        assert_ne!(c["jti"], c2["jti"]);
    }

    #[test]
    fn debug_redacts() {
        let d = format!("{:?}", ClientAuth::secret_basic("id", "hunter2"));
        assert!(d.contains("id") && !d.contains("hunter2"), "{d}");
        let d = format!("{:?}", ClientAuth::secret_post("id", "hunter2"));
        assert!(!d.contains("hunter2"), "{d}");
        let key = SigningKey::generate(jsonwebtoken::Algorithm::HS256, "k").unwrap();
        let secret = key.public_jwk()["k"].as_str().unwrap().to_owned();
        let d = format!("{:?}", ClientAuth::private_key_jwt("id", key));
        assert!(!d.contains(&secret), "{d}");
    }
}

//! `auth-core`: framework-free verification of API credentials.
//!
//! The pipeline is the same for every framework:
//!
//! ```text
//! request ──adapter──► Credentials ──► Authenticator ──► Principal ──► Policy ──► allow | AuthError
//! ```
//!
//! - [`credentials`] reads what a request presents, through [`HeaderSource`].
//! - [`jwt::Jwt`] verifies JWT access tokens; [`jws`] and [`keys`] are the layers below it, and
//!   [`jwks::JwksCache`] (feature `jwks`) keeps remote keys fresh.
//! - [`Gate`] ties an [`Authenticator`], a [`Policy`] and an [`audit::AuditSink`] together
//!   for adapters.
//! - [`dpop`] verifies RFC 9449 DPoP proofs (replay cache, nonces, `cnf.jkt` token binding).
//! - [`revocation`] holds the denylist the [`Gate`] consults on every request (in memory, or
//!   shared through Redis with feature `redis`).
//! - [`AuthError`] maps every outcome to HTTP, RFC 6750, gRPC and GraphQL answers, once.
//!
//! Features: `http` (default: [`HeaderSource`] for `http::HeaderMap`), `jwks` (remote keys),
//! `issuer` (token signing, signing-key rotation), `api-keys` (API key format, stores, rate
//! limits), `oauth` (OAuth 2.0 client: token introspection for opaque tokens, client
//! credentials for outgoing calls, revocation, server metadata).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::KeySet;
//! # use auth_core::issuer::SigningKey;
//! # let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").unwrap();
//! # let jwks_json = auth_core::issuer::jwks([&signer]).to_string();
//! # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! # let token = signer.sign(&serde_json::json!({"iss": "https://issuer.example", "aud": "my-api",
//! #     "sub": "alice", "scope": "read", "exp": now + 60})).unwrap();
//!
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example")
//!         .audience("my-api")
//!         .keys(KeySet::from_jwks(&jwks_json).unwrap()))
//!     .build()
//!     .unwrap();
//! let principal = jwt.verify(&token).await.unwrap();
//! assert_eq!(principal.subject(), "alice");
//! assert!(principal.has_scope("read"));
//! # }
//! ```

#[cfg(feature = "api-keys")]
pub mod apikey;
pub mod audit;
pub mod authenticator;
mod cache;
pub mod clock;
pub mod credentials;
pub mod dpop;
pub mod error;
#[cfg(feature = "issuer")]
pub mod issuer;
mod json;
#[cfg(feature = "jwks")]
pub mod jwks;
pub mod jws;
pub mod jwt;
pub mod keys;
#[cfg(feature = "mtls")]
pub mod mtls;
#[cfg(feature = "oauth")]
pub mod oauth;
pub mod pkce;
pub mod policy;
pub mod principal;
pub mod ratelimit;
pub mod revocation;
#[cfg(feature = "issuer")]
pub mod rotation;

pub use authenticator::{Authenticator, BoxFuture, Chain, Check, Gate, Mode};
pub use credentials::{
    Credentials, HeaderSource, PeerCertificate, RequestTarget, WithPeer, WithTarget,
};
pub use error::{AuthError, BuildError, ErrorKind, GrpcCode, RequestError, TokenError};
pub use jsonwebtoken::Algorithm;
pub use policy::Policy;
pub use principal::{AuthMethod, Claims, Principal};

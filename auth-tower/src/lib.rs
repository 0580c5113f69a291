//! `auth-tower`: tower middleware and axum extractors over `auth-core`.
//!
//! - [`AuthLayer`] authenticates each request with an [`auth_core::Gate`], inserts the
//!   [`auth_core::Principal`] into the request extensions, and answers refusals with the
//!   status, RFC 6750 `WWW-Authenticate` challenge and problem-details body of the core's
//!   outcome table (a 429 adds `Retry-After`, `RateLimit-Policy` and `RateLimit`). When a rate
//!   limit or quota applied to an authenticated request, its answer, whatever the handler
//!   responds, carries the `RateLimit-Policy` and `RateLimit` headers of
//!   [`Principal::rate_limit`](auth_core::Principal::rate_limit).
//! - [`RequireLayer`] adds a route-level policy (scopes).
//! - With the `axum` feature (default): the extractors [`Principal`], `Option<Principal>` and
//!   [`Claims<T>`].
//! - With the `client` feature: `client::ClientCredentialsLayer` adds OAuth 2.0 client
//!   credentials tokens to the requests of an HTTP client service.
//!
//! The layer is generic over request and response bodies (any response body that is
//! `From<Bytes>`, as axum's is). This crate only translates: all verification lives in
//! `auth-core`.
//!
//! ```
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::KeySet;
//! use auth_tower::{AuthLayer, Principal, RequireLayer};
//! use axum::{Router, routing::get};
//!
//! # fn keys() -> KeySet { KeySet::new(vec![auth_core::keys::VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap() }
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").audience("my-api").keys(keys()))
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/whoami", get(|p: Principal| async move { p.subject().to_owned() }))
//!     .route("/admin", get(|| async { "hi, admin" }).route_layer(RequireLayer::all_scopes(["admin"])))
//!     .layer(AuthLayer::jwt(jwt));
//! ```

mod attributes;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "axum")]
mod extract;
mod layer;
#[cfg(feature = "mtls")]
mod proxy;
mod require;
mod response;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "axum")]
pub use extract::{AuthRejection, Claims, Principal};
pub use layer::{AuthContext, AuthLayer, AuthService, ResponseFuture};
pub use require::{Require, RequireFuture, RequireLayer};
pub use response::{error_response, gate_error_response};

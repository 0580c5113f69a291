//! `auth-grpc`: the tonic (gRPC) adapter of `auth-core`.
//!
//! - [`GrpcAuthLayer`] authenticates every call of a tonic server with an [`auth_core::Gate`],
//!   applies a per-method [`PolicyMap`](auth_core::policy::PolicyMap), inserts the
//!   [`auth_core::Principal`] into the request extensions, and answers refusals with the gRPC
//!   status of the core's outcome table (`UNAUTHENTICATED`, `PERMISSION_DENIED`,
//!   `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `INTERNAL`) and the RFC 6750 challenge in the
//!   `www-authenticate` metadata entry (`RESOURCE_EXHAUSTED` adds `retry-after`,
//!   `ratelimit-policy` and `ratelimit`). When a rate limit or quota applied to an
//!   authenticated call, its response headers (the initial metadata), whatever the service
//!   answers, carry the `ratelimit-policy` and `ratelimit` entries of
//!   [`Principal::rate_limit`](auth_core::Principal::rate_limit).
//! - Mutual TLS: the layer hands the gate the connection's validated client certificate —
//!   the [`PeerCertificate`](auth_core::PeerCertificate) that `auth_tower::tls::serve` inserts
//!   once per connection, or one built from tonic's `TlsConnectInfo` under tonic's own TLS
//!   server — so that certificate-only calls authenticate with `auth_core::mtls::Mtls`,
//!   certificate-bound tokens (RFC 8705) are enforced, and per-method policies can grant by
//!   SPIFFE ID. [`tls`] explains which server to use (tonic's `ServerTlsConfig` cannot take
//!   the reloading configuration of `auth_core::mtls::server::ReloadingTls`) and shows both.
//! - [`PrincipalExt::principal`] reads the caller in a handler.
//! - [`BearerInterceptor`] attaches `authorization: Bearer <token>` to outgoing calls, from any
//!   [`TokenSource`] ([`StaticToken`] for a fixed token).
//!
//! The rate-limit entries need the layer: a tonic server
//! [`Interceptor`](tonic::service::Interceptor) sees only the request and cannot add response
//! metadata, so a server that authenticates in an interceptor of its own (calling
//! [`Gate::check`](auth_core::Gate::check) itself) cannot send them on allowed calls. Use [`GrpcAuthLayer`], or add them in the handler from
//! `request.principal()?.rate_limit()`.
//!
//! This crate only translates: reading and verifying credentials, caching and policy decisions
//! all live in `auth-core`. gRPC metadata *is* the HTTP/2 header block, so the layer hands
//! [`http::HeaderMap`] to [`Gate::check`](auth_core::Gate::check) as it is (with the client
//! certificate, in a [`WithPeer`](auth_core::WithPeer)).
//!
//! ```no_run
//! use auth_core::Gate;
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::KeySet;
//! use auth_core::policy::{PolicyMap, Scopes};
//! use auth_grpc::GrpcAuthLayer;
//! # fn keys() -> KeySet { KeySet::new(vec![auth_core::keys::VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap() }
//! # fn routes() -> tonic::service::Routes { tonic::service::Routes::default() }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").audience("my-api").keys(keys()))
//!     .build()?;
//! let policies = PolicyMap::new().route("/demo.v1.Demo/Admin", Scopes::all(["admin"]));
//! let layer = GrpcAuthLayer::new(Gate::builder(jwt).build(), policies).exempt_health();
//!
//! tonic::transport::Server::builder()
//!     .layer(layer)
//!     .add_routes(routes()) // or .add_service(DemoServer::new(...))
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! In a handler:
//!
//! ```
//! use auth_grpc::PrincipalExt;
//!
//! fn who(request: &tonic::Request<()>) -> Result<String, tonic::Status> {
//!     Ok(request.principal()?.subject().to_owned())
//! }
//! // Without the layer in front, a handler's `principal()` is a server bug: INTERNAL.
//! assert_eq!(who(&tonic::Request::new(())).unwrap_err().code(), tonic::Code::Internal);
//! ```

mod attributes;
pub mod client;
mod extract;
pub mod layer;
mod status;
pub mod tls;

pub use client::{BearerInterceptor, BearerToken, StaticToken, TokenSource};
pub use extract::PrincipalExt;
pub use layer::{GrpcAuthLayer, GrpcAuthService, ResponseFuture};
pub use status::{error_status, gate_error_status};

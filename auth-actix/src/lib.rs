//! `auth-actix`: actix-web 4 middleware, extractors and guards over `auth-core`.
//!
//! - [`AuthMiddleware`] authenticates each request with an [`auth_core::Gate`], inserts the
//!   [`auth_core::Principal`] into the request extensions, and answers refusals with the
//!   status, RFC 6750 `WWW-Authenticate` challenge and problem-details body of the core's
//!   outcome table (a 429 adds `Retry-After`, `RateLimit-Policy` and `RateLimit`): the same
//!   answers as `auth-tower`. When a rate limit or quota applied to an authenticated request,
//!   its answer, whatever the handler responds, carries the `RateLimit-Policy` and `RateLimit`
//!   headers of [`Principal::rate_limit`](auth_core::Principal::rate_limit).
//! - [`Require`] adds a policy (scopes, roles, attribute rules) to a resource, scope or route.
//! - The extractors [`Principal`], [`OptionalPrincipal`] and [`Claims<T>`]; their error,
//!   [`AuthRejection`], is an actix-web [`ResponseError`](actix_web::ResponseError).
//! - [`PolicyGuard`] routes by what the caller may do (it never answers 403).
//! - [`ActixHeaders`] lets the core read actix-web's header map.
//! - Mutual TLS (feature `tls`): `tls::on_connect`, given to `HttpServer::on_connect` of a
//!   server listening with rustls 0.23 (`listen_rustls_0_23`, with a configuration from
//!   `auth_core::mtls::server::ReloadingTls`), stores each connection's validated client
//!   certificate once; the middleware hands it to the gate, which authenticates
//!   certificate-only requests (`auth_core::mtls::Mtls`) and enforces RFC 8705
//!   certificate-bound tokens. The `tls` module shows a complete server.
//!
//! This crate only translates: all verification lives in `auth-core`. Nothing here needs
//! `Send`: handlers and services stay on actix-web's single-threaded workers.
//!
//! ```
//! use actix_web::{App, test, web};
//! use auth_actix::{AuthMiddleware, Principal};
//! use auth_core::Gate;
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::KeySet;
//! use auth_core::policy::Scopes;
//! # use auth_core::issuer::SigningKey;
//!
//! # #[actix_web::main] async fn main() {
//! # let signer = SigningKey::generate(auth_core::Algorithm::ES256, "k1").unwrap();
//! # let jwks_json = auth_core::issuer::jwks([&signer]).to_string();
//! # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! # let token = signer.sign(&serde_json::json!({"iss": "https://issuer.example", "aud": "my-api",
//! #     "sub": "alice", "scope": "read", "exp": now + 60})).unwrap();
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example")
//!         .audience("my-api")
//!         .keys(KeySet::from_jwks(&jwks_json).unwrap()))
//!     .build()
//!     .unwrap();
//! let auth = AuthMiddleware::new(Gate::builder(jwt).realm("my-api").build());
//! let app = test::init_service(
//!     App::new()
//!         .route("/whoami", web::get().to(|p: Principal| async move { p.subject().to_owned() }))
//!         .service(
//!             web::resource("/admin")
//!                 .wrap(auth.require(Scopes::all(["admin"])))
//!                 .route(web::get().to(|| async { "hi, admin" })),
//!         )
//!         .wrap(auth),
//! )
//! .await;
//!
//! let get = |path: &str| test::TestRequest::get().uri(path);
//! let res = test::call_service(&app, get("/whoami").to_request()).await;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers().get("www-authenticate").unwrap(), r#"Bearer realm="my-api""#);
//!
//! let bearer = ("authorization", format!("Bearer {token}"));
//! let res = test::call_service(&app, get("/whoami").insert_header(bearer.clone()).to_request()).await;
//! assert_eq!(test::read_body(res).await, "alice");
//!
//! let res = test::call_service(&app, get("/admin").insert_header(bearer).to_request()).await;
//! assert_eq!(res.status(), 403);
//! assert_eq!(
//!     res.headers().get("www-authenticate").unwrap(),
//!     r#"Bearer realm="my-api", error="insufficient_scope", error_description="the token lacks the required scope", scope="admin""#,
//! );
//! # }
//! ```

mod attributes;
pub mod extract;
pub mod guard;
mod headers;
pub mod middleware;
pub mod require;
mod response;
#[cfg(feature = "tls")]
pub mod tls;

pub use extract::{AuthRejection, Claims, OptionalPrincipal, Principal};
pub use guard::PolicyGuard;
pub use headers::ActixHeaders;
pub use middleware::{AuthContext, AuthFuture, AuthMiddleware, AuthService};
pub use require::{Require, RequireFuture, RequireService};
pub use response::{error_response, gate_error_response};

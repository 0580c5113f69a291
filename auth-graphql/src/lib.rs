//! `auth-graphql`: async-graphql 7 guards and request helpers over `auth-core`.
//!
//! The crate translates; `auth-core` decides. It holds no token parsing, no crypto and no cache:
//! an HTTP adapter (feature `axum` or `actix`) authenticates the request with an
//! [`auth_core::Gate`] and puts the [`Principal`] into the GraphQL request data; guards and
//! helpers read it back and apply `auth-core` [`Policy`](auth_core::Policy)s to it.
//!
//! - [`ScopeGuard`], [`RoleGuard`] and [`PolicyGuard`] go in `#[graphql(guard = "...")]` on
//!   objects and fields, and compose with async-graphql's [`GuardExt::and`] / [`GuardExt::or`].
//! - [`principal`] gives a resolver the caller; [`enforce`] applies any policy inside a resolver;
//!   [`FieldArguments`] exposes the field's arguments to policies as `arg:<name>` attributes.
//! - [`PartialResults`], a schema extension, makes a refused nullable field `null` while the
//!   rest of the query answers.
//! - [`auth_error`] renders an [`AuthError`] as a GraphQL error whose `extensions.code` comes from
//!   [`AuthError::graphql_code`] (`UNAUTHENTICATED`, `FORBIDDEN`, `RATE_LIMITED`,
//!   `SERVICE_UNAVAILABLE`, `INTERNAL_SERVER_ERROR`), with the safe
//!   [`AuthError::description`] as the message. Everything in this crate answers through it.
//! - `axum::GraphQl` (feature `axum`) and `actix::GraphQl` (feature `actix`) serve a schema
//!   over HTTP, authenticating each request first.
//!
//! # Decisions
//!
//! **Anonymous requests reach the schema.** With a gate in optional mode
//! ([`GateBuilder::optional`](auth_core::authenticator::GateBuilder::optional)), a request
//! without credentials is executed without a principal: fields without a guard answer, guarded
//! fields fail with `UNAUTHENTICATED`. A gate in required mode refuses such requests before
//! execution instead (401, like every other adapter).
//!
//! **A credential that is presented must be valid.** An invalid, expired or malformed token is
//! never downgraded to an anonymous request: the request is refused before execution.
//!
//! **HTTP status.** A request the gate refuses *before execution* gets the status and headers of
//! the suite's outcome table — 401 with `WWW-Authenticate: Bearer error="invalid_token", ...`
//! for a bad token, 400 `invalid_request`, 403 for a gate-wide policy, 429 with `Retry-After`
//! and the refusing limit's `RateLimit-Policy` and `RateLimit`, 503 — and a GraphQL body
//! `{"errors":[{"message":...,"extensions":{"code":...}}]}` served as
//! `application/graphql-response+json`. A request that is *executed* gets 200, whatever its
//! field errors. The reasons:
//!
//! - RFC 6750 §3.1 asks for 401 on `invalid_token`, and RFC 9110 for a challenge with every 401.
//!   Token-refreshing clients, proxies and the other adapters of this suite key on exactly that.
//!   A 200 would hide a dead token from all of them.
//! - GraphQL-over-HTTP allows it: under `application/graphql-response+json` (the media type
//!   async-graphql's own integrations answer with), "if the client is not permitted to issue the
//!   GraphQL request then the server SHOULD reply with 403, 401 or similar", and a response
//!   without a `data` entry MUST carry a 4xx or 5xx status. The refusal body therefore has **no
//!   `data` entry** (the GraphQL specification, "Response Format": if an error was raised before
//!   execution begins, `data` should not be present); `data: null` would mean "executed, and
//!   the root failed", for which GraphQL-over-HTTP recommends 200.
//! - The body is still a well-formed GraphQL response, so a client that ignores HTTP statuses
//!   reads `errors[0].extensions.code` as it would for a field error.
//!
//! **Rate limits.** When a rate limit or quota applied to an authenticated request
//! ([`Principal::rate_limit`]), every HTTP answer to it carries the `RateLimit-Policy` and
//! `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) of that state, executed or not.
//!
//! Field-level refusals (a guard) are ordinary field errors: the request was executed, so the
//! status is 200, the refused field is `null`, and the rest of the query answers.
//!
//! **Partial results.** A refused field is `null`, its error is in `errors`, and the rest of
//! the query answers, as the GraphQL specification describes. Two things make it so:
//!
//! - add [`PartialResults`] to the schema: async-graphql 7.2 otherwise *leaves out* a field
//!   whose guard or resolver fails, where clients expect `null`;
//! - declare guarded fields nullable (`Option<T>`). A non-null field (`String!`, what a Rust
//!   `String` becomes) cannot be `null`: the specification propagates the `null` to its parent
//!   (for a root field, all of `data`), and async-graphql 7.2 leaves the field out.
//!
//! # Example
//!
//! ```
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! use auth_core::{AuthMethod, Principal};
//! use auth_graphql::{PartialResults, ScopeGuard};
//!
//! struct Query;
//!
//! #[Object]
//! impl Query {
//!     async fn hello(&self) -> &str {
//!         "hello"
//!     }
//!
//!     #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
//!     async fn admin(&self) -> Option<&str> {
//!         Some("welcome, admin")
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
//!     .extension(PartialResults)
//!     .finish();
//!
//! // Anonymous: the public field answers, the guarded one is null with UNAUTHENTICATED.
//! let res = schema.execute("{ hello admin }").await;
//! assert_eq!(res.data.to_string(), r#"{hello: "hello", admin: null}"#);
//! let code = res.errors[0].extensions.as_ref().unwrap().get("code");
//! assert_eq!(code, Some(&"UNAUTHENTICATED".into()));
//!
//! // Authenticated without the scope: FORBIDDEN, naming the missing scope.
//! let reader = Principal::builder("bob", AuthMethod::Jwt).scopes(["read"]).build();
//! let res = schema.execute(async_graphql::Request::new("{ hello admin }").data(reader)).await;
//! let ext = res.errors[0].extensions.as_ref().unwrap();
//! assert_eq!(ext.get("code"), Some(&"FORBIDDEN".into()));
//! assert_eq!(ext.get("scope"), Some(&"admin".into()));
//! # });
//! ```
//!
//! [`GuardExt::and`]: async_graphql::GuardExt::and
//! [`GuardExt::or`]: async_graphql::GuardExt::or

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
mod error;
pub mod guard;
#[cfg(any(feature = "axum", feature = "actix"))]
mod http;
mod partial;
pub mod resolver;

pub use auth_core::{AuthError, Principal};
pub use error::auth_error;
pub use guard::{PolicyGuard, RoleGuard, ScopeGuard};
pub use partial::PartialResults;
pub use resolver::{FieldArguments, enforce, principal};

//! Serving a schema from axum: [`GraphQl`], an axum handler that authenticates each request
//! with an [`auth_core::Gate`] and executes it with the [`Principal`] in the request data.
//!
//! ```text
//! request ──► principal already in the extensions (an AuthLayer ran)? ──► use it
//!                   │ no
//!                   ▼
//!             gate.check(headers) ──► refused: 401/400/403/429/503 + challenge, GraphQL body
//!                   │ Some(principal) | None (anonymous, optional gate)
//!                   ▼
//!             read the GraphQL request (GET query string, POST JSON or multipart)
//!                   ▼
//!             execute with the principal and the gate in the data ──► 200
//! ```
//!
//! When a rate limit or quota applied to an authenticated request
//! ([`Principal::rate_limit`]), every answer to it (executed, refused by the gate-wide policy,
//! or an unreadable GraphQL request) carries the `RateLimit-Policy` and `RateLimit` headers of
//! [`RateLimitStatus::headers`]; a refusal for being over the limit carries the refusing
//! limit's, with `Retry-After`.
//!
//! Mount it on a route of its own, **not** behind `auth_tower::AuthLayer`: the layer answers
//! a bad token itself with a problem-details body, where a GraphQL client expects a GraphQL
//! response. Give the handler the gate instead, in optional mode so that anonymous requests
//! reach public fields (see the [crate documentation](crate#decisions) for the statuses). If an
//! `AuthLayer` (or any middleware) does sit in front and has put an [`auth_core::Principal`]
//! into the request extensions, the handler uses that principal as it is.
//!
//! The credentials are checked before the body is read, so a refused request costs no body
//! read. Bodies are limited by axum's [`DefaultBodyLimit`](::axum::extract::DefaultBodyLimit)
//! (2 MB unless configured).
//!
//! ```
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use auth_core::Gate;
//! use auth_graphql::axum::GraphQl;
//! use axum::handler::Handler;
//! use axum::{Router, routing::get};
//!
//! struct Query;
//!
//! #[Object]
//! impl Query {
//!     async fn hello(&self) -> &str {
//!         "hello"
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").audience("my-api").keys(keys))
//!     .build()
//!     .unwrap();
//! let gate = Gate::builder(jwt).optional().realm("my-api").build();
//! let graphql = GraphQl::new(Schema::new(Query, EmptyMutation, EmptySubscription), gate);
//!
//! let app: Router = Router::new().route("/graphql", get(graphql.clone()).post(graphql.clone()));
//!
//! // A bad token: 401 with the RFC 6750 challenge, and a GraphQL body.
//! let request = axum::http::Request::post("/graphql")
//!     .header("authorization", "Bearer not.a.jwt")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(r#"{"query":"{ hello }"}"#))
//!     .unwrap();
//! let res = graphql.call(request, ()).await;
//! assert_eq!(res.status(), 401);
//! let challenge = res.headers()["www-authenticate"].to_str().unwrap();
//! assert!(challenge.starts_with(r#"Bearer realm="my-api", error="invalid_token""#));
//! assert_eq!(res.headers()["content-type"], "application/graphql-response+json");
//! # }
//! ```
//!
//! A handler of your own can extract the request with `async-graphql-axum` and call
//! [`GraphQl::execute`]:
//!
//! ```
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! use auth_graphql::axum::{GraphQl, GraphQlResponse};
//! use axum::extract::State;
//! use axum::http::request::Parts;
//!
//! # struct Query;
//! # #[Object] impl Query { async fn hello(&self) -> &str { "hello" } }
//! type MySchema = Schema<Query, EmptyMutation, EmptySubscription>;
//!
//! async fn graphql(
//!     State(graphql): State<GraphQl<MySchema>>,
//!     parts: Parts,
//!     request: async_graphql_axum::GraphQLBatchRequest,
//! ) -> GraphQlResponse {
//!     graphql.execute(&parts, request.into_inner()).await
//! }
//! # let _: axum::Router<GraphQl<MySchema>> =
//! #     axum::Router::new().route("/graphql", axum::routing::post(graphql));
//! ```

use crate::http::{
    Answer, GRAPHQL_RESPONSE, HttpAttributes, Refusal, admit, invalid, message_body, rate_limit_of,
    refusal_body,
};
use ::axum::Json;
use ::axum::body::Bytes;
use ::axum::extract::{ConnectInfo, FromRequest, Request};
use ::axum::handler::Handler;
use ::axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use ::axum::http::request::Parts;
use ::axum::http::{Method, StatusCode};
use ::axum::response::{IntoResponse, Response};
use async_graphql::http::{MultipartOptions, parse_query_string, receive_batch_body};
use async_graphql::{BatchRequest, BatchResponse, Executor};
use auth_core::policy::RequestContext;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{
    AuthError, BoxFuture, Check, Gate, PeerCertificate, Principal, RequestTarget, WithPeer,
    WithTarget,
};
use std::fmt;
use std::net::SocketAddr;

/// An axum handler serving a schema (any async-graphql [`Executor`]) behind a [`Gate`].
///
/// Route it for `GET` and `POST`: `Router::new().route("/graphql", get(h.clone()).post(h))`.
/// Cheap to clone (a schema and a gate are both shared handles).
#[derive(Clone)]
pub struct GraphQl<E> {
    executor: E,
    gate: Gate,
    multipart: MultipartOptions,
}

impl<E> fmt::Debug for GraphQl<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphQl")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl<E> GraphQl<E> {
    /// Serves `executor` (usually an `async_graphql::Schema`), authenticating with `gate`.
    ///
    /// Build the gate with [`optional()`](auth_core::authenticator::GateBuilder::optional) to
    /// let anonymous requests reach fields without guards; a gate in required mode refuses them
    /// with 401 before execution.
    pub fn new(executor: E, gate: Gate) -> Self {
        Self {
            executor,
            gate,
            multipart: MultipartOptions::default(),
        }
    }

    /// Sets the limits of multipart (file upload) requests.
    #[must_use]
    pub fn multipart_options(mut self, options: MultipartOptions) -> Self {
        self.multipart = options;
        self
    }

    /// The gate requests are checked with.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The schema.
    pub fn executor(&self) -> &E {
        &self.executor
    }
}

impl<E: Executor> GraphQl<E> {
    /// Authenticates the request described by `parts`, then executes `request` with the
    /// principal (if any) and the gate in its data; for handlers that read the GraphQL request
    /// themselves.
    ///
    /// A refusal is a [`GraphQlResponse`] too (status and challenge from the outcome table).
    pub async fn execute(
        &self,
        parts: &Parts,
        request: impl Into<BatchRequest>,
    ) -> GraphQlResponse {
        match self.authenticate(parts).await {
            Ok(principal) => self.run(principal, request.into()).await,
            Err(refusal) => self.refuse(refusal),
        }
    }

    async fn serve<S: Send + Sync>(&self, req: Request, state: &S) -> GraphQlResponse {
        let (parts, body) = req.into_parts();
        let principal = match self.authenticate(&parts).await {
            Ok(principal) => principal,
            Err(refusal) => return self.refuse(refusal),
        };
        let rate_limit = rate_limit_of(principal.as_ref());
        let request = if parts.method == Method::GET {
            parse_query_string(parts.uri.query().unwrap_or_default())
                .map(BatchRequest::Single)
                .map_err(|e| invalid(&e))
        } else {
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match Bytes::from_request(Request::from_parts(parts, body), state).await {
                Ok(bytes) => receive_batch_body(content_type, bytes.as_ref(), self.multipart)
                    .await
                    .map_err(|e| invalid(&e)),
                Err(rejection) => Err(Answer::Invalid {
                    status: rejection.status().as_u16(),
                    message: rejection.body_text(),
                }),
            }
        };
        match request {
            Ok(request) => self.run(principal, request).await,
            Err(answer) => GraphQlResponse { answer, rate_limit },
        }
    }

    async fn run(&self, principal: Option<Principal>, request: BatchRequest) -> GraphQlResponse {
        let rate_limit = rate_limit_of(principal.as_ref());
        let request = admit(request, principal, &self.gate);
        GraphQlResponse {
            answer: Answer::Executed(self.executor.execute_batch(request).await),
            rate_limit,
        }
    }
}

impl<E> GraphQl<E> {
    /// The caller: a principal a middleware already inserted, or the gate's verdict on the
    /// headers (with the gate-wide policy, if any, applied to an authenticated caller).
    async fn authenticate(&self, parts: &Parts) -> Result<Option<Principal>, Refusal> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(Some(principal.clone()));
        }
        // With `auth_tower::tls::serve`, the connection's client certificate is an extension.
        let peer = parts.extensions.get::<PeerCertificate>();
        let presented = WithTarget {
            inner: &WithPeer {
                headers: &parts.headers,
                peer,
            },
            target: RequestTarget::from_http(&parts.method, &parts.uri, peer.is_some()),
        };
        let principal = match self.gate.check(&presented) {
            Check::Ready(result) => result?,
            Check::Pending(check) => check.await?,
        };
        if let Some(principal) = &principal
            && self.gate.has_policy()
        {
            let attributes = HttpAttributes {
                header: |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()),
                query: parts.uri.query().unwrap_or_default(),
            };
            let mut request = RequestContext::new()
                .method(parts.method.as_str())
                .path(parts.uri.path())
                .attributes(&attributes);
            if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                request = request.peer(addr.ip());
            }
            self.gate
                .authorize(principal, &request)
                .map_err(|error| Refusal {
                    error,
                    rate_limit: rate_limit_of(Some(principal)),
                })?;
        }
        Ok(principal)
    }

    fn refuse(&self, refusal: Refusal) -> GraphQlResponse {
        GraphQlResponse {
            answer: Answer::refused(refusal.error, &self.gate),
            rate_limit: refusal.rate_limit,
        }
    }
}

/// The handler: route `GraphQl` with `get(..)`, `post(..)` or `on(..)`, with any router state.
impl<E: Executor, S: Send + Sync + 'static> Handler<(), S> for GraphQl<E> {
    type Future = BoxFuture<'static, Response>;

    fn call(self, req: Request, state: S) -> Self::Future {
        Box::pin(async move { self.serve(req, &state).await.into_response() })
    }
}

/// The answer to a GraphQL request: executed (200), or refused before execution (the outcome
/// table's status and headers). Either way the body is a GraphQL response served as
/// `application/graphql-response+json`, with the `RateLimit-Policy` and `RateLimit` headers
/// when a rate limit applied to the authenticated caller.
#[derive(Debug)]
pub struct GraphQlResponse {
    answer: Answer,
    rate_limit: Option<RateLimitStatus>,
}

impl GraphQlResponse {
    /// The HTTP status it will be sent with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.answer.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Why the request was refused before execution, if it was.
    pub fn auth_error(&self) -> Option<&AuthError> {
        self.answer.auth_error()
    }

    /// The authenticated caller's rate-limit state, sent as the `RateLimit-Policy` and
    /// `RateLimit` headers, if a limit applied.
    pub fn rate_limit(&self) -> Option<&RateLimitStatus> {
        self.rate_limit.as_ref()
    }
}

impl From<BatchResponse> for GraphQlResponse {
    fn from(response: BatchResponse) -> Self {
        Self {
            answer: Answer::Executed(response),
            rate_limit: None,
        }
    }
}

impl From<async_graphql::Response> for GraphQlResponse {
    fn from(response: async_graphql::Response) -> Self {
        Self::from(BatchResponse::from(response))
    }
}

/// Sets the `ratelimit-policy` and `ratelimit` headers of `status`, replacing any already there.
fn insert_rate_limit(headers: &mut HeaderMap, status: &RateLimitStatus) {
    for (name, value) in status.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

impl IntoResponse for GraphQlResponse {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut res = match &self.answer {
            Answer::Executed(batch) => Json(batch).into_response(),
            Answer::Refused { error, .. } => Json(refusal_body(error)).into_response(),
            Answer::Invalid { message, .. } => Json(message_body(message)).into_response(),
        };
        if !res.status().is_success() {
            // The body could not be serialized: axum's 500 says so.
            return res;
        }
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRAPHQL_RESPONSE));
        match self.answer {
            Answer::Executed(batch) => {
                if batch.is_ok()
                    && let Some(value) = batch.cache_control().value()
                    && let Ok(value) = HeaderValue::from_str(&value)
                {
                    headers.insert(CACHE_CONTROL, value);
                }
                headers.extend(batch.http_headers());
            }
            Answer::Refused { headers: extra, .. } => {
                for (name, value) in extra {
                    if let Ok(value) = HeaderValue::try_from(value) {
                        // `append`: a gate may challenge with two schemes (Bearer and DPoP).
                        headers.append(name, value);
                    }
                }
            }
            Answer::Invalid { .. } => {}
        }
        if let Some(limit) = &self.rate_limit {
            insert_rate_limit(headers, limit);
        }
        res
    }
}

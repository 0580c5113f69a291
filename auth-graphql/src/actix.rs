//! Serving a schema from actix-web: [`GraphQl`], which authenticates each request with an
//! [`auth_core::Gate`] and executes it with the [`Principal`] in the request data.
//!
//! It behaves like the axum handler of feature `axum` (statuses in the
//! [crate documentation](crate#decisions)): a principal an
//! actix middleware already put into the request extensions is used as it is; otherwise the
//! gate checks the headers, a refusal is answered before execution with the outcome table's
//! status and challenge and a GraphQL body, and an executed request gets 200. The credentials
//! are checked before the body is read; bodies are limited by actix-web's
//! [`PayloadConfig`](actix_web::web::PayloadConfig) (256 kB unless configured).
//!
//! When a rate limit or quota applied to an authenticated request
//! ([`Principal::rate_limit`]), every answer to it (executed, refused by the gate-wide policy,
//! or an unreadable GraphQL request) carries the `RateLimit-Policy` and `RateLimit` headers of
//! [`RateLimitStatus::headers`]; a refusal for being over the limit carries the refusing
//! limit's, with `Retry-After`.
//!
//! actix-web 4 is on `http` 0.2, so this module reads headers through a small
//! [`HeaderSource`] of its own; it does not need `auth-actix`.
//!
//! ```
//! use actix_web::{App, test};
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use auth_core::Gate;
//! use auth_graphql::actix::GraphQl;
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
//! # actix_web::rt::System::new().block_on(async {
//! # let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").audience("my-api").keys(keys))
//!     .build()
//!     .unwrap();
//! let gate = Gate::builder(jwt).optional().realm("my-api").build();
//! let graphql = GraphQl::new(Schema::new(Query, EmptyMutation, EmptySubscription), gate);
//! let app = test::init_service(App::new().service(graphql.resource("/graphql"))).await;
//!
//! // Anonymous: executed.
//! let req = test::TestRequest::post()
//!     .uri("/graphql")
//!     .insert_header(("content-type", "application/json"))
//!     .set_payload(r#"{"query":"{ hello }"}"#)
//!     .to_request();
//! let res = test::call_service(&app, req).await;
//! assert_eq!(res.status(), 200);
//!
//! // A bad token: 401 with the RFC 6750 challenge, and a GraphQL body.
//! let req = test::TestRequest::post()
//!     .uri("/graphql")
//!     .insert_header(("authorization", "Bearer not.a.jwt"))
//!     .insert_header(("content-type", "application/json"))
//!     .set_payload(r#"{"query":"{ hello }"}"#)
//!     .to_request();
//! let res = test::call_service(&app, req).await;
//! assert_eq!(res.status(), 401);
//! let challenge = res.headers().get("www-authenticate").unwrap().to_str().unwrap();
//! assert!(challenge.starts_with(r#"Bearer realm="my-api", error="invalid_token""#));
//! # });
//! ```

use crate::http::{
    Answer, GRAPHQL_RESPONSE, HttpAttributes, Refusal, admit, invalid, message_body, rate_limit_of,
    refusal_body,
};
use actix_web::body::BoxBody;
use actix_web::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, Resource, Responder, web};
use async_graphql::http::{MultipartOptions, parse_query_string, receive_batch_body};
use async_graphql::{BatchRequest, BatchResponse, Executor};
use auth_core::policy::RequestContext;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{
    AuthError, Check, Gate, HeaderSource, PeerCertificate, Principal, RequestTarget, WithPeer,
    WithTarget,
};
use std::fmt;

/// Serves a schema (any async-graphql [`Executor`]) behind a [`Gate`] in actix-web.
///
/// Register it with [`GraphQl::resource`], or route [`GraphQl::handle`] yourself. Cheap to
/// clone (a schema and a gate are both shared handles).
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
    /// A resource at `path` answering `GET` and `POST` GraphQL requests.
    pub fn resource(self, path: &str) -> Resource {
        let get = self.clone();
        web::resource(path)
            .route(
                web::get().to(move |req: HttpRequest, payload: web::Payload| {
                    let graphql = get.clone();
                    async move { graphql.handle(req, payload).await }
                }),
            )
            .route(
                web::post().to(move |req: HttpRequest, payload: web::Payload| {
                    let graphql = self.clone();
                    async move { graphql.handle(req, payload).await }
                }),
            )
    }

    /// Answers one GraphQL-over-HTTP request: authenticates, reads the GraphQL request (query
    /// string for `GET`, JSON or multipart body otherwise) and executes it.
    pub async fn handle(&self, req: HttpRequest, payload: web::Payload) -> GraphQlResponse {
        let principal = match self.authenticate(&req).await {
            Ok(principal) => principal,
            Err(refusal) => return self.refuse(refusal),
        };
        let rate_limit = rate_limit_of(principal.as_ref());
        let request = if req.method() == Method::GET {
            parse_query_string(req.query_string())
                .map(BatchRequest::Single)
                .map_err(|e| invalid(&e))
        } else {
            match web::Bytes::from_request(&req, &mut payload.into_inner()).await {
                Ok(bytes) => {
                    let content_type = req
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok());
                    receive_batch_body(content_type, bytes.as_ref(), self.multipart)
                        .await
                        .map_err(|e| invalid(&e))
                }
                Err(e) => Err(Answer::Invalid {
                    status: e.as_response_error().status_code().as_u16(),
                    message: e.to_string(),
                }),
            }
        };
        match request {
            Ok(request) => self.run(principal, request).await,
            Err(answer) => GraphQlResponse { answer, rate_limit },
        }
    }

    /// Authenticates `req`, then executes `request` with the principal (if any) and the gate
    /// in its data; for handlers that read the GraphQL request themselves.
    ///
    /// A refusal is a [`GraphQlResponse`] too (status and challenge from the outcome table).
    ///
    /// ```
    /// use actix_web::{HttpRequest, web};
    /// use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
    /// use auth_graphql::actix::{GraphQl, GraphQlResponse};
    ///
    /// # struct Query;
    /// # #[Object] impl Query { async fn hello(&self) -> &str { "hello" } }
    /// type MySchema = Schema<Query, EmptyMutation, EmptySubscription>;
    ///
    /// async fn graphql(
    ///     graphql: web::Data<GraphQl<MySchema>>,
    ///     req: HttpRequest,
    ///     request: async_graphql_actix_web::GraphQLBatchRequest,
    /// ) -> GraphQlResponse {
    ///     graphql.execute(&req, request.into_inner()).await
    /// }
    /// # let _ = actix_web::App::new().route("/graphql", web::post().to(graphql));
    /// ```
    pub async fn execute(
        &self,
        req: &HttpRequest,
        request: impl Into<BatchRequest>,
    ) -> GraphQlResponse {
        match self.authenticate(req).await {
            Ok(principal) => self.run(principal, request.into()).await,
            Err(refusal) => self.refuse(refusal),
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
    async fn authenticate(&self, req: &HttpRequest) -> Result<Option<Principal>, Refusal> {
        let inserted = req.extensions().get::<Principal>().cloned();
        if inserted.is_some() {
            return Ok(inserted);
        }
        // With `auth_actix::tls::on_connect`, the connection's client certificate is in the
        // connection data.
        let headers = ActixHeaders(req.headers());
        let peer = req.conn_data::<PeerCertificate>();
        let uri = req.uri();
        let https =
            peer.is_some() || req.app_config().secure() || uri.scheme_str() == Some("https");
        let presented = WithTarget {
            inner: &WithPeer {
                headers: &headers,
                peer,
            },
            target: RequestTarget {
                method: req.method().as_str(),
                scheme: if https { "https" } else { "http" },
                authority: uri.authority().map(|a| a.as_str()),
                path: uri.path(),
            },
        };
        let principal = match self.gate.check(&presented) {
            Check::Ready(result) => result?,
            Check::Pending(check) => check.await?,
        };
        if let Some(principal) = &principal
            && self.gate.has_policy()
        {
            let attributes = HttpAttributes {
                header: |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()),
                query: req.query_string(),
            };
            let mut request = RequestContext::new()
                .method(req.method().as_str())
                .path(req.path())
                .attributes(&attributes);
            if let Some(addr) = req.peer_addr() {
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

/// actix-web's header map (`http` 0.2) as the core reads headers.
struct ActixHeaders<'a>(&'a HeaderMap);

impl HeaderSource for ActixHeaders<'_> {
    type Values<'b>
        = std::iter::Map<std::slice::Iter<'b, HeaderValue>, fn(&'b HeaderValue) -> &'b [u8]>
    where
        Self: 'b;

    fn header_values<'b>(&'b self, name: &'static str) -> Self::Values<'b> {
        // The constant skips parsing the name on the hot path.
        let values = if name == "authorization" {
            self.0.get_all(AUTHORIZATION)
        } else {
            self.0.get_all(name)
        };
        values.map(HeaderValue::as_bytes as fn(&'b HeaderValue) -> &'b [u8])
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

impl Responder for GraphQlResponse {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status());
        builder.insert_header((CONTENT_TYPE, HeaderValue::from_static(GRAPHQL_RESPONSE)));
        let mut res = match self.answer {
            Answer::Executed(batch) => {
                if batch.is_ok()
                    && let Some(value) = batch.cache_control().value()
                    && let Ok(value) = HeaderValue::from_str(&value)
                {
                    builder.insert_header((CACHE_CONTROL, value));
                }
                // async-graphql's headers are `http` 1 values: carry them over by their bytes.
                for (name, value) in batch.http_headers_iter() {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_str().as_bytes()),
                        HeaderValue::from_bytes(value.as_bytes()),
                    ) {
                        builder.append_header((name, value));
                    }
                }
                builder.json(&batch)
            }
            Answer::Refused { error, headers } => {
                for (name, value) in headers {
                    // `append`: a gate may challenge with two schemes (Bearer and DPoP).
                    builder.append_header((name, value));
                }
                builder.json(refusal_body(&error))
            }
            Answer::Invalid { message, .. } => builder.json(message_body(&message)),
        };
        if let Some(limit) = &self.rate_limit {
            // Replacing any the schema set, as the other adapters do.
            for (name, value) in limit.headers() {
                if let Ok(value) = HeaderValue::try_from(value) {
                    res.headers_mut()
                        .insert(HeaderName::from_static(name), value);
                }
            }
        }
        res
    }
}

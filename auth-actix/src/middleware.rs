//! [`AuthMiddleware`]: authenticate every request with a [`Gate`].
//!
//! On success the [`auth_core::Principal`] is inserted into the request extensions and the
//! wrapped service is called; otherwise the middleware answers itself (401/400/403/429/503 with
//! the RFC 6750 challenge), exactly like `auth_tower::AuthLayer`. A token already verified is
//! answered from the core's cache without allocating a future; only a full verification boxes
//! its state.
//!
//! When a rate limit or quota applied to an authenticated request
//! ([`Principal::rate_limit`]), every answer to it — whatever the wrapped service responds, or
//! the middleware's own 403 for the gate-wide policy — carries the `RateLimit-Policy` and
//! `RateLimit` headers of [`RateLimitStatus::headers`] (draft-ietf-httpapi-ratelimit-headers),
//! replacing any the service set. A request without a status pays nothing for this.
//!
//! The gate sees the request's headers and, when the server hands client certificates over
//! (feature `tls`: `auth_actix::tls::on_connect`), the connection's certificate:
//! certificate-only requests authenticate with `auth_core::mtls::Mtls`, and certificate-bound
//! tokens (RFC 8705) are checked against it.
//!
//! Whether requests without credentials get through is the gate's choice
//! ([`GateBuilder::optional`](auth_core::authenticator::GateBuilder::optional)); so is the
//! gate-wide policy ([`GateBuilder::policy`](auth_core::authenticator::GateBuilder::policy)),
//! applied here with the request's method, path, peer address and attributes.
//!
//! ```
//! use actix_web::{App, HttpResponse, test, web};
//! use auth_actix::AuthMiddleware;
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//!
//! # #[actix_web::main] async fn main() {
//! let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let jwt = Jwt::builder().issuer(Issuer::new("https://issuer.example").keys(keys)).build().unwrap();
//! let app = test::init_service(
//!     App::new()
//!         .wrap(AuthMiddleware::jwt(jwt))
//!         .route("/", web::get().to(HttpResponse::Ok)),
//! )
//! .await;
//!
//! let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers().get("www-authenticate").unwrap(), r#"Bearer realm="api""#);
//! # }
//! ```

use crate::attributes::ActixAttributes;
use crate::headers::ActixHeaders;
use crate::require::Require;
use crate::response::gate_error_response;
use actix_web::HttpMessage as _;
use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{Error, HttpResponse};
use auth_core::jwt::Jwt;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{
    AuthError, BoxFuture, Check, Gate, PeerCertificate, Policy, Principal, RequestTarget, WithPeer,
    WithTarget,
};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

/// What the middleware leaves in the request extensions when it lets a request through
/// *without* a principal (an optional gate): it tells extractors and [`Require`] that the
/// middleware ran (so a missing principal is a 401, not a misconfiguration) and which realm to
/// challenge with. An authenticated request carries only the [`auth_core::Principal`]: one
/// extension insert on the hot path.
#[derive(Debug, Clone)]
pub struct AuthContext {
    gate: Gate,
    #[cfg(feature = "tls")]
    proxy: Option<std::sync::Arc<auth_core::mtls::trust::ForwardedCertificates>>,
}

impl AuthContext {
    /// The realm of challenges.
    pub fn realm(&self) -> &str {
        self.gate.realm()
    }

    /// The gate that checked the request (for its audit sink).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

/// Authenticates requests with a [`Gate`]: an actix-web [`Transform`], applied with
/// `.wrap(...)` on an `App`, a `Scope`, a `Resource` or a `Route`.
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    context: AuthContext,
}

impl AuthMiddleware {
    /// A middleware in front of `gate`.
    pub fn new(gate: Gate) -> Self {
        Self {
            context: AuthContext {
                gate,
                #[cfg(feature = "tls")]
                proxy: None,
            },
        }
    }

    /// Trusted-proxy mode (feature `tls`; off unless called): a request that did not come
    /// over mutual TLS itself, but from one of `proxy`'s addresses (actix's peer address), may
    /// carry the client certificate the proxy validated in its header; it is validated again
    /// against `trust()` and then counts as the connection's. From any other address the
    /// header is ignored.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn trusted_proxy(
        mut self,
        proxy: auth_core::mtls::trust::TrustedProxy,
        trust: impl Fn() -> std::sync::Arc<auth_core::mtls::trust::TrustStore> + Send + Sync + 'static,
    ) -> Self {
        self.context.proxy = Some(std::sync::Arc::new(
            auth_core::mtls::trust::ForwardedCertificates::new(proxy, trust),
        ));
        self
    }

    /// A middleware that requires a valid JWT (a [`Gate`] with default settings).
    pub fn jwt(jwt: Jwt) -> Self {
        Self::new(Gate::builder(jwt).build())
    }

    /// The gate this middleware checks requests with.
    pub fn gate(&self) -> &Gate {
        &self.context.gate
    }

    /// A [`Require`] middleware for `policy` that challenges with this gate's realm and records
    /// to its audit sink.
    pub fn require(&self, policy: impl Policy) -> Require {
        Require::new(policy).with_context(self.context.clone())
    }
}

impl<S, B> Transform<S, ServiceRequest> for AuthMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = AuthService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthService {
            service: Rc::new(service),
            context: self.context.clone(),
        }))
    }
}

/// The service [`AuthMiddleware`] wraps around `S`.
pub struct AuthService<S> {
    // Shared with the futures of requests that wait for a full verification.
    service: Rc<S>,
    context: AuthContext,
}

impl<S> fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for AuthService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = AuthFuture<S>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let headers = ActixHeaders::new(req.headers());
        // The connection's client certificate, stored once per connection by
        // `tls::on_connect` (none over plain HTTP), or one forwarded by a trusted proxy.
        let connection = req.conn_data::<PeerCertificate>();
        #[cfg(feature = "tls")]
        let forwarded = match (&self.context.proxy, connection) {
            (Some(proxy), None) => match proxy.peer(&headers, req.peer_addr().map(|a| a.ip())) {
                Ok(peer) => peer,
                Err(e) => {
                    let state = State::rejected(req, &e, &self.context, None);
                    return AuthFuture { state };
                }
            },
            _ => None,
        };
        #[cfg(feature = "tls")]
        let connection = connection.or(forwarded.as_ref());
        let uri = req.uri();
        let https =
            connection.is_some() || req.app_config().secure() || uri.scheme_str() == Some("https");
        let presented = WithTarget {
            inner: &WithPeer {
                headers: &headers,
                peer: connection,
            },
            target: RequestTarget {
                method: req.method().as_str(),
                scheme: if https { "https" } else { "http" },
                authority: uri.authority().map(|a| a.as_str()),
                path: uri.path(),
            },
        };
        let check = self.context.gate.check(&presented);
        let state = match check {
            Check::Ready(Ok(principal)) => {
                State::admitted(req, principal, &*self.service, &self.context)
            }
            Check::Ready(Err(e)) => State::rejected(req, &e, &self.context, None),
            Check::Pending(check) => State::Checking {
                pending: Box::new(Pending {
                    check,
                    request: Some(req),
                    service: Rc::clone(&self.service),
                    context: self.context.clone(),
                }),
            },
        };
        AuthFuture { state }
    }
}

/// The rate-limit state an authenticated request's answer must carry, boxed so that the
/// response future grows by one pointer only; `None` (no allocation) when no limit applied.
fn rate_limit_of(principal: Option<&Principal>) -> Option<Box<RateLimitStatus>> {
    principal
        .and_then(Principal::rate_limit)
        .copied()
        .map(Box::new)
}

/// Sets the `ratelimit-policy` and `ratelimit` headers of `status`, replacing any already there.
fn insert_rate_limit(headers: &mut HeaderMap, status: &RateLimitStatus) {
    for (name, value) in status.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Applies the gate-wide policy (if any), then leaves the principal (or, for an anonymous
/// request, the context) in the extensions.
fn admit(
    req: &ServiceRequest,
    principal: Option<Principal>,
    context: &AuthContext,
) -> Result<(), AuthError> {
    match principal {
        Some(p) => {
            let gate = context.gate();
            if gate.has_policy() {
                let attrs = ActixAttributes::of_request(req.request());
                gate.authorize(&p, &attrs.context())?;
            }
            req.extensions_mut().insert(p);
        }
        None => {
            req.extensions_mut().insert(context.clone());
        }
    }
    Ok(())
}

pin_project! {
    /// Response future of [`AuthService`].
    pub struct AuthFuture<S>
    where
        S: Service<ServiceRequest>,
    {
        #[pin]
        state: State<S>,
    }
}

impl<S: Service<ServiceRequest>> fmt::Debug for AuthFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFuture").finish_non_exhaustive()
    }
}

/// The slow path's state, boxed so that the future stays small on the hot path.
struct Pending<S> {
    check: BoxFuture<'static, Result<Option<Principal>, AuthError>>,
    request: Option<ServiceRequest>,
    service: Rc<S>,
    context: AuthContext,
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<ServiceRequest>,
    {
        Checking {
            pending: Box<Pending<S>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            // The headers to add to the wrapped service's response, if a limit applied.
            rate_limit: Option<Box<RateLimitStatus>>,
        },
        Rejected {
            response: Option<ServiceResponse>,
        },
    }
}

impl<S: Service<ServiceRequest>> State<S> {
    /// Calls the service with an authenticated (or anonymous) request, or refuses it for the
    /// gate-wide policy.
    fn admitted(
        req: ServiceRequest,
        principal: Option<Principal>,
        service: &S,
        context: &AuthContext,
    ) -> Self {
        let rate_limit = rate_limit_of(principal.as_ref());
        match admit(&req, principal, context) {
            // actix services are called through `&self` and the wrapped service (an app's
            // router, a resource) is always ready: no readiness to keep.
            Ok(()) => Self::Calling {
                future: service.call(req),
                rate_limit,
            },
            Err(e) => Self::rejected(req, &e, context, rate_limit),
        }
    }

    fn rejected(
        req: ServiceRequest,
        error: &AuthError,
        context: &AuthContext,
        rate_limit: Option<Box<RateLimitStatus>>,
    ) -> Self {
        let mut response: HttpResponse = gate_error_response(error, context.gate());
        if let Some(status) = rate_limit {
            insert_rate_limit(response.headers_mut(), &status);
        }
        Self::Rejected {
            response: Some(req.into_response(response)),
        }
    }
}

impl<S, B> Future for AuthFuture<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { pending } => {
                    let outcome = ready!(pending.check.as_mut().poll(cx));
                    let req = pending
                        .request
                        .take()
                        .expect("future polled after completion");
                    let next = match outcome {
                        Ok(principal) => {
                            State::admitted(req, principal, &*pending.service, &pending.context)
                        }
                        Err(e) => State::rejected(req, &e, &pending.context, None),
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future, rate_limit } => {
                    let mut result = ready!(future.poll(cx));
                    if let Some(status) = rate_limit.take()
                        && let Ok(response) = &mut result
                    {
                        insert_rate_limit(response.headers_mut(), &status);
                    }
                    return Poll::Ready(result.map(ServiceResponse::map_into_left_body));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response.map_into_right_body()));
                }
            }
        }
    }
}

//! [`AuthLayer`]: authenticate every request with a [`Gate`].
//!
//! On success the [`Principal`] is inserted into the request extensions and the inner service is
//! called; otherwise the layer answers itself (401/400/403/429/503 with the RFC 6750 challenge).
//! A token already verified is answered from the core's cache without allocating a future.
//!
//! When a rate limit or quota applied to an authenticated request
//! ([`Principal::rate_limit`]), every answer to it — whatever the inner service responds, or
//! the layer's own 403 for the gate-wide policy — carries the `RateLimit-Policy` and
//! `RateLimit` headers of [`RateLimitStatus::headers`] (draft-ietf-httpapi-ratelimit-headers),
//! replacing any the inner service set. A request without a status pays nothing for this.
//!
//! ```
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use auth_tower::AuthLayer;
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let jwt = Jwt::builder().issuer(Issuer::new("https://issuer.example").keys(keys)).build().unwrap();
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(AuthLayer::jwt(jwt));
//!
//! let res = app.oneshot(http::Request::new(axum::body::Body::empty())).await.unwrap();
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # }
//! ```

use crate::attributes::HttpAttributes;
use crate::response::{gate_error_response, insert_rate_limit};
use auth_core::jwt::Jwt;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{
    AuthError, BoxFuture, Check, Gate, PeerCertificate, Principal, RequestTarget, WithPeer,
    WithTarget,
};
use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// What the layer leaves in the request extensions when it lets a request through *without* a
/// principal (an optional-auth route): it tells extractors and [`RequireLayer`] that the layer
/// ran (so a missing principal is a 401, not a misconfiguration) and which realm to challenge
/// with. An authenticated request carries only the [`Principal`]: one extension insert on the
/// hot path.
///
/// [`RequireLayer`]: crate::RequireLayer
#[derive(Debug, Clone)]
pub struct AuthContext {
    gate: Gate,
    #[cfg(feature = "mtls")]
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

/// Applies [`AuthService`] to a service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    context: AuthContext,
}

impl AuthLayer {
    /// A layer in front of `gate`.
    pub fn new(gate: Gate) -> Self {
        Self {
            context: AuthContext {
                gate,
                #[cfg(feature = "mtls")]
                proxy: None,
            },
        }
    }

    /// Trusted-proxy mode (feature `mtls`; off unless called): a request that did not come
    /// over mutual TLS itself, but from one of `proxy`'s addresses, may carry the client
    /// certificate the proxy validated in its header. The certificate is validated again
    /// against `trust()` (the current trust store, e.g. `ReloadingTls::trust`) and then
    /// counts as the connection's. From any other address the header is ignored.
    ///
    /// The remote address comes from axum's `ConnectInfo<SocketAddr>`: serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; without it the header is ignored.
    #[cfg(feature = "mtls")]
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

    /// A layer that requires a valid JWT (a [`Gate`] with default settings).
    pub fn jwt(jwt: Jwt) -> Self {
        Self::new(Gate::builder(jwt).build())
    }

    /// The gate this layer checks requests with.
    pub fn gate(&self) -> &Gate {
        &self.context.gate
    }

    /// A route-level [`RequireLayer`] for `policy` that challenges with this layer's realm and
    /// records to its audit sink.
    ///
    /// [`RequireLayer`]: crate::RequireLayer
    pub fn require(&self, policy: impl auth_core::Policy) -> crate::RequireLayer {
        crate::RequireLayer::new(policy).with_context(self.context.clone())
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            context: self.context.clone(),
        }
    }
}

/// Authenticates requests before passing them to `S`.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    context: AuthContext,
}

impl<S> AuthService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, gate: Gate) -> Self {
        AuthLayer::new(gate).layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        #[cfg(feature = "mtls")]
        let forwarded = match (
            &self.context.proxy,
            req.extensions().get::<PeerCertificate>(),
        ) {
            (Some(proxy), None) => match proxy.peer(req.headers(), crate::proxy::remote_ip(&req)) {
                Ok(peer) => peer,
                Err(e) => {
                    return ResponseFuture::reject(gate_error_response(&e, &self.context.gate));
                }
            },
            _ => None,
        };
        #[cfg(feature = "mtls")]
        let peer = forwarded
            .as_ref()
            .or_else(|| req.extensions().get::<PeerCertificate>());
        #[cfg(not(feature = "mtls"))]
        let peer = req.extensions().get::<PeerCertificate>();
        let presented = WithTarget {
            inner: &WithPeer {
                headers: req.headers(),
                peer,
            },
            target: RequestTarget::from_http(req.method(), req.uri(), peer.is_some()),
        };
        match self.context.gate.check(&presented) {
            Check::Ready(Ok(principal)) => {
                let limit = rate_limit_of(principal.as_ref());
                match admit(req, principal, &self.context) {
                    Ok(req) => ResponseFuture::calling(self.inner.call(req), limit),
                    Err(e) => ResponseFuture::reject(refusal(&e, &self.context, limit)),
                }
            }
            Check::Ready(Err(e)) => {
                ResponseFuture::reject(gate_error_response(&e, &self.context.gate))
            }
            Check::Pending(check) => {
                // The ready service goes into the future; a clone (not yet ready) stays here.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Checking {
                        pending: Box::new(Pending {
                            check,
                            request: Some(req),
                            service: ready,
                            context: self.context.clone(),
                        }),
                    },
                }
            }
        }
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

/// The layer's own answer to `error`, with the rate-limit headers of an authenticated caller.
fn refusal<B: From<Bytes>>(
    error: &AuthError,
    context: &AuthContext,
    limit: Option<Box<RateLimitStatus>>,
) -> Response<B> {
    let mut response = gate_error_response(error, &context.gate);
    if let Some(status) = limit {
        insert_rate_limit(response.headers_mut(), &status);
    }
    response
}

/// Applies the gate-wide policy (if any), then leaves the principal (or, for an anonymous
/// request, the context) in the extensions.
fn admit<B>(
    mut req: Request<B>,
    principal: Option<Principal>,
    context: &AuthContext,
) -> Result<Request<B>, AuthError> {
    match principal {
        Some(p) => {
            let gate = context.gate();
            if gate.has_policy() {
                let (parts, body) = req.into_parts();
                let attrs = HttpAttributes::new(&parts, Vec::new());
                gate.authorize(&p, &attrs.context())?;
                req = Request::from_parts(parts, body);
            }
            req.extensions_mut().insert(p);
        }
        None => {
            req.extensions_mut().insert(context.clone());
        }
    }
    Ok(req)
}

pin_project! {
    /// Response future of [`AuthService`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

/// The slow path's state, boxed so that the future stays small on the hot path (it is moved
/// around by the router).
struct Pending<S, ReqBody> {
    check: BoxFuture<'static, Result<Option<Principal>, AuthError>>,
    request: Option<Request<ReqBody>>,
    service: S,
    context: AuthContext,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Checking {
            pending: Box<Pending<S, ReqBody>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            // The headers to add to the inner service's response, if a limit applied.
            rate_limit: Option<Box<RateLimitStatus>>,
        },
        Rejected {
            response: Option<Box<S::Response>>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn calling(future: S::Future, rate_limit: Option<Box<RateLimitStatus>>) -> Self {
        Self {
            state: State::Calling { future, rate_limit },
        }
    }

    fn reject(response: S::Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { pending } => {
                    let Pending {
                        check,
                        request,
                        service,
                        context,
                    } = &mut **pending;
                    let outcome = ready!(check.as_mut().poll(cx));
                    let req = request.take().expect("future polled after completion");
                    let next = match outcome {
                        Ok(principal) => {
                            let limit = rate_limit_of(principal.as_ref());
                            match admit(req, principal, context) {
                                Ok(req) => State::Calling {
                                    future: service.call(req),
                                    rate_limit: limit,
                                },
                                Err(e) => State::Rejected {
                                    response: Some(Box::new(refusal(&e, context, limit))),
                                },
                            }
                        }
                        Err(e) => State::Rejected {
                            response: Some(Box::new(gate_error_response(&e, &context.gate))),
                        },
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
                    return Poll::Ready(result);
                }
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(*response
                        .take()
                        .expect("future polled after completion")));
                }
            }
        }
    }
}

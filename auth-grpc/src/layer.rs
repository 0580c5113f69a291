//! [`GrpcAuthLayer`]: authenticate and authorize every call of a tonic server.
//!
//! For each call the layer
//!
//! 1. lets [exempt](auth_core::policy::PolicyMap::exempt) methods (health checks, reflection)
//!    through without looking at credentials;
//! 2. checks the `authorization` metadata, together with the connection's client certificate
//!    when the call came over mutual TLS (see [`tls`](crate::tls)), with [`Gate::check`] — a
//!    token already verified is answered from the core's cache without allocating a future;
//! 3. builds a [`RequestContext`](auth_core::policy::RequestContext) (operation: the full method
//!    path such as `/demo.v1.Demo/Admin`; peer: the connection's remote address; attributes:
//!    `metadata:<key>`, with `header:<name>` as a synonym) and applies the gate-wide policy
//!    ([`Gate::authorize`]) and the method's policy from the [`PolicyMap`] ([`Gate::enforce`]);
//! 4. inserts the [`Principal`] into the request extensions and calls the service, or answers
//!    itself with the gRPC status of the refusal (see [`gate_error_status`]).
//!
//! When a rate limit or quota applied to an authenticated call ([`Principal::rate_limit`]),
//! the answer carries the `ratelimit-policy` and `ratelimit` entries of
//! [`RateLimitStatus::headers`] in its response headers, which are the call's initial metadata
//! (a client reads them with `tonic::Response::metadata`, or `Status::metadata` when the call
//! failed): whatever the service answers, and on the layer's own `PERMISSION_DENIED` for a
//! policy. A call without a status pays nothing for this.
//!
//! An anonymous call on an optional-auth gate ([`Mode::Optional`](auth_core::Mode::Optional))
//! goes through without a principal to methods without a policy, and is refused with
//! `UNAUTHENTICATED` on methods that have one.
//!
//! ```
//! use auth_core::Gate;
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use auth_core::policy::{PolicyMap, Scopes};
//! use auth_grpc::GrpcAuthLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let jwt = Jwt::builder().issuer(Issuer::any().keys(keys)).build().unwrap();
//! let gate = Gate::builder(jwt).realm("demo").build();
//! let policies = PolicyMap::new().route("/demo.v1.Demo/Admin", Scopes::all(["admin"]));
//!
//! // Any tower service over `http::Request` works; tonic's router is one.
//! let svc = ServiceBuilder::new()
//!     .layer(GrpcAuthLayer::new(gate, policies).exempt_health())
//!     .service_fn(|_req: http::Request<tonic::body::Body>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
//!     });
//!
//! // No token: UNAUTHENTICATED, with the RFC 6750 challenge as metadata.
//! let call = http::Request::post("/demo.v1.Demo/WhoAmI").body(tonic::body::Body::empty()).unwrap();
//! let res = svc.clone().oneshot(call).await.unwrap();
//! let status = tonic::Status::from_header_map(res.headers()).unwrap();
//! assert_eq!(status.code(), tonic::Code::Unauthenticated);
//! assert_eq!(status.metadata().get("www-authenticate").unwrap(), r#"Bearer realm="demo""#);
//!
//! // Health checks are exempt: the service answers.
//! let call = http::Request::post(auth_grpc::layer::HEALTH_CHECK).body(tonic::body::Body::empty()).unwrap();
//! let res = svc.oneshot(call).await.unwrap();
//! assert!(res.headers().get("grpc-status").is_none());
//! # }
//! ```

use crate::attributes::{MetadataAttributes, context};
use crate::extract::AuthContext;
use crate::status::gate_error_status;
use auth_core::policy::PolicyMap;
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{
    AuthError, BoxFuture, Check, Gate, PeerCertificate, Principal, RequestTarget, WithPeer,
    WithTarget,
};
use http::header::HeaderValue;
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// `grpc.health.v1.Health/Check`, the standard health check.
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// `grpc.health.v1.Health/Watch`, the streaming health check.
pub const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";
/// `grpc.reflection.v1.ServerReflection/ServerReflectionInfo`.
pub const REFLECTION_V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
/// `grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo`.
pub const REFLECTION_V1ALPHA: &str =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// What every copy of the layer and its services shares: one `Arc` to clone.
#[derive(Debug, Clone)]
struct Shared {
    gate: Gate,
    policies: PolicyMap,
    #[cfg(feature = "mtls")]
    proxy: Option<Arc<auth_core::mtls::trust::ForwardedCertificates>>,
}

/// Applies [`GrpcAuthService`] to a service (a tonic server's routes, through
/// `Server::builder().layer(...)`).
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer {
    shared: Arc<Shared>,
}

impl GrpcAuthLayer {
    /// A layer that checks calls with `gate` and applies the per-method `policies` (keyed by the
    /// full method path, `/package.Service/Method`).
    ///
    /// [`PolicyMap::new()`] applies no per-method policy: every authenticated caller gets
    /// through (subject to the gate-wide policy, if any).
    pub fn new(gate: Gate, policies: PolicyMap) -> Self {
        Self {
            shared: Arc::new(Shared {
                gate,
                policies,
                #[cfg(feature = "mtls")]
                proxy: None,
            }),
        }
    }

    /// Trusted-proxy mode (feature `mtls`; off unless called): a call that did not come over
    /// mutual TLS itself, but from one of `proxy`'s addresses (tonic's remote address), may
    /// carry the client certificate the proxy validated in its metadata; it is validated again
    /// against `trust()` and then counts as the connection's. From any other address the entry
    /// is ignored.
    #[cfg(feature = "mtls")]
    #[must_use]
    pub fn trusted_proxy(
        self,
        proxy: auth_core::mtls::trust::TrustedProxy,
        trust: impl Fn() -> Arc<auth_core::mtls::trust::TrustStore> + Send + Sync + 'static,
    ) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.proxy = Some(Arc::new(
            auth_core::mtls::trust::ForwardedCertificates::new(proxy, trust),
        ));
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Lets the standard health checks ([`HEALTH_CHECK`], [`HEALTH_WATCH`]) through without
    /// credentials, as load balancers and orchestrators call them.
    #[must_use]
    pub fn exempt_health(self) -> Self {
        self.exempt([HEALTH_CHECK, HEALTH_WATCH])
    }

    /// Lets server reflection ([`REFLECTION_V1`], [`REFLECTION_V1ALPHA`]) through without
    /// credentials. Reflection describes every service of the server to anyone who asks.
    #[must_use]
    pub fn exempt_reflection(self) -> Self {
        self.exempt([REFLECTION_V1, REFLECTION_V1ALPHA])
    }

    fn exempt<const N: usize>(self, methods: [&str; N]) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        for method in methods {
            shared.policies = shared.policies.exempt(method);
        }
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The gate this layer checks calls with.
    pub fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// The per-method policies.
    pub fn policies(&self) -> &PolicyMap {
        &self.shared.policies
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuthService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Authenticates and authorizes calls before passing them to `S`.
#[derive(Debug, Clone)]
pub struct GrpcAuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> GrpcAuthService<S> {
    /// Wraps `inner` (the same as `GrpcAuthLayer::new(gate, policies).layer(inner)`).
    pub fn new(inner: S, gate: Gate, policies: PolicyMap) -> Self {
        GrpcAuthLayer::new(gate, policies).layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming `self`.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        if shared.policies.is_exempt(req.uri().path()) {
            req.extensions_mut().insert(AuthContext {
                gate: shared.gate.clone(),
            });
            return ResponseFuture::calling(self.inner.call(req), None);
        }
        // The connection's client certificate, if the call came over mutual TLS: inserted by
        // `auth_tower::tls::serve`, or built from tonic's `TlsConnectInfo`.
        crate::tls::attach_peer_certificate(&mut req);
        #[cfg(feature = "mtls")]
        if let Some(proxy) = &shared.proxy
            && req.extensions().get::<PeerCertificate>().is_none()
        {
            let remote = crate::attributes::remote_addr(req.extensions()).map(|a| a.ip());
            match proxy.peer(req.headers(), remote) {
                Ok(Some(peer)) => {
                    req.extensions_mut().insert(peer);
                }
                Ok(None) => {}
                Err(e) => return ResponseFuture::reject(&e, shared, None),
            }
        }
        let peer = req.extensions().get::<PeerCertificate>();
        let presented = WithTarget {
            inner: &WithPeer {
                headers: req.headers(),
                peer,
            },
            target: RequestTarget::from_http(req.method(), req.uri(), peer.is_some()),
        };
        let check = shared.gate.check(&presented);
        match check {
            Check::Ready(Ok(principal)) => {
                let limit = rate_limit_of(principal.as_ref());
                match admit(req, principal, shared) {
                    Ok(req) => ResponseFuture::calling(self.inner.call(req), limit),
                    Err(e) => ResponseFuture::reject(&e, shared, limit),
                }
            }
            Check::Ready(Err(e)) => ResponseFuture::reject(&e, shared, None),
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
                            shared: self.shared.clone(),
                        }),
                    },
                }
            }
        }
    }
}

/// The rate-limit state an authenticated call's answer must carry, boxed so that the response
/// future grows by one pointer only; `None` (no allocation) when no limit applied.
fn rate_limit_of(principal: Option<&Principal>) -> Option<Box<RateLimitStatus>> {
    principal
        .and_then(Principal::rate_limit)
        .copied()
        .map(Box::new)
}

/// Sets the `ratelimit-policy` and `ratelimit` entries of `status`, replacing any already there.
fn insert_rate_limit(headers: &mut HeaderMap, status: &RateLimitStatus) {
    for (name, value) in status.headers() {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

/// Applies the gate-wide and the method's policy to an authenticated caller and leaves the
/// principal in the extensions; lets an anonymous caller (optional-auth gate) through only to
/// methods without a policy.
fn admit<B>(
    mut req: Request<B>,
    principal: Option<Principal>,
    shared: &Shared,
) -> Result<Request<B>, AuthError> {
    let gate = &shared.gate;
    let policy = shared.policies.policy_for(req.uri().path());
    match principal {
        Some(p) => {
            if gate.has_policy() || policy.is_some() {
                let attributes = MetadataAttributes::new(req.headers());
                let ctx = context(&req, &attributes);
                gate.authorize(&p, &ctx)?;
                if let Some(policy) = policy {
                    gate.enforce(&**policy, &p, &ctx)?;
                }
            }
            req.extensions_mut().insert(p);
        }
        None if policy.is_some() => return Err(AuthError::MissingCredentials),
        None => {
            req.extensions_mut()
                .insert(AuthContext { gate: gate.clone() });
        }
    }
    Ok(req)
}

pin_project! {
    /// Response future of [`GrpcAuthService`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

/// The slow path's state, boxed so that the future stays small on the hot path.
struct Pending<S, ReqBody> {
    check: BoxFuture<'static, Result<Option<Principal>, AuthError>>,
    request: Option<Request<ReqBody>>,
    service: S,
    shared: Arc<Shared>,
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
            // The entries to add to the service's response headers, if a limit applied.
            rate_limit: Option<Box<RateLimitStatus>>,
        },
        Rejected {
            response: Option<Box<S::Response>>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    fn calling(future: S::Future, rate_limit: Option<Box<RateLimitStatus>>) -> Self {
        Self {
            state: State::Calling { future, rate_limit },
        }
    }

    fn reject(
        error: &AuthError,
        shared: &Shared,
        rate_limit: Option<Box<RateLimitStatus>>,
    ) -> Self {
        Self {
            state: rejected(error, shared, rate_limit),
        }
    }
}

/// The refusal as a trailers-only gRPC response, with the rate-limit entries of an
/// authenticated caller.
fn rejected<S, ReqBody, ResBody>(
    error: &AuthError,
    shared: &Shared,
    rate_limit: Option<Box<RateLimitStatus>>,
) -> State<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    let mut response = gate_error_status(error, &shared.gate).into_http();
    if let Some(status) = rate_limit {
        insert_rate_limit(response.headers_mut(), &status);
    }
    State::Rejected {
        response: Some(Box::new(response)),
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
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
                        shared,
                    } = &mut **pending;
                    let outcome = ready!(check.as_mut().poll(cx));
                    let req = request.take().expect("future polled after completion");
                    let next = match outcome {
                        Ok(principal) => {
                            let limit = rate_limit_of(principal.as_ref());
                            match admit(req, principal, shared) {
                                Ok(req) => State::Calling {
                                    future: service.call(req),
                                    rate_limit: limit,
                                },
                                Err(e) => rejected(&e, shared, limit),
                            }
                        }
                        Err(e) => rejected(&e, shared, None),
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

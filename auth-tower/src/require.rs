//! [`RequireLayer`]: a route-level [`Policy`] (scopes first), behind an [`AuthLayer`].
//!
//! It reads the [`Principal`] the [`AuthLayer`] inserted: an authenticated caller the policy
//! refuses gets 403 (`insufficient_scope` with the required `scope` in the challenge); a request
//! without a principal (an optional-auth route) gets 401; a route without an `AuthLayer` in front
//! is a server misconfiguration and gets 500.
//!
//! Build it with [`AuthLayer::require`] to challenge with the layer's realm and record denials
//! to the gate's audit sink; a standalone `RequireLayer` leaves the realm out of its 403
//! challenge (RFC 6750 makes it optional) and records to `tracing`.
//!
//! ```
//! use auth_tower::{AuthLayer, RequireLayer};
//! use axum::{Router, routing::get};
//! # fn jwt() -> auth_core::jwt::Jwt {
//! #     let keys = auth_core::keys::KeySet::new(vec![auth_core::keys::VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! #     auth_core::jwt::Jwt::builder().issuer(auth_core::jwt::Issuer::any().keys(keys)).build().unwrap()
//! # }
//!
//! let auth = AuthLayer::jwt(jwt());
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "secret" }).route_layer(auth.require(auth_core::policy::Scopes::all(["admin"]))))
//!     .route("/reports", get(|| async { "numbers" }).route_layer(RequireLayer::any_scope(["reports", "admin"])))
//!     .route("/whoami", get(|| async { "you" }))
//!     .layer(auth);
//! ```
//!
//! [`AuthLayer`]: crate::AuthLayer

use crate::attributes::{HttpAttributes, path_params};
use crate::layer::AuthContext;
use crate::response::error_response;
use auth_core::audit::{AuditSink, TracingAudit};
use auth_core::policy::{Scopes, enforce};
use auth_core::{AuthError, Policy, Principal};
use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Applies [`Require`] to a service.
#[derive(Clone)]
pub struct RequireLayer {
    policy: Arc<dyn Policy>,
    context: Option<AuthContext>,
}

impl fmt::Debug for RequireLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireLayer").finish_non_exhaustive()
    }
}

impl RequireLayer {
    /// Requires `policy`.
    pub fn new(policy: impl Policy) -> Self {
        Self {
            policy: Arc::new(policy),
            context: None,
        }
    }

    pub(crate) fn with_context(mut self, context: AuthContext) -> Self {
        self.context = Some(context);
        self
    }

    /// Requires every one of `scopes`.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Scopes::all(scopes))
    }

    /// Requires at least one of `scopes`.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Scopes::any(scopes))
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Require {
            inner,
            policy: self.policy.clone(),
            context: self.context.clone(),
        }
    }
}

/// Enforces a policy on the principal of each request.
#[derive(Clone)]
pub struct Require<S> {
    inner: S,
    policy: Arc<dyn Policy>,
    context: Option<AuthContext>,
}

impl<S: fmt::Debug> fmt::Debug for Require<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Require")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Require<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let params = path_params(&mut parts);
        let ext = &parts.extensions;
        let verdict = match (ext.get::<Principal>(), ext.get::<AuthContext>()) {
            (Some(p), _) => {
                let (audit, realm): (&dyn AuditSink, &str) = match &self.context {
                    Some(ctx) => (ctx.gate().audit(), ctx.realm()),
                    None => (&TracingAudit, ""),
                };
                let attrs = HttpAttributes::new(&parts, params);
                enforce(&*self.policy, p, &attrs.context(), audit)
                    .map_err(|e| error_response(&e, realm))
            }
            (None, Some(ctx)) => Err(error_response(&AuthError::MissingCredentials, ctx.realm())),
            (None, None) => Err(error_response(
                &AuthError::Misconfigured("RequireLayer used without an AuthLayer in front"),
                "",
            )),
        };
        let req = Request::from_parts(parts, body);
        match verdict {
            Ok(()) => RequireFuture {
                state: RequireState::Call {
                    future: self.inner.call(req),
                },
            },
            Err(response) => RequireFuture {
                state: RequireState::Reject {
                    response: Some(response),
                },
            },
        }
    }
}

pin_project! {
    /// Response future of [`Require`].
    pub struct RequireFuture<F, B> {
        #[pin]
        state: RequireState<F, B>,
    }
}

pin_project! {
    #[project = RequireProj]
    enum RequireState<F, B> {
        Call {
            #[pin]
            future: F,
        },
        Reject {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for RequireFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RequireProj::Call { future } => future.poll(cx),
            RequireProj::Reject { response } => {
                Poll::Ready(Ok(response.take().expect("future polled after completion")))
            }
        }
    }
}

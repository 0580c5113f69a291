//! [`Require`]: a policy (scopes, roles, attribute rules...) on a resource, scope or route,
//! behind an [`AuthMiddleware`].
//!
//! It reads the [`auth_core::Principal`] the [`AuthMiddleware`] inserted: an authenticated
//! caller the policy refuses gets 403 (`insufficient_scope`, with the required `scope` in the
//! challenge for a scope denial); a request without a principal (an optional gate) gets 401; a
//! service without an `AuthMiddleware` in front is a server misconfiguration and gets 500.
//!
//! Build it with [`AuthMiddleware::require`] to challenge with the gate's realm and record
//! decisions to the gate's audit sink; a standalone [`Require::new`] leaves the realm out of its
//! 403 challenge (RFC 6750 makes it optional) and records to `tracing`.
//!
//! The policy sees the request's method, path, peer address and attributes: `header:<name>`,
//! `query:<name>` and `path:<param>`. Path parameters are those actix-web has matched when the
//! middleware runs: wrap the `web::resource` (or `web::scope`) whose pattern names the
//! parameter; on an `App`, nothing is routed yet.
//!
//! ```
//! use actix_web::{App, test, web};
//! use auth_actix::{AuthMiddleware, Require};
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::policy::{Rule, Scopes};
//! # use auth_core::issuer::SigningKey;
//! # use auth_core::keys::KeySet;
//!
//! # #[actix_web::main] async fn main() {
//! # let signer = SigningKey::generate(auth_core::Algorithm::ES256, "k1").unwrap();
//! # let keys = KeySet::from_jwks(&auth_core::issuer::jwks([&signer]).to_string()).unwrap();
//! # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! # let token = signer.sign(&serde_json::json!({"sub": "bob", "scope": "read", "tenant": "acme", "exp": now + 60})).unwrap();
//! let jwt = Jwt::builder().issuer(Issuer::any().keys(keys).tenant_claim("tenant")).build().unwrap();
//! let auth = AuthMiddleware::jwt(jwt);
//! let app = test::init_service(
//!     App::new()
//!         .service(
//!             web::resource("/admin")
//!                 .wrap(auth.require(Scopes::all(["admin"])))
//!                 .route(web::get().to(|| async { "secret" })),
//!         )
//!         .service(
//!             web::resource("/tenants/{tenant}/reports")
//!                 .wrap(auth.require(Rule::tenant_matches("path:tenant")))
//!                 .route(web::get().to(|| async { "numbers" })),
//!         )
//!         .wrap(auth),
//! )
//! .await;
//! let get = |path: &str| {
//!     test::TestRequest::get().uri(path).insert_header(("authorization", format!("Bearer {token}")))
//! };
//!
//! // bob (scope `read`, tenant `acme`) may read acme's reports, not another tenant's,
//! // and is not an admin.
//! let res = test::call_service(&app, get("/tenants/acme/reports").to_request()).await;
//! assert_eq!(res.status(), 200);
//! let res = test::call_service(&app, get("/tenants/globex/reports").to_request()).await;
//! assert_eq!(res.status(), 403);
//! let res = test::call_service(&app, get("/admin").to_request()).await;
//! assert_eq!(res.status(), 403);
//! assert!(res.headers().get("www-authenticate").unwrap().to_str().unwrap().ends_with(r#"scope="admin""#));
//! # }
//! ```
//!
//! [`AuthMiddleware`]: crate::AuthMiddleware
//! [`AuthMiddleware::require`]: crate::AuthMiddleware::require

use crate::attributes::ActixAttributes;
use crate::middleware::AuthContext;
use crate::response::error_response;
use actix_web::HttpMessage as _;
use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpResponse};
use auth_core::audit::{AuditSink, TracingAudit};
use auth_core::policy::{Scopes, enforce};
use auth_core::{AuthError, Policy, Principal};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Enforces a [`Policy`] on the principal of each request: an actix-web [`Transform`], applied
/// with `.wrap(...)` on a `Resource`, `Scope` or `Route` behind an
/// [`AuthMiddleware`](crate::AuthMiddleware).
#[derive(Clone)]
pub struct Require {
    policy: Arc<dyn Policy>,
    context: Option<AuthContext>,
}

impl fmt::Debug for Require {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Require")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Require {
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

impl<S, B> Transform<S, ServiceRequest> for Require
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequireService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireService {
            service,
            policy: Arc::clone(&self.policy),
            context: self.context.clone(),
        }))
    }
}

/// The service [`Require`] wraps around `S`.
pub struct RequireService<S> {
    service: S,
    policy: Arc<dyn Policy>,
    context: Option<AuthContext>,
}

impl<S> fmt::Debug for RequireService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireService")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<S> RequireService<S> {
    /// The answer refusing `req`, or `None` when the policy lets it through.
    fn refusal(&self, req: &ServiceRequest) -> Option<HttpResponse> {
        let ext = req.extensions();
        match (ext.get::<Principal>(), ext.get::<AuthContext>()) {
            (Some(p), _) => {
                let (audit, realm): (&dyn AuditSink, &str) = match &self.context {
                    Some(ctx) => (ctx.gate().audit(), ctx.realm()),
                    None => (&TracingAudit, ""),
                };
                let attrs = ActixAttributes::of_request(req.request());
                enforce(&*self.policy, p, &attrs.context(), audit)
                    .err()
                    .map(|e| error_response(&e, realm))
            }
            (None, Some(ctx)) => Some(error_response(&AuthError::MissingCredentials, ctx.realm())),
            (None, None) => Some(error_response(
                &AuthError::Misconfigured("Require used without an AuthMiddleware in front"),
                "",
            )),
        }
    }
}

impl<S, B> Service<ServiceRequest> for RequireService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = RequireFuture<S>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let state = match self.refusal(&req) {
            None => RequireState::Call {
                future: self.service.call(req),
            },
            Some(response) => RequireState::Reject {
                response: Some(req.into_response(response)),
            },
        };
        RequireFuture { state }
    }
}

pin_project! {
    /// Response future of [`RequireService`].
    pub struct RequireFuture<S>
    where
        S: Service<ServiceRequest>,
    {
        #[pin]
        state: RequireState<S>,
    }
}

impl<S: Service<ServiceRequest>> fmt::Debug for RequireFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireFuture").finish_non_exhaustive()
    }
}

pin_project! {
    #[project = RequireProj]
    enum RequireState<S>
    where
        S: Service<ServiceRequest>,
    {
        Call {
            #[pin]
            future: S::Future,
        },
        Reject {
            response: Option<ServiceResponse>,
        },
    }
}

impl<S, B> Future for RequireFuture<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RequireProj::Call { future } => future
                .poll(cx)
                .map(|res| res.map(ServiceResponse::map_into_left_body)),
            RequireProj::Reject { response } => {
                let response = response.take().expect("future polled after completion");
                Poll::Ready(Ok(response.map_into_right_body()))
            }
        }
    }
}

//! [`PolicyGuard`]: route by what the caller may do.
//!
//! An actix-web [`Guard`] can only say "match" or "no match": a request it does not match is
//! routed elsewhere (another route, a scope's default service, and in the end 404). So a guard
//! **routes**, it never refuses with 403 and records nothing to the audit sink; use
//! [`Require`](crate::Require) to refuse a caller. A guard fits when the same path serves
//! different callers differently, e.g. an admin view and a public view.
//!
//! Guards run while actix-web routes the request, so the [`AuthMiddleware`] must wrap the `App`
//! (or an enclosing scope) for the principal to be there; path parameters are not known yet
//! (`path:<param>` attributes are absent). Without a principal the guard does not match.
//!
//! [`AuthMiddleware`]: crate::AuthMiddleware
//!
//! ```
//! use actix_web::{App, test, web};
//! use auth_actix::{AuthMiddleware, OptionalPrincipal, PolicyGuard};
//! use auth_core::Gate;
//! # fn jwt() -> auth_core::jwt::Jwt {
//! #     let keys = auth_core::keys::KeySet::new(vec![auth_core::keys::VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! #     auth_core::jwt::Jwt::builder().issuer(auth_core::jwt::Issuer::any().keys(keys)).build().unwrap()
//! # }
//!
//! # #[actix_web::main] async fn main() {
//! let gate = Gate::builder(jwt()).optional().build();
//! let app = test::init_service(
//!     App::new()
//!         .service(
//!             web::resource("/report")
//!                 .guard(PolicyGuard::all_scopes(["admin"]))
//!                 .to(|| async { "the full report" }),
//!         )
//!         .route("/report", web::get().to(|_: OptionalPrincipal| async { "the summary" }))
//!         .wrap(AuthMiddleware::new(gate)),
//! )
//! .await;
//!
//! let req = test::TestRequest::get().uri("/report").to_request();
//! let body = test::call_and_read_body(&app, req).await;
//! assert_eq!(body, "the summary");
//! # }
//! ```

use crate::attributes::ActixAttributes;
use actix_web::guard::{Guard, GuardContext};
use auth_core::policy::Scopes;
use auth_core::{Policy, Principal};
use std::fmt;
use std::sync::Arc;

/// Matches requests whose principal satisfies a [`Policy`]; see the [module docs](crate::guard).
#[derive(Clone)]
pub struct PolicyGuard {
    policy: Arc<dyn Policy>,
}

impl fmt::Debug for PolicyGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyGuard").finish_non_exhaustive()
    }
}

impl PolicyGuard {
    /// Matches callers that `policy` allows.
    pub fn new(policy: impl Policy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// Matches callers with every one of `scopes`.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Scopes::all(scopes))
    }

    /// Matches callers with at least one of `scopes`.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Scopes::any(scopes))
    }
}

impl Guard for PolicyGuard {
    fn check(&self, ctx: &GuardContext<'_>) -> bool {
        let ext = ctx.req_data();
        let Some(principal) = ext.get::<Principal>() else {
            return false;
        };
        let attrs = ActixAttributes::of_head(ctx.head());
        self.policy
            .evaluate(principal, &attrs.context())
            .is_allowed()
    }
}

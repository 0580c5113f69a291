//! Access decisions: who may do what, the same in every framework.
//!
//! A [`Policy`] looks at the authenticated [`Principal`] and at a [`RequestContext`] (HTTP
//! method and path, gRPC method or GraphQL field, peer address, the time, and request
//! attributes such as a tenant taken from a path parameter, header, gRPC metadata entry or
//! GraphQL argument) and returns a [`Decision`] that names the rule that decided and why.
//!
//! - [`Scopes`]: all or any of a list of scopes (403 `insufficient_scope` with the `scope`
//!   parameter).
//! - [`Rule`]: attribute rules (ABAC) and role/permission checks (RBAC through [`Roles`]),
//!   combined with `and`/`or`/`not`.
//! - [`PolicySet`]: named allow/deny statements; deny wins, and once any statement exists,
//!   whatever no statement allows is denied. Built in code or loaded from TOML or JSON.
//! - [`PolicyMap`]: a policy per operation (gRPC method path, route) with a default and
//!   exemptions.
//! - Closures `Fn(&Principal, &RequestContext) -> Decision` are policies too.
//!
//! ```
//! use auth_core::policy::{Decision, Policy, RequestContext, Rule, Scopes};
//! use auth_core::{AuthError, AuthMethod, Principal};
//!
//! let reader = Principal::builder("bob", AuthMethod::Jwt).scopes(["read"]).build();
//! let ctx = RequestContext::new().method("GET").path("/admin");
//! let err = Scopes::all(["admin"]).evaluate(&reader, &ctx).into_result().unwrap_err();
//! assert_eq!(err, AuthError::InsufficientScope { required: "admin".into() });
//!
//! let rule = Rule::any_scope(["read"]).and(Rule::method(["GET"]));
//! assert!(rule.evaluate(&reader, &ctx).is_allowed());
//! ```

mod context;
mod map;
mod rbac;
mod rules;
mod set;

pub use context::{AttributeSource, Attributes, RequestContext, query_value};
pub use map::PolicyMap;
pub use rbac::Roles;
pub use rules::{Cidr, Rule, TimeWindow};
pub use set::{Effect, PolicyError, PolicySet, Statement};

use crate::audit::{AuditEvent, AuditSink, Outcome};
use crate::error::AuthError;
use crate::principal::Principal;
use std::borrow::Cow;
use std::sync::Arc;

/// A decision over a principal and a request.
pub trait Policy: Send + Sync + 'static {
    /// Decides.
    fn evaluate(&self, principal: &Principal, request: &RequestContext<'_>) -> Decision;

    /// Decides, as a `Result` (403 on denial).
    ///
    /// # Errors
    ///
    /// The denial as an [`AuthError`].
    fn check(&self, principal: &Principal, request: &RequestContext<'_>) -> Result<(), AuthError> {
        self.evaluate(principal, request).into_result()
    }
}

impl<F> Policy for F
where
    F: Fn(&Principal, &RequestContext<'_>) -> Decision + Send + Sync + 'static,
{
    fn evaluate(&self, principal: &Principal, request: &RequestContext<'_>) -> Decision {
        self(principal, request)
    }
}

impl Policy for Arc<dyn Policy> {
    fn evaluate(&self, principal: &Principal, request: &RequestContext<'_>) -> Decision {
        (**self).evaluate(principal, request)
    }
}

/// What a policy decided, which rule decided it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Decision {
    allowed: bool,
    rule: Option<Arc<str>>,
    reason: Cow<'static, str>,
    /// For a scope denial: the scopes to name in the challenge.
    required_scopes: Option<String>,
}

impl Decision {
    /// Allowed, by `rule` (if named).
    pub fn allow(rule: Option<Arc<str>>) -> Self {
        Self {
            allowed: true,
            rule,
            reason: Cow::Borrowed("allowed"),
            required_scopes: None,
        }
    }

    /// Denied, by `rule` (if named), for `reason` (safe to show to the caller).
    pub fn deny(rule: Option<Arc<str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            allowed: false,
            rule,
            reason: reason.into(),
            required_scopes: None,
        }
    }

    /// Denied for lack of scopes; `required` is sent in the challenge's `scope` parameter.
    pub fn insufficient_scope(rule: Option<Arc<str>>, required: impl Into<String>) -> Self {
        Self {
            allowed: false,
            rule,
            reason: Cow::Borrowed("the token lacks the required scope"),
            required_scopes: Some(required.into()),
        }
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The rule that decided, if named.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// Why (safe to show).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The same decision attributed to `rule` when it names none yet.
    pub fn or_rule(mut self, rule: &Arc<str>) -> Self {
        if self.rule.is_none() {
            self.rule = Some(rule.clone());
        }
        self
    }

    /// The decision as a `Result`: denials become 403 [`AuthError`]s.
    ///
    /// # Errors
    ///
    /// [`AuthError::InsufficientScope`] for a scope denial, [`AuthError::Forbidden`] otherwise.
    pub fn into_result(self) -> Result<(), AuthError> {
        match (self.allowed, self.required_scopes) {
            (true, _) => Ok(()),
            (false, Some(required)) => Err(AuthError::InsufficientScope { required }),
            (false, None) => Err(AuthError::Forbidden {
                reason: self.reason.into_owned(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// Requires all, or any, of a list of scopes.
#[derive(Debug, Clone)]
pub struct Scopes {
    mode: Mode,
    scopes: Vec<String>,
    /// The list as sent in the `scope` challenge parameter.
    joined: String,
}

impl Scopes {
    fn new<I: IntoIterator<Item = S>, S: Into<String>>(mode: Mode, scopes: I) -> Self {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        let joined = scopes.join(" ");
        Self {
            mode,
            scopes,
            joined,
        }
    }

    /// Requires every one of `scopes`.
    pub fn all<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Mode::All, scopes)
    }

    /// Requires at least one of `scopes` (an empty list allows nobody).
    pub fn any<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Mode::Any, scopes)
    }

    pub(crate) fn holds(&self, principal: &Principal) -> bool {
        match self.mode {
            Mode::All => self.scopes.iter().all(|s| principal.has_scope(s)),
            Mode::Any => self.scopes.iter().any(|s| principal.has_scope(s)),
        }
    }
}

impl Policy for Scopes {
    fn evaluate(&self, principal: &Principal, _: &RequestContext<'_>) -> Decision {
        if self.holds(principal) {
            Decision::allow(None)
        } else {
            Decision::insufficient_scope(None, self.joined.clone())
        }
    }
}

/// Applies `policy` and records the decision in `audit` (denials always; allows when the sink
/// wants them), with the rule that decided and the reason.
///
/// # Errors
///
/// The denial as an [`AuthError`].
pub fn enforce(
    policy: &dyn Policy,
    principal: &Principal,
    request: &RequestContext<'_>,
    audit: &dyn AuditSink,
) -> Result<(), AuthError> {
    let decision = policy.evaluate(principal, request);
    let outcome = if decision.is_allowed() {
        Outcome::Allowed
    } else {
        Outcome::Denied
    };
    if audit.enabled(outcome) {
        let reason = if decision.is_allowed() {
            "policy_allowed"
        } else if decision.required_scopes.is_some() {
            "insufficient_scope"
        } else {
            "policy_denied"
        };
        audit.record(&AuditEvent {
            outcome,
            reason,
            method: Some(principal.method()),
            principal: Some(principal),
            latency: None,
            rule: decision.rule(),
            detail: (!decision.is_allowed()).then(|| decision.reason()),
        });
    }
    decision.into_result()
}

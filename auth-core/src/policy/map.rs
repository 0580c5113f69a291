//! [`PolicyMap`]: a policy per operation, with a default and exemptions.

use super::{Decision, Policy, RequestContext};
use crate::principal::Principal;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// Chooses a policy by operation (a gRPC full method path such as `/demo.v1.Demo/Admin`, or any
/// key an adapter puts in [`RequestContext::operation`]), falling back to a default. Exempt
/// operations need no credentials at all (health checks, reflection): adapters ask
/// [`PolicyMap::is_exempt`] before authenticating.
///
/// ```
/// use auth_core::policy::{PolicyMap, Policy, RequestContext, Scopes};
/// use auth_core::{AuthMethod, Principal};
///
/// let map = PolicyMap::new()
///     .route("/demo.v1.Demo/Admin", Scopes::all(["admin"]))
///     .exempt("/grpc.health.v1.Health/Check");
/// let reader = Principal::builder("bob", AuthMethod::Jwt).scopes(["read"]).build();
/// let admin = RequestContext::new().operation("/demo.v1.Demo/Admin");
/// let whoami = RequestContext::new().operation("/demo.v1.Demo/WhoAmI");
/// assert!(!map.evaluate(&reader, &admin).is_allowed());
/// assert!(map.evaluate(&reader, &whoami).is_allowed()); // no default: authenticated is enough
/// assert!(map.is_exempt("/grpc.health.v1.Health/Check"));
/// ```
#[derive(Clone, Default)]
pub struct PolicyMap {
    routes: HashMap<String, Arc<dyn Policy>>,
    default: Option<Arc<dyn Policy>>,
    exempt: HashSet<String>,
}

impl fmt::Debug for PolicyMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyMap")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .field("exempt", &self.exempt)
            .finish()
    }
}

impl PolicyMap {
    /// An empty map: every authenticated request is allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `policy` to `operation`.
    #[must_use]
    pub fn route(mut self, operation: impl Into<String>, policy: impl Policy) -> Self {
        self.routes.insert(operation.into(), Arc::new(policy));
        self
    }

    /// Applies `policy` to operations with no policy of their own.
    #[must_use]
    pub fn default_policy(mut self, policy: impl Policy) -> Self {
        self.default = Some(Arc::new(policy));
        self
    }

    /// Lets `operation` through without credentials.
    #[must_use]
    pub fn exempt(mut self, operation: impl Into<String>) -> Self {
        self.exempt.insert(operation.into());
        self
    }

    /// Whether `operation` needs no credentials.
    pub fn is_exempt(&self, operation: &str) -> bool {
        self.exempt.contains(operation)
    }

    /// The policy for `operation`, if any.
    pub fn policy_for(&self, operation: &str) -> Option<&Arc<dyn Policy>> {
        self.routes.get(operation).or(self.default.as_ref())
    }
}

impl Policy for PolicyMap {
    fn evaluate(&self, principal: &Principal, request: &RequestContext<'_>) -> Decision {
        match request.get_operation().and_then(|op| self.policy_for(op)) {
            Some(p) => p.evaluate(principal, request),
            None => match &self.default {
                Some(p) => p.evaluate(principal, request),
                None => Decision::allow(None),
            },
        }
    }
}

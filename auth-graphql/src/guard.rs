//! Guards for `#[graphql(guard = "...")]`: [`ScopeGuard`], [`RoleGuard`], [`PolicyGuard`].
//!
//! A guard reads the [`Principal`](auth_core::Principal) from the GraphQL request data (see
//! [`principal`](crate::principal)) and applies an `auth-core` policy to it through
//! [`enforce`]:
//!
//! - no principal: `UNAUTHENTICATED` ("authentication is required");
//! - denied: `FORBIDDEN`, with `extensions.scope` naming the missing scopes for a scope policy.
//!
//! Guards go on a field, or on an object (`#[graphql(guard = ...)]` on the `#[Object]` impl or
//! the `SimpleObject` struct) to cover every field that has no guard of its own. They compose
//! with async-graphql's [`GuardExt`](async_graphql::GuardExt): `a.and(b)` (both must allow; the
//! first refusal is the answer) and `a.or(b)` (either; when both refuse, the second refusal is
//! the answer).
//!
//! async-graphql builds the guard expression each time the field resolves, so keep it cheap:
//! a few scope or role names are fine; a policy that is costly to build (a `PolicySet` loaded
//! from a file, a `Roles` hierarchy) belongs in a shared `Arc` given to
//! [`PolicyGuard::shared`].
//!
//! ```
//! use async_graphql::{EmptyMutation, EmptySubscription, GuardExt, Object, Schema};
//! use auth_core::policy::Rule;
//! use auth_core::{AuthMethod, Principal};
//! use auth_graphql::{PolicyGuard, RoleGuard, ScopeGuard};
//!
//! struct Query;
//!
//! #[Object]
//! impl Query {
//!     #[graphql(guard = "ScopeGuard::any([\"reports\", \"admin\"])")]
//!     async fn reports(&self) -> Option<i32> {
//!         Some(42)
//!     }
//!
//!     #[graphql(guard = "RoleGuard::new(\"editor\").or(ScopeGuard::all([\"admin\"]))")]
//!     async fn drafts(&self) -> Option<i32> {
//!         Some(3)
//!     }
//!
//!     /// Operation `Query.tenantUsage`, argument `tenant`: callers of that tenant only.
//!     #[graphql(guard = "PolicyGuard::new(Rule::tenant_matches(\"arg:tenant\")).on::<Self>()")]
//!     async fn tenant_usage(&self, tenant: String) -> Option<i32> {
//!         Some(7)
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
//!     .extension(auth_graphql::PartialResults)
//!     .finish();
//! let alice = Principal::builder("alice", AuthMethod::Jwt)
//!     .scopes(["reports"])
//!     .roles(["editor"])
//!     .tenant("acme")
//!     .build();
//! let query = r#"{ reports drafts mine: tenantUsage(tenant: "acme") theirs: tenantUsage(tenant: "globex") }"#;
//! let res = schema.execute(async_graphql::Request::new(query).data(alice)).await;
//! assert_eq!(res.data.to_string(), "{reports: 42, drafts: 3, mine: 7, theirs: null}");
//! assert_eq!(res.errors.len(), 1);
//! assert_eq!(res.errors[0].extensions.as_ref().unwrap().get("code"), Some(&"FORBIDDEN".into()));
//! # });
//! ```

use crate::resolver::{FieldArguments, enforce};
use async_graphql::{Context, Guard, OutputType, Result};
use auth_core::Policy;
use auth_core::policy::{RequestContext, Rule, Scopes};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Requires all, or any, of a list of scopes ([`Scopes`]). A refusal is `FORBIDDEN` with
/// `extensions.scope` listing the scopes, space-separated.
///
/// ```
/// use auth_graphql::ScopeGuard;
///
/// let _writers = ScopeGuard::all(["docs:read", "docs:write"]);
/// let _readers = ScopeGuard::any(["docs:read", "admin"]);
/// ```
#[derive(Debug, Clone)]
pub struct ScopeGuard(Scopes);

impl ScopeGuard {
    /// Requires every one of `scopes`.
    pub fn all<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self(Scopes::all(scopes))
    }

    /// Requires at least one of `scopes` (an empty list allows nobody).
    pub fn any<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self(Scopes::any(scopes))
    }
}

impl Guard for ScopeGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        enforce(ctx, &self.0, &RequestContext::new()).map(drop)
    }
}

/// Requires a role the principal holds directly ([`Rule::Role`], [`Rule::AnyRole`]). A refusal
/// is `FORBIDDEN`.
///
/// Roles that inherit from others (a [`Roles`](auth_core::policy::Roles) hierarchy) or grant
/// permissions are a [`PolicyGuard`] over a [`PolicySet`](auth_core::policy::PolicySet).
///
/// ```
/// use auth_graphql::RoleGuard;
///
/// let _admins = RoleGuard::new("admin");
/// let _staff = RoleGuard::any(["admin", "support"]);
/// ```
#[derive(Debug, Clone)]
pub struct RoleGuard(Rule);

impl RoleGuard {
    /// Requires `role`.
    pub fn new(role: impl Into<String>) -> Self {
        Self(Rule::role(role))
    }

    /// Requires at least one of `roles` (an empty list allows nobody).
    pub fn any<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self {
        Self(Rule::AnyRole(roles.into_iter().map(Into::into).collect()))
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        enforce(ctx, &self.0, &RequestContext::new()).map(drop)
    }
}

/// Applies any [`Policy`] to the field: rules, role and permission sets, per-operation maps,
/// closures.
///
/// The policy sees a [`RequestContext`] with
/// - the field's arguments as attributes (`arg:<name>`, see [`FieldArguments`]), so that
///   `Rule::tenant_matches("arg:tenant")` compares the caller's tenant with an argument;
/// - the operation `<Type>.<field>` (`Query.admin`, `Mutation.deleteUser`) once the guard knows
///   the type that declares the field: write [`.on::<Self>()`](PolicyGuard::on) in the guard
///   expression (it is expanded inside the object's `impl`, so `Self` is that object and its
///   GraphQL name is used, renames included), or [`.on_type("Query")`](PolicyGuard::on_type).
///   async-graphql's `Context` names the field but not its parent type, and the response path
///   it carries is made of client-chosen aliases, so the crate will not guess. Without a type
///   the context has no operation and `Rule::operation(..)` never holds.
///
/// ```
/// use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
/// use auth_core::policy::{Decision, Policy, RequestContext, Rule};
/// use auth_core::{AuthMethod, Principal};
/// use auth_graphql::PolicyGuard;
/// use std::sync::{Arc, LazyLock};
///
/// // Built once, shared by every resolution.
/// static AUDITORS: LazyLock<Arc<dyn Policy>> = LazyLock::new(|| {
///     Arc::new(Rule::role("auditor").and(Rule::operation("Query.*")))
/// });
///
/// struct Query;
///
/// #[Object]
/// impl Query {
///     #[graphql(guard = "PolicyGuard::shared(AUDITORS.clone()).on::<Self>()")]
///     async fn audit_log(&self) -> Option<Vec<String>> {
///         Some(vec!["alice signed in".into()])
///     }
///
///     /// Any closure over the principal and the request is a policy too.
///     #[graphql(guard = "PolicyGuard::new(|_: &Principal, req: &RequestContext<'_>| {
///         if req.get_operation() == Some(\"Query.whereAmI\") { Decision::allow(None) }
///         else { Decision::deny(None, \"wrong operation\") }
///     }).on::<Self>()")]
///     async fn where_am_i(&self) -> Option<&str> {
///         Some("Query.whereAmI")
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
/// let auditor = Principal::builder("carol", AuthMethod::Jwt).roles(["auditor"]).build();
/// let res = schema
///     .execute(async_graphql::Request::new("{ auditLog whereAmI }").data(auditor))
///     .await;
/// assert!(res.errors.is_empty(), "{:?}", res.errors);
/// # });
/// ```
#[derive(Clone)]
pub struct PolicyGuard {
    policy: Arc<dyn Policy>,
    parent: Option<Cow<'static, str>>,
}

impl fmt::Debug for PolicyGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyGuard")
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl PolicyGuard {
    /// A guard applying `policy`.
    pub fn new(policy: impl Policy) -> Self {
        Self::shared(Arc::new(policy))
    }

    /// A guard applying a shared policy (cheap to build on every resolution).
    pub fn shared(policy: Arc<dyn Policy>) -> Self {
        Self {
            policy,
            parent: None,
        }
    }

    /// Names the operation after `T`, the GraphQL type that declares the guarded field:
    /// `<T's GraphQL name>.<field>`. In a guard expression, write `.on::<Self>()`.
    #[must_use]
    pub fn on<T: OutputType + ?Sized>(self) -> Self {
        self.on_type(T::type_name())
    }

    /// Names the operation after the GraphQL type `type_name`: `<type_name>.<field>`.
    #[must_use]
    pub fn on_type(mut self, type_name: impl Into<Cow<'static, str>>) -> Self {
        self.parent = Some(type_name.into());
        self
    }
}

impl Guard for PolicyGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let arguments = FieldArguments::new(ctx);
        let operation = self
            .parent
            .as_deref()
            .map(|parent| format!("{parent}.{}", arguments.field_name()));
        let mut request = RequestContext::new().attributes(&arguments);
        if let Some(operation) = operation.as_deref() {
            request = request.operation(operation);
        }
        enforce(ctx, &*self.policy, &request).map(drop)
    }
}

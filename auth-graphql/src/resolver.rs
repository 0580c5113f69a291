//! Inside resolvers: the caller ([`principal`]), decisions ([`enforce`]) and the field's
//! arguments as policy attributes ([`FieldArguments`]).
//!
//! The HTTP adapters put the authenticated [`Principal`] into the GraphQL request data (and the
//! [`Gate`] that checked it, whose audit sink then records the decisions taken here). Anything
//! else that executes a schema can do the same with
//! [`Request::data`](async_graphql::Request::data).
//!
//! Guards cover most fields; call these when the decision needs something only the resolver
//! knows, such as the tenant of a record it loaded:
//!
//! ```
//! use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Result, Schema};
//! use auth_core::policy::{RequestContext, Rule};
//! use auth_core::{AuthMethod, Principal};
//!
//! struct Query;
//!
//! #[Object]
//! impl Query {
//!     /// The caller's subject (UNAUTHENTICATED for anonymous callers).
//!     async fn me(&self, ctx: &Context<'_>) -> Result<Option<String>> {
//!         Ok(Some(auth_graphql::principal(ctx)?.subject().to_owned()))
//!     }
//!
//!     /// A document, readable by its own tenant only.
//!     async fn document(&self, ctx: &Context<'_>, id: u32) -> Result<Option<String>> {
//!         let owner = if id == 1 { "acme" } else { "globex" }; // loaded from a store
//!         let attributes = [("owner", owner)];
//!         let request = RequestContext::new()
//!             .operation("Query.document")
//!             .attributes(&attributes);
//!         auth_graphql::enforce(ctx, &Rule::tenant_matches("owner"), &request)?;
//!         Ok(Some(format!("document {id}")))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
//!     .extension(auth_graphql::PartialResults)
//!     .finish();
//! let alice = Principal::builder("alice", AuthMethod::Jwt).tenant("acme").build();
//! let res = schema
//!     .execute(async_graphql::Request::new("{ me a: document(id: 1) b: document(id: 2) }").data(alice))
//!     .await;
//! assert_eq!(res.data.to_string(), r#"{me: "alice", a: "document 1", b: null}"#);
//! let ext = res.errors[0].extensions.as_ref().unwrap();
//! assert_eq!(ext.get("code"), Some(&"FORBIDDEN".into()));
//! # });
//! ```

use crate::error::auth_error;
use async_graphql::context::SelectionField;
use async_graphql::{Context, Error, Name, Value};
use auth_core::audit::TracingAudit;
use auth_core::policy::{AttributeSource, Attributes, Policy, RequestContext};
use auth_core::{AuthError, Gate, Principal};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

/// The authenticated caller of the request being resolved.
///
/// # Errors
///
/// `UNAUTHENTICATED` ([`AuthError::MissingCredentials`]) when the request carries no principal:
/// an anonymous request, or a schema executed without one of this crate's HTTP adapters (or
/// another way of putting the [`Principal`] into the request data).
pub fn principal<'a>(ctx: &Context<'a>) -> Result<&'a Principal, Error> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| auth_error(&AuthError::MissingCredentials))
}

/// Applies `policy` to the caller, with `request` describing the field (build it with
/// [`RequestContext::operation`] and [`FieldArguments`], or with attributes of your own).
///
/// The decision is recorded in the audit sink of the [`Gate`] in the request data (the HTTP
/// adapters put it there), or through `tracing` when there is none.
///
/// # Errors
///
/// `UNAUTHENTICATED` without a principal (see [`principal`]); `FORBIDDEN` when the policy denies,
/// with `extensions.scope` for a scope policy.
pub fn enforce<'a>(
    ctx: &Context<'a>,
    policy: &dyn Policy,
    request: &RequestContext<'_>,
) -> Result<&'a Principal, Error> {
    let principal = principal(ctx)?;
    let decided = match ctx.data_opt::<Gate>() {
        Some(gate) => gate.enforce(policy, principal, request),
        None => auth_core::policy::enforce(policy, principal, request, &TracingAudit),
    };
    match decided {
        Ok(()) => Ok(principal),
        Err(e) => Err(auth_error(&e)),
    }
}

/// The arguments of the field being resolved, as policy [`Attributes`]: `arg:<name>` is the
/// argument `name`, and `arg:<name>.<field>` a field of an input-object argument (any depth).
///
/// Strings and enum values are used as they are; numbers and booleans in their GraphQL text.
/// Variables are resolved. Lists, objects and `null` have no attribute value, and neither has
/// an argument the query leaves out (its schema default is not visible here): rules on them
/// fail, which denies.
///
/// The arguments are read once, on the first `arg:` look-up.
///
/// ```
/// use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Result, Schema};
/// use auth_core::policy::{Attributes, RequestContext};
/// use auth_graphql::FieldArguments;
///
/// struct Query;
///
/// #[Object]
/// impl Query {
///     async fn echo(&self, ctx: &Context<'_>, tenant: String, limit: i32) -> String {
///         let args = FieldArguments::new(ctx);
///         let seen = (args.attribute("arg:tenant"), args.attribute("arg:limit"));
///         format!("{seen:?}")
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
/// let res = schema.execute(r#"{ echo(tenant: "acme", limit: 5) }"#).await;
/// assert_eq!(res.data.to_string(), r#"{echo: "(Some(\"acme\"), Some(\"5\"))"}"#);
/// # });
/// ```
pub struct FieldArguments<'a> {
    field: SelectionField<'a>,
    values: OnceCell<Vec<(Name, Value)>>,
}

impl<'a> FieldArguments<'a> {
    /// The arguments of the field `ctx` resolves.
    pub fn new(ctx: &'a Context<'_>) -> Self {
        Self {
            field: ctx.field(),
            values: OnceCell::new(),
        }
    }

    /// The field's name in the schema (never its alias).
    pub fn field_name(&self) -> &'a str {
        self.field.name()
    }

    fn values(&self) -> &[(Name, Value)] {
        self.values.get_or_init(|| {
            // Resolving can only fail on an undefined variable; async-graphql has already
            // validated the arguments before a guard or resolver runs. Should it fail, the
            // arguments stay unknown and every rule on them denies.
            self.field.arguments().unwrap_or_default()
        })
    }
}

impl fmt::Debug for FieldArguments<'_> {
    // Argument values can hold personal data: name the field only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldArguments")
            .field("field", &self.field.name())
            .finish_non_exhaustive()
    }
}

impl Attributes for FieldArguments<'_> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        let AttributeSource::Arg(path) = AttributeSource::parse(name)? else {
            return None;
        };
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut value = self
            .values()
            .iter()
            .find(|(n, _)| n.as_str() == first)
            .map(|(_, v)| v)?;
        for part in parts {
            value = match value {
                Value::Object(fields) => fields.get(part)?,
                _ => return None,
            };
        }
        scalar_text(value)
    }
}

/// The text of a scalar argument value.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Enum(name) => Some(Cow::Borrowed(name.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Boolean(true) => Some(Cow::Borrowed("true")),
        Value::Boolean(false) => Some(Cow::Borrowed("false")),
        _ => None,
    }
}

//! The GraphQL schema of the examples (served by `example-graphql`, and at `/graphql` by
//! `auth-demo` and `auth-demo-actix`): a public `hello`, `whoami` for any authenticated
//! caller, and `admin`, which needs scope `admin`.

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Object, Result, Schema, SimpleObject,
};
use auth_graphql::{PartialResults, ScopeGuard, principal};

/// The schema type.
pub type DemoSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema, with [`PartialResults`] so that a refused field is `null` while the
/// rest of the query answers.
pub fn build() -> DemoSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .extension(PartialResults)
        .finish()
}

/// The caller, as `whoami` answers.
#[derive(Debug, SimpleObject)]
pub struct Whoami {
    /// The subject (`sub`).
    pub subject: String,
    /// How the caller authenticated (`jwt`, `api_key`, ...).
    pub method: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The caller's roles.
    pub roles: Vec<String>,
    /// The issuer that vouched for the caller.
    pub issuer: Option<String>,
    /// The caller's tenant, when the token names one.
    pub tenant: Option<String>,
    /// When the credential expires (seconds since the Unix epoch).
    pub expires_at: Option<i64>,
}

/// The root query.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query;

#[Object]
impl Query {
    /// A public field: anonymous callers may read it.
    async fn hello(&self) -> &'static str {
        "hello from auth-graphql"
    }

    /// The authenticated caller (`UNAUTHENTICATED` without a valid token).
    async fn whoami(&self, ctx: &Context<'_>) -> Result<Option<Whoami>> {
        let p = principal(ctx)?;
        Ok(Some(Whoami {
            subject: p.subject().to_owned(),
            method: p.method().as_str().to_owned(),
            scopes: p.scopes().to_vec(),
            roles: p.roles().to_vec(),
            issuer: p.issuer().map(str::to_owned),
            tenant: p.tenant().map(str::to_owned),
            expires_at: p.expires_at(),
        }))
    }

    /// Needs the scope `admin` (`FORBIDDEN` otherwise; the field is then `null` and the rest
    /// of the query still answers).
    #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
    async fn admin(&self) -> Option<&'static str> {
        Some("welcome, admin")
    }
}

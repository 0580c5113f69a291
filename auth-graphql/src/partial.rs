//! [`PartialResults`]: a refused (or otherwise failed) nullable field answers `null`, and the
//! rest of the query still answers.
//!
//! That is what the GraphQL specification asks for ("Handling Field Errors": the field
//! returns `null` and the error is added to `errors`), and what makes guards on individual
//! fields useful. async-graphql 7.2 does not quite do it: when a field's guard or resolver
//! fails, the field is *left out* of its parent object, so a client finds neither a value nor
//! a `null` (async-graphql issues #798 and #1532; a fix for guards is proposed upstream in
//! #1820). Add this extension to the schema and a failing field whose type is nullable resolves
//! to `null`, its error still in `errors` with its path. Non-null fields are left to
//! async-graphql.
//!
//! ```
//! use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
//! use auth_graphql::{PartialResults, ScopeGuard};
//!
//! struct Query;
//!
//! #[Object]
//! impl Query {
//!     async fn hello(&self) -> &str {
//!         "hello"
//!     }
//!
//!     #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
//!     async fn admin(&self) -> Option<&str> {
//!         Some("welcome, admin")
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let plain = Schema::new(Query, EmptyMutation, EmptySubscription);
//! let res = plain.execute("{ hello admin }").await;
//! assert_eq!(res.data.to_string(), r#"{hello: "hello"}"#, "admin is left out");
//!
//! let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
//!     .extension(PartialResults)
//!     .finish();
//! let res = schema.execute("{ hello admin }").await;
//! assert_eq!(res.data.to_string(), r#"{hello: "hello", admin: null}"#);
//! assert_eq!(res.errors.len(), 1);
//! assert_eq!(res.errors[0].path.len(), 1, "the error names the field");
//! # });
//! ```

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextResolve, NextSubscribe,
    ResolveInfo,
};
use async_graphql::futures_util::StreamExt as _;
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{Response, ServerError, ServerResult, Value};
use std::sync::{Arc, Mutex, PoisonError};

/// A schema extension: failing nullable fields resolve to `null` (with their error in
/// `errors`) instead of being left out. Add it with `Schema::build(..).extension(PartialResults)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartialResults;

impl ExtensionFactory for PartialResults {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Caught::default())
    }
}

/// One request's extension: the errors of the fields it turned into `null`, until they are
/// added to the response.
#[derive(Default)]
struct Caught {
    errors: Arc<Mutex<Vec<ServerError>>>,
}

fn take(errors: &Mutex<Vec<ServerError>>) -> Vec<ServerError> {
    std::mem::take(&mut *errors.lock().unwrap_or_else(PoisonError::into_inner))
}

// `Extension` is an `async_trait` trait; async-graphql re-exports the macro its trait was
// written with, which keeps the two in step.
#[async_graphql::async_trait::async_trait]
impl Extension for Caught {
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let errors = Arc::clone(&self.errors);
        next.run(ctx, stream)
            .map(move |mut response| {
                response.errors.extend(take(&errors));
                response
            })
            .boxed()
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        response.errors.extend(take(&self.errors));
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let nullable = !info.return_type.ends_with('!');
        match next.run(ctx, info).await {
            Err(error) if nullable => {
                self.errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(error);
                Ok(Some(Value::Null))
            }
            other => other,
        }
    }
}

//! Guards and resolver helpers on a schema executed directly (no HTTP).

#![allow(clippy::unwrap_used)]

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, InputObject, Object, Request, Schema, Value,
};
use auth_core::audit::{AuditEvent, AuditSink, Outcome};
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::{KeySet, VerifyingKey};
use auth_core::policy::{Attributes, Rule};
use auth_core::{AuthError, AuthMethod, Gate, Principal};
use auth_graphql::{FieldArguments, PartialResults, PolicyGuard, ScopeGuard};
use std::sync::{Arc, Mutex};

#[derive(InputObject)]
struct Filter {
    tenant: String,
    limit: Option<i32>,
}

struct Nested;

#[Object]
impl Nested {
    async fn open(&self) -> i32 {
        1
    }

    #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
    async fn closed(&self) -> Option<i32> {
        Some(2)
    }
}

struct Query;

#[Object(name = "Root")]
impl Query {
    async fn nested(&self) -> Option<Nested> {
        Some(Nested)
    }

    /// The operation as the policy sees it, through `on::<Self>()` (a renamed type).
    #[graphql(guard = "PolicyGuard::new(Rule::operation(\"Root.renamed\")).on::<Self>()")]
    async fn renamed(&self) -> Option<bool> {
        Some(true)
    }

    /// Through `on_type`.
    #[graphql(guard = "PolicyGuard::new(Rule::operation(\"Query.named\")).on_type(\"Query\")")]
    async fn named(&self) -> Option<bool> {
        Some(true)
    }

    /// Without a type there is no operation: an operation rule never holds.
    #[graphql(guard = "PolicyGuard::new(Rule::operation(\"*\"))")]
    async fn unnamed(&self) -> Option<bool> {
        Some(true)
    }

    /// A field of an input-object argument.
    #[graphql(guard = "PolicyGuard::new(Rule::tenant_matches(\"arg:filter.tenant\"))")]
    async fn search(&self, filter: Filter) -> Option<i32> {
        filter.limit
    }

    /// What the argument attributes look like.
    async fn echo(
        &self,
        ctx: &Context<'_>,
        text: String,
        number: f64,
        flag: bool,
        list: Vec<i32>,
    ) -> Vec<Option<String>> {
        let _ = (text, number, flag, list);
        let args = FieldArguments::new(ctx);
        [
            "arg:text",
            "arg:number",
            "arg:flag",
            "arg:list",
            "arg:missing",
            "header:text",
        ]
        .iter()
        .map(|name| args.attribute(name).map(|v| v.into_owned()))
        .collect()
    }
}

fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .extension(PartialResults)
        .finish()
}

fn alice() -> Principal {
    Principal::builder("alice", AuthMethod::Jwt)
        .scopes(["read"])
        .tenant("acme")
        .build()
}

fn code(res: &async_graphql::Response, i: usize) -> Option<&Value> {
    res.errors[i].extensions.as_ref().unwrap().get("code")
}

#[tokio::test]
async fn nested_refusals_null_the_field_not_its_parent() {
    let q = "{ nested { open closed } }";
    let res = schema().execute(Request::new(q).data(alice())).await;
    assert_eq!(res.data.to_string(), "{nested: {open: 1, closed: null}}");
    assert_eq!(code(&res, 0), Some(&Value::from("FORBIDDEN")));
    assert_eq!(res.errors[0].path.len(), 2);

    // What async-graphql 7.2 does without the extension: the field is left out. If this starts
    // failing, async-graphql has fixed it and `PartialResults` may go.
    let plain = Schema::new(Query, EmptyMutation, EmptySubscription);
    let res = plain.execute(Request::new(q).data(alice())).await;
    assert_eq!(res.data.to_string(), "{nested: {open: 1}}");
    assert_eq!(res.errors.len(), 1);
}

#[tokio::test]
async fn operations_are_named_after_the_declaring_type() {
    let res = schema()
        .execute(Request::new("{ renamed named unnamed }").data(alice()))
        .await;
    assert_eq!(
        res.data.to_string(),
        "{renamed: true, named: true, unnamed: null}"
    );
    assert_eq!(res.errors.len(), 1);
    assert_eq!(code(&res, 0), Some(&Value::from("FORBIDDEN")));
}

#[tokio::test]
async fn input_object_fields_are_attributes() {
    let q = r#"{ mine: search(filter: {tenant: "acme", limit: 5}) theirs: search(filter: {tenant: "globex"}) }"#;
    let res = schema().execute(Request::new(q).data(alice())).await;
    assert_eq!(res.data.to_string(), "{mine: 5, theirs: null}");
    assert_eq!(code(&res, 0), Some(&Value::from("FORBIDDEN")));
}

#[tokio::test]
async fn argument_values_as_text() {
    let q = r#"{ echo(text: "hi", number: 2.5, flag: true, list: [1, 2]) }"#;
    let res = schema().execute(q).await;
    assert_eq!(
        res.data.to_string(),
        r#"{echo: ["hi", "2.5", "true", null, null, null]}"#
    );
}

#[tokio::test]
async fn errors_carry_the_auth_error_as_their_source() {
    let res = schema().execute("{ nested { closed } }").await;
    let source = res.errors[0].source::<AuthError>();
    assert_eq!(source, Some(&AuthError::MissingCredentials));
    assert_eq!(code(&res, 0), Some(&Value::from("UNAUTHENTICATED")));
}

/// Outcome, reason and subject of one audit event.
type Recorded = (Outcome, String, Option<String>);

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl AuditSink for Recorder {
    fn record(&self, e: &AuditEvent<'_>) {
        self.0.lock().unwrap().push((
            e.outcome,
            e.reason.to_owned(),
            e.principal.map(|p| p.subject().to_owned()),
        ));
    }
}

#[tokio::test]
async fn decisions_go_to_the_gates_audit_sink() {
    let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
    let jwt = Jwt::builder()
        .issuer(Issuer::any().keys(keys))
        .build()
        .unwrap();
    let recorder = Recorder::default();
    let gate = Gate::builder(jwt).audit(recorder.clone()).build();
    let res = schema()
        .execute(
            Request::new("{ nested { open closed } }")
                .data(gate)
                .data(alice()),
        )
        .await;
    assert_eq!(res.errors.len(), 1);
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![(
            Outcome::Denied,
            "insufficient_scope".to_owned(),
            Some("alice".to_owned())
        )]
    );
}

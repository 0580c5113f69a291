//! What the HTTP adapters share: the answer to a GraphQL-over-HTTP request, the request data
//! they add, and the bodies of requests refused before execution. Framework types stay in the
//! adapters.

use crate::error::extension_values;
use async_graphql::indexmap::IndexMap;
use async_graphql::{BatchRequest, BatchResponse, Name, ParseRequestError, Value};
use auth_core::policy::{AttributeSource, Attributes, query_value};
use auth_core::ratelimit::RateLimitStatus;
use auth_core::{AuthError, Gate, Principal};
use std::borrow::Cow;

/// The media type of every body the adapters send (GraphQL-over-HTTP), as async-graphql's own
/// integrations do.
pub(crate) const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The answer to a GraphQL-over-HTTP request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Executed: 200, whatever the field errors.
    Executed(BatchResponse),
    /// Refused by the gate before execution: the outcome table's status and challenge.
    Refused {
        error: AuthError,
        /// `www-authenticate`, `retry-after`, `dpop-nonce`: [`Gate::http_headers`].
        headers: Vec<(&'static str, String)>,
    },
    /// The HTTP request does not hold a GraphQL request (unreadable or oversized body, bad
    /// JSON, bad query string): 4xx with a GraphQL error body.
    Invalid { status: u16, message: String },
}

impl Answer {
    /// A refusal of `error`, challenging with `gate`'s realm.
    pub(crate) fn refused(error: AuthError, gate: &Gate) -> Self {
        let headers = gate.http_headers(&error);
        Self::Refused { error, headers }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::Executed(_) => 200,
            Self::Refused { error, .. } => error.http_status(),
            Self::Invalid { status, .. } => *status,
        }
    }

    /// The error that refused the request before execution, if it was.
    pub(crate) fn auth_error(&self) -> Option<&AuthError> {
        match self {
            Self::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The rate-limit state the answer to an authenticated request carries, if a limit applied.
pub(crate) fn rate_limit_of(principal: Option<&Principal>) -> Option<RateLimitStatus> {
    principal.and_then(Principal::rate_limit).copied()
}

/// A refusal of an authenticated (or anonymous) request: the error and, for an authenticated
/// caller, its rate-limit state.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) error: AuthError,
    pub(crate) rate_limit: Option<RateLimitStatus>,
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        Self {
            error,
            rate_limit: None,
        }
    }
}

/// The answer to a body or query string that does not hold a GraphQL request.
pub(crate) fn invalid(error: &ParseRequestError) -> Answer {
    let status = match error {
        ParseRequestError::PayloadTooLarge => 413,
        _ => 400,
    };
    Answer::Invalid {
        status,
        message: error.to_string(),
    }
}

/// Puts the gate (for the audit sink of guards) and the principal, when there is one, into the
/// data of every request of the batch.
pub(crate) fn admit(
    request: BatchRequest,
    principal: Option<Principal>,
    gate: &Gate,
) -> BatchRequest {
    let request = request.data(gate.clone());
    match principal {
        Some(principal) => request.data(principal),
        None => request,
    }
}

/// `{"errors":[{"message":...,"extensions":{"code":...}}]}`: a GraphQL response for a request
/// refused before execution, so without a `data` entry.
pub(crate) fn refusal_body(error: &AuthError) -> Value {
    let extensions: IndexMap<Name, Value> = extension_values(error)
        .map(|(name, value)| (Name::new(name), value))
        .collect();
    errors_body(error.description(), Some(extensions))
}

/// `{"errors":[{"message":...}]}`.
pub(crate) fn message_body(message: &str) -> Value {
    errors_body(message, None)
}

fn errors_body(message: &str, extensions: Option<IndexMap<Name, Value>>) -> Value {
    let mut entry = IndexMap::with_capacity(2);
    entry.insert(Name::new("message"), Value::from(message));
    if let Some(extensions) = extensions {
        entry.insert(Name::new("extensions"), Value::Object(extensions));
    }
    let mut body = IndexMap::with_capacity(1);
    body.insert(Name::new("errors"), Value::List(vec![Value::Object(entry)]));
    Value::Object(body)
}

/// Request attributes for a gate-wide policy: `header:<name>` and `query:<name>`, the ones an
/// HTTP request has at a GraphQL endpoint (it has no route parameters). Values as sent, like
/// `auth-tower`'s.
pub(crate) struct HttpAttributes<'a, H> {
    /// Looks up the first value of a header, if it is text.
    pub(crate) header: H,
    /// The raw query string.
    pub(crate) query: &'a str,
}

impl<'a, H: Fn(&str) -> Option<&'a str>> Attributes for HttpAttributes<'a, H> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match AttributeSource::parse(name)? {
            AttributeSource::Header(h) => (self.header)(h).map(Cow::Borrowed),
            AttributeSource::Query(q) => query_value(self.query, q).map(Cow::Borrowed),
            _ => None,
        }
    }
}

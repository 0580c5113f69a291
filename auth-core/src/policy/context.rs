//! [`RequestContext`]: what a policy may know about the request besides the principal.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Request-derived values a policy can ask for by name. Adapters implement it over their
/// request; names say where a value comes from:
///
/// | name | value |
/// | --- | --- |
/// | `header:<name>` | an HTTP header (first value) |
/// | `path:<param>` | a route path parameter |
/// | `metadata:<key>` | a gRPC metadata entry |
/// | `arg:<name>` | a GraphQL field argument |
/// | `query:<name>` | a query-string parameter |
pub trait Attributes {
    /// The value of `name`, if the request has it.
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl Attributes for () {
    fn attribute(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
}

impl<S: std::hash::BuildHasher> Attributes for HashMap<String, String, S> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl<const N: usize> Attributes for [(&str, &str); N] {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Cow::Borrowed(*v))
    }
}

impl Attributes for Vec<(String, String)> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Cow::Borrowed(v.as_str()))
    }
}

/// Where a request attribute comes from, parsed from its name (`header:x-tenant` → header
/// `x-tenant`). Adapters match on it to implement [`Attributes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributeSource<'n> {
    /// `header:<name>`: an HTTP header.
    Header(&'n str),
    /// `path:<param>`: a route path parameter.
    Path(&'n str),
    /// `query:<name>`: a query-string parameter.
    Query(&'n str),
    /// `metadata:<key>`: a gRPC metadata entry.
    Metadata(&'n str),
    /// `arg:<name>`: a GraphQL field argument.
    Arg(&'n str),
}

impl<'n> AttributeSource<'n> {
    /// Parses an attribute name; `None` for an unknown prefix.
    pub fn parse(name: &'n str) -> Option<Self> {
        let (kind, key) = name.split_once(':')?;
        Some(match kind {
            "header" => Self::Header(key),
            "path" => Self::Path(key),
            "query" => Self::Query(key),
            "metadata" => Self::Metadata(key),
            "arg" => Self::Arg(key),
            _ => return None,
        })
    }
}

/// The value of `key` in a query string (`a=1&tenant=acme`), as written (not
/// percent-decoded): the one place adapters read `query:<name>` attributes from.
///
/// ```
/// use auth_core::policy::query_value;
/// assert_eq!(query_value("a=1&tenant=acme", "tenant"), Some("acme"));
/// assert_eq!(query_value("tenant", "tenant"), None);
/// ```
pub fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The request as a policy sees it. Adapters fill what their framework knows.
#[derive(Clone, Copy)]
#[must_use]
pub struct RequestContext<'a> {
    method: Option<&'a str>,
    path: Option<&'a str>,
    operation: Option<&'a str>,
    peer: Option<IpAddr>,
    now: Option<i64>,
    attributes: &'a dyn Attributes,
}

impl fmt::Debug for RequestContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("operation", &self.operation)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Default for RequestContext<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> RequestContext<'a> {
    /// An empty context (no request attributes known).
    pub fn new() -> Self {
        Self {
            method: None,
            path: None,
            operation: None,
            peer: None,
            now: None,
            attributes: &(),
        }
    }

    /// Sets the HTTP method (`GET`, ...).
    pub fn method(mut self, method: &'a str) -> Self {
        self.method = Some(method);
        self
    }
    /// Sets the HTTP path (without the query string).
    pub fn path(mut self, path: &'a str) -> Self {
        self.path = Some(path);
        self
    }
    /// Sets the operation: a gRPC method path (`/pkg.Service/Method`) or a GraphQL field
    /// (`Query.admin`).
    pub fn operation(mut self, operation: &'a str) -> Self {
        self.operation = Some(operation);
        self
    }
    /// Sets the peer (client) address.
    pub fn peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }
    /// Fixes the time (seconds since the Unix epoch; default: the system clock).
    pub fn at(mut self, now: i64) -> Self {
        self.now = Some(now);
        self
    }
    /// Sets where request attributes come from.
    pub fn attributes(mut self, attributes: &'a dyn Attributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// The HTTP method, if known.
    pub fn get_method(&self) -> Option<&'a str> {
        self.method
    }
    /// The HTTP path, if known.
    pub fn get_path(&self) -> Option<&'a str> {
        self.path
    }
    /// The operation, if known.
    pub fn get_operation(&self) -> Option<&'a str> {
        self.operation
    }
    /// The peer address, if known.
    pub fn get_peer(&self) -> Option<IpAddr> {
        self.peer
    }
    /// The time of the request, seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        })
    }
    /// A request attribute by name (see [`Attributes`]).
    pub fn attribute(&self, name: &str) -> Option<Cow<'a, str>> {
        self.attributes.attribute(name)
    }
}

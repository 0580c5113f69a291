//! The request as `auth-core` policies see it: a [`RequestContext`] built from a request's
//! [`Parts`], with attributes from headers, the query string and (behind axum's router) path
//! parameters.

use auth_core::policy::{AttributeSource, Attributes, RequestContext, query_value};
use http::request::Parts;
use std::borrow::Cow;
use std::net::SocketAddr;

/// Attribute look-ups over an HTTP request.
pub(crate) struct HttpAttributes<'a> {
    parts: &'a Parts,
    params: Vec<(String, String)>,
}

impl<'a> HttpAttributes<'a> {
    /// Attributes of `parts`; `params` are the route's path parameters, if known.
    pub(crate) fn new(parts: &'a Parts, params: Vec<(String, String)>) -> Self {
        Self { parts, params }
    }

    /// The [`RequestContext`] of the request, reading attributes through `self`.
    pub(crate) fn context(&'a self) -> RequestContext<'a> {
        let parts = self.parts;
        let mut ctx = RequestContext::new()
            .method(parts.method.as_str())
            .path(parts.uri.path())
            .attributes(self);
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            ctx = ctx.peer(addr.ip());
        }
        if let Some(addr) = parts.extensions.get::<SocketAddr>() {
            ctx = ctx.peer(addr.ip());
        }
        ctx
    }
}

impl Attributes for HttpAttributes<'_> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match AttributeSource::parse(name)? {
            AttributeSource::Header(h) => self
                .parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            AttributeSource::Query(q) => self
                .parts
                .uri
                .query()
                .and_then(|query| query_value(query, q))
                .map(Cow::Borrowed),
            AttributeSource::Path(p) => self
                .params
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

/// The route's path parameters, when axum's router matched one (inside route layers).
#[cfg(feature = "axum")]
pub(crate) fn path_params(parts: &mut Parts) -> Vec<(String, String)> {
    use axum::extract::{FromRequestParts, RawPathParams};
    use futures_util::FutureExt as _;
    // `RawPathParams` reads axum's private extension; its extractor is ready at once.
    match RawPathParams::from_request_parts(parts, &()).now_or_never() {
        Some(Ok(params)) => params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Without axum there are no router path parameters.
#[cfg(not(feature = "axum"))]
pub(crate) fn path_params(_: &mut Parts) -> Vec<(String, String)> {
    Vec::new()
}

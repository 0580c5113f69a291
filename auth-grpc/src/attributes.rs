//! The call as `auth-core` policies see it: a [`RequestContext`] with the full method path as the
//! operation, the peer address from tonic's connection info, and metadata entries as attributes.

use auth_core::policy::{AttributeSource, Attributes, RequestContext};
use http::{HeaderMap, Request};
use std::borrow::Cow;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Attribute look-ups over a call's metadata: `metadata:<key>` and `header:<name>` both read
/// the first entry of that name (gRPC metadata is the HTTP/2 header block), as text; binary
/// (`-bin`) entries are given in their base64 form as sent. Other sources have no value.
pub(crate) struct MetadataAttributes<'a> {
    headers: &'a HeaderMap,
}

impl<'a> MetadataAttributes<'a> {
    pub(crate) fn new(headers: &'a HeaderMap) -> Self {
        Self { headers }
    }
}

impl Attributes for MetadataAttributes<'_> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match AttributeSource::parse(name)? {
            AttributeSource::Metadata(key) | AttributeSource::Header(key) => self
                .headers
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            _ => None,
        }
    }
}

/// The [`RequestContext`] of a call: operation, peer and attributes.
pub(crate) fn context<'a, B>(
    req: &'a Request<B>,
    attributes: &'a MetadataAttributes<'a>,
) -> RequestContext<'a> {
    let ctx = RequestContext::new()
        .operation(req.uri().path())
        .attributes(attributes);
    match remote_addr(req.extensions()) {
        Some(addr) => ctx.peer(addr.ip()),
        None => ctx,
    }
}

/// The caller's address from tonic's connection info: under its own TLS it sits next to
/// `TlsConnectInfo`; over `serve_with_incoming` with TLS streams, only inside it.
pub(crate) fn remote_addr(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn metadata_and_header_names_read_the_same_entry() {
        let mut req = Request::new(());
        *req.uri_mut() = "/demo.v1.Demo/WhoAmI".parse().unwrap();
        req.headers_mut()
            .insert("x-tenant", "acme".parse().unwrap());
        req.headers_mut()
            .append("x-tenant", "other".parse().unwrap());
        let attrs = MetadataAttributes::new(req.headers());
        let ctx = context(&req, &attrs);
        assert_eq!(ctx.get_operation(), Some("/demo.v1.Demo/WhoAmI"));
        assert_eq!(ctx.attribute("metadata:x-tenant").as_deref(), Some("acme"));
        assert_eq!(ctx.attribute("header:x-tenant").as_deref(), Some("acme"));
        assert_eq!(ctx.attribute("metadata:x-missing"), None);
        assert_eq!(ctx.attribute("path:x-tenant"), None);
        assert_eq!(ctx.attribute("x-tenant"), None);
        assert_eq!(ctx.get_peer(), None);
    }

    #[test]
    fn peer_comes_from_tonic_connection_info() {
        let mut req = Request::new(());
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some("10.1.2.3:4567".parse().unwrap()),
        });
        let attrs = MetadataAttributes::new(req.headers());
        let ctx = context(&req, &attrs);
        assert_eq!(ctx.get_peer(), Some("10.1.2.3".parse().unwrap()));
    }
}

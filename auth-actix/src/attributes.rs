//! The request as `auth-core` policies see it: a [`RequestContext`] built from an actix-web
//! request head, with attributes from headers, the query string and (once actix's router has
//! matched) path parameters.
//!
//! The peer address is the socket's ([`HttpRequest::peer_addr`]), never a `Forwarded` or
//! `X-Forwarded-For` header, which the caller controls. Query values are compared as sent
//! (not percent-decoded), as in `auth-tower`.
//!
//! ```
//! use actix_web::{App, test, web};
//! use auth_actix::AuthMiddleware;
//! use auth_core::Gate;
//! use auth_core::policy::Rule;
//! # use auth_core::issuer::SigningKey;
//! # use auth_core::keys::KeySet;
//!
//! # #[actix_web::main] async fn main() {
//! # let signer = SigningKey::generate(auth_core::Algorithm::ES256, "k1").unwrap();
//! # let keys = KeySet::from_jwks(&auth_core::issuer::jwks([&signer]).to_string()).unwrap();
//! # let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! # let token = signer.sign(&serde_json::json!({"sub": "bob", "tenant": "acme", "exp": now + 60})).unwrap();
//! # let jwt = auth_core::jwt::Jwt::builder()
//! #     .issuer(auth_core::jwt::Issuer::any().keys(keys).tenant_claim("tenant")).build().unwrap();
//! // A gate-wide policy: the tenant header must name the caller's tenant.
//! let gate = Gate::builder(jwt).policy(Rule::tenant_matches("header:x-tenant-id")).build();
//! let app = test::init_service(
//!     App::new().wrap(AuthMiddleware::new(gate)).route("/", web::get().to(|| async { "hi" })),
//! )
//! .await;
//! let req = |tenant: &str| {
//!     test::TestRequest::get()
//!         .insert_header(("authorization", format!("Bearer {token}")))
//!         .insert_header(("x-tenant-id", tenant))
//!         .to_request()
//! };
//! assert_eq!(test::call_service(&app, req("acme")).await.status(), 200);
//! assert_eq!(test::call_service(&app, req("globex")).await.status(), 403);
//! # }
//! ```

use actix_web::HttpRequest;
use actix_web::dev::{Path, RequestHead, Url};
use auth_core::policy::{AttributeSource, Attributes, RequestContext, query_value};
use std::borrow::Cow;

/// Attribute look-ups over an actix-web request.
pub(crate) struct ActixAttributes<'a> {
    head: &'a RequestHead,
    params: Option<&'a Path<Url>>,
}

impl<'a> ActixAttributes<'a> {
    /// Attributes of a routed request: path parameters are those matched so far.
    pub(crate) fn of_request(req: &'a HttpRequest) -> Self {
        Self {
            head: req.head(),
            params: Some(req.match_info()),
        }
    }

    /// Attributes of a request being routed (guards): no path parameters yet.
    pub(crate) fn of_head(head: &'a RequestHead) -> Self {
        Self { head, params: None }
    }

    /// The [`RequestContext`] of the request, reading attributes through `self`.
    pub(crate) fn context(&'a self) -> RequestContext<'a> {
        let head = self.head;
        let ctx = RequestContext::new()
            .method(head.method.as_str())
            .path(head.uri.path())
            .attributes(self);
        match head.peer_addr {
            Some(addr) => ctx.peer(addr.ip()),
            None => ctx,
        }
    }
}

impl Attributes for ActixAttributes<'_> {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match AttributeSource::parse(name)? {
            AttributeSource::Header(h) => self
                .head
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            AttributeSource::Query(q) => self
                .head
                .uri
                .query()
                .and_then(|query| query_value(query, q))
                .map(Cow::Borrowed),
            AttributeSource::Path(p) => self.params?.get(p).map(Cow::Borrowed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn headers_query_peer_and_method() {
        let req = TestRequest::get()
            .uri("/t/acme/items?tenant=q&x")
            .insert_header(("x-tenant", "h"))
            .peer_addr("192.0.2.7:4000".parse().unwrap_or_else(|_| unreachable!()))
            .to_http_request();
        let attrs = ActixAttributes::of_request(&req);
        let ctx = attrs.context();
        assert_eq!(ctx.get_method(), Some("GET"));
        assert_eq!(ctx.get_path(), Some("/t/acme/items"));
        assert_eq!(
            ctx.get_peer().map(|p| p.to_string()).as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(ctx.attribute("header:x-tenant").as_deref(), Some("h"));
        assert_eq!(ctx.attribute("query:tenant").as_deref(), Some("q"));
        assert_eq!(ctx.attribute("query:x"), None);
        assert_eq!(ctx.attribute("path:tenant"), None, "no route matched");
        assert_eq!(ctx.attribute("arg:tenant"), None);
        assert_eq!(ctx.attribute("tenant"), None);
    }

    #[test]
    fn path_parameters_after_routing() {
        let req = TestRequest::get()
            .uri("/t/acme/items")
            .param("tenant", "acme")
            .to_http_request();
        let attrs = ActixAttributes::of_request(&req);
        assert_eq!(
            attrs.context().attribute("path:tenant").as_deref(),
            Some("acme")
        );
        let head_only = ActixAttributes::of_head(req.head());
        assert_eq!(head_only.context().attribute("path:tenant"), None);
    }
}

//! Outgoing requests (feature `client`): [`ClientCredentialsLayer`] adds
//! `authorization: Bearer <token>` to every request of an HTTP client service, with tokens from
//! an OAuth 2.0 client credentials source ([`ClientCredentials`]), or, for a source that
//! obtains DPoP-bound tokens, `authorization: DPoP <token>` and a `DPoP` proof.
//!
//! - While the source holds a fresh token, [`AddBearer::call`] sets the header and calls the
//!   inner service at once: no await, no allocation beyond the header value.
//! - Otherwise the response future first awaits the token (one request to the token endpoint
//!   for all concurrent callers), then calls the inner service it took over (the one
//!   `poll_ready` prepared, per the `tower::Service` contract).
//! - The header value is marked sensitive (HPACK never indexes it, and `Debug` output of the
//!   request hides it); an `authorization` header already on the request is replaced.
//! - A request for which no token can be had fails with [`AddBearerError::Token`] without being
//!   sent; the inner service's own errors come as [`AddBearerError::Service`]. The error is an
//!   enum so that callers can tell "no token" from "the call failed"; it converts into a
//!   `tower::BoxError` where a boxed error is needed.
//!
//! Start the source's background refresh ([`ClientCredentials::spawn_refresh`]) so that
//! requests never wait for a token after the first one. The layer works with any
//! `tower::Service<http::Request<B>>`, e.g. hyper-util's legacy client:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use auth_core::oauth::{ClientAuth, ClientCredentials};
//! use auth_tower::client::ClientCredentialsLayer;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let source = ClientCredentials::builder(
//!     "https://as.example/token",
//!     ClientAuth::secret_basic("billing-client", "s3cret"),
//! )
//! .scope("invoices:read")
//! .build()?;
//! let _refresh = source.spawn_refresh()?;
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(ClientCredentialsLayer::new(source))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<String>());
//! let request = http::Request::get("http://billing.internal/invoices").body(String::new())?;
//! let response = client.ready().await?.call(request).await?;
//! # drop(response); Ok(()) }
//! ```
//!
//! reqwest is not a `tower::Service` of `http::Request`s; with reqwest, take the token from
//! the source directly (`request.bearer_auth(source.token().await?.secret())`).
//!
//! # DPoP
//!
//! A source built with `ClientCredentialsBuilder::dpop(key)` obtains tokens bound to `key`
//! (RFC 9449). For those the layer sets `authorization: DPoP <token>` and `dpop: <proof>`, a
//! fresh proof signed with the source's key ([`ClientCredentials::dpop_key`]) for this request's
//! method and URL, with the token's hash (`ath`); an existing `dpop` header is replaced. The
//! proof needs the request's absolute URI (scheme and authority, as hyper-util's legacy client
//! needs anyway): a relative one fails with [`AddBearerError::RelativeUri`] without sending.
//!
//! A resource server that requires its own DPoP nonces refuses a request without one (`401`,
//! `use_dpop_nonce`, with a `DPoP-Nonce` header). The layer does **not** retry such a request
//! (a request body cannot be replayed in general) and does not carry resource-server nonces:
//! the refusal reaches the caller as the inner service's response. Token endpoint nonces are
//! handled by the source (one retry, latest nonce kept).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use auth_core::Algorithm;
//! use auth_core::dpop::DpopKey;
//! use auth_core::oauth::{ClientAuth, ClientCredentials};
//! use auth_tower::client::ClientCredentialsLayer;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let source = ClientCredentials::builder(
//!     "https://as.example/token",
//!     ClientAuth::secret_basic("billing-client", "s3cret"),
//! )
//! .dpop(DpopKey::generate(Algorithm::ES256)?)
//! .build()?;
//! let mut client = ServiceBuilder::new()
//!     .layer(ClientCredentialsLayer::new(source))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<String>());
//! // Sent with `authorization: DPoP <token>` and a proof for `GET http://billing.internal/invoices`.
//! let request = http::Request::get("http://billing.internal/invoices").body(String::new())?;
//! let response = client.ready().await?.call(request).await?;
//! # drop(response); Ok(()) }
//! ```

use auth_core::BuildError;
use auth_core::oauth::token_source::TokenType;
use auth_core::oauth::{AccessToken, ClientCredentials, TokenSourceError};
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{Request, Uri};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// Applies [`AddBearer`] to a client service.
#[derive(Clone)]
pub struct ClientCredentialsLayer {
    source: ClientCredentials,
}

impl ClientCredentialsLayer {
    /// A layer taking tokens from `source` (clones share its token and refresh).
    pub fn new(source: ClientCredentials) -> Self {
        Self { source }
    }
}

impl fmt::Debug for ClientCredentialsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsLayer")
            .field("client_id", &self.source.client_id())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ClientCredentialsLayer {
    type Service = AddBearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AddBearer::new(inner, self.source.clone())
    }
}

/// Sets `authorization: Bearer <token>` (or `DPoP <token>` with a `dpop` proof) on each request
/// before passing it to the inner service. See the [module documentation](self).
#[derive(Clone)]
pub struct AddBearer<S> {
    inner: S,
    source: ClientCredentials,
}

impl<S> AddBearer<S> {
    /// Wraps `inner`, taking tokens from `source`.
    pub fn new(inner: S, source: ClientCredentials) -> Self {
        Self { inner, source }
    }

    /// A [`ClientCredentialsLayer`] with `source`.
    pub fn layer(source: ClientCredentials) -> ClientCredentialsLayer {
        ClientCredentialsLayer::new(source)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for AddBearer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddBearer")
            .field("inner", &self.inner)
            .field("client_id", &self.source.client_id())
            .finish_non_exhaustive()
    }
}

/// The error of an [`AddBearer`] service.
#[derive(Debug)]
#[non_exhaustive]
pub enum AddBearerError<E> {
    /// No token could be obtained; the request was not sent.
    Token(TokenSourceError),
    /// The token endpoint issued a token this layer cannot send: a `DPoP` token from a source
    /// without a DPoP key (no proof can be made; build the source with
    /// `ClientCredentialsBuilder::dpop`); the request was not sent.
    UnsupportedTokenType(TokenType),
    /// The token is DPoP-bound and the request URI is not absolute (no scheme or authority),
    /// so no proof can name its URL; the request was not sent.
    RelativeUri,
    /// The DPoP proof could not be made (signing failed); the request was not sent.
    DpopProof(BuildError),
    /// The inner service failed.
    Service(E),
}

impl<E: fmt::Display> fmt::Display for AddBearerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(e) => write!(f, "request not sent: {e}"),
            Self::UnsupportedTokenType(t) => write!(
                f,
                "request not sent: the token endpoint issued a `{t}` token, which this source has no key to prove"
            ),
            Self::RelativeUri => f.write_str(
                "request not sent: a DPoP proof needs the absolute request URI (scheme and authority)",
            ),
            Self::DpopProof(e) => write!(f, "request not sent: DPoP proof: {e}"),
            Self::Service(e) => e.fmt(f),
        }
    }
}

impl<E> std::error::Error for AddBearerError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Token(e) => Some(e),
            Self::UnsupportedTokenType(_) | Self::RelativeUri => None,
            Self::DpopProof(e) => Some(e),
            Self::Service(e) => Some(e),
        }
    }
}

/// The `dpop` header.
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The URL a proof names: scheme, authority (without userinfo) and path; `None` for a relative
/// URI.
fn proof_url(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let host = authority.rsplit('@').next().unwrap_or(authority);
    Some(format!("{scheme}://{host}{}", uri.path()))
}

/// Sets the headers from `token` (and, for a DPoP token, a proof made with `source`'s key).
fn authorize<B, E>(
    req: &mut Request<B>,
    token: &AccessToken,
    source: &ClientCredentials,
) -> Result<(), AddBearerError<E>> {
    match token.token_type() {
        TokenType::Bearer => {}
        TokenType::DPoP => {
            let Some(key) = source.dpop_key() else {
                return Err(AddBearerError::UnsupportedTokenType(TokenType::DPoP));
            };
            let url = proof_url(req.uri()).ok_or(AddBearerError::RelativeUri)?;
            let proof = key
                .proof(req.method().as_str(), &url, Some(token.secret()), None)
                .map_err(AddBearerError::DpopProof)?;
            // A compact JWS (base64url and dots) is always a valid header value.
            let mut value = HeaderValue::try_from(proof).map_err(|_| {
                AddBearerError::DpopProof(BuildError::Invalid(
                    "the DPoP proof is not a valid header value".into(),
                ))
            })?;
            value.set_sensitive(true);
            req.headers_mut().insert(DPOP, value);
        }
        other => return Err(AddBearerError::UnsupportedTokenType(other)),
    }
    // The source only accepts b64token syntax, which is always a valid header value.
    let mut value = HeaderValue::from_str(&token.authorization())
        .map_err(|_| AddBearerError::UnsupportedTokenType(token.token_type()))?;
    value.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

impl<S, B> Service<Request<B>> for AddBearer<S>
where
    S: Service<Request<B>> + Clone,
{
    type Response = S::Response;
    type Error = AddBearerError<S::Error>;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(AddBearerError::Service)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(token) = self.source.cached() {
            let state = match authorize(&mut req, &token, &self.source) {
                Ok(()) => State::Calling {
                    future: self.inner.call(req),
                },
                Err(e) => State::Failed { error: Some(e) },
            };
            return ResponseFuture { state };
        }
        // The ready service goes into the future; a clone (not yet ready) stays here.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        ResponseFuture {
            state: State::Fetching {
                pending: Box::new(Pending {
                    fetch: Box::pin(async move { source.token().await }),
                    request: Some(req),
                    service: ready,
                    source: self.source.clone(),
                }),
            },
        }
    }
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<AccessToken, TokenSourceError>> + Send>>;

/// The slow path's state, boxed so that the hot-path future stays small.
struct Pending<S, B> {
    fetch: TokenFuture,
    request: Option<Request<B>>,
    service: S,
    /// For the DPoP key.
    source: ClientCredentials,
}

pin_project! {
    /// Response future of [`AddBearer`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Fetching {
            pending: Box<Pending<S, B>>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Failed {
            error: Option<AddBearerError<S::Error>>,
        },
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    type Output = Result<S::Response, AddBearerError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Fetching { pending } => {
                    let Pending {
                        fetch,
                        request,
                        service,
                        source,
                    } = &mut **pending;
                    let outcome = ready!(fetch.as_mut().poll(cx));
                    let mut req = request.take().expect("future polled after completion");
                    let next = match outcome
                        .map_err(AddBearerError::Token)
                        .and_then(|token| authorize(&mut req, &token, source))
                    {
                        Ok(()) => State::Calling {
                            future: service.call(req),
                        },
                        Err(e) => State::Failed { error: Some(e) },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future } => {
                    return future.poll(cx).map_err(AddBearerError::Service);
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("future polled after completion")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use auth_core::oauth::ClientAuth;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn future_is_send_and_failure_is_clean() {
        // Nothing listens on port 9 of loopback: the token request fails and the inner service
        // is never called.
        let source = ClientCredentials::builder(
            "http://127.0.0.1:9/token",
            ClientAuth::secret_basic("c", "hunter2"),
        )
        .build()
        .unwrap();
        let inner = tower::service_fn(|_req: Request<String>| async {
            panic!("the inner service must not be called without a token");
            #[allow(unreachable_code)]
            Ok::<_, std::convert::Infallible>(())
        });
        let mut svc = ClientCredentialsLayer::new(source).layer(inner);
        let future = svc.call(Request::new(String::new()));
        assert_send(&future);
        let err = future.await.unwrap_err();
        assert!(matches!(err, AddBearerError::Token(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("request not sent: no access token"),
            "{text}"
        );
        assert!(text.contains("token endpoint unreachable"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn proof_urls_are_absolute_without_userinfo_or_query() {
        let url = |u: &str| proof_url(&u.parse::<Uri>().unwrap());
        assert_eq!(
            url("https://api.example:8443/orders?page=2").as_deref(),
            Some("https://api.example:8443/orders")
        );
        assert_eq!(
            url("http://user:pw@127.0.0.1:9/a/b").as_deref(),
            Some("http://127.0.0.1:9/a/b")
        );
        assert_eq!(url("/orders"), None);
        assert_eq!(url("api.example:443"), None);
    }

    #[tokio::test]
    async fn a_dpop_token_without_a_key_is_not_sent() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A token endpoint that issues a `DPoP` token to a client that sent no proof.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !request.ends_with(b"grant_type=client_credentials") {
                let n = conn.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed early");
                request.extend_from_slice(&chunk[..n]);
            }
            let body = r#"{"access_token":"t","token_type":"DPoP"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(response.as_bytes()).await.unwrap();
        });
        let source = ClientCredentials::builder(url, ClientAuth::secret_basic("c", "s"))
            .build()
            .unwrap();
        let inner = tower::service_fn(|_req: Request<String>| async {
            panic!("the inner service must not be called");
            #[allow(unreachable_code)]
            Ok::<_, std::convert::Infallible>(())
        });
        let mut svc = ClientCredentialsLayer::new(source).layer(inner);
        let err = svc
            .call(
                Request::get("http://api.example/")
                    .body(String::new())
                    .unwrap(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AddBearerError::UnsupportedTokenType(TokenType::DPoP)),
            "{err:?}"
        );
        assert!(err.to_string().contains("no key to prove"), "{err}");
        server.await.unwrap();
    }
}

//! Serving over TLS with client certificates (feature `tls`): [`serve`] accepts TCP
//! connections, completes the rustls handshake, and serves HTTP/1.1 and HTTP/2 on each with
//! hyper, inserting the connection's validated client certificate into every request's
//! extensions as a [`PeerCertificate`] (its SHA-256 thumbprint computed once per connection),
//! where [`AuthLayer`](crate::AuthLayer) finds it: certificate-only requests authenticate with
//! `auth_core::mtls::Mtls`, and certificate-bound tokens (RFC 8705) are checked against it.
//!
//! The `rustls::ServerConfig` decides which client certificates are acceptable (build it with
//! `auth_core::mtls::server::ReloadingTls` to reload CAs, CRLs and the server certificate
//! without a restart). A failed handshake closes that connection only.
//!
//! ```no_run
//! # async fn run(config: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
//! use axum::{Router, routing::get};
//!
//! let app = Router::new().route("/", get(|| async { "hello over mTLS" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! auth_tower::tls::serve(listener, config, app, std::future::pending()).await
//! # }
//! ```

use auth_core::PeerCertificate;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_service::Service;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` over TLS on `listener` until `shutdown` completes (then stops accepting;
/// connections in flight finish on their own tasks).
///
/// Each request carries the connection's client certificate, if it presented one, as a
/// [`PeerCertificate`] extension.
///
/// # Errors
///
/// Only when accepting on the listener fails in a way that is not per-connection; handshake
/// and connection errors are logged (target `auth::tls`) and affect that connection only.
pub async fn serve<S, B>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(target: "auth::tls", error = %e, "accept failed");
                    continue;
                }
                Err(e) => return Err(e),
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(target: "auth::tls", %remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(target: "auth::tls", %remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(PeerCertificate::from_chain);
            let service = WithCertificate { service, peer };
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(
                    TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .await;
            if let Err(e) = served {
                tracing::debug!(target: "auth::tls", %remote, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Errors of `accept` that concern one connection (the listener is fine).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Adds the connection's certificate to each request.
#[derive(Clone)]
struct WithCertificate<S> {
    service: S,
    peer: Option<PeerCertificate>,
}

impl<S, B> Service<Request<Incoming>> for WithCertificate<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(peer) = &self.peer {
            req.extensions_mut().insert(peer.clone());
        }
        self.service.call(req)
    }
}

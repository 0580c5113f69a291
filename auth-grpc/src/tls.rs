//! Mutual TLS with tonic: how the client certificate of a call reaches the gate.
//!
//! [`GrpcAuthLayer`](crate::GrpcAuthLayer) hands the [`Gate`](auth_core::Gate) the call's
//! metadata together with the connection's validated client certificate
//! ([`WithPeer`](auth_core::WithPeer)), so that a call with the certificate alone
//! authenticates with `auth_core::mtls::Mtls` (put it in a [`Chain`](auth_core::Chain) after
//! the token authenticators), a token bound to a certificate (RFC 8705 `cnf.x5t#S256`) is
//! accepted only over a connection with that certificate, and per-method policies can grant by
//! the certificate's identity (`Rule::claim_prefix("spiffe_id", ...)`). It finds the
//! certificate in the request extensions, in this order ([`peer_certificate`]):
//!
//! 1. a [`PeerCertificate`] already there: what `auth_tower::tls::serve` inserts, once per
//!    connection, with its SHA-256 thumbprint computed once;
//! 2. otherwise tonic's `TlsConnectInfo<TcpConnectInfo>`, which tonic's own TLS server
//!    (`Server::builder().tls_config(...)`) and `serve_with_incoming` over
//!    `tokio_rustls::server::TlsStream`s insert into every request: the layer builds the
//!    [`PeerCertificate`] from its leaf certificate. tonic has no per-connection hook, so that
//!    thumbprint is computed **once per call** (a SHA-256 of a certificate of about a
//!    kilobyte: around a microsecond); the layer leaves the result in the extensions of the
//!    calls it checks (not of exempt methods), where handlers find it under the same type in
//!    both cases.
//!
//! # Which server to use
//!
//! tonic's [`ServerTlsConfig`](tonic::transport::ServerTlsConfig) builds its own
//! `rustls::ServerConfig` from a server identity and one client CA bundle; it cannot take a
//! configuration built elsewhere. So `auth_core::mtls::server::ReloadingTls` — CRLs, several
//! CA bundles, and reloading certificates, CAs and CRLs without a restart — does not fit
//! there. To use it, either
//!
//! - serve the tonic routes with `auth_tower::tls::serve` (they are a tower service; feature
//!   `tls` of `auth-tower`), as in the first example below: it accepts, handshakes with the
//!   `ReloadingTls` configuration and serves HTTP/2, with one [`PeerCertificate`] per
//!   connection; or
//! - keep tonic's server and give `serve_with_incoming` a stream of connections that you
//!   accepted and handshook yourself with `tokio_rustls::TlsAcceptor::from(tls.server_config())`
//!   (do the handshakes concurrently, with a timeout: a stream that handshakes one connection
//!   at a time lets one slow client stall every other). tonic then inserts
//!   `TlsConnectInfo` as with its own TLS.
//!
//! With tonic's own TLS the client certificate is validated by tonic's rustls verifier against
//! `client_ca_root` (no CRLs; a restart to change the CA).
//!
//! Policies see the peer address from tonic's connection info, which `auth_tower::tls::serve`
//! does not insert: served that way, a per-method `Rule::source_in` finds no address and does
//! not match.
//!
//! ```no_run
//! use auth_core::mtls::Mtls;
//! use auth_core::mtls::mapping::IdentityMapping;
//! use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
//! use auth_core::policy::{PolicyMap, Rule};
//! use auth_core::{Chain, Gate};
//! use auth_grpc::GrpcAuthService;
//! use std::time::Duration;
//! # fn jwt() -> auth_core::jwt::Jwt { unimplemented!() }
//! # fn routes() -> tonic::service::Routes { tonic::service::Routes::default() }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ReloadingTls::load(
//!     TlsFiles {
//!         cert: "server.pem".into(),
//!         key: "server.key".into(),
//!         client_ca: vec!["clients-ca.pem".into()],
//!         crls: vec!["clients-ca.crl".into()],
//!     },
//!     ClientAuth::Optional, // clients without a certificate may still send a token
//! )?;
//! let _watcher = tls.watch(Duration::from_secs(30)); // picks up rotated files
//!
//! // Tokens first; a call with nothing but its certificate goes to `Mtls`.
//! let mtls = Mtls::builder(IdentityMapping::default()).build();
//! let gate = Gate::builder(Chain::new().with(jwt()).with(mtls)).build();
//! let policies = PolicyMap::new().route(
//!     "/billing.v1.Billing/Charge",
//!     Rule::claim_prefix("spiffe_id", "spiffe://prod.example/service/checkout"),
//! );
//! // `routes()`: e.g. `Routes::new(BillingServer::new(...))`.
//! let service = GrpcAuthService::new(routes(), gate, policies);
//!
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:50051").await?;
//! let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
//! auth_tower::tls::serve(listener, tls.server_config(), service, shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! With tonic's own TLS server (no reloads, no CRLs):
//!
//! ```no_run
//! use auth_core::policy::PolicyMap;
//! use auth_grpc::GrpcAuthLayer;
//! use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
//! # fn gate() -> auth_core::Gate { unimplemented!() }
//! # fn routes() -> tonic::service::Routes { tonic::service::Routes::default() }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ServerTlsConfig::new()
//!     .identity(Identity::from_pem(std::fs::read("server.pem")?, std::fs::read("server.key")?))
//!     .client_ca_root(Certificate::from_pem(std::fs::read("clients-ca.pem")?))
//!     .client_auth_optional(true);
//! Server::builder()
//!     .tls_config(tls)?
//!     .layer(GrpcAuthLayer::new(gate(), PolicyMap::new()))
//!     .add_routes(routes())
//!     .serve("0.0.0.0:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

use auth_core::PeerCertificate;
use http::{Extensions, Request};
use std::borrow::Cow;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The validated client certificate of the connection a call came on, from its extensions: a
/// [`PeerCertificate`] already there (borrowed), or one built from the leaf of tonic's
/// `TlsConnectInfo<TcpConnectInfo>` (owned; this computes its SHA-256). `None` when the call
/// came without a client certificate, or not over TLS.
///
/// For servers that call [`Gate::check`](auth_core::Gate::check) themselves (in an interceptor,
/// say) with [`WithPeer`](auth_core::WithPeer); [`GrpcAuthLayer`](crate::GrpcAuthLayer) does
/// this for every call.
///
/// ```
/// use auth_core::PeerCertificate;
/// use auth_grpc::tls::peer_certificate;
///
/// let mut request = tonic::Request::new(());
/// assert!(peer_certificate(request.extensions()).is_none());
///
/// # let der = b"the leaf certificate, DER".to_vec();
/// request.extensions_mut().insert(PeerCertificate::new(der));
/// assert!(peer_certificate(request.extensions()).is_some());
/// ```
pub fn peer_certificate(extensions: &Extensions) -> Option<Cow<'_, PeerCertificate>> {
    if let Some(peer) = extensions.get::<PeerCertificate>() {
        return Some(Cow::Borrowed(peer));
    }
    let chain = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    PeerCertificate::from_chain(&chain).map(Cow::Owned)
}

/// Makes sure a call over mutual TLS carries its [`PeerCertificate`] extension, building it
/// from tonic's connection info when the server did not insert one.
pub(crate) fn attach_peer_certificate<B>(req: &mut Request<B>) {
    let derived = match peer_certificate(req.extensions()) {
        Some(Cow::Owned(peer)) => Some(peer),
        Some(Cow::Borrowed(_)) | None => None,
    };
    if let Some(peer) = derived {
        req.extensions_mut().insert(peer);
    }
}

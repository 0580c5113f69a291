//! Mutual TLS with actix-web (feature `tls`): the connection's client certificate reaches the
//! core through actix-web's `on_connect` hook.
//!
//! actix-web completes the TLS handshake itself (`HttpServer::listen_rustls_0_23` or
//! `bind_rustls_0_23`), and the `rustls::ServerConfig` decides which client certificates are
//! acceptable: build it with `auth_core::mtls::server::ReloadingTls` to validate them against
//! CA bundles and CRLs that are reloaded without a restart. A certificate that does not chain
//! to a trusted CA fails the handshake; no request is ever made on that connection.
//!
//! [`on_connect`], given to `HttpServer::on_connect`, runs once per connection: it reads the
//! validated leaf certificate and stores it in the connection's data as a [`PeerCertificate`]
//! (its SHA-256 thumbprint computed once, there). [`AuthMiddleware`](crate::AuthMiddleware)
//! reads it from every request of that connection (`HttpRequest::conn_data`) and hands it to
//! the [`Gate`](auth_core::Gate) with the headers ([`WithPeer`](auth_core::WithPeer)), so that
//!
//! - a request with the certificate alone authenticates with `auth_core::mtls::Mtls` (put it in
//!   a [`Chain`](auth_core::Chain) after the token authenticators);
//! - a token bound to a certificate (RFC 8705 `cnf.x5t#S256`) is accepted only over a
//!   connection with that certificate, and refused with `401 invalid_token` otherwise;
//! - policies can grant by the certificate's identity (its SPIFFE ID is the principal's
//!   `spiffe_id` claim, e.g. `Rule::claim_prefix("spiffe_id", "spiffe://prod.example/")`).
//!
//! Handlers can read the certificate too: `req.conn_data::<auth_core::PeerCertificate>()`.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use auth_actix::{AuthMiddleware, Principal};
//! use auth_core::mtls::Mtls;
//! use auth_core::mtls::mapping::IdentityMapping;
//! use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
//! use auth_core::policy::Rule;
//! use auth_core::{Chain, Gate};
//! use std::time::Duration;
//! # fn jwt() -> auth_core::jwt::Jwt { unimplemented!() }
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let tls = ReloadingTls::load(
//!         TlsFiles {
//!             cert: "server.pem".into(),
//!             key: "server.key".into(),
//!             client_ca: vec!["clients-ca.pem".into()],
//!             crls: vec![],
//!         },
//!         // Optional: clients without a certificate may still send a token.
//!         ClientAuth::Optional,
//!     )?;
//!     let _watcher = tls.watch(Duration::from_secs(30)); // picks up rotated files
//!
//!     // Tokens first; a request with nothing but its certificate goes to `Mtls`.
//!     let mtls = Mtls::builder(IdentityMapping::default()).build();
//!     let auth = AuthMiddleware::new(Gate::builder(Chain::new().with(jwt()).with(mtls)).build());
//!     let listener = std::net::TcpListener::bind("0.0.0.0:8443")?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .service(
//!                 web::resource("/billing")
//!                     .wrap(auth.require(Rule::claim_prefix(
//!                         "spiffe_id",
//!                         "spiffe://prod.example/service/billing",
//!                     )))
//!                     .route(web::post().to(|| async { "charged" })),
//!             )
//!             .route(
//!                 "/whoami",
//!                 web::get().to(|p: Principal| async move { p.subject().to_owned() }),
//!             )
//!             .wrap(auth.clone())
//!     })
//!     // Before `listen_*`: actix captures the hook when the listener is added.
//!     .on_connect(auth_actix::tls::on_connect)
//!     // The configuration is cloned; the clone still follows `ReloadingTls` reloads.
//!     .listen_rustls_0_23(listener, (*tls.server_config()).clone())?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! A server that needs its own `on_connect` calls this one from it:
//! `.on_connect(|conn, ext| { auth_actix::tls::on_connect(conn, ext); /* ... */ })`.
//!
//! Only rustls 0.23 connections are read (the version `auth-core` builds its configuration
//! for); over OpenSSL, another rustls version or plain TCP, requests carry no certificate and
//! authenticate with their headers alone.

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use auth_core::PeerCertificate;
use std::any::Any;

/// The `on_connect` hook of an actix-web `HttpServer`: stores the client certificate of a
/// rustls 0.23 connection in the connection's data, where
/// [`AuthMiddleware`](crate::AuthMiddleware) finds it for each request.
///
/// Does nothing for a connection without a client certificate, or of another type (plain TCP,
/// OpenSSL, another rustls version).
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    if let Some(peer) = peer_certificate(connection) {
        data.insert(peer);
    }
}

/// The validated client certificate (the leaf of the chain the handshake accepted) of an
/// actix-web rustls 0.23 connection, as handed to `on_connect`; `None` when the client sent no
/// certificate or the connection is of another type.
pub fn peer_certificate(connection: &dyn Any) -> Option<PeerCertificate> {
    let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() else {
        if !connection.is::<TcpStream>() {
            tracing::debug!(
                target: "auth::tls",
                "on_connect: not a rustls 0.23 connection; client certificates are not read"
            );
        }
        return None;
    };
    let (_, session) = tls.get_ref();
    PeerCertificate::from_chain(session.peer_certificates()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_connections_carry_no_certificate() {
        let mut data = Extensions::new();
        on_connect(&42_u8, &mut data);
        assert!(data.get::<PeerCertificate>().is_none());
        assert!(peer_certificate(&"a string").is_none());
    }
}

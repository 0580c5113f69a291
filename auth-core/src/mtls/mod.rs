//! Client certificates (feature `mtls`): trust stores with CRLs and chain validation
//! ([`trust`]), a rustls server configuration that reloads its files without a restart
//! ([`server`]), the identity a certificate carries ([`identity`]), the rules that turn it
//! into a [`Principal`](crate::Principal) ([`mapping`]), and the [`Mtls`] authenticator.
//!
//! TLS-serving adapters hand the connection's validated leaf certificate to the core as a
//! [`PeerCertificate`](crate::PeerCertificate) (see [`WithPeer`](crate::WithPeer)); the
//! [`Gate`](crate::Gate) then enforces RFC 8705 certificate-bound tokens for every
//! authenticator, and [`Mtls`] authenticates requests that carry no other credential.

mod authenticator;
pub mod identity;
pub mod mapping;
pub mod server;
pub mod trust;

pub use authenticator::{Mtls, MtlsBuilder};

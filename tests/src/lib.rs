//! Shared fixtures for the suite's cross-framework scenarios and conformance tests.
//!
//! - [`fixtures::issuer::TestIssuer`] mints tokens with keys generated at test time (RSA RS256,
//!   EC ES256, Ed25519 EdDSA): no key material is ever committed.
//! - [`fixtures::jwks_server::JwksServer`] serves an issuer's JWKS and OIDC discovery document
//!   over HTTP on a loopback port, counts fetches, and can be made to fail, stall or answer
//!   garbage at run time.
//! - [`fixtures::authz_server::AuthzServer`] is an OAuth 2.0 authorization server on loopback
//!   (client credentials and refresh grants, introspection, revocation, metadata) with test
//!   controls: tokens minted directly, revocation, downtime, delays and request counters.
//!
//! The integration tests in `tests/` use these; other crates' tests may too (this crate is a
//! regular library of the workspace, never published).

pub mod fixtures;
pub mod matrix;
pub mod pki;

pub use fixtures::authz_server::AuthzServer;
pub use fixtures::issuer::TestIssuer;
pub use fixtures::jwks_server::{JwksServer, Mode};

//! Shared pieces of the example binaries: the embedded development issuer, the demo routes'
//! responses, and command-line helpers.
//!
//! The binaries are the product; this library keeps them from repeating each other.

pub mod certs;
pub mod cli;
pub mod dev_issuer;
pub mod duration;
pub mod graphql_demo;
pub mod grpc_demo;
pub mod keys;
pub mod proto;
pub mod routes;
pub mod tokens;

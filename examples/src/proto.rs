//! The demo gRPC service's generated code (`demo.v1.Demo`), compiled from
//! `proto/demo/v1/demo.proto` at build time with `protox`.

/// `demo.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod demo_v1 {
    tonic::include_proto!("demo.v1");
}

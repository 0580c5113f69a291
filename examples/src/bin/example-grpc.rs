//! Run with `cargo run -p auth-examples --bin example-grpc -- --jwks-url URL --issuer ISS --audience AUD`
//! (the defaults trust a local `auth-demo`, so after `cargo run -p auth-examples --bin auth-demo`
//! a bare `cargo run -p auth-examples --bin example-grpc` works).
//!
//! The `demo.v1.Demo` gRPC service behind `auth_grpc::GrpcAuthLayer`: every call needs a bearer
//! token from the trusted issuer; `WhoAmI` answers any caller, `Admin` needs scope `admin`.
//! Refusals are gRPC statuses (`UNAUTHENTICATED`, `PERMISSION_DENIED`) with the RFC 6750
//! challenge in the `www-authenticate` metadata entry.
//!
//! ```text
//! TOKEN=$(cargo run -q -p auth-examples --bin auth-demo -- token --scope "read admin")
//! grpcurl -plaintext -import-path examples/proto -proto demo/v1/demo.proto \
//!     -H "authorization: Bearer $TOKEN" 127.0.0.1:50051 demo.v1.Demo/Admin
//! ```

use auth_core::Gate;
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_examples::grpc_demo::{DemoService, demo_policies};
use auth_examples::proto::demo_v1::demo_server::DemoServer;
use auth_grpc::GrpcAuthLayer;
use clap::Parser;
use std::process::ExitCode;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

#[derive(Parser)]
#[command(
    name = "example-grpc",
    version,
    about = "The demo.v1.Demo gRPC service protected by auth-grpc"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Trust the keys published at this JWKS URL (`http://` only on loopback).
    #[arg(
        long = "jwks-url",
        default_value = "http://127.0.0.1:8080/.well-known/jwks.json"
    )]
    jwks_url: String,
    /// Expected `iss` of tokens.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// Expected `aud` of tokens.
    #[arg(long, default_value = "auth-demo")]
    audience: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("example-grpc: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let jwks = JwksCache::builder(&cli.jwks_url).build()?;
    let jwt = Jwt::builder()
        .issuer(Issuer::new(&cli.issuer).audience(&cli.audience).jwks(jwks))
        .build()?;
    let gate = Gate::builder(jwt).realm("demo").build();

    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!(
        "example-grpc is listening on {} (trusting {} for {})",
        listener.local_addr()?,
        cli.issuer,
        cli.audience
    );
    Server::builder()
        .layer(GrpcAuthLayer::new(gate, demo_policies()))
        .add_service(DemoServer::new(DemoService))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

//! Run with `cargo run -p auth-examples --bin example-axum -- --jwks-url URL --issuer ISS --audience AUD`
//! (the defaults trust a local `auth-demo`, so after `cargo run -p auth-examples --bin auth-demo`
//! a bare `cargo run -p auth-examples --bin example-axum` works).
//!
//! The smallest useful axum API behind `auth_tower::AuthLayer`, trusting an issuer's JWKS:
//! `GET /healthz` (open), `GET /whoami` (any valid token), `GET /admin` (scope `admin`).
//!
//! ```text
//! TOKEN=$(cargo run -q -p auth-examples --bin auth-demo -- token --scope "read admin")
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/admin
//! ```

use auth_core::Gate;
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::policy::Scopes;
use auth_examples::routes;
use auth_tower::{AuthLayer, Principal};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "example-axum",
    version,
    about = "An axum API protected by auth-tower"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("example-axum: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    // The key cache refreshes in the background, so it is built inside the runtime.
    let jwks = JwksCache::builder(&cli.jwks_url).build()?;
    let jwt = Jwt::builder()
        .issuer(Issuer::new(&cli.issuer).audience(&cli.audience).jwks(jwks))
        .build()?;
    let auth = AuthLayer::new(Gate::builder(jwt).realm("example-axum").build());
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { Json(routes::whoami(&p)) }),
        )
        .route(
            "/admin",
            get(|p: Principal| async move { Json(routes::admin(&p)) })
                .route_layer(auth.require(Scopes::all(["admin"]))),
        )
        .layer(auth)
        .route("/healthz", get(|| async { Json(routes::healthz()) }));
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!(
        "example-axum is listening on http://{} (trusting {} for {})",
        listener.local_addr()?,
        cli.issuer,
        cli.audience
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

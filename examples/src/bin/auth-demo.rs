//! `auth-demo`: REST, GraphQL and gRPC APIs on one port, protected by `auth-core`, with an
//! embedded development issuer.
//!
//! Run it with `cargo run -p auth-examples --bin auth-demo` (or `auth-demo serve`), then paste
//! the `curl` line it prints. `auth-demo token --sub alice --scope "read admin" --ttl 15m`
//! prints a token from the same issuer. With `--jwks-url URL --issuer ISS --audience AUD` it
//! trusts an external issuer instead (repeat the three flags for several issuers).
//!
//! On `--listen` (HTTP/1.1 and HTTP/2 cleartext on the same port):
//! - REST: `GET /healthz` (open), `GET /whoami` (any valid token), `GET /admin` (scope
//!   `admin`), and the development issuer's `/.well-known/jwks.json` and
//!   `/.well-known/openid-configuration`;
//! - GraphQL: `POST /graphql` (`hello` is public, `whoami` needs a token, `admin` scope
//!   `admin`);
//! - gRPC: `demo.v1.Demo/WhoAmI` (any valid token) and `demo.v1.Demo/Admin` (scope `admin`).

use auth_core::policy::Scopes;
use auth_examples::cli::{self, Command, Error, ServeArgs};
use auth_examples::grpc_demo::{DemoService, demo_policies};
use auth_examples::proto::demo_v1::demo_server::DemoServer;
use auth_examples::{graphql_demo, routes};
use auth_grpc::GrpcAuthLayer;
use auth_tower::{AuthLayer, Principal};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::Value;
use std::process::ExitCode;
use tower::Layer as _;

#[derive(Parser)]
#[command(
    name = "auth-demo",
    version,
    about = "REST, GraphQL and gRPC APIs protected by auth-core, with a development issuer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::dispatch("auth-demo", cli.command, cli.serve, serve)
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    cli::init_logs(args.log_format);
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

/// The whole application: REST behind `AuthLayer`, GraphQL with its own (optional) gate,
/// gRPC behind `GrpcAuthLayer`, all accepting the same tokens and API keys.
fn app(trust: &cli::Trust, authn: &cli::Authn) -> Router {
    let gate = || authn.gate();
    let auth = AuthLayer::new(gate().build());
    let rest = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/admin",
            get(admin).route_layer(auth.require(Scopes::all(["admin"]))),
        )
        .layer(auth);
    let graphql =
        auth_graphql::axum::GraphQl::new(graphql_demo::build(), gate().optional().build());
    let grpc =
        GrpcAuthLayer::new(gate().build(), demo_policies()).layer(DemoServer::new(DemoService));
    let mut open = Router::new()
        .route("/healthz", get(|| async { Json(routes::healthz()) }))
        .route("/graphql", get(graphql.clone()).post(graphql))
        .route_service("/demo.v1.Demo/{*method}", grpc);
    if let Some(dev) = trust.dev.clone() {
        let discovery = dev.discovery();
        // The JWKS as of each request: keys rotate.
        open = open
            .route(
                "/.well-known/jwks.json",
                get(move || std::future::ready(Json(dev.jwks()))),
            )
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            );
    }
    open.merge(rest)
}

async fn run(args: ServeArgs) -> Result<(), Error> {
    let addr = cli::listen_addr(&args.common.listen)?;
    let trust = cli::trust(&args).await?;
    let tls = cli::tls(&args)?;
    let authn = cli::authenticator(&args, &trust).await?;
    let app = app(&trust, &authn);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, tls = tls.is_some(), "auth-demo listening (REST, GraphQL at /graphql, gRPC demo.v1.Demo)");
    println!(
        "{}",
        cli::banner_for(cli::reachable(local), &trust, Some(&args))?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tls {
        Some(tls) => {
            // Certificates, CAs and CRLs are re-read when their files change; principals
            // cached under the previous trust are then computed again.
            if let Some(mtls) = authn.mtls.clone() {
                tls.on_reload(move || mtls.invalidate());
            }
            let _watch = tls.watch(cli::TLS_RELOAD_EVERY);
            auth_tower::tls::serve(listener, tls.server_config(), app, shutdown).await?;
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    authn.shutdown().await;
    Ok(())
}

async fn whoami(p: Principal) -> Json<Value> {
    Json(routes::whoami(&p))
}

async fn admin(p: Principal) -> Json<Value> {
    Json(routes::admin(&p))
}

//! Run with `cargo run -p auth-examples --bin example-graphql -- --jwks-url URL --issuer ISS --audience AUD`: a GraphQL API on axum whose fields are guarded by `auth-core`.
//!
//! It serves `POST /graphql` and `GET /graphql` (the API) and `GET /` (GraphiQL), on
//! `--listen` (default `127.0.0.1:8000`). Anonymous requests reach public fields; `whoami` needs
//! a valid token and `admin` the scope `admin`. A bad token is answered `401` with an RFC 6750
//! challenge and a GraphQL body whose error has `extensions.code` `UNAUTHENTICATED`.
//!
//! With `auth-demo` as the issuer:
//!
//! ```text
//! cargo run -p auth-examples --bin auth-demo        # listens on 127.0.0.1:8080
//! cargo run -p auth-examples --bin example-graphql -- \
//!     --jwks-url http://127.0.0.1:8080/.well-known/jwks.json \
//!     --issuer http://127.0.0.1:8080 --audience auth-demo
//! TOKEN=$(cargo run -q -p auth-examples --bin auth-demo -- token --scope "read admin")
//! curl -s http://127.0.0.1:8000/graphql -H "Authorization: Bearer $TOKEN" \
//!     -H 'content-type: application/json' \
//!     -d '{"query":"{ hello whoami { subject method scopes } admin }"}'
//! ```

use auth_core::Gate;
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_graphql::axum::GraphQl;
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "example-graphql",
    version,
    about = "A GraphQL API on axum, guarded by auth-core"
)]
struct Cli {
    /// The issuer's JWKS URL (https, or http on a loopback host).
    #[arg(long, env = "EXAMPLE_GRAPHQL_JWKS_URL")]
    jwks_url: String,
    /// Expected `iss` of tokens.
    #[arg(long, env = "EXAMPLE_GRAPHQL_ISSUER")]
    issuer: String,
    /// Expected `aud` of tokens.
    #[arg(long, env = "EXAMPLE_GRAPHQL_AUDIENCE")]
    audience: String,
    /// Address to listen on.
    #[arg(long, env = "EXAMPLE_GRAPHQL_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("example-graphql: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    // The JWKS cache starts fetching in the background, so it is built inside the runtime.
    let jwks = JwksCache::builder(&cli.jwks_url).build()?;
    let jwt = Jwt::builder()
        .issuer(Issuer::new(&cli.issuer).audience(&cli.audience).jwks(jwks))
        .build()?;
    // Optional: anonymous requests reach the public fields; a presented token must be valid.
    let gate = Gate::builder(jwt)
        .optional()
        .realm("example-graphql")
        .build();
    let graphql = GraphQl::new(auth_examples::graphql_demo::build(), gate);
    let graphiql = async_graphql::http::GraphiQLSource::build()
        .endpoint("/graphql")
        .finish();
    let app = Router::new()
        .route("/graphql", get(graphql.clone()).post(graphql))
        .route("/", get(move || async move { Html(graphiql) }));

    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let local = listener.local_addr()?;
    println!(
        "example-graphql is listening on http://{local}/graphql (GraphiQL at http://{local}/), trusting {}",
        cli.issuer
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

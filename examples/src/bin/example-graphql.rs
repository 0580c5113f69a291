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

/// The example's GraphQL schema, ready to be mounted by any axum app (`auth-demo` can serve it
/// at `/graphql` with [`auth_graphql::axum::GraphQl`]).
pub mod schema {
    use async_graphql::{
        Context, EmptyMutation, EmptySubscription, Object, Result, Schema, SimpleObject,
    };
    use auth_graphql::{PartialResults, ScopeGuard, principal};

    /// The schema type.
    pub type DemoSchema = Schema<Query, EmptyMutation, EmptySubscription>;

    /// Builds the schema, with [`PartialResults`] so that a refused field is `null` while the
    /// rest of the query answers.
    pub fn build() -> DemoSchema {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(PartialResults)
            .finish()
    }

    /// The caller, as `whoami` answers.
    #[derive(Debug, SimpleObject)]
    pub struct Whoami {
        /// The subject (`sub`).
        pub subject: String,
        /// How the caller authenticated (`jwt`, `api_key`, ...).
        pub method: String,
        /// The granted scopes.
        pub scopes: Vec<String>,
        /// The caller's roles.
        pub roles: Vec<String>,
        /// The issuer that vouched for the caller.
        pub issuer: Option<String>,
        /// The caller's tenant, when the token names one.
        pub tenant: Option<String>,
        /// When the credential expires (seconds since the Unix epoch).
        pub expires_at: Option<i64>,
    }

    /// The root query.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Query;

    #[Object]
    impl Query {
        /// A public field: anonymous callers may read it.
        async fn hello(&self) -> &'static str {
            "hello from auth-graphql"
        }

        /// The authenticated caller (`UNAUTHENTICATED` without a valid token).
        async fn whoami(&self, ctx: &Context<'_>) -> Result<Option<Whoami>> {
            let p = principal(ctx)?;
            Ok(Some(Whoami {
                subject: p.subject().to_owned(),
                method: p.method().as_str().to_owned(),
                scopes: p.scopes().to_vec(),
                roles: p.roles().to_vec(),
                issuer: p.issuer().map(str::to_owned),
                tenant: p.tenant().map(str::to_owned),
                expires_at: p.expires_at(),
            }))
        }

        /// Needs the scope `admin` (`FORBIDDEN` otherwise; the field is then `null` and the rest
        /// of the query still answers).
        #[graphql(guard = "ScopeGuard::all([\"admin\"])")]
        async fn admin(&self) -> Option<&'static str> {
            Some("welcome, admin")
        }
    }
}

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
    let graphql = GraphQl::new(schema::build(), gate);
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

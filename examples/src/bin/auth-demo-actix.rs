//! `auth-demo-actix`: the `auth-demo` API on actix-web, protected by `auth-core` +
//! `auth-actix`, with the same embedded development issuer, command line and answers.
//!
//! Run it with `cargo run -p auth-examples --bin auth-demo-actix` (or `auth-demo-actix serve`),
//! then paste the `curl` line it prints. `auth-demo-actix token --sub alice --scope "read admin"
//! --ttl 15m` (or `auth-demo token`, with the same `--listen` and `--state-dir`) prints a token
//! from the same issuer. With `--jwks-url URL --issuer ISS --audience AUD` it trusts an
//! external issuer instead (repeat the three flags for several issuers).
//!
//! Routes: `GET /healthz` (open), `GET /whoami` (any valid token), `GET /admin` (scope
//! `admin`), and the development issuer's `/.well-known/jwks.json` and
//! `/.well-known/openid-configuration`.

use actix_web::{App, HttpResponse, HttpServer, Route, guard, web};
use auth_actix::{AuthMiddleware, Principal};
use auth_core::policy::Scopes;
use auth_examples::cli::{self, Command, Error, ServeArgs};
use auth_examples::{graphql_demo, routes};
use clap::Parser;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "auth-demo-actix",
    version,
    about = "An actix-web API protected by auth-core, with a development issuer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::dispatch("auth-demo-actix", cli.command, cli.serve, serve)
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    cli::init_logs(args.log_format);
    // The system's runtime also runs the JWKS caches' background refresh.
    actix_web::rt::System::new().block_on(run(args))
}

async fn run(args: ServeArgs) -> Result<(), Error> {
    let addr = cli::listen_addr(&args.common.listen)?;
    let trust = cli::trust(&args).await?;
    let authn = cli::authenticator(&args, &trust).await?;
    let auth = AuthMiddleware::new(authn.gate().build());
    // GraphQL answers in GraphQL: its handler checks tokens itself, in optional mode, so that
    // anonymous requests reach public fields.
    let graphql =
        auth_graphql::actix::GraphQl::new(graphql_demo::build(), authn.gate().optional().build());
    let admin_only = auth.require(Scopes::all(["admin"]));
    let documents = trust.dev.as_ref().map(|d| (d.clone(), d.discovery()));

    let app = move || {
        let mut app = App::new()
            .route("/healthz", get().to(healthz))
            .service(graphql.clone().resource("/graphql"));
        if let Some((dev, discovery)) = documents.clone() {
            // The JWKS as of each request: keys rotate.
            app = app
                .route(
                    "/.well-known/jwks.json",
                    get().to(move || std::future::ready(web::Json(dev.jwks()))),
                )
                .route(
                    "/.well-known/openid-configuration",
                    get().to(document(discovery)),
                );
        }
        app.service(
            web::resource("/whoami")
                .wrap(auth.clone())
                .route(get().to(whoami)),
        )
        .service(
            // The policy on the route only: other methods get 405, as in auth-demo.
            web::resource("/admin")
                .wrap(auth.clone())
                .route(get().to(admin).wrap(admin_only.clone())),
        )
        // Unknown paths are behind the gate too (401 before 404), as in auth-demo, where the
        // protected router's layer also wraps the fallback.
        .default_service(web::to(HttpResponse::NotFound).wrap(auth.clone()))
    };
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let server = HttpServer::new(app).listen(listener)?.run();
    tracing::info!(%local, "auth-demo-actix listening");
    println!("{}", cli::banner(cli::reachable(local), &trust)?);
    server.await?;
    authn.shutdown().await;
    Ok(())
}

/// A `GET` (and `HEAD`) route, like axum's `get`.
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A handler answering with a fixed JSON document.
fn document(doc: Value) -> impl Fn() -> std::future::Ready<web::Json<Value>> + Clone + 'static {
    move || std::future::ready(web::Json(doc.clone()))
}

async fn healthz() -> web::Json<Value> {
    web::Json(routes::healthz())
}

async fn whoami(p: Principal) -> web::Json<Value> {
    web::Json(routes::whoami(&p))
}

async fn admin(p: Principal) -> web::Json<Value> {
    web::Json(routes::admin(&p))
}

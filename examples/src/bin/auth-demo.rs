//! `auth-demo`: an API protected by `auth-core` + `auth-tower`, with an embedded development
//! issuer.
//!
//! Run it with `cargo run -p auth-examples --bin auth-demo` (or `auth-demo serve`), then paste
//! the `curl` line it prints. `auth-demo token --sub alice --scope "read admin" --ttl 15m`
//! prints a token from the same issuer. With `--jwks-url URL --issuer ISS --audience AUD` it
//! trusts an external issuer instead (repeat the three flags for several issuers).
//!
//! Routes: `GET /healthz` (open), `GET /whoami` (any valid token), `GET /admin` (scope
//! `admin`), and the development issuer's `/.well-known/jwks.json` and
//! `/.well-known/openid-configuration`.

use auth_core::Gate;
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::policy::Scopes;
use auth_examples::dev_issuer::{AUDIENCE, DevIssuer};
use auth_examples::duration::parse_duration;
use auth_tower::{AuthLayer, Principal};
use axum::routing::get;
use axum::{Json, Router};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "auth-demo",
    version,
    about = "An API protected by auth-core, with a development issuer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo API (the default).
    Serve(ServeArgs),
    /// Print a token from the development issuer (stdout holds only the token).
    Token(TokenArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Address to listen on; also names the development issuer (`http://ADDR`).
    #[arg(long, env = "AUTH_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where the development issuer keeps its key.
    #[arg(long, env = "AUTH_DEMO_STATE_DIR", default_value = ".auth-demo")]
    state_dir: PathBuf,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Trust the keys at this JWKS URL instead of the embedded issuer (repeatable; pairs with
    /// --issuer and --audience in order).
    #[arg(long = "jwks-url", env = "AUTH_DEMO_JWKS_URL", value_delimiter = ',')]
    jwks_url: Vec<String>,
    /// Expected `iss` of tokens from the matching --jwks-url.
    #[arg(long, env = "AUTH_DEMO_ISSUER", value_delimiter = ',')]
    issuer: Vec<String>,
    /// Expected `aud` of tokens from the matching --jwks-url (one value applies to all).
    #[arg(long, env = "AUTH_DEMO_AUDIENCE", value_delimiter = ',')]
    audience: Vec<String>,
    /// Log format.
    #[arg(long, env = "AUTH_DEMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Args)]
struct TokenArgs {
    #[command(flatten)]
    common: Common,
    /// Subject of the token.
    #[arg(long, default_value = "alice")]
    sub: String,
    /// Space-separated scopes.
    #[arg(long, default_value = "read")]
    scope: String,
    /// Lifetime, e.g. 30s, 15m, 2h (at most 24h).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    ttl: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(args)) => token(&args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn issuer_id(listen: &str) -> String {
    format!("http://{listen}")
}

fn token(args: &TokenArgs) -> Result<(), Error> {
    if args.ttl > Duration::from_secs(86_400) || args.ttl.is_zero() {
        return Err("--ttl must be between 1s and 24h".into());
    }
    let issuer = DevIssuer::load_or_create(&args.common.state_dir, issuer_id(&args.common.listen))?;
    println!("{}", issuer.mint(&args.sub, &args.scope, args.ttl)?);
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    init_logs(args.log_format);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(args))
}

async fn run(args: ServeArgs) -> Result<(), Error> {
    let addr: SocketAddr = args
        .common
        .listen
        .parse()
        .map_err(|e| format!("--listen {}: {e}", args.common.listen))?;
    let mut app = Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) }));
    let mut dev = None;
    let jwt = if args.jwks_url.is_empty() {
        if !args.issuer.is_empty() || !args.audience.is_empty() {
            return Err("--issuer and --audience go with --jwks-url".into());
        }
        let issuer = Arc::new(DevIssuer::load_or_create(
            &args.common.state_dir,
            issuer_id(&args.common.listen),
        )?);
        let jwks = issuer.jwks();
        let discovery = issuer.discovery();
        app = app
            .route(
                "/.well-known/jwks.json",
                get(move || async move { Json(jwks) }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            );
        let jwt = Jwt::builder()
            .issuer(
                Issuer::new(issuer.issuer())
                    .audience(AUDIENCE)
                    .rfc9068()
                    .keys(issuer.key_set()?),
            )
            .build()?;
        dev = Some(issuer);
        jwt
    } else {
        external_issuers(&args)?
    };
    let auth = AuthLayer::new(Gate::builder(jwt).realm("auth-demo").build());
    let protected = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/admin",
            get(admin).route_layer(auth.require(Scopes::all(["admin"]))),
        )
        .layer(auth);
    let app = app.merge(protected);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let reach = if local.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], local.port()))
    } else {
        local
    };
    tracing::info!(%local, "auth-demo listening");
    match &dev {
        Some(issuer) => {
            let token = issuer.mint("alice", "read admin", Duration::from_secs(900))?;
            println!(
                "auth-demo is listening on http://{reach} (issuer {}). Try:",
                issuer.issuer()
            );
            println!("curl -s -H 'Authorization: Bearer {token}' http://{reach}/whoami");
        }
        None => println!(
            "auth-demo is listening on http://{reach}, trusting {} issuer(s).",
            args.issuer.len()
        ),
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn external_issuers(args: &ServeArgs) -> Result<Jwt, Error> {
    let n = args.jwks_url.len();
    if args.issuer.len() != n {
        return Err(format!(
            "{n} --jwks-url but {} --issuer: give one issuer per JWKS URL",
            args.issuer.len()
        )
        .into());
    }
    if !(args.audience.len() == n || args.audience.len() <= 1) {
        return Err("give one --audience per --jwks-url, or a single one for all".into());
    }
    let mut builder = Jwt::builder();
    for (i, (url, iss)) in args.jwks_url.iter().zip(&args.issuer).enumerate() {
        let mut issuer = Issuer::new(iss).jwks(JwksCache::builder(url).build()?);
        if let Some(aud) = args.audience.get(i).or(args.audience.first()) {
            issuer = issuer.audience(aud);
        }
        builder = builder.issuer(issuer);
    }
    Ok(builder.build()?)
}

async fn whoami(p: Principal) -> Json<Value> {
    Json(json!({
        "subject": p.subject(),
        "method": p.method().as_str(),
        "scopes": p.scopes(),
        "roles": p.roles(),
        "issuer": p.issuer(),
        "tenant": p.tenant(),
        "expires_at": p.expires_at(),
    }))
}

async fn admin(p: Principal) -> Json<Value> {
    Json(json!({"message": "welcome, admin", "subject": p.subject()}))
}

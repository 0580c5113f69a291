//! The command line of the `auth-demo` binaries (`auth-demo` on axum, `auth-demo-actix` on
//! actix-web): the clap arguments, logging, the banner, and the [`Jwt`] verifier built from the
//! arguments (the embedded development issuer, or external issuers' JWKS).
//!
//! Each binary declares its own top-level parser (for its name) around these pieces:
//!
//! ```
//! use auth_examples::cli::{Command, ServeArgs};
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! #[command(name = "auth-demo")]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Option<Command>,
//!     #[command(flatten)]
//!     serve: ServeArgs,
//! }
//!
//! let cli = Cli::parse_from([
//!     "auth-demo", "--listen", "127.0.0.1:0",
//!     "--jwks-url", "https://a.example/jwks,https://b.example/jwks",
//!     "--issuer", "https://a.example", "--issuer", "https://b.example",
//! ]);
//! assert!(cli.command.is_none());
//! assert_eq!(cli.serve.jwks_url.len(), 2);
//! assert_eq!(cli.serve.issuer.len(), 2);
//!
//! let cli = Cli::parse_from(["auth-demo", "token", "--sub", "bob", "--ttl", "5m"]);
//! assert!(matches!(cli.command, Some(Command::Token(ref t)) if t.sub == "bob"));
//! ```

use crate::dev_issuer::{AUDIENCE, DevIssuer, StoreLocation};
use crate::duration::parse_duration;
use auth_core::apikey::ApiKeys;
use auth_core::apikey::redis::{FailMode, RedisLimiter};
use auth_core::apikey::store::KeyStore;
use auth_core::apikey::usage::{UsageFlusher, UsageRecorder};
use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::mtls::Mtls;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::server::{ClientAuth, ReloadingTls, TlsFiles};
use auth_core::oauth::{Introspection, JwtOrOpaque};
use auth_core::revocation::Denylist;
use auth_core::rotation::RotationPolicy;
use auth_core::{Gate, authenticator::GateBuilder};
use clap::{Args, Subcommand, ValueEnum};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The error of the binaries' top-level functions: printed, then exit status 1.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The `realm` of the demo's challenges.
pub const REALM: &str = "auth-demo";

/// The longest lifetime `token` mints.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the demo API (the default).
    Serve(ServeArgs),
    /// Print a token from the development issuer (stdout holds only the token).
    Token(TokenArgs),
    /// Make a development PKI for mutual TLS (a CA, a server and client certificates).
    Certs {
        /// What to do.
        #[command(subcommand)]
        command: crate::certs::CertsCommand,
    },
    /// Manage API keys in the key store.
    Keys {
        /// Where keys are kept.
        #[command(flatten)]
        store: crate::keys::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// Revoke tokens in the denylist shared by every `serve` on the same Redis.
    Tokens {
        /// Where the denylist is kept (`--redis-url`).
        #[command(flatten)]
        store: crate::keys::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::tokens::TokensCommand,
    },
}

/// Arguments of every subcommand.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Address to listen on; also names the development issuer (`http://ADDR`).
    #[arg(long, env = "AUTH_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The state directory: the development issuer's keys are in its `auth.db` unless
    /// --database-url names another store.
    #[arg(long, env = "AUTH_DEMO_STATE_DIR", default_value = ".auth-demo")]
    pub state_dir: PathBuf,
}

/// Arguments of `serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Listen address and state directory.
    #[command(flatten)]
    pub common: Common,
    /// Trust the keys at this JWKS URL instead of the embedded issuer (repeatable; pairs with
    /// --issuer and --audience in order).
    #[arg(long = "jwks-url", env = "AUTH_DEMO_JWKS_URL", value_delimiter = ',')]
    pub jwks_url: Vec<String>,
    /// Expected `iss` of tokens from the matching --jwks-url.
    #[arg(long, env = "AUTH_DEMO_ISSUER", value_delimiter = ',')]
    pub issuer: Vec<String>,
    /// Expected `aud` of tokens from the matching --jwks-url (one value applies to all).
    #[arg(long, env = "AUTH_DEMO_AUDIENCE", value_delimiter = ',')]
    pub audience: Vec<String>,
    /// Accept opaque tokens too, checked at this RFC 7662 introspection endpoint with
    /// --client-id and --client-secret (JWTs stay verified locally); answers are cached
    /// (10 000 tokens, 60 s at most).
    #[arg(long, env = "AUTH_DEMO_INTROSPECTION_URL", requires_all = ["client_id", "client_secret"])]
    pub introspection_url: Option<String>,
    /// This server's client id at the authorization server (--introspection-url).
    #[arg(long, env = "AUTH_DEMO_CLIENT_ID", requires = "introspection_url")]
    pub client_id: Option<String>,
    /// This server's client secret at the authorization server (--introspection-url).
    #[arg(
        long,
        env = "AUTH_DEMO_CLIENT_SECRET",
        requires = "introspection_url",
        hide_env_values = true
    )]
    pub client_secret: Option<Secret>,
    /// Log format.
    #[arg(long, env = "AUTH_DEMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Rotate the development issuer's signing key this often (e.g. 24h, 2s): the next key is
    /// published in /.well-known/jwks.json before it signs, the old one until the tokens it
    /// signed have expired. Off by default (the key is kept). Keys live in the key store
    /// (--database-url), shared by every `serve` using it.
    #[arg(long, env = "AUTH_DEMO_ROTATE_KEYS_EVERY", value_parser = parse_duration)]
    pub rotate_keys_every: Option<Duration>,
    /// The longest lifetime of the development issuer's tokens (`token --ttl` at most this,
    /// recorded with each new key); retired keys stay published this long, plus 60 s.
    #[arg(long, env = "AUTH_DEMO_MAX_TOKEN_TTL", default_value = "24h", value_parser = parse_duration)]
    pub max_token_ttl: Duration,
    /// Where API keys are kept (`sqlite://PATH` or `postgres://...`), and Redis for limits.
    #[command(flatten)]
    pub store: crate::keys::StoreArgs,
    /// How often the API keys' usage counts are written to the store.
    #[arg(long, env = "AUTH_DEMO_USAGE_FLUSH", default_value = "10s", value_parser = parse_duration)]
    pub usage_flush: Duration,
    /// When Redis cannot be reached, let requests through instead of refusing them (503).
    #[arg(long, env = "AUTH_DEMO_RATE_LIMIT_FAIL_OPEN")]
    pub rate_limit_fail_open: bool,
    /// Serve HTTPS with this certificate chain (PEM); goes with --tls-key and --client-ca.
    #[arg(long, env = "AUTH_DEMO_TLS_CERT", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "AUTH_DEMO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates from the CAs in this PEM bundle (repeatable); requests with
    /// one authenticate as `mtls` with the certificate's SPIFFE ID. The files are re-read when
    /// they change, as are --tls-cert, --tls-key and --crl.
    #[arg(
        long = "client-ca",
        env = "AUTH_DEMO_CLIENT_CA",
        value_delimiter = ',',
        requires = "tls_cert"
    )]
    pub client_ca: Vec<PathBuf>,
    /// Certificate revocation lists of the client CAs (PEM or DER; repeatable).
    #[arg(
        long = "crl",
        env = "AUTH_DEMO_CRL",
        value_delimiter = ',',
        requires = "client_ca"
    )]
    pub crl: Vec<PathBuf>,
    /// Refuse TLS connections without a client certificate (by default they may authenticate
    /// with a token or an API key instead).
    #[arg(long, env = "AUTH_DEMO_REQUIRE_CLIENT_CERT", requires = "client_ca")]
    pub require_client_cert: bool,
}

/// A secret command-line value, redacted in `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The introspection authenticator of `--introspection-url`, if given: client_secret_basic
/// authentication, answers cached for 10 000 tokens and at most 60 s.
///
/// # Errors
///
/// When the URL is not acceptable (`https://`, or `http://` on loopback).
pub fn introspection(args: &ServeArgs) -> Result<Option<Introspection>, Error> {
    let (Some(url), Some(id), Some(secret)) = (
        &args.introspection_url,
        &args.client_id,
        &args.client_secret,
    ) else {
        return Ok(None);
    };
    let opaque = Introspection::builder(url)
        .client_auth(auth_core::oauth::ClientAuth::secret_basic(id, &secret.0))
        .cache(10_000, Duration::from_secs(60))
        .build()
        .map_err(|e| format!("--introspection-url: {e}"))?;
    Ok(Some(opaque))
}

/// How often `serve` looks for changed TLS files.
pub const TLS_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The TLS configuration of `serve`, when `--tls-cert` is given (`None`: plain HTTP).
///
/// # Errors
///
/// When a file cannot be read or used (the message names it).
pub fn tls(args: &ServeArgs) -> Result<Option<ReloadingTls>, Error> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.client_ca.clone(),
        crls: args.crl.clone(),
    };
    let client_auth = if args.require_client_cert {
        ClientAuth::Required
    } else {
        ClientAuth::Optional
    };
    Ok(Some(ReloadingTls::load(files, client_auth)?))
}

/// Arguments of `token`.
#[derive(Debug, Args, Clone)]
pub struct TokenArgs {
    /// Listen address (it names the issuer) and state directory.
    #[command(flatten)]
    pub common: Common,
    /// Subject of the token.
    #[arg(long, default_value = "alice")]
    pub sub: String,
    /// Space-separated scopes.
    #[arg(long, default_value = "read")]
    pub scope: String,
    /// Lifetime, e.g. 30s, 15m, 2h (at most 24h).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Bind the token to this client certificate (PEM): it is then accepted only over a TLS
    /// connection presenting that certificate (RFC 8705).
    #[arg(long)]
    pub bind_cert: Option<PathBuf>,
    /// The key store holding the development issuer's keys (`token` does not read
    /// --database-url or `DATABASE_URL`). Default: the store the last `serve` on --state-dir
    /// used, else `sqlite://STATE_DIR/auth.db`.
    #[arg(long, env = "AUTH_DEMO_ISSUER_STORE")]
    pub issuer_store: Option<String>,
    /// With a PostgreSQL --issuer-store: the schema of the key tables (the --database-schema
    /// of that `serve`).
    #[arg(long, env = "AUTH_DEMO_ISSUER_STORE_SCHEMA")]
    pub issuer_store_schema: Option<String>,
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The development issuer's identifier for a listen address: `http://ADDR`, as given (so
/// `auth-demo token` and `auth-demo serve` with the same `--listen` agree).
pub fn issuer_id(listen: &str) -> String {
    format!("http://{listen}")
}

/// Parses `--listen`.
///
/// # Errors
///
/// When `listen` is not `IP:PORT`.
pub fn listen_addr(listen: &str) -> Result<SocketAddr, Error> {
    listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}").into())
}

/// An address a client can reach the server at: loopback for an unspecified listen address.
pub fn reachable(local: SocketAddr) -> SocketAddr {
    if local.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], local.port()))
    } else {
        local
    }
}

/// Mints a token as `token` does (the caller prints it).
///
/// # Errors
///
/// When `--ttl` is out of range (above 24h or the issuer's longest token lifetime), or the
/// issuer's key store cannot be opened or used.
pub fn mint(args: &TokenArgs) -> Result<String, Error> {
    if args.ttl > MAX_TTL || args.ttl.is_zero() {
        return Err("--ttl must be between 1s and 24h".into());
    }
    let binding = match &args.bind_cert {
        Some(path) => Some(certificate_sha256(path)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let state_dir = &args.common.state_dir;
        let store = StoreLocation::for_token(
            args.issuer_store.as_deref(),
            args.issuer_store_schema.as_deref(),
            state_dir,
        )
        .open()
        .await?;
        // Signs with the store's current key; rotating is the business of `serve`.
        let policy = RotationPolicy::never().max_token_lifetime(MAX_TTL);
        let issuer =
            DevIssuer::open(store, state_dir, issuer_id(&args.common.listen), policy).await?;
        issuer
            .mint_bound(&args.sub, &args.scope, args.ttl, binding.as_ref())
            .map_err(|e| format!("--ttl: {e}").into())
    })
}

/// The SHA-256 thumbprint of the first certificate in the PEM file at `path`.
fn certificate_sha256(path: &std::path::Path) -> Result<[u8; 32], Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_file(path)
        .map_err(|e| format!("--bind-cert {}: {e}", path.display()))?;
    Ok(*auth_core::PeerCertificate::new(der.as_ref().to_vec()).sha256())
}

/// Sends `tracing` output (filtered by `RUST_LOG`, default `info`) to stderr in `format`.
pub fn init_logs(format: LogFormat) {
    init_logs_filtered(format, "info");
}

/// Starts logging to stderr with `default` as the filter unless `RUST_LOG` is set.
fn init_logs_filtered(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whom a server trusts: the verifier, and the embedded development issuer when there is no
/// `--jwks-url` (its documents are then served too).
pub struct Trust {
    /// Verifies the tokens.
    pub jwt: Jwt,
    /// The development issuer, when it is the one trusted.
    pub dev: Option<Arc<DevIssuer>>,
    /// How many issuers are trusted.
    pub issuers: usize,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("dev", &self.dev.as_ref().map(|d| d.issuer()))
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

/// Builds what `serve` trusts from its arguments. External issuers' key caches start their
/// background refresh, and so does the development issuer's key rotation: call this inside
/// the server's Tokio runtime.
///
/// # Errors
///
/// When the flags do not pair up, the development issuer's key store cannot be opened, its
/// rotation settings are unusable, or a verifier cannot be built (e.g. a JWKS URL that is
/// not https).
pub async fn trust(args: &ServeArgs) -> Result<Trust, Error> {
    if !args.jwks_url.is_empty() {
        return Ok(Trust {
            jwt: external_issuers(args)?,
            dev: None,
            issuers: args.issuer.len(),
        });
    }
    if !args.issuer.is_empty() || !args.audience.is_empty() {
        return Err("--issuer and --audience go with --jwks-url".into());
    }
    let issuer = Arc::new(dev_issuer(args).await?);
    Ok(Trust {
        jwt: dev_jwt(&issuer)?,
        dev: Some(issuer),
        issuers: 1,
    })
}

/// The development issuer of `serve`: its keys in the key store of `--database-url` (or
/// `<state-dir>/auth.db` by default), rotated every `--rotate-keys-every` if given, and
/// reloaded in the background (so keys another `serve` rotated are seen in time).
///
/// # Errors
///
/// When the key store cannot be opened or the rotation settings are unusable.
pub async fn dev_issuer(args: &ServeArgs) -> Result<DevIssuer, Error> {
    let policy = match args.rotate_keys_every {
        Some(every) => RotationPolicy::every(every),
        None => RotationPolicy::never(),
    }
    .max_token_lifetime(args.max_token_ttl);
    let location = StoreLocation::for_serve(
        &args.store.database_url,
        args.store.database_schema.as_deref(),
        &args.common.state_dir,
    );
    let store = location.open().await?;
    // For `token --state-dir` to sign with these keys.
    location.remember(&args.common.state_dir)?;
    let issuer = DevIssuer::open(
        store,
        &args.common.state_dir,
        issuer_id(&args.common.listen),
        policy,
    )
    .await
    .map_err(|e| format!("{e} (see --rotate-keys-every and --max-token-ttl)"))?;
    // A tick also reloads: a quarter of the rotation interval, at most 10 s.
    let tick = args
        .rotate_keys_every
        .map_or(Duration::from_secs(10), |every| every / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    issuer.spawn(tick);
    Ok(issuer)
}

/// A verifier for the development issuer's tokens: its key ring (next, current and retired
/// keys, reloaded from the store when a token names an unknown key), its `iss`, audience
/// [`AUDIENCE`], and the RFC 9068 access-token profile.
///
/// # Errors
///
/// When the verifier cannot be built.
pub fn dev_jwt(issuer: &DevIssuer) -> Result<Jwt, Error> {
    Ok(Jwt::builder()
        .issuer(
            Issuer::new(issuer.issuer())
                .audience(AUDIENCE)
                .rfc9068()
                .rotating(issuer.rotator().clone()),
        )
        .build()?)
}

/// A verifier for the issuers named by `--jwks-url`, `--issuer` and `--audience`.
///
/// # Errors
///
/// When the flags do not pair up, or a key cache cannot be built (it needs a Tokio runtime).
pub fn external_issuers(args: &ServeArgs) -> Result<Jwt, Error> {
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

/// What `serve` authenticates with, and the tasks that run beside it.
pub struct Authn {
    /// The trusted issuers' tokens and the key store's API keys, side by side.
    pub chain: auth_core::Chain,
    /// The client-certificate authenticator (in `chain` too), with `--client-ca`.
    pub mtls: Option<Mtls>,
    /// The token denylist: shared through Redis with `--redis-url`, this process's own
    /// otherwise.
    pub denylist: Arc<dyn Denylist>,
    flusher: UsageFlusher,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Authn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authn").finish_non_exhaustive()
    }
}

impl Authn {
    /// A gate over [`Authn::chain`] with the demo's realm and the denylist.
    pub fn gate(&self) -> GateBuilder {
        Gate::builder(self.chain.clone())
            .realm(REALM)
            .denylist(self.denylist.clone())
    }

    /// Stops the background tasks, writing the usage counted since the last flush.
    pub async fn shutdown(self) {
        if let Some(listener) = self.listener {
            listener.abort();
        }
        if let Err(e) = self.flusher.shutdown().await {
            tracing::warn!(error = %e, "the last usage counts could not be written");
        }
    }
}

/// What `serve` authenticates with: the trusted issuers' tokens and the key store's API keys
/// (`--database-url`), side by side; limits counted in Redis with `--redis-url` (shared by
/// every `serve` using it), in process otherwise; usage flushed to the store every
/// `--usage-flush`; with PostgreSQL, revocations made anywhere reach this process at once
/// (`LISTEN`/`NOTIFY`). Call it inside the server's runtime.
///
/// # Errors
///
/// When the key store or Redis cannot be reached.
pub async fn authenticator(args: &ServeArgs, trust: &Trust) -> Result<Authn, Error> {
    let postgres = if crate::keys::is_postgres(&args.store.database_url) {
        Some(Arc::new(crate::keys::open_postgres(&args.store).await?))
    } else {
        None
    };
    let store: Arc<dyn KeyStore> = match &postgres {
        Some(pg) => pg.clone(),
        None => crate::keys::open_store(&args.store).await?,
    };
    let recorder = UsageRecorder::new(store.clone());
    let mut keys = ApiKeys::builder(store)
        .prefix(crate::keys::PREFIX)
        .usage(recorder.clone());
    if let Some(redis) = &args.store.redis_url {
        let mode = if args.rate_limit_fail_open {
            FailMode::Open
        } else {
            FailMode::Closed
        };
        let limiter = RedisLimiter::builder(redis)
            .prefix(&args.store.redis_prefix)
            .fail_mode(mode)
            .connect()
            .await
            .map_err(|e| format!("--redis-url: {e}"))?;
        keys = keys.limiter(Arc::new(limiter));
    }
    let keys = keys.build()?;
    let chain = match introspection(args)? {
        Some(opaque) => auth_core::Chain::new().with(JwtOrOpaque::new(trust.jwt.clone(), opaque)),
        None => auth_core::Chain::new().with(trust.jwt.clone()),
    };
    let mut chain = chain.with(keys.clone());
    let mtls = if args.client_ca.is_empty() {
        None
    } else {
        // Default mapping: the SPIFFE ID is the subject, its trust domain the tenant.
        let mtls = Mtls::builder(IdentityMapping::builder().build()?).build();
        chain = chain.with(mtls.clone());
        Some(mtls)
    };
    let listener = match &postgres {
        Some(pg) => {
            let keys = keys.clone();
            Some(pg.listen(move |change| keys.invalidate(&change)).await?)
        }
        None => None,
    };
    Ok(Authn {
        chain,
        mtls,
        denylist: crate::tokens::for_serve(&args.store).await?,
        flusher: recorder.spawn_flusher(args.usage_flush),
        listener,
    })
}

/// Runs the command line of a demo binary: `token`, `keys`, or `serve` (explicit or the
/// default) through the binary's own `serve`; prints an error as `NAME: error` and exits 1.
pub fn dispatch(
    name: &str,
    command: Option<Command>,
    default_serve: ServeArgs,
    serve: fn(ServeArgs) -> Result<(), Error>,
) -> std::process::ExitCode {
    let result = match command {
        Some(Command::Token(args)) => mint(&args).map(|token| println!("{token}")),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Keys { store, command }) => keys(&store, command),
        Some(Command::Tokens { store, command }) => tokens(&store, command),
        Some(Command::Certs { command }) => crate::certs::run(command).map(|out| println!("{out}")),
        None => serve(default_serve),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `tokens` on its own runtime and prints what it answers.
///
/// # Errors
///
/// As [`crate::tokens::run`].
pub fn tokens(
    store: &crate::keys::StoreArgs,
    command: crate::tokens::TokensCommand,
) -> Result<(), Error> {
    init_logs_filtered(LogFormat::Text, "warn,auth::audit=info");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(crate::tokens::run(store, command))?;
    println!("{out}");
    Ok(())
}

/// Runs `keys` on its own runtime and prints what it answers; every change is logged as an
/// audit event on stderr (`auth::audit`).
///
/// # Errors
///
/// As [`crate::keys::run`].
pub fn keys(
    store: &crate::keys::StoreArgs,
    command: crate::keys::KeysCommand,
) -> Result<(), Error> {
    init_logs_filtered(LogFormat::Text, "warn,auth::audit=info");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let store = crate::keys::open_store(store).await?;
        crate::keys::run(store, command).await
    })?;
    println!("{out}");
    Ok(())
}

/// The lines `serve` prints once it listens at `reach`: where, and with the development issuer
/// a `curl` line with a fresh token for `alice` (scopes `read admin`) valid 15 minutes, or the
/// issuer's longest token lifetime if shorter.
///
/// # Errors
///
/// When the token cannot be signed.
pub fn banner(reach: SocketAddr, trust: &Trust) -> Result<String, Error> {
    banner_for(reach, trust, None)
}

/// [`banner`] for a server that may serve HTTPS (`args` with `--tls-cert`): the URLs say
/// `https`, `curl` trusts the first `--client-ca` (the development CA of `certs init` signs
/// the server certificate too), and a third line uses the `client-alpha` certificate found
/// next to that CA, when there is one.
///
/// # Errors
///
/// When the token cannot be signed.
pub fn banner_for(
    reach: SocketAddr,
    trust: &Trust,
    args: Option<&ServeArgs>,
) -> Result<String, Error> {
    let ca = args
        .filter(|a| a.tls_cert.is_some())
        .and_then(|a| a.client_ca.first());
    let (scheme, cacert) = match ca {
        Some(ca) => ("https", format!(" --cacert {}", ca.display())),
        None => ("http", String::new()),
    };
    let mut out = match &trust.dev {
        Some(issuer) => {
            let ttl = Duration::from_secs(900).min(issuer.max_token_lifetime());
            let token = issuer.mint("alice", "read admin", ttl)?;
            format!(
                "auth-demo is listening on {scheme}://{reach} (issuer {}). Try:\n\
                 curl -s{cacert} -H 'Authorization: Bearer {token}' {scheme}://{reach}/whoami",
                issuer.issuer()
            )
        }
        None => format!(
            "auth-demo is listening on {scheme}://{reach}, trusting {} issuer(s).",
            trust.issuers
        ),
    };
    if let Some(dir) = ca.and_then(|ca| ca.parent()) {
        let (cert, key) = (
            dir.join("client-alpha.pem"),
            dir.join("client-alpha-key.pem"),
        );
        if cert.is_file() && key.is_file() {
            out.push_str(&format!(
                "\ncurl -s{cacert} --cert {} --key {} {scheme}://{reach}/whoami",
                cert.display(),
                key.display()
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn serve_args(extra: &[&str]) -> ServeArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let args = ["test", "--listen", "127.0.0.1:0"].iter().chain(extra);
        <Cli as clap::Parser>::try_parse_from(args).unwrap().serve
    }

    #[tokio::test]
    async fn external_issuer_flags_must_pair_up() {
        let err = trust(&serve_args(&[
            "--jwks-url",
            "https://a.example/jwks,https://b.example/jwks",
            "--issuer",
            "https://a.example",
        ]))
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 --jwks-url but 1 --issuer: give one issuer per JWKS URL"
        );
        let err = trust(&serve_args(&["--issuer", "https://a.example"]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--issuer and --audience go with --jwks-url"
        );
    }

    #[test]
    fn listen_and_reach() {
        assert!(listen_addr("localhost:80").is_err());
        let any = listen_addr("0.0.0.0:8080").unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8080");
        assert_eq!(issuer_id("127.0.0.1:0"), "http://127.0.0.1:0");
    }
}

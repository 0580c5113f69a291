//! `auth-load`: a bounded loopback load generator comparing an axum app with and without
//! [`AuthLayer`].
//!
//! It starts the same small axum app (`GET /` answers `hello`) twice on `127.0.0.1:0`, one
//! behind [`AuthLayer`] with a static RS256 key, then, for each round, drives the app without
//! the layer and then the app with it, each for `--duration-secs` over `--connections`
//! concurrent keep-alive HTTP/1.1 connections (hyper client connections). Every request is
//! `GET /` with the same valid bearer token, so the layer answers from its verified-token cache
//! after the first request. It prints requests per second per run, per side over all rounds,
//! the ratio with/without (target: at least 0.8) and the median of the per-round ratios (less
//! sensitive to a noisy round).
//!
//! Servers and client share this process and its tokio runtime (one worker per core), so the
//! numbers measure the whole stack on this machine, loopback only. Every run is bounded: at
//! most 60 s per run, 256 connections and 10 rounds; a run that does not finish within its
//! duration plus 10 s fails.
//!
//! ```text
//! cargo run --release -p auth-tests --bin auth-load -- --duration-secs 5 --connections 32 --rounds 3
//! ```
//!
//! [`AuthLayer`]: auth_tower::AuthLayer

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_tower::AuthLayer;
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

type BoxError = Box<dyn Error + Send + Sync>;

const ISSUER: &str = "https://issuer.load.example";
const AUDIENCE: &str = "load-api";

/// Loopback load test: the same axum app with and without `AuthLayer`.
#[derive(Debug, Parser)]
#[command(name = "auth-load", version, about)]
struct Args {
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    duration_secs: u64,
    /// Concurrent keep-alive connections per run.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,
    /// Rounds; each round runs without, then with the layer.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
}

async fn hello() -> &'static str {
    "hello"
}

fn app() -> Router {
    Router::new().route("/", get(hello))
}

/// Serves `app` on `127.0.0.1:0` until the process ends.
async fn serve(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("server on {addr} stopped: {e}");
        }
    });
    Ok(addr)
}

/// One keep-alive connection, ready to send.
struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
}

async fn connect(addr: SocketAddr) -> Result<Conn, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped (or the server closes the connection).
        let _ = conn.await;
    });
    Ok(Conn { sender })
}

/// Sends requests on `conn` until `deadline`; returns how many were answered `200 OK`.
async fn drive(
    mut conn: Conn,
    host: HeaderValue,
    auth: HeaderValue,
    deadline: Instant,
) -> Result<u64, BoxError> {
    let mut done = 0;
    while Instant::now() < deadline {
        conn.sender.ready().await?;
        let req = Request::get("/")
            .header(header::HOST, host.clone())
            .header(header::AUTHORIZATION, auth.clone())
            .body(Empty::new())?;
        let res = conn.sender.send_request(req).await?;
        let status = res.status();
        res.into_body().collect().await?;
        if status != StatusCode::OK {
            return Err(format!("unexpected status {status}").into());
        }
        done += 1;
    }
    Ok(done)
}

/// Drives `addr` with `connections` connections for `duration`; returns requests per second.
async fn run(
    addr: SocketAddr,
    auth: &HeaderValue,
    connections: u16,
    duration: Duration,
) -> Result<f64, BoxError> {
    let host = HeaderValue::try_from(addr.to_string())?;
    let mut conns = Vec::with_capacity(usize::from(connections));
    for _ in 0..connections {
        conns.push(connect(addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for conn in conns {
        tasks.spawn(drive(conn, host.clone(), auth.clone(), deadline));
    }
    let mut total = 0;
    let all = async {
        while let Some(r) = tasks.join_next().await {
            total += r??;
        }
        Ok::<_, BoxError>(())
    };
    tokio::time::timeout(duration + Duration::from_secs(10), all)
        .await
        .map_err(|_| "run did not finish in time")??;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn token(valid_for: Duration) -> Result<(KeySet, String), BoxError> {
    let key = SigningKey::generate(Algorithm::RS256, "load-rs256")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let token = key.sign(&json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "load-user",
        "scope": "read",
        "iat": now,
        "exp": now + valid_for.as_secs(),
    }))?;
    Ok((KeySet::new(vec![key.verifying_key()?])?, token))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let duration = Duration::from_secs(args.duration_secs);
    let total_time = duration * (2 * args.rounds + 2);
    let (keys, token) = token(total_time + Duration::from_secs(600))?;
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISSUER).audience(AUDIENCE).keys(keys))
        .build()?;
    let without = serve(app()).await?;
    let with = serve(app().layer(AuthLayer::jwt(jwt))).await?;
    let auth = HeaderValue::try_from(format!("Bearer {token}"))?;

    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "auth-load: {} round(s) of {} s per side, {} keep-alive connection(s), 127.0.0.1, \
         client and servers in one process ({workers} worker threads)",
        args.rounds, args.duration_secs, args.connections
    );
    // Warm-up (not counted): connections, allocator, the layer's cache.
    let warm = Duration::from_secs(1).min(duration);
    run(without, &auth, args.connections, warm).await?;
    run(with, &auth, args.connections, warm).await?;

    let (mut sum_without, mut sum_with) = (0.0, 0.0);
    let mut round_ratios = Vec::new();
    for round in 1..=args.rounds {
        let a = run(without, &auth, args.connections, duration).await?;
        println!("round {round}: without AuthLayer {a:>10.0} req/s");
        let b = run(with, &auth, args.connections, duration).await?;
        println!(
            "round {round}: with AuthLayer    {b:>10.0} req/s  ({:.2}x)",
            b / a
        );
        sum_without += a;
        sum_with += b;
        round_ratios.push(b / a);
    }
    let rounds = f64::from(args.rounds);
    let (a, b) = (sum_without / rounds, sum_with / rounds);
    round_ratios.sort_by(f64::total_cmp);
    let median = round_ratios[round_ratios.len() / 2];
    println!(
        "without AuthLayer: {a:.0} req/s (mean of {} rounds)",
        args.rounds
    );
    println!(
        "with AuthLayer:    {b:.0} req/s (mean of {} rounds)",
        args.rounds
    );
    let verdict = if b / a >= 0.8 { "met" } else { "NOT met" };
    println!(
        "with/without = {:.2}x (target >= 0.8x: {verdict}); median of per-round ratios {median:.2}x",
        b / a
    );
    Ok(())
}

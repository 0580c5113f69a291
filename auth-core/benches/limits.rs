//! The cost of a limit check: in process, and through Redis against a bare round trip.
//!
//! - (a) `limits/in_process`: one request checked by an [`InProcessLimiter`] against a key rate
//!   and a tenant quota together ([`InProcessLimiter::check_now`]). Target: under 1 µs.
//! - (b) `limits/redis_check`: the same two checks by a [`RedisLimiter`] (one `EVALSHA`),
//!   against `limits/redis_ping`, a `PING` on the same limiter's connection with the same
//!   timeout ([`RedisLimiter::ping`]), and `limits/redis_raw_ping`, a `PING` on a plain
//!   `redis` connection manager (no timeout wrapper), for reference. Target: one round trip,
//!   so about 1x–2x a `PING`. Needs `REDIS_URL`; skipped with a message without it.
//!
//! After criterion, each is timed again with a plain loop (batches of `ITERS` checks,
//! interleaved, median of `BATCHES` batches) and the numbers and ratios are printed. Redis
//! keys live under a prefix of their own and are deleted at the end.
//!
//! Run with `cargo bench -p auth-core --features redis --bench limits`; under `cargo test`
//! (criterion's test mode) every benchmark runs once and the loops are a smoke test.

use auth_core::apikey::limit::{
    Dimension, InProcessLimiter, Limit, LimitCheck, Limiter, Quota, Rate, Window,
};
use auth_core::apikey::redis::RedisLimiter;
use criterion::Criterion;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;

/// In-process checks per timed batch.
const ITERS: u32 = 100_000;
/// Redis round trips per timed batch.
const REDIS_ITERS: u32 = 2_000;
/// Timed batches per variant; the median is reported.
const BATCHES: usize = 15;

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit")
}

/// A key rate and a tenant quota that never run out during the bench (so every check counts
/// the request: the dearer path).
fn checks() -> [LimitCheck<'static>; 2] {
    [
        LimitCheck {
            dimension: Dimension::Key,
            bucket: "bench-key",
            limit: Limit::Rate(Rate::per(Duration::from_secs(1), 100_000_000)),
        },
        LimitCheck {
            dimension: Dimension::Tenant,
            bucket: "bench-tenant",
            limit: Limit::Quota(Quota::new(u64::MAX / 2, Window::Day)),
        },
    ]
}

struct Redis {
    prefix: String,
    limiter: RedisLimiter,
    raw: redis::aio::ConnectionManager,
}

fn redis_setup(rt: &Runtime) -> Option<Redis> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("(b) Redis check: skipped, REDIS_URL is not set");
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let prefix = format!("bench:{}:{nanos}:", std::process::id());
    rt.block_on(async {
        let limiter = RedisLimiter::builder(&url)
            .prefix(&prefix)
            .timeout(Duration::from_secs(1))
            .connect()
            .await
            .expect("Redis limiter");
        let raw = redis::Client::open(url.as_str())
            .expect("Redis URL")
            .get_connection_manager()
            .await
            .expect("Redis connection");
        let d = limiter
            .check(&checks(), now())
            .resolve()
            .await
            .expect("a check");
        assert!(d.allowed);
        Some(Redis {
            prefix,
            limiter,
            raw,
        })
    })
}

async fn raw_ping(conn: &redis::aio::ConnectionManager) {
    let mut conn = conn.clone();
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("PING");
    black_box(pong);
}

fn criterion_groups(c: &mut Criterion, rt: &Runtime, redis: Option<&Redis>) {
    let mut g = c.benchmark_group("limits");
    let in_process = InProcessLimiter::new(10_000);
    let checks = checks();
    let t = now();
    g.bench_function("in_process", |b| {
        b.iter(|| black_box(in_process.check_now(black_box(&checks), t)));
    });
    if let Some(r) = redis {
        g.bench_function("redis_check", |b| {
            b.to_async(rt)
                .iter(|| async { black_box(r.limiter.check(&checks, t).resolve().await) });
        });
        g.bench_function("redis_ping", |b| {
            b.to_async(rt).iter(|| r.limiter.ping());
        });
        g.bench_function("redis_raw_ping", |b| {
            b.to_async(rt).iter(|| raw_ping(&r.raw));
        });
    }
    g.finish();
}

/// Times `n` calls; returns nanoseconds per call.
type Timed<'a> = Box<dyn FnMut(u32) -> f64 + 'a>;

/// Runs the routines in interleaved batches and returns each one's median ns per call.
fn medians(routines: &mut [Timed<'_>], iters: u32, batches: usize) -> Vec<f64> {
    for r in routines.iter_mut() {
        r(iters.div_ceil(4));
    }
    let mut samples = vec![Vec::with_capacity(batches); routines.len()];
    for _ in 0..batches {
        for (r, s) in routines.iter_mut().zip(&mut samples) {
            s.push(r(iters));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn ratios(rt: &Runtime, redis: Option<&Redis>, scale: u32, batches: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let in_process = InProcessLimiter::new(10_000);
    let checks = checks();
    let t = now();
    let iters = (ITERS / scale).max(1);
    let m = medians(
        &mut [Box::new(|n| {
            let start = Instant::now();
            for _ in 0..n {
                black_box(in_process.check_now(black_box(&checks), t));
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })],
        iters,
        batches,
    );
    out.push(format!(
        "Medians of {batches} interleaved batches (same process):"
    ));
    out.push(format!(
        "(a) in-process check, key rate + tenant quota: {:>9}  target < 1 µs: {}",
        fmt_ns(m[0]),
        verdict(m[0] < 1000.0)
    ));
    let Some(r) = redis else {
        out.push("(b) Redis check: skipped, REDIS_URL is not set".into());
        return out;
    };
    let iters = (REDIS_ITERS / scale).max(1);
    let check_loop: Timed<'_> = Box::new(|n| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                black_box(r.limiter.check(&checks, t).resolve().await.ok());
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    });
    let ping_loop: Timed<'_> = Box::new(|n| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                black_box(r.limiter.ping().await.ok());
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    });
    let raw_loop: Timed<'_> = Box::new(|n| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                raw_ping(&r.raw).await;
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    });
    let m = medians(&mut [check_loop, ping_loop, raw_loop], iters, batches);
    let (check, ping, raw) = (m[0], m[1], m[2]);
    out.push(format!(
        "(b) Redis check, key rate + tenant quota:       {:>9}",
        fmt_ns(check)
    ));
    out.push(format!(
        "    PING on the limiter's connection:           {:>9}",
        fmt_ns(ping)
    ));
    out.push(format!(
        "    PING on a plain connection manager:         {:>9}",
        fmt_ns(raw)
    ));
    out.push(format!(
        "    check / PING = {:.2}x (target 1x-2x, one round trip: {}); check / plain PING = {:.2}x",
        check / ping,
        verdict(check / ping <= 2.0),
        check / raw
    ));
    out
}

/// Deletes the bench's keys.
fn cleanup(rt: &Runtime, r: &Redis) {
    rt.block_on(async {
        let mut conn = r.raw.clone();
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", r.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
            else {
                return;
            };
            if !keys.is_empty() {
                let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    });
}

/// Whether this is a real benchmark run (`cargo bench`), not criterion's test, list or
/// profile mode.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let redis = redis_setup(&rt);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    criterion_groups(&mut c, &rt, redis.as_ref());
    c.final_summary();
    if benchmarking() {
        ratios(&rt, redis.as_ref(), 1, BATCHES)
            .iter()
            .for_each(|l| println!("{l}"));
    } else {
        // Criterion's test mode: exercise the loops, print no numbers.
        ratios(&rt, redis.as_ref(), 1000, 1);
        println!("ratio loops: smoke-tested (test mode; `cargo bench` prints the numbers)");
    }
    if let Some(r) = &redis {
        cleanup(&rt, r);
    }
}

//! One conformance suite for every rate-limit backend ([`InProcessLimiter`] and, with the
//! feature `redis`, [`RedisLimiter`] on `REDIS_URL`), then the Redis backend's own behaviour:
//! replicas sharing one budget, a network black hole (through a proxy written here), and a
//! Redis restart (a private `redis-server` with a password).
//!
//! Each Redis test uses a key prefix of its own (`test:<pid>:<nanos>:`) and deletes its keys at
//! the end. Without `REDIS_URL` the Redis tests print that they are skipped; with `CI` set they
//! fail instead.
#![cfg(feature = "api-keys")]
#![allow(clippy::unwrap_used)]

use auth_core::apikey::limit::{
    Dimension, InProcessLimiter, Limit, LimitCheck, LimitDecision, Limiter, Quota, Rate, Window,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HOUR: Duration = Duration::from_secs(3600);

fn now_secs() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn check(dimension: Dimension, bucket: &str, limit: Limit) -> LimitCheck<'_> {
    LimitCheck {
        dimension,
        bucket,
        limit,
    }
}

fn key_rate(bucket: &str, rate: Rate) -> LimitCheck<'_> {
    check(Dimension::Key, bucket, Limit::Rate(rate))
}

fn tenant_rate(bucket: &str, rate: Rate) -> LimitCheck<'_> {
    check(Dimension::Tenant, bucket, Limit::Rate(rate))
}

fn key_quota(bucket: &str, count: u64, window: Window) -> LimitCheck<'_> {
    check(
        Dimension::Key,
        bucket,
        Limit::Quota(Quota::new(count, window)),
    )
}

fn tenant_quota(bucket: &str, count: u64, window: Window) -> LimitCheck<'_> {
    check(
        Dimension::Tenant,
        bucket,
        Limit::Quota(Quota::new(count, window)),
    )
}

async fn decide(l: &dyn Limiter, checks: &[LimitCheck<'_>], now: i64) -> LimitDecision {
    l.check(checks, now).resolve().await.unwrap()
}

/// Seconds from `now` to the end of its `window`.
fn to_end(window: Window, now: i64) -> u64 {
    u64::try_from(window.bounds(now).1 - now).unwrap()
}

/// The behaviour every backend must have, on fresh state. Rates run on the backend's own
/// clock (a few milliseconds pass during the suite, far less than any interval here).
async fn conformance(l: &dyn Limiter) {
    let t = now_secs();

    // No checks: allowed, nothing to report.
    assert_eq!(decide(l, &[], t).await, LimitDecision::UNLIMITED);

    // A rate: the burst, counted down, then a refusal with a positive retry-after.
    let rate = Rate::per(HOUR, 5); // T = 720 s, burst 5
    for i in 0..5u64 {
        let d = decide(l, &[key_rate("burst", rate)], t).await;
        assert!(d.allowed, "request {i} of the burst");
        assert_eq!(d.retry_after, Duration::ZERO);
        let s = d.status.unwrap();
        assert_eq!((s.policy, s.limit, s.window_secs), ("key-rate", 5, 3600));
        assert_eq!(s.remaining, 4 - i, "remaining after request {i}");
        assert_eq!(
            s.reset_secs,
            720 * (i + 1),
            "whole again after {i}+1 intervals"
        );
    }
    let refused = decide(l, &[key_rate("burst", rate)], t).await;
    assert!(!refused.allowed);
    assert!(
        refused.retry_after > Duration::from_secs(719) && refused.retry_after <= HOUR / 5,
        "one interval to wait: {:?}",
        refused.retry_after
    );
    let s = refused.status.unwrap();
    assert_eq!((s.policy, s.remaining, s.reset_secs), ("key-rate", 0, 3600));
    // Refusals are not counted: still one interval, not two.
    let again = decide(l, &[key_rate("burst", rate)], t).await;
    assert!(!again.allowed && again.retry_after <= HOUR / 5);

    // A quota: counted down in its window, then refused until the window ends.
    for remaining in [2, 1, 0] {
        let d = decide(l, &[key_quota("q", 3, Window::Hour)], t).await;
        assert!(d.allowed);
        let s = d.status.unwrap();
        assert_eq!((s.policy, s.limit, s.window_secs), ("key-hour", 3, 3600));
        assert_eq!(s.remaining, remaining);
        assert_eq!(s.reset_secs, to_end(Window::Hour, t));
    }
    let over = decide(l, &[key_quota("q", 3, Window::Hour)], t).await;
    assert!(!over.allowed);
    assert_eq!(
        over.retry_after,
        Duration::from_secs(to_end(Window::Hour, t))
    );
    let s = over.status.unwrap();
    assert_eq!((s.policy, s.remaining), ("key-hour", 0));
    assert_eq!(s.reset_secs, to_end(Window::Hour, t));
    // The next window starts afresh.
    let next = Window::Hour.bounds(t).1;
    let d = decide(l, &[key_quota("q", 3, Window::Hour)], next).await;
    assert!(d.allowed, "a new hour");
    assert_eq!(d.status.unwrap().remaining, 2);
    assert_eq!(d.status.unwrap().reset_secs, 3600);

    // All or nothing: the tenant's rate refuses the third request, which must not count
    // against the key's quota.
    let both = [
        key_quota("k2", 3, Window::Hour),
        tenant_rate("acme", Rate::per(HOUR, 2)),
    ];
    let first = decide(l, &both, t).await;
    assert!(first.allowed);
    let s = first.status.unwrap();
    assert_eq!((s.policy, s.remaining), ("tenant-rate", 1), "closest");
    assert!(decide(l, &both, t).await.allowed);
    let third = decide(l, &both, t).await;
    assert!(!third.allowed);
    assert_eq!(third.status.unwrap().policy, "tenant-rate");
    assert!(third.retry_after > Duration::ZERO);
    let alone = decide(l, &[key_quota("k2", 3, Window::Hour)], t).await;
    assert!(alone.allowed, "2 of 3 used, not 3");
    assert_eq!(alone.status.unwrap().remaining, 0);

    // The same, refused by a later check: the key's rate is not spent.
    let both = [
        key_rate("k3", Rate::per(HOUR, 10)),
        tenant_quota("globex", 1, Window::Hour),
    ];
    assert!(decide(l, &both, t).await.allowed);
    let refused = decide(l, &both, t).await;
    assert!(!refused.allowed);
    assert_eq!(refused.status.unwrap().policy, "tenant-hour");
    assert_eq!(
        refused.retry_after,
        Duration::from_secs(to_end(Window::Hour, t))
    );
    let d = decide(l, &[key_rate("k3", Rate::per(HOUR, 10))], t).await;
    assert_eq!(d.status.unwrap().remaining, 8, "two counted, not three");

    // A bucket named twice in one request: the second sees the first, and the refusal
    // undoes both.
    let twice = [key_quota("dup", 1, Window::Hour); 2];
    let d = decide(l, &twice, t).await;
    assert!(!d.allowed);
    assert_eq!(d.status.unwrap().remaining, 0);
    assert!(
        decide(l, &[key_quota("dup", 1, Window::Hour)], t)
            .await
            .allowed
    );

    // Key and tenant are separate buckets, for rates and for quotas.
    let one = Rate::per(HOUR, 1);
    assert!(decide(l, &[key_rate("same", one)], t).await.allowed);
    assert!(decide(l, &[tenant_rate("same", one)], t).await.allowed);
    assert!(!decide(l, &[key_rate("same", one)], t).await.allowed);
    assert!(!decide(l, &[tenant_rate("same", one)], t).await.allowed);
    assert!(
        decide(l, &[key_quota("same", 1, Window::Hour)], t)
            .await
            .allowed
    );
    assert!(
        decide(l, &[tenant_quota("same", 1, Window::Hour)], t)
            .await
            .allowed
    );
    assert!(
        !decide(l, &[key_quota("same", 1, Window::Hour)], t)
            .await
            .allowed
    );
    assert!(
        !decide(l, &[tenant_quota("same", 1, Window::Hour)], t)
            .await
            .allowed
    );

    // Days and months: their policy names, nominal windows and resets.
    let d = decide(l, &[tenant_quota("days", 2, Window::Day)], t).await;
    let s = d.status.unwrap();
    assert_eq!(
        (s.policy, s.limit, s.window_secs, s.remaining),
        ("tenant-day", 2, 86_400, 1)
    );
    assert_eq!(s.reset_secs, to_end(Window::Day, t));
    let d = decide(l, &[key_quota("months", 2, Window::Month)], t).await;
    let s = d.status.unwrap();
    assert_eq!(
        (s.policy, s.window_secs, s.remaining),
        ("key-month", 30 * 86_400, 1)
    );
    assert_eq!(s.reset_secs, to_end(Window::Month, t));
    // A quota at a fixed past time (the window is the caller's, not the backend's clock).
    let past = 1_709_214_300; // 2024-02-29T13:45:00Z
    for remaining in [1, 0] {
        let d = decide(l, &[key_quota("past", 2, Window::Month)], past).await;
        assert_eq!(d.status.unwrap().remaining, remaining);
        assert_eq!(d.status.unwrap().reset_secs, 1_709_251_200 - 1_709_214_300);
    }
    assert!(
        !decide(l, &[key_quota("past", 2, Window::Month)], past)
            .await
            .allowed
    );
}

#[tokio::test]
async fn in_process_limiter_conforms() {
    conformance(&InProcessLimiter::new(1_000)).await;
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use auth_core::apikey::limit::LimitError;
    use auth_core::apikey::redis::{FailMode, RedisLimiter};
    use std::fmt::Write as _;
    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    const TIMEOUT: Duration = Duration::from_millis(100);
    /// How late past the timeout a check may answer (scheduling on a busy machine).
    const MARGIN: Duration = Duration::from_millis(200);

    /// `REDIS_URL`, or `None` (printing that `test` is skipped) when unset outside CI.
    fn redis_url(test: &str) -> Option<String> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(url);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "REDIS_URL must be set when CI is set"
        );
        println!("{test} skipped: REDIS_URL is not set");
        None
    }

    fn unique_prefix(tag: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("test:{}:{nanos}:{tag}:", std::process::id())
    }

    /// Deletes every key under `prefix`.
    async fn cleanup(url: &str, prefix: &str) {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let () = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }

    /// Splits `redis://[userinfo@]host[:port][/db]` into the text before the host, the
    /// `host:port` and the rest.
    fn split_url(url: &str) -> (String, String, String) {
        let start = url.find("://").unwrap() + 3;
        let len = url[start..].find('/').unwrap_or(url.len() - start);
        let authority = &url[start..start + len];
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let hostport = if hostport.contains(':') {
            hostport.to_owned()
        } else {
            format!("{hostport}:6379")
        };
        (
            format!("{}{userinfo}", &url[..start]),
            hostport,
            url[start + len..].to_owned(),
        )
    }

    #[tokio::test]
    async fn redis_limiter_conforms() {
        let Some(url) = redis_url("redis_limiter_conforms") else {
            return;
        };
        let prefix = unique_prefix("conformance");
        let limiter = RedisLimiter::builder(&url)
            .prefix(&prefix)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        conformance(&limiter).await;
        cleanup(&url, &prefix).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_share_one_budget() {
        let Some(url) = redis_url("replicas_share_one_budget") else {
            return;
        };
        let prefix = unique_prefix("shared");
        let connect = || {
            RedisLimiter::builder(&url)
                .prefix(&prefix)
                .timeout(Duration::from_secs(2))
                .connect()
        };
        let replicas = [connect().await.unwrap(), connect().await.unwrap()];
        let rate = Rate::per(HOUR, 10).burst(10);
        let now = now_secs();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let limiter = replicas[i % 2].clone();
                tokio::spawn(async move {
                    limiter
                        .check(&[key_rate("shared-key", rate)], now)
                        .resolve()
                        .await
                })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            let d = task.await.unwrap().unwrap();
            if d.allowed {
                allowed += 1;
            } else {
                assert!(d.retry_after > Duration::ZERO);
                assert_eq!(d.status.unwrap().remaining, 0);
            }
        }
        assert_eq!(allowed, 10, "exactly the burst, across both replicas");
        cleanup(&url, &prefix).await;
    }

    /// A TCP proxy that can be cut: a cut stops forwarding on every open connection, for good
    /// (requests in flight and new ones get no answer; the sockets stay open: a black hole),
    /// and connections accepted while cut are held open without an answer. After a restore,
    /// new connections are forwarded again.
    struct Proxy {
        addr: SocketAddr,
        /// Bumped at every cut and restore; odd while cut. Dropping it ends every task.
        generation: watch::Sender<u64>,
        accept: JoinHandle<()>,
    }

    impl Proxy {
        async fn start(upstream: String) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (generation, rx) = watch::channel(0u64);
            let accept = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let mut rx = rx.clone();
                    let g = *rx.borrow_and_update();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if g % 2 == 1 {
                            black_hole(rx).await;
                            drop(client);
                        } else if let Ok(server) = TcpStream::connect(&upstream).await {
                            forward(client, server, rx).await;
                        }
                    });
                }
            });
            Self {
                addr,
                generation,
                accept,
            }
        }

        fn cut(&self) {
            self.generation.send_modify(|g| *g += 1);
        }

        fn restore(&self) {
            self.cut();
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.accept.abort();
        }
    }

    /// Waits until the proxy is dropped.
    async fn black_hole(mut rx: watch::Receiver<u64>) {
        while rx.changed().await.is_ok() {}
    }

    /// Copies both ways until either side closes or the proxy is cut; then holds both
    /// sockets, silent, until the proxy is dropped.
    async fn forward(mut client: TcpStream, mut server: TcpStream, mut rx: watch::Receiver<u64>) {
        {
            let (mut cr, mut cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
            loop {
                tokio::select! {
                    r = cr.read(&mut up) => match r {
                        Ok(n) if n > 0 => if sw.write_all(&up[..n]).await.is_err() { return },
                        _ => return,
                    },
                    r = sr.read(&mut down) => match r {
                        Ok(n) if n > 0 => if cw.write_all(&down[..n]).await.is_err() { return },
                        _ => return,
                    },
                    _ = rx.changed() => break,
                }
            }
        }
        black_hole(rx).await;
    }

    /// Collects the `auth::audit` events emitted on this thread.
    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<String>>>);

    struct Fields<'a>(&'a mut String);

    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    impl tracing::Subscriber for Events {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if event.metadata().target() == "auth::audit" {
                let mut line = String::new();
                event.record(&mut Fields(&mut line));
                self.0.lock().unwrap().push(line);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    impl Events {
        fn unavailable(&self) -> Vec<String> {
            let events = self.0.lock().unwrap();
            events
                .iter()
                .filter(|e| e.contains("outcome=\"limiter_unavailable\""))
                .cloned()
                .collect()
        }
    }

    /// One check of the steady load: when it was sent, how long it took, what it answered.
    struct Record {
        sent: Instant,
        took: Duration,
        answer: Result<LimitDecision, LimitError>,
    }

    fn succeeded(r: &Record) -> bool {
        matches!(&r.answer, Ok(d) if d.allowed && d.status.is_some())
    }

    fn failed_as(mode: FailMode, r: &Record) -> bool {
        match mode {
            FailMode::Closed => matches!(r.answer, Err(LimitError::Unavailable(_))),
            _ => matches!(r.answer, Ok(d) if d == LimitDecision::UNLIMITED),
        }
    }

    /// A steady load through a proxy that is cut, then restored: every check answers in time,
    /// as the fail mode says while cut, and checks succeed again soon after the restore.
    async fn black_hole_and_back(mode: FailMode) {
        let test = format!("black_hole_{}", mode.as_str());
        let Some(url) = redis_url(&test) else {
            return;
        };
        let events = Events::default();
        let _guard = tracing::subscriber::set_default(events.clone());
        let (before, upstream, after) = split_url(&url);
        let proxy = Proxy::start(upstream).await;
        let prefix = unique_prefix(&test);
        let limiter = RedisLimiter::builder(format!("{before}{}{after}", proxy.addr))
            .prefix(&prefix)
            .timeout(TIMEOUT)
            .fail_mode(mode)
            .connect()
            .await
            .unwrap();
        assert_eq!(limiter.fail_mode(), mode);

        // A check every 10 ms, each in its own task (so several wait at once while cut).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Record>();
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn({
            let (limiter, stop) = (limiter.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut tasks = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (limiter, tx) = (limiter.clone(), tx.clone());
                    tasks.push(tokio::spawn(async move {
                        let rate = Rate::per(Duration::from_secs(1), 1_000_000);
                        let sent = Instant::now();
                        let answer = limiter
                            .check(&[key_rate("load", rate)], now_secs())
                            .resolve()
                            .await;
                        let _ = tx.send(Record {
                            sent,
                            took: sent.elapsed(),
                            answer,
                        });
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            }
        });

        tokio::time::sleep(Duration::from_millis(300)).await;
        let cut_at = Instant::now();
        proxy.cut();
        // Long enough for the limiter to give up on the silent connection and try new ones.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let restored_at = Instant::now();
        proxy.restore();

        let mut records = Vec::new();
        let deadline = restored_at + Duration::from_secs(5);
        let recovered = loop {
            let r = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{test}: no success within 5 s of the restore"))
                .unwrap();
            let ok = r.sent >= restored_at && succeeded(&r);
            let sent = r.sent;
            records.push(r);
            if ok {
                break sent;
            }
        };
        // Keep the load on a little longer: it must stay healthy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        load.await.unwrap();
        while let Ok(r) = rx.try_recv() {
            records.push(r);
        }

        let mut during = 0;
        for r in &records {
            assert!(
                r.took < TIMEOUT + MARGIN,
                "{test}: a check took {:?} ({:?} after the start of the cut)",
                r.took,
                r.sent.saturating_duration_since(cut_at)
            );
            if r.sent + Duration::from_millis(50) < cut_at {
                assert!(succeeded(r), "{test}: before the cut: {:?}", r.answer);
            } else if r.sent > cut_at + Duration::from_millis(50) && r.sent + TIMEOUT < restored_at
            {
                during += 1;
                assert!(
                    failed_as(mode, r),
                    "{test}: while cut (+{:?}, restore at +{:?}): {:?}",
                    r.sent - cut_at,
                    restored_at - cut_at,
                    r.answer
                );
            } else if r.sent > recovered + Duration::from_millis(50) {
                assert!(succeeded(r), "{test}: after recovering: {:?}", r.answer);
            }
        }
        assert!(during >= 100, "{test}: {during} checks while cut");
        let failures = records
            .iter()
            .filter(|r| {
                r.answer.as_ref().is_err() || r.answer.as_ref().is_ok_and(|d| d.status.is_none())
            })
            .count();
        let audited = events.unavailable();
        assert_eq!(
            audited.len(),
            failures,
            "{test}: one audit event per failed check"
        );
        let expected_mode = format!("fail_mode=\"{}\"", mode.as_str());
        assert!(
            audited
                .iter()
                .all(|e| e.contains(&expected_mode) && e.contains("reason=\"timeout\""))
        );
        assert!(
            audited.iter().all(|e| !e.contains(&proxy.addr.to_string())),
            "{test}: no address in audit events"
        );
        println!(
            "{test}: {} checks, {during} while cut, {failures} failed, \
             recovered {:?} after the restore",
            records.len(),
            recovered - restored_at
        );
        drop(proxy);
        cleanup(&url, &prefix).await;
    }

    #[tokio::test]
    async fn black_hole_fails_closed_then_recovers() {
        black_hole_and_back(FailMode::Closed).await;
    }

    #[tokio::test]
    async fn black_hole_fails_open_then_recovers() {
        black_hole_and_back(FailMode::Open).await;
    }

    #[tokio::test]
    async fn unreachable_at_start_fails_in_time() {
        let Some(url) = redis_url("unreachable_at_start_fails_in_time") else {
            return;
        };
        // A proxy cut before the first connection: nothing ever answers.
        let (_, upstream, _) = split_url(&url);
        let proxy = Proxy::start(upstream).await;
        proxy.cut();
        let started = Instant::now();
        let err = RedisLimiter::builder(format!("redis://user:s3cret@{}", proxy.addr))
            .timeout(TIMEOUT)
            .connect()
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < TIMEOUT + MARGIN,
            "{:?}",
            started.elapsed()
        );
        let message = err.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("redis://user:***@"), "{message}");

        // A closed port: refused at once.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let started = Instant::now();
        let err = RedisLimiter::builder(format!("redis://:s3cret@{addr}"))
            .timeout(TIMEOUT)
            .connect()
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < TIMEOUT + MARGIN,
            "{:?}",
            started.elapsed()
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");

        // Configuration errors.
        assert!(
            RedisLimiter::builder("http://nope")
                .connect()
                .await
                .is_err()
        );
        assert!(
            RedisLimiter::builder(&url)
                .timeout(Duration::ZERO)
                .connect()
                .await
                .is_err()
        );
    }

    /// A private `redis-server` (with a password) on a free port, killed on drop.
    struct Server {
        child: Child,
    }

    impl Server {
        fn start(port: u16, password: &str) -> Option<Self> {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--requirepass", password])
                .arg("--dir")
                .arg(std::env::temp_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            Some(Self { child })
        }

        fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// Waits until the server at `url` answers `PING`.
    async fn wait_up(url: &str) {
        let client = redis::Client::open(url).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn redis_restart_reloads_the_script_and_recovers() {
        let test = "redis_restart_reloads_the_script_and_recovers";
        if redis_url(test).is_none() {
            return;
        }
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let password = "s3cret-pw";
        let Some(mut server) = Server::start(port, password) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server must be installed when CI is set"
            );
            println!("{test} skipped: redis-server could not be started");
            return;
        };
        let url = format!("redis://:{password}@127.0.0.1:{port}");
        wait_up(&url).await;
        let events = Events::default();
        let _guard = tracing::subscriber::set_default(events.clone());
        let limiter = RedisLimiter::builder(&url)
            .prefix("restart:")
            .timeout(TIMEOUT)
            .connect()
            .await
            .unwrap();
        assert!(!format!("{limiter:?}").contains(password));
        let quota = [key_quota("k", 100, Window::Day)];
        let t = now_secs();
        let remaining = |d: LimitDecision| d.status.unwrap().remaining;
        assert_eq!(remaining(decide(&limiter, &quota, t).await), 99);

        // The script cache emptied: loaded again, transparently.
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(remaining(decide(&limiter, &quota, t).await), 98);
        limiter.ping().await.unwrap();

        // Redis goes away: refused connections fail fast, closed.
        server.kill();
        for _ in 0..5 {
            let started = Instant::now();
            let err = limiter.check(&quota, t).resolve().await.unwrap_err();
            assert!(
                started.elapsed() < TIMEOUT + MARGIN,
                "{:?}",
                started.elapsed()
            );
            assert!(!err.to_string().contains(password), "{err}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(limiter.ping().await.is_err());
        let audited = events.unavailable();
        assert_eq!(audited.len(), 5);
        assert!(
            audited
                .iter()
                .all(|e| !e.contains(password) && !e.contains(&port.to_string()))
        );

        // Back, empty (no persistence) and without the script: checks succeed again soon.
        let _server = Server::start(port, password).unwrap();
        let started = Instant::now();
        loop {
            match limiter.check(&quota, t).resolve().await {
                Ok(d) => {
                    assert_eq!(remaining(d), 99, "a fresh server");
                    break;
                }
                Err(e) => assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "not back after 5 s: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("{test}: back {:?} after the restart", started.elapsed());
    }
}

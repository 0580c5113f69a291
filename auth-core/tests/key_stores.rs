//! One conformance suite for every `KeyStore`: the in-memory store, SQLite (a temporary file)
//! and PostgreSQL (`DATABASE_URL`, a schema of its own per run, dropped at the end; skipped with
//! a message when unset, a failure when `CI` is set).
//!
//! The suite covers the key lifecycle, per-key limits, use credit, usage counts and the
//! `UsageRecorder` over each store; PostgreSQL alone also announces changes to other replicas
//! (`PostgresStore::listen`).
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used)]

use auth_core::apikey::limit::{KeyLimits, Quota, Rate, Window};
use auth_core::apikey::sql::{PostgresStore, SqliteStore};
use auth_core::apikey::store::{
    Invalidation, KeyRecord, KeyStatus, KeyStore, MemoryStore, StoreError,
};
use auth_core::apikey::usage::{Granularity, Outcome, UsageCount, UsageQuery, UsageRecorder};
use auth_core::authenticator::BoxFuture;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn record(id: &str, tenant: &str, at: i64) -> KeyRecord {
    KeyRecord::new(id, tenant, "k", [7; 32], at)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// The behaviour every store must have, on an empty store.
async fn conformance(s: &dyn KeyStore) {
    // insert / get, with every field round-tripping.
    let mut full = record("a", "acme", 1);
    full.name = "billing-sync".into();
    full.secret_hash = std::array::from_fn(|i| i as u8);
    full.scopes = vec!["read:keys".into(), "write:keys".into()];
    full.roles = vec!["admin".into()];
    full.metadata = serde_json::json!({"owner": "ops", "n": 3, "tags": ["x"]});
    full.expires_at = Some(1_000);
    full.remaining_uses = Some(5);
    s.insert(full.clone()).await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), Some(full.clone()));
    assert_eq!(s.get("nope").await.unwrap(), None);

    s.insert(record("b", "acme", 2)).await.unwrap();
    s.insert(record("c", "globex", 3)).await.unwrap();
    // Same creation time as "a": ordered by id after it.
    s.insert(record("a0", "globex", 1)).await.unwrap();
    assert!(matches!(
        s.insert(record("a", "x", 4)).await,
        Err(StoreError::Duplicate(id)) if id == "a"
    ));
    assert_eq!(s.get("a").await.unwrap(), Some(full.clone()), "unchanged");

    // list: ordered by (created_at, id), optionally by tenant.
    let ids = |v: Vec<KeyRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list(None).await.unwrap()), ["a", "a0", "b", "c"]);
    assert_eq!(ids(s.list(Some("acme")).await.unwrap()), ["a", "b"]);
    assert_eq!(ids(s.list(Some("globex")).await.unwrap()), ["a0", "c"]);
    assert!(s.list(Some("initech")).await.unwrap().is_empty());

    // revoke: scheduled, idempotent, moved earlier but never later.
    assert!(s.revoke("a", 10).await.unwrap());
    assert!(!s.revoke("a", 20).await.unwrap(), "already revoked");
    assert!(!s.revoke("a", 10).await.unwrap(), "revoked at that time");
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(a.revoked_at, Some(10));
    assert_eq!(a.status(10), KeyStatus::Revoked);
    assert_eq!(a.status(9), KeyStatus::Active);
    assert!(s.revoke("a", 8).await.unwrap(), "earlier revocation");
    assert_eq!(s.get("a").await.unwrap().unwrap().revoked_at, Some(8));
    assert!(matches!(
        s.revoke("missing", 1).await,
        Err(StoreError::NotFound(id)) if id == "missing"
    ));

    // rotate: successor stored, old one revoked at the end of the grace period.
    s.rotate("b", record("b2", "acme", 5), 100).await.unwrap();
    let old = s.get("b").await.unwrap().unwrap();
    assert_eq!(old.rotated_to.as_deref(), Some("b2"));
    assert_eq!(old.revoked_at, Some(100));
    assert_eq!(old.status(99), KeyStatus::Active, "within grace");
    assert_eq!(old.status(100), KeyStatus::Revoked, "after grace");
    assert_eq!(s.get("b2").await.unwrap(), Some(record("b2", "acme", 5)));
    // An earlier revocation is kept (min of existing and grace).
    s.rotate("a", record("a2", "acme", 6), 100).await.unwrap();
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.revoked_at, a.rotated_to.as_deref()),
        (Some(8), Some("a2"))
    );
    // Unknown old key: nothing stored (atomic).
    assert!(matches!(
        s.rotate("missing", record("z", "acme", 5), 100).await,
        Err(StoreError::NotFound(id)) if id == "missing"
    ));
    assert_eq!(s.get("z").await.unwrap(), None, "rotation rolled back");
    // Duplicate successor: old key untouched.
    assert!(matches!(
        s.rotate("c", record("b2", "globex", 7), 100).await,
        Err(StoreError::Duplicate(id)) if id == "b2"
    ));
    let c = s.get("c").await.unwrap().unwrap();
    assert_eq!((c.revoked_at, c.rotated_to), (None, None));
    assert_eq!(s.get("b2").await.unwrap().unwrap().tenant, "acme");

    // revoke_tenant: counts the keys it changed.
    assert_eq!(
        s.revoke_tenant("acme", 50).await.unwrap(),
        3,
        "b (rescheduled), b2 and a2; a stays revoked at 8"
    );
    assert_eq!(s.get("b").await.unwrap().unwrap().revoked_at, Some(50));
    assert_eq!(s.get("a").await.unwrap().unwrap().revoked_at, Some(8));
    assert_eq!(s.revoke_tenant("acme", 60).await.unwrap(), 0);
    assert_eq!(s.revoke_tenant("initech", 60).await.unwrap(), 0);

    // touch: last use is the latest; unknown ids are ignored.
    s.touch(&[("c".into(), 7), ("c".into(), 5), ("ghost".into(), 9)])
        .await
        .unwrap();
    assert_eq!(s.get("c").await.unwrap().unwrap().last_used_at, Some(7));
    s.touch(&[("c".into(), 6)]).await.unwrap();
    assert_eq!(s.get("c").await.unwrap().unwrap().last_used_at, Some(7));
    s.touch(&[("c".into(), 12), ("a0".into(), 3)])
        .await
        .unwrap();
    assert_eq!(s.get("c").await.unwrap().unwrap().last_used_at, Some(12));
    assert_eq!(s.get("a0").await.unwrap().unwrap().last_used_at, Some(3));
    s.touch(&[]).await.unwrap();

    assert_eq!(s.list(None).await.unwrap().len(), 6);
}

/// Limits round-trip; a key without any reads back the default.
async fn limits_conformance(s: &dyn KeyStore) {
    let mut both = record("lim-both", "acme", 1);
    both.limits = KeyLimits::new(
        Some(Rate::parse("5/s").unwrap().burst(8)),
        Some(Quota::parse("100/hour").unwrap()),
    );
    let mut quota = record("lim-quota", "acme", 2);
    quota.limits = KeyLimits::new(None, Some(Quota::new(3, Window::Month)));
    let none = record("lim-none", "acme", 3);
    for r in [&both, &quota, &none] {
        s.insert(r.clone()).await.unwrap();
    }
    assert_eq!(s.get("lim-both").await.unwrap(), Some(both.clone()));
    assert_eq!(s.get("lim-quota").await.unwrap(), Some(quota.clone()));
    let read = s.get("lim-none").await.unwrap().unwrap();
    assert!(read.limits.is_empty());
    assert_eq!(read.limits, KeyLimits::default());
    // Also through `list` and a rotation's successor.
    let listed = s.list(Some("acme")).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.limits).collect::<Vec<_>>(),
        [both.limits, quota.limits, KeyLimits::default()]
    );
    let mut next = record("lim-both-2", "acme", 4);
    next.limits = both.limits;
    s.rotate("lim-both", next.clone(), 100).await.unwrap();
    assert_eq!(s.get("lim-both-2").await.unwrap(), Some(next));
    assert!(format!("{both:?}").contains("limits"));
}

/// Use credit: spent atomically, unlimited without one, `NotFound` for unknown keys.
async fn consume_conformance(s: Arc<dyn KeyStore>) {
    let mut credited = record("credit", "acme", 1);
    credited.remaining_uses = Some(10);
    s.insert(credited).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let s = Arc::clone(&s);
        tasks.spawn(async move { s.consume_use("credit").await.unwrap() });
    }
    let spent = tasks.join_all().await.into_iter().filter(|&ok| ok).count();
    assert_eq!(spent, 10, "exactly the credit, never more");
    let r = s.get("credit").await.unwrap().unwrap();
    assert_eq!(r.remaining_uses, Some(0));
    assert_eq!(r.status(2), KeyStatus::Exhausted);
    assert!(!s.consume_use("credit").await.unwrap());
    assert_eq!(
        s.get("credit").await.unwrap().unwrap().remaining_uses,
        Some(0),
        "never below zero"
    );

    s.insert(record("unlimited", "acme", 2)).await.unwrap();
    for _ in 0..5 {
        assert!(s.consume_use("unlimited").await.unwrap());
    }
    assert_eq!(
        s.get("unlimited").await.unwrap().unwrap().remaining_uses,
        None
    );

    let mut last = record("last-one", "acme", 3);
    last.remaining_uses = Some(1);
    s.insert(last).await.unwrap();
    assert!(s.consume_use("last-one").await.unwrap());
    assert!(!s.consume_use("last-one").await.unwrap());

    assert!(matches!(
        s.consume_use("ghost").await,
        Err(StoreError::NotFound(id)) if id == "ghost"
    ));
}

/// The start of a day (2023-11-14T00:00:00Z) and of the next.
const DAY0: i64 = 1_699_920_000;
const DAY1: i64 = DAY0 + 86_400;

fn count(key: &str, tenant: &str, at: i64, outcome: Outcome, n: u64) -> UsageCount {
    UsageCount {
        key_id: key.into(),
        tenant: tenant.into(),
        bucket_start: at,
        outcome,
        count: n,
    }
}

/// `(bucket_start, key_id, outcome, count)` of each count, in order.
fn rows(v: &[UsageCount]) -> Vec<(i64, &str, Outcome, u64)> {
    v.iter()
        .map(|c| (c.bucket_start, c.key_id.as_str(), c.outcome, c.count))
        .collect()
}

/// Usage counts: upserts that add, sums per minute, hour and day, filters, order.
async fn usage_conformance(s: &dyn KeyStore) {
    use Outcome::*;
    s.record_usage(&[]).await.unwrap();
    s.record_usage(&[
        count("u1", "acme", DAY1 - 60, Allowed, 1),
        // The same row twice in one batch: summed.
        count("u1", "acme", DAY1 - 60, Allowed, 2),
        count("u1", "acme", DAY1 - 60, RateLimited, 1),
        count("u1", "acme", DAY1, Allowed, 2),
        count("u2", "acme", DAY1 - 60, Invalid, 5),
        // Not on a minute: stored in its minute.
        count("u3", "globex", DAY1 - 30, Allowed, 1),
        count("u3", "globex", DAY0, Expired, 1),
    ])
    .await
    .unwrap();
    s.record_usage(&[
        count("u1", "acme", DAY1 + 60, Allowed, 4),
        count("u2", "acme", DAY1 + 3_600, Allowed, 7),
        // A row stored already: added to it.
        count("u1", "acme", DAY1, Allowed, 3),
    ])
    .await
    .unwrap();

    let q = |query: UsageQuery| async move { s.usage(&query).await.unwrap() };
    let all_minutes = q(UsageQuery::all(DAY0, Granularity::Minute)).await;
    assert_eq!(
        rows(&all_minutes),
        [
            (DAY0, "u3", Expired, 1),
            (DAY1 - 60, "u1", Allowed, 3),
            (DAY1 - 60, "u1", RateLimited, 1),
            (DAY1 - 60, "u2", Invalid, 5),
            (DAY1 - 60, "u3", Allowed, 1),
            (DAY1, "u1", Allowed, 5),
            (DAY1 + 60, "u1", Allowed, 4),
            (DAY1 + 3_600, "u2", Allowed, 7),
        ]
    );
    assert_eq!(all_minutes[0].tenant, "globex");
    assert_eq!(all_minutes[1].tenant, "acme");

    assert_eq!(
        rows(&q(UsageQuery::all(DAY0, Granularity::Hour)).await),
        [
            (DAY0, "u3", Expired, 1),
            (DAY1 - 3_600, "u1", Allowed, 3),
            (DAY1 - 3_600, "u1", RateLimited, 1),
            (DAY1 - 3_600, "u2", Invalid, 5),
            (DAY1 - 3_600, "u3", Allowed, 1),
            (DAY1, "u1", Allowed, 9),
            (DAY1 + 3_600, "u2", Allowed, 7),
        ]
    );
    assert_eq!(
        rows(&q(UsageQuery::all(0, Granularity::Day)).await),
        [
            (DAY0, "u1", Allowed, 3),
            (DAY0, "u1", RateLimited, 1),
            (DAY0, "u2", Invalid, 5),
            (DAY0, "u3", Allowed, 1),
            (DAY0, "u3", Expired, 1),
            (DAY1, "u1", Allowed, 9),
            (DAY1, "u2", Allowed, 7),
        ]
    );

    // One key, one tenant, both, neither matching.
    assert_eq!(
        rows(&q(UsageQuery::key("u1", 0, Granularity::Day)).await),
        [
            (DAY0, "u1", Allowed, 3),
            (DAY0, "u1", RateLimited, 1),
            (DAY1, "u1", Allowed, 9),
        ]
    );
    assert_eq!(
        rows(&q(UsageQuery::tenant("acme", DAY1, Granularity::Hour)).await),
        [(DAY1, "u1", Allowed, 9), (DAY1 + 3_600, "u2", Allowed, 7)]
    );
    assert_eq!(
        rows(&q(UsageQuery::tenant("globex", 0, Granularity::Minute)).await),
        [(DAY0, "u3", Expired, 1), (DAY1 - 60, "u3", Allowed, 1)]
    );
    let both = UsageQuery {
        key_id: Some("u1".into()),
        tenant: Some("acme".into()),
        since: DAY1,
        granularity: Granularity::Day,
    };
    assert_eq!(rows(&q(both).await), [(DAY1, "u1", Allowed, 9)]);
    let mismatch = UsageQuery {
        tenant: Some("globex".into()),
        ..UsageQuery::key("u1", 0, Granularity::Day)
    };
    assert!(q(mismatch).await.is_empty());
    assert!(
        q(UsageQuery::key("ghost", 0, Granularity::Day))
            .await
            .is_empty()
    );
    assert!(
        q(UsageQuery::tenant("initech", 0, Granularity::Day))
            .await
            .is_empty()
    );

    // `since` is inclusive and compares minute starts; it applies before summing.
    assert_eq!(
        q(UsageQuery::all(DAY0 + 1, Granularity::Minute))
            .await
            .len(),
        7
    );
    assert_eq!(
        rows(&q(UsageQuery::all(DAY1 - 60, Granularity::Day)).await),
        [
            (DAY0, "u1", Allowed, 3),
            (DAY0, "u1", RateLimited, 1),
            (DAY0, "u2", Invalid, 5),
            (DAY0, "u3", Allowed, 1),
            (DAY1, "u1", Allowed, 9),
            (DAY1, "u2", Allowed, 7),
        ]
    );
    assert_eq!(
        rows(&q(UsageQuery::all(DAY1 - 59, Granularity::Hour)).await),
        [(DAY1, "u1", Allowed, 9), (DAY1 + 3_600, "u2", Allowed, 7)]
    );
    assert!(
        q(UsageQuery::all(DAY1 + 3_601, Granularity::Day))
            .await
            .is_empty()
    );
}

/// A store whose usage writes fail on demand.
struct Flaky {
    inner: Arc<dyn KeyStore>,
    fail_touch: AtomicBool,
    fail_usage: AtomicBool,
}

impl Flaky {
    fn new(inner: Arc<dyn KeyStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_touch: AtomicBool::new(false),
            fail_usage: AtomicBool::new(false),
        })
    }

    fn fail(&self, touch: bool, usage: bool) {
        self.fail_touch.store(touch, Ordering::SeqCst);
        self.fail_usage.store(usage, Ordering::SeqCst);
    }
}

fn down<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, StoreError>> {
    Box::pin(async { Err(StoreError::Backend("test: store down".into())) })
}

impl KeyStore for Flaky {
    fn insert(&self, record: KeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.insert(record)
    }
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        self.inner.get(id)
    }
    fn list<'a>(
        &'a self,
        tenant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        self.inner.list(tenant)
    }
    fn revoke<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.revoke(id, at)
    }
    fn revoke_tenant<'a>(
        &'a self,
        tenant: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.revoke_tenant(tenant, at)
    }
    fn rotate<'a>(
        &'a self,
        id: &'a str,
        successor: KeyRecord,
        grace_until: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.rotate(id, successor, grace_until)
    }
    fn touch<'a>(&'a self, uses: &'a [(String, i64)]) -> BoxFuture<'a, Result<(), StoreError>> {
        if self.fail_touch.load(Ordering::SeqCst) {
            return down();
        }
        self.inner.touch(uses)
    }
    fn consume_use<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.consume_use(id)
    }
    fn record_usage<'a>(
        &'a self,
        counts: &'a [UsageCount],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if self.fail_usage.load(Ordering::SeqCst) {
            return down();
        }
        self.inner.record_usage(counts)
    }
    fn usage<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Vec<UsageCount>, StoreError>> {
        self.inner.usage(query)
    }
}

/// The `UsageRecorder` over a store (through `Flaky`): aggregation, last use, failures,
/// bounds, the periodic flusher. Uses tenants `rec*` and times from `DAY1 + 2 h`.
async fn recorder_conformance(s: Arc<dyn KeyStore>) {
    use Outcome::*;
    let flaky = Flaky::new(Arc::clone(&s));
    let recorder = UsageRecorder::new(flaky.clone());
    for id in ["r1", "r2", "r3"] {
        s.insert(record(id, "rec", 1)).await.unwrap();
    }
    let t = DAY1 + 7_200;

    // From several threads at once: 8 × 250 allowed uses of r1 over two minutes.
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let recorder = &recorder;
            scope.spawn(move || {
                for i in 0..250 {
                    // Even uses in the first minute, odd ones in the second.
                    let n = thread * 250 + i;
                    recorder.record("r1", "rec", Allowed, t + (n % 2) * 60 + (n / 2) % 60);
                }
            });
        }
    });
    for _ in 0..3 {
        recorder.record("r1", "rec", RateLimited, t + 200);
    }
    for _ in 0..10 {
        recorder.record("r2", "rec", Invalid, t + 5);
    }
    assert_eq!(recorder.tracked(), 2);
    assert_eq!(recorder.flush().await.unwrap(), 4);
    let q = UsageQuery::tenant("rec", 0, Granularity::Minute);
    assert_eq!(
        rows(&s.usage(&q).await.unwrap()),
        [
            (t, "r1", Allowed, 1_000),
            (t, "r2", Invalid, 10),
            (t + 60, "r1", Allowed, 1_000),
            (t + 180, "r1", RateLimited, 3),
        ]
    );
    // The flush wrote the last allowed use, and only for allowed uses.
    assert_eq!(
        s.get("r1").await.unwrap().unwrap().last_used_at,
        Some(t + 119)
    );
    assert_eq!(s.get("r2").await.unwrap().unwrap().last_used_at, None);
    assert_eq!(recorder.flush().await.unwrap(), 0, "nothing new");

    // A failing store keeps the counts, whichever write fails, and they are written once.
    let t2 = t + 600;
    for _ in 0..5 {
        recorder.record("r3", "rec", Allowed, t2);
    }
    recorder.record("r3", "rec", Revoked, t2 + 1);
    flaky.fail(true, true);
    assert!(matches!(
        recorder.flush().await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(
        recorder.flush().await,
        Err(StoreError::Backend(_))
    ));
    // `touch` succeeds, then `record_usage` fails.
    flaky.fail(false, true);
    recorder.record("r3", "rec", Allowed, t2 + 2);
    assert!(recorder.flush().await.is_err());
    assert!(
        s.usage(&UsageQuery::key("r3", 0, Granularity::Minute))
            .await
            .unwrap()
            .is_empty()
    );
    flaky.fail(false, false);
    assert_eq!(recorder.flush().await.unwrap(), 2);
    assert_eq!(
        rows(
            &s.usage(&UsageQuery::key("r3", 0, Granularity::Minute))
                .await
                .unwrap()
        ),
        [(t2, "r3", Allowed, 6), (t2, "r3", Revoked, 1)]
    );
    assert_eq!(
        s.get("r3").await.unwrap().unwrap().last_used_at,
        Some(t2 + 2)
    );
    assert_eq!(recorder.dropped(), 0);

    // The bound on tracked keys: further keys are dropped and counted.
    let small = UsageRecorder::with_max_keys(flaky.clone(), 32);
    for i in 0..1_000 {
        small.record(&format!("b{i}"), "rec-bound", Allowed, t);
    }
    let tracked = small.tracked();
    assert!((1..=32).contains(&tracked), "{tracked}");
    assert_eq!(small.dropped(), 1_000 - tracked as u64);
    // Tracked keys still count.
    let counted = s
        .usage(&UsageQuery::tenant("rec-bound", 0, Granularity::Minute))
        .await
        .unwrap();
    assert!(counted.is_empty());
    assert_eq!(small.flush().await.unwrap(), tracked);
    let counted = s
        .usage(&UsageQuery::tenant("rec-bound", 0, Granularity::Minute))
        .await
        .unwrap();
    assert_eq!(counted.iter().map(|c| c.count).sum::<u64>(), tracked as u64);
    // A failed flush puts back no more than the bound either.
    flaky.fail(true, true);
    for i in 0..1_000 {
        small.record(&format!("c{i}"), "rec-bound", Allowed, t + 60);
    }
    assert!(small.flush().await.is_err());
    assert!(small.tracked() <= 32);
    flaky.fail(false, false);

    // The periodic flusher, and the flush at shutdown.
    let flusher = recorder.spawn_flusher(Duration::from_millis(20));
    recorder.record("r1", "rec", Allowed, t + 900);
    let q = UsageQuery::key("r1", t + 900, Granularity::Minute);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.usage(&q).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the flusher never flushed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    recorder.record("r1", "rec", Allowed, t + 960);
    recorder.record("r1", "rec", Allowed, t + 961);
    flusher.shutdown().await.unwrap();
    assert_eq!(
        rows(&s.usage(&q).await.unwrap()),
        [(t + 900, "r1", Allowed, 1), (t + 960, "r1", Allowed, 2)]
    );
    assert_eq!(
        s.get("r1").await.unwrap().unwrap().last_used_at,
        Some(t + 961)
    );
}

/// Everything after the lifecycle suite, on an empty store.
async fn conformance_part_two(s: Arc<dyn KeyStore>) {
    limits_conformance(&*s).await;
    consume_conformance(Arc::clone(&s)).await;
    usage_conformance(&*s).await;
    recorder_conformance(s).await;
}

struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("auth_core_{tag}_{}.db", unique_suffix())))
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(ext);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms_part_two() {
    conformance_part_two(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let db = TempDb::new("conformance");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    conformance(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms_part_two() {
    let db = TempDb::new("conformance2");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    conformance_part_two(Arc::new(store.clone())).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_store_stores_limits_as_json_or_null() {
    let db = TempDb::new("limits");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    let mut limited = record("k1", "acme", 1);
    limited.limits = KeyLimits::new(Some(Rate::parse("10/m").unwrap()), None);
    store.insert(limited).await.unwrap();
    store.insert(record("k2", "acme", 2)).await.unwrap();
    let column = |id: &'static str| {
        sqlx::query_scalar::<_, Option<String>>("SELECT limits FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_one(store.pool())
    };
    assert_eq!(
        column("k1").await.unwrap().as_deref(),
        Some(r#"{"rate":{"count":10,"period_secs":60,"burst":10}}"#)
    );
    assert_eq!(column("k2").await.unwrap(), None, "no limits: NULL");

    // A corrupt column is an error, not a panic, and does not show the stored text.
    sqlx::query("UPDATE api_keys SET limits = '{\"rate\": 5, \"secret\"' WHERE id = 'k2'")
        .execute(store.pool())
        .await
        .unwrap();
    let Err(StoreError::Backend(msg)) = store.get("k2").await else {
        panic!("corrupt limits must fail");
    };
    assert!(msg.contains("limits") && !msg.contains("secret"), "{msg}");
    assert!(matches!(
        store.list(None).await,
        Err(StoreError::Backend(_))
    ));
    assert!(store.get("k1").await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn sqlite_store_migrates_a_version_one_database() {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    // A database migrated by a release that knew only the first migration, with a key in it.
    let db = TempDb::new("upgrade");
    {
        let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
        Migrator::with_migrations(vec![Migration::new(
            1,
            "api keys".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("../migrations/sqlite/0001_api_keys.sql")),
            false,
        )])
        .run(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, name, secret_hash, created_at) \
             VALUES ('old', 'acme', 'k', zeroblob(32), 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    // Connecting applies the later migrations only; the key is kept.
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    let old = store.get("old").await.unwrap().unwrap();
    assert!(old.limits.is_empty());
    store
        .record_usage(&[count("old", "acme", 60, Outcome::Allowed, 1)])
        .await
        .unwrap();
    assert_eq!(
        store
            .usage(&UsageQuery::key("old", 0, Granularity::Hour))
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_store_keeps_keys_across_reconnect() {
    let db = TempDb::new("reconnect");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    let mut r = record("k1", "acme", 1);
    r.scopes = vec!["read".into()];
    store.insert(r.clone()).await.unwrap();
    store.revoke("k1", 40).await.unwrap();
    store.close().await;
    drop(store);

    // Connecting again re-runs the (already applied) migration.
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    r.revoked_at = Some(40);
    assert_eq!(store.get("k1").await.unwrap(), Some(r));
    assert_eq!(store.list(None).await.unwrap().len(), 1);
    store.close().await;
}

/// `DATABASE_URL`, or `None` (with a message) when it is unset; a failure when `CI` is set.
fn database_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "DATABASE_URL must be set when CI is set"
            );
            println!("{test} skipped: DATABASE_URL is not set");
            None
        }
    }
}

/// A schema name of its own for this run.
fn fresh_schema(tag: &str) -> String {
    format!("auth_test_{tag}_{}", unique_suffix())
}

/// Drops the schemas, then re-raises the suite's panic, if any.
async fn drop_schemas(url: &str, schemas: &[&str], outcome: Result<(), tokio::task::JoinError>) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for schema in schemas {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs `suite` on a store in a fresh schema, dropped afterwards even when the suite fails.
async fn in_fresh_schema<F, Fut>(url: &str, tag: &str, suite: F)
where
    F: FnOnce(PostgresStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = fresh_schema(tag);
    let store = PostgresStore::connect_with_schema(url, &schema)
        .await
        .unwrap();
    let outcome = tokio::spawn(suite(store.clone())).await;
    store.close().await;
    drop_schemas(url, &[&schema], outcome).await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(url) = database_url("postgres_store_conforms") else {
        return;
    };
    in_fresh_schema(&url, "conformance", |store| async move {
        conformance(&store).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms_part_two() {
    let Some(url) = database_url("postgres_store_conforms_part_two") else {
        return;
    };
    in_fresh_schema(&url, "part2", |store| async move {
        conformance_part_two(Arc::new(store)).await;
    })
    .await;
}

#[tokio::test]
async fn postgres_store_stores_limits_as_text_or_null() {
    let Some(url) = database_url("postgres_store_stores_limits_as_text_or_null") else {
        return;
    };
    in_fresh_schema(&url, "limits", |store| async move {
        let mut limited = record("k1", "acme", 1);
        limited.limits = KeyLimits::new(None, Some(Quota::new(7, Window::Day)));
        store.insert(limited.clone()).await.unwrap();
        store.insert(record("k2", "acme", 2)).await.unwrap();
        let column = |id: &'static str| {
            sqlx::query_scalar::<_, Option<String>>("SELECT limits FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_one(store.pool())
        };
        assert_eq!(
            column("k1").await.unwrap().as_deref(),
            Some(r#"{"quota":{"count":7,"window":"day"}}"#)
        );
        assert_eq!(column("k2").await.unwrap(), None, "no limits: NULL");
        assert_eq!(store.get("k1").await.unwrap(), Some(limited));

        sqlx::query("UPDATE api_keys SET limits = 'not json' WHERE id = 'k2'")
            .execute(store.pool())
            .await
            .unwrap();
        let Err(StoreError::Backend(msg)) = store.get("k2").await else {
            panic!("corrupt limits must fail");
        };
        assert!(msg.contains("limits"), "{msg}");

        // The new objects are in the store's schema, not in `public`.
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT table_schema::text FROM information_schema.tables \
             WHERE table_name = 'api_key_usage' AND table_schema = current_schema()",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(schemas.len(), 1);
        assert!(schemas[0].starts_with("auth_test_limits_"), "{schemas:?}");
    })
    .await;
}

/// Waits (up to `within`) until `seen` holds `want`.
async fn wait_for(seen: &Mutex<Vec<Invalidation>>, want: &Invalidation, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if seen.lock().unwrap().contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{want} not received within {within:?}; got {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A listener recording what it hears.
async fn listening(
    store: &PostgresStore,
) -> (Arc<Mutex<Vec<Invalidation>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let handle = store
        .listen(move |change| sink.lock().unwrap().push(change))
        .await
        .unwrap();
    (seen, handle)
}

/// The backend pid of the connection listening on `channel`, if any (but `not`).
async fn listener_pid(store: &PostgresStore, not: Option<i32>) -> Option<i32> {
    sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'LISTEN%' AND position($1 IN query) > 0 AND pid <> $2",
    )
    .bind(store.channel())
    .bind(not.unwrap_or(0))
    .fetch_optional(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_announces_changes_to_other_replicas() {
    let Some(url) = database_url("postgres_store_announces_changes_to_other_replicas") else {
        return;
    };
    let (schema_a, schema_b) = (fresh_schema("notify_a"), fresh_schema("notify_b"));
    let suite = {
        let (url, schema_a, schema_b) = (url.clone(), schema_a.clone(), schema_b.clone());
        async move {
            const WITHIN: Duration = Duration::from_secs(2);
            let listener = PostgresStore::connect_with_schema(&url, &schema_a)
                .await
                .unwrap();
            let writer = PostgresStore::connect_with_schema(&url, &schema_a)
                .await
                .unwrap();
            let elsewhere = PostgresStore::connect_with_schema(&url, &schema_b)
                .await
                .unwrap();
            assert_eq!(listener.channel(), writer.channel());
            assert_ne!(listener.channel(), elsewhere.channel());
            let (seen, handle) = listening(&listener).await;
            let (seen_elsewhere, handle_elsewhere) = listening(&elsewhere).await;

            for (id, tenant) in [
                ("x", "acme"),
                ("y", "acme"),
                ("z", "globex"),
                ("w", "globex"),
            ] {
                writer.insert(record(id, tenant, 1)).await.unwrap();
            }
            assert!(writer.revoke("x", 10).await.unwrap());
            wait_for(&seen, &Invalidation::Key("x".into()), WITHIN).await;
            // Changing nothing announces nothing; a failed rotation neither.
            assert!(!writer.revoke("x", 20).await.unwrap());
            assert!(
                writer
                    .rotate("ghost", record("g2", "globex", 2), 100)
                    .await
                    .is_err()
            );
            assert_eq!(writer.revoke_tenant("acme", 30).await.unwrap(), 1);
            wait_for(&seen, &Invalidation::Tenant("acme".into()), WITHIN).await;
            // Malformed payloads on the channel are ignored.
            for payload in ["bogus", "key:", "user:z", ""] {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(writer.channel())
                    .bind(payload)
                    .execute(writer.pool())
                    .await
                    .unwrap();
            }
            writer
                .rotate("z", record("z2", "globex", 2), 100)
                .await
                .unwrap();
            wait_for(&seen, &Invalidation::Key("z".into()), WITHIN).await;
            assert_eq!(
                *seen.lock().unwrap(),
                [
                    Invalidation::Key("x".into()),
                    Invalidation::Tenant("acme".into()),
                    Invalidation::Key("z".into()),
                ]
            );

            // The other schema heard none of it: its own change arrives alone.
            elsewhere.insert(record("marker", "m", 1)).await.unwrap();
            elsewhere.revoke("marker", 1).await.unwrap();
            wait_for(&seen_elsewhere, &Invalidation::Key("marker".into()), WITHIN).await;
            assert_eq!(
                *seen_elsewhere.lock().unwrap(),
                [Invalidation::Key("marker".into())]
            );

            // The listening connection is killed: the listener reconnects and hears again.
            let pid = listener_pid(&listener, None)
                .await
                .expect("a LISTEN backend");
            let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(writer.pool())
                .await
                .unwrap();
            assert!(killed);
            let deadline = Instant::now() + Duration::from_secs(10);
            while listener_pid(&listener, Some(pid)).await.is_none() {
                assert!(Instant::now() < deadline, "the listener did not reconnect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(writer.revoke("w", 40).await.unwrap());
            wait_for(&seen, &Invalidation::Key("w".into()), WITHIN).await;

            // Closing the store ends its listener.
            listener.close().await;
            tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .expect("the listener ends when its store closes")
                .unwrap();
            handle_elsewhere.abort();
            writer.close().await;
            elsewhere.close().await;
        }
    };
    let outcome = tokio::spawn(suite).await;
    drop_schemas(&url, &[&schema_a, &schema_b], outcome).await;
}

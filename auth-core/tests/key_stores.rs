//! One conformance suite for every `KeyStore`: the in-memory store, SQLite (a temporary file)
//! and PostgreSQL (`DATABASE_URL`, a schema of its own per run, dropped at the end).
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used)]

use auth_core::apikey::sql::{PostgresStore, SqliteStore};
use auth_core::apikey::store::{KeyRecord, KeyStatus, KeyStore, MemoryStore, StoreError};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

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

#[tokio::test]
async fn sqlite_store_conforms() {
    let db = TempDb::new("conformance");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    conformance(&store).await;
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

#[tokio::test]
async fn postgres_store_conforms() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "DATABASE_URL must be set when CI is set"
        );
        println!("postgres_store_conforms skipped: DATABASE_URL is not set");
        return;
    };
    let schema = format!("auth_test_{}", unique_suffix());
    let store = PostgresStore::connect_with_schema(&url, &schema)
        .await
        .unwrap();
    // Run the suite in a task so the schema is dropped even when it fails.
    let suite_store = store.clone();
    let outcome = tokio::spawn(async move { conformance(&suite_store).await }).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

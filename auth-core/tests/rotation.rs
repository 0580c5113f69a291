//! Signing-key rotation (`auth_core::rotation`): the schedule under an injected time, the
//! stores (in memory, SQLite, PostgreSQL from `DATABASE_URL` in a schema of its own per run;
//! skipped with a message when unset, a failure when `CI` is set), two rotators racing on one
//! store, and a rotation every second under load with verifiers fetching the JWKS over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use auth_core::jwt::{Issuer, Jwt};
use auth_core::rotation::store::{
    Change, KeyInfo, KeyState, MemorySigningKeyStore, SigningKeyStore, StoredKey,
};
use auth_core::rotation::{KeyRotator, RotationPolicy};
use auth_core::{AuthError, TokenError};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://issuer.example";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn at_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(rotator: &KeyRotator, at: SystemTime, sub: &str) -> String {
    let now = unix_now();
    rotator
        .signer_at(at)
        .sign(&json!({"iss": ISS, "sub": sub, "iat": now, "exp": now + 60}))
        .unwrap()
}

fn kids(jwks: &serde_json::Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn with_state(rotator: &KeyRotator, state: KeyState) -> Option<KeyInfo> {
    rotator.keys().into_iter().find(|k| k.state == state)
}

#[tokio::test]
async fn the_schedule_publishes_ahead_rotates_and_removes_on_time() {
    let policy = RotationPolicy::every(secs(10))
        .publish_ahead(secs(4))
        .max_token_lifetime(secs(5))
        .leeway(secs(1));
    let rotator = Arc::new(
        KeyRotator::open(Arc::new(MemorySigningKeyStore::new()), policy)
            .await
            .unwrap(),
    );
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).rotating(rotator.clone()))
        .build()
        .unwrap();
    let first = with_state(&rotator, KeyState::Current).unwrap();
    assert_eq!(rotator.keys().len(), 1, "open makes one current key");
    assert_eq!(first.alg, auth_core::Algorithm::ES256);
    let t0 = first.activate_at;
    let t = |s: i64| at_ms(t0 + s);

    assert!(
        !rotator.tick(t(5_999)).await.unwrap(),
        "no next key before 10 - 4 s"
    );
    assert!(with_state(&rotator, KeyState::Next).is_none());
    assert!(rotator.tick(t(6_000)).await.unwrap());
    let next = with_state(&rotator, KeyState::Next).expect("a next key at 6 s");
    assert_eq!(next.activate_at, t0 + 10_000);
    assert!(
        next.activate_at - next.created_at >= 4_000,
        "published at least publish_ahead before it signs"
    );
    assert_eq!(
        kids(&rotator.jwks()),
        BTreeSet::from([first.kid.clone(), next.kid.clone()]),
        "the next key is published"
    );
    assert_eq!(rotator.key_set().len(), 2);
    assert_eq!(
        rotator.signer_at(t(9_999)).kid(),
        first.kid,
        "not signing yet"
    );
    // At its activation time every process switches, even before a tick promotes it.
    assert_eq!(rotator.signer_at(t(10_000)).kid(), next.kid);

    let old_token = token(&rotator, t(9_000), "old");
    assert_eq!(jwt.verify(&old_token).await.unwrap().subject(), "old");

    assert!(rotator.tick(t(10_000)).await.unwrap());
    assert_eq!(
        with_state(&rotator, KeyState::Current).unwrap().kid,
        next.kid
    );
    let retired = with_state(&rotator, KeyState::Retired).unwrap();
    assert_eq!(retired.kid, first.kid);
    assert_eq!(retired.deactivated_at, Some(t0 + 10_000));
    assert_eq!(
        retired.retire_at,
        Some(t0 + 10_000 + 5_000 + 1_000),
        "stopped signing + longest token lifetime + leeway"
    );
    assert!(
        kids(&rotator.jwks()).contains(&first.kid),
        "still published"
    );
    let new_token = token(&rotator, t(10_500), "new");
    assert_eq!(jwt.verify(&new_token).await.unwrap().subject(), "new");
    assert_eq!(jwt.verify(&old_token).await.unwrap().subject(), "old");

    assert!(!rotator.tick(t(15_999)).await.unwrap());
    assert!(
        kids(&rotator.jwks()).contains(&first.kid),
        "until retire_at"
    );
    // At 16 s the old key goes, and the key after next is published (20 - 4 s).
    assert!(rotator.tick(t(16_000)).await.unwrap());
    assert!(
        !kids(&rotator.jwks()).contains(&first.kid),
        "removed at retire_at"
    );
    assert!(
        rotator
            .key_set()
            .keys()
            .iter()
            .all(|k| k.kid() != Some(&*first.kid))
    );
    let after = with_state(&rotator, KeyState::Next).unwrap();
    assert_eq!(after.activate_at, t0 + 20_000);
    assert_eq!(kids(&rotator.jwks()).len(), 2);
    // The removed key's verification, cached before, is void now.
    assert!(matches!(
        jwt.verify(&old_token).await,
        Err(AuthError::InvalidToken(TokenError::UnknownKey))
    ));
    assert_eq!(jwt.verify(&new_token).await.unwrap().subject(), "new");
}

#[tokio::test]
async fn a_rotator_that_never_rotates_keeps_its_key_and_a_first_key_can_be_imported() {
    let store = Arc::new(MemorySigningKeyStore::new());
    let legacy = auth_core::issuer::SigningKey::generate(auth_core::Algorithm::ES256, "x").unwrap();
    let a = KeyRotator::open_with_first_key(store.clone(), RotationPolicy::never(), &legacy)
        .await
        .unwrap();
    let kid = a.signer().kid().to_owned();
    assert_eq!(
        Some(kid.clone()),
        auth_core::rotation::thumbprint(&legacy.public_jwk()),
        "the imported key, named by its thumbprint"
    );
    assert_eq!(a.signer().to_pkcs8().unwrap(), legacy.to_pkcs8().unwrap());
    let far = SystemTime::now() + secs(400 * 86_400);
    assert!(!a.tick(far).await.unwrap());
    assert_eq!(a.keys().len(), 1);
    // A second process finds the key (the import applies only to an empty store).
    let other = auth_core::issuer::SigningKey::generate(auth_core::Algorithm::ES256, "y").unwrap();
    let b = KeyRotator::open_with_first_key(store, RotationPolicy::never(), &other)
        .await
        .unwrap();
    assert_eq!(b.signer().kid(), kid);
    assert_eq!(a.jwks(), b.jwks());
    // A symmetric key cannot be published, so it cannot start a ring.
    let secret = auth_core::issuer::SigningKey::generate(auth_core::Algorithm::HS256, "s").unwrap();
    let empty = Arc::new(MemorySigningKeyStore::new());
    assert!(
        KeyRotator::open_with_first_key(empty.clone(), RotationPolicy::never(), &secret)
            .await
            .is_err()
    );
    assert!(empty.load().await.unwrap().keys.is_empty());
}

#[tokio::test]
async fn other_algorithms_rotate_too() {
    for alg in [auth_core::Algorithm::EdDSA, auth_core::Algorithm::PS256] {
        let policy = RotationPolicy::every(secs(86_400)).algorithm(alg);
        let rotator = KeyRotator::open(Arc::new(MemorySigningKeyStore::new()), policy)
            .await
            .unwrap();
        let key = rotator.signer();
        assert_eq!(key.algorithm(), alg);
        let set = rotator.key_set();
        let t = token(&rotator, SystemTime::now(), "a");
        assert_eq!(
            auth_core::jws::verify(&t, &set)
                .unwrap()
                .header
                .kid
                .as_deref(),
            Some(key.kid())
        );
        assert!(
            rotator.jwks()["keys"][0].get("d").is_none(),
            "public keys only"
        );
    }
    let hmac = RotationPolicy::every(secs(10)).algorithm(auth_core::Algorithm::HS256);
    assert!(
        KeyRotator::open(Arc::new(MemorySigningKeyStore::new()), hmac)
            .await
            .is_err()
    );
}

fn stored(kid: &str, state: KeyState) -> StoredKey {
    let key = auth_core::issuer::SigningKey::generate(auth_core::Algorithm::ES256, kid).unwrap();
    StoredKey {
        info: KeyInfo {
            kid: kid.into(),
            alg: auth_core::Algorithm::ES256,
            state,
            created_at: 1,
            activate_at: 2,
            deactivated_at: None,
            retire_at: None,
            max_token_lifetime: 3,
        },
        private_key: key.to_pkcs8().unwrap(),
    }
}

/// What every store must do, on an empty store.
async fn store_conformance(s: &dyn SigningKeyStore) {
    let empty = s.load().await.unwrap();
    assert!(empty.keys.is_empty());
    let g = empty.generation;
    let a = stored("a", KeyState::Current);
    assert!(s.commit(g, &[Change::Insert(a.clone())]).await.unwrap());
    let snap = s.load().await.unwrap();
    assert_eq!(snap.generation, g + 1);
    assert_eq!(snap.keys, vec![a.clone()], "every field round-trips");
    assert!(
        !s.commit(g, &[Change::Insert(stored("b", KeyState::Next))])
            .await
            .unwrap(),
        "a stale generation commits nothing"
    );
    assert_eq!(s.load().await.unwrap().keys.len(), 1);
    // A second current key is refused, and the whole commit with it.
    let refused = [
        Change::Insert(stored("b", KeyState::Next)),
        Change::Insert(stored("c", KeyState::Current)),
    ];
    assert!(!s.commit(g + 1, &refused).await.unwrap());
    let snap = s.load().await.unwrap();
    assert_eq!(
        (snap.generation, snap.keys.len()),
        (g + 1, 1),
        "all or nothing"
    );
    // Rotate: next, then retire + promote, then delete.
    let b = stored("b", KeyState::Next);
    assert!(s.commit(g + 1, &[Change::Insert(b)]).await.unwrap());
    assert!(
        !s.commit(g + 2, &[Change::Promote { kid: "b".into() }])
            .await
            .unwrap(),
        "no promotion while a key is current"
    );
    let rotate = [
        Change::Retire {
            kid: "a".into(),
            deactivated_at: 10,
            retire_at: 20,
        },
        Change::Promote { kid: "b".into() },
    ];
    assert!(s.commit(g + 2, &rotate).await.unwrap());
    let snap = s.load().await.unwrap();
    let state = |kid: &str| {
        snap.keys
            .iter()
            .find(|k| k.info.kid == kid)
            .map(|k| k.info.clone())
    };
    let old = state("a").unwrap();
    assert_eq!(old.state, KeyState::Retired);
    assert_eq!((old.deactivated_at, old.retire_at), (Some(10), Some(20)));
    assert_eq!(state("b").unwrap().state, KeyState::Current);
    assert!(
        !s.commit(g + 3, &[Change::Delete { kid: "b".into() }])
            .await
            .unwrap(),
        "only retired keys are deleted"
    );
    assert!(
        s.commit(g + 3, &[Change::Delete { kid: "a".into() }])
            .await
            .unwrap()
    );
    let snap = s.load().await.unwrap();
    assert_eq!(snap.generation, g + 4);
    assert_eq!(snap.keys.len(), 1);
}

/// Two rotators (as two processes would) tick the same store at the same instants, racing:
/// never two current keys, at most one commit per instant, the same ring afterwards.
async fn race(a: Arc<dyn SigningKeyStore>, b: Arc<dyn SigningKeyStore>) {
    let policy = RotationPolicy::every(secs(3))
        .publish_ahead(secs(2))
        .max_token_lifetime(secs(2))
        .leeway(secs(1));
    let (ra, rb) = tokio::join!(
        KeyRotator::open(a.clone(), policy.clone()),
        KeyRotator::open(b.clone(), policy)
    );
    let (ra, rb) = (Arc::new(ra.unwrap()), Arc::new(rb.unwrap()));
    rb.reload().await.unwrap();
    ra.reload().await.unwrap();
    assert_eq!(ra.keys(), rb.keys(), "both open the same first key");
    let t0 = with_state(&ra, KeyState::Current).unwrap().activate_at;
    let mut currents = BTreeSet::new();
    for step in 0..40 {
        let now = at_ms(t0 + step * 500);
        let (x, y) = (ra.clone(), rb.clone());
        let (da, db) = tokio::join!(
            tokio::spawn(async move { x.tick(now).await.unwrap() }),
            tokio::spawn(async move { y.tick(now).await.unwrap() })
        );
        let (da, db) = (da.unwrap(), db.unwrap());
        assert!(
            !(da && db),
            "step {step}: both committed a change at one instant"
        );
        let snap = a.load().await.unwrap();
        let count = |s| snap.keys.iter().filter(|k| k.info.state == s).count();
        assert_eq!(count(KeyState::Current), 1, "step {step}");
        assert!(count(KeyState::Next) <= 1, "step {step}");
        // Whoever lost has reloaded: both hold the ring of the store.
        ra.reload().await.unwrap();
        rb.reload().await.unwrap();
        assert_eq!(ra.generation(), snap.generation);
        assert_eq!(rb.generation(), snap.generation);
        assert_eq!(ra.keys(), rb.keys(), "step {step}: converged");
        assert_eq!(ra.jwks(), rb.jwks());
        assert_eq!(ra.signer_at(now).kid(), rb.signer_at(now).kid());
        currents.insert(with_state(&ra, KeyState::Current).unwrap().kid);
    }
    // 20 s at a rotation every 3 s.
    assert!(currents.len() >= 6, "{} rotations", currents.len());
    assert!(
        ra.keys().len() <= 4,
        "retired keys are removed: {:?}",
        ra.keys()
    );
}

#[tokio::test]
async fn memory_store_conforms() {
    store_conformance(&MemorySigningKeyStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotators_racing_on_one_memory_store_converge() {
    let store: Arc<dyn SigningKeyStore> = Arc::new(MemorySigningKeyStore::new());
    race(store.clone(), store).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use auth_core::apikey::sql::SqliteStore;
    use std::path::PathBuf;

    struct TempDb(PathBuf);

    impl TempDb {
        fn new(tag: &str) -> Self {
            Self(std::env::temp_dir().join(format!(
                "auth_core_rotation_{tag}_{}_{}.db",
                std::process::id(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            )))
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
    async fn sqlite_store_conforms() {
        let db = TempDb::new("conf");
        let store = SqliteStore::connect(&db.url()).await.unwrap();
        store_conformance(&store).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotators_racing_on_one_sqlite_file_converge() {
        let db = TempDb::new("race");
        // Two pools on one file: two processes.
        let a = SqliteStore::connect(&db.url()).await.unwrap();
        let b = SqliteStore::connect(&db.url()).await.unwrap();
        race(Arc::new(a.clone()), Arc::new(b.clone())).await;
        // Keys survive a reconnect.
        let before = KeyRotator::open(Arc::new(a.clone()), RotationPolicy::never())
            .await
            .unwrap()
            .jwks();
        a.close().await;
        b.close().await;
        let c = SqliteStore::connect(&db.url()).await.unwrap();
        let after = KeyRotator::open(Arc::new(c.clone()), RotationPolicy::never())
            .await
            .unwrap();
        assert_eq!(after.jwks(), before);
        c.close().await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use auth_core::apikey::sql::PostgresStore;

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

    fn fresh_schema(tag: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("auth_test_rot_{tag}_{}_{nanos}", std::process::id())
    }

    async fn drop_schema(url: &str, schema: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_conforms_and_racing_rotators_converge() {
        let Some(url) = database_url("postgres_store_conforms_and_racing_rotators_converge") else {
            return;
        };
        let (conf, race_schema) = (fresh_schema("conf"), fresh_schema("race"));
        let outcome = tokio::spawn({
            let (url, conf, race_schema) = (url.clone(), conf.clone(), race_schema.clone());
            async move {
                let s = PostgresStore::connect_with_schema(&url, &conf)
                    .await
                    .unwrap();
                store_conformance(&s).await;
                s.close().await;
                let a = PostgresStore::connect_with_schema(&url, &race_schema)
                    .await
                    .unwrap();
                let b = PostgresStore::connect_with_schema(&url, &race_schema)
                    .await
                    .unwrap();
                race(Arc::new(a.clone()), Arc::new(b.clone())).await;
                a.close().await;
                b.close().await;
            }
        })
        .await;
        drop_schema(&url, &conf).await;
        drop_schema(&url, &race_schema).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// A rotation every second for 6 s while tokens are minted and verified continuously, by a
/// verifier that fetches the JWKS over HTTP every 200 ms (and may not fetch on unknown keys)
/// and by one reading the ring in process: no valid token is refused.
#[cfg(feature = "jwks")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_every_second_under_load_refuses_no_valid_token() {
    use auth_core::jwks::JwksCache;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let policy = RotationPolicy::every(secs(1))
        .publish_ahead(secs(1))
        .max_token_lifetime(secs(10))
        .leeway(secs(1));
    let rotator = Arc::new(
        KeyRotator::open(Arc::new(MemorySigningKeyStore::new()), policy)
            .await
            .unwrap(),
    );
    let ticker = rotator.clone().spawn(Duration::from_millis(100));

    // A minimal HTTP/1.1 server answering every request with the rotator's JWKS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let served = rotator.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let body = served.jwks().to_string();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });

    let cache = JwksCache::builder(&url)
        .refresh_interval(Duration::from_millis(200))
        // No rescue by unknown-kid fetches: publishing ahead alone must do.
        .unknown_kid_cooldown(secs(3600))
        .build()
        .unwrap();
    while !cache.refresh().await {}
    let remote = Jwt::builder()
        .issuer(Issuer::new(ISS).jwks(cache.clone()))
        .cache_capacity(0)
        .build()
        .unwrap();
    let local = Jwt::builder()
        .issuer(Issuer::new(ISS).rotating(rotator.clone()))
        .cache_capacity(0)
        .build()
        .unwrap();

    let (verified, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let kids_seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (rotator, remote, local) = (rotator.clone(), remote.clone(), local.clone());
        let (verified, failed, kids_seen) = (verified.clone(), failed.clone(), kids_seen.clone());
        workers.push(tokio::spawn(async move {
            let mut older: Vec<String> = Vec::new();
            let mut n = 0u64;
            while started.elapsed() < secs(6) {
                n += 1;
                let signer = rotator.signer();
                kids_seen.lock().unwrap().insert(signer.kid().to_owned());
                let now = unix_now();
                let token = signer
                    .sign(&json!({"iss": ISS, "sub": format!("w{w}-{n}"), "iat": now, "exp": now + 8}))
                    .unwrap();
                // Fresh tokens, and tokens minted up to a few seconds ago (signed by keys
                // retired since): all valid.
                if n.is_multiple_of(10) {
                    older.push(token.clone());
                    if older.len() > 30 {
                        older.remove(0);
                    }
                }
                let old = older.first().cloned();
                for t in std::iter::once(token).chain(old) {
                    for (name, jwt) in [("remote", &remote), ("local", &local)] {
                        match jwt.verify(&t).await {
                            Ok(_) => verified.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                eprintln!("{name} verifier refused a valid token: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    ticker.abort();
    server.abort();
    let kids = kids_seen.lock().unwrap().len();
    let (ok, bad) = (
        verified.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "{ok} verifications, {bad} refused, {kids} signing keys, {} JWKS fetches",
        cache.fetch_count()
    );
    assert_eq!(bad, 0, "valid tokens were refused during rotation");
    assert!(kids >= 4, "several rotations happened: {kids} signing keys");
    assert!(ok >= 200, "under load: {ok} verifications");
}

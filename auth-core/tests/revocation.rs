//! Revocation through the gate: a denylisted token is refused on its next request even when the
//! verifier answers from its cache, by `jti`, by token hash and by subject; with feature `redis`,
//! a revocation made through one `RedisDenylist` reaches another sharing its prefix.
#![cfg(feature = "issuer")]

use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::revocation::{MemoryDenylist, Revocation};
use auth_core::{AuthError, Check, Gate, TokenError};
use serde_json::json;

const ISS: &str = "https://issuer.example";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .try_into()
        .expect("time")
}

fn signer_and_jwt() -> (SigningKey, Jwt) {
    let signer = SigningKey::generate(jsonwebtoken::Algorithm::ES256, "k1").expect("key");
    let keys = KeySet::new(vec![signer.verifying_key().expect("key")]).expect("keys");
    let jwt = Jwt::builder()
        .issuer(Issuer::new(ISS).keys(keys))
        .build()
        .expect("jwt");
    (signer, jwt)
}

fn mint(signer: &SigningKey, sub: &str, jti: &str, iat: i64) -> String {
    signer
        .sign(&json!({"iss": ISS, "sub": sub, "jti": jti, "iat": iat, "exp": now() + 300}))
        .expect("sign")
}

fn headers(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

async fn check(gate: &Gate, token: &str) -> Result<String, AuthError> {
    gate.check_async(&headers(token))
        .await
        .map(|p| p.expect("a principal").subject().to_owned())
}

/// Whether the gate answered from the verifier's cache (no future to wait for).
fn answered_from_cache(gate: &Gate, token: &str) -> bool {
    matches!(gate.check(&headers(token)), Check::Ready(_))
}

const REVOKED: AuthError = AuthError::InvalidToken(TokenError::Revoked);

#[tokio::test]
async fn a_cached_token_is_refused_once_its_jti_is_revoked() {
    let (signer, jwt) = signer_and_jwt();
    let denylist = MemoryDenylist::new();
    let gate = Gate::builder(jwt).denylist(denylist.clone()).build();
    let t1 = mint(&signer, "alice", "t-1", now());
    let t2 = mint(&signer, "alice", "t-2", now());
    assert_eq!(check(&gate, &t1).await.as_deref(), Ok("alice"));
    assert!(
        answered_from_cache(&gate, &t1),
        "the second request is answered from the cache"
    );

    denylist
        .revoke(Revocation::jti("t-1"), now() + 300)
        .expect("revoke");
    assert_eq!(check(&gate, &t1).await, Err(REVOKED));
    assert_eq!(check(&gate, &t2).await.as_deref(), Ok("alice"));
}

#[tokio::test]
async fn a_token_revoked_by_its_hash_is_refused_and_others_are_not() {
    let (signer, jwt) = signer_and_jwt();
    let denylist = MemoryDenylist::new();
    let gate = Gate::builder(jwt).denylist(denylist.clone()).build();
    let t1 = mint(&signer, "alice", "a", now());
    let t2 = mint(&signer, "alice", "b", now());
    denylist
        .revoke(Revocation::token(&t1), now() + 300)
        .expect("revoke");
    // First verification (the slow path) and the cached one are both refused.
    assert_eq!(check(&gate, &t1).await, Err(REVOKED));
    assert_eq!(check(&gate, &t1).await, Err(REVOKED));
    assert_eq!(check(&gate, &t2).await.as_deref(), Ok("alice"));
}

#[tokio::test]
async fn logging_a_subject_out_refuses_its_older_tokens_only() {
    let (signer, jwt) = signer_and_jwt();
    let denylist = MemoryDenylist::new();
    let gate = Gate::builder(jwt).denylist(denylist.clone()).build();
    let cut = now();
    let old = mint(&signer, "alice", "old", cut - 10);
    let new = mint(&signer, "alice", "new", cut);
    let bob = mint(&signer, "bob", "bob", cut - 10);
    assert!(check(&gate, &old).await.is_ok());
    denylist
        .revoke(Revocation::subject("alice", cut), cut + 3600)
        .expect("revoke");
    assert_eq!(check(&gate, &old).await, Err(REVOKED));
    assert_eq!(check(&gate, &new).await.as_deref(), Ok("alice"));
    assert_eq!(check(&gate, &bob).await.as_deref(), Ok("bob"));
}

#[tokio::test]
async fn without_a_denylist_nothing_is_refused_as_revoked() {
    let (signer, jwt) = signer_and_jwt();
    let gate = Gate::builder(jwt).build();
    let t = mint(&signer, "alice", "t", now());
    assert!(check(&gate, &t).await.is_ok());
    assert!(check(&gate, &t).await.is_ok());
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use auth_core::revocation::redis::RedisDenylist;
    use auth_core::revocation::{Denylist as _, RevocationError};
    use std::time::{Duration, Instant};

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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        format!("test:{}:{nanos}:{tag}:", std::process::id())
    }

    async fn cleanup(url: &str, prefix: &str) {
        let client = redis::Client::open(url).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let () = redis::cmd("DEL")
            .arg(format!("{prefix}entries"))
            .arg(format!("{prefix}version"))
            .query_async(&mut conn)
            .await
            .expect("del");
    }

    async fn connect(url: &str, prefix: &str) -> RedisDenylist {
        RedisDenylist::builder(url)
            .prefix(prefix)
            .poll_interval(Duration::from_millis(50))
            .connect()
            .await
            .expect("connect")
    }

    #[tokio::test]
    async fn a_revocation_reaches_every_replica_within_the_poll_interval() {
        let Some(url) = redis_url("a_revocation_reaches_every_replica") else {
            return;
        };
        let prefix = unique_prefix("replicas");
        let a = connect(&url, &prefix).await;
        let b = connect(&url, &prefix).await;
        let (signer, jwt) = signer_and_jwt();
        let gate_b = Gate::builder(jwt).denylist(b.clone()).build();
        let t1 = mint(&signer, "alice", "r-1", now());
        let t2 = mint(&signer, "alice", "r-2", now());
        assert!(check(&gate_b, &t1).await.is_ok());

        a.revoke(Revocation::jti("r-1"), now() + 300)
            .await
            .expect("revoke");
        let started = Instant::now();
        while check(&gate_b, &t1).await.is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "replica b never saw the revocation"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(check(&gate_b, &t1).await, Err(REVOKED));
        assert!(check(&gate_b, &t2).await.is_ok());

        // A replica started later loads what is there.
        let c = connect(&url, &prefix).await;
        let p = auth_core::Principal::builder("alice", auth_core::AuthMethod::Jwt)
            .claims(auth_core::Claims::new(
                json!({"jti": "r-1"}).as_object().cloned().expect("object"),
            ))
            .build();
        assert!(c.is_revoked(&p, None));
        cleanup(&url, &prefix).await;
    }

    #[tokio::test]
    async fn entries_expire_and_the_set_is_pruned() {
        let Some(url) = redis_url("entries_expire") else {
            return;
        };
        let prefix = unique_prefix("expiry");
        let a = connect(&url, &prefix).await;
        a.revoke(Revocation::jti("short"), now() + 1)
            .await
            .expect("revoke");
        a.revoke(Revocation::subject("bob", now()), now() + 600)
            .await
            .expect("revoke");
        // Already expired: nothing to store.
        a.revoke(Revocation::jti("past"), now() - 1)
            .await
            .expect("revoke");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        a.revoke(Revocation::token("opaque"), now() + 600)
            .await
            .expect("revoke");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}entries"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .expect("zrange");
        assert_eq!(members.len(), 2, "the expired jti was pruned: {members:?}");
        assert!(members.iter().all(|m| !m.starts_with("j:")));
        a.sync().await.expect("sync");
        assert_eq!(a.local().len(), 2);
        cleanup(&url, &prefix).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_clear_error() {
        let err = RedisDenylist::builder("redis://:hunter2@127.0.0.1:1")
            .timeout(Duration::from_millis(200))
            .connect()
            .await
            .expect_err("nothing listens on port 1");
        let RevocationError::Unavailable(text) = &err else {
            panic!("unexpected error {err:?}");
        };
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
}

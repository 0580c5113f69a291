//! `auth_core::jwks::JwksCache` behind `auth_core::jwt::Jwt`, against the in-process
//! [`JwksServer`]: key discovery, unknown-`kid` floods, rotation, removal, outages, slow and
//! hostile endpoints, `Cache-Control`, and OIDC discovery.

#![allow(clippy::unwrap_used)]

use auth_core::jwks::JwksCache;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::{Algorithm, AuthError, TokenError};
use auth_tests::{JwksServer, Mode, TestIssuer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "test-api";

/// An issuer whose keys the server publishes.
async fn published() -> (TestIssuer, JwksServer) {
    let issuer = TestIssuer::new(ISSUER, AUDIENCE);
    let server = JwksServer::start_with(issuer.jwks()).await;
    (issuer, server)
}

/// A verifier of `issuer`'s tokens using `cache`.
fn verifier(issuer: &TestIssuer, cache: &JwksCache) -> Jwt {
    Jwt::builder()
        .issuer(
            Issuer::new(issuer.issuer())
                .audience(issuer.audience())
                .jwks(cache.clone()),
        )
        .build()
        .unwrap()
}

/// Waits until `cond` holds, polling every 20 ms; panics with `what` after `limit`.
async fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the cache's first fetch to have brought `n` keys.
async fn wait_for_keys(cache: &JwksCache, n: usize) {
    wait_for(Duration::from_secs(5), "the initial JWKS fetch", || {
        cache.keys().len() == n
    })
    .await;
}

fn invalid(e: TokenError) -> AuthError {
    AuthError::InvalidToken(e)
}

/// A random key id that no issuer uses.
fn random_kid() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    format!(
        "unknown-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// (a) Tokens from each published key verify, and the principal carries the claims.
#[tokio::test]
async fn token_from_published_key_verifies() {
    let (issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url()).build().unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;

    for (alg, kid) in [
        (Algorithm::RS256, TestIssuer::RSA_KID),
        (Algorithm::ES256, TestIssuer::EC_KID),
        (Algorithm::EdDSA, TestIssuer::ED_KID),
    ] {
        let token = issuer.mint_with_alg(alg, json!({"sub": format!("user-{kid}")}));
        let principal = jwt
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_eq!(principal.subject(), format!("user-{kid}"));
        assert_eq!(principal.key_id(), Some(kid));
        assert_eq!(principal.issuer(), Some(ISSUER));
        assert!(principal.has_scope("read") && principal.has_scope("write"));
    }

    // A key that claims a published `kid` but is not the published key: bad signature.
    let impostor =
        TestIssuer::with_keys(ISSUER, AUDIENCE, &[(Algorithm::ES256, TestIssuer::EC_KID)]);
    assert_eq!(
        jwt.verify(&impostor.token()).await.unwrap_err(),
        invalid(TokenError::BadSignature)
    );
    // The published key, but a token for another audience.
    let other_aud = issuer.mint(json!({"aud": "another-api"}));
    assert_eq!(
        jwt.verify(&other_aud).await.unwrap_err(),
        invalid(TokenError::InvalidAudience)
    );
    assert_eq!(server.fetch_count(), 1, "one fetch serves every known key");
}

/// (b) A flood of tokens naming unknown `kid`s is refused without flooding the issuer: fetches
/// are single-flight and rate-limited by `unknown_kid_cooldown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_is_refused_without_flooding_the_endpoint() {
    const TOKENS: usize = 500;
    const CONCURRENCY: usize = 50;
    let cooldown = Duration::from_millis(500);
    let (issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url())
        .unknown_kid_cooldown(cooldown)
        .build()
        .unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;
    assert_eq!(server.fetch_count(), 1);

    let claims = issuer.claims(Value::Null);
    let tokens: Vec<String> = (0..TOKENS)
        .map(|_| {
            let header = json!({"alg": "ES256", "typ": "JWT", "kid": random_kid()});
            issuer.mint_raw(TestIssuer::EC_KID, &header, &claims)
        })
        .collect();
    // Past the cooldown, so the flood may cause (exactly) one fetch, shared by everyone.
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;

    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for token in tokens {
        let jwt = jwt.clone();
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let result = jwt.verify(&token).await;
            drop(permit);
            result
        });
    }
    let mut refused = 0;
    while let Some(result) = tasks.join_next().await {
        assert_eq!(
            result.unwrap().unwrap_err(),
            invalid(TokenError::UnknownKey)
        );
        refused += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(refused, TOKENS);
    let fetches = server.fetch_count();
    assert!(
        (2..=3).contains(&fetches),
        "{fetches} JWKS fetches for {TOKENS} unknown kids in {elapsed:?} (initial + at most 2)"
    );
    assert_eq!(cache.fetch_count(), fetches);

    // Known keys kept working throughout.
    jwt.verify(&issuer.token()).await.unwrap();
}

/// (c) A key added to the JWKS is picked up when a token names it, once the cooldown allows a
/// fetch, without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_new_key_is_accepted_without_restart() {
    let cooldown = Duration::from_millis(200);
    let (mut issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url())
        .unknown_kid_cooldown(cooldown)
        .build()
        .unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;
    let old_token = issuer.token();
    jwt.verify(&old_token).await.unwrap();

    issuer.add_key(Algorithm::ES256, "test-ec-2");
    let new_token = issuer.mint_with_key("test-ec-2", json!({"sub": "rotated"}));
    server.set_jwks(issuer.jwks());
    let published_at = Instant::now();

    // Within the cooldown of the last fetch, an unknown kid may be refused; past it, the token
    // triggers a fetch and is accepted.
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let principal = loop {
        match jwt.verify(&new_token).await {
            Ok(p) => break p,
            Err(e) => {
                assert_eq!(e, invalid(TokenError::UnknownKey));
                assert!(
                    published_at.elapsed() < Duration::from_secs(3),
                    "new key not accepted 3 s after it was published"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(principal.subject(), "rotated");
    assert_eq!(principal.key_id(), Some("test-ec-2"));
    assert_eq!(cache.keys().len(), 4);
    assert_eq!(server.fetch_count(), 2, "one fetch for the new kid");
    // The old keys still verify, and the old token still comes from the cache.
    jwt.verify(&old_token).await.unwrap();
    jwt.verify(&issuer.mint_with_alg(Algorithm::EdDSA, Value::Null))
        .await
        .unwrap();
}

/// (d) A key removed from the JWKS is refused after the next refresh, including for a token
/// verified (and cached) before: here the refresh is explicit.
#[tokio::test]
async fn removal_after_explicit_refresh_voids_cached_tokens() {
    let (mut issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url()).build().unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;

    let doomed = issuer.mint_with_key(TestIssuer::EC_KID, Value::Null);
    let kept = issuer.mint_with_key(TestIssuer::ED_KID, Value::Null);
    jwt.verify(&doomed).await.unwrap();
    jwt.verify(&kept).await.unwrap();
    assert!(jwt.verify_cached(&doomed).is_some_and(|r| r.is_ok()));

    let removed = issuer.remove_key(TestIssuer::EC_KID).unwrap();
    server.set_jwks(issuer.jwks());
    assert!(cache.refresh().await, "refresh against a healthy endpoint");
    assert_eq!(cache.keys().len(), 2);

    assert!(
        jwt.verify_cached(&doomed).is_none(),
        "the cached verification must be void"
    );
    assert_eq!(
        jwt.verify(&doomed).await.unwrap_err(),
        invalid(TokenError::UnknownKey)
    );
    // A token signed with the removed key after its removal is refused too.
    let fresh = auth_tests::fixtures::issuer::sign(&removed, &issuer.claims(Value::Null));
    assert_eq!(
        jwt.verify(&fresh).await.unwrap_err(),
        invalid(TokenError::UnknownKey)
    );
    // The key that stayed keeps its cached verifications.
    assert!(jwt.verify_cached(&kept).is_some_and(|r| r.is_ok()));
    jwt.verify(&kept).await.unwrap();
}

/// (d) As above, with the background refresh (`refresh_interval` 1 s) doing the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_after_background_refresh_voids_cached_tokens() {
    let (mut issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url())
        .refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;

    let doomed = issuer.mint_with_key(TestIssuer::RSA_KID, Value::Null);
    jwt.verify(&doomed).await.unwrap();
    issuer.remove_key(TestIssuer::RSA_KID).unwrap();
    server.set_jwks(issuer.jwks());
    let fetches = server.fetch_count();

    wait_for(Duration::from_secs(4), "the background refresh", || {
        cache.keys().len() == 2
    })
    .await;
    assert!(server.fetch_count() > fetches);
    assert_eq!(
        jwt.verify(&doomed).await.unwrap_err(),
        invalid(TokenError::UnknownKey)
    );
    jwt.verify(&issuer.token()).await.unwrap();
}

/// (e) When the endpoint fails or answers garbage after keys were fetched, the keys held keep
/// working (fresh, uncached tokens verify), and unknown kids are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_or_garbage_keeps_known_keys() {
    let (issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url())
        .refresh_interval(Duration::from_secs(1))
        .unknown_kid_cooldown(Duration::from_millis(100))
        .build()
        .unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;
    jwt.verify(&issuer.token()).await.unwrap();

    for mode in [
        Mode::Fail,
        Mode::Garbage,
        Mode::Huge(1024 * 1024),
        Mode::HugeDeclared(1024 * 1024),
    ] {
        server.set_mode(mode);
        let before = server.fetch_count();
        assert!(!cache.refresh().await, "{mode:?}: the refresh must fail");
        assert!(
            server.fetch_count() > before,
            "{mode:?}: the endpoint was asked"
        );
        assert_eq!(cache.keys().len(), 3, "{mode:?}: keys kept");
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            // A new token each time (different `iat`/`sub`), so the cache cannot answer.
            let token = issuer.mint_with_alg(alg, json!({"sub": format!("{mode:?}-{alg:?}")}));
            assert!(jwt.verify_cached(&token).is_none());
            let p = jwt
                .verify(&token)
                .await
                .unwrap_or_else(|e| panic!("{mode:?} {alg:?}: {e:?}"));
            assert_eq!(p.subject(), format!("{mode:?}-{alg:?}"));
        }
        // An unknown kid may cause a fetch (which fails), and is refused.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let header = json!({"alg": "ES256", "kid": random_kid()});
        let unknown = issuer.mint_raw(TestIssuer::EC_KID, &header, &issuer.claims(Value::Null));
        assert_eq!(
            jwt.verify(&unknown).await.unwrap_err(),
            invalid(TokenError::UnknownKey)
        );
    }

    // Let the background loop fail a few times too; the keys stay.
    server.set_mode(Mode::Fail);
    let before = server.fetch_count();
    wait_for(Duration::from_secs(4), "background retries", || {
        server.fetch_count() >= before + 2
    })
    .await;
    assert_eq!(cache.keys().len(), 3);
    jwt.verify(&issuer.mint(json!({"sub": "still-up"})))
        .await
        .unwrap();

    // Recovery: the next good fetch succeeds and the keys are the same.
    server.set_mode(Mode::Normal);
    assert!(cache.refresh().await);
    assert_eq!(cache.keys().len(), 3);
}

/// (e) Past `max_staleness` without a good fetch, held keys are dropped: the cache fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_dropped_after_max_staleness() {
    let (issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url())
        .max_staleness(Duration::from_secs(1))
        .build()
        .unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;
    let token = issuer.token();
    jwt.verify(&token).await.unwrap();

    server.set_mode(Mode::Fail);
    assert!(!cache.refresh().await);
    assert_eq!(cache.keys().len(), 3, "still within max_staleness");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!cache.refresh().await);
    assert!(cache.keys().is_empty(), "stale keys must be dropped");
    // The cached verification made with a dropped key is void, and with no key held at all the
    // verifier cannot decide: it fails closed with 503, not 401.
    assert!(jwt.verify_cached(&token).is_none());
    let err = jwt.verify(&token).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(err.http_status(), 503);

    // Once the endpoint is back, keys and verification are back.
    server.set_mode(Mode::Normal);
    assert!(cache.refresh().await);
    jwt.verify(&token).await.unwrap();
}

/// (f) While a refresh is stalled on a slow endpoint, tokens of known keys verify at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_does_not_delay_known_keys() {
    let (issuer, server) = published().await;
    let cache = JwksCache::builder(server.jwks_url()).build().unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;
    jwt.verify(&issuer.token()).await.unwrap();

    server.set_mode(Mode::Stall(Duration::from_secs(3)));
    let before = server.fetch_count();
    let refresh = tokio::spawn({
        let cache = cache.clone();
        async move {
            let started = Instant::now();
            (cache.refresh().await, started.elapsed())
        }
    });
    wait_for(
        Duration::from_secs(2),
        "the stalled request to arrive",
        || server.fetch_count() > before,
    )
    .await;

    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = issuer.mint_with_alg(alg, json!({"sub": format!("slow-{alg:?}")}));
        let started = Instant::now();
        let principal = jwt.verify(&token).await.unwrap();
        let took = started.elapsed();
        assert_eq!(principal.subject(), format!("slow-{alg:?}"));
        assert!(
            took < Duration::from_millis(500),
            "{alg:?}: verification took {took:?} while a refresh was stalled"
        );
    }
    assert!(
        !refresh.is_finished(),
        "the refresh should still be stalled"
    );

    let (ok, took) = refresh.await.unwrap();
    assert!(
        ok,
        "the stalled refresh eventually succeeds (timeout is 5 s)"
    );
    assert!(
        took >= Duration::from_secs(2),
        "the refresh did stall ({took:?})"
    );
}

/// (g) `Cache-Control: max-age` drives the background refresh (bounded below by `min_refresh`);
/// without it, `refresh_interval` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_max_age_is_respected() {
    let issuer = TestIssuer::new(ISSUER, AUDIENCE);
    let with_max_age = JwksServer::start_with(issuer.jwks()).await;
    with_max_age.set_max_age(Some(1));
    let without = JwksServer::start_with(issuer.jwks()).await;

    let build = |url: String| {
        JwksCache::builder(url)
            .min_refresh(Duration::from_secs(1))
            .refresh_interval(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let a = build(with_max_age.jwks_url());
    let b = build(without.jwks_url());
    wait_for_keys(&a, 3).await;
    wait_for_keys(&b, 3).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (fa, fb) = (with_max_age.fetch_count(), without.fetch_count());
    assert!(
        (3..=4).contains(&fa),
        "max-age=1: expected a fetch about every second, got {fa} in ~2.5 s"
    );
    assert_eq!(fb, 1, "no max-age: refresh_interval (60 s) applies");

    // max-age below min_refresh is raised to it.
    let floor = JwksServer::start_with(issuer.jwks()).await;
    floor.set_max_age(Some(0));
    let c = JwksCache::builder(floor.jwks_url())
        .min_refresh(Duration::from_secs(2))
        .build()
        .unwrap();
    wait_for_keys(&c, 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        floor.fetch_count(),
        1,
        "max-age=0 clamped to min_refresh 2 s"
    );
}

/// (h) OIDC discovery finds the JWKS; a discovery document naming another issuer is refused.
#[tokio::test]
async fn oidc_discovery() {
    let server = JwksServer::start().await;
    // The issuer identifier is the server's own URL, as in real OIDC deployments.
    let issuer = TestIssuer::new(server.url(), AUDIENCE);
    server.set_jwks(issuer.jwks());

    let cache = JwksCache::discover(server.url()).build().unwrap();
    let jwt = verifier(&issuer, &cache);
    wait_for_keys(&cache, 3).await;
    let principal = jwt.verify(&issuer.token()).await.unwrap();
    assert_eq!(principal.issuer(), Some(server.url().as_str()));
    assert_eq!(server.discovery_count(), 1);
    assert_eq!(server.fetch_count(), 1);
    assert_eq!(cache.fetch_count(), 2, "discovery + JWKS");
    // The discovered jwks_uri is remembered: a refresh fetches only the JWKS.
    assert!(cache.refresh().await);
    assert_eq!((server.discovery_count(), server.fetch_count()), (1, 2));

    // A document whose `issuer` is not the one asked for is refused, and its jwks_uri unused.
    let evil = JwksServer::start().await;
    evil.set_jwks(issuer.jwks());
    evil.set_discovery_issuer(Some(server.url()));
    let cache = JwksCache::discover(evil.url()).build().unwrap();
    wait_for(Duration::from_secs(5), "the discovery request", || {
        evil.discovery_count() >= 1
    })
    .await;
    assert!(!cache.refresh().await);
    assert!(cache.keys().is_empty());
    assert_eq!(evil.fetch_count(), 0, "the JWKS must not be fetched");
    let other = TestIssuer::new(evil.url(), AUDIENCE);
    let jwt = verifier(&other, &cache);
    // No key was ever held: the verifier cannot decide and fails closed with 503.
    let err = jwt.verify(&other.token()).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(err.http_status(), 503);
}

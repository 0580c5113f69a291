//! Signing-key rotation for services that issue their own tokens: [`KeyRotator`].
//!
//! A rotator keeps a *ring* of keys in a [`SigningKeyStore`] shared by every process of the
//! service (in memory, SQLite or PostgreSQL; see [`store`] and `sql`):
//!
//! - a **`next`** key is generated and published (in [`KeyRotator::jwks`]) at least
//!   [`RotationPolicy::publish_ahead`] before it signs anything;
//! - at its `activate_at` it becomes **`current`**, the one key that signs, every
//!   [`RotationPolicy::every`];
//! - the previous key becomes **`retired`**: still published, until `retire_at` = when it
//!   stopped signing + the longest token lifetime + leeway, so that every token it signed is
//!   verifiable until it expires; then it is deleted.
//!
//! The key id is the RFC 7638 thumbprint of the public key ([`thumbprint`]).
//!
//! **Timing.** `publish_ahead` must be at least the longest time a verifier keeps a JWKS
//! before fetching it again (the `refresh_interval` of a `JwksCache`, feature `jwks`, or the
//! `max-age` you serve the JWKS with, plus any HTTP cache in between): then every verifier knows a key before the first token it signed
//! arrives. A verifier that still meets an unknown `kid` fetches again (rate-limited), so a
//! late refresh costs a fetch, not a rejection. The `leeway` must be at least the verifiers'
//! clock-skew leeway (60 s by default in [`jwt::Issuer`](crate::jwt::Issuer)).
//!
//! **Several processes.** Every change is committed only if the ring did not change since it
//! was read (a generation number, compared and incremented in the same transaction); a
//! process that loses the race reloads and finds the work done. The store refuses a second
//! `current` or `next` key whatever happens. Between reloads, a process switches to the `next`
//! key on its own at `activate_at`, so all processes stop signing with the old key at the same
//! time (up to clock skew, which the leeway covers).
//!
//! **Secrets.** Private keys are kept in the store (PKCS#8): protect it like any other secret
//! (database credentials, backups). Nothing here logs or displays key material; logs name keys
//! by their id only.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::rotation::store::MemorySigningKeyStore;
//! use auth_core::rotation::{KeyRotator, RotationPolicy};
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//!
//! let policy = RotationPolicy::every(Duration::from_secs(24 * 3600))
//!     .publish_ahead(Duration::from_secs(3600))
//!     .max_token_lifetime(Duration::from_secs(900));
//! let rotator = Arc::new(
//!     KeyRotator::open(Arc::new(MemorySigningKeyStore::new()), policy).await.unwrap(),
//! );
//! // In a service: `let task = rotator.clone().spawn(Duration::from_secs(30));`
//! rotator.tick(SystemTime::now()).await.unwrap();
//!
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").rotating(rotator.clone()))
//!     .build()
//!     .unwrap();
//! let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
//! let token = rotator.signer()
//!     .sign(&serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "exp": now + 60}))
//!     .unwrap();
//! assert_eq!(jwt.verify(&token).await.unwrap().subject(), "alice");
//!
//! // An unknown key is refused (after at most one, rate-limited, reload from the store).
//! let other = auth_core::issuer::SigningKey::generate(jsonwebtoken::Algorithm::ES256, "x").unwrap();
//! let forged = other
//!     .sign(&serde_json::json!({"iss": "https://issuer.example", "sub": "eve", "exp": now + 60}))
//!     .unwrap();
//! assert!(jwt.verify(&forged).await.is_err());
//! # }
//! ```

pub mod store;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use crate::error::BuildError;
use crate::issuer::SigningKey;
use crate::keys::{KeySet, MAX_KEYS, algorithm_name};
use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{Change, KeyInfo, KeyState, SigningKeyStore, Snapshot, StoredKey};

/// Errors of key rotation. Their text names no key material and is safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The store failed (connection, query); the detail is for logs.
    #[error("signing-key store unavailable: {0}")]
    Store(String),
    /// A key could not be generated, read or used.
    #[error("signing key: {0}")]
    Key(#[from] BuildError),
    /// The policy is unusable.
    #[error("rotation policy: {0}")]
    Policy(String),
    /// The store holds keys but none that can sign.
    #[error("the signing-key store holds no usable current key")]
    NoCurrentKey,
    /// Other processes kept changing the ring while this one tried to.
    #[error("the signing-key ring kept changing; try again")]
    Contended,
}

/// When keys are rotated and how long they stay published. See the [module docs](self) for
/// how to choose the durations.
#[derive(Debug, Clone)]
#[must_use]
pub struct RotationPolicy {
    rotate_every: Option<Duration>,
    publish_ahead: Duration,
    max_token_lifetime: Duration,
    leeway: Duration,
    algorithm: Algorithm,
    unknown_kid_cooldown: Duration,
}

impl RotationPolicy {
    /// Rotates every `rotate_every`; `publish_ahead` defaults to the smaller of `rotate_every`
    /// and 1 h, the longest token lifetime to 1 h, the leeway to 60 s, the algorithm to ES256.
    pub fn every(rotate_every: Duration) -> Self {
        Self {
            rotate_every: Some(rotate_every),
            publish_ahead: rotate_every.min(Duration::from_secs(3600)),
            ..Self::never()
        }
    }

    /// Never rotates: one key, kept in the store (keys other processes schedule are still
    /// promoted and retired on time).
    pub fn never() -> Self {
        Self {
            rotate_every: None,
            publish_ahead: Duration::from_secs(3600),
            max_token_lifetime: Duration::from_secs(3600),
            leeway: Duration::from_secs(60),
            algorithm: Algorithm::ES256,
            unknown_kid_cooldown: Duration::from_secs(1),
        }
    }

    /// How long a key is published before it signs: at least the verifiers' JWKS refresh
    /// interval, at most the rotation interval.
    pub fn publish_ahead(mut self, d: Duration) -> Self {
        self.publish_ahead = d;
        self
    }

    /// The longest lifetime of a token signed by this issuer (the caller mints no longer ones;
    /// see [`KeyRotator::max_token_lifetime`]).
    pub fn max_token_lifetime(mut self, d: Duration) -> Self {
        self.max_token_lifetime = d;
        self
    }

    /// Extra time a retired key stays published: at least the verifiers' clock-skew leeway.
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// The algorithm of new keys: ES256 (default), ES384, RS256, RS384, RS512, PS256, PS384,
    /// PS512 or EdDSA. Symmetric algorithms are refused (their keys cannot be published).
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.algorithm = alg;
        self
    }

    /// The least time between two reloads caused by tokens naming an unknown key (default 1 s).
    pub fn unknown_kid_cooldown(mut self, d: Duration) -> Self {
        self.unknown_kid_cooldown = d;
        self
    }

    /// The rotation interval, `None` when keys are not rotated.
    pub fn rotate_every(&self) -> Option<Duration> {
        self.rotate_every
    }

    /// The algorithm of new keys.
    pub fn key_algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Checks the policy.
    ///
    /// # Errors
    ///
    /// [`RotationError::Policy`] for a symmetric or unknown algorithm, a zero duration, a
    /// `publish_ahead` longer than the rotation interval, or a rotation so frequent for the
    /// token lifetime that more than [`MAX_KEYS`] keys would be published at once.
    pub fn validate(&self) -> Result<(), RotationError> {
        let bad = |m: String| Err(RotationError::Policy(m));
        if !matches!(
            self.algorithm,
            Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::EdDSA
        ) {
            return bad(format!(
                "algorithm {} cannot be published (use ES256, RS256, PS256 or EdDSA)",
                algorithm_name(self.algorithm)
            ));
        }
        const LONGEST: Duration = Duration::from_secs(10 * 366 * 86_400);
        if self.max_token_lifetime.is_zero() || self.max_token_lifetime > LONGEST {
            return bad("the longest token lifetime must be between 1 ms and 10 years".into());
        }
        if self.leeway > LONGEST || self.unknown_kid_cooldown > LONGEST {
            return bad("leeway and cool-down must be below 10 years".into());
        }
        let Some(every) = self.rotate_every else {
            return Ok(());
        };
        if every.is_zero() || every > LONGEST {
            return bad("the rotation interval must be between 1 ms and 10 years".into());
        }
        if self.publish_ahead.is_zero() || self.publish_ahead > every {
            return bad(
                "publish_ahead must be above zero and at most the rotation interval".into(),
            );
        }
        // One current, one next, one retired per interval of the retention, and one more for
        // ticks that run late.
        let retained = (self.max_token_lifetime + self.leeway).as_millis();
        let retired = retained.div_ceil(every.as_millis());
        let published = retired.saturating_add(3);
        if published > MAX_KEYS as u128 {
            return bad(format!(
                "rotating every {every:?} with tokens living {:?} (+{:?} leeway) would publish \
                 {published} keys at once (at most {MAX_KEYS}): rotate less often or mint \
                 shorter-lived tokens",
                self.max_token_lifetime, self.leeway
            ));
        }
        Ok(())
    }
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK (`EC`, `RSA` or `OKP`);
/// `None` for other key types or a JWK missing a member.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let m = |k: &str| jwk.get(k).and_then(Value::as_str);
    // Members in lexicographic order, no whitespace (RFC 7638 section 3).
    let canonical = match m("kty")? {
        "EC" => json!({"crv": m("crv")?, "kty": "EC", "x": m("x")?, "y": m("y")?}),
        "RSA" => json!({"e": m("e")?, "kty": "RSA", "n": m("n")?}),
        "OKP" => json!({"crv": m("crv")?, "kty": "OKP", "x": m("x")?}),
        _ => return None,
    };
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    Some(URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Milliseconds since the Unix epoch (0 before it).
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A private key loaded with its thumbprint as key id.
fn with_thumbprint_kid(alg: Algorithm, der: &[u8]) -> Result<SigningKey, BuildError> {
    let probe = SigningKey::from_pkcs8(alg, "pending", der)?;
    let kid = thumbprint(&probe.public_jwk()).ok_or_else(|| BuildError::InvalidKey {
        kid: None,
        reason: "no thumbprint for this key type".into(),
    })?;
    SigningKey::from_pkcs8(alg, kid, der)
}

/// A fresh key of the policy's algorithm, in its stored form.
fn generate(
    policy: &RotationPolicy,
    state: KeyState,
    now: i64,
    activate_at: i64,
) -> Result<StoredKey, RotationError> {
    let fresh = SigningKey::generate(policy.algorithm, "pending")?;
    let der = fresh.to_pkcs8()?;
    let key = with_thumbprint_kid(policy.algorithm, &der)?;
    Ok(StoredKey {
        info: KeyInfo {
            kid: key.kid().to_owned(),
            alg: policy.algorithm,
            state,
            created_at: now,
            activate_at,
            deactivated_at: None,
            retire_at: None,
            max_token_lifetime: ms(policy.max_token_lifetime),
        },
        private_key: der,
    })
}

/// The changes due at `now` (empty when none): delete expired retired keys, promote a due
/// `next` key, generate a `next` key when one is due, or a first key for an empty ring.
fn plan(
    keys: &[StoredKey],
    now: i64,
    policy: &RotationPolicy,
) -> Result<Vec<Change>, RotationError> {
    let mut changes = Vec::new();
    for k in keys.iter().map(|k| &k.info) {
        if k.state == KeyState::Retired && k.retire_at.is_none_or(|r| r <= now) {
            changes.push(Change::Delete { kid: k.kid.clone() });
        }
    }
    let find = |s| keys.iter().map(|k| &k.info).find(|k| k.state == s);
    let (current_since, has_next) = match (find(KeyState::Current), find(KeyState::Next)) {
        (None, None) => {
            changes.push(Change::Insert(generate(
                policy,
                KeyState::Current,
                now,
                now,
            )?));
            (now, false)
        }
        // Nobody can sign: promote at once.
        (None, Some(n)) => {
            changes.push(Change::Promote { kid: n.kid.clone() });
            (n.activate_at.min(now), false)
        }
        (Some(c), Some(n)) if now >= n.activate_at => {
            let retain = c
                .max_token_lifetime
                .max(0)
                .saturating_add(ms(policy.leeway));
            changes.push(Change::Retire {
                kid: c.kid.clone(),
                deactivated_at: now,
                retire_at: now.saturating_add(retain),
            });
            changes.push(Change::Promote { kid: n.kid.clone() });
            (n.activate_at, false)
        }
        (Some(c), n) => (c.activate_at, n.is_some()),
    };
    if let Some(every) = policy.rotate_every
        && !has_next
    {
        let (every, ahead) = (ms(every), ms(policy.publish_ahead));
        let due = current_since.saturating_add(every);
        if now >= due.saturating_sub(ahead) {
            let activate_at = due.max(now.saturating_add(ahead));
            changes.push(Change::Insert(generate(
                policy,
                KeyState::Next,
                now,
                activate_at,
            )?));
        }
    }
    Ok(changes)
}

/// A key that signs (or will), with its schedule.
struct Slot {
    key: Arc<SigningKey>,
    activate_at: i64,
    max_token_lifetime: Duration,
}

/// The ring as loaded: what signs, what verifies, what is published.
struct Ring {
    generation: i64,
    current: Slot,
    next: Option<Slot>,
    infos: Vec<KeyInfo>,
    signing: HashMap<String, Arc<SigningKey>>,
    key_set: Arc<KeySet>,
    jwks: Value,
}

impl Ring {
    /// Builds a ring from a snapshot, reusing the key objects of `old` for keys it held (so
    /// that verifications cached with them stay valid).
    fn build(snapshot: Snapshot, old: Option<&Ring>) -> Result<Self, RotationError> {
        let mut keys = snapshot.keys;
        // current, next, then retired keys newest first.
        let rank = |s: KeyState| match s {
            KeyState::Current => 0,
            KeyState::Next => 1,
            KeyState::Retired => 2,
        };
        keys.sort_by(|a, b| {
            rank(a.info.state)
                .cmp(&rank(b.info.state))
                .then(b.info.activate_at.cmp(&a.info.activate_at))
                .then(a.info.kid.cmp(&b.info.kid))
        });
        let mut signing = HashMap::new();
        let mut infos = Vec::new();
        let mut verifying = Vec::new();
        let mut jwks = Vec::new();
        let (mut current, mut next) = (None, None);
        for stored in keys {
            let info = stored.info;
            let reused = old
                .and_then(|o| o.signing.get(&info.kid))
                .filter(|k| k.algorithm() == info.alg);
            let key = match reused {
                Some(k) => k.clone(),
                None => match with_thumbprint_kid(info.alg, &stored.private_key) {
                    Ok(k) if k.kid() == info.kid => Arc::new(k),
                    Ok(_) => {
                        tracing::error!(target: "auth::rotation", kid = %info.kid, "stored key id is not the key's thumbprint; key skipped");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(target: "auth::rotation", kid = %info.kid, error = %e, "stored key unusable; key skipped");
                        continue;
                    }
                },
            };
            let vk = old
                .and_then(|o| {
                    o.key_set
                        .keys()
                        .iter()
                        .find(|v| v.kid() == Some(info.kid.as_str()))
                        .cloned()
                })
                .map_or_else(|| key.verifying_key().map(Arc::new), Ok)?;
            let slot = || Slot {
                key: key.clone(),
                activate_at: info.activate_at,
                max_token_lifetime: Duration::from_millis(
                    u64::try_from(info.max_token_lifetime).unwrap_or(0),
                ),
            };
            match info.state {
                KeyState::Current => current = Some(slot()),
                KeyState::Next => next = Some(slot()),
                KeyState::Retired => {}
            }
            jwks.push(key.public_jwk());
            verifying.push(vk);
            signing.insert(info.kid.clone(), key);
            infos.push(info);
        }
        let current = current.ok_or(RotationError::NoCurrentKey)?;
        let key_set = Arc::new(KeySet::from_arcs(verifying)?);
        Ok(Self {
            generation: snapshot.generation,
            current,
            next,
            infos,
            signing,
            key_set,
            jwks: json!({ "keys": jwks }),
        })
    }

    /// The slot that signs at `now`: the `next` key from its `activate_at` on (even before a
    /// tick promotes it), the `current` key before.
    fn signing_at(&self, now: i64) -> &Slot {
        match &self.next {
            Some(n) if now >= n.activate_at => n,
            _ => &self.current,
        }
    }
}

/// Rotates an issuer's signing keys in a [`SigningKeyStore`] and serves them: the key to sign
/// with ([`signer`](Self::signer), lock-free), the keys to verify with
/// ([`key_set`](Self::key_set), or [`jwt::Issuer::rotating`](crate::jwt::Issuer::rotating)),
/// and the JWKS to publish ([`jwks`](Self::jwks)). See the [module docs](self).
pub struct KeyRotator {
    store: Arc<dyn SigningKeyStore>,
    policy: RotationPolicy,
    ring: ArcSwap<Ring>,
    /// One load-and-install at a time in this process (ticks, reloads).
    sync: tokio::sync::Mutex<()>,
    last_unknown_reload: Mutex<Option<Instant>>,
}

impl fmt::Debug for KeyRotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.load();
        f.debug_struct("KeyRotator")
            .field("policy", &self.policy)
            .field("generation", &ring.generation)
            .field("current", &ring.current.key.kid())
            .field("keys", &ring.infos.len())
            .finish_non_exhaustive()
    }
}

impl KeyRotator {
    /// Opens the ring in `store`, generating a first (current) key when it holds none.
    ///
    /// # Errors
    ///
    /// [`RotationError::Policy`] for an unusable policy, [`RotationError::Store`] when the
    /// store fails, [`RotationError::Key`] when a key cannot be generated or the current key
    /// cannot be read.
    pub async fn open(
        store: Arc<dyn SigningKeyStore>,
        policy: RotationPolicy,
    ) -> Result<Self, RotationError> {
        Self::open_inner(store, policy, None).await
    }

    /// [`open`](Self::open), but when the store holds no key, `first` becomes the current key
    /// (to move a key kept elsewhere into the store; its id becomes its thumbprint).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); also when `first` cannot be serialized or has a symmetric
    /// algorithm.
    pub async fn open_with_first_key(
        store: Arc<dyn SigningKeyStore>,
        policy: RotationPolicy,
        first: &SigningKey,
    ) -> Result<Self, RotationError> {
        Self::open_inner(store, policy, Some(first)).await
    }

    async fn open_inner(
        store: Arc<dyn SigningKeyStore>,
        policy: RotationPolicy,
        first: Option<&SigningKey>,
    ) -> Result<Self, RotationError> {
        policy.validate()?;
        for _ in 0..5 {
            let snapshot = store.load().await?;
            if snapshot
                .keys
                .iter()
                .any(|k| k.info.state == KeyState::Current)
            {
                let ring = Ring::build(snapshot, None)?;
                return Ok(Self {
                    store,
                    policy,
                    ring: ArcSwap::from_pointee(ring),
                    sync: tokio::sync::Mutex::new(()),
                    last_unknown_reload: Mutex::new(None),
                });
            }
            let now = millis(SystemTime::now());
            let changes = match (first, snapshot.keys.is_empty()) {
                (Some(key), true) => {
                    let der = key.to_pkcs8()?;
                    // Symmetric keys have no thumbprint: refused here.
                    let key = with_thumbprint_kid(key.algorithm(), &der)?;
                    vec![Change::Insert(StoredKey {
                        info: KeyInfo {
                            kid: key.kid().to_owned(),
                            alg: key.algorithm(),
                            state: KeyState::Current,
                            created_at: now,
                            activate_at: now,
                            deactivated_at: None,
                            retire_at: None,
                            max_token_lifetime: ms(policy.max_token_lifetime),
                        },
                        private_key: der,
                    })]
                }
                _ => plan(&snapshot.keys, now, &policy)?,
            };
            if store.commit(snapshot.generation, &changes).await? {
                tracing::info!(target: "auth::rotation", "created the first signing key");
            }
        }
        Err(RotationError::Contended)
    }

    /// The key to sign with now: lock-free. Callers mint tokens living at most
    /// [`max_token_lifetime`](Self::max_token_lifetime).
    pub fn signer(&self) -> Arc<SigningKey> {
        self.signer_at(SystemTime::now())
    }

    /// The key to sign with at `now`: the `next` key from its scheduled activation on, the
    /// `current` key before.
    pub fn signer_at(&self, now: SystemTime) -> Arc<SigningKey> {
        self.ring.load().signing_at(millis(now)).key.clone()
    }

    /// The longest lifetime of tokens signed with [`signer`](Self::signer)'s key (recorded
    /// with the key when it was generated, so every process agrees).
    pub fn max_token_lifetime(&self) -> Duration {
        self.ring
            .load()
            .signing_at(millis(SystemTime::now()))
            .max_token_lifetime
    }

    /// The JWKS to publish: the public halves of the next, current and retired keys.
    pub fn jwks(&self) -> Value {
        self.ring.load().jwks.clone()
    }

    /// The keys to verify this issuer's tokens with (next, current and retired).
    pub fn key_set(&self) -> Arc<KeySet> {
        self.ring.load().key_set.clone()
    }

    /// What is known about each key held (no private material), current first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.ring.load().infos.clone()
    }

    /// The store generation of the ring held.
    pub fn generation(&self) -> i64 {
        self.ring.load().generation
    }

    /// The policy.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// Makes the changes due at `now` (delete expired retired keys, promote a due `next` key,
    /// generate the next one), commits them, and reloads. Returns whether this call changed
    /// the store (`false` when nothing was due, or another process did it first).
    ///
    /// # Errors
    ///
    /// When the store fails or a key cannot be generated or read; the ring held is kept.
    pub async fn tick(&self, now: SystemTime) -> Result<bool, RotationError> {
        let _sync = self.sync.lock().await;
        let now = millis(now);
        for _ in 0..5 {
            let snapshot = self.store.load().await?;
            let changes = plan(&snapshot.keys, now, &self.policy)?;
            if changes.is_empty() {
                self.install(snapshot)?;
                return Ok(false);
            }
            if self.store.commit(snapshot.generation, &changes).await? {
                for c in &changes {
                    match c {
                        Change::Insert(k) => {
                            tracing::info!(target: "auth::rotation", kid = %k.info.kid, state = %k.info.state, activate_at_ms = k.info.activate_at, "signing key generated")
                        }
                        Change::Promote { kid } => {
                            tracing::info!(target: "auth::rotation", %kid, "signing key now current")
                        }
                        Change::Retire { kid, retire_at, .. } => {
                            tracing::info!(target: "auth::rotation", %kid, retire_at_ms = retire_at, "signing key retired")
                        }
                        Change::Delete { kid } => {
                            tracing::info!(target: "auth::rotation", %kid, "retired signing key removed")
                        }
                    }
                }
                let fresh = self.store.load().await?;
                self.install(fresh)?;
                return Ok(true);
            }
            tracing::debug!(target: "auth::rotation", "another process changed the ring first; reloading");
        }
        Err(RotationError::Contended)
    }

    /// Reads the ring from the store again.
    ///
    /// # Errors
    ///
    /// When the store fails or holds no usable current key; the ring held is kept.
    pub async fn reload(&self) -> Result<(), RotationError> {
        let _sync = self.sync.lock().await;
        let snapshot = self.store.load().await?;
        self.install(snapshot)
    }

    /// Installs a snapshot unless it is the generation held already; voids verifications made
    /// with keys it no longer holds.
    fn install(&self, snapshot: Snapshot) -> Result<(), RotationError> {
        let old = self.ring.load_full();
        if snapshot.generation == old.generation {
            return Ok(());
        }
        let ring = Arc::new(Ring::build(snapshot, Some(&old))?);
        old.key_set.retire_missing(&ring.key_set);
        self.ring.store(ring);
        Ok(())
    }

    /// Reloads after a token named an unknown key, at most once per
    /// [`RotationPolicy::unknown_kid_cooldown`] and once for all concurrent callers: the keys
    /// held afterwards, or `None` when no reload was allowed or it failed.
    pub(crate) async fn refresh_for_unknown_key(&self) -> Option<Arc<KeySet>> {
        let seen = self.generation();
        let _sync = self.sync.lock().await;
        if self.generation() != seen {
            return Some(self.key_set());
        }
        {
            let mut last = self
                .last_unknown_reload
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < self.policy.unknown_kid_cooldown) {
                return None;
            }
            *last = Some(Instant::now());
        }
        match self.store.load().await.and_then(|s| self.install(s)) {
            Ok(()) => Some(self.key_set()),
            Err(e) => {
                tracing::warn!(target: "auth::rotation", error = %e, "reloading the signing keys failed");
                None
            }
        }
    }

    /// Ticks every `every` in a background task (errors logged, the last good ring kept,
    /// never a panic). The task ends when the returned handle is aborted or the last other
    /// `Arc` of the rotator is dropped.
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(rotator) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = rotator.tick(SystemTime::now()).await {
                    tracing::warn!(target: "auth::rotation", error = %e, "signing-key rotation tick failed; keeping the keys held");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638, section 3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(thumbprint(&json!({"kty": "oct", "k": "x"})), None);
        assert_eq!(thumbprint(&json!({"kty": "EC", "crv": "P-256"})), None);
    }

    #[test]
    fn policies_are_checked() {
        let d = Duration::from_secs;
        assert!(RotationPolicy::every(d(3600)).validate().is_ok());
        assert!(RotationPolicy::never().validate().is_ok());
        assert!(
            RotationPolicy::every(d(60))
                .algorithm(Algorithm::HS256)
                .validate()
                .is_err()
        );
        assert!(RotationPolicy::every(d(0)).validate().is_err());
        assert!(
            RotationPolicy::every(d(60))
                .publish_ahead(d(61))
                .validate()
                .is_err()
        );
        let too_many = RotationPolicy::every(d(2)).max_token_lifetime(d(86_400));
        assert!(
            matches!(too_many.validate(), Err(RotationError::Policy(m)) if m.contains("keys at once"))
        );
        assert!(
            RotationPolicy::every(d(2))
                .max_token_lifetime(d(30))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn plan_follows_the_schedule() {
        let s = 1_000;
        let policy = RotationPolicy::every(Duration::from_secs(10))
            .publish_ahead(Duration::from_secs(4))
            .max_token_lifetime(Duration::from_secs(5))
            .leeway(Duration::from_secs(1));
        let mut keys = Vec::new();
        let run = |keys: &mut Vec<StoredKey>, now: i64| {
            let changes = plan(keys, now, &policy).unwrap();
            assert!(store::apply(keys, &changes));
            changes.len()
        };
        assert_eq!(run(&mut keys, 0), 1, "a first key");
        assert_eq!(keys[0].info.state, KeyState::Current);
        assert_eq!(run(&mut keys, 5 * s), 0, "nothing due before 10 - 4 s");
        assert_eq!(run(&mut keys, 6 * s), 1, "next published at 6 s");
        let next = keys
            .iter()
            .find(|k| k.info.state == KeyState::Next)
            .unwrap()
            .info
            .clone();
        assert_eq!(next.activate_at, 10 * s);
        assert_eq!(run(&mut keys, 9 * s), 0);
        // At 10 s: retire, promote, and (10 + 10 - 4 = 16 > 10) no new next yet.
        assert_eq!(run(&mut keys, 10 * s), 2);
        let old = keys
            .iter()
            .find(|k| k.info.state == KeyState::Retired)
            .unwrap()
            .info
            .clone();
        assert_eq!(old.retire_at, Some(16 * s));
        assert_eq!(run(&mut keys, 15 * s), 0);
        // At 16 s: the old key goes, and the next one is published.
        assert_eq!(run(&mut keys, 16 * s), 2);
        assert!(keys.iter().all(|k| k.info.kid != old.kid));
        assert_eq!(keys.len(), 2);
    }
}

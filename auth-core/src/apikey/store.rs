//! Stored keys: [`KeyRecord`], the [`KeyStore`] trait, the in-memory store, and the hashing of
//! secrets ([`SecretHasher`]).
//!
//! Besides the keys themselves a store keeps their use credit ([`KeyStore::consume_use`],
//! spent atomically) and their usage counts per minute ([`KeyStore::record_usage`],
//! [`KeyStore::usage`]; see [`usage`](super::usage) for the recorder that batches them).
//! Stores shared by replicas can announce revocations ([`Invalidation`]) so that caches drop
//! a key at once instead of at the end of their TTL.
//!
//! Only a hash of a key's secret is ever stored: SHA-256 (right for 256-bit random secrets),
//! or HMAC-SHA-256 keyed with a server-side pepper when one is configured, so a stolen table
//! is useless without the pepper. Hashes are compared in constant time.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::apikey::format::KeyFormat;
//! use auth_core::apikey::store::{KeyRecord, KeyStore, MemoryStore, SecretHasher};
//!
//! let hasher = SecretHasher::new(None);
//! let (key, parsed) = KeyFormat::new("ak_test").unwrap().generate().unwrap();
//! let store = MemoryStore::new();
//! let record = KeyRecord::new(parsed.id(), "acme", "ci", hasher.hash(parsed.secret()), 1_000);
//! store.insert(record).await.unwrap();
//! let found = store.get(parsed.id()).await.unwrap().unwrap();
//! assert!(hasher.verify(parsed.secret(), &found.secret_hash));
//! assert!(!hasher.verify("not-the-secret", &found.secret_hash));
//! # let _ = key;
//! # }
//! ```

use super::limit::KeyLimits;
use super::usage::{Granularity, Outcome, UsageCount, UsageQuery};
use crate::authenticator::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError, RwLock};

/// Hashes key secrets for storage and checks presented ones.
#[derive(Clone)]
pub struct SecretHasher {
    pepper: Option<aws_lc_rs::hmac::Key>,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHasher")
            .field("peppered", &self.pepper.is_some())
            .finish()
    }
}

impl SecretHasher {
    /// A hasher; with a `pepper` (a server-side secret, at least 32 bytes recommended), hashes
    /// are HMAC-SHA-256 keyed with it, otherwise SHA-256.
    pub fn new(pepper: Option<&[u8]>) -> Self {
        Self {
            pepper: pepper.map(|p| aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, p)),
        }
    }

    /// The stored form of `secret`.
    pub fn hash(&self, secret: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        match &self.pepper {
            Some(key) => {
                out.copy_from_slice(aws_lc_rs::hmac::sign(key, secret.as_bytes()).as_ref())
            }
            None => out.copy_from_slice(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes()).as_ref(),
            ),
        }
        out
    }

    /// Whether `secret` hashes to `stored`, compared in constant time.
    pub fn verify(&self, secret: &str, stored: &[u8; 32]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.hash(secret), stored).is_ok()
    }
}

/// One stored key. The secret itself is never stored.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRecord {
    /// The public id (part of the key text).
    pub id: String,
    /// The tenant the key belongs to.
    pub tenant: String,
    /// A human name (`ci`, `billing-sync`).
    pub name: String,
    /// The hash of the secret ([`SecretHasher::hash`]).
    pub secret_hash: [u8; 32],
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Granted roles.
    pub roles: Vec<String>,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
    /// Creation time (seconds since the Unix epoch).
    pub created_at: i64,
    /// Expiry, if any.
    pub expires_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Uses left, for keys with a credit.
    pub remaining_uses: Option<i64>,
    /// The last use recorded (written in batches).
    pub last_used_at: Option<i64>,
    /// The id of the key that replaced this one, after a rotation.
    pub rotated_to: Option<String>,
    /// Rate and quota overriding the authenticator's defaults for this key (stored as JSON,
    /// `NULL` when empty).
    pub limits: KeyLimits,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("rotated_to", &self.rotated_to)
            .field("remaining_uses", &self.remaining_uses)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What a key's record says about using it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked (or past the grace period of a rotation).
    Revoked,
    /// Past its expiry.
    Expired,
    /// Its use credit is spent.
    Exhausted,
}

impl KeyRecord {
    /// A record with no scopes, roles, expiry, credit or limits of its own.
    pub fn new(
        id: impl Into<String>,
        tenant: impl Into<String>,
        name: impl Into<String>,
        secret_hash: [u8; 32],
        created_at: i64,
    ) -> Self {
        Self {
            id: id.into(),
            tenant: tenant.into(),
            name: name.into(),
            secret_hash,
            scopes: Vec::new(),
            roles: Vec::new(),
            metadata: serde_json::Value::Null,
            created_at,
            expires_at: None,
            revoked_at: None,
            remaining_uses: None,
            last_used_at: None,
            rotated_to: None,
            limits: KeyLimits::default(),
        }
    }

    /// The key's status at `now`. A revocation dated in the future (the end of a rotation's
    /// grace period) takes effect then.
    pub fn status(&self, now: i64) -> KeyStatus {
        if self.revoked_at.is_some_and(|t| t <= now) {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            KeyStatus::Expired
        } else if self.remaining_uses.is_some_and(|n| n <= 0) {
            KeyStatus::Exhausted
        } else {
            KeyStatus::Active
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key with this id exists already.
    #[error("a key with id `{0}` exists already")]
    Duplicate(String),
    /// No key has this id.
    #[error("no key with id `{0}`")]
    NotFound(String),
    /// The backend failed (connection, query); the detail is for logs.
    #[error("key store unavailable: {0}")]
    Backend(String),
}

/// A change to stored keys that caches of other processes should apply at once: what a
/// shared store announces after a revocation or a rotation (see `PostgresStore::listen`, feature
/// `postgres`).
///
/// On the wire it is a short text, `key:<id>` or `tenant:<name>` ([`Invalidation::payload`],
/// [`Invalidation::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalidation {
    /// This key changed (revoked, or rotated with a grace period).
    Key(String),
    /// Every key of this tenant was revoked.
    Tenant(String),
}

impl Invalidation {
    /// The wire form: `key:<id>` or `tenant:<name>` (also its `Display`).
    pub fn payload(&self) -> String {
        self.to_string()
    }

    /// Reads the wire form; `None` for anything else (an unknown kind, an empty name).
    pub fn parse(payload: &str) -> Option<Self> {
        let (kind, name) = payload.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "key" => Some(Self::Key(name.to_owned())),
            "tenant" => Some(Self::Tenant(name.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(id) => write!(f, "key:{id}"),
            Self::Tenant(name) => write!(f, "tenant:{name}"),
        }
    }
}

/// Where keys live. Implementations: [`MemoryStore`] here; SQLite and PostgreSQL stores come
/// with their features.
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key.
    fn insert(&self, record: KeyRecord) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The key with this id.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>>;
    /// Every key, or a tenant's, ordered by creation.
    fn list<'a>(
        &'a self,
        tenant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>>;
    /// Revokes a key at `at` (a time in the future schedules it); `false` when already revoked
    /// at or before `at`.
    fn revoke<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Revokes every key of a tenant; returns how many changed.
    fn revoke_tenant<'a>(
        &'a self,
        tenant: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// Stores `successor` and schedules the revocation of `id` at `grace_until`, at once.
    fn rotate<'a>(
        &'a self,
        id: &'a str,
        successor: KeyRecord,
        grace_until: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records last-use times (batched by the caller): each key's `last_used_at` becomes the
    /// latest of its stored time and the given ones; unknown ids are ignored.
    fn touch<'a>(&'a self, uses: &'a [(String, i64)]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Spends one unit of the key's use credit, atomically (also between processes sharing
    /// the store): `true` when a unit was spent, or when the key has no credit (`NULL`: unlimited
    /// uses, nothing changes); `false` when the credit is spent (0).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id; [`StoreError::Backend`].
    fn consume_use<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Adds usage counts, in one transaction: a count for a (key, minute, outcome) already
    /// stored is added to it. `bucket_start` is rounded down to its minute.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`]; then nothing was added.
    fn record_usage<'a>(
        &'a self,
        counts: &'a [UsageCount],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The counts since `query.since` (inclusive, in seconds since the Unix epoch; compared with
    /// the minute rows' starts), of one key, one tenant or all, summed into buckets of
    /// `query.granularity` (a bucket starts at a multiple of its length, in UTC), ordered by
    /// bucket start, then key id, then outcome name ([`Outcome::as_str`]), byte-wise.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    fn usage<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Vec<UsageCount>, StoreError>>;
}

/// Keys in memory (tests, single-process services with keys created at start). Its usage
/// counts grow with every (key, minute, outcome) recorded: it is not meant for long-running
/// services with many keys.
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: RwLock<HashMap<String, KeyRecord>>,
    usage: Mutex<UsageRows>,
}

/// Per-minute counts by (key id, minute start, outcome name): (tenant, outcome, count).
type UsageRows = BTreeMap<(String, i64, &'static str), (String, Outcome, u64)>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, KeyRecord>> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, KeyRecord>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn usage_rows(&self) -> std::sync::MutexGuard<'_, UsageRows> {
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The start of the bucket of length `secs` holding `t` (floored, also before 1970).
pub(crate) fn bucket_floor(t: i64, secs: i64) -> i64 {
    t - t.rem_euclid(secs)
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl KeyStore for MemoryStore {
    fn insert(&self, record: KeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut keys = self.write();
        let r = if keys.contains_key(&record.id) {
            Err(StoreError::Duplicate(record.id))
        } else {
            keys.insert(record.id.clone(), record);
            Ok(())
        };
        ready(r)
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
        ready(Ok(self.read().get(id).cloned()))
    }

    fn list<'a>(
        &'a self,
        tenant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        let mut out: Vec<KeyRecord> = self
            .read()
            .values()
            .filter(|r| tenant.is_none_or(|t| r.tenant == t))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        ready(Ok(out))
    }

    fn revoke<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut keys = self.write();
        let r = match keys.get_mut(id) {
            None => Err(StoreError::NotFound(id.to_owned())),
            Some(r) if r.revoked_at.is_some_and(|t| t <= at) => Ok(false),
            Some(r) => {
                r.revoked_at = Some(at);
                Ok(true)
            }
        };
        ready(r)
    }

    fn revoke_tenant<'a>(
        &'a self,
        tenant: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let mut n = 0;
        for r in self.write().values_mut() {
            if r.tenant == tenant && r.revoked_at.is_none_or(|t| t > at) {
                r.revoked_at = Some(at);
                n += 1;
            }
        }
        ready(Ok(n))
    }

    fn rotate<'a>(
        &'a self,
        id: &'a str,
        successor: KeyRecord,
        grace_until: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut keys = self.write();
        let r = if keys.contains_key(&successor.id) {
            Err(StoreError::Duplicate(successor.id))
        } else {
            match keys.get_mut(id) {
                None => Err(StoreError::NotFound(id.to_owned())),
                Some(old) => {
                    old.rotated_to = Some(successor.id.clone());
                    old.revoked_at =
                        Some(old.revoked_at.map_or(grace_until, |t| t.min(grace_until)));
                    keys.insert(successor.id.clone(), successor);
                    Ok(())
                }
            }
        };
        ready(r)
    }

    fn touch<'a>(&'a self, uses: &'a [(String, i64)]) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut keys = self.write();
        for (id, at) in uses {
            if let Some(r) = keys.get_mut(id) {
                r.last_used_at = Some(r.last_used_at.map_or(*at, |t| t.max(*at)));
            }
        }
        ready(Ok(()))
    }

    fn consume_use<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut keys = self.write();
        let r = match keys.get_mut(id) {
            None => Err(StoreError::NotFound(id.to_owned())),
            Some(r) => match &mut r.remaining_uses {
                None => Ok(true),
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Ok(true)
                }
                Some(_) => Ok(false),
            },
        };
        ready(r)
    }

    fn record_usage<'a>(
        &'a self,
        counts: &'a [UsageCount],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut rows = self.usage_rows();
        for c in counts.iter().filter(|c| c.count > 0) {
            let bucket = bucket_floor(c.bucket_start, Granularity::Minute.secs());
            let row = rows
                .entry((c.key_id.clone(), bucket, c.outcome.as_str()))
                .or_insert_with(|| (c.tenant.clone(), c.outcome, 0));
            row.2 = row.2.saturating_add(c.count);
        }
        ready(Ok(()))
    }

    fn usage<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Vec<UsageCount>, StoreError>> {
        let secs = query.granularity.secs();
        let mut sums: BTreeMap<(i64, &str, &'static str, &str), (Outcome, u64)> = BTreeMap::new();
        let rows = self.usage_rows();
        for ((key_id, bucket, name), (tenant, outcome, count)) in rows.iter() {
            if *bucket < query.since
                || query.key_id.as_ref().is_some_and(|k| k != key_id)
                || query.tenant.as_ref().is_some_and(|t| t != tenant)
            {
                continue;
            }
            let sum = sums
                .entry((bucket_floor(*bucket, secs), key_id, name, tenant))
                .or_insert((*outcome, 0));
            sum.1 = sum.1.saturating_add(*count);
        }
        let out = sums
            .into_iter()
            .map(
                |((bucket_start, key_id, _, tenant), (outcome, count))| UsageCount {
                    key_id: key_id.to_owned(),
                    tenant: tenant.to_owned(),
                    bucket_start,
                    outcome,
                    count,
                },
            )
            .collect();
        ready(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tenant: &str, at: i64) -> KeyRecord {
        KeyRecord::new(id, tenant, "k", [7; 32], at)
    }

    #[tokio::test]
    async fn lifecycle_in_memory() {
        let s = MemoryStore::new();
        s.insert(record("a", "acme", 1)).await.unwrap();
        s.insert(record("b", "acme", 2)).await.unwrap();
        s.insert(record("c", "globex", 3)).await.unwrap();
        assert!(matches!(
            s.insert(record("a", "x", 4)).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(s.list(Some("acme")).await.unwrap().len(), 2);
        assert_eq!(s.list(None).await.unwrap()[2].id, "c");

        assert!(s.revoke("a", 10).await.unwrap());
        assert!(!s.revoke("a", 20).await.unwrap(), "already revoked");
        assert_eq!(
            s.get("a").await.unwrap().unwrap().status(10),
            KeyStatus::Revoked
        );
        assert_eq!(
            s.get("a").await.unwrap().unwrap().status(9),
            KeyStatus::Active
        );

        s.rotate("b", record("b2", "acme", 5), 100).await.unwrap();
        let old = s.get("b").await.unwrap().unwrap();
        assert_eq!(old.rotated_to.as_deref(), Some("b2"));
        assert_eq!(old.status(99), KeyStatus::Active, "within grace");
        assert_eq!(old.status(100), KeyStatus::Revoked, "after grace");
        assert!(matches!(
            s.rotate("missing", record("z", "acme", 5), 100).await,
            Err(StoreError::NotFound(_))
        ));

        assert_eq!(
            s.revoke_tenant("acme", 50).await.unwrap(),
            2,
            "b (rescheduled) and b2"
        );
        assert_eq!(s.get("b").await.unwrap().unwrap().revoked_at, Some(50));

        s.touch(&[("c".into(), 7), ("c".into(), 5)]).await.unwrap();
        assert_eq!(s.get("c").await.unwrap().unwrap().last_used_at, Some(7));
    }

    #[test]
    fn status_order_and_credit() {
        let mut r = record("a", "t", 0);
        r.expires_at = Some(10);
        assert_eq!(r.status(9), KeyStatus::Active);
        assert_eq!(r.status(10), KeyStatus::Expired);
        r.remaining_uses = Some(0);
        assert_eq!(r.status(5), KeyStatus::Exhausted);
    }

    #[test]
    fn invalidation_wire_form() {
        for change in [
            Invalidation::Key("ak_1:x".into()),
            Invalidation::Tenant("acme".into()),
        ] {
            assert_eq!(Invalidation::parse(&change.payload()), Some(change));
        }
        assert_eq!(Invalidation::Key("k".into()).payload(), "key:k");
        for bad in ["", "key", "key:", "tenant:", "user:x", ":x"] {
            assert_eq!(Invalidation::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn pepper_changes_the_hash() {
        let plain = SecretHasher::new(None);
        let peppered = SecretHasher::new(Some(b"server-side pepper of 32 bytes!!"));
        assert_ne!(plain.hash("s"), peppered.hash("s"));
        assert!(peppered.verify("s", &peppered.hash("s")));
        assert!(!plain.verify("s", &peppered.hash("s")));
        assert!(!format!("{peppered:?}").contains("pepper of"));
    }
}

//! [`KeyManager`]: the lifecycle of API keys — create, revoke, revoke a tenant's keys, rotate —
//! with one audit event per change ([`AuditSink::record_change`]) and the local cache of the
//! [`ApiKeys`] invalidated at once.
//!
//! A key's text is returned once, by [`KeyManager::create`] or [`KeyManager::rotate`]; the
//! store keeps only the hash of its secret. Other processes see a revocation through the
//! store's notifications (PostgreSQL) or, at the latest, after their cache TTL (5 s).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::apikey::manage::{KeyManager, NewKey};
//! use auth_core::apikey::{ApiKeys, store::MemoryStore};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let keys = ApiKeys::builder(Arc::new(MemoryStore::new())).prefix("ak_test").build().unwrap();
//! let manager = KeyManager::new(keys.clone());
//! let (key, record) = manager.create(NewKey::new("acme", "ci").scopes(["read"]), 1_000).await.unwrap();
//! assert!(keys.verify(&key).await.is_ok());
//!
//! let (successor, _) = manager.rotate(&record.id, Duration::from_secs(3600), 1_000).await.unwrap();
//! assert!(manager.revoke(&record.id, 1_000).await.unwrap());
//! assert!(keys.verify(&key).await.is_err());
//! assert!(keys.verify(&successor).await.is_ok());
//! # }
//! ```

use super::ApiKeys;
use super::limit::KeyLimits;
use super::store::{Invalidation, KeyRecord, StoreError};
use crate::audit::{AuditSink, ChangeEvent, TracingAudit};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a new key is given. The secret and the id are generated.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct NewKey {
    tenant: String,
    name: String,
    scopes: Vec<String>,
    roles: Vec<String>,
    metadata: serde_json::Value,
    expires_at: Option<i64>,
    limits: KeyLimits,
    remaining_uses: Option<i64>,
}

impl NewKey {
    /// A key of `tenant` called `name`, with no scopes, roles, expiry, limits or credit.
    pub fn new(tenant: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            name: name.into(),
            ..Self::default()
        }
    }
    /// Granted scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
    /// Granted roles.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }
    /// Free-form metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
    /// The expiry (seconds since the Unix epoch).
    pub fn expires_at(mut self, at: i64) -> Self {
        self.expires_at = Some(at);
        self
    }
    /// The key's own rate and quota.
    pub fn limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }
    /// A use credit: the key stops working after `uses` allowed requests.
    pub fn remaining_uses(mut self, uses: i64) -> Self {
        self.remaining_uses = Some(uses);
        self
    }

    /// The same key description as `record` (what a rotation's successor inherits).
    fn like(record: &KeyRecord) -> Self {
        Self {
            tenant: record.tenant.clone(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            roles: record.roles.clone(),
            metadata: record.metadata.clone(),
            expires_at: record.expires_at,
            limits: record.limits,
            remaining_uses: record.remaining_uses,
        }
    }
}

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No key could be generated (the system's random source failed).
    #[error("could not generate a key: {0}")]
    Generate(String),
}

/// Creates, revokes and rotates the keys of an [`ApiKeys`] authenticator's store, auditing
/// every change.
#[derive(Clone)]
pub struct KeyManager {
    keys: ApiKeys,
    audit: Arc<dyn AuditSink>,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// A manager of `keys`' store (its format and hasher make the new keys), auditing through
    /// `tracing` ([`TracingAudit`]).
    pub fn new(keys: ApiKeys) -> Self {
        Self {
            keys,
            audit: Arc::new(TracingAudit),
        }
    }

    /// Sends the change events to `audit` instead.
    #[must_use]
    pub fn audit(mut self, audit: impl AuditSink) -> Self {
        self.audit = Arc::new(audit);
        self
    }

    fn record_for(&self, spec: NewKey, now: i64) -> Result<(String, KeyRecord), ManageError> {
        let (key, parsed) = self
            .keys
            .format()
            .generate()
            .map_err(ManageError::Generate)?;
        let mut record = KeyRecord::new(
            parsed.id(),
            spec.tenant,
            spec.name,
            self.keys.hasher().hash(parsed.secret()),
            now,
        );
        record.scopes = spec.scopes;
        record.roles = spec.roles;
        record.metadata = spec.metadata;
        record.expires_at = spec.expires_at;
        record.limits = spec.limits;
        record.remaining_uses = spec.remaining_uses;
        Ok((key, record))
    }

    /// Creates a key at `now`; returns its text (to show once) and its stored record.
    ///
    /// # Errors
    ///
    /// When the store fails or no key can be generated.
    pub async fn create(&self, spec: NewKey, now: i64) -> Result<(String, KeyRecord), ManageError> {
        let (key, record) = self.record_for(spec, now)?;
        self.keys.store().insert(record.clone()).await?;
        self.audit.record_change(
            &ChangeEvent::new("api_key_created")
                .key(&record.id)
                .tenant(&record.tenant),
        );
        Ok((key, record))
    }

    /// Revokes key `id` at `at`; `false` when it was already revoked by then.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, or a store failure.
    pub async fn revoke(&self, id: &str, at: i64) -> Result<bool, ManageError> {
        let changed = self.keys.store().revoke(id, at).await?;
        if changed {
            self.keys.invalidate(&Invalidation::Key(id.to_owned()));
            self.audit
                .record_change(&ChangeEvent::new("api_key_revoked").key(id).effective_at(at));
        }
        Ok(changed)
    }

    /// Revokes every key of `tenant` at `at`; returns how many changed.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn revoke_tenant(&self, tenant: &str, at: i64) -> Result<u64, ManageError> {
        let n = self.keys.store().revoke_tenant(tenant, at).await?;
        self.keys
            .invalidate(&Invalidation::Tenant(tenant.to_owned()));
        self.audit.record_change(
            &ChangeEvent::new("tenant_keys_revoked")
                .tenant(tenant)
                .effective_at(at),
        );
        Ok(n)
    }

    /// Issues a successor of key `id` (same tenant, name, scopes, roles, expiry, limits and
    /// credit) at `now`; `id` keeps working for `grace`, then stops by itself. Returns the
    /// successor's text (to show once) and record.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id, or a store failure.
    pub async fn rotate(
        &self,
        id: &str,
        grace: Duration,
        now: i64,
    ) -> Result<(String, KeyRecord), ManageError> {
        let old = self
            .keys
            .store()
            .get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let (key, record) = self.record_for(NewKey::like(&old), now)?;
        let grace_until = now.saturating_add(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        self.keys
            .store()
            .rotate(id, record.clone(), grace_until)
            .await?;
        self.keys.invalidate(&Invalidation::Key(id.to_owned()));
        self.audit.record_change(
            &ChangeEvent::new("api_key_rotated")
                .key(id)
                .tenant(&old.tenant)
                .successor(&record.id)
                .effective_at(grace_until),
        );
        Ok((key, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::limit::Rate;
    use crate::apikey::store::{KeyStatus, MemoryStore};
    use crate::audit::AuditEvent;
    use std::sync::Mutex;

    /// Keeps the change events as text.
    #[derive(Default, Clone)]
    struct Recorded(Arc<Mutex<Vec<String>>>);

    impl AuditSink for Recorded {
        fn record(&self, _: &AuditEvent<'_>) {}
        fn record_change(&self, c: &ChangeEvent<'_>) {
            self.0.lock().unwrap().push(format!(
                "{} key={:?} tenant={:?} successor={:?} at={:?}",
                c.action, c.key_id, c.tenant, c.successor, c.effective_at
            ));
        }
    }

    #[tokio::test]
    async fn every_change_is_audited_and_never_names_a_secret() {
        let keys = ApiKeys::builder(Arc::new(MemoryStore::new()))
            .prefix("ak_test")
            .build()
            .unwrap();
        let recorded = Recorded::default();
        let manager = KeyManager::new(keys.clone()).audit(recorded.clone());
        let spec = NewKey::new("acme", "ci")
            .scopes(["read"])
            .limits(KeyLimits::new(Some(Rate::parse("5/s").unwrap()), None))
            .remaining_uses(10);
        let (key, record) = manager.create(spec, 1_000).await.unwrap();
        assert_eq!(record.scopes, ["read"]);
        let (successor, next) = manager
            .rotate(&record.id, Duration::from_secs(60), 1_000)
            .await
            .unwrap();
        assert_eq!(
            (next.tenant.as_str(), next.limits, next.remaining_uses),
            ("acme", record.limits, Some(10)),
            "the successor inherits"
        );
        let old = keys.store().get(&record.id).await.unwrap().unwrap();
        assert_eq!(old.status(1_059), KeyStatus::Active);
        assert_eq!(old.status(1_060), KeyStatus::Revoked);
        assert!(manager.revoke(&next.id, 1_000).await.unwrap());
        assert!(
            !manager.revoke(&next.id, 1_000).await.unwrap(),
            "no change, no event"
        );
        assert_eq!(manager.revoke_tenant("acme", 1_000).await.unwrap(), 1);
        assert!(matches!(
            manager.revoke("missing", 1).await,
            Err(ManageError::Store(StoreError::NotFound(_)))
        ));

        let events = recorded.0.lock().unwrap().clone();
        let actions: Vec<&str> = events
            .iter()
            .map(|e| e.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "api_key_created",
                "api_key_rotated",
                "api_key_revoked",
                "tenant_keys_revoked"
            ]
        );
        assert!(events[1].contains(&format!("successor={:?}", Some(&next.id))));
        assert!(events[1].contains("at=Some(1060)"));
        for e in &events {
            assert!(!e.contains(&key) && !e.contains(&successor));
            let secret = key.rsplit('_').next().unwrap();
            assert!(!e.contains(secret));
        }
    }

    #[tokio::test]
    async fn a_revocation_through_the_manager_is_seen_at_once_despite_the_cache() {
        let keys = ApiKeys::builder(Arc::new(MemoryStore::new()))
            .prefix("ak_test")
            .cache_ttl(Duration::from_secs(300))
            .build()
            .unwrap();
        let manager = KeyManager::new(keys.clone()).audit(crate::audit::NoAudit);
        let now = crate::clock::Clock::now_unix(&crate::clock::SystemClock);
        let (key, record) = manager
            .create(NewKey::new("acme", "ci"), now)
            .await
            .unwrap();
        assert!(keys.verify(&key).await.is_ok(), "now cached");
        manager.revoke(&record.id, now).await.unwrap();
        assert!(keys.verify(&key).await.is_err());
    }
}

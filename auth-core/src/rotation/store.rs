//! Where a [`KeyRotator`](super::KeyRotator) keeps its keys: the [`SigningKeyStore`] trait, the
//! stored form of a key ([`StoredKey`], [`KeyInfo`]), and [`MemorySigningKeyStore`].
//!
//! A store holds the keys and one number, the ring's *generation*. Every change is a
//! [`SigningKeyStore::commit`] of a list of [`Change`]s made only if the generation is still the
//! one the caller loaded (optimistic concurrency): of several processes that race to rotate,
//! one commits and the others learn they lost, reload, and find the work done. A store also
//! refuses a second `current` or `next` key whatever the callers do.
//!
//! **Private keys are stored (PKCS#8 DER)**: protect a store like any other secret (database
//! access, backups, replicas).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::rotation::store::{MemorySigningKeyStore, SigningKeyStore};
//!
//! let store = MemorySigningKeyStore::new();
//! let snapshot = store.load().await.unwrap();
//! assert_eq!(snapshot.generation, 0);
//! assert!(snapshot.keys.is_empty());
//! // A commit made against a generation that is no longer current changes nothing.
//! assert!(!store.commit(7, &[]).await.unwrap());
//! assert!(store.commit(0, &[]).await.unwrap());
//! assert_eq!(store.load().await.unwrap().generation, 1);
//! # }
//! ```

use super::RotationError;
use crate::authenticator::BoxFuture;
use jsonwebtoken::Algorithm;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// The role of a key in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, not signing yet (until its `activate_at`).
    Next,
    /// Signing (and published).
    Current,
    /// Published only, until its `retire_at`; then deleted.
    Retired,
}

impl KeyState {
    /// The stored name: `next`, `current` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Retired => "retired",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "next" => Some(Self::Next),
            "current" => Some(Self::Current),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a key besides its private half. Times are milliseconds since the Unix
/// epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id: the RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The signing algorithm.
    pub alg: Algorithm,
    /// Its role.
    pub state: KeyState,
    /// When it was generated (and published).
    pub created_at: i64,
    /// When it signs from (scheduled, for a `next` key).
    pub activate_at: i64,
    /// When it stopped signing (retired keys).
    pub deactivated_at: Option<i64>,
    /// When it is removed (retired keys): `deactivated_at` + its `max_token_lifetime` + leeway.
    pub retire_at: Option<i64>,
    /// The longest lifetime of a token signed with it, in milliseconds.
    pub max_token_lifetime: i64,
}

/// A key as stored: its [`KeyInfo`] and its private half. `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Everything but the private key.
    pub info: KeyInfo,
    /// The private key, PKCS#8 DER. A secret.
    pub private_key: Vec<u8>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The keys of a store and its generation, read at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Incremented by every successful [`SigningKeyStore::commit`].
    pub generation: i64,
    /// Every key, in no particular order.
    pub keys: Vec<StoredKey>,
}

/// One step of a commit, applied in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Change {
    /// Stores a new key (as `next`, or as `current` in an empty ring).
    Insert(StoredKey),
    /// Moves the `current` key `kid` to `retired`.
    Retire {
        /// The key.
        kid: String,
        /// When it stopped signing.
        deactivated_at: i64,
        /// When it is to be removed.
        retire_at: i64,
    },
    /// Moves the `next` key `kid` to `current`.
    Promote {
        /// The key.
        kid: String,
    },
    /// Removes the `retired` key `kid`.
    Delete {
        /// The key.
        kid: String,
    },
}

/// Storage of a rotating key ring, shared by every process that signs or verifies with it.
///
/// Implementations must make [`commit`](Self::commit) atomic: all its changes and the
/// generation increment, or nothing.
pub trait SigningKeyStore: Send + Sync + 'static {
    /// Every key and the generation, consistently (one snapshot).
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, RotationError>>;

    /// Applies `changes` and increments the generation, atomically, if the generation is still
    /// `expected_generation` and every change applies (a key to retire is still `current`, one
    /// to promote still `next`, one to delete still `retired`, a new one's id is free, and at
    /// most one key is `current` and one `next`). `Ok(false)` when not: nothing was changed,
    /// another process changed the ring first.
    fn commit<'a>(
        &'a self,
        expected_generation: i64,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<bool, RotationError>>;
}

impl<S: SigningKeyStore + ?Sized> SigningKeyStore for std::sync::Arc<S> {
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, RotationError>> {
        (**self).load()
    }
    fn commit<'a>(
        &'a self,
        expected_generation: i64,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<bool, RotationError>> {
        (**self).commit(expected_generation, changes)
    }
}

/// A store in this process's memory (tests, single-process services that may lose their keys
/// on restart).
#[derive(Debug, Default)]
pub struct MemorySigningKeyStore {
    inner: Mutex<Snapshot>,
}

impl MemorySigningKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Applies `changes` to `keys`; `false` (and `keys` possibly half-changed) when one does not
/// apply.
pub(crate) fn apply(keys: &mut Vec<StoredKey>, changes: &[Change]) -> bool {
    let find = |keys: &mut Vec<StoredKey>, kid: &str, state: KeyState| {
        keys.iter_mut()
            .position(|k| k.info.kid == kid && k.info.state == state)
    };
    for change in changes {
        match change {
            Change::Insert(key) => {
                let clash = keys.iter().any(|k| {
                    k.info.kid == key.info.kid
                        || (key.info.state != KeyState::Retired && k.info.state == key.info.state)
                });
                if clash {
                    return false;
                }
                keys.push(key.clone());
            }
            Change::Retire {
                kid,
                deactivated_at,
                retire_at,
            } => {
                let Some(i) = find(keys, kid, KeyState::Current) else {
                    return false;
                };
                let k = &mut keys[i].info;
                k.state = KeyState::Retired;
                k.deactivated_at = Some(*deactivated_at);
                k.retire_at = Some(*retire_at);
            }
            Change::Promote { kid } => {
                if keys.iter().any(|k| k.info.state == KeyState::Current) {
                    return false;
                }
                let Some(i) = find(keys, kid, KeyState::Next) else {
                    return false;
                };
                keys[i].info.state = KeyState::Current;
            }
            Change::Delete { kid } => {
                let Some(i) = find(keys, kid, KeyState::Retired) else {
                    return false;
                };
                keys.remove(i);
            }
        }
    }
    true
}

impl SigningKeyStore for MemorySigningKeyStore {
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, RotationError>> {
        let snapshot = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move { Ok(snapshot) })
    }

    fn commit<'a>(
        &'a self,
        expected_generation: i64,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<bool, RotationError>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let done = inner.generation == expected_generation && {
            let mut keys = inner.keys.clone();
            let ok = apply(&mut keys, changes);
            if ok {
                inner.keys = keys;
                inner.generation += 1;
            }
            ok
        };
        drop(inner);
        Box::pin(async move { Ok(done) })
    }
}

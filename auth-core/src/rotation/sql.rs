//! [`SigningKeyStore`] for the SQL key stores: `SqliteStore` (feature `sqlite`) and
//! `PostgresStore` (feature `postgres`) of [`crate::apikey::sql`] keep the ring next to the
//! API keys, in the tables of migration 3 (`signing_keys`, and `signing_key_ring` holding the
//! generation; a PostgreSQL store uses its own schema).
//!
//! A snapshot is one `SELECT` (a consistent read in both engines). A commit is one transaction
//! that starts with `UPDATE signing_key_ring SET generation = generation + 1 WHERE generation
//! = <expected>`: a concurrent commit either waits for it and then matches no row, or has
//! already moved the generation; either way it rolls back and reports the lost race. A
//! partial unique index refuses a second `current` or `next` key.
//!
//! The `private_key` column holds PKCS#8 private keys: protect the database like a secret.

use super::RotationError;
use super::store::{Change, KeyInfo, KeyState, SigningKeyStore, Snapshot, StoredKey};
use crate::authenticator::BoxFuture;
use crate::keys::{algorithm_name, parse_algorithm};
use sqlx::Row;

fn backend(op: &str, e: impl std::fmt::Display) -> RotationError {
    RotationError::Store(format!("{op}: {e}"))
}

/// Whether `e` is a constraint violation (a lost race: the key id or state was taken).
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation() || db.is_check_violation())
}

/// Builds a [`StoredKey`] from a snapshot row whose key columns are not `NULL`.
macro_rules! decode_key {
    ($row:expr) => {{
        let row = $row;
        let get = |e: sqlx::Error| backend("reading a signing key", e);
        let kid: String = row.try_get("kid").map_err(get)?;
        let alg: String = row.try_get("alg").map_err(get)?;
        let state: String = row.try_get("state").map_err(get)?;
        Ok::<StoredKey, RotationError>(StoredKey {
            info: KeyInfo {
                alg: parse_algorithm(&alg).ok_or_else(|| {
                    RotationError::Store(format!("signing key {kid}: unknown algorithm `{alg}`"))
                })?,
                state: KeyState::parse(&state).ok_or_else(|| {
                    RotationError::Store(format!("signing key {kid}: unknown state `{state}`"))
                })?,
                created_at: row.try_get("created_at").map_err(get)?,
                activate_at: row.try_get("activate_at").map_err(get)?,
                deactivated_at: row.try_get("deactivated_at").map_err(get)?,
                retire_at: row.try_get("retire_at").map_err(get)?,
                max_token_lifetime: row.try_get("max_token_lifetime").map_err(get)?,
                kid,
            },
            private_key: row.try_get("private_key").map_err(get)?,
        })
    }};
}

/// The `SigningKeyStore` methods, identical for both backends but for the SQL text (module
/// `$sql`). Every statement binds its parameters in the order written.
macro_rules! impl_signing_key_store {
    ($store:ty, $sql:ident) => {
        impl SigningKeyStore for $store {
            fn load(&self) -> BoxFuture<'_, Result<Snapshot, RotationError>> {
                Box::pin(async move {
                    let rows = sqlx::query($sql::LOAD)
                        .fetch_all(self.pool())
                        .await
                        .map_err(|e| backend("reading the signing keys", e))?;
                    let mut snapshot = Snapshot::default();
                    for row in &rows {
                        snapshot.generation = row
                            .try_get("generation")
                            .map_err(|e| backend("reading the signing keys", e))?;
                        let kid: Option<String> = row
                            .try_get("kid")
                            .map_err(|e| backend("reading the signing keys", e))?;
                        if kid.is_some() {
                            snapshot.keys.push(decode_key!(row)?);
                        }
                    }
                    Ok(snapshot)
                })
            }

            fn commit<'a>(
                &'a self,
                expected_generation: i64,
                changes: &'a [Change],
            ) -> BoxFuture<'a, Result<bool, RotationError>> {
                Box::pin(async move {
                    let op = "changing the signing keys";
                    let mut tx = self.pool().begin().await.map_err(|e| backend(op, e))?;
                    let bumped = sqlx::query($sql::BUMP)
                        .bind(expected_generation)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| backend(op, e))?;
                    if bumped.rows_affected() != 1 {
                        tx.rollback().await.map_err(|e| backend(op, e))?;
                        return Ok(false);
                    }
                    for change in changes {
                        let q = match change {
                            Change::Insert(k) => sqlx::query($sql::INSERT)
                                .bind(k.info.kid.clone())
                                .bind(algorithm_name(k.info.alg))
                                .bind(k.private_key.clone())
                                .bind(k.info.state.as_str())
                                .bind(k.info.created_at)
                                .bind(k.info.activate_at)
                                .bind(k.info.deactivated_at)
                                .bind(k.info.retire_at)
                                .bind(k.info.max_token_lifetime),
                            Change::Retire {
                                kid,
                                deactivated_at,
                                retire_at,
                            } => sqlx::query($sql::RETIRE)
                                .bind(*deactivated_at)
                                .bind(*retire_at)
                                .bind(kid.clone()),
                            Change::Promote { kid } => sqlx::query($sql::PROMOTE).bind(kid.clone()),
                            Change::Delete { kid } => sqlx::query($sql::DELETE).bind(kid.clone()),
                        };
                        match q.execute(&mut *tx).await {
                            Ok(done) if done.rows_affected() == 1 => {}
                            Ok(_) => {
                                tx.rollback().await.map_err(|e| backend(op, e))?;
                                return Ok(false);
                            }
                            Err(e) if is_conflict(&e) => {
                                tx.rollback().await.map_err(|e| backend(op, e))?;
                                return Ok(false);
                            }
                            Err(e) => return Err(backend(op, e)),
                        }
                    }
                    tx.commit().await.map_err(|e| backend(op, e))?;
                    Ok(true)
                })
            }
        }
    };
}

#[cfg(feature = "sqlite")]
mod sqlite_sql {
    pub(super) const LOAD: &str = "SELECT r.generation AS generation, k.kid AS kid, k.alg AS alg, \
        k.private_key AS private_key, k.state AS state, k.created_at AS created_at, \
        k.activate_at AS activate_at, k.deactivated_at AS deactivated_at, \
        k.retire_at AS retire_at, k.max_token_lifetime AS max_token_lifetime \
        FROM signing_key_ring r LEFT JOIN signing_keys k ON 1 = 1 WHERE r.id = 1";
    pub(super) const BUMP: &str = "UPDATE signing_key_ring SET generation = generation + 1 \
        WHERE id = 1 AND generation = ?";
    pub(super) const INSERT: &str = "INSERT INTO signing_keys (kid, alg, private_key, state, \
        created_at, activate_at, deactivated_at, retire_at, max_token_lifetime) \
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    pub(super) const RETIRE: &str = "UPDATE signing_keys SET state = 'retired', \
        deactivated_at = ?, retire_at = ? WHERE kid = ? AND state = 'current'";
    pub(super) const PROMOTE: &str =
        "UPDATE signing_keys SET state = 'current' WHERE kid = ? AND state = 'next'";
    pub(super) const DELETE: &str = "DELETE FROM signing_keys WHERE kid = ? AND state = 'retired'";
}

#[cfg(feature = "postgres")]
mod postgres_sql {
    pub(super) const LOAD: &str = "SELECT r.generation AS generation, k.kid AS kid, k.alg AS alg, \
        k.private_key AS private_key, k.state AS state, k.created_at AS created_at, \
        k.activate_at AS activate_at, k.deactivated_at AS deactivated_at, \
        k.retire_at AS retire_at, k.max_token_lifetime AS max_token_lifetime \
        FROM signing_key_ring r LEFT JOIN signing_keys k ON TRUE WHERE r.id = 1";
    pub(super) const BUMP: &str = "UPDATE signing_key_ring SET generation = generation + 1 \
        WHERE id = 1 AND generation = $1";
    pub(super) const INSERT: &str = "INSERT INTO signing_keys (kid, alg, private_key, state, \
        created_at, activate_at, deactivated_at, retire_at, max_token_lifetime) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    pub(super) const RETIRE: &str = "UPDATE signing_keys SET state = 'retired', \
        deactivated_at = $1, retire_at = $2 WHERE kid = $3 AND state = 'current'";
    pub(super) const PROMOTE: &str =
        "UPDATE signing_keys SET state = 'current' WHERE kid = $1 AND state = 'next'";
    pub(super) const DELETE: &str = "DELETE FROM signing_keys WHERE kid = $1 AND state = 'retired'";
}

#[cfg(feature = "sqlite")]
impl_signing_key_store!(crate::apikey::sql::SqliteStore, sqlite_sql);

#[cfg(feature = "postgres")]
impl_signing_key_store!(crate::apikey::sql::PostgresStore, postgres_sql);

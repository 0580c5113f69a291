//! SQL key stores: [`SqliteStore`] (feature `sqlite`, SQLite bundled) and [`PostgresStore`]
//! (feature `postgres`), both implementations of [`KeyStore`] with the semantics of
//! [`MemoryStore`](super::store::MemoryStore).
//!
//! Both apply their migrations (`auth-core/migrations/{sqlite,postgres}`, embedded in the
//! binary) when they connect. Keys live in one table, `api_keys`: scopes, roles and metadata as
//! JSON, per-key limits as JSON text (`NULL` when the key has none), the secret's hash as a
//! 32-byte blob, times as seconds since the Unix epoch. A rotation runs in one transaction. A
//! use credit is spent by one conditional `UPDATE … RETURNING`, so concurrent requests, in one
//! process or many, never spend more than there is. Backend errors become
//! [`StoreError::Backend`].
//!
//! Usage counts live in `api_key_usage`, one row per key, minute and outcome; adding to a row
//! is an upsert, and a batch is one transaction, its rows summed first and written in one
//! fixed order (so that concurrent batches from several replicas do not deadlock). Hours and
//! days are summed when queried.
//!
//! [`PostgresStore`] also announces revocations and rotations to other replicas with
//! `NOTIFY`, in the transaction that makes them, on a channel named after its schema;
//! [`PostgresStore::listen`] receives them.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::apikey::sql::SqliteStore;
//! use auth_core::apikey::store::{KeyRecord, KeyStore};
//!
//! let store = SqliteStore::connect("sqlite://./.auth-demo/auth.db?mode=rwc").await?;
//! store.insert(KeyRecord::new("k1", "acme", "ci", [0; 32], 1_700_000_000)).await?;
//! assert_eq!(store.list(Some("acme")).await?.len(), 1);
//! store.close().await;
//! # Ok(()) }
//! ```
//!
//! With PostgreSQL, [`PostgresStore::connect_with_schema`] keeps the table in a schema of its
//! own (created when missing):
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use auth_core::apikey::sql::PostgresStore;
//!
//! let store =
//!     PostgresStore::connect_with_schema("postgres://postgres@127.0.0.1:5432/app", "auth").await?;
//! # let _ = store; Ok(()) }
//! ```

use super::limit::KeyLimits;
use super::store::{Invalidation, KeyRecord, KeyStore, StoreError, bucket_floor};
use super::usage::{Granularity, Outcome, UsageCount, UsageQuery};
use crate::authenticator::BoxFuture;
use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::collections::BTreeMap;

/// A `sqlx` error as a [`StoreError::Backend`], naming the operation.
fn backend(op: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{op}: {e}"))
}

/// Whether `e` is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The migrations, `(version, description, SQL)`, in order.
fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

fn to_json<T: serde::Serialize>(op: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| backend(op, e))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| backend(&format!("decoding `{column}`"), e))
}

/// The stored form of a key's limits: `NULL` when it has none.
fn limits_json(limits: &KeyLimits) -> Result<Option<String>, StoreError> {
    if limits.is_empty() {
        Ok(None)
    } else {
        to_json("encoding limits", limits).map(Some)
    }
}

/// Usage rows ready to upsert: one per (key, minute, outcome), summed, in primary-key order.
struct UsageRow<'a> {
    key_id: &'a str,
    tenant: &'a str,
    bucket_start: i64,
    outcome: &'static str,
    count: i64,
}

/// Rows per `INSERT` of usage counts (5 parameters each, far below both engines' limits).
const USAGE_CHUNK: usize = 1_000;

fn usage_rows(counts: &[UsageCount]) -> Vec<UsageRow<'_>> {
    let mut sums: BTreeMap<(&str, i64, &'static str), (&str, u64)> = BTreeMap::new();
    for c in counts.iter().filter(|c| c.count > 0) {
        let bucket = bucket_floor(c.bucket_start, Granularity::Minute.secs());
        let sum = sums
            .entry((&c.key_id, bucket, c.outcome.as_str()))
            .or_insert((&c.tenant, 0));
        sum.1 = sum.1.saturating_add(c.count);
    }
    sums.into_iter()
        .map(
            |((key_id, bucket_start, outcome), (tenant, count))| UsageRow {
                key_id,
                tenant,
                bucket_start,
                outcome,
                count: i64::try_from(count).unwrap_or(i64::MAX),
            },
        )
        .collect()
}

/// Builds a [`UsageCount`] from a row of a usage query (`key_id`, `tenant`, `bucket`,
/// `outcome`, `total`).
macro_rules! decode_usage {
    ($row:expr) => {{
        let row = $row;
        let get = |e: sqlx::Error| backend("reading key usage", e);
        let outcome: String = row.try_get("outcome").map_err(get)?;
        let count: i64 = row.try_get("total").map_err(get)?;
        Ok::<UsageCount, StoreError>(UsageCount {
            key_id: row.try_get("key_id").map_err(get)?,
            tenant: row.try_get("tenant").map_err(get)?,
            bucket_start: row.try_get("bucket").map_err(get)?,
            outcome: Outcome::parse(&outcome).ok_or_else(|| {
                StoreError::Backend(format!("reading key usage: unknown outcome `{outcome}`"))
            })?,
            count: u64::try_from(count).map_err(|_| {
                StoreError::Backend(format!("reading key usage: negative count {count}"))
            })?,
        })
    }};
}

/// Builds a [`KeyRecord`] from a row of a `SELECT` of the `api_keys` columns.
macro_rules! decode_row {
    ($row:expr) => {{
        let row = $row;
        let get = |e: sqlx::Error| backend("reading a key", e);
        let hash: Vec<u8> = row.try_get("secret_hash").map_err(get)?;
        let scopes: String = row.try_get("scopes").map_err(get)?;
        let roles: String = row.try_get("roles").map_err(get)?;
        let metadata: String = row.try_get("metadata").map_err(get)?;
        let mut r = KeyRecord::new(
            row.try_get::<String, _>("id").map_err(get)?,
            row.try_get::<String, _>("tenant").map_err(get)?,
            row.try_get::<String, _>("name").map_err(get)?,
            <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                StoreError::Backend("reading a key: stored secret hash is not 32 bytes".into())
            })?,
            row.try_get::<i64, _>("created_at").map_err(get)?,
        );
        r.scopes = from_json("scopes", &scopes)?;
        r.roles = from_json("roles", &roles)?;
        r.metadata = from_json("metadata", &metadata)?;
        r.expires_at = row.try_get("expires_at").map_err(get)?;
        r.revoked_at = row.try_get("revoked_at").map_err(get)?;
        r.remaining_uses = row.try_get("remaining_uses").map_err(get)?;
        r.last_used_at = row.try_get("last_used_at").map_err(get)?;
        r.rotated_to = row.try_get("rotated_to").map_err(get)?;
        let limits: Option<String> = row.try_get("limits").map_err(get)?;
        if let Some(limits) = limits {
            r.limits = from_json("limits", &limits)?;
        }
        Ok::<KeyRecord, StoreError>(r)
    }};
}

/// Binds a record's 14 columns, in table order, to an `INSERT`.
macro_rules! bind_record {
    ($q:expr, $r:expr) => {{
        let r = $r;
        $q.bind(r.id.clone())
            .bind(r.tenant.clone())
            .bind(r.name.clone())
            .bind(r.secret_hash.to_vec())
            .bind(to_json("encoding scopes", &r.scopes)?)
            .bind(to_json("encoding roles", &r.roles)?)
            .bind(to_json("encoding metadata", &r.metadata)?)
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.revoked_at)
            .bind(r.remaining_uses)
            .bind(r.last_used_at)
            .bind(r.rotated_to.clone())
            .bind(limits_json(&r.limits)?)
    }};
}

/// The `KeyStore` methods, identical for both backends but for the SQL text (module `$sql`),
/// the database type `$db`, and the store's `announce` (what it tells other replicas, inside
/// the transaction of a change). Every statement binds its parameters in the order written, so
/// the SQLite (`?`) and PostgreSQL (`$n`) texts share one binding sequence.
macro_rules! impl_key_store {
    ($store:ty, $sql:ident, $db:ty) => {
        impl KeyStore for $store {
            fn insert(&self, record: KeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async move {
                    let q = bind_record!(sqlx::query($sql::INSERT), &record);
                    match q.execute(&self.pool).await {
                        Ok(_) => Ok(()),
                        Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(record.id)),
                        Err(e) => Err(backend("inserting a key", e)),
                    }
                })
            }

            fn get<'a>(
                &'a self,
                id: &'a str,
            ) -> BoxFuture<'a, Result<Option<KeyRecord>, StoreError>> {
                Box::pin(async move {
                    let row = sqlx::query($sql::GET)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| backend("reading a key", e))?;
                    row.map(|row| decode_row!(&row)).transpose()
                })
            }

            fn list<'a>(
                &'a self,
                tenant: Option<&'a str>,
            ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
                Box::pin(async move {
                    let q = match tenant {
                        Some(t) => sqlx::query($sql::LIST_TENANT).bind(t),
                        None => sqlx::query($sql::LIST_ALL),
                    };
                    let rows = q
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| backend("listing keys", e))?;
                    rows.iter().map(|row| decode_row!(row)).collect()
                })
            }

            fn revoke<'a>(
                &'a self,
                id: &'a str,
                at: i64,
            ) -> BoxFuture<'a, Result<bool, StoreError>> {
                Box::pin(async move {
                    let op = "revoking a key";
                    let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
                    let changed = sqlx::query($sql::REVOKE)
                        .bind(at)
                        .bind(id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| backend(op, e))?
                        .rows_affected();
                    if changed > 0 {
                        self.announce(&mut tx, &Invalidation::Key(id.to_owned()))
                            .await?;
                        tx.commit().await.map_err(|e| backend(op, e))?;
                        return Ok(true);
                    }
                    tx.rollback().await.map_err(|e| backend(op, e))?;
                    let exists = sqlx::query($sql::EXISTS)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| backend(op, e))?
                        .is_some();
                    if exists {
                        Ok(false)
                    } else {
                        Err(StoreError::NotFound(id.to_owned()))
                    }
                })
            }

            fn revoke_tenant<'a>(
                &'a self,
                tenant: &'a str,
                at: i64,
            ) -> BoxFuture<'a, Result<u64, StoreError>> {
                Box::pin(async move {
                    let op = "revoking a tenant's keys";
                    let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
                    let changed = sqlx::query($sql::REVOKE_TENANT)
                        .bind(at)
                        .bind(tenant)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| backend(op, e))?
                        .rows_affected();
                    if changed > 0 {
                        self.announce(&mut tx, &Invalidation::Tenant(tenant.to_owned()))
                            .await?;
                    }
                    tx.commit().await.map_err(|e| backend(op, e))?;
                    Ok(changed)
                })
            }

            fn rotate<'a>(
                &'a self,
                id: &'a str,
                successor: KeyRecord,
                grace_until: i64,
            ) -> BoxFuture<'a, Result<(), StoreError>> {
                Box::pin(async move {
                    let op = "rotating a key";
                    let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
                    let q = bind_record!(sqlx::query($sql::INSERT), &successor);
                    match q.execute(&mut *tx).await {
                        Ok(_) => {}
                        Err(e) if is_unique_violation(&e) => {
                            tx.rollback().await.map_err(|e| backend(op, e))?;
                            return Err(StoreError::Duplicate(successor.id));
                        }
                        Err(e) => return Err(backend(op, e)),
                    }
                    let changed = sqlx::query($sql::ROTATE_OLD)
                        .bind(successor.id.clone())
                        .bind(grace_until)
                        .bind(grace_until)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| backend(op, e))?
                        .rows_affected();
                    if changed == 0 {
                        tx.rollback().await.map_err(|e| backend(op, e))?;
                        return Err(StoreError::NotFound(id.to_owned()));
                    }
                    self.announce(&mut tx, &Invalidation::Key(id.to_owned()))
                        .await?;
                    tx.commit().await.map_err(|e| backend(op, e))
                })
            }

            fn touch<'a>(
                &'a self,
                uses: &'a [(String, i64)],
            ) -> BoxFuture<'a, Result<(), StoreError>> {
                Box::pin(async move {
                    if uses.is_empty() {
                        return Ok(());
                    }
                    let op = "recording key uses";
                    let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
                    for (id, at) in uses {
                        sqlx::query($sql::TOUCH)
                            .bind(*at)
                            .bind(*at)
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| backend(op, e))?;
                    }
                    tx.commit().await.map_err(|e| backend(op, e))
                })
            }

            fn consume_use<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
                Box::pin(async move {
                    let op = "spending a key use";
                    // One statement: concurrent spenders are serialised on the row.
                    let spent = sqlx::query($sql::CONSUME_USE)
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| backend(op, e))?;
                    if !spent.is_empty() {
                        return Ok(true);
                    }
                    // No unit spent: no credit at all (unlimited), none left, or no such key.
                    // A credit only ever goes down, so this later read cannot contradict it.
                    let row = sqlx::query($sql::CREDIT)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| backend(op, e))?
                        .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
                    let credit: Option<i64> =
                        row.try_get("remaining_uses").map_err(|e| backend(op, e))?;
                    Ok(credit.is_none())
                })
            }

            fn record_usage<'a>(
                &'a self,
                counts: &'a [UsageCount],
            ) -> BoxFuture<'a, Result<(), StoreError>> {
                Box::pin(async move {
                    let rows = usage_rows(counts);
                    if rows.is_empty() {
                        return Ok(());
                    }
                    let op = "recording key usage";
                    let mut tx = self.pool.begin().await.map_err(|e| backend(op, e))?;
                    for chunk in rows.chunks(USAGE_CHUNK) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO api_key_usage (key_id, tenant, bucket_start, outcome, \
                             count) ",
                        );
                        q.push_values(chunk, |mut b, r| {
                            b.push_bind(r.key_id)
                                .push_bind(r.tenant)
                                .push_bind(r.bucket_start)
                                .push_bind(r.outcome)
                                .push_bind(r.count);
                        });
                        q.push(
                            " ON CONFLICT (key_id, bucket_start, outcome) \
                             DO UPDATE SET count = api_key_usage.count + excluded.count",
                        );
                        // Not cached: the last chunk's size varies.
                        q.build()
                            .persistent(false)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| backend(op, e))?;
                    }
                    tx.commit().await.map_err(|e| backend(op, e))
                })
            }

            fn usage<'a>(
                &'a self,
                query: &'a UsageQuery,
            ) -> BoxFuture<'a, Result<Vec<UsageCount>, StoreError>> {
                Box::pin(async move {
                    let secs = query.granularity.secs();
                    let sql = match (&query.key_id, &query.tenant) {
                        (None, None) => $sql::USAGE_ALL,
                        (Some(_), None) => $sql::USAGE_KEY,
                        (None, Some(_)) => $sql::USAGE_TENANT,
                        (Some(_), Some(_)) => $sql::USAGE_KEY_TENANT,
                    };
                    let mut q = sqlx::query(sql)
                        .bind(secs)
                        .bind(secs)
                        .bind(secs)
                        .bind(query.since);
                    if let Some(key_id) = &query.key_id {
                        q = q.bind(key_id.as_str());
                    }
                    if let Some(tenant) = &query.tenant {
                        q = q.bind(tenant.as_str());
                    }
                    let rows = q
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| backend("reading key usage", e))?;
                    rows.iter().map(|row| decode_usage!(row)).collect()
                })
            }
        }
    };
}

#[cfg(feature = "sqlite")]
mod sqlite_sql {
    pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
        (
            1,
            "api keys",
            include_str!("../../migrations/sqlite/0001_api_keys.sql"),
        ),
        (
            2,
            "limits and usage",
            include_str!("../../migrations/sqlite/0002_limits_and_usage.sql"),
        ),
        (
            3,
            "signing keys",
            include_str!("../../migrations/sqlite/0003_signing_keys.sql"),
        ),
    ];
    pub(super) const INSERT: &str = "INSERT INTO api_keys (id, tenant, name, secret_hash, \
        scopes, roles, metadata, created_at, expires_at, revoked_at, remaining_uses, \
        last_used_at, rotated_to, limits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    pub(super) const GET: &str = "SELECT * FROM api_keys WHERE id = ?";
    pub(super) const LIST_ALL: &str = "SELECT * FROM api_keys ORDER BY created_at, id";
    pub(super) const LIST_TENANT: &str =
        "SELECT * FROM api_keys WHERE tenant = ? ORDER BY created_at, id";
    pub(super) const REVOKE: &str = "UPDATE api_keys SET revoked_at = ? \
        WHERE id = ? AND (revoked_at IS NULL OR revoked_at > ?)";
    pub(super) const EXISTS: &str = "SELECT 1 FROM api_keys WHERE id = ?";
    pub(super) const REVOKE_TENANT: &str = "UPDATE api_keys SET revoked_at = ? \
        WHERE tenant = ? AND (revoked_at IS NULL OR revoked_at > ?)";
    pub(super) const ROTATE_OLD: &str = "UPDATE api_keys SET rotated_to = ?, revoked_at = \
        CASE WHEN revoked_at IS NULL OR revoked_at > ? THEN ? ELSE revoked_at END WHERE id = ?";
    pub(super) const TOUCH: &str = "UPDATE api_keys SET last_used_at = \
        CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END \
        WHERE id = ?";
    pub(super) const CONSUME_USE: &str = "UPDATE api_keys SET remaining_uses = remaining_uses - 1 \
        WHERE id = ? AND remaining_uses > 0 RETURNING remaining_uses";
    pub(super) const CREDIT: &str = "SELECT remaining_uses FROM api_keys WHERE id = ?";

    /// Sums the minute rows since a time into buckets of a length: binds the length three
    /// times (a floored modulo: `%` truncates toward zero), the time, then the filter's values.
    macro_rules! usage {
        ($filter:literal) => {
            concat!(
                "SELECT key_id, tenant, \
                 bucket_start - (((bucket_start % ?) + ?) % ?) AS bucket, \
                 outcome, SUM(count) AS total FROM api_key_usage WHERE bucket_start >= ?",
                $filter,
                " GROUP BY key_id, tenant, bucket, outcome \
                 ORDER BY bucket, key_id, outcome, tenant"
            )
        };
    }
    pub(super) const USAGE_ALL: &str = usage!("");
    pub(super) const USAGE_KEY: &str = usage!(" AND key_id = ?");
    pub(super) const USAGE_TENANT: &str = usage!(" AND tenant = ?");
    pub(super) const USAGE_KEY_TENANT: &str = usage!(" AND key_id = ? AND tenant = ?");
}

#[cfg(feature = "postgres")]
mod postgres_sql {
    pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
        (
            1,
            "api keys",
            include_str!("../../migrations/postgres/0001_api_keys.sql"),
        ),
        (
            2,
            "limits and usage",
            include_str!("../../migrations/postgres/0002_limits_and_usage.sql"),
        ),
        (
            3,
            "signing keys",
            include_str!("../../migrations/postgres/0003_signing_keys.sql"),
        ),
    ];
    pub(super) const INSERT: &str = "INSERT INTO api_keys (id, tenant, name, secret_hash, \
        scopes, roles, metadata, created_at, expires_at, revoked_at, remaining_uses, \
        last_used_at, rotated_to, limits) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, \
        $7::jsonb, $8, $9, $10, $11, $12, $13, $14)";
    /// The `api_keys` columns, JSON as text.
    macro_rules! columns {
        () => {
            "id, tenant, name, secret_hash, scopes::text AS scopes, roles::text AS roles, \
             metadata::text AS metadata, created_at, expires_at, revoked_at, remaining_uses, \
             last_used_at, rotated_to, limits"
        };
    }
    pub(super) const GET: &str = concat!("SELECT ", columns!(), " FROM api_keys WHERE id = $1");
    pub(super) const LIST_ALL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys ORDER BY created_at, id"
    );
    pub(super) const LIST_TENANT: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys WHERE tenant = $1 ORDER BY created_at, id"
    );
    pub(super) const REVOKE: &str = "UPDATE api_keys SET revoked_at = $1 \
        WHERE id = $2 AND (revoked_at IS NULL OR revoked_at > $3)";
    pub(super) const EXISTS: &str = "SELECT 1 FROM api_keys WHERE id = $1";
    pub(super) const REVOKE_TENANT: &str = "UPDATE api_keys SET revoked_at = $1 \
        WHERE tenant = $2 AND (revoked_at IS NULL OR revoked_at > $3)";
    pub(super) const ROTATE_OLD: &str = "UPDATE api_keys SET rotated_to = $1, revoked_at = \
        CASE WHEN revoked_at IS NULL OR revoked_at > $2 THEN $3 ELSE revoked_at END \
        WHERE id = $4";
    pub(super) const TOUCH: &str = "UPDATE api_keys SET last_used_at = \
        CASE WHEN last_used_at IS NULL OR last_used_at < $1 THEN $2 ELSE last_used_at END \
        WHERE id = $3";
    pub(super) const CONSUME_USE: &str = "UPDATE api_keys SET remaining_uses = remaining_uses - 1 \
        WHERE id = $1 AND remaining_uses > 0 RETURNING remaining_uses";
    pub(super) const CREDIT: &str = "SELECT remaining_uses FROM api_keys WHERE id = $1";
    pub(super) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

    /// As for SQLite; byte-wise text order (`COLLATE "C"`) whatever the database's collation.
    macro_rules! usage {
        ($filter:literal) => {
            concat!(
                "SELECT key_id, tenant, \
                 bucket_start - (((bucket_start % $1) + $2) % $3) AS bucket, \
                 outcome, SUM(count)::BIGINT AS total FROM api_key_usage \
                 WHERE bucket_start >= $4",
                $filter,
                " GROUP BY key_id, tenant, bucket, outcome \
                 ORDER BY bucket, key_id COLLATE \"C\", outcome COLLATE \"C\", \
                 tenant COLLATE \"C\""
            )
        };
    }
    pub(super) const USAGE_ALL: &str = usage!("");
    pub(super) const USAGE_KEY: &str = usage!(" AND key_id = $5");
    pub(super) const USAGE_TENANT: &str = usage!(" AND tenant = $5");
    pub(super) const USAGE_KEY_TENANT: &str = usage!(" AND key_id = $5 AND tenant = $6");
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Creates `path` as an empty file readable by its owner only, unless it exists.
#[cfg(feature = "sqlite")]
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
    use std::str::FromStr;

    /// Keys in a SQLite database (WAL mode), migrated on connect.
    #[derive(Debug, Clone)]
    pub struct SqliteStore {
        pool: SqlitePool,
    }

    impl SqliteStore {
        /// Opens (creating it when missing) the database at `url`, such as
        /// `sqlite://./.auth-demo/auth.db?mode=rwc`, in WAL mode, and applies the migrations.
        ///
        /// A database file it creates is readable by its owner only (mode 0600 on Unix; SQLite
        /// gives its WAL files the same mode): it holds key hashes and, with
        /// [`rotation`](crate::rotation), private signing keys.
        pub async fn connect(url: &str) -> Result<Self, StoreError> {
            let op = "connecting to SQLite";
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| backend(op, e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            let file = options.get_filename();
            if !url.contains("mode=memory") && file != std::path::Path::new(":memory:") {
                // Errors (a missing directory) are left to SQLite to report.
                let _ = create_private(file);
            }
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .map_err(|e| backend(op, e))?;
            Self::from_pool(pool).await
        }

        /// A store over an existing pool; applies the migrations.
        pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
            migrator(sqlite_sql::MIGRATIONS)
                .run(&pool)
                .await
                .map_err(|e| backend("migrating the SQLite key store", e))?;
            Ok(Self { pool })
        }

        /// The connection pool.
        pub fn pool(&self) -> &SqlitePool {
            &self.pool
        }

        /// Closes the pool, waiting for connections to be returned.
        pub async fn close(&self) {
            self.pool.close().await;
        }

        /// Nothing: a SQLite database is not shared by replicas that cache keys.
        #[allow(clippy::unused_async)]
        async fn announce(
            &self,
            _: &mut sqlx::SqliteConnection,
            _: &Invalidation,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    use super::sqlite_sql;
    impl_key_store!(SqliteStore, sqlite_sql, sqlx::Sqlite);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
    use std::str::FromStr;
    use std::sync::Arc;
    use std::time::Duration;

    /// Keys in a PostgreSQL database, migrated on connect.
    ///
    /// Revocations and rotations are announced with `NOTIFY` on the channel
    /// [`channel`](Self::channel) (named after the store's schema, so stores in different
    /// schemas of one database do not hear each other); [`listen`](Self::listen) receives them.
    #[derive(Debug, Clone)]
    pub struct PostgresStore {
        pool: PgPool,
        channel: Arc<str>,
    }

    impl PostgresStore {
        /// Connects to `url` (`postgres://user@host:5432/db`) and applies the migrations to the
        /// connection's default schema.
        pub async fn connect(url: &str) -> Result<Self, StoreError> {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| backend("connecting to PostgreSQL", e))?;
            Self::connect_with_options(options).await
        }

        /// Connects to `url` with the tables (and the migration history) in `schema`, created
        /// when missing; every connection of the pool gets `search_path` set to it. The name
        /// must be ASCII letters, digits and `_`, not starting with a digit.
        pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
            let op = "connecting to PostgreSQL";
            if !valid_schema(schema) {
                return Err(StoreError::Backend(format!(
                    "{op}: invalid schema name `{schema}`"
                )));
            }
            let options = PgConnectOptions::from_str(url).map_err(|e| backend(op, e))?;
            {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| backend(op, e))?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| backend("creating the schema", e))?;
                conn.close().await.map_err(|e| backend(op, e))?;
            }
            Self::connect_with_options(options.options([("search_path", schema)])).await
        }

        async fn connect_with_options(options: PgConnectOptions) -> Result<Self, StoreError> {
            let pool = PgPoolOptions::new()
                .connect_with(options)
                .await
                .map_err(|e| backend("connecting to PostgreSQL", e))?;
            Self::from_pool(pool).await
        }

        /// A store over an existing pool; applies the migrations to the connections' current
        /// schema, which also names the notification channel.
        pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
            migrator(postgres_sql::MIGRATIONS)
                .run(&pool)
                .await
                .map_err(|e| backend("migrating the PostgreSQL key store", e))?;
            let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
                .fetch_one(&pool)
                .await
                .map_err(|e| backend("reading the current schema", e))?;
            let channel = channel_for(schema.as_deref().unwrap_or("public")).into();
            Ok(Self { pool, channel })
        }

        /// The connection pool.
        pub fn pool(&self) -> &PgPool {
            &self.pool
        }

        /// The `NOTIFY` channel of this store's schema: `auth_keys_<schema>` (or, when that is
        /// longer than PostgreSQL's 63-byte identifiers, `auth_keys_` and a hash of the
        /// schema name).
        pub fn channel(&self) -> &str {
            &self.channel
        }

        /// Closes the pool, waiting for connections to be returned. A [`listen`](Self::listen)
        /// task gives its connection back and ends.
        pub async fn close(&self) {
            self.pool.close().await;
        }

        /// Tells other replicas about `change`, in the transaction of `conn`: sent when it
        /// commits, not at all when it rolls back.
        async fn announce(
            &self,
            conn: &mut sqlx::PgConnection,
            change: &Invalidation,
        ) -> Result<(), StoreError> {
            let payload = change.payload();
            // PostgreSQL refuses payloads of 8000 bytes or more; such a change is then seen when
            // the caches expire, as without notifications.
            if payload.len() >= 8000 {
                tracing::warn!(
                    bytes = payload.len(),
                    "key change not announced: the name is too long for a notification"
                );
                return Ok(());
            }
            sqlx::query(postgres_sql::NOTIFY)
                .bind(&*self.channel)
                .bind(payload)
                .execute(conn)
                .await
                .map_err(|e| backend("announcing a key change", e))?;
            Ok(())
        }

        /// Calls `on_change` for every revocation and rotation made through any
        /// `PostgresStore` on this store's schema (this process's included), from a task that
        /// holds one connection of the pool. The task reconnects when the connection drops
        /// (changes made meanwhile are not delivered: a warning is logged, and caches catch up
        /// at their TTL), ignores malformed notifications, and ends when the store is
        /// [closed](Self::close) or the returned handle aborted.
        ///
        /// # Errors
        ///
        /// [`StoreError::Backend`] when the first connection or `LISTEN` fails; nothing is
        /// started then.
        pub async fn listen(
            &self,
            on_change: impl Fn(Invalidation) + Send + Sync + 'static,
        ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
            let op = "listening for key changes";
            let mut listener = PgListener::connect_with(&self.pool)
                .await
                .map_err(|e| backend(op, e))?;
            listener
                .listen(&self.channel)
                .await
                .map_err(|e| backend(op, e))?;
            let channel = Arc::clone(&self.channel);
            Ok(tokio::spawn(listen_loop(listener, channel, on_change)))
        }
    }

    /// Receives notifications until the pool closes.
    async fn listen_loop(
        mut listener: PgListener,
        channel: Arc<str>,
        on_change: impl Fn(Invalidation) + Send + Sync + 'static,
    ) {
        const FIRST_RETRY: Duration = Duration::from_millis(100);
        const LAST_RETRY: Duration = Duration::from_secs(30);
        let mut retry = FIRST_RETRY;
        let mut failed = false;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if failed {
                        tracing::warn!(
                            channel = &*channel,
                            "listening for key changes again; changes made meanwhile were missed"
                        );
                        failed = false;
                    }
                    retry = FIRST_RETRY;
                    if n.channel() != &*channel {
                        continue;
                    }
                    match Invalidation::parse(n.payload()) {
                        Some(change) => on_change(change),
                        None => tracing::debug!(
                            channel = &*channel,
                            "ignoring a malformed key-change notification"
                        ),
                    }
                }
                // The connection dropped and a new one listens already.
                Ok(None) => {
                    tracing::warn!(
                        channel = &*channel,
                        "the connection listening for key changes dropped and was replaced; \
                         changes made meanwhile were missed"
                    );
                    failed = false;
                    retry = FIRST_RETRY;
                }
                Err(sqlx::Error::PoolClosed) => {
                    tracing::debug!(channel = &*channel, "key store closed; no longer listening");
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        channel = &*channel,
                        error = %e,
                        retry_in_ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX),
                        "listening for key changes failed; retrying"
                    );
                    failed = true;
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// `auth_keys_<schema>`, or `auth_keys_<hash>` when that exceeds 63 bytes (PostgreSQL
    /// would truncate the identifier in `LISTEN` but refuse it in `pg_notify`).
    fn channel_for(schema: &str) -> String {
        let name = format!("auth_keys_{schema}");
        if name.len() <= 63 {
            return name;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, schema.as_bytes());
        let hex: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("auth_keys_{hex}")
    }

    fn valid_schema(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    use super::postgres_sql;
    impl_key_store!(PostgresStore, postgres_sql, sqlx::Postgres);

    #[cfg(test)]
    mod tests {
        use super::channel_for;

        #[test]
        fn channel_names_fit_identifiers() {
            assert_eq!(channel_for("auth"), "auth_keys_auth");
            let long = "s".repeat(63);
            let c = channel_for(&long);
            assert!(c.len() <= 63 && c.starts_with("auth_keys_"), "{c}");
            assert_eq!(c, channel_for(&long), "stable");
            assert_ne!(c, channel_for(&"t".repeat(63)));
        }
    }
}

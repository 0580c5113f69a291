//! SQL key stores: [`SqliteStore`] (feature `sqlite`, SQLite bundled) and [`PostgresStore`]
//! (feature `postgres`), both implementations of [`KeyStore`] with the semantics of
//! [`MemoryStore`](super::store::MemoryStore).
//!
//! Both apply their migrations (`auth-core/migrations/{sqlite,postgres}`, embedded in the
//! binary) when they connect. Keys live in one table, `api_keys`: scopes, roles and metadata as
//! JSON, the secret's hash as a 32-byte blob, times as seconds since the Unix epoch. A rotation
//! runs in one transaction. Backend errors become [`StoreError::Backend`].
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

use super::store::{KeyRecord, KeyStore, StoreError};
use crate::authenticator::BoxFuture;
use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A `sqlx` error as a [`StoreError::Backend`], naming the operation.
fn backend(op: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{op}: {e}"))
}

/// Whether `e` is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn migrator(sql: &'static str) -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "api keys".into(),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sql),
        false,
    )])
}

fn to_json<T: serde::Serialize>(op: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| backend(op, e))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| backend(&format!("decoding `{column}`"), e))
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
        Ok::<KeyRecord, StoreError>(r)
    }};
}

/// Binds a record's 13 columns, in table order, to an `INSERT`.
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
    }};
}

/// The `KeyStore` methods, identical for both backends but for the SQL text (module `$sql`).
/// Every statement binds its parameters in the order written, so the SQLite (`?`) and
/// PostgreSQL (`$n`) texts share one binding sequence.
macro_rules! impl_key_store {
    ($store:ty, $sql:ident) => {
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
                    let changed = sqlx::query($sql::REVOKE)
                        .bind(at)
                        .bind(id)
                        .bind(at)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| backend("revoking a key", e))?
                        .rows_affected();
                    if changed > 0 {
                        return Ok(true);
                    }
                    let exists = sqlx::query($sql::EXISTS)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| backend("revoking a key", e))?
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
                    Ok(sqlx::query($sql::REVOKE_TENANT)
                        .bind(at)
                        .bind(tenant)
                        .bind(at)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| backend("revoking a tenant's keys", e))?
                        .rows_affected())
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
        }
    };
}

#[cfg(feature = "sqlite")]
mod sqlite_sql {
    pub(super) const MIGRATION: &str = include_str!("../../migrations/sqlite/0001_api_keys.sql");
    pub(super) const INSERT: &str = "INSERT INTO api_keys (id, tenant, name, secret_hash, \
        scopes, roles, metadata, created_at, expires_at, revoked_at, remaining_uses, \
        last_used_at, rotated_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
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
}

#[cfg(feature = "postgres")]
mod postgres_sql {
    pub(super) const MIGRATION: &str = include_str!("../../migrations/postgres/0001_api_keys.sql");
    pub(super) const INSERT: &str = "INSERT INTO api_keys (id, tenant, name, secret_hash, \
        scopes, roles, metadata, created_at, expires_at, revoked_at, remaining_uses, \
        last_used_at, rotated_to) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, \
        $8, $9, $10, $11, $12, $13)";
    pub(super) const GET: &str = "SELECT id, tenant, name, secret_hash, scopes::text AS scopes, \
        roles::text AS roles, metadata::text AS metadata, created_at, expires_at, revoked_at, \
        remaining_uses, last_used_at, rotated_to FROM api_keys WHERE id = $1";
    pub(super) const LIST_ALL: &str = "SELECT id, tenant, name, secret_hash, \
        scopes::text AS scopes, roles::text AS roles, metadata::text AS metadata, created_at, \
        expires_at, revoked_at, remaining_uses, last_used_at, rotated_to FROM api_keys \
        ORDER BY created_at, id";
    pub(super) const LIST_TENANT: &str = "SELECT id, tenant, name, secret_hash, \
        scopes::text AS scopes, roles::text AS roles, metadata::text AS metadata, created_at, \
        expires_at, revoked_at, remaining_uses, last_used_at, rotated_to FROM api_keys \
        WHERE tenant = $1 ORDER BY created_at, id";
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
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

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
        pub async fn connect(url: &str) -> Result<Self, StoreError> {
            let op = "connecting to SQLite";
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| backend(op, e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .map_err(|e| backend(op, e))?;
            Self::from_pool(pool).await
        }

        /// A store over an existing pool; applies the migrations.
        pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
            migrator(sqlite_sql::MIGRATION)
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
    }

    use super::sqlite_sql;
    impl_key_store!(SqliteStore, sqlite_sql);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
    use std::str::FromStr;

    /// Keys in a PostgreSQL database, migrated on connect.
    #[derive(Debug, Clone)]
    pub struct PostgresStore {
        pool: PgPool,
    }

    impl PostgresStore {
        /// Connects to `url` (`postgres://user@host:5432/db`) and applies the migrations to the
        /// connection's default schema.
        pub async fn connect(url: &str) -> Result<Self, StoreError> {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| backend("connecting to PostgreSQL", e))?;
            Self::connect_with_options(options).await
        }

        /// Connects to `url` with the table (and the migration history) in `schema`, created
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

        /// A store over an existing pool; applies the migrations.
        pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
            migrator(postgres_sql::MIGRATION)
                .run(&pool)
                .await
                .map_err(|e| backend("migrating the PostgreSQL key store", e))?;
            Ok(Self { pool })
        }

        /// The connection pool.
        pub fn pool(&self) -> &PgPool {
            &self.pool
        }

        /// Closes the pool, waiting for connections to be returned.
        pub async fn close(&self) {
            self.pool.close().await;
        }
    }

    fn valid_schema(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    use super::postgres_sql;
    impl_key_store!(PostgresStore, postgres_sql);
}

//! API keys (feature `api-keys`): the key format ([`format`](mod@format)), stored records and
//! stores ([`store`]; SQLite and PostgreSQL in `sql`), the lifecycle with its audit events
//! ([`manage`]), rates and quotas ([`limit`]; Redis in `redis`), and usage analytics
//! ([`usage`]).
//!
//! Keys are shown once, at creation; only a hash of their secret is stored, looked up by the
//! key's public id and compared in constant time. [`ApiKeys`] is the authenticator; put it in a
//! [`Chain`](crate::authenticator::Chain) next to a [`Jwt`](crate::jwt::Jwt) to accept both.

mod authenticator;
pub mod format;
pub mod limit;
pub mod manage;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;
pub mod store;
pub mod usage;

pub use authenticator::{ApiKeys, ApiKeysBuilder};

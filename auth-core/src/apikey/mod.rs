//! API keys (feature `api-keys`): the key format ([`format`]), stored records and stores
//! ([`store`]), and in-process rate limits ([`limit`]).
//!
//! Keys are shown once, at creation; only a hash of their secret is stored, looked up by the
//! key's public id and compared in constant time. The authenticator, rotation with a grace
//! period, usage analytics, the SQLite/PostgreSQL stores and the Redis limiter build on these.

pub mod format;
pub mod limit;
pub mod store;

//! `auth-demo keys`: create, list, show, revoke and rotate API keys in the key store
//! (`--database-url`: a SQLite file by default, or PostgreSQL).
//!
//! A key is printed once, at creation (or rotation); the store keeps only its hash.

use crate::cli::Error;
use crate::duration::parse_duration;
use auth_core::apikey::ApiKeys;
use auth_core::apikey::sql::{PostgresStore, SqliteStore};
use auth_core::apikey::store::{KeyRecord, KeyStore};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default key store: a SQLite file next to the development issuer's key.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./.auth-demo/auth.db";

/// The demo's API key prefix.
pub const PREFIX: &str = "ak_demo";

/// Where keys are kept.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The key store: `sqlite://PATH` (created when missing) or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once).
    Create(CreateArgs),
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one key's record.
    Show {
        /// The key id.
        id: String,
    },
    /// Revoke a key now.
    Revoke {
        /// The key id.
        id: String,
    },
    /// Issue a successor; the old key keeps working for the grace period.
    Rotate {
        /// The key id.
        id: String,
        /// How long the old key keeps working (e.g. 24h).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace: Duration,
        /// Print the successor as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `keys create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The tenant the key belongs to.
    #[arg(long)]
    pub tenant: String,
    /// A human name for the key.
    #[arg(long)]
    pub name: String,
    /// Space-separated scopes.
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// Lifetime (e.g. 30d); none by default.
    #[arg(long, value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
    /// Print one JSON object (`id`, `key`, ...) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Opens the store named by `url`.
///
/// # Errors
///
/// When the URL is neither `sqlite:` nor `postgres:`, or the store cannot be opened.
pub async fn open_store(url: &str) -> Result<Arc<dyn KeyStore>, Error> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(file).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(format!("--database-url `{url}`: use sqlite://PATH or postgres://...").into())
    }
}

/// The API-key authenticator of the demo over `store`.
///
/// # Errors
///
/// Never for the demo's constant prefix.
pub fn authenticator(store: Arc<dyn KeyStore>) -> Result<ApiKeys, Error> {
    Ok(ApiKeys::builder(store).prefix(PREFIX).build()?)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn describe(r: &KeyRecord) -> Value {
    json!({
        "id": r.id,
        "tenant": r.tenant,
        "name": r.name,
        "scopes": r.scopes,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "revoked_at": r.revoked_at,
        "rotated_to": r.rotated_to,
        "last_used_at": r.last_used_at,
    })
}

/// Runs one `keys` subcommand; returns what to print on stdout.
///
/// # Errors
///
/// When the store fails, a key id is unknown, or a key cannot be generated.
pub async fn run(store: Arc<dyn KeyStore>, command: KeysCommand) -> Result<String, Error> {
    let keys = authenticator(store.clone())?;
    let issue = |tenant: &str, name: &str, scopes: Vec<String>, expires_at: Option<i64>| {
        let (key, parsed) = keys.format().generate()?;
        let mut record = KeyRecord::new(
            parsed.id(),
            tenant,
            name,
            keys.hasher().hash(parsed.secret()),
            now(),
        );
        record.scopes = scopes;
        record.expires_at = expires_at;
        Ok::<_, Error>((key, record))
    };
    let created = |key: &str, r: &KeyRecord, json_out: bool| {
        if json_out {
            let mut v = describe(r);
            v["key"] = key.into();
            v.to_string()
        } else {
            format!(
                "created key {} for tenant {} (shown once, keep it now):\n{key}",
                r.id, r.tenant
            )
        }
    };
    match command {
        KeysCommand::Create(a) => {
            let expires_at = a
                .expires_in
                .map(|d| now().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
            let scopes = a.scopes.split_whitespace().map(str::to_owned).collect();
            let (key, record) = issue(&a.tenant, &a.name, scopes, expires_at)?;
            store.insert(record.clone()).await?;
            Ok(created(&key, &record, a.json))
        }
        KeysCommand::List { tenant, json } => {
            let list = store.list(tenant.as_deref()).await?;
            if json {
                return Ok(Value::Array(list.iter().map(describe).collect()).to_string());
            }
            let mut out = format!(
                "{:<18} {:<12} {:<16} {:<10} {}",
                "ID", "TENANT", "NAME", "STATUS", "SCOPES"
            );
            for r in &list {
                let status = format!("{:?}", r.status(now())).to_lowercase();
                out.push_str(&format!(
                    "\n{:<18} {:<12} {:<16} {:<10} {}",
                    r.id,
                    r.tenant,
                    r.name,
                    status,
                    r.scopes.join(" ")
                ));
            }
            Ok(out)
        }
        KeysCommand::Show { id } => {
            let r = store
                .get(&id)
                .await?
                .ok_or_else(|| format!("no key with id `{id}`"))?;
            Ok(describe(&r).to_string())
        }
        KeysCommand::Revoke { id } => {
            let changed = store.revoke(&id, now()).await?;
            Ok(if changed {
                format!("revoked {id}")
            } else {
                format!("{id} was already revoked")
            })
        }
        KeysCommand::Rotate { id, grace, json } => {
            let old = store
                .get(&id)
                .await?
                .ok_or_else(|| format!("no key with id `{id}`"))?;
            let (key, record) = issue(&old.tenant, &old.name, old.scopes.clone(), old.expires_at)?;
            let grace_until =
                now().saturating_add(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
            store.rotate(&id, record.clone(), grace_until).await?;
            Ok(created(&key, &record, json))
        }
    }
}

//! `auth-demo keys`: create, list, show, revoke and rotate API keys in the key store
//! (`--database-url`: a SQLite file by default, or PostgreSQL), and read their usage.
//!
//! A key is printed once, at creation (or rotation); the store keeps only its hash. Its limits
//! (`--rate`, `--burst`, `--quota`) and use credit (`--uses`) are stored with it and enforced
//! by every `serve` that reads the same store.

use crate::cli::Error;
use crate::duration::parse_duration;
use auth_core::apikey::ApiKeys;
use auth_core::apikey::limit::{KeyLimits, Quota, Rate};
use auth_core::apikey::manage::{KeyManager, NewKey};
use auth_core::apikey::sql::{PostgresStore, SqliteStore};
use auth_core::apikey::store::{KeyRecord, KeyStore};
use auth_core::apikey::usage::{Granularity, Outcome, UsageCount, UsageQuery};
use clap::{ArgGroup, Args, Subcommand};
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
    /// Redis, shared by every `serve` for rate limits and quotas (`redis://HOST:PORT`);
    /// limits are counted in process without it. `keys` commands do not need it.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// With PostgreSQL: the schema holding the key tables (created when missing); the
    /// connection's default schema otherwise.
    #[arg(long, env = "AUTH_DEMO_DATABASE_SCHEMA", global = true)]
    pub database_schema: Option<String>,
    /// The prefix of the rate-limit keys in Redis.
    #[arg(
        long,
        env = "AUTH_DEMO_REDIS_PREFIX",
        default_value = "auth:rl:",
        global = true
    )]
    pub redis_prefix: String,
    /// The prefix of the token denylist's keys in Redis (`tokens revoke` and `serve`).
    #[arg(
        long,
        env = "AUTH_DEMO_DENYLIST_PREFIX",
        default_value = crate::tokens::DEFAULT_DENYLIST_PREFIX,
        global = true
    )]
    pub denylist_prefix: String,
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
    /// Revoke a key, or every key of a tenant, now.
    #[command(group(ArgGroup::new("what").required(true).args(["id", "tenant"])))]
    Revoke {
        /// The key id.
        id: Option<String>,
        /// Every key of this tenant instead.
        #[arg(long)]
        tenant: Option<String>,
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
    /// Show how a key or a tenant's keys were used, per time bucket.
    Usage(UsageArgs),
}

/// Arguments of `keys usage`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("whose").required(true).args(["id", "tenant"])))]
pub struct UsageArgs {
    /// The key id.
    pub id: Option<String>,
    /// All keys of this tenant instead.
    #[arg(long)]
    pub tenant: Option<String>,
    /// How far back (e.g. 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    /// Bucket size: minute, hour or day (default: by --since: minutes up to 3h, hours up to
    /// 3d, days beyond).
    #[arg(long, value_parser = parse_granularity)]
    pub by: Option<Granularity>,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
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
    /// A rate limit: N/s, N/m, N/h or N/d (e.g. 10/s).
    #[arg(long, value_parser = Rate::parse)]
    pub rate: Option<Rate>,
    /// The burst of --rate (default: its N).
    #[arg(long, requires = "rate", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// A quota over a calendar window in UTC: N/hour, N/day or N/month (e.g. 1000/day).
    #[arg(long, value_parser = Quota::parse)]
    pub quota: Option<Quota>,
    /// A use credit: the key stops working after this many allowed requests.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub uses: Option<i64>,
    /// Print one JSON object (`id`, `key`, ...) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Opens the store named by `url`.
///
/// # Errors
///
/// When the URL is neither `sqlite:` nor `postgres:`, or the store cannot be opened.
pub async fn open_store(args: &StoreArgs) -> Result<Arc<dyn KeyStore>, Error> {
    let url = args.database_url.as_str();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(file).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if is_postgres(url) {
        Ok(Arc::new(open_postgres(args).await?))
    } else {
        Err(format!("--database-url `{url}`: use sqlite://PATH or postgres://...").into())
    }
}

/// Opens the PostgreSQL store of `args` (in `--database-schema`, if given).
///
/// # Errors
///
/// When the database cannot be reached or migrated.
pub async fn open_postgres(args: &StoreArgs) -> Result<PostgresStore, Error> {
    Ok(match &args.database_schema {
        Some(schema) => PostgresStore::connect_with_schema(&args.database_url, schema).await?,
        None => PostgresStore::connect(&args.database_url).await?,
    })
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The API-key authenticator of the `keys` commands over `store` (its format and hasher).
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

fn status_name(r: &KeyRecord) -> String {
    format!("{:?}", r.status(now())).to_lowercase()
}

fn describe(r: &KeyRecord) -> Value {
    json!({
        "id": r.id,
        "tenant": r.tenant,
        "name": r.name,
        "scopes": r.scopes,
        "status": status_name(r),
        "rate": r.limits.rate.map(|l| l.to_string()),
        "quota": r.limits.quota.map(|q| q.to_string()),
        "remaining_uses": r.remaining_uses,
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
    let manager = KeyManager::new(authenticator(store.clone())?);
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
            let mut spec = NewKey::new(a.tenant, a.name)
                .scopes(a.scopes.split_whitespace())
                .limits(KeyLimits::new(
                    a.rate.map(|r| a.burst.map_or(r, |b| r.burst(b))),
                    a.quota,
                ));
            if let Some(d) = a.expires_in {
                spec = spec.expires_at(
                    now().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                );
            }
            if let Some(uses) = a.uses {
                spec = spec.remaining_uses(uses);
            }
            let (key, record) = manager.create(spec, now()).await?;
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
                let status = status_name(r);
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
        KeysCommand::Revoke { id: Some(id), .. } => {
            let changed = manager.revoke(&id, now()).await?;
            Ok(if changed {
                format!("revoked {id}")
            } else {
                format!("{id} was already revoked")
            })
        }
        KeysCommand::Revoke {
            id: None,
            tenant: Some(tenant),
        } => {
            let n = manager.revoke_tenant(&tenant, now()).await?;
            Ok(format!("revoked {n} key(s) of tenant {tenant}"))
        }
        KeysCommand::Revoke { .. } => Err("name a key id or --tenant".into()),
        KeysCommand::Rotate { id, grace, json } => {
            let (key, record) = manager.rotate(&id, grace, now()).await?;
            Ok(created(&key, &record, json))
        }
        KeysCommand::Usage(a) => usage(store.as_ref(), &a).await,
    }
}

/// `keys usage`: the counts per bucket and outcome, as JSON or as a table with a bar per
/// bucket.
async fn usage(store: &dyn KeyStore, a: &UsageArgs) -> Result<String, Error> {
    let span = i64::try_from(a.since.as_secs()).unwrap_or(i64::MAX);
    let by = a.by.unwrap_or(if span <= 10_800 {
        Granularity::Minute
    } else if span <= 259_200 {
        Granularity::Hour
    } else {
        Granularity::Day
    });
    let since = now().saturating_sub(span);
    let query = match (&a.id, &a.tenant) {
        (Some(id), _) => {
            store
                .get(id)
                .await?
                .ok_or_else(|| format!("no key with id `{id}`"))?;
            UsageQuery::key(id, since, by)
        }
        (None, Some(t)) => UsageQuery::tenant(t, since, by),
        (None, None) => return Err("name a key id or --tenant".into()),
    };
    let rows = store.usage(&query).await?;
    let buckets = per_bucket(&rows);
    if a.json {
        let list: Vec<Value> = buckets
            .iter()
            .map(|(start, counts)| {
                let mut v = json!({"bucket_start": start, "total": counts.iter().sum::<u64>()});
                for (o, n) in Outcome::ALL.iter().zip(counts) {
                    v[o.as_str()] = (*n).into();
                }
                v
            })
            .collect();
        let out = json!({
            "key_id": a.id,
            "tenant": a.tenant,
            "since": since,
            "granularity": granularity_name(by),
            "buckets": list,
        });
        return Ok(out.to_string());
    }
    Ok(table(&buckets, by, since))
}

fn parse_granularity(s: &str) -> Result<Granularity, String> {
    Granularity::parse(s).ok_or_else(|| format!("`{s}`: use minute, hour or day"))
}

fn granularity_name(g: Granularity) -> &'static str {
    match g {
        Granularity::Minute => "minute",
        Granularity::Hour => "hour",
        _ => "day",
    }
}

/// The counts per bucket start, one slot per [`Outcome::ALL`] entry, in time order.
fn per_bucket(rows: &[UsageCount]) -> Vec<(i64, Vec<u64>)> {
    let mut out: Vec<(i64, Vec<u64>)> = Vec::new();
    for r in rows {
        if out.last().is_none_or(|(s, _)| *s != r.bucket_start) {
            out.push((r.bucket_start, vec![0; Outcome::ALL.len()]));
        }
        if let (Some((_, counts)), Some(i)) = (
            out.last_mut(),
            Outcome::ALL.iter().position(|o| *o == r.outcome),
        ) {
            counts[i] += r.count;
        }
    }
    out
}

const BAR: usize = 30;

fn table(buckets: &[(i64, Vec<u64>)], by: Granularity, since: i64) -> String {
    if buckets.is_empty() {
        return format!("no use since {} (UTC)", utc(since, Granularity::Minute));
    }
    let max = buckets
        .iter()
        .map(|(_, c)| c.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "{:<16} {:>8}",
        format!("{} (UTC)", granularity_name(by)),
        "total"
    );
    for o in Outcome::ALL {
        out.push_str(&format!(" {:>12}", o.as_str()));
    }
    for (start, counts) in buckets {
        let total: u64 = counts.iter().sum();
        let width = usize::try_from(total * BAR as u64 / max).unwrap_or(BAR);
        out.push_str(&format!("\n{:<16} {total:>8}", utc(*start, by)));
        for n in counts {
            out.push_str(&format!(" {n:>12}"));
        }
        out.push_str(&format!(
            "  {}",
            "█".repeat(width.max(usize::from(total > 0)))
        ));
    }
    out
}

/// `YYYY-MM-DD HH:MM` (UTC) for a bucket start; the day alone for day buckets.
fn utc(secs: i64, by: Granularity) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    match by {
        Granularity::Day => format!("{y:04}-{m:02}-{d:02}"),
        _ => format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_and_bars() {
        assert_eq!(utc(0, Granularity::Minute), "1970-01-01 00:00");
        assert_eq!(utc(1_709_214_300, Granularity::Hour), "2024-02-29 13:45");
        assert_eq!(utc(1_709_214_300, Granularity::Day), "2024-02-29");
        let row = |start, outcome, count| UsageCount {
            key_id: "k".into(),
            tenant: "t".into(),
            bucket_start: start,
            outcome,
            count,
        };
        let buckets = per_bucket(&[
            row(60, Outcome::Allowed, 4),
            row(60, Outcome::RateLimited, 2),
            row(120, Outcome::Allowed, 3),
        ]);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0].1.iter().sum::<u64>(), 6);
        let t = table(&buckets, Granularity::Minute, 0);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[1].ends_with(&"█".repeat(BAR)), "{t}");
        assert!(lines[2].ends_with(&"█".repeat(15)), "{t}");
        assert!(table(&[], Granularity::Hour, 0).starts_with("no use since"));
    }
}

//! `auth-demo tokens revoke`: put tokens on the denylist that every `serve` sharing the same
//! Redis (`--redis-url`, env `REDIS_URL`) consults on every request.
//!
//! Entries: one token by its `jti` (`--jti`), one token as presented (`--token`, only its
//! SHA-256 is stored), or every token of a subject issued before now (`--subject`: "log out
//! everywhere"). An entry lasts as long as the tokens it can match (`--expires-in`, by default
//! the longest lifetime `auth-demo token` mints, 24 h).
//!
//! Without Redis each `serve` keeps its own, empty, in-memory denylist, so there is nothing a
//! separate command could write to: `tokens revoke` then says so and fails.

use crate::cli::{Error, MAX_TTL};
use crate::duration::parse_duration;
use crate::keys::StoreArgs;
use auth_core::revocation::redis::RedisDenylist;
use auth_core::revocation::{Denylist, MemoryDenylist, Revocation};
use clap::{ArgGroup, Args, Subcommand};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default prefix of the denylist's keys in Redis.
pub const DEFAULT_DENYLIST_PREFIX: &str = "auth:dl:";

/// `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke tokens: every `serve` on the same Redis refuses them within a second.
    Revoke(RevokeArgs),
}

/// Arguments of `tokens revoke`.
#[derive(Debug, Args, Clone)]
#[command(group(ArgGroup::new("what").required(true).args(["jti", "subject", "token"])))]
pub struct RevokeArgs {
    /// The token with this `jti` claim.
    #[arg(long)]
    pub jti: Option<String>,
    /// Every token of this subject issued before now.
    #[arg(long)]
    pub subject: Option<String>,
    /// This token (only its SHA-256 is stored).
    #[arg(long)]
    pub token: Option<String>,
    /// How long the entry lasts: at least the remaining lifetime of the tokens it should
    /// refuse (e.g. 15m, 24h).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub expires_in: Duration,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Connects to the shared denylist of `--redis-url`, or `None` without one.
///
/// # Errors
///
/// When Redis cannot be reached.
pub async fn shared(store: &StoreArgs) -> Result<Option<RedisDenylist>, Error> {
    let Some(url) = &store.redis_url else {
        return Ok(None);
    };
    let denylist = RedisDenylist::builder(url)
        .prefix(&store.denylist_prefix)
        .connect()
        .await
        .map_err(|e| format!("--redis-url: {e}"))?;
    Ok(Some(denylist))
}

/// The denylist `serve` consults: the shared one with `--redis-url`, else one of its own in
/// memory.
///
/// # Errors
///
/// When Redis cannot be reached.
pub async fn for_serve(store: &StoreArgs) -> Result<Arc<dyn Denylist>, Error> {
    Ok(match shared(store).await? {
        Some(redis) => Arc::new(redis),
        None => Arc::new(MemoryDenylist::new()),
    })
}

/// Runs a `tokens` command and returns what to print.
///
/// # Errors
///
/// Without `--redis-url`, when Redis fails, or for an entry the denylist refuses.
pub async fn run(store: &StoreArgs, command: TokensCommand) -> Result<String, Error> {
    let TokensCommand::Revoke(args) = command;
    if args.expires_in.is_zero() || args.expires_in > MAX_TTL * 30 {
        return Err("--expires-in must be between 1s and 720h".into());
    }
    let Some(denylist) = shared(store).await? else {
        return Err(
            "tokens revoke writes to the denylist shared by every serve: \
                    give --redis-url (or set REDIS_URL)"
                .into(),
        );
    };
    let now = now();
    let expires_at = now.saturating_add(i64::try_from(args.expires_in.as_secs()).unwrap_or(0));
    let (entry, what) = match (&args.jti, &args.subject, &args.token) {
        (Some(jti), _, _) => (Revocation::jti(jti), format!("the token with jti {jti}")),
        (_, Some(sub), _) => (
            Revocation::subject(sub, now),
            format!("every token of {sub} issued before now"),
        ),
        (_, _, Some(token)) => (Revocation::token(token), "the token".to_owned()),
        _ => return Err("give --jti, --subject or --token".into()),
    };
    let kind = entry.kind();
    denylist.revoke(entry, expires_at).await?;
    tracing::info!(target: "auth::audit", action = "token_revoked", kind, expires_at,
        "a denylist entry was added");
    Ok(format!(
        "revoked {what} (the entry lasts {}s)",
        args.expires_in.as_secs()
    ))
}

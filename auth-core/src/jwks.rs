//! [`JwksCache`]: an issuer's keys from a JWKS URL or OIDC discovery, kept fresh in the
//! background.
//!
//! - Keys are parsed once into ready [`VerifyingKey`]s and served from an `ArcSwap` snapshot:
//!   a request for a known key never waits on the network, and no lock a fetch holds is on the
//!   request path.
//! - A background task re-reads the JWKS every `Cache-Control: max-age` (clamped to
//!   [`JwksConfig::min_refresh`]..[`JwksConfig::max_refresh`]), or every
//!   [`JwksConfig::refresh_interval`] (60 s) without caching headers. It stops when the last
//!   handle is dropped.
//! - A token naming an unknown `kid` triggers at most one fetch per
//!   [`JwksConfig::unknown_kid_cooldown`], and concurrent requests share that one fetch
//!   (single-flight): a flood of random `kid`s cannot flood the issuer.
//! - When the endpoint fails or answers garbage, the keys already held keep working until
//!   [`JwksConfig::max_staleness`] after the last good fetch; then they are dropped (fail closed).
//! - A key the issuer removed is retired at the next good fetch, which also voids the cached
//!   verifications it made.
//! - Responses are limited in size ([`JwksConfig::max_body`]) and key count
//!   ([`crate::keys::MAX_KEYS`]); fetches time out ([`JwksConfig::timeout`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), auth_core::BuildError> {
//! use auth_core::jwks::JwksCache;
//! use auth_core::jwt::{Issuer, Jwt};
//!
//! let jwks = JwksCache::builder("https://issuer.example/.well-known/jwks.json").build()?;
//! let jwt = Jwt::builder()
//!     .issuer(Issuer::new("https://issuer.example").audience("my-api").jwks(jwks))
//!     .build()?;
//! # Ok(()) }
//! ```

use crate::error::BuildError;
use crate::keys::{KeySet, VerifyingKey};
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Timing and size settings of a [`JwksCache`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwksConfig {
    /// Re-read interval when the response has no `max-age` (default 60 s).
    pub refresh_interval: Duration,
    /// Lower bound applied to `max-age` (default 10 s).
    pub min_refresh: Duration,
    /// Upper bound applied to `max-age` (default 1 h).
    pub max_refresh: Duration,
    /// Least time between two fetches caused by unknown `kid`s (default 5 s).
    pub unknown_kid_cooldown: Duration,
    /// How long held keys keep working after the last good fetch while fetches fail
    /// (default 6 h).
    pub max_staleness: Duration,
    /// Time limit of one fetch, connection included (default 5 s).
    pub timeout: Duration,
    /// Largest accepted response body (default 256 KiB).
    pub max_body: usize,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(60),
            min_refresh: Duration::from_secs(10),
            max_refresh: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(5),
            max_staleness: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(5),
            max_body: 256 * 1024,
        }
    }
}

enum Source {
    Url(String),
    Discovery { issuer: String },
}

/// Builds a [`JwksCache`].
#[must_use]
pub struct JwksCacheBuilder {
    source: Source,
    config: JwksConfig,
    allow_http: bool,
}

impl fmt::Debug for JwksCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCacheBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JwksCacheBuilder {
    /// Replaces all timing and size settings.
    pub fn config(mut self, config: JwksConfig) -> Self {
        self.config = config;
        self
    }
    /// Sets [`JwksConfig::refresh_interval`].
    pub fn refresh_interval(mut self, d: Duration) -> Self {
        self.config.refresh_interval = d;
        self
    }
    /// Sets [`JwksConfig::min_refresh`].
    pub fn min_refresh(mut self, d: Duration) -> Self {
        self.config.min_refresh = d;
        self
    }
    /// Sets [`JwksConfig::unknown_kid_cooldown`].
    pub fn unknown_kid_cooldown(mut self, d: Duration) -> Self {
        self.config.unknown_kid_cooldown = d;
        self
    }
    /// Sets [`JwksConfig::max_staleness`].
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.config.max_staleness = d;
        self
    }
    /// Sets [`JwksConfig::timeout`].
    pub fn timeout(mut self, d: Duration) -> Self {
        self.config.timeout = d;
        self
    }
    /// Allows plain `http://` URLs on hosts other than loopback. Keys fetched over plain HTTP
    /// can be replaced by anyone on the path: only for closed networks.
    pub fn dangerous_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Starts the cache and its background refresh task; the first fetch starts at once.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRuntime`] outside a Tokio runtime; [`BuildError::Invalid`] for a URL that
    /// is not `https://` (or `http://` on a loopback host) or settings out of order;
    /// [`BuildError::HttpClient`] when the HTTP client cannot be built.
    pub fn build(self) -> Result<JwksCache, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let c = &self.config;
        if c.min_refresh > c.max_refresh || c.refresh_interval.is_zero() || c.timeout.is_zero() {
            return Err(BuildError::Invalid(
                "JWKS refresh settings out of order".into(),
            ));
        }
        let url = match &self.source {
            Source::Url(u) | Source::Discovery { issuer: u } => u,
        };
        check_url(url, self.allow_http)?;
        let client = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("auth-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::HttpClient(e.to_string()))?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let inner = Arc::new(Inner {
            source: self.source,
            allow_http: self.allow_http,
            config: self.config,
            client,
            keys: ArcSwap::from_pointee(KeySet::empty()),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            stop: stop.clone(),
        });
        runtime.spawn(refresh_loop(Arc::downgrade(&inner), stop));
        Ok(JwksCache { inner })
    }
}

fn check_url(url: &str, allow_http: bool) -> Result<(), BuildError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| BuildError::Invalid(format!("JWKS URL `{url}`: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_http => Ok(()),
        s => Err(BuildError::Invalid(format!(
            "JWKS URL `{url}`: scheme `{s}` (https required, http only on loopback)"
        ))),
    }
}

#[derive(Default)]
struct State {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    failures: u32,
    jwks_uri: Option<String>,
}

struct Inner {
    source: Source,
    allow_http: bool,
    config: JwksConfig,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    generation: AtomicU64,
    fetches: AtomicU64,
    state: Mutex<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// An issuer's keys, fetched from its JWKS and refreshed in the background. Cheap to clone.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("keys", &self.inner.keys.load().len())
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl From<reqwest::Error> for FetchError {
    /// Drops the URL from the error: a JWKS URL may carry credentials in its userinfo, and the
    /// message goes to the log.
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e.without_url())
    }
}

/// Why a fetch failed (for logs only).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed: {0}")]
    Http(reqwest::Error),
    #[error("status {0}")]
    Status(reqwest::StatusCode),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("{0}")]
    Keys(#[from] BuildError),
}

impl JwksCache {
    /// A cache of the JWKS at `url`.
    pub fn builder(url: impl Into<String>) -> JwksCacheBuilder {
        JwksCacheBuilder {
            source: Source::Url(url.into()),
            config: JwksConfig::default(),
            allow_http: false,
        }
    }

    /// A cache of the JWKS named by the issuer's OIDC discovery document
    /// (`{issuer}/.well-known/openid-configuration`, whose `issuer` must match).
    pub fn discover(issuer: impl Into<String>) -> JwksCacheBuilder {
        JwksCacheBuilder {
            source: Source::Discovery {
                issuer: issuer.into(),
            },
            config: JwksConfig::default(),
            allow_http: false,
        }
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    /// How many fetches were started so far (discovery and JWKS requests count one each).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Fetches now (sharing a fetch already under way) and returns whether it succeeded.
    pub async fn refresh(&self) -> bool {
        let _guard = self.inner.fetch_lock.lock().await;
        self.inner.fetch().await.is_ok()
    }

    /// Fetches again after a token named an unknown key, at most once per cool-down and once
    /// for all concurrent callers. `Err(())` when no usable key is held at all (never fetched,
    /// or dropped as stale): the verifier cannot decide.
    pub(crate) async fn refresh_for_unknown_key(&self) -> Result<Option<Arc<KeySet>>, ()> {
        let inner = &*self.inner;
        let seen = inner.generation.load(Ordering::Acquire);
        let guard = inner.fetch_lock.lock().await;
        let fresh = if inner.generation.load(Ordering::Acquire) != seen {
            // Another request fetched while this one waited: use its result.
            Some(self.keys())
        } else {
            let cooling = inner
                .state()
                .last_attempt
                .is_some_and(|t| t.elapsed() < inner.config.unknown_kid_cooldown);
            if cooling {
                None
            } else {
                inner.fetch().await.ok().map(|_| self.keys())
            }
        };
        drop(guard);
        if self.inner.keys.load().is_empty() {
            return Err(());
        }
        Ok(fresh)
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One fetch, recorded; the caller holds `fetch_lock`. Returns the `max-age` the response
    /// asked for, or `Err` (logged) when the fetch failed.
    async fn fetch(&self) -> Result<Option<Duration>, ()> {
        let result = self.fetch_inner().await;
        let mut st = self.state();
        st.last_attempt = Some(Instant::now());
        match result {
            Ok(max_age) => {
                st.last_success = Some(Instant::now());
                st.failures = 0;
                Ok(max_age)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                drop(st);
                tracing::warn!(target: "auth::jwks", error = %e, "JWKS fetch failed; keeping the keys held");
                self.drop_if_stale();
                Err(())
            }
        }
    }

    async fn fetch_inner(&self) -> Result<Option<Duration>, FetchError> {
        let url = self.jwks_url().await?;
        let (body, max_age) = self.get(&url).await?;
        let (fresh, skipped) = KeySet::from_jwks_lenient(&body)?;
        for s in &skipped.0 {
            tracing::warn!(target: "auth::jwks", skipped = %s, "JWKS key skipped");
        }
        // Keep the very same key objects for keys that did not change, so that verifications
        // cached with them stay valid; retire the others.
        let held = self.keys.load_full();
        let merged: Vec<Arc<VerifyingKey>> = fresh
            .keys()
            .iter()
            .map(|k| {
                held.keys()
                    .iter()
                    .find(|h| h.same_as(k))
                    .cloned()
                    .unwrap_or_else(|| k.clone())
            })
            .collect();
        let next = Arc::new(KeySet::from_arcs(merged)?);
        held.retire_missing(&next);
        self.keys.store(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(max_age)
    }

    async fn jwks_url(&self) -> Result<String, FetchError> {
        let issuer = match &self.source {
            Source::Url(u) => return Ok(u.clone()),
            Source::Discovery { issuer } => issuer,
        };
        if let Some(u) = self.state().jwks_uri.clone() {
            return Ok(u);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (body, _) = self.get(&url).await?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|e| FetchError::Discovery(e.to_string()))?;
        if doc.issuer != *issuer {
            return Err(FetchError::Discovery(format!(
                "document names issuer `{}`",
                doc.issuer
            )));
        }
        check_url(&doc.jwks_uri, self.allow_http)
            .map_err(|e| FetchError::Discovery(e.to_string()))?;
        self.state().jwks_uri = Some(doc.jwks_uri.clone());
        Ok(doc.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut resp = self
            .client
            .get(url)
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status()));
        }
        let max = self.config.max_body;
        if resp.content_length().is_some_and(|l| l > max as u64) {
            return Err(FetchError::TooLarge(max));
        }
        let max_age = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }

    fn next_delay(&self, result: &Result<Option<Duration>, ()>) -> Duration {
        let c = &self.config;
        match result {
            Ok(Some(max_age)) => (*max_age).clamp(c.min_refresh, c.max_refresh),
            Ok(None) => c.refresh_interval,
            Err(()) => {
                // Back off from 1 s, doubling, up to the refresh interval.
                let n = self.state().failures.min(16);
                Duration::from_secs(1u64 << n.saturating_sub(1)).min(c.refresh_interval)
            }
        }
    }
}

/// `max-age=N` of a `Cache-Control` value; `no-store`/`no-cache` count as 0.
fn parse_max_age(v: &str) -> Option<Duration> {
    let mut out = None;
    for d in v.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

async fn refresh_loop(weak: Weak<Inner>, stop: Arc<tokio::sync::Notify>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let result = {
            let _guard = inner.fetch_lock.lock().await;
            inner.fetch().await
        };
        let delay = inner.next_delay(&result);
        drop(inner);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.notified() => return,
        }
    }
}

impl Inner {
    fn drop_if_stale(&self) {
        let stale = self
            .state()
            .last_success
            .is_none_or(|t| t.elapsed() > self.config.max_staleness);
        let held = self.keys.load();
        if stale && !held.is_empty() {
            tracing::error!(target: "auth::jwks", "JWKS stale beyond max_staleness; dropping keys");
            held.retire_all();
            self.keys.store(Arc::new(KeySet::empty()));
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
    }

    #[test]
    fn urls_must_be_https_or_loopback() {
        assert!(check_url("https://issuer.example/jwks", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks", false).is_ok());
        assert!(check_url("http://localhost/jwks", false).is_ok());
        assert!(check_url("http://issuer.example/jwks", false).is_err());
        assert!(check_url("http://issuer.example/jwks", true).is_ok());
        assert!(check_url("file:///etc/passwd", true).is_err());
    }
}

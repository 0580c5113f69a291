//! Audit events: one structured event per decision.
//!
//! Events carry the outcome, the method, a short reason code, the subject, issuer, tenant and key
//! id, and the latency. They never carry a token, key or secret: the types here have no field
//! that could hold one.
//!
//! The default sink, [`TracingAudit`], emits through `tracing` with target `auth::audit`:
//! refusals at `INFO`, successes at `DEBUG` (so a busy service's `INFO` log is not one line per
//! request). Enable `auth::audit=debug` to see every decision.

use crate::principal::{AuthMethod, Principal};
use std::fmt;
use std::time::Duration;

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The caller was let through.
    Allowed,
    /// The caller was refused.
    Denied,
}

impl Outcome {
    /// `allowed` or `denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

/// One audit event.
#[derive(Clone)]
#[non_exhaustive]
pub struct AuditEvent<'a> {
    /// What was decided.
    pub outcome: Outcome,
    /// A short reason code (`ok`, `expired`, `bad_signature`, `insufficient_scope`, ...).
    pub reason: &'static str,
    /// The credential kind, when known.
    pub method: Option<AuthMethod>,
    /// The authenticated principal, when there is one.
    pub principal: Option<&'a Principal>,
    /// How long the decision took, when measured.
    pub latency: Option<Duration>,
    /// The policy rule that decided, when one is named.
    pub rule: Option<&'a str>,
    /// A further reason (a policy's denial text), safe to log.
    pub detail: Option<&'a str>,
}

impl fmt::Debug for AuditEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEvent")
            .field("outcome", &self.outcome)
            .field("reason", &self.reason)
            .field("method", &self.method)
            .field("subject", &self.principal.map(Principal::subject))
            .field("latency", &self.latency)
            .field("rule", &self.rule)
            .finish()
    }
}

/// A change made to credentials (an API key created, revoked, rotated; a tenant's keys
/// revoked): who it concerns and what happened, never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeEvent<'a> {
    /// What happened: `api_key_created`, `api_key_revoked`, `api_key_rotated`,
    /// `tenant_keys_revoked`.
    pub action: &'static str,
    /// The key concerned, when one is.
    pub key_id: Option<&'a str>,
    /// The tenant concerned.
    pub tenant: Option<&'a str>,
    /// The successor's id, for a rotation.
    pub successor: Option<&'a str>,
    /// When the change takes effect (seconds since the Unix epoch): a revocation's time, a
    /// rotation's grace end.
    pub effective_at: Option<i64>,
}

impl<'a> ChangeEvent<'a> {
    /// An event for `action`; the builder-style methods fill the rest.
    pub fn new(action: &'static str) -> Self {
        Self {
            action,
            key_id: None,
            tenant: None,
            successor: None,
            effective_at: None,
        }
    }
    /// Names the key.
    #[must_use]
    pub fn key(mut self, id: &'a str) -> Self {
        self.key_id = Some(id);
        self
    }
    /// Names the tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: &'a str) -> Self {
        self.tenant = Some(tenant);
        self
    }
    /// Names a rotation's successor.
    #[must_use]
    pub fn successor(mut self, id: &'a str) -> Self {
        self.successor = Some(id);
        self
    }
    /// Sets when the change takes effect.
    #[must_use]
    pub fn effective_at(mut self, at: i64) -> Self {
        self.effective_at = Some(at);
        self
    }
}

/// Where audit events go.
pub trait AuditSink: Send + Sync + 'static {
    /// Whether events with this outcome are wanted at all (lets callers skip measuring latency).
    fn enabled(&self, outcome: Outcome) -> bool {
        let _ = outcome;
        true
    }
    /// Records one event.
    fn record(&self, event: &AuditEvent<'_>);
    /// Records a change to credentials. The default emits it through `tracing` at `INFO`,
    /// target `auth::audit`.
    fn record_change(&self, change: &ChangeEvent<'_>) {
        tracing::info!(
            target: "auth::audit",
            action = change.action,
            key_id = change.key_id,
            tenant = change.tenant,
            successor = change.successor,
            effective_at = change.effective_at,
            "credentials changed"
        );
    }
}

/// The default sink: `tracing` events with target `auth::audit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn enabled(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Allowed => tracing::enabled!(target: "auth::audit", tracing::Level::DEBUG),
            Outcome::Denied => tracing::enabled!(target: "auth::audit", tracing::Level::INFO),
        }
    }

    fn record(&self, e: &AuditEvent<'_>) {
        let p = e.principal;
        let subject = p.map(Principal::subject);
        let issuer = p.and_then(Principal::issuer);
        let tenant = p.and_then(Principal::tenant);
        let kid = p.and_then(Principal::key_id);
        let method = e.method.map(AuthMethod::as_str);
        let latency_us = e
            .latency
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let (rule, detail) = (e.rule, e.detail);
        match e.outcome {
            Outcome::Allowed => tracing::debug!(
                target: "auth::audit",
                outcome = "allowed", reason = e.reason, method, subject, issuer, tenant, kid, latency_us, rule,
                "request allowed"
            ),
            Outcome::Denied => tracing::info!(
                target: "auth::audit",
                outcome = "denied", reason = e.reason, method, subject, issuer, tenant, kid, latency_us, rule, detail,
                "request denied"
            ),
        }
    }
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn enabled(&self, _: Outcome) -> bool {
        false
    }
    fn record(&self, _: &AuditEvent<'_>) {}
    fn record_change(&self, _: &ChangeEvent<'_>) {}
}

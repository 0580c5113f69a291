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

/// Where audit events go.
pub trait AuditSink: Send + Sync + 'static {
    /// Whether events with this outcome are wanted at all (lets callers skip measuring latency).
    fn enabled(&self, outcome: Outcome) -> bool {
        let _ = outcome;
        true
    }
    /// Records one event.
    fn record(&self, event: &AuditEvent<'_>);
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
}

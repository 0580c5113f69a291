//! Access decisions over an authenticated [`Principal`].
//!
//! A [`Policy`] says yes or no with an [`AuthError`] that renders as 403. Closures are policies
//! too, so a one-off rule needs no type. [`Scopes`] is the first policy: all or any of a list.
//!
//! ```
//! use auth_core::policy::{Policy, Scopes};
//! use auth_core::{AuthError, AuthMethod, Principal};
//!
//! let reader = Principal::builder("bob", AuthMethod::Jwt).scopes(["read"]).build();
//! let admin_only = Scopes::all(["admin"]);
//! let err = admin_only.check(&reader).unwrap_err();
//! assert_eq!(err.http_status(), 403);
//! assert_eq!(err, AuthError::InsufficientScope { required: "admin".into() });
//! assert!(Scopes::any(["read", "write"]).check(&reader).is_ok());
//! ```

use crate::audit::{AuditEvent, AuditSink, Outcome};
use crate::error::AuthError;
use crate::principal::Principal;

/// A decision over a principal.
pub trait Policy: Send + Sync + 'static {
    /// `Ok` to allow; otherwise the error to answer with (usually 403).
    ///
    /// # Errors
    ///
    /// When the principal is not allowed.
    fn check(&self, principal: &Principal) -> Result<(), AuthError>;
}

impl<F> Policy for F
where
    F: Fn(&Principal) -> Result<(), AuthError> + Send + Sync + 'static,
{
    fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        self(principal)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// Requires all, or any, of a list of scopes.
#[derive(Debug, Clone)]
pub struct Scopes {
    mode: Mode,
    scopes: Vec<String>,
    /// The list as sent in the `scope` challenge parameter.
    joined: String,
}

impl Scopes {
    fn new<I: IntoIterator<Item = S>, S: Into<String>>(mode: Mode, scopes: I) -> Self {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        let joined = scopes.join(" ");
        Self {
            mode,
            scopes,
            joined,
        }
    }

    /// Requires every one of `scopes`.
    pub fn all<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Mode::All, scopes)
    }

    /// Requires at least one of `scopes` (an empty list allows nobody).
    pub fn any<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::new(Mode::Any, scopes)
    }
}

impl Policy for Scopes {
    fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        let ok = match self.mode {
            Mode::All => self.scopes.iter().all(|s| principal.has_scope(s)),
            Mode::Any => self.scopes.iter().any(|s| principal.has_scope(s)),
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: self.joined.clone(),
            })
        }
    }
}

/// Applies `policy` and records a denial in `audit`.
///
/// # Errors
///
/// The policy's error.
pub fn enforce(
    policy: &dyn Policy,
    principal: &Principal,
    audit: &dyn AuditSink,
) -> Result<(), AuthError> {
    let result = policy.check(principal);
    if let Err(e) = &result
        && audit.enabled(Outcome::Denied)
    {
        audit.record(&AuditEvent {
            outcome: Outcome::Denied,
            reason: e.reason(),
            method: Some(principal.method()),
            principal: Some(principal),
            latency: None,
        });
    }
    result
}

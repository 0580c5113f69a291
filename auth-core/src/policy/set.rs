//! [`PolicySet`]: named allow and deny statements, built in code or loaded from a file.

use super::rbac::Roles;
use super::rules::Rule;
use super::{Decision, Policy, RequestContext};
use crate::principal::Principal;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Why a policy could not be built or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A role inherits from a role that is not declared.
    #[error("role `{0}` is not declared")]
    UnknownRole(String),
    /// Role inheritance loops.
    #[error("role inheritance loops: {0}")]
    RoleCycle(String),
    /// Two statements share a name.
    #[error("two rules are named `{0}`")]
    DuplicateRule(String),
    /// The file is not valid policy TOML or JSON.
    #[error("policy file: {0}")]
    Parse(String),
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a matching statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Allows the request (unless a deny statement also matches).
    Allow,
    /// Denies the request, whatever else matches.
    Deny,
}

/// One named statement: when `when` holds, `effect` applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    name: Arc<str>,
    effect: Effect,
    when: Rule,
}

impl Statement {
    /// The statement's name (recorded in audit events).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its effect.
    pub fn effect(&self) -> Effect {
        self.effect
    }
    /// Its condition.
    pub fn rule(&self) -> &Rule {
        &self.when
    }
}

/// Named allow/deny statements over roles (RBAC) and attributes (ABAC).
///
/// Evaluation: if any deny statement holds, the request is denied (deny wins); otherwise, if
/// any allow statement holds, it is allowed; otherwise it is denied (default deny). A set with
/// no statements allows everything: a policy that says nothing does not lock everyone out.
///
/// A file (TOML; JSON with the same shape also works):
///
/// ```
/// use auth_core::policy::{Policy, PolicySet, RequestContext};
/// use auth_core::{AuthMethod, Principal};
///
/// let set = PolicySet::from_toml(r#"
///     [roles.viewer]
///     permissions = ["docs:read"]
///     [roles.admin]
///     permissions = ["*"]
///     inherits = ["viewer"]
///
///     [[rules]]
///     name = "tenant-isolation"
///     effect = "deny"
///     when = { not = { tenant_matches = "path:tenant" } }
///
///     [[rules]]
///     name = "readers"
///     effect = "allow"
///     when = { all = [{ method = ["GET"] }, { permission = "docs:read" }] }
/// "#).unwrap();
///
/// let alice = Principal::builder("alice", AuthMethod::Jwt).roles(["admin"]).tenant("acme").build();
/// let attrs = [("path:tenant", "acme")];
/// let get = RequestContext::new().method("GET").attributes(&attrs);
/// let decision = set.evaluate(&alice, &get);
/// assert!(decision.is_allowed());
/// assert_eq!(decision.rule(), Some("readers"));
///
/// let other = [("path:tenant", "globex")];
/// let cross = RequestContext::new().method("GET").attributes(&other);
/// assert_eq!(set.evaluate(&alice, &cross).rule(), Some("tenant-isolation"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    roles: Roles,
    statements: Vec<Statement>,
}

/// Builds a [`PolicySet`] in code.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PolicySetBuilder {
    roles: Roles,
    statements: Vec<Statement>,
}

impl PolicySetBuilder {
    /// Uses `roles` for role and permission rules.
    pub fn roles(mut self, roles: Roles) -> Self {
        self.roles = roles;
        self
    }
    /// Adds an allow statement.
    pub fn allow(mut self, name: &str, when: Rule) -> Self {
        self.statements.push(Statement {
            name: name.into(),
            effect: Effect::Allow,
            when,
        });
        self
    }
    /// Adds a deny statement.
    pub fn deny(mut self, name: &str, when: Rule) -> Self {
        self.statements.push(Statement {
            name: name.into(),
            effect: Effect::Deny,
            when,
        });
        self
    }
    /// Finishes the set.
    ///
    /// # Errors
    ///
    /// [`PolicyError::DuplicateRule`] when two statements share a name.
    pub fn build(self) -> Result<PolicySet, PolicyError> {
        let mut names = HashSet::new();
        for s in &self.statements {
            if !names.insert(s.name.clone()) {
                return Err(PolicyError::DuplicateRule(s.name.to_string()));
            }
        }
        Ok(PolicySet {
            roles: self.roles,
            statements: self.statements,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    roles: BTreeMap<String, RoleDef>,
    #[serde(default)]
    rules: Vec<StatementDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDef {
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    inherits: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementDef {
    name: String,
    effect: Effect,
    when: Rule,
}

impl PolicySet {
    /// Starts building a set in code.
    pub fn builder() -> PolicySetBuilder {
        PolicySetBuilder::default()
    }

    fn from_file(file: File) -> Result<Self, PolicyError> {
        let mut roles = Roles::builder();
        for (name, def) in file.roles {
            roles = roles.role(name, def.permissions, def.inherits);
        }
        let mut b = Self::builder().roles(roles.build()?);
        for s in file.rules {
            b = match s.effect {
                Effect::Allow => b.allow(&s.name, s.when),
                Effect::Deny => b.deny(&s.name, s.when),
            };
        }
        b.build()
    }

    /// Parses a TOML policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Parse`] with the position and cause, or a role/rule error.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: File = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        Self::from_file(file)
    }

    /// Parses a JSON policy of the same shape.
    ///
    /// # Errors
    ///
    /// As [`PolicySet::from_toml`].
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let file: File =
            serde_json::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        Self::from_file(file)
    }

    /// Loads a policy file: JSON when the name ends in `.json`, TOML otherwise.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Io`] when the file cannot be read, or as [`PolicySet::from_toml`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        }
    }

    /// The statements, in order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The roles.
    pub fn roles(&self) -> &Roles {
        &self.roles
    }
}

impl Policy for PolicySet {
    fn evaluate(&self, principal: &Principal, request: &RequestContext<'_>) -> Decision {
        if self.statements.is_empty() {
            return Decision::allow(None);
        }
        let holds = |s: &&Statement| s.when.holds(principal, request, &self.roles);
        if let Some(deny) = self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Deny)
            .find(holds)
        {
            return Decision::deny(Some(deny.name.clone()), "the request is not allowed");
        }
        match self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .find(holds)
        {
            Some(allow) => Decision::allow(Some(allow.name.clone())),
            None => Decision::deny(None, "no rule allows the request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    #[test]
    fn deny_wins_and_default_deny() {
        let set = PolicySet::builder()
            .allow("all-readers", Rule::any_scope(["read"]))
            .deny("no-night-writes", Rule::method(["POST"]))
            .build()
            .unwrap();
        let p = Principal::builder("a", AuthMethod::Jwt)
            .scopes(["read"])
            .build();
        let get = RequestContext::new().method("GET");
        let post = RequestContext::new().method("POST");
        assert_eq!(set.evaluate(&p, &get).rule(), Some("all-readers"));
        let denied = set.evaluate(&p, &post);
        assert!(!denied.is_allowed());
        assert_eq!(denied.rule(), Some("no-night-writes"));
        let nobody = Principal::builder("b", AuthMethod::Jwt).build();
        let d = set.evaluate(&nobody, &get);
        assert!(!d.is_allowed());
        assert_eq!(d.rule(), None);
        assert!(PolicySet::default().evaluate(&nobody, &get).is_allowed());
    }

    #[test]
    fn file_errors_are_clear() {
        let dup = "[[rules]]\nname='a'\neffect='allow'\nwhen='always'\n[[rules]]\nname='a'\neffect='deny'\nwhen='never'\n";
        assert!(
            matches!(PolicySet::from_toml(dup), Err(PolicyError::DuplicateRule(n)) if n == "a")
        );
        let unknown = "[[rules]]\nname='a'\neffect='allow'\nwhen={ scopes_please = ['x'] }\n";
        let err = PolicySet::from_toml(unknown).unwrap_err().to_string();
        assert!(err.contains("scopes_please"), "{err}");
        let cidr = "[[rules]]\nname='a'\neffect='allow'\nwhen={ source_in = ['10.0.0.0/40'] }\n";
        assert!(
            PolicySet::from_toml(cidr)
                .unwrap_err()
                .to_string()
                .contains("prefix")
        );
        let json = r#"{"rules":[{"name":"j","effect":"allow","when":{"any_scope":["read"]}}]}"#;
        assert_eq!(PolicySet::from_json(json).unwrap().statements().len(), 1);
    }
}

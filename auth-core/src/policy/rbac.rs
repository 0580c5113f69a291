//! [`Roles`]: role → permission maps with inheritance (RBAC).

use super::set::PolicyError;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Roles and what they grant. A role grants its own permissions and those of every role it
/// inherits, transitively (computed once, when built). Permissions are strings such as
/// `docs:read`; a granted `docs:*` matches every permission starting with `docs:`, and `*`
/// matches all.
///
/// ```
/// use auth_core::policy::Roles;
///
/// let roles = Roles::builder()
///     .role("viewer", ["docs:read"], [] as [&str; 0])
///     .role("editor", ["docs:write"], ["viewer"])
///     .role("admin", ["*"], ["editor"])
///     .build()
///     .unwrap();
/// assert!(roles.grants(["editor"], "docs:read"));
/// assert!(!roles.grants(["viewer"], "docs:write"));
/// assert!(roles.expand(["admin"]).contains("viewer"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// role → every role it is (itself included, inherited ones transitively).
    closure: HashMap<String, BTreeSet<String>>,
    /// role → its permissions, inherited ones included.
    permissions: HashMap<String, BTreeSet<String>>,
}

/// Builds [`Roles`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RolesBuilder {
    roles: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl RolesBuilder {
    /// Declares `role` with its own `permissions`, inheriting from `inherits`.
    pub fn role<P, I>(
        mut self,
        role: impl Into<String>,
        permissions: impl IntoIterator<Item = P>,
        inherits: impl IntoIterator<Item = I>,
    ) -> Self
    where
        P: Into<String>,
        I: Into<String>,
    {
        self.roles.insert(
            role.into(),
            (
                permissions.into_iter().map(Into::into).collect(),
                inherits.into_iter().map(Into::into).collect(),
            ),
        );
        self
    }

    /// Resolves inheritance.
    ///
    /// # Errors
    ///
    /// [`PolicyError::UnknownRole`] when a role inherits from an undeclared one,
    /// [`PolicyError::RoleCycle`] when inheritance loops.
    pub fn build(self) -> Result<Roles, PolicyError> {
        let mut closure = HashMap::new();
        for role in self.roles.keys() {
            let mut seen = BTreeSet::new();
            let mut stack = vec![(role.clone(), vec![role.clone()])];
            while let Some((r, path)) = stack.pop() {
                if !seen.insert(r.clone()) {
                    continue;
                }
                let (_, inherits) = self
                    .roles
                    .get(&r)
                    .ok_or_else(|| PolicyError::UnknownRole(r.clone()))?;
                for parent in inherits {
                    if path.contains(parent) {
                        return Err(PolicyError::RoleCycle(format!(
                            "{} -> {parent}",
                            path.join(" -> ")
                        )));
                    }
                    let mut next = path.clone();
                    next.push(parent.clone());
                    stack.push((parent.clone(), next));
                }
            }
            closure.insert(role.clone(), seen);
        }
        let permissions = closure
            .iter()
            .map(|(role, all)| {
                let perms = all
                    .iter()
                    .flat_map(|r| self.roles[r].0.iter().cloned())
                    .collect();
                (role.clone(), perms)
            })
            .collect();
        Ok(Roles {
            closure,
            permissions,
        })
    }
}

impl Roles {
    /// Starts declaring roles.
    pub fn builder() -> RolesBuilder {
        RolesBuilder::default()
    }

    /// Every role the given roles amount to, inherited ones included (undeclared roles stand
    /// for themselves).
    pub fn expand<'r>(&self, roles: impl IntoIterator<Item = &'r str>) -> BTreeSet<String> {
        roles
            .into_iter()
            .flat_map(|r| match self.closure.get(r) {
                Some(all) => all.iter().cloned().collect::<Vec<_>>(),
                None => vec![r.to_owned()],
            })
            .collect()
    }

    /// Whether any of `roles` grants `permission`.
    pub fn grants<'r>(&self, roles: impl IntoIterator<Item = &'r str>, permission: &str) -> bool {
        roles.into_iter().any(|r| {
            self.permissions
                .get(r)
                .is_some_and(|perms| perms.iter().any(|p| permission_matches(p, permission)))
        })
    }
}

fn permission_matches(granted: &str, wanted: &str) -> bool {
    match granted.strip_suffix('*') {
        Some(prefix) => wanted.starts_with(prefix),
        None => granted == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_and_unknown_roles_are_refused() {
        let cyc = Roles::builder()
            .role("a", ["x"], ["b"])
            .role("b", ["y"], ["a"])
            .build();
        assert!(matches!(cyc, Err(PolicyError::RoleCycle(_))));
        let unknown = Roles::builder().role("a", ["x"], ["ghost"]).build();
        assert!(matches!(unknown, Err(PolicyError::UnknownRole(r)) if r == "ghost"));
    }

    #[test]
    fn wildcards() {
        assert!(permission_matches("docs:*", "docs:write"));
        assert!(!permission_matches("docs:*", "billing:read"));
        assert!(permission_matches("*", "anything"));
        assert!(!permission_matches("docs:read", "docs:readx"));
    }
}

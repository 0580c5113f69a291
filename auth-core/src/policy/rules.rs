//! [`Rule`]: attribute and role conditions (ABAC and RBAC), combinable with `and`/`or`/`not`.

use super::rbac::Roles;
use super::{Decision, Policy, RequestContext};
use crate::principal::Principal;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A condition over the principal and the request.
///
/// In configuration files a rule is a one-key table, e.g. `{ any_scope = ["read"] }`,
/// `{ all = [{ role = "admin" }, { path = "/admin/*" }] }`, `{ not = { source_in =
/// ["10.0.0.0/8"] } }`, `{ tenant_matches = "path:tenant" }`, or the strings `"always"` and
/// `"never"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Rule {
    /// Always holds.
    Always,
    /// Never holds.
    Never,
    /// The principal has at least one of these scopes.
    AnyScope(Vec<String>),
    /// The principal has all of these scopes.
    AllScopes(Vec<String>),
    /// The principal has this role (directly or by inheritance through [`Roles`]).
    Role(String),
    /// The principal has at least one of these roles (directly or by inheritance).
    AnyRole(Vec<String>),
    /// One of the principal's roles grants this permission ([`Roles`]).
    Permission(String),
    /// A claim (dotted path) equals a value.
    ClaimEquals {
        /// The claim, e.g. `org.plan`.
        claim: String,
        /// The value it must equal.
        value: Value,
    },
    /// A claim (dotted path) contains a value: an array holding it, or a space-separated string
    /// with it as one word.
    ClaimContains {
        /// The claim, e.g. `groups`.
        claim: String,
        /// The value it must contain.
        value: Value,
    },
    /// A claim (dotted path) starts with a prefix: a string claim, or one of the strings of an
    /// array claim. The comparison is on characters: end the prefix with `/` to stay on path
    /// segments (`spiffe://prod.example/service/` does not match
    /// `spiffe://prod.example/services`).
    ClaimPrefix {
        /// The claim, e.g. `spiffe_id`.
        claim: String,
        /// The prefix it must start with.
        prefix: String,
    },
    /// The credential is tied to the connection's client certificate: a token bound to it
    /// (RFC 8705 `cnf.x5t#S256`, which the gate has checked against the connection) or the
    /// certificate itself (method `mtls`). Requires certificate-bound access on a route.
    CertificateBound,
    /// The principal's tenant equals a request attribute (e.g. `path:tenant`,
    /// `header:x-tenant-id`, `metadata:x-tenant-id`, `arg:tenant`). Fails when either is
    /// missing.
    TenantMatches(String),
    /// A request attribute equals a value.
    AttributeEquals {
        /// The attribute name (see [`super::Attributes`]).
        attribute: String,
        /// The value it must equal.
        value: String,
    },
    /// The HTTP method is one of these (case-insensitive).
    Method(Vec<String>),
    /// The HTTP path matches this pattern (`*` matches any run of characters).
    Path(String),
    /// The operation (gRPC method path, GraphQL field) matches this pattern.
    Operation(String),
    /// The principal's issuer is this one.
    Issuer(String),
    /// The peer address is in one of these networks.
    SourceIn(Vec<Cidr>),
    /// The request falls in this time window (UTC).
    Time(TimeWindow),
    /// All of these hold.
    All(Vec<Rule>),
    /// At least one of these holds.
    Any(Vec<Rule>),
    /// This does not hold.
    Not(Box<Rule>),
}

impl Rule {
    /// [`Rule::AnyScope`].
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::AnyScope(scopes.into_iter().map(Into::into).collect())
    }
    /// [`Rule::AllScopes`].
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self::AllScopes(scopes.into_iter().map(Into::into).collect())
    }
    /// [`Rule::Role`].
    pub fn role(role: impl Into<String>) -> Self {
        Self::Role(role.into())
    }
    /// [`Rule::Permission`].
    pub fn permission(permission: impl Into<String>) -> Self {
        Self::Permission(permission.into())
    }
    /// [`Rule::ClaimEquals`].
    pub fn claim_equals(claim: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::ClaimEquals {
            claim: claim.into(),
            value: value.into(),
        }
    }
    /// [`Rule::ClaimContains`].
    pub fn claim_contains(claim: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::ClaimContains {
            claim: claim.into(),
            value: value.into(),
        }
    }
    /// [`Rule::ClaimPrefix`].
    pub fn claim_prefix(claim: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self::ClaimPrefix {
            claim: claim.into(),
            prefix: prefix.into(),
        }
    }
    /// [`Rule::TenantMatches`].
    pub fn tenant_matches(attribute: impl Into<String>) -> Self {
        Self::TenantMatches(attribute.into())
    }
    /// [`Rule::Method`].
    pub fn method<I: IntoIterator<Item = S>, S: Into<String>>(methods: I) -> Self {
        Self::Method(methods.into_iter().map(Into::into).collect())
    }
    /// [`Rule::Path`].
    pub fn path(pattern: impl Into<String>) -> Self {
        Self::Path(pattern.into())
    }
    /// [`Rule::Operation`].
    pub fn operation(pattern: impl Into<String>) -> Self {
        Self::Operation(pattern.into())
    }
    /// [`Rule::SourceIn`].
    pub fn source_in(networks: impl IntoIterator<Item = Cidr>) -> Self {
        Self::SourceIn(networks.into_iter().collect())
    }

    /// Both `self` and `other` hold.
    #[must_use]
    pub fn and(self, other: Rule) -> Self {
        match self {
            Self::All(mut rules) => {
                rules.push(other);
                Self::All(rules)
            }
            first => Self::All(vec![first, other]),
        }
    }
    /// `self` or `other` holds.
    #[must_use]
    pub fn or(self, other: Rule) -> Self {
        match self {
            Self::Any(mut rules) => {
                rules.push(other);
                Self::Any(rules)
            }
            first => Self::Any(vec![first, other]),
        }
    }
    /// `self` does not hold.
    #[allow(clippy::should_implement_trait)]
    #[must_use]
    pub fn not(self) -> Self {
        Self::Not(Box::new(self))
    }

    /// Whether the rule holds, resolving roles through `roles`.
    pub fn holds(&self, p: &Principal, req: &RequestContext<'_>, roles: &Roles) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::AnyScope(s) => s.iter().any(|s| p.has_scope(s)),
            Self::AllScopes(s) => s.iter().all(|s| p.has_scope(s)),
            Self::Role(r) => has_role(p, roles, r),
            Self::AnyRole(rs) => rs.iter().any(|r| has_role(p, roles, r)),
            Self::Permission(perm) => roles.grants(p.roles().iter().map(String::as_str), perm),
            Self::ClaimEquals { claim, value } => p.claims().get_path(claim) == Some(value),
            Self::ClaimContains { claim, value } => match (p.claims().get_path(claim), value) {
                (Some(Value::Array(items)), v) => items.contains(v),
                (Some(Value::String(s)), Value::String(v)) => {
                    s.split_ascii_whitespace().any(|w| w == v)
                }
                _ => false,
            },
            Self::ClaimPrefix { claim, prefix } => match p.claims().get_path(claim) {
                Some(Value::String(s)) => s.starts_with(prefix.as_str()),
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| s.starts_with(prefix.as_str()))),
                _ => false,
            },
            Self::CertificateBound => {
                p.certificate_binding().is_some() || p.method() == crate::AuthMethod::Mtls
            }
            Self::TenantMatches(attr) => match (p.tenant(), req.attribute(attr)) {
                (Some(t), Some(v)) => t == v,
                _ => false,
            },
            Self::AttributeEquals { attribute, value } => req
                .attribute(attribute)
                .is_some_and(|v| v == value.as_str()),
            Self::Method(ms) => req
                .get_method()
                .is_some_and(|m| ms.iter().any(|x| x.eq_ignore_ascii_case(m))),
            Self::Path(pattern) => req.get_path().is_some_and(|path| glob(pattern, path)),
            Self::Operation(pattern) => req.get_operation().is_some_and(|op| glob(pattern, op)),
            Self::Issuer(iss) => p.issuer() == Some(iss.as_str()),
            Self::SourceIn(nets) => req
                .get_peer()
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Self::Time(window) => window.contains(req.now()),
            Self::All(rules) => rules.iter().all(|r| r.holds(p, req, roles)),
            Self::Any(rules) => rules.iter().any(|r| r.holds(p, req, roles)),
            Self::Not(rule) => !rule.holds(p, req, roles),
        }
    }
}

fn has_role(p: &Principal, roles: &Roles, role: &str) -> bool {
    p.has_role(role)
        || roles
            .expand(p.roles().iter().map(String::as_str))
            .contains(role)
}

/// A rule on its own is a policy: allowed when it holds. A failing scope rule answers
/// `insufficient_scope` with its scopes; any other failing rule a plain 403.
impl Policy for Rule {
    fn evaluate(&self, principal: &Principal, request: &RequestContext<'_>) -> Decision {
        if self.holds(principal, request, &Roles::default()) {
            return Decision::allow(None);
        }
        match self {
            Self::AnyScope(s) | Self::AllScopes(s) => {
                Decision::insufficient_scope(None, s.join(" "))
            }
            _ => Decision::deny(None, "the request is not allowed"),
        }
    }
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A daily time window in UTC, optionally on some weekdays only. `from` after `to` wraps past
/// midnight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TimeWindowRepr")]
pub struct TimeWindow {
    from_min: u32,
    to_min: u32,
    /// Bit `d` set: weekday `d` (0 = Monday) allowed.
    days: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeWindowRepr {
    from: String,
    to: String,
    #[serde(default)]
    days: Vec<String>,
}

impl TryFrom<TimeWindowRepr> for TimeWindow {
    type Error = String;
    fn try_from(r: TimeWindowRepr) -> Result<Self, String> {
        let days: Vec<&str> = r.days.iter().map(String::as_str).collect();
        Self::new(&r.from, &r.to, &days)
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    /// A window from `from` to `to` (`HH:MM`, UTC) on `days` (`mon`..`sun`; empty: every day).
    ///
    /// # Errors
    ///
    /// A message naming the bad time or day.
    pub fn new(from: &str, to: &str, days: &[&str]) -> Result<Self, String> {
        let minutes = |t: &str| {
            let (h, m) = t
                .split_once(':')
                .ok_or_else(|| format!("`{t}` is not HH:MM"))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok(h * 60 + m),
                _ => Err(format!("`{t}` is not HH:MM")),
            }
        };
        let mut mask = 0u8;
        for d in days {
            let i = DAYS
                .iter()
                .position(|x| x.eq_ignore_ascii_case(d))
                .ok_or_else(|| format!("`{d}` is not a weekday (mon..sun)"))?;
            mask |= 1 << i;
        }
        Ok(Self {
            from_min: minutes(from)?,
            to_min: minutes(to)?,
            days: if mask == 0 { 0x7f } else { mask },
        })
    }

    /// Whether the Unix time `now` falls in the window.
    pub fn contains(&self, now: i64) -> bool {
        let day = now.div_euclid(86_400);
        let minute = u32::try_from(now.rem_euclid(86_400) / 60).unwrap_or(0);
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = |d: i64| u32::try_from((d + 3).rem_euclid(7)).unwrap_or(0);
        let on = |d: i64| self.days & (1 << weekday(d)) != 0;
        if self.from_min <= self.to_min {
            on(day) && (self.from_min..self.to_min).contains(&minute)
        } else if minute >= self.from_min {
            on(day)
        } else {
            // After midnight: the window started the day before.
            minute < self.to_min && on(day - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    #[test]
    fn globbing() {
        assert!(glob("/admin/*", "/admin/users"));
        assert!(glob("*", ""));
        assert!(glob("/t/*/docs/*", "/t/acme/docs/1"));
        assert!(!glob("/admin/*", "/administrator"));
        assert!(glob("/demo.v1.Demo/*", "/demo.v1.Demo/Admin"));
        assert!(!glob("/a", "/a/b"));
    }

    #[test]
    fn cidrs() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn time_windows() {
        // 2026-11-27 is a Friday. 12:00 UTC:
        let noon_fri = 1_795_780_800 - 1_795_780_800 % 86_400 + 12 * 3600;
        let office =
            TimeWindow::new("09:00", "17:00", &["mon", "tue", "wed", "thu", "fri"]).unwrap();
        assert!(office.contains(noon_fri));
        assert!(!office.contains(noon_fri + 86_400), "saturday");
        assert!(!office.contains(noon_fri + 6 * 3600), "18:00");
        let night = TimeWindow::new("22:00", "06:00", &["fri"]).unwrap();
        assert!(night.contains(noon_fri + 11 * 3600), "friday 23:00");
        assert!(
            night.contains(noon_fri + 13 * 3600),
            "saturday 01:00, window began friday"
        );
        assert!(
            !night.contains(noon_fri + 13 * 3600 - 86_400),
            "friday 01:00 began thursday"
        );
        assert!(TimeWindow::new("25:00", "06:00", &[]).is_err());
    }

    #[test]
    fn rules_over_principal_and_request() {
        let p = Principal::builder("alice", AuthMethod::Jwt)
            .scopes(["read"])
            .roles(["editor"])
            .tenant("acme")
            .build();
        let attrs = [("path:tenant", "acme"), ("header:x-tenant", "other")];
        let ctx = RequestContext::new()
            .method("get")
            .path("/t/acme/docs")
            .attributes(&attrs);
        let roles = Roles::builder()
            .role("viewer", ["docs:read"], [] as [&str; 0])
            .role("editor", ["docs:write"], ["viewer"])
            .build()
            .unwrap();
        let holds = |r: Rule| r.holds(&p, &ctx, &roles);
        assert!(holds(Rule::tenant_matches("path:tenant")));
        assert!(!holds(Rule::tenant_matches("header:x-tenant")));
        assert!(!holds(Rule::tenant_matches("arg:missing")));
        assert!(holds(Rule::role("viewer")), "inherited role");
        assert!(holds(Rule::permission("docs:read")));
        assert!(!holds(Rule::permission("billing:read")));
        assert!(holds(Rule::method(["GET"]).and(Rule::path("/t/*/docs"))));
        assert!(holds(Rule::Never.or(Rule::any_scope(["read"]))));
        assert!(!holds(Rule::any_scope(["read"]).not()));
    }

    #[test]
    fn claim_prefixes_and_one_of() {
        let mut claims = serde_json::Map::new();
        claims.insert(
            "spiffe_id".into(),
            "spiffe://prod.example/service/billing".into(),
        );
        claims.insert("trust_domain".into(), "prod.example".into());
        claims.insert("dns".into(), serde_json::json!(["a.internal", "b.example"]));
        claims.insert("n".into(), 7.into());
        let p = Principal::builder("svc", AuthMethod::Mtls)
            .claims(crate::principal::Claims::new(claims))
            .build();
        let ctx = RequestContext::new();
        let holds = |r: Rule| r.holds(&p, &ctx, &Roles::default());
        assert!(holds(Rule::claim_prefix(
            "spiffe_id",
            "spiffe://prod.example/service/"
        )));
        assert!(!holds(Rule::claim_prefix(
            "spiffe_id",
            "spiffe://prod.example/services/"
        )));
        assert!(!holds(Rule::claim_prefix(
            "spiffe_id",
            "spiffe://other.example/"
        )));
        assert!(holds(Rule::claim_prefix("dns", "b.")));
        assert!(!holds(Rule::claim_prefix("dns", "c.")));
        assert!(!holds(Rule::claim_prefix("n", "7")), "not a string");
        assert!(!holds(Rule::claim_prefix("missing", "")));
        // "trust_domain is one of": `any` of `claim_equals`.
        let one_of = |ds: &[&str]| {
            Rule::Any(
                ds.iter()
                    .map(|d| Rule::claim_equals("trust_domain", *d))
                    .collect(),
            )
        };
        assert!(holds(one_of(&["dev.example", "prod.example"])));
        assert!(!holds(one_of(&["dev.example"])));
        // From configuration.
        let rule: Rule = toml::from_str::<std::collections::HashMap<String, Rule>>(
            r#"r = { claim_prefix = { claim = "spiffe_id", prefix = "spiffe://prod.example/" } }"#,
        )
        .unwrap()
        .remove("r")
        .unwrap();
        assert_eq!(
            rule,
            Rule::claim_prefix("spiffe_id", "spiffe://prod.example/")
        );
    }
}

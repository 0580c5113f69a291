//! The cross-framework conformance matrix: one table of scenarios, one small trait per
//! framework.
//!
//! A [`Scenario`] names a credential to present, a [`Target`] to call and the [`Expect`]ed
//! outcome. A framework joins the matrix by implementing [`Framework`]: start a server on
//! loopback with the standard targets, and turn one call into an [`Outcome`] in the
//! framework-neutral vocabulary of the outcome table (`ARCHITECTURE.md`). Adding a scenario to
//! [`scenarios`] runs it everywhere.
//!
//! Every server serves the same targets with the same policies:
//!
//! | target | needs |
//! | --- | --- |
//! | [`Target::WhoAmI`] | any valid token; answers the subject |
//! | [`Target::Admin`] | scope `admin` |
//! | [`Target::Editor`] | role `editor` (RBAC: `admin` inherits `editor`) |
//! | [`Target::Tenant`] | the token's `tid` claim equals the tenant named by the request (a path parameter, metadata entry or argument) |
//! | [`Target::Optional`] | nothing; answers the subject or `anonymous`, but a presented token must be valid |

use crate::fixtures::issuer::{TestIssuer, now};
use auth_core::Chain;
use auth_core::apikey::ApiKeys;
use auth_core::apikey::store::{KeyRecord, KeyStore, MemoryStore};
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::policy::{PolicySet, Roles, Rule};
use serde_json::{Value, json};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The issuer every matrix server trusts.
pub const ISSUER: &str = "https://matrix.test";
/// The audience every matrix server expects.
pub const AUDIENCE: &str = "matrix-api";
/// The realm of every matrix server's challenges.
pub const REALM: &str = "matrix";
/// The claim holding the principal's tenant.
pub const TENANT_CLAIM: &str = "tid";

/// What a scenario calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any valid token.
    WhoAmI,
    /// Scope `admin`.
    Admin,
    /// Role `editor`.
    Editor,
    /// The token's tenant must equal this one.
    Tenant(String),
    /// Optional authentication.
    Optional,
}

/// What a scenario presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// The same bearer header twice.
    TwoHeaders(String),
    /// An `Authorization` header with this exact value.
    Raw(String),
    /// `X-API-Key: <key>` (gRPC: the `x-api-key` metadata entry).
    ApiKey(String),
    /// An API key and a bearer token at once.
    ApiKeyAndBearer(String, String),
}

/// The framework-neutral result of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed; the subject the handler saw (`anonymous` on an optional target).
    Ok(String),
    /// Refused for missing credentials (401 / UNAUTHENTICATED without an error code).
    Unauthenticated,
    /// Refused as a malformed request (400 `invalid_request` / UNAUTHENTICATED).
    InvalidRequest,
    /// Refused for a bad credential (401 `invalid_token` / UNAUTHENTICATED).
    InvalidToken,
    /// Refused by a policy (403 / PERMISSION_DENIED / FORBIDDEN), with the `scope` the
    /// challenge names, if any.
    Forbidden(Option<String>),
    /// Anything else, described.
    Other(String),
}

/// How precisely a framework can report an outcome: GraphQL and gRPC share one code
/// (`UNAUTHENTICATED`) for the first three kinds and tell them apart only through the
/// challenge, which a framework may not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Every kind is distinguishable (HTTP status + challenge, or code + challenge metadata).
    Exact,
    /// `Unauthenticated`, `InvalidRequest` and `InvalidToken` all read as `InvalidToken`.
    CoarseUnauthenticated,
}

/// The expected outcome of a scenario.
pub type Expect = Outcome;

/// One row of the matrix.
#[derive(Clone)]
pub struct Scenario {
    /// A short name, printed on failure.
    pub name: &'static str,
    /// What is called.
    pub target: Target,
    /// What is presented.
    pub credential: Credential,
    /// What must happen.
    pub expect: Expect,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running server of one framework.
pub trait Running: Send + Sync {
    /// Calls `target` presenting `credential`.
    fn call<'a>(&'a self, target: &'a Target, credential: &'a Credential)
    -> BoxFuture<'a, Outcome>;
}

/// One framework in the matrix.
pub trait Framework: Send + Sync {
    /// Its name in reports (`axum`, `actix-web`, `tonic`, `graphql/axum`, ...).
    fn name(&self) -> &'static str;
    /// How precisely it reports outcomes.
    fn precision(&self) -> Precision {
        Precision::Exact
    }
    /// Starts a server trusting `jwt`, with the standard targets, on `127.0.0.1:0`.
    fn start(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>>;
}

/// What every server is built from.
pub struct Setup {
    /// The issuer minting the scenarios' tokens.
    pub issuer: TestIssuer,
    /// The API keys every server trusts (next to the issuer's tokens, through a `Chain`).
    pub api_keys: ApiKeys,
    /// Keys issued for the scenarios.
    pub keys: MatrixKeys,
}

/// The API keys of the scenarios (each also stored, as the scenario needs it).
#[derive(Debug, Clone)]
pub struct MatrixKeys {
    /// Active, scopes `read`; its id is the subject servers answer.
    pub reader: (String, String),
    /// Active, scopes `read admin`.
    pub admin: (String, String),
    /// Revoked.
    pub revoked: String,
    /// Expired.
    pub expired: String,
    /// Well-formed but never stored.
    pub unknown: String,
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup").finish_non_exhaustive()
    }
}

impl Setup {
    /// A fresh issuer and a fresh key store with the scenarios' keys.
    ///
    /// # Panics
    ///
    /// When a fixture cannot be built.
    pub async fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let api_keys = ApiKeys::builder(store.clone())
            .prefix("ak_matrix")
            .build()
            .expect("matrix API keys");
        let t = now();
        let issue = async |scopes: &[&str], edit: fn(&mut KeyRecord, i64)| {
            let (key, parsed) = api_keys.format().generate().expect("a key");
            let mut record = KeyRecord::new(
                parsed.id(),
                "acme",
                "matrix",
                api_keys.hasher().hash(parsed.secret()),
                t,
            );
            record.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            edit(&mut record, t);
            store.insert(record).await.expect("store a key");
            (key, parsed.id().to_owned())
        };
        let reader = issue(&["read"], |_, _| {}).await;
        let admin = issue(&["read", "admin"], |_, _| {}).await;
        let revoked = issue(&["read"], |r, t| r.revoked_at = Some(t - 1)).await.0;
        let expired = issue(&["read"], |r, t| r.expires_at = Some(t - 1)).await.0;
        let unknown = api_keys.format().generate().expect("a key").0;
        Self {
            issuer: TestIssuer::new(ISSUER, AUDIENCE),
            api_keys,
            keys: MatrixKeys {
                reader,
                admin,
                revoked,
                expired,
                unknown,
            },
        }
    }

    /// What every server authenticates with: the issuer's tokens ([`Setup::jwt`]) and the
    /// scenarios' API keys, side by side.
    pub fn authenticator(&self) -> Chain {
        Chain::new().with(self.jwt()).with(self.api_keys.clone())
    }

    /// A verifier trusting the issuer, with tenants from [`TENANT_CLAIM`].
    ///
    /// # Panics
    ///
    /// When the verifier cannot be built (a broken fixture).
    pub fn jwt(&self) -> Jwt {
        let keys = KeySet::from_jwks(&self.issuer.jwks().to_string()).expect("matrix keys");
        Jwt::builder()
            .issuer(
                Issuer::new(ISSUER)
                    .audience(AUDIENCE)
                    .tenant_claim(TENANT_CLAIM)
                    .keys(keys),
            )
            .build()
            .expect("matrix verifier")
    }

    /// The roles every server uses: `admin` inherits `editor`.
    ///
    /// # Panics
    ///
    /// Never for these constants.
    pub fn roles() -> Roles {
        Roles::builder()
            .role("editor", ["docs:write"], [] as [&str; 0])
            .role("admin", ["*"], ["editor"])
            .build()
            .expect("matrix roles")
    }

    /// The policy of [`Target::Editor`].
    ///
    /// # Panics
    ///
    /// Never for these constants.
    pub fn editor_policy() -> PolicySet {
        PolicySet::builder()
            .roles(Self::roles())
            .allow("editors", Rule::role("editor"))
            .build()
            .expect("editor policy")
    }

    /// The policy of [`Target::Tenant`], reading the requested tenant from `attribute`
    /// (`path:tenant`, `metadata:x-tenant`, `arg:tenant`).
    pub fn tenant_policy(attribute: &str) -> Rule {
        Rule::tenant_matches(attribute)
    }
}

/// The scenarios, built from the setup's issuer.
pub fn scenarios(setup: &Setup) -> Vec<Scenario> {
    let i = &setup.issuer;
    let t = now();
    let sub = TestIssuer::SUBJECT.to_owned();
    let tok = |claims: Value| Credential::Bearer(i.mint(claims));
    let attacker = TestIssuer::new(ISSUER, AUDIENCE);
    let mut rows = vec![
        (
            "no credentials",
            Target::WhoAmI,
            Credential::None,
            Outcome::Unauthenticated,
        ),
        (
            "valid token",
            Target::WhoAmI,
            tok(Value::Null),
            Outcome::Ok(sub.clone()),
        ),
        (
            "two Authorization headers",
            Target::WhoAmI,
            Credential::TwoHeaders(i.token()),
            Outcome::InvalidRequest,
        ),
        (
            "malformed header",
            Target::WhoAmI,
            Credential::Raw("Bearer a b".into()),
            Outcome::InvalidRequest,
        ),
        (
            "expired",
            Target::WhoAmI,
            tok(json!({"exp": t - 600})),
            Outcome::InvalidToken,
        ),
        (
            "wrong audience",
            Target::WhoAmI,
            tok(json!({"aud": "other"})),
            Outcome::InvalidToken,
        ),
        (
            "wrong issuer",
            Target::WhoAmI,
            tok(json!({"iss": "https://other.test"})),
            Outcome::InvalidToken,
        ),
        (
            "bad signature",
            Target::WhoAmI,
            Credential::Bearer(attacker.mint_with_key(TestIssuer::RSA_KID, Value::Null)),
            Outcome::InvalidToken,
        ),
        (
            "unknown kid",
            Target::WhoAmI,
            Credential::Bearer(attacker.mint_raw(
                TestIssuer::RSA_KID,
                &json!({"alg": "RS256", "kid": "who-knows"}),
                &i.claims(Value::Null),
            )),
            Outcome::InvalidToken,
        ),
        (
            "insufficient scope",
            Target::Admin,
            tok(json!({"scope": "read"})),
            Outcome::Forbidden(Some("admin".into())),
        ),
        (
            "scope granted",
            Target::Admin,
            tok(json!({"scope": "read admin"})),
            Outcome::Ok(sub.clone()),
        ),
        (
            "role granted",
            Target::Editor,
            tok(json!({"roles": ["editor"]})),
            Outcome::Ok(sub.clone()),
        ),
        (
            "role granted by inheritance",
            Target::Editor,
            tok(json!({"roles": ["admin"]})),
            Outcome::Ok(sub.clone()),
        ),
        (
            "role denied",
            Target::Editor,
            tok(json!({"roles": ["viewer"]})),
            Outcome::Forbidden(None),
        ),
        (
            "tenant match",
            Target::Tenant("acme".into()),
            tok(json!({TENANT_CLAIM: "acme"})),
            Outcome::Ok(sub.clone()),
        ),
        (
            "tenant mismatch",
            Target::Tenant("globex".into()),
            tok(json!({TENANT_CLAIM: "acme"})),
            Outcome::Forbidden(None),
        ),
        (
            "optional, anonymous",
            Target::Optional,
            Credential::None,
            Outcome::Ok("anonymous".into()),
        ),
        (
            "optional, valid token",
            Target::Optional,
            tok(Value::Null),
            Outcome::Ok(sub),
        ),
        (
            "optional, bad token",
            Target::Optional,
            Credential::Bearer("abc.def.ghi".into()),
            Outcome::InvalidToken,
        ),
        (
            "API key",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.reader.0.clone()),
            Outcome::Ok(setup.keys.reader.1.clone()),
        ),
        (
            "API key, scope granted",
            Target::Admin,
            Credential::ApiKey(setup.keys.admin.0.clone()),
            Outcome::Ok(setup.keys.admin.1.clone()),
        ),
        (
            "API key, insufficient scope",
            Target::Admin,
            Credential::ApiKey(setup.keys.reader.0.clone()),
            Outcome::Forbidden(Some("admin".into())),
        ),
        (
            "API key, unknown",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.unknown.clone()),
            Outcome::InvalidToken,
        ),
        (
            "API key, not ours",
            Target::WhoAmI,
            Credential::ApiKey("ak_matrix_not-a-key".into()),
            Outcome::InvalidToken,
        ),
        (
            "API key, malformed",
            Target::WhoAmI,
            Credential::ApiKey("bad,key".into()),
            Outcome::InvalidRequest,
        ),
        (
            "API key, revoked",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.revoked.clone()),
            Outcome::InvalidToken,
        ),
        (
            "API key, expired",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.expired.clone()),
            Outcome::InvalidToken,
        ),
        (
            "API key and bearer token",
            Target::WhoAmI,
            Credential::ApiKeyAndBearer(setup.keys.reader.0.clone(), i.token()),
            Outcome::InvalidRequest,
        ),
    ];
    rows.drain(..)
        .map(|(name, target, credential, expect)| Scenario {
            name,
            target,
            credential,
            expect,
        })
        .collect()
}

/// What `expect` reads as at `precision`.
pub fn as_seen(expect: &Outcome, precision: Precision) -> Outcome {
    match (precision, expect) {
        (
            Precision::CoarseUnauthenticated,
            Outcome::Unauthenticated | Outcome::InvalidRequest | Outcome::InvalidToken,
        ) => Outcome::InvalidToken,
        (_, other) => other.clone(),
    }
}

/// Classifies an HTTP-style answer (status + `WWW-Authenticate`) into an [`Outcome`].
pub fn classify_challenge(
    status_ok: Option<String>,
    challenge: Option<&str>,
    kind: &str,
) -> Outcome {
    if let Some(subject) = status_ok {
        return Outcome::Ok(subject);
    }
    let Some(ch) = challenge else {
        return Outcome::Other(format!("{kind} without a challenge"));
    };
    if !ch.starts_with("Bearer") {
        return Outcome::Other(format!("{kind}, challenge {ch}"));
    }
    if ch.contains("error=\"invalid_request\"") {
        Outcome::InvalidRequest
    } else if ch.contains("error=\"invalid_token\"") {
        Outcome::InvalidToken
    } else if ch.contains("error=\"insufficient_scope\"") {
        let scope = ch
            .split("scope=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_owned);
        Outcome::Forbidden(scope)
    } else if ch.contains("error=") {
        Outcome::Other(format!("{kind}, challenge {ch}"))
    } else {
        Outcome::Unauthenticated
    }
}

/// Runs every scenario against `framework`; returns the failures (empty when all pass).
pub async fn run(framework: &dyn Framework, setup: &Setup) -> Vec<String> {
    let server = framework.start(setup).await;
    let mut failures = Vec::new();
    for s in scenarios(setup) {
        let got = server.call(&s.target, &s.credential).await;
        let want = as_seen(&s.expect, framework.precision());
        if got != want {
            failures.push(format!(
                "{}: {}: expected {want:?}, got {got:?}",
                framework.name(),
                s.name
            ));
        }
    }
    failures
}

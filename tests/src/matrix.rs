//! The cross-framework conformance matrix: one table of scenarios, one small trait per
//! framework.
//!
//! A [`Scenario`] names a credential to present, a [`Target`] to call and the [`Expect`]ed
//! outcome. A framework joins the matrix by implementing [`Framework`]: start a server on
//! loopback with the standard targets, and turn one call into an [`Outcome`] in the
//! framework-neutral vocabulary of the outcome table (`ARCHITECTURE.md`). Adding a scenario to
//! [`scenarios`] runs it everywhere.
//!
//! Besides the outcome, [`Running::reply`] reports the rate-limit fields of the answer
//! (`ratelimit-policy` and `ratelimit`: HTTP headers, gRPC response metadata), which
//! [`rate_limit_checks`] compare: an allowed request of a key with a limit carries them, one
//! without a limit does not.
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
//! | [`Target::AlphaOnly`] | the principal's `spiffe_id` claim starts with [`ALPHA`] (only alpha's certificate) |
//!
//! # mTLS
//!
//! Every framework also starts a second, TLS-enabled server ([`Framework::start_tls`]) with
//! the same targets, built from the setup's one [`Pki`] and one `ReloadingTls` (client
//! certificates optional, CRL loaded) and authenticating with the setup's chain plus `Mtls`
//! ([`Setup::mtls_authenticator`]). The [`mtls_scenarios`] run against it over real TLS
//! handshakes on loopback: a client certificate is presented with
//! [`Credential::ClientCert`]; a certificate the handshake refuses (expired, wrong EKU,
//! unknown CA, revoked) is [`Outcome::HandshakeRefused`], whatever the framework. The plain
//! scenarios keep running against the plain server.

use crate::fixtures::authz_server::AuthzServer;
use crate::fixtures::issuer::{TestIssuer, now};
pub use crate::pki::{ALPHA, BETA, ClientCert, Pki};
use auth_core::apikey::ApiKeys;
use auth_core::apikey::limit::{KeyLimits, Quota, Rate, Window};
use auth_core::apikey::store::{KeyRecord, KeyStore, MemoryStore};
use auth_core::authenticator::GateBuilder;
use auth_core::dpop::{DpopKey, DpopVerifier};
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use auth_core::mtls::Mtls;
use auth_core::mtls::mapping::IdentityMapping;
use auth_core::mtls::server::ReloadingTls;
use auth_core::oauth::{ClientAuth, Introspection, JwtOrOpaque};
use auth_core::policy::{PolicySet, Roles, Rule};
use auth_core::{Chain, Gate};
use serde_json::{Value, json};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

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
    /// Only the alpha workload: `Rule::claim_prefix("spiffe_id", ALPHA)`.
    AlphaOnly,
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
    /// A client certificate in the TLS handshake (only over the TLS server), with a bearer
    /// token if any.
    ClientCert(ClientCert, Option<String>),
    /// A DPoP-bound token (RFC 9449) with a proof the framework's client makes for the exact
    /// method and URL it calls ([`DpopCall::headers`]).
    Dpop(DpopCall),
}

/// How a [`Credential::Dpop`] call presents its token and proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A fresh proof for this request.
    Valid,
    /// A valid proof, sent twice: the second call is what counts.
    Replayed,
    /// A proof made for another method.
    OtherMethod,
    /// A proof made for another URL.
    OtherUrl,
    /// A proof signed by a key the token is not bound to.
    OtherKey,
    /// No `DPoP` header.
    Missing,
    /// The bound token with the `Bearer` scheme (and no proof).
    AsBearer,
}

/// A DPoP-bound token, the key it is bound to, and how the call presents them.
#[derive(Clone)]
pub struct DpopCall {
    /// The token (its `cnf.jkt` names `key`).
    pub token: String,
    /// The key the token is bound to.
    pub key: Arc<DpopKey>,
    /// What the call sends.
    pub proof: Proof,
}

impl fmt::Debug for DpopCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopCall")
            .field("proof", &self.proof)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DpopCall {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token && self.proof == other.proof
    }
}

impl Eq for DpopCall {}

impl DpopCall {
    /// The `(name, value)` headers of a call with `method` to `url` (the URL the client
    /// requests, scheme and authority included).
    ///
    /// # Panics
    ///
    /// When a proof cannot be signed.
    pub fn headers(&self, method: &str, url: &str) -> Vec<(&'static str, String)> {
        let sign = |key: &DpopKey, method: &str, url: &str| {
            key.proof(method, url, Some(&self.token), None)
                .expect("signing a DPoP proof")
        };
        let dpop = format!("DPoP {}", self.token);
        match self.proof {
            Proof::Valid | Proof::Replayed => {
                vec![
                    ("authorization", dpop),
                    ("dpop", sign(&self.key, method, url)),
                ]
            }
            Proof::OtherMethod => {
                let other = if method == "GET" { "DELETE" } else { "GET" };
                vec![
                    ("authorization", dpop),
                    ("dpop", sign(&self.key, other, url)),
                ]
            }
            Proof::OtherUrl => {
                let other = format!("{}/elsewhere", url.trim_end_matches('/'));
                vec![
                    ("authorization", dpop),
                    ("dpop", sign(&self.key, method, &other)),
                ]
            }
            Proof::OtherKey => {
                let stranger =
                    DpopKey::generate(auth_core::Algorithm::ES256).expect("generating a DPoP key");
                vec![
                    ("authorization", dpop),
                    ("dpop", sign(&stranger, method, url)),
                ]
            }
            Proof::Missing => vec![("authorization", dpop)],
            Proof::AsBearer => vec![("authorization", format!("Bearer {}", self.token))],
        }
    }

    /// How many times the call is sent with the same headers (the last answer counts).
    pub fn sends(&self) -> usize {
        if self.proof == Proof::Replayed { 2 } else { 1 }
    }
}

/// The proof verifier of every matrix gate (one replay cache for the whole run: every proof
/// is made for one call).
fn dpop_verifier() -> DpopVerifier {
    static VERIFIER: LazyLock<DpopVerifier> = LazyLock::new(|| {
        DpopVerifier::builder()
            .build()
            .expect("the default DPoP verifier")
    });
    VERIFIER.clone()
}

/// The gate every matrix server uses: `authenticator` with the matrix's realm, accepting
/// DPoP-bound tokens.
pub fn gate(authenticator: impl auth_core::Authenticator) -> GateBuilder {
    Gate::builder(authenticator)
        .realm(REALM)
        .dpop(dpop_verifier())
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
    /// Refused as over a rate or quota: HTTP 429 with `retry-after`, `ratelimit-policy` and
    /// `ratelimit` and no challenge; gRPC `RESOURCE_EXHAUSTED` with the same metadata;
    /// GraphQL `extensions.code` `RATE_LIMITED` (on a 429 with those headers).
    RateLimited,
    /// No answer: the TLS handshake was refused (the client saw a connection or handshake
    /// error, e.g. the server's alert for an untrusted certificate).
    HandshakeRefused,
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

/// What a framework saw of one call: the outcome, and the rate-limit fields of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The outcome, in the matrix's vocabulary.
    pub outcome: Outcome,
    /// The `ratelimit-policy` header (gRPC: response metadata entry), if any.
    pub rate_limit_policy: Option<String>,
    /// The `ratelimit` header (gRPC: response metadata entry), if any.
    pub rate_limit: Option<String>,
}

impl Reply {
    /// A reply without rate-limit fields.
    pub fn of(outcome: Outcome) -> Self {
        Self {
            outcome,
            rate_limit_policy: None,
            rate_limit: None,
        }
    }
}

/// A running server of one framework.
pub trait Running: Send + Sync {
    /// Calls `target` presenting `credential`; the outcome and the answer's rate-limit fields.
    fn reply<'a>(&'a self, target: &'a Target, credential: &'a Credential) -> BoxFuture<'a, Reply>;

    /// Calls `target` presenting `credential`; the outcome only.
    fn call<'a>(
        &'a self,
        target: &'a Target,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { self.reply(target, credential).await.outcome })
    }
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
    /// Starts a TLS server with the standard targets on `127.0.0.1:0`: the configuration of
    /// [`Setup::tls`], authenticating with [`Setup::mtls_authenticator`]; its calls present
    /// client certificates ([`Credential::ClientCert`]) in the handshake and trust
    /// [`Pki::ca_pem`] for the server.
    fn start_tls(&self, setup: &Setup) -> BoxFuture<'_, Box<dyn Running>>;
}

/// What [`run`] found.
#[derive(Debug, Default)]
pub struct Results {
    /// Mismatches: the framework does not conform.
    pub failures: Vec<String>,
}

/// What every server is built from.
pub struct Setup {
    /// The issuer minting the scenarios' tokens.
    pub issuer: TestIssuer,
    /// The API keys every server trusts (next to the issuer's tokens, through a `Chain`).
    pub api_keys: ApiKeys,
    /// Keys issued for the scenarios.
    pub keys: MatrixKeys,
    /// The certificates of the mTLS scenarios, and the CA the TLS servers use.
    pub pki: Pki,
    /// The one TLS configuration every TLS server serves with (over [`Setup::pki`]'s files).
    pub tls: ReloadingTls,
    /// The authorization server of the opaque tokens.
    pub authz: AuthzServer,
    /// Introspects opaque tokens at [`Setup::authz`] for every server (one cache, answers kept
    /// at most [`OPAQUE_CACHE_TTL`]).
    pub introspection: Introspection,
}

/// How long a server keeps an introspection answer.
pub const OPAQUE_CACHE_TTL: Duration = Duration::from_secs(1);
/// The matrix servers' client at [`Setup::authz`].
const RS_CLIENT: &str = "matrix-api";
const RS_SECRET: &str = "matrix-api-secret";

/// The API keys of the scenarios (each also stored, as the scenario needs it). Pairs are
/// `(key, id)`; the id is the subject servers answer. Every key is of tenant `acme`.
#[derive(Debug, Clone)]
pub struct MatrixKeys {
    /// Active, scopes `read`.
    pub reader: (String, String),
    /// Active, scopes `read admin`.
    pub admin: (String, String),
    /// Revoked.
    pub revoked: String,
    /// Expired.
    pub expired: String,
    /// Well-formed but never stored.
    pub unknown: String,
    /// Rotated to [`MatrixKeys::successor`], within the grace period (an hour from setup).
    pub rotated: (String, String),
    /// The successor of [`MatrixKeys::rotated`].
    pub successor: (String, String),
    /// Rotated with a grace period that has ended.
    pub retired: String,
    /// Its own rate, one request an hour, spent by the setup.
    pub over_rate: String,
    /// Its own quota, one request a month, spent by the setup.
    pub over_quota: String,
    /// Its own generous rate (a million an hour): allowed, with rate-limit fields.
    pub generous: (String, String),
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
        // A new key and its record (not stored yet).
        let record = |scopes: &[&str], edit: fn(&mut KeyRecord, i64)| {
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
            (key, record)
        };
        let issue = async |scopes: &[&str], edit: fn(&mut KeyRecord, i64)| {
            let (key, record) = record(scopes, edit);
            let id = record.id.clone();
            store.insert(record).await.expect("store a key");
            (key, id)
        };
        // Rotates `old` to a new key with `grace_until`; the new key and its id.
        let rotate = async |old: &str, grace_until: i64| {
            let (key, successor) = record(&["read"], |_, _| {});
            let id = successor.id.clone();
            store
                .rotate(old, successor, grace_until)
                .await
                .expect("rotate a key");
            (key, id)
        };
        let reader = issue(&["read"], |_, _| {}).await;
        let admin = issue(&["read", "admin"], |_, _| {}).await;
        let revoked = issue(&["read"], |r, t| r.revoked_at = Some(t - 1)).await.0;
        let expired = issue(&["read"], |r, t| r.expires_at = Some(t - 1)).await.0;
        let unknown = api_keys.format().generate().expect("a key").0;
        let rotated = issue(&["read"], |_, _| {}).await;
        let successor = rotate(&rotated.1, t + 3600).await;
        let retired = issue(&["read"], |_, _| {}).await;
        rotate(&retired.1, t - 1).await;
        let over_rate = issue(&["read"], |r, _| {
            r.limits = KeyLimits::new(Some(Rate::per(Duration::from_secs(3600), 1)), None);
        })
        .await
        .0;
        let over_quota = issue(&["read"], |r, _| {
            r.limits = KeyLimits::new(None, Some(Quota::new(1, Window::Month)));
        })
        .await
        .0;
        let generous = issue(&["read"], |r, _| {
            r.limits = KeyLimits::new(Some(Rate::per(Duration::from_secs(3600), 1_000_000)), None);
        })
        .await;
        // Spend the single allowance of the limited keys, so every framework's request is
        // over the limit.
        for key in [&over_rate, &over_quota] {
            api_keys
                .verify(key)
                .await
                .expect("a limited key's first use");
        }
        let pki = Pki::new();
        let tls = pki.server_tls();
        let authz = AuthzServer::start().await;
        authz.add_client(RS_CLIENT, RS_SECRET);
        let introspection = Introspection::builder(authz.introspection_url())
            .client_auth(ClientAuth::secret_basic(RS_CLIENT, RS_SECRET))
            .cache(10_000, OPAQUE_CACHE_TTL)
            .dangerous_allow_http()
            .build()
            .expect("matrix introspection");
        Self {
            pki,
            tls,
            authz,
            introspection,
            issuer: TestIssuer::new(ISSUER, AUDIENCE),
            api_keys,
            keys: MatrixKeys {
                reader,
                admin,
                revoked,
                expired,
                unknown,
                rotated,
                successor,
                retired: retired.0,
                over_rate,
                over_quota,
                generous,
            },
        }
    }

    /// What every server authenticates with: the issuer's tokens ([`Setup::jwt`]), opaque
    /// tokens introspected at [`Setup::authz`], and the scenarios' API keys, side by side.
    pub fn authenticator(&self) -> Chain {
        Chain::new()
            .with(JwtOrOpaque::new(self.jwt(), self.introspection.clone()))
            .with(self.api_keys.clone())
    }

    /// An opaque token of [`TestIssuer::SUBJECT`] with `scope`, valid for five minutes.
    pub fn opaque(&self, scope: &str) -> String {
        self.authz
            .issue_token(TestIssuer::SUBJECT, scope, Duration::from_secs(300))
    }

    /// What every TLS server authenticates with: [`Setup::authenticator`], then the client
    /// certificate alone (`Mtls`, subject: the SPIFFE ID).
    ///
    /// # Panics
    ///
    /// When the identity mapping cannot be built (a broken fixture).
    pub fn mtls_authenticator(&self) -> Chain {
        let mapping = IdentityMapping::builder()
            .build()
            .expect("matrix identity mapping");
        self.authenticator().with(Mtls::builder(mapping).build())
    }

    /// The policy of [`Target::AlphaOnly`].
    pub fn alpha_policy() -> Rule {
        Rule::claim_prefix("spiffe_id", ALPHA)
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
            Outcome::Ok(sub.clone()),
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
        (
            "API key, rotated, within grace",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.rotated.0.clone()),
            Outcome::Ok(setup.keys.rotated.1.clone()),
        ),
        (
            "API key, rotated, after grace",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.retired.clone()),
            Outcome::InvalidToken,
        ),
        (
            "API key, successor of a rotation",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.successor.0.clone()),
            Outcome::Ok(setup.keys.successor.1.clone()),
        ),
        (
            "API key, over rate",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.over_rate.clone()),
            Outcome::RateLimited,
        ),
        (
            "API key, over quota",
            Target::WhoAmI,
            Credential::ApiKey(setup.keys.over_quota.clone()),
            Outcome::RateLimited,
        ),
        (
            "API key, wrong tenant",
            Target::Tenant("globex".into()),
            Credential::ApiKey(setup.keys.reader.0.clone()),
            Outcome::Forbidden(None),
        ),
    ];
    let revoked_opaque = setup.opaque("read");
    setup.authz.revoke(&revoked_opaque);
    rows.extend([
        (
            "opaque token",
            Target::WhoAmI,
            Credential::Bearer(setup.opaque("read")),
            Outcome::Ok(sub.clone()),
        ),
        (
            "opaque token with the admin scope",
            Target::Admin,
            Credential::Bearer(setup.opaque("read admin")),
            Outcome::Ok(sub.clone()),
        ),
        (
            "opaque token without the admin scope",
            Target::Admin,
            Credential::Bearer(setup.opaque("read")),
            Outcome::Forbidden(Some("admin".into())),
        ),
        (
            "opaque token unknown to the authorization server",
            Target::WhoAmI,
            Credential::Bearer("bm90LWEtcmVhbC10b2tlbg".into()),
            Outcome::InvalidToken,
        ),
        (
            "opaque token revoked at the authorization server",
            Target::WhoAmI,
            Credential::Bearer(revoked_opaque),
            Outcome::InvalidToken,
        ),
    ]);
    let key = Arc::new(DpopKey::generate(auth_core::Algorithm::ES256).expect("a DPoP key"));
    let bound = i.mint(json!({ "cnf": { "jkt": key.jkt() } }));
    let dpop = |proof| {
        Credential::Dpop(DpopCall {
            token: bound.clone(),
            key: key.clone(),
            proof,
        })
    };
    rows.extend([
        (
            "DPoP, valid proof",
            Target::WhoAmI,
            dpop(Proof::Valid),
            Outcome::Ok(sub.clone()),
        ),
        (
            "DPoP, replayed proof",
            Target::WhoAmI,
            dpop(Proof::Replayed),
            Outcome::InvalidToken,
        ),
        (
            "DPoP, proof for another method",
            Target::WhoAmI,
            dpop(Proof::OtherMethod),
            Outcome::InvalidToken,
        ),
        (
            "DPoP, proof for another URL",
            Target::WhoAmI,
            dpop(Proof::OtherUrl),
            Outcome::InvalidToken,
        ),
        (
            "DPoP, proof signed by another key",
            Target::WhoAmI,
            dpop(Proof::OtherKey),
            Outcome::InvalidToken,
        ),
        (
            "DPoP, no proof",
            Target::WhoAmI,
            dpop(Proof::Missing),
            Outcome::InvalidToken,
        ),
        (
            "DPoP-bound token sent as Bearer",
            Target::WhoAmI,
            dpop(Proof::AsBearer),
            Outcome::InvalidToken,
        ),
        (
            "DPoP, valid proof, scope checked",
            Target::Admin,
            dpop(Proof::Valid),
            Outcome::Forbidden(Some("admin".into())),
        ),
    ]);
    rows.drain(..)
        .map(|(name, target, credential, expect)| Scenario {
            name,
            target,
            credential,
            expect,
        })
        .collect()
}

/// The mTLS scenarios, run against the TLS server of every framework.
pub fn mtls_scenarios(setup: &Setup) -> Vec<Scenario> {
    let pki = &setup.pki;
    let sub = TestIssuer::SUBJECT.to_owned();
    let cert = |c: &ClientCert| Credential::ClientCert(c.clone(), None);
    let bound = setup
        .issuer
        .mint(json!({"cnf": {"x5t#S256": pki.alpha.x5t_s256()}}));
    let rows = vec![
        (
            "mTLS: no certificate",
            Target::WhoAmI,
            Credential::None,
            Outcome::Unauthenticated,
        ),
        (
            "mTLS: valid certificate",
            Target::WhoAmI,
            cert(&pki.alpha),
            Outcome::Ok(ALPHA.to_owned()),
        ),
        (
            "mTLS: no certificate, valid token",
            Target::WhoAmI,
            Credential::Bearer(setup.issuer.token()),
            Outcome::Ok(sub.clone()),
        ),
        (
            "mTLS: expired certificate",
            Target::WhoAmI,
            cert(&pki.expired),
            Outcome::HandshakeRefused,
        ),
        (
            "mTLS: wrong EKU (serverAuth only)",
            Target::WhoAmI,
            cert(&pki.server_auth_only),
            Outcome::HandshakeRefused,
        ),
        (
            "mTLS: unknown CA",
            Target::WhoAmI,
            cert(&pki.stranger),
            Outcome::HandshakeRefused,
        ),
        (
            "mTLS: revoked by CRL",
            Target::WhoAmI,
            cert(&pki.revoked),
            Outcome::HandshakeRefused,
        ),
        (
            "mTLS: identity allowed by policy",
            Target::AlphaOnly,
            cert(&pki.alpha),
            Outcome::Ok(ALPHA.to_owned()),
        ),
        (
            "mTLS: identity denied by policy",
            Target::AlphaOnly,
            cert(&pki.beta),
            Outcome::Forbidden(None),
        ),
        (
            "mTLS: bound token, matching certificate",
            Target::WhoAmI,
            Credential::ClientCert(pki.alpha.clone(), Some(bound.clone())),
            Outcome::Ok(sub),
        ),
        (
            "mTLS: bound token, another certificate",
            Target::WhoAmI,
            Credential::ClientCert(pki.beta.clone(), Some(bound.clone())),
            Outcome::InvalidToken,
        ),
        (
            "mTLS: bound token, no certificate",
            Target::WhoAmI,
            Credential::Bearer(bound),
            Outcome::InvalidToken,
        ),
    ];
    rows.into_iter()
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

/// What a check of [`rate_limit_checks`] expects of the answer's rate-limit fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitFields {
    /// Neither `ratelimit-policy` nor `ratelimit`.
    Absent,
    /// Both: `ratelimit-policy` exactly this, and `ratelimit` for the same policy with fewer
    /// than its quota remaining.
    Present {
        /// The policy's name (`key-rate`).
        policy: &'static str,
        /// Its quota (the burst, for a rate).
        quota: u64,
        /// Its window, in seconds.
        window_secs: u64,
    },
}

/// One rate-limit check: an allowed call and the fields its answer must (not) carry.
#[derive(Debug, Clone)]
pub struct RateLimitCheck {
    /// A short name, printed on failure.
    pub name: &'static str,
    /// What is presented (to [`Target::WhoAmI`]).
    pub credential: Credential,
    /// The subject the handler must see.
    pub subject: String,
    /// The fields the answer must carry.
    pub fields: RateLimitFields,
}

/// The rate-limit checks: an allowed request of a key with a limit carries the rate-limit
/// fields, of a key without one or of a token does not.
pub fn rate_limit_checks(setup: &Setup) -> Vec<RateLimitCheck> {
    vec![
        RateLimitCheck {
            name: "API key with a generous limit",
            credential: Credential::ApiKey(setup.keys.generous.0.clone()),
            subject: setup.keys.generous.1.clone(),
            fields: RateLimitFields::Present {
                policy: "key-rate",
                quota: 1_000_000,
                window_secs: 3600,
            },
        },
        RateLimitCheck {
            name: "API key without a limit",
            credential: Credential::ApiKey(setup.keys.reader.0.clone()),
            subject: setup.keys.reader.1.clone(),
            fields: RateLimitFields::Absent,
        },
        RateLimitCheck {
            name: "token",
            credential: Credential::Bearer(setup.issuer.token()),
            subject: TestIssuer::SUBJECT.to_owned(),
            fields: RateLimitFields::Absent,
        },
    ]
}

impl RateLimitFields {
    /// Why `reply` does not carry these fields, if it does not.
    pub fn mismatch(&self, reply: &Reply) -> Option<String> {
        let (policy_field, limit_field) = (
            reply.rate_limit_policy.as_deref(),
            reply.rate_limit.as_deref(),
        );
        match self {
            Self::Absent => (policy_field.is_some() || limit_field.is_some()).then(|| {
                format!("expected no rate-limit fields, got {policy_field:?} and {limit_field:?}")
            }),
            Self::Present {
                policy,
                quota,
                window_secs,
            } => {
                let want = format!("\"{policy}\";q={quota};w={window_secs}");
                if policy_field != Some(want.as_str()) {
                    return Some(format!(
                        "expected ratelimit-policy {want}, got {policy_field:?}"
                    ));
                }
                // `"<policy>";r=<remaining>;t=<reset>`, remaining below the quota.
                let remaining = limit_field
                    .and_then(|v| v.strip_prefix(&format!("\"{policy}\";r=")))
                    .and_then(|v| v.split_once(";t="))
                    .and_then(|(r, t)| Some((r.parse::<u64>().ok()?, t.parse::<u64>().ok()?)))
                    .map(|(r, _)| r);
                match remaining {
                    Some(r) if r < *quota => None,
                    _ => Some(format!(
                        "expected ratelimit \"{policy}\";r=<below {quota}>;t=<secs>, got {limit_field:?}"
                    )),
                }
            }
        }
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
    // A refused API key is challenged with its own scheme, in the same shape; a refused DPoP
    // proof with the DPoP scheme alone.
    if !(ch.starts_with("Bearer") || ch.starts_with("ApiKey") || ch.starts_with("DPoP")) {
        return Outcome::Other(format!("{kind}, challenge {ch}"));
    }
    if ch.starts_with("DPoP") && ch.contains("error=\"invalid_dpop_proof\"") {
        Outcome::InvalidToken
    } else if ch.contains("error=\"invalid_request\"") {
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

/// An opaque token through one framework: repeated requests introspect it once (the cache
/// answers), and once revoked at the authorization server it is refused when its cache entry
/// ends ([`OPAQUE_CACHE_TTL`]), within a bound.
async fn opaque_lifecycle(name: &str, server: &dyn Running, setup: &Setup) -> Vec<String> {
    let mut failures = Vec::new();
    let token = setup.opaque("read");
    let credential = Credential::Bearer(token.clone());
    let want = Outcome::Ok(TestIssuer::SUBJECT.to_owned());
    for _ in 0..5 {
        let got = server.call(&Target::WhoAmI, &credential).await;
        if got != want {
            failures.push(format!(
                "{name}: opaque token: expected {want:?}, got {got:?}"
            ));
            return failures;
        }
    }
    let n = setup.authz.introspections_of(&token);
    if n != 1 {
        failures.push(format!(
            "{name}: opaque token introspected {n} times for 5 requests (expected once)"
        ));
    }
    setup.authz.revoke(&token);
    let started = std::time::Instant::now();
    let bound = OPAQUE_CACHE_TTL * 2 + Duration::from_secs(2);
    loop {
        let got = server.call(&Target::WhoAmI, &credential).await;
        if got == Outcome::InvalidToken {
            break;
        }
        if started.elapsed() > bound {
            failures.push(format!(
                "{name}: opaque token revoked at the authorization server still accepted after \
                 {bound:?} (got {got:?})"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    failures
}

/// Runs every scenario against `framework`: the plain scenarios and rate-limit checks against
/// its plain server, the mTLS scenarios against its TLS server.
pub async fn run(framework: &dyn Framework, setup: &Setup) -> Results {
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
    for check in rate_limit_checks(setup) {
        let reply = server.reply(&Target::WhoAmI, &check.credential).await;
        let want = Outcome::Ok(check.subject.clone());
        if reply.outcome != want {
            failures.push(format!(
                "{}: rate-limit fields, {}: expected {want:?}, got {:?}",
                framework.name(),
                check.name,
                reply.outcome
            ));
        } else if let Some(why) = check.fields.mismatch(&reply) {
            failures.push(format!(
                "{}: rate-limit fields, {}: {why}",
                framework.name(),
                check.name
            ));
        }
    }
    failures.extend(opaque_lifecycle(framework.name(), server.as_ref(), setup).await);
    drop(server);
    let mut results = Results { failures };
    let tls = framework.start_tls(setup).await;
    for s in mtls_scenarios(setup) {
        let got = tls.call(&s.target, &s.credential).await;
        let want = as_seen(&s.expect, framework.precision());
        if got != want {
            results.failures.push(format!(
                "{}: {}: expected {want:?}, got {got:?}",
                framework.name(),
                s.name
            ));
        }
    }
    results
}

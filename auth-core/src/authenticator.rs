//! The [`Authenticator`] trait and the [`Gate`] that adapters call.
//!
//! An [`Authenticator`] owns one credential kind. The [`Gate`] is everything an adapter needs
//! from the core: [`Gate::check`] reads the credentials through [`HeaderSource`], answers from
//! the authenticator's cache when it can (no allocation, no future), otherwise hands back a
//! future, and records the audit event; [`Gate::authorize`] and [`Gate::enforce`] then apply
//! policies with the request's [`RequestContext`]. Adapters only translate [`Check`] and
//! [`AuthError`] into their framework's types.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use auth_core::jwt::{Issuer, Jwt};
//! use auth_core::keys::{KeySet, VerifyingKey};
//! use auth_core::{AuthError, Check, Gate};
//!
//! let keys = KeySet::new(vec![VerifyingKey::hmac(&[7; 32], None).unwrap()]).unwrap();
//! let jwt = Jwt::builder().issuer(Issuer::any().keys(keys)).build().unwrap();
//! let gate = Gate::builder(jwt).realm("api").build();
//!
//! let headers = http::HeaderMap::new();
//! let Check::Ready(result) = gate.check(&headers) else { unreachable!() };
//! let err = result.unwrap_err();
//! assert_eq!(err, AuthError::MissingCredentials);
//! assert_eq!(err.www_authenticate(gate.realm()).unwrap(), r#"Bearer realm="api""#);
//! # }
//! ```

use crate::audit::{AuditEvent, AuditSink, Outcome, TracingAudit};
use crate::credentials::{CredentialLimits, Credentials, HeaderSource, PeerCertificate};
use crate::dpop::DpopVerifier;
use crate::error::{AuthError, TokenError};
use crate::jwt::Jwt;
use crate::policy::{Policy, RequestContext, enforce};
use crate::principal::{AuthMethod, Principal};
use crate::revocation::Denylist;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Credentials copied out of a request, for the slow (asynchronous) path.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnedCredentials {
    /// The bearer token, if any.
    pub bearer: Option<String>,
    /// The API key, if any.
    pub api_key: Option<String>,
    /// The connection's client certificate, if any.
    pub peer: Option<crate::credentials::PeerCertificate>,
}

impl fmt::Debug for OwnedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedCredentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("peer", &self.peer)
            .finish()
    }
}

impl From<&Credentials<'_>> for OwnedCredentials {
    fn from(c: &Credentials<'_>) -> Self {
        Self {
            bearer: c.bearer().map(str::to_owned),
            api_key: c.api_key().map(str::to_owned),
            peer: c.peer_certificate().cloned(),
        }
    }
}

/// Verifies one kind of credential.
pub trait Authenticator: Send + Sync + 'static {
    /// The credential kind this authenticator verifies.
    fn method(&self) -> AuthMethod;

    /// Whether the request presents a credential of this kind.
    fn accepts(&self, credentials: &Credentials<'_>) -> bool;

    /// Answers from a cache without waiting, or `None` when a full verification is needed.
    ///
    /// Called before [`Credentials::validate`]: an implementation may only answer for the exact
    /// bytes of a credential it verified before (which passed validation then).
    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        let _ = credentials;
        None
    }

    /// Verifies the credentials fully.
    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>>;
}

impl Authenticator for Jwt {
    fn method(&self) -> AuthMethod {
        AuthMethod::Jwt
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        credentials.has_bearer()
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        self.verify_cached_bytes(credentials.bearer_unchecked()?)
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        let jwt = self.clone();
        Box::pin(async move {
            match credentials.bearer {
                Some(token) => jwt.verify(&token).await,
                None => Err(AuthError::MissingCredentials),
            }
        })
    }
}

/// Tries several authenticators, each for its own credential kind (JWT and API keys side by
/// side). A request presenting more than one kind of credential is refused as malformed: which
/// one should count would be a guess.
#[derive(Clone, Default)]
pub struct Chain {
    members: Vec<Arc<dyn Authenticator>>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|m| m.method()))
            .finish()
    }
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an authenticator (tried in the order added).
    #[must_use]
    pub fn with(mut self, authenticator: impl Authenticator) -> Self {
        self.members.push(Arc::new(authenticator));
        self
    }

    /// The member for these credentials, or the refusal of a request that presents two kinds.
    fn pick(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<Option<&Arc<dyn Authenticator>>, AuthError> {
        if credentials.kinds() > 1 {
            return Err(AuthError::InvalidRequest(
                crate::error::RequestError::MultipleCredentials,
            ));
        }
        Ok(self.members.iter().find(|m| m.accepts(credentials)))
    }
}

impl Authenticator for Chain {
    fn method(&self) -> AuthMethod {
        self.members.first().map_or(AuthMethod::Jwt, |m| m.method())
    }

    fn accepts(&self, credentials: &Credentials<'_>) -> bool {
        self.members.iter().any(|m| m.accepts(credentials))
    }

    fn authenticate_cached(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        match self.pick(credentials) {
            Ok(member) => member?.authenticate_cached(credentials),
            Err(e) => Some(Err(e)),
        }
    }

    fn authenticate(
        &self,
        credentials: OwnedCredentials,
    ) -> BoxFuture<'static, Result<Principal, AuthError>> {
        let borrowed = Credentials::from_owned(&credentials);
        match self.pick(&borrowed) {
            Ok(Some(member)) => member.authenticate(credentials),
            Ok(None) => Box::pin(std::future::ready(Err(AuthError::MissingCredentials))),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// Enforces RFC 8705: a principal bound to a client certificate is accepted only over a
/// connection presenting the certificate with that thumbprint (compared in constant time); and
/// RFC 9449 7.2: a token bound to a DPoP key is refused with the `Bearer` scheme.
fn bound(
    result: Result<Principal, AuthError>,
    peer: Option<&[u8; 32]>,
    dpop_scheme: bool,
) -> Result<Principal, AuthError> {
    let p = result?;
    if !dpop_scheme && p.dpop_binding().is_some() {
        return Err(AuthError::InvalidToken(TokenError::DpopRequired));
    }
    match (p.certificate_binding(), peer) {
        (None, _) => Ok(p),
        (Some(expected), Some(actual))
            if aws_lc_rs::constant_time::verify_slices_are_equal(expected, actual).is_ok() =>
        {
            Ok(p)
        }
        (Some(_), _) => Err(AuthError::InvalidToken(TokenError::CertificateMismatch)),
    }
}

/// Whether a route needs credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Requests without credentials are refused with 401.
    #[default]
    Required,
    /// Requests without credentials go through without a principal; presented credentials must
    /// still be valid.
    Optional,
}

/// The result of [`Gate::check`].
pub enum Check {
    /// Decided without waiting: `Ok(None)` is an anonymous request on an optional route.
    Ready(Result<Option<Principal>, AuthError>),
    /// A full verification is needed; the future is `'static` and `Send`.
    Pending(BoxFuture<'static, Result<Option<Principal>, AuthError>>),
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Self::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

struct GateInner {
    authenticator: Arc<dyn Authenticator>,
    policy: Option<Arc<dyn Policy>>,
    mode: Mode,
    limits: CredentialLimits,
    audit: Arc<dyn AuditSink>,
    realm: String,
    denylist: Option<Arc<dyn Denylist>>,
    dpop: Option<DpopVerifier>,
    /// The public origin (`https://api.example`) that DPoP proofs' `htu` must name, when set.
    dpop_origin: Option<String>,
}

/// What a `DPoP`-scheme request needs checked once its token is authenticated, owned for the
/// slow path.
struct ProofCheck {
    proof: String,
    htm: String,
    htu: String,
}

/// Authenticates requests for an adapter: credentials, authenticator, policy, audit. Cheap to
/// clone.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<GateInner>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.inner.mode)
            .field("realm", &self.inner.realm)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Gate`].
#[must_use]
pub struct GateBuilder {
    inner: GateInner,
}

impl fmt::Debug for GateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateBuilder").finish_non_exhaustive()
    }
}

impl GateBuilder {
    /// Lets requests without credentials through without a principal.
    pub fn optional(mut self) -> Self {
        self.inner.mode = Mode::Optional;
        self
    }
    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.inner.mode = mode;
        self
    }
    /// Applies `policy` to every authenticated request: adapters call [`Gate::authorize`] with
    /// the request's [`RequestContext`] once the caller is authenticated.
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.inner.policy = Some(Arc::new(policy));
        self
    }
    /// Sets the `realm` of challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.inner.realm = realm.into();
        self
    }
    /// Sets the credential size limits.
    pub fn limits(mut self, limits: CredentialLimits) -> Self {
        self.inner.limits = limits;
        self
    }
    /// Sends audit events to `sink` (default: [`TracingAudit`]).
    pub fn audit(mut self, sink: impl AuditSink) -> Self {
        self.inner.audit = Arc::new(sink);
        self
    }
    /// Accepts DPoP-bound tokens (RFC 9449): `Authorization: DPoP <token>` with a `DPoP` proof
    /// header checked by `verifier` against the request's method and URL (adapters provide
    /// them, see [`WithTarget`](crate::credentials::WithTarget)), and the token's `cnf.jkt`.
    /// Without it the `DPoP` scheme is not read. A DPoP-bound token sent as `Bearer` is refused
    /// either way.
    pub fn dpop(mut self, verifier: DpopVerifier) -> Self {
        self.inner.dpop = Some(verifier);
        self
    }
    /// The public origin DPoP proofs' `htu` must name (`https://api.example`, no path), for
    /// services behind a proxy or load balancer; by default the request's own scheme and host.
    /// Takes effect with [`GateBuilder::dpop`].
    pub fn dpop_origin(mut self, origin: impl Into<String>) -> Self {
        self.inner.dpop_origin = Some(origin.into().trim_end_matches('/').to_owned());
        self
    }
    /// Refuses bearer tokens that `denylist` says are revoked (`401 invalid_token`, reason
    /// `revoked`), on every request: answers from the authenticators' caches included.
    pub fn denylist(mut self, denylist: impl Denylist) -> Self {
        self.inner.denylist = Some(Arc::new(denylist));
        self
    }
    /// Finishes the gate.
    pub fn build(self) -> Gate {
        Gate {
            inner: Arc::new(self.inner),
        }
    }
}

impl Gate {
    /// A gate in front of `authenticator`.
    pub fn builder(authenticator: impl Authenticator) -> GateBuilder {
        Self::builder_arc(Arc::new(authenticator))
    }

    /// A gate in front of a shared authenticator.
    pub fn builder_arc(authenticator: Arc<dyn Authenticator>) -> GateBuilder {
        GateBuilder {
            inner: GateInner {
                authenticator,
                policy: None,
                mode: Mode::Required,
                limits: CredentialLimits::default(),
                audit: Arc::new(TracingAudit),
                realm: "api".into(),
                denylist: None,
                dpop: None,
                dpop_origin: None,
            },
        }
    }

    /// The realm of challenges.
    pub fn realm(&self) -> &str {
        &self.inner.realm
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The audit sink, for adapters that make further decisions (route policies).
    pub fn audit(&self) -> &dyn AuditSink {
        &*self.inner.audit
    }

    /// Whether a gate-wide policy is configured (adapters skip building a [`RequestContext`]
    /// when not).
    pub fn has_policy(&self) -> bool {
        self.inner.policy.is_some()
    }

    /// Applies the gate-wide policy (if any) to an authenticated caller, recording the decision
    /// with the rule that made it.
    ///
    /// # Errors
    ///
    /// The policy's denial (403).
    pub fn authorize(
        &self,
        principal: &Principal,
        request: &RequestContext<'_>,
    ) -> Result<(), AuthError> {
        match &self.inner.policy {
            Some(policy) => enforce(&**policy, principal, request, &*self.inner.audit),
            None => Ok(()),
        }
    }

    /// Applies `policy` (a route's or an operation's) to an authenticated caller, recording the
    /// decision in this gate's audit sink.
    ///
    /// # Errors
    ///
    /// The policy's denial (403).
    pub fn enforce(
        &self,
        policy: &dyn Policy,
        principal: &Principal,
        request: &RequestContext<'_>,
    ) -> Result<(), AuthError> {
        enforce(policy, principal, request, &*self.inner.audit)
    }

    /// Checks a request's credentials: authenticates, but applies no policy (see
    /// [`Gate::authorize`]).
    pub fn check<H: HeaderSource + ?Sized>(&self, headers: &H) -> Check {
        let inner = &*self.inner;
        let started = (inner.audit.enabled(Outcome::Allowed)
            || inner.audit.enabled(Outcome::Denied))
        .then(Instant::now);
        let creds = match Credentials::from_headers(headers, &inner.limits) {
            Ok(c) if inner.dpop.is_none() => c.without_dpop(),
            Ok(c) => c,
            Err(e) => return Check::Ready(self.finish(Err(e), started)),
        };
        if !inner.authenticator.accepts(&creds) {
            return Check::Ready(match inner.mode {
                Mode::Optional => Ok(None),
                Mode::Required => self.finish(Err(AuthError::MissingCredentials), started),
            });
        }
        let peer = creds.peer_certificate().map(PeerCertificate::sha256);
        let dpop = creds.is_dpop();
        let proof = match dpop.then(|| self.proof_check(&creds, headers)).transpose() {
            Ok(p) => p,
            Err(e) => return Check::Ready(self.finish(Err(e), started)),
        };
        if let Some(result) = inner.authenticator.authenticate_cached(&creds) {
            let token = creds.bearer_unchecked();
            let result = self
                .admit(bound(result, peer, dpop), token)
                .and_then(|p| self.confirm(p, proof.as_ref(), token));
            return Check::Ready(self.finish(result, started));
        }
        if let Err(e) = creds.validate() {
            return Check::Ready(self.finish(Err(e), started));
        }
        let fut = inner
            .authenticator
            .authenticate(OwnedCredentials::from(&creds));
        let gate = self.clone();
        let peer = peer.copied();
        // Only a denylist (for its hash) or a DPoP proof (`ath`) needs the token afterwards.
        let token = (inner.denylist.is_some() || dpop)
            .then(|| creds.bearer_unchecked().map(<[u8]>::to_vec))
            .flatten();
        Check::Pending(Box::pin(async move {
            let token = token.as_deref();
            let result = gate
                .admit(bound(fut.await, peer.as_ref(), dpop), token)
                .and_then(|p| gate.confirm(p, proof.as_ref(), token));
            gate.finish(result, started)
        }))
    }

    /// Checks a request and waits for the answer.
    ///
    /// # Errors
    ///
    /// The reason the request is refused.
    pub async fn check_async<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
    ) -> Result<Option<Principal>, AuthError> {
        match self.check(headers) {
            Check::Ready(r) => r,
            Check::Pending(f) => f.await,
        }
    }

    /// The proof, method and URL of a `DPoP`-scheme request (checked once the token is
    /// authenticated, see [`Gate::confirm`]).
    fn proof_check<H: HeaderSource + ?Sized>(
        &self,
        creds: &Credentials<'_>,
        headers: &H,
    ) -> Result<ProofCheck, AuthError> {
        let invalid = |d: &'static str| AuthError::InvalidToken(TokenError::DpopProofInvalid(d));
        let proof = creds
            .dpop_proof()
            .map_err(invalid)?
            .ok_or_else(|| invalid("the DPoP header is missing"))?;
        let target = headers.request_target().ok_or(AuthError::Misconfigured(
            "DPoP needs the request's method and URL, which the adapter did not provide",
        ))?;
        let htu = match &self.inner.dpop_origin {
            Some(origin) => format!("{origin}{}", target.path),
            None => {
                let host = match target.authority {
                    Some(a) => a,
                    None => headers
                        .header_values("host")
                        .next()
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .ok_or_else(|| invalid("the request has no host to match htu"))?,
                };
                format!("{}://{host}{}", target.scheme, target.path)
            }
        };
        Ok(ProofCheck {
            proof: proof.to_owned(),
            htm: target.method.to_owned(),
            htu,
        })
    }

    /// Checks a `DPoP`-scheme request's proof against its authenticated token: signed by the
    /// key the token is bound to, for this method and URL, fresh and not replayed.
    fn confirm(
        &self,
        principal: Principal,
        proof: Option<&ProofCheck>,
        token: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        let (Some(check), Some(verifier)) = (proof, &self.inner.dpop) else {
            return Ok(principal);
        };
        let token =
            token
                .and_then(|t| std::str::from_utf8(t).ok())
                .ok_or(AuthError::InvalidToken(TokenError::Malformed(
                    "the token is not text",
                )))?;
        let jkt = principal
            .dpop_binding()
            .ok_or(AuthError::InvalidToken(TokenError::DpopBindingMismatch))?;
        verifier.verify_bound(&check.proof, &check.htm, &check.htu, token, jkt)?;
        Ok(principal)
    }

    /// The headers of an HTTP answer to `err` besides its content type (see
    /// [`AuthError::http_headers`]), with this gate's realm; with DPoP enabled, also the `DPoP`
    /// challenge (`algs`) and, when a fresh proof nonce is required, `DPoP-Nonce`. A refusal of
    /// the DPoP proof itself carries only the `DPoP` challenge.
    pub fn http_headers(&self, err: &AuthError) -> Vec<(&'static str, String)> {
        let realm = &self.inner.realm;
        let Some(verifier) = &self.inner.dpop else {
            return err.http_headers(realm);
        };
        let dpop_only = matches!(
            err,
            AuthError::InvalidToken(
                TokenError::DpopProofInvalid(_)
                    | TokenError::DpopNonceRequired
                    | TokenError::DpopBindingMismatch
            )
        );
        let mut headers = if dpop_only {
            Vec::new()
        } else {
            err.http_headers(realm)
        };
        headers.extend(verifier.challenge_headers(err, realm));
        headers
    }

    /// Applies the denylist to an authenticated caller.
    fn admit(
        &self,
        result: Result<Principal, AuthError>,
        token: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        let principal = result?;
        match &self.inner.denylist {
            Some(d) if d.is_revoked(&principal, token) => {
                Err(AuthError::InvalidToken(TokenError::Revoked))
            }
            _ => Ok(principal),
        }
    }

    fn finish(
        &self,
        result: Result<Principal, AuthError>,
        started: Option<Instant>,
    ) -> Result<Option<Principal>, AuthError> {
        let inner = &*self.inner;
        let outcome = if result.is_ok() {
            Outcome::Allowed
        } else {
            Outcome::Denied
        };
        if let Some(started) = started
            && inner.audit.enabled(outcome)
        {
            inner.audit.record(&AuditEvent {
                outcome,
                reason: result.as_ref().err().map_or("ok", AuthError::reason),
                method: Some(
                    result
                        .as_ref()
                        .map_or_else(|_| inner.authenticator.method(), Principal::method),
                ),
                principal: result.as_ref().ok(),
                latency: Some(started.elapsed()),
                rule: None,
                detail: None,
            });
        }
        result.map(Some)
    }
}

//! Extractors: [`Principal`], [`OptionalPrincipal`] and [`Claims<T>`].
//!
//! They read what [`AuthMiddleware`](crate::AuthMiddleware) left in the request. Their errors
//! ([`AuthRejection`]) render exactly like the middleware's own answers (401 with the
//! challenge), and a handler with no `AuthMiddleware` in front gets a 500: that is a server
//! bug, not the caller's fault, and it is logged.
//!
//! **`Option<Principal>` is not the optional extractor.** actix-web implements `FromRequest`
//! for every `Option<T>` by turning *any* error into `None`, so `Option<Principal>` would also
//! hide a missing middleware. Take [`OptionalPrincipal`]: `None` for an anonymous request on an
//! optional gate, 500 when no middleware ran. (`Option<Principal>` still compiles; the missing
//! middleware is then only logged.)
//!
//! ```
//! use auth_actix::{Claims, OptionalPrincipal, Principal};
//! use serde::Deserialize;
//!
//! async fn whoami(principal: Principal) -> String {
//!     principal.subject().to_owned()
//! }
//!
//! async fn maybe(OptionalPrincipal(principal): OptionalPrincipal) -> &'static str {
//!     if principal.is_some() { "hello, you" } else { "hello, stranger" }
//! }
//!
//! #[derive(Deserialize)]
//! struct Mine { sub: String, email: Option<String> }
//!
//! async fn mine(Claims(c): Claims<Mine>) -> String {
//!     c.email.unwrap_or(c.sub)
//! }
//!
//! # #[actix_web::main] async fn main() {
//! use actix_web::{App, test, web};
//!
//! // No `AuthMiddleware` in front: a server bug, answered with 500.
//! let app = test::init_service(App::new().route("/whoami", web::get().to(whoami))).await;
//! let res = test::call_service(&app, test::TestRequest::get().uri("/whoami").to_request()).await;
//! assert_eq!(res.status(), 500);
//! # let _ = App::new().route("/b", web::get().to(maybe)).route("/c", web::get().to(mine));
//! # }
//! ```

use crate::middleware::AuthContext;
use crate::response::{log_misconfigured, render};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};
use auth_core::{AuthError, TokenError};
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::{Ready, ready};
use std::ops::Deref;

/// The authenticated caller, as an actix-web extractor. Derefs to [`auth_core::Principal`].
///
/// Refuses an anonymous request (optional gate) with 401, and answers 500 when no
/// [`AuthMiddleware`](crate::AuthMiddleware) ran.
#[derive(Debug, Clone)]
pub struct Principal(pub auth_core::Principal);

impl Deref for Principal {
    type Target = auth_core::Principal;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<Principal> for auth_core::Principal {
    fn from(p: Principal) -> Self {
        p.0
    }
}

/// The caller if authenticated, `None` for an anonymous request on an optional gate. Answers
/// 500 when no [`AuthMiddleware`](crate::AuthMiddleware) ran (unlike `Option<Principal>`, see
/// the [module docs](crate::extract)).
#[derive(Debug, Clone)]
pub struct OptionalPrincipal(pub Option<auth_core::Principal>);

impl OptionalPrincipal {
    /// The principal, if any.
    pub fn into_inner(self) -> Option<auth_core::Principal> {
        self.0
    }
}

impl Deref for OptionalPrincipal {
    type Target = Option<auth_core::Principal>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The verified claims of the caller's token, deserialized into `T`. Claims that do not have
/// the shape of `T` are refused with 401 `invalid_token`.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

/// Why an extractor refused a request; renders like the middleware's answers.
#[derive(Debug, Clone)]
pub struct AuthRejection {
    error: AuthError,
    realm: String,
}

impl AuthRejection {
    /// The underlying error.
    pub fn error(&self) -> &AuthError {
        &self.error
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    /// The body text (problem details JSON).
    pub fn body_text(&self) -> String {
        self.error.problem_json()
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        render(&self.error, &self.realm)
    }
}

/// Logged here, when found, rather than when rendered: actix-web's `Option<T>` extractor drops
/// the error without rendering it.
fn missing_middleware() -> AuthRejection {
    let error = AuthError::Misconfigured("no AuthMiddleware in front of this handler");
    log_misconfigured(&error);
    AuthRejection {
        error,
        realm: String::new(),
    }
}

/// The principal, `None` for an anonymous request, or a rejection for a missing middleware.
fn lookup(req: &HttpRequest) -> Result<Option<auth_core::Principal>, AuthRejection> {
    let ext = req.extensions();
    if let Some(p) = ext.get::<auth_core::Principal>() {
        return Ok(Some(p.clone()));
    }
    match ext.get::<AuthContext>() {
        Some(_) => Ok(None),
        None => Err(missing_middleware()),
    }
}

fn require(req: &HttpRequest) -> Result<auth_core::Principal, AuthRejection> {
    lookup(req)?.ok_or_else(|| AuthRejection {
        error: AuthError::MissingCredentials,
        realm: realm(req),
    })
}

/// The realm to challenge with: known only on anonymous requests (an empty realm is left out
/// of the challenge), as in `auth-tower`.
fn realm(req: &HttpRequest) -> String {
    req.extensions()
        .get::<AuthContext>()
        .map_or_else(String::new, |c| c.realm().to_owned())
}

impl FromRequest for Principal {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require(req).map(Principal))
    }
}

impl FromRequest for OptionalPrincipal {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(lookup(req).map(OptionalPrincipal))
    }
}

impl<T: DeserializeOwned> FromRequest for Claims<T> {
    type Error = AuthRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require(req).and_then(|p| {
            p.claims()
                .deserialize()
                .map(Claims)
                .map_err(|e| {
                    // Only the category goes to the (debug) log: serde's message can quote claim
                    // values (personal data). The caller learns only the outcome.
                    tracing::debug!(target: "auth::actix", category = ?e.classify(), "claims do not fit the extractor's type");
                    AuthRejection {
                        error: AuthError::InvalidToken(TokenError::ClaimsShape),
                        realm: realm(req),
                    }
                })
        }))
    }
}

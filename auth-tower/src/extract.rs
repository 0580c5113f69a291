//! axum extractors: [`Principal`], `Option<Principal>` and [`Claims<T>`].
//!
//! They read what [`AuthLayer`](crate::AuthLayer) left in the request. Their rejections render
//! exactly like the layer's own answers (401 with the challenge), and a handler whose route has
//! no `AuthLayer` in front gets a 500: that is a server bug, not the caller's fault.
//!
//! ```
//! use auth_tower::{Claims, Principal};
//! use serde::Deserialize;
//!
//! async fn whoami(principal: Principal) -> String {
//!     principal.subject().to_owned()
//! }
//!
//! async fn maybe(principal: Option<Principal>) -> &'static str {
//!     if principal.is_some() { "hello, you" } else { "hello, stranger" }
//! }
//!
//! #[derive(Deserialize)]
//! struct Mine { sub: String, email: Option<String> }
//!
//! async fn mine(Claims(c): Claims<Mine>) -> String {
//!     c.email.unwrap_or(c.sub)
//! }
//! # let _: axum::Router = axum::Router::new()
//! #     .route("/a", axum::routing::get(whoami))
//! #     .route("/b", axum::routing::get(maybe))
//! #     .route("/c", axum::routing::get(mine));
//! ```

use crate::layer::AuthContext;
use crate::response::error_response;
use auth_core::{AuthError, TokenError};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Deref;

/// The authenticated caller, as an axum extractor. Derefs to [`auth_core::Principal`].
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

/// The verified claims of the caller's token, deserialized into `T`.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

/// Why an extractor refused a request; renders like the layer's answers.
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
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.error.http_status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
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

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        error_response(&self.error, &self.realm)
    }
}

fn missing_layer() -> AuthRejection {
    AuthRejection {
        error: AuthError::Misconfigured("no AuthLayer in front of this handler"),
        realm: String::new(),
    }
}

/// The principal, `None` for an anonymous request, or a rejection for a missing layer.
fn lookup(parts: &Parts) -> Result<Option<auth_core::Principal>, AuthRejection> {
    if let Some(p) = parts.extensions.get::<auth_core::Principal>() {
        return Ok(Some(p.clone()));
    }
    match parts.extensions.get::<AuthContext>() {
        Some(_) => Ok(None),
        None => Err(missing_layer()),
    }
}

fn require(parts: &Parts) -> Result<auth_core::Principal, AuthRejection> {
    lookup(parts)?.ok_or_else(|| AuthRejection {
        error: AuthError::MissingCredentials,
        realm: realm(parts),
    })
}

/// The realm to challenge with: known only on anonymous requests (an empty realm is left out
/// of the challenge).
fn realm(parts: &Parts) -> String {
    parts
        .extensions
        .get::<AuthContext>()
        .map_or_else(String::new, |c| c.realm().to_owned())
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        require(parts).map(Principal)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        lookup(parts).map(|p| p.map(Principal))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let p = require(parts)?;
        p.claims()
            .deserialize()
            .map(Claims)
            .map_err(|_| AuthRejection {
                error: AuthError::InvalidToken(TokenError::ClaimsShape),
                realm: realm(parts),
            })
    }
}

//! Reading the caller in a handler: [`PrincipalExt::principal`].

use crate::status::error_status;
use auth_core::{AuthError, Gate, Principal};
use tonic::Status;

/// What [`GrpcAuthLayer`](crate::GrpcAuthLayer) leaves in the extensions of a call it lets
/// through *without* a principal (an exempt method, or an anonymous call in
/// [`Mode::Optional`](auth_core::Mode::Optional)): it tells [`PrincipalExt::principal`] that the
/// layer ran (so a missing principal is `UNAUTHENTICATED`, not a server bug) and which realm to
/// challenge with. An authenticated call carries only the [`Principal`].
#[derive(Clone)]
pub(crate) struct AuthContext {
    pub(crate) gate: Gate,
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for tonic::Request<T> {}
}

/// The authenticated caller of a tonic call.
///
/// ```
/// use auth_core::{AuthMethod, Principal};
/// use auth_grpc::PrincipalExt;
///
/// let mut request = tonic::Request::new(());
/// request
///     .extensions_mut()
///     .insert(Principal::builder("alice", AuthMethod::Jwt).build());
/// assert_eq!(request.principal().unwrap().subject(), "alice");
/// ```
pub trait PrincipalExt: sealed::Sealed {
    /// The [`Principal`] that [`GrpcAuthLayer`](crate::GrpcAuthLayer) inserted.
    ///
    /// `request.extensions().get::<Principal>()` reads the same value; this method also gives
    /// the status to answer with when there is none.
    ///
    /// # Errors
    ///
    /// `UNAUTHENTICATED` (with the layer's `www-authenticate` challenge) when the layer let the
    /// call through without credentials (an exempt method, or an anonymous call on an
    /// optional-auth gate); `INTERNAL` when no `GrpcAuthLayer` is in front of the service,
    /// which is a server misconfiguration.
    fn principal(&self) -> Result<&Principal, Status>;
}

impl<T> PrincipalExt for tonic::Request<T> {
    fn principal(&self) -> Result<&Principal, Status> {
        let extensions = self.extensions();
        if let Some(principal) = extensions.get::<Principal>() {
            return Ok(principal);
        }
        Err(match extensions.get::<AuthContext>() {
            Some(ctx) => error_status(&AuthError::MissingCredentials, ctx.gate.realm()),
            None => error_status(
                &AuthError::Misconfigured("no GrpcAuthLayer in front of the service"),
                "",
            ),
        })
    }
}

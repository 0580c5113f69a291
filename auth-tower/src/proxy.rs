//! The trusted-proxy mode of [`AuthLayer`](crate::AuthLayer) (feature `mtls`): where the
//! remote address comes from. The rules live in `auth_core::mtls::trust::ForwardedCertificates`.

use http::Request;
use std::net::{IpAddr, SocketAddr};

/// The remote address of `req`: axum's `ConnectInfo<SocketAddr>`, or a plain `SocketAddr`
/// extension.
#[cfg(feature = "axum")]
pub(crate) fn remote_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| req.extensions().get::<SocketAddr>().map(SocketAddr::ip))
}

/// The remote address of `req`: a `SocketAddr` extension.
#[cfg(not(feature = "axum"))]
pub(crate) fn remote_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

//! The trusted-proxy mode of [`AuthLayer`](crate::AuthLayer) (feature `mtls`): a client
//! certificate forwarded by a TLS-terminating proxy, accepted only from the proxy's addresses
//! and validated again here. All the rules live in `auth_core::mtls::trust::TrustedProxy`.

use auth_core::mtls::trust::{TrustStore, TrustedProxy};
use auth_core::{AuthError, PeerCertificate, TokenError};
use http::Request;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

type TrustSource = Box<dyn Fn() -> Arc<TrustStore> + Send + Sync>;

/// A [`TrustedProxy`] and where the current trust store comes from.
pub(crate) struct ForwardedCertificates {
    proxy: TrustedProxy,
    trust: TrustSource,
}

impl fmt::Debug for ForwardedCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedCertificates")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl ForwardedCertificates {
    pub(crate) fn new(
        proxy: TrustedProxy,
        trust: impl Fn() -> Arc<TrustStore> + Send + Sync + 'static,
    ) -> Self {
        Self {
            proxy,
            trust: Box::new(trust),
        }
    }

    /// The certificate a trusted proxy forwarded with `req`, if any; a forwarded certificate
    /// that does not validate is refused (401 `invalid_token`).
    pub(crate) fn peer<B>(&self, req: &Request<B>) -> Result<Option<PeerCertificate>, AuthError> {
        let Some(remote) = remote_ip(req) else {
            return Ok(None);
        };
        let trust = (self.trust)();
        self.proxy
            .peer_from(
                req.headers(),
                remote,
                &trust,
                rustls_pki_types::UnixTime::now(),
            )
            .map_err(|e| {
                tracing::info!(target: "auth::tls", reason = e.as_str(), %remote, "forwarded client certificate refused");
                AuthError::InvalidToken(TokenError::CertificateRejected)
            })
    }
}

#[cfg(feature = "axum")]
fn remote_ip<B>(req: &Request<B>) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| req.extensions().get::<SocketAddr>().map(SocketAddr::ip))
}

#[cfg(not(feature = "axum"))]
fn remote_ip<B>(req: &Request<B>) -> Option<std::net::IpAddr> {
    req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

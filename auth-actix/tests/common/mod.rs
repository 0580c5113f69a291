//! Shared fixtures: a token issuer with a key generated when the test runs, and a look at
//! responses.
#![allow(dead_code, clippy::unwrap_used)]

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::test;
use auth_core::Algorithm;
use auth_core::issuer::SigningKey;
use auth_core::jwt::{Issuer, Jwt};
use auth_core::keys::KeySet;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const ISS: &str = "https://issuer.test";
pub(crate) const AUD: &str = "test-api";
pub(crate) const REALM: &str = "test";

/// Signs tokens for [`ISS`] / [`AUD`] with a fresh ES256 key.
pub(crate) struct TestIssuer {
    key: SigningKey,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestIssuer {
    pub(crate) fn new() -> Self {
        Self {
            key: SigningKey::generate(Algorithm::ES256, "k1").unwrap(),
        }
    }

    /// A verifier trusting this issuer; the tenant comes from the `tenant` claim.
    pub(crate) fn jwt(&self) -> Jwt {
        let keys = KeySet::from_jwks(&auth_core::issuer::jwks([&self.key]).to_string()).unwrap();
        Jwt::builder()
            .issuer(
                Issuer::new(ISS)
                    .audience(AUD)
                    .tenant_claim("tenant")
                    .keys(keys),
            )
            .build()
            .unwrap()
    }

    /// A token for `alice` (scope `read`, tenant `acme`, valid 5 minutes); `extra` members
    /// replace the defaults.
    pub(crate) fn mint(&self, extra: Value) -> String {
        let mut claims = json!({
            "iss": ISS,
            "aud": AUD,
            "sub": "alice",
            "scope": "read",
            "tenant": "acme",
            "department": "research",
            "iat": now(),
            "exp": now() + 300,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.key.sign(&claims).unwrap()
    }

    pub(crate) fn token(&self) -> String {
        self.mint(json!({}))
    }
}

/// What a test looks at in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) challenge: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) async fn of<B: MessageBody>(res: ServiceResponse<B>) -> Self {
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (status, challenge, content_type, retry_after) = (
            res.status().as_u16(),
            header("www-authenticate"),
            header("content-type"),
            header("retry-after"),
        );
        let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
        Self {
            status,
            challenge,
            content_type,
            retry_after,
            body,
        }
    }

    /// The challenge, or "" when there is none.
    pub(crate) fn challenge(&self) -> &str {
        self.challenge.as_deref().unwrap_or("")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

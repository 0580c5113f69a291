//! The demo REST routes' answers, shared by `auth-demo` (axum) and `auth-demo-actix` so that
//! both answer the same bytes.

use auth_core::Principal;
use serde_json::{Value, json};

/// `GET /healthz`.
pub fn healthz() -> Value {
    json!({"status": "ok"})
}

/// `GET /whoami`: the caller as the server saw it.
pub fn whoami(p: &Principal) -> Value {
    json!({
        "subject": p.subject(),
        "method": p.method().as_str(),
        "scopes": p.scopes(),
        "roles": p.roles(),
        "issuer": p.issuer(),
        "tenant": p.tenant(),
        "key_id": p.key_id(),
        "spiffe_id": p.claims().get("spiffe_id"),
        "expires_at": p.expires_at(),
    })
}

/// `GET /admin` (scope `admin`).
pub fn admin(p: &Principal) -> Value {
    json!({"message": "welcome, admin", "subject": p.subject()})
}

//! End-to-end test of the `auth-demo` binary: `serve` prints a working `curl` line, `token`
//! mints tokens the server accepts, and the routes answer as documented.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_auth-demo");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mint(state: &std::path::Path, listen: &str, sub: &str, scope: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "token", "--sub", sub, "--scope", scope, "--ttl", "5m", "--listen", listen,
        ])
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("run auth-demo token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout holds only the token: {text:?}");
    lines[0].to_owned()
}

#[tokio::test]
async fn serve_prints_a_working_curl_and_token_mints_accepted_tokens() {
    let state = std::env::temp_dir().join(format!("auth-demo-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    // Port 0: the OS picks one; the printed lines name the real address.
    let listen = "127.0.0.1:0";
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", listen])
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start auth-demo");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let banner = lines.next().expect("a banner line").expect("read");
    let curl = lines.next().expect("a curl line").expect("read");
    assert!(
        banner.starts_with("auth-demo is listening on http://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        curl.starts_with("curl -s -H 'Authorization: Bearer "),
        "{curl}"
    );
    let token = curl
        .split("Bearer ")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("token");
    let url = curl.rsplit(' ').next().expect("url").to_owned();
    let base = url.trim_end_matches("/whoami").to_owned();

    let client = reqwest::Client::new();
    let whoami: Value = client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(whoami["subject"], "alice");
    assert_eq!(whoami["method"], "jwt");
    assert_eq!(whoami["scopes"], serde_json::json!(["read", "admin"]));
    assert_eq!(whoami["issuer"], format!("http://{listen}"));

    let admin = client
        .get(format!("{base}/admin"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 200);

    let reader = mint(&state, listen, "bob", "read");
    let denied = client
        .get(format!("{base}/admin"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("admin");
    assert_eq!(denied.status(), 403);
    let challenge = denied.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("scope=\"admin\""),
        "{challenge}"
    );
    let bob: Value = client
        .get(&url)
        .bearer_auth(&reader)
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(bob["subject"], "bob");

    let anonymous = client.get(&url).send().await.expect("whoami");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    let jwks: Value = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "the JWKS publishes no private key"
    );

    drop(guard);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn mismatched_external_issuer_flags_are_refused_with_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwks-url",
            "https://a.example/jwks",
            "--jwks-url",
            "https://b.example/jwks",
            "--issuer",
            "https://a.example",
        ])
        .output()
        .expect("run auth-demo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 --jwks-url but 1 --issuer"), "{err}");
}

//! End-to-end test of the `auth-demo-actix` binary: `serve` prints a working `curl` line, tokens
//! from `auth-demo token` are accepted, the routes answer as documented, and every answer is
//! the same as the axum `auth-demo`'s, compared side by side.

use reqwest::Method;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_auth-demo-actix");
const AXUM_BIN: &str = env!("CARGO_BIN_EXE_auth-demo");
/// Port 0: the OS picks one; the printed lines name the real address. Both binaries and
/// `auth-demo token` get the same value, so they agree on the issuer (`http://127.0.0.1:0`).
const LISTEN: &str = "127.0.0.1:0";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh state directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A token from `auth-demo token` (the axum binary's CLI).
fn mint(state: &Path, sub: &str, scope: &str) -> String {
    let out = Command::new(AXUM_BIN)
        .args([
            "token", "--sub", sub, "--scope", scope, "--ttl", "5m", "--listen", LISTEN,
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

/// A running server: its base URL and the token of its `curl` line.
struct Running {
    base: String,
    token: String,
    _guard: Kill,
}

fn start(bin: &str, state: &Path, subcommand: Option<&str>) -> Running {
    let mut cmd = Command::new(bin);
    cmd.args(subcommand).args(["--listen", LISTEN]);
    let mut child = cmd
        .arg("--state-dir")
        .arg(state)
        // Never the CI's PostgreSQL: each run its own SQLite file.
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .arg("--database-url")
        .arg(format!("sqlite://{}/auth.db", state.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let banner = lines.next().expect("a banner line").expect("read");
    let curl = lines.next().expect("a curl line").expect("read");
    assert!(
        banner.starts_with("auth-demo is listening on http://127.0.0.1:")
            && banner.ends_with(&format!("(issuer http://{LISTEN}). Try:")),
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
        .expect("token")
        .to_owned();
    let url = curl.rsplit(' ').next().expect("url");
    Running {
        base: url.trim_end_matches("/whoami").to_owned(),
        token,
        _guard: guard,
    }
}

#[tokio::test]
async fn serve_prints_a_working_curl_and_accepts_auth_demo_tokens() {
    let state = StateDir::new("auth-demo-actix-e2e");
    let server = start(BIN, &state.0, None);
    let (base, token) = (&server.base, &server.token);
    let url = format!("{base}/whoami");

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
    assert_eq!(whoami["issuer"], format!("http://{LISTEN}"));

    let admin = client
        .get(format!("{base}/admin"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 200);
    let admin: Value = admin.json().await.expect("json");
    assert_eq!(
        admin,
        serde_json::json!({"message": "welcome, admin", "subject": "alice"})
    );

    let reader = mint(&state.0, "bob", "read");
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
    assert_eq!(
        challenge,
        r#"Bearer realm="auth-demo", error="insufficient_scope", error_description="the token lacks the required scope", scope="admin""#
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
        anonymous.headers()["www-authenticate"],
        r#"Bearer realm="auth-demo""#
    );
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("text"), r#"{"status":"ok"}"#);
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
    let discovery: Value = client
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(discovery["issuer"], format!("http://{LISTEN}"));
}

/// What is compared between the two servers.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    challenge: Option<String>,
    content_type: Option<String>,
    body: String,
}

async fn answer(
    client: &reqwest::Client,
    method: &Method,
    url: &str,
    authorization: &[String],
) -> Answer {
    let mut req = client.request(method.clone(), url);
    for a in authorization {
        req = req.header("authorization", a);
    }
    let res = req.send().await.expect("request");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let (status, challenge, content_type) = (
        res.status().as_u16(),
        header("www-authenticate"),
        header("content-type"),
    );
    Answer {
        status,
        challenge,
        // Error answers carry no content type of their own on either side (404, 405).
        content_type: content_type.filter(|_| status != 404 && status != 405),
        body: res.text().await.expect("body"),
    }
}

#[tokio::test]
async fn answers_are_the_same_as_auth_demo() {
    let state = StateDir::new("auth-demo-actix-parity");
    // The first start creates the development key; the second server and `token` reuse it.
    let axum = start(AXUM_BIN, &state.0, Some("serve"));
    let actix = start(BIN, &state.0, Some("serve"));
    let admin = axum.token.clone();
    let reader = mint(&state.0, "bob", "read");
    let tampered = format!("{}x", mint(&state.0, "carol", "read admin"));
    let bearer = |t: &str| format!("Bearer {t}");
    let (get, post, head) = (Method::GET, Method::POST, Method::HEAD);

    let cases: Vec<(&Method, &str, Vec<String>)> = vec![
        (&get, "/healthz", vec![]),
        (&get, "/healthz", vec![bearer("abc.def.ghi")]),
        (&get, "/.well-known/jwks.json", vec![]),
        (&get, "/.well-known/openid-configuration", vec![]),
        (&get, "/whoami", vec![]),
        (&get, "/whoami", vec!["Basic YTpi".into()]),
        (&get, "/whoami", vec![bearer(&admin)]),
        (&get, "/whoami", vec![bearer(&actix.token)]),
        (&get, "/whoami", vec![bearer(&reader)]),
        (&get, "/whoami", vec![bearer(&reader), bearer(&reader)]),
        (&get, "/whoami", vec!["Bearer".into()]),
        (&get, "/whoami", vec!["Bearer a,b".into()]),
        (&get, "/whoami", vec![bearer("abc.def.ghi")]),
        (&get, "/whoami", vec![bearer(&tampered)]),
        (&get, "/admin", vec![]),
        (&get, "/admin", vec![bearer(&reader)]),
        (&get, "/admin", vec![bearer(&admin)]),
        (&get, "/admin", vec![bearer("abc.def.ghi")]),
        (&post, "/whoami", vec![]),
        (&post, "/admin", vec![bearer(&reader)]),
        (&head, "/whoami", vec![bearer(&reader)]),
        (&head, "/healthz", vec![]),
        (&get, "/nope", vec![]),
        (&get, "/nope", vec![bearer(&reader)]),
        (&get, "/nope", vec![bearer("abc.def.ghi")]),
        (&post, "/nope", vec![]),
    ];
    let client = reqwest::Client::new();
    for (method, path, authorization) in &cases {
        let expected = answer(
            &client,
            method,
            &format!("{}{path}", axum.base),
            authorization,
        )
        .await;
        let got = answer(
            &client,
            method,
            &format!("{}{path}", actix.base),
            authorization,
        )
        .await;
        assert_eq!(
            got,
            expected,
            "{method} {path} with {} Authorization header(s)",
            authorization.len()
        );
    }
}

#[test]
fn mismatched_external_issuer_flags_are_refused_with_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "--listen",
            LISTEN,
            "--jwks-url",
            "https://a.example/jwks",
            "--jwks-url",
            "https://b.example/jwks",
            "--issuer",
            "https://a.example",
        ])
        .output()
        .expect("run auth-demo-actix");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 --jwks-url but 1 --issuer"), "{err}");
}

#[test]
fn token_subcommand_mints_tokens_for_the_same_issuer() {
    let state = StateDir::new("auth-demo-actix-token");
    let out = Command::new(BIN)
        .args(["token", "--sub", "dave", "--listen", LISTEN])
        .arg("--state-dir")
        .arg(&state.0)
        .output()
        .expect("run auth-demo-actix token");
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(token.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3, "a compact JWS");
    // The same key as `auth-demo token` uses from then on.
    let again = mint(&state.0, "dave", "read");
    assert_eq!(
        token.split('.').next(),
        again.split('.').next(),
        "same header (same key id)"
    );
}

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
    let demo = start_demo("e2e");
    let (banner, curl, token, base) = (&demo.banner, &demo.curl, demo.token.as_str(), &demo.base);
    let (state, listen) = (&demo.state, LISTEN);
    assert!(
        banner.starts_with("auth-demo is listening on http://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        curl.starts_with("curl -s -H 'Authorization: Bearer "),
        "{curl}"
    );
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
    assert_eq!(whoami["issuer"], format!("http://{listen}"));

    let admin = client
        .get(format!("{base}/admin"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 200);

    let reader = mint(state, listen, "bob", "read");
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

/// A running `auth-demo serve` on a free port, killed (and its state removed) on drop.
struct Demo {
    _guard: Kill,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// The token of the printed `curl` line (alice, scopes `read admin`).
    token: String,
    /// The state directory (the development issuer's key).
    state: std::path::PathBuf,
    /// The first printed line.
    banner: String,
    /// The second printed line.
    curl: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// The key store of a test's `serve`: a SQLite file in its state directory.
fn database_url(state: &std::path::Path) -> String {
    format!("sqlite://{}/auth.db", state.display())
}

/// Runs `auth-demo keys ...` against `state`'s key store; returns stdout.
fn keys(state: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .arg("--database-url")
        .arg(database_url(state))
        .output()
        .expect("run auth-demo keys");
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The listen address given to `serve`: port 0, so the OS picks one; the printed lines name
/// the real address, while the issuer stays `http://127.0.0.1:0`.
const LISTEN: &str = "127.0.0.1:0";

fn start_demo(tag: &str) -> Demo {
    let state = std::env::temp_dir().join(format!("auth-demo-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    serve_in(state)
}

/// Stops `demo` and starts a new `serve` on the same state directory (issuer key, key store).
fn restart(mut demo: Demo) -> Demo {
    let state = std::mem::take(&mut demo.state);
    drop(demo);
    serve_in(state)
}

fn serve_in(state: std::path::PathBuf) -> Demo {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", LISTEN])
        .arg("--state-dir")
        .arg(&state)
        // Never the CI's PostgreSQL or Redis: each run its own SQLite file, limits in process.
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .arg("--database-url")
        .arg(database_url(&state))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start auth-demo");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let banner = lines.next().expect("a banner line").expect("read");
    let curl = lines.next().expect("a curl line").expect("read");
    let token = curl
        .split("Bearer ")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("token")
        .to_owned();
    let url = curl.rsplit(' ').next().expect("url").to_owned();
    Demo {
        _guard: guard,
        base: url.trim_end_matches("/whoami").to_owned(),
        token,
        state,
        banner,
        curl,
    }
}

#[tokio::test]
async fn graphql_and_grpc_share_the_port_and_the_policies() {
    use auth_examples::proto::demo_v1::demo_client::DemoClient;
    use tonic::metadata::MetadataValue;

    let demo = start_demo("all");
    let (base, admin_token, state) = (&demo.base, &demo.token, &demo.state);
    let reader = mint(state, LISTEN, "bob", "read");
    let client = reqwest::Client::new();
    let graphql = |token: Option<&str>, query: &str| {
        let mut req = client
            .post(format!("{base}/graphql"))
            .json(&serde_json::json!({ "query": query }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let res = req.send().await.expect("graphql");
            (
                res.status().as_u16(),
                res.json::<Value>().await.expect("json"),
            )
        }
    };
    // Anonymous: public fields answer, `whoami` is UNAUTHENTICATED.
    let (status, body) = graphql(None, "{ hello whoami { subject } }").await;
    assert_eq!(status, 200);
    assert!(body["data"]["hello"].is_string(), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    // A reader: `admin` is FORBIDDEN and null, `whoami` still answers.
    let (status, body) = graphql(Some(&reader), "{ whoami { subject } admin }").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["whoami"]["subject"], "bob", "{body}");
    assert!(body["data"]["admin"].is_null(), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    // An admin.
    let (_, body) = graphql(Some(admin_token), "{ admin }").await;
    assert_eq!(body["data"]["admin"], "welcome, admin", "{body}");

    // gRPC on the same port (HTTP/2 cleartext).
    let mut grpc = DemoClient::connect(base.clone())
        .await
        .expect("gRPC connect");
    let with = |token: Option<&str>| {
        let mut req = tonic::Request::new(());
        if let Some(t) = token {
            req.metadata_mut().insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {t}")).expect("ascii"),
            );
        }
        req
    };
    let anonymous = grpc.who_am_i(with(None)).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let denied = grpc.admin(with(Some(&reader))).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let challenge = denied
        .metadata()
        .get("www-authenticate")
        .expect("challenge");
    assert!(
        challenge
            .to_str()
            .expect("ascii")
            .contains("scope=\"admin\"")
    );
    let me = grpc
        .who_am_i(with(Some(&reader)))
        .await
        .expect("WhoAmI")
        .into_inner();
    assert_eq!(me.subject, "bob");
    let admin = grpc
        .admin(with(Some(admin_token)))
        .await
        .expect("Admin")
        .into_inner();
    assert_eq!(admin.subject, "alice");

    // REST is unchanged by the other two.
    let res = client
        .get(format!("{base}/whoami"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("whoami");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn api_keys_from_the_cli_are_accepted_and_revocation_takes_effect() {
    let demo = start_demo("keys");
    let client = reqwest::Client::new();
    let created: Value = serde_json::from_str(&keys(
        &demo.state,
        &[
            "create",
            "--tenant",
            "acme",
            "--name",
            "ci",
            "--scopes",
            "read admin",
            "--json",
        ],
    ))
    .expect("create prints JSON");
    let (id, key) = (
        created["id"].as_str().expect("id"),
        created["key"].as_str().expect("key"),
    );
    assert!(key.starts_with("ak_demo_"), "{key}");
    let whoami = |key: String| {
        let req = client
            .get(format!("{}/whoami", demo.base))
            .header("x-api-key", key);
        async move { req.send().await.expect("whoami") }
    };
    let me: Value = whoami(key.to_owned()).await.json().await.expect("json");
    assert_eq!(me["method"], "api_key");
    assert_eq!(me["tenant"], "acme");
    assert_eq!(me["subject"], id);
    let admin = client
        .get(format!("{}/admin", demo.base))
        .header("authorization", format!("ApiKey {key}"))
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 200);

    // list never shows secrets; show names the key.
    let list = keys(&demo.state, &["list", "--json"]);
    assert!(list.contains(id) && !list.contains(key));

    // Rotation: the successor works at once, and so does the old key during the grace period.
    let rotated: Value = serde_json::from_str(&keys(
        &demo.state,
        &["rotate", id, "--grace", "1h", "--json"],
    ))
    .expect("rotate prints JSON");
    let successor = rotated["key"].as_str().expect("key").to_owned();
    assert_eq!(whoami(successor.clone()).await.status(), 200);
    assert_eq!(whoami(key.to_owned()).await.status(), 200);

    // Revocation reaches the running server within the cache bound (5 s).
    keys(
        &demo.state,
        &["revoke", rotated["id"].as_str().expect("id")],
    );
    let started = std::time::Instant::now();
    loop {
        let res = whoami(successor.clone()).await;
        if res.status() == 401 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "revocation not seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // A key that is not ours is refused without a look-up.
    assert_eq!(whoami("ak_demo_not-a-key".into()).await.status(), 401);
}

#[tokio::test]
async fn a_sqlite_serve_keeps_its_keys_across_a_restart_and_enforces_their_limits() {
    let demo = start_demo("restart");
    let client = reqwest::Client::new();
    let created: Value = serde_json::from_str(&keys(
        &demo.state,
        &[
            "create", "--tenant", "acme", "--name", "quota", "--quota", "3/day", "--json",
        ],
    ))
    .expect("create prints JSON");
    let (id, key) = (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    );
    assert_eq!(created["quota"], "3/day");
    let call = |base: String| {
        let req = client
            .get(format!("{base}/whoami"))
            .header("x-api-key", key.clone());
        async move { req.send().await.expect("whoami") }
    };
    let first = call(demo.base.clone()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .split(';')
            .nth(1),
        Some("r=2"),
        "two requests left today"
    );
    let demo = restart(demo);
    // The key survived the restart (the quota is counted in process: a fresh count).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(demo.base.clone()).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let refused = call(demo.base.clone()).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        refused.headers()["ratelimit-policy"]
            .to_str()
            .expect("ascii")
            .starts_with("\"key-day\";q=3")
    );
    // `keys show` tells the limits; the record is intact.
    let shown: Value = serde_json::from_str(&keys(&demo.state, &["show", &id])).expect("json");
    assert_eq!(
        (shown["quota"].as_str(), shown["status"].as_str()),
        (Some("3/day"), Some("active"))
    );
}

//! End-to-end signing-key rotation of the embedded issuer: two `auth-demo serve` on one state
//! directory (one key store), both rotating every 2 s, while tokens minted by `auth-demo token`
//! and by an in-process issuer on the same store are sent to both for 8 s: no valid token is
//! refused, and the JWKS shows the keys change.

use auth_core::rotation::RotationPolicy;
use auth_examples::dev_issuer::{DevIssuer, StoreLocation};
use base64::Engine as _;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_auth-demo");
const LISTEN: &str = "127.0.0.1:0";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn database_url(state: &Path) -> String {
    format!("sqlite://{}/auth.db", state.display())
}

/// Starts `serve` rotating every 2 s on `state`; returns its base URL.
fn serve(state: &Path) -> (Kill, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", LISTEN])
        .args(["--rotate-keys-every", "2s", "--max-token-ttl", "30s"])
        .arg("--state-dir")
        .arg(state)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("AUTH_DEMO_ROTATE_KEYS_EVERY")
        .env_remove("AUTH_DEMO_MAX_TOKEN_TTL")
        .arg("--database-url")
        .arg(database_url(state))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start auth-demo");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Kill(child);
    let curl = BufReader::new(stdout)
        .lines()
        .nth(1)
        .expect("a curl line")
        .expect("read");
    let url = curl.rsplit(' ').next().expect("url");
    (guard, url.trim_end_matches("/whoami").to_owned())
}

/// `auth-demo token` on `state`'s key store.
fn mint(state: &Path) -> String {
    let out = Command::new(BIN)
        .args(["token", "--sub", "cli", "--ttl", "30s", "--listen", LISTEN])
        .arg("--state-dir")
        .arg(state)
        .env_remove("AUTH_DEMO_ISSUER_STORE")
        .output()
        .expect("run auth-demo token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    v["kid"].as_str().expect("kid").to_owned()
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_rotating_every_two_seconds_refuse_no_valid_token() {
    let dir = Dir(std::env::temp_dir().join(format!("auth-demo-rotation-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let state = dir.0.clone();
    let (_a, base_a) = serve(&state);
    let (_b, base_b) = serve(&state);
    let bases = [base_a, base_b];

    // An in-process issuer on the same store, as a third process would be.
    let store = StoreLocation::for_token(Some(&database_url(&state)), None, &state)
        .open()
        .await
        .expect("store");
    let local = Arc::new(
        DevIssuer::open(
            store,
            &state,
            format!("http://{LISTEN}"),
            RotationPolicy::never(),
        )
        .await
        .expect("issuer"),
    );
    local.spawn(Duration::from_millis(200));

    let client = reqwest::Client::new();
    let (mut ok, mut refused) = (0u32, Vec::new());
    let (mut signing_kids, mut published_kids) = (BTreeSet::new(), BTreeSet::new());
    let started = Instant::now();
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(8) {
        round += 1;
        // A token from the CLI every few rounds (a process start each), in-process otherwise.
        let token = if round % 4 == 1 {
            let state = state.clone();
            tokio::task::spawn_blocking(move || mint(&state))
                .await
                .expect("mint")
        } else {
            local
                .mint("local", "read", Duration::from_secs(30))
                .expect("mint")
        };
        signing_kids.insert(kid(&token));
        for base in &bases {
            let resp = client
                .get(format!("{base}/whoami"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("whoami");
            if resp.status() == 200 {
                ok += 1;
            } else {
                refused.push((base.clone(), resp.status(), kid(&token)));
            }
            let jwks: serde_json::Value = client
                .get(format!("{base}/.well-known/jwks.json"))
                .send()
                .await
                .expect("jwks")
                .json()
                .await
                .expect("json");
            for k in jwks["keys"].as_array().expect("keys") {
                assert!(k.get("d").is_none(), "no private key published");
                published_kids.insert(k["kid"].as_str().expect("kid").to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{ok} accepted, {} refused, signing keys {}, published keys {}",
        refused.len(),
        signing_kids.len(),
        published_kids.len()
    );
    assert!(refused.is_empty(), "valid tokens refused: {refused:?}");
    assert!(ok >= 40, "{ok} requests accepted");
    assert!(
        signing_kids.len() >= 3,
        "at least two rotations: signing keys {signing_kids:?}"
    );
    assert!(
        published_kids.len() >= 3,
        "the JWKS changed over time: {published_kids:?}"
    );
}

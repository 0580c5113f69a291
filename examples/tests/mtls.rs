//! End-to-end mTLS through `auth-demo serve --tls-cert --tls-key --client-ca --crl`: the
//! development PKI of `auth-demo certs init`, client certificates from it accepted with their
//! SPIFFE ID, certificates from another CA, expired or revoked refused, tokens bound to one
//! certificate refused with another, and a CA rotation picked up without a restart while
//! requests keep flowing.

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, Issuer,
    KeyIdMethod, KeyPair, RevokedCertParams, SanType, SerialNumber,
};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_auth-demo");

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn demo(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run auth-demo");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A client certificate signed by the CA in `dir`, valid in `[from, until]` (Unix seconds),
/// with `serial`; returns (cert PEM, key PEM).
fn custom_client(dir: &Path, serial: u64, from: i64, until: i64) -> (String, String) {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca-key.pem")).expect("key"))
        .expect("CA key");
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).expect("ca"),
        ca_key,
    )
    .expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "custom");
    p.subject_alt_names.push(SanType::URI(
        "spiffe://demo.local/service/custom"
            .try_into()
            .expect("uri"),
    ));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = time::OffsetDateTime::from_unix_timestamp(from).expect("time");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(until).expect("time");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// A CRL of the CA in `dir` revoking `serial`.
fn crl(dir: &Path, serial: u64) -> String {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca-key.pem")).expect("key"))
        .expect("CA key");
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).expect("ca"),
        ca_key,
    )
    .expect("CA");
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::from_secs(60),
        next_update: now + Duration::from_secs(86_400),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(serial),
            revocation_time: now - Duration::from_secs(60),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&issuer).expect("CRL").pem().expect("PEM")
}

fn client(ca: &Path, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca).expect("ca")).expect("ca cert"),
        )
        .timeout(Duration::from_secs(5));
    if let Some((cert, key)) = identity {
        b = b.identity(
            reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
        );
    }
    b.build().expect("client")
}

fn pem_pair(dir: &Path, stem: &str) -> (String, String) {
    let read = |f: String| std::fs::read_to_string(dir.join(f)).expect("pem");
    (read(format!("{stem}.pem")), read(format!("{stem}-key.pem")))
}

async fn status(client: &reqwest::Client, base: &str, token: Option<&str>) -> Option<u16> {
    let mut req = client.get(format!("{base}/whoami"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_identity_refusals_bound_tokens_and_ca_rotation() {
    let root: PathBuf = std::env::temp_dir().join(format!("auth-demo-mtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (pki, other, next, state) = (
        root.join("pki"),
        root.join("other"),
        root.join("next"),
        root.join("state"),
    );
    for dir in [&pki, &other, &next] {
        demo(&["certs", "init", "--dir", path(dir)]);
    }
    // The bundle the server trusts, replaced later by the next CA. It sits next to the dev
    // PKI's client certificates, so the banner prints a `curl --cert` line for them.
    let bundle = pki.join("client-ca.pem");
    std::fs::copy(pki.join("ca.pem"), &bundle).expect("bundle");
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("time");
    let revoked = custom_client(&pki, 4242, now - 60, now + 86_400);
    let expired = custom_client(&pki, 4343, now - 7200, now - 3600);
    let crl_file = root.join("crl.pem");
    std::fs::write(&crl_file, crl(&pki, 4242)).expect("crl");

    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            path(&state),
        ])
        .args([
            "--database-url",
            &format!("sqlite://{}/auth.db", state.display()),
        ])
        .args(["--tls-cert", path(&pki.join("server.pem"))])
        .args(["--tls-key", path(&pki.join("server-key.pem"))])
        .args(["--client-ca", path(&bundle), "--crl", path(&crl_file)])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start auth-demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut serve = Serve {
        child,
        base: String::new(),
    };
    // Read the banner on a thread, so that a missing line fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok).take(3) {
            let _ = tx.send(line);
        }
    });
    let lines: Vec<String> = (0..3)
        .map(|i| {
            rx.recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("banner line {i} never came"))
        })
        .collect();
    assert!(lines[0].contains("https://"), "{lines:?}");
    assert!(
        lines[2].contains("--cert") && lines[2].contains("client-alpha.pem"),
        "the printed curl --cert line: {lines:?}"
    );
    serve.base = lines[2]
        .rsplit(' ')
        .next()
        .expect("url")
        .trim_end_matches("/whoami")
        .to_owned();
    let base = serve.base.clone();
    let ca = pki.join("ca.pem");

    // A client certificate from the development CA: 200 with its SPIFFE ID.
    let (alpha_cert, alpha_key) = pem_pair(&pki, "client-alpha");
    let alpha = client(&ca, Some((&alpha_cert, &alpha_key)));
    let me: Value = alpha
        .get(format!("{base}/whoami"))
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(me["method"], "mtls");
    assert_eq!(me["spiffe_id"], "spiffe://demo.local/service/alpha");
    assert_eq!(me["tenant"], "demo.local");

    // Another CA's certificate, an expired one and a revoked one: the handshake fails.
    let (foreign_cert, foreign_key) = pem_pair(&other, "client-alpha");
    for (name, (cert, key)) in [
        ("foreign", (foreign_cert.as_str(), foreign_key.as_str())),
        ("expired", (expired.0.as_str(), expired.1.as_str())),
        ("revoked", (revoked.0.as_str(), revoked.1.as_str())),
    ] {
        let refused = client(&ca, Some((cert, key)));
        assert_eq!(status(&refused, &base, None).await, None, "{name} accepted");
    }

    // A token bound to alpha's certificate: refused with beta's, accepted with alpha's.
    let token = demo(&[
        "token",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        path(&state),
        "--bind-cert",
        path(&pki.join("client-alpha.pem")),
    ]);
    let token = token.trim();
    let (beta_cert, beta_key) = pem_pair(&pki, "client-beta");
    let beta = client(&ca, Some((&beta_cert, &beta_key)));
    assert_eq!(status(&beta, &base, Some(token)).await, Some(401));
    assert_eq!(status(&alpha, &base, Some(token)).await, Some(200));
    // Without a client certificate (optional by default), a plain token still works.
    let anonymous_tls = client(&ca, None);
    let plain = demo(&[
        "token",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        path(&state),
    ]);
    assert_eq!(
        status(&anonymous_tls, &base, Some(plain.trim())).await,
        Some(200)
    );

    // CA rotation: requests keep flowing on a connected client while the bundle file is
    // replaced (atomic rename) by one holding only the next CA.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flowing = {
        let (stop, client, base, plain) = (
            stop.clone(),
            anonymous_tls.clone(),
            base.clone(),
            plain.trim().to_owned(),
        );
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match status(&client, &base, Some(&plain)).await {
                    Some(200) => ok += 1,
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let staged = pki.join("client-ca.pem.new");
    std::fs::copy(next.join("ca.pem"), &staged).expect("stage");
    std::fs::rename(&staged, &bundle).expect("rename");
    let (next_cert, next_key) = pem_pair(&next, "client-alpha");
    let started = Instant::now();
    loop {
        // A new client each time: a new handshake under the current trust.
        let fresh = client(&ca, Some((&next_cert, &next_key)));
        if status(&fresh, &base, None).await == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the new CA was not trusted within 8 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The removed CA's certificates are refused on new connections.
    let old = client(&ca, Some((&alpha_cert, &alpha_key)));
    assert_eq!(
        status(&old, &base, None).await,
        None,
        "the old CA is still trusted"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = flowing.await.expect("flowing task");
    assert!(ok > 5, "requests kept flowing: {ok}");
    assert_eq!(failed, 0, "no request failed during the rotation");

    drop(serve);
    let _ = std::fs::remove_dir_all(&root);
}

//! `auth-demo certs`: a development PKI for mutual TLS, made with rcgen.
//!
//! `certs init` writes a CA (`ca.pem`, `ca-key.pem`), a server certificate for `localhost` and
//! `127.0.0.1` (`server.pem`, `server-key.pem`) and two client certificates with the SPIFFE IDs
//! `spiffe://demo.local/service/alpha` and `.../beta` (`client-alpha.pem`,
//! `client-alpha-key.pem`, `client-beta.pem`, `client-beta-key.pem`). `certs issue` signs
//! another client certificate with that CA. Keys are ECDSA P-256, written with mode 0600 on
//! Unix. Development only: the CA key sits next to its certificate.

use crate::cli::Error;
use clap::Subcommand;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// Where `certs` writes by default.
pub const DEFAULT_DIR: &str = ".auth-demo/certs";

/// The trust domain of the demo's SPIFFE IDs.
pub const TRUST_DOMAIN: &str = "demo.local";

/// `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a development CA, a server certificate and two client certificates.
    Init {
        /// The directory to write to (created when missing).
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Replace an existing CA (every certificate it signed stops being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate with a SPIFFE ID, signed by the CA of `init`.
    Issue {
        /// The SPIFFE ID (`spiffe://TRUST-DOMAIN/PATH`).
        #[arg(long)]
        spiffe_id: String,
        /// Validity in days.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=825))]
        days: u32,
        /// The CA's directory; the certificate is written there too.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The file name stem (`client-NAME.pem`); by default the SPIFFE ID's last segment.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Runs one `certs` subcommand; returns what to print.
///
/// # Errors
///
/// When a file cannot be written or read, the CA is missing (`issue`) or exists (`init`
/// without `--force`), or a SPIFFE ID is malformed.
pub fn run(command: CertsCommand) -> Result<String, Error> {
    match command {
        CertsCommand::Init { dir, force } => init(&dir, force),
        CertsCommand::Issue {
            spiffe_id,
            days,
            dir,
            name,
        } => {
            let name = match name {
                Some(n) => n,
                None => spiffe_id
                    .rsplit('/')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("client")
                    .to_owned(),
            };
            let issuer = load_ca(&dir)?;
            let (cert, key) = client(&issuer, &spiffe_id, &name, days)?;
            let files = write_pair(&dir, &format!("client-{name}"), &cert, &key)?;
            Ok(format!("issued {spiffe_id} for {days} days: {files}"))
        }
    }
}

/// From five minutes ago (absorbing clock skew between machines) to `days` from now.
fn validity(days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (
        now - Duration::from_secs(300),
        now + Duration::from_secs(u64::from(days) * 86_400),
    )
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "auth-demo");
    dn.push(DnType::CommonName, cn);
    dn
}

fn init(dir: &Path, force: bool) -> Result<String, Error> {
    if dir.join("ca.pem").exists() && !force {
        return Err(format!(
            "{} already holds a CA; use --force to replace it (its certificates stop being trusted)",
            dir.display()
        )
        .into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    // Each CA gets its own name: CRLs are matched to their CA by name, so two CAs of the same
    // name (an old and a new one during a rotation) would claim each other's CRLs.
    let mut tag = [0u8; 4];
    aws_lc_rs::rand::fill(&mut tag).map_err(|_| "no randomness for the CA name")?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    ca.distinguished_name = dn(&format!("auth-demo development CA {tag}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (ca.not_before, ca.not_after) = validity(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut written = vec![write_pair(
        dir,
        "ca",
        &ca_cert.pem(),
        &ca_key.serialize_pem(),
    )?];
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server.distinguished_name = dn("localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    (server.not_before, server.not_after) = validity(90);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    written.push(write_pair(
        dir,
        "server",
        &server_cert.pem(),
        &server_key.serialize_pem(),
    )?);

    for name in ["alpha", "beta"] {
        let spiffe = format!("spiffe://{TRUST_DOMAIN}/service/{name}");
        let (cert, key) = client(&issuer, &spiffe, name, 30)?;
        written.push(write_pair(dir, &format!("client-{name}"), &cert, &key)?);
    }
    Ok(format!(
        "wrote a development PKI to {}:\n  {}",
        dir.display(),
        written.join("\n  ")
    ))
}

/// A client certificate (`clientAuth`) for `spiffe_id`; returns the PEM of it and its key.
fn client(
    issuer: &Issuer<'_, KeyPair>,
    spiffe_id: &str,
    name: &str,
    days: u32,
) -> Result<(String, String), Error> {
    let valid_id = spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(domain, path)| {
            !domain.is_empty()
                && !path.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
                && !path.contains(['?', '#'])
        });
    if !valid_id {
        return Err(format!(
            "`{spiffe_id}` is not a SPIFFE ID (spiffe://TRUST-DOMAIN/PATH, lower-case domain)"
        )
        .into());
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(name);
    params
        .subject_alt_names
        .push(SanType::URI(spiffe_id.try_into()?));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    (params.not_before, params.not_after) = validity(days);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA written by `init` in `dir`.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, Error> {
    let read = |f: &str| {
        let path = dir.join(f);
        std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (run `auth-demo certs init --dir {}` first)",
                path.display(),
                dir.display()
            )
        })
    };
    let key = KeyPair::from_pem(&read("ca-key.pem")?)?;
    Ok(Issuer::from_ca_cert_pem(&read("ca.pem")?, key)?)
}

/// Writes `STEM.pem` and `STEM-key.pem` (the key readable by its owner only); returns their
/// names.
fn write_pair(dir: &Path, stem: &str, cert: &str, key: &str) -> Result<String, Error> {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&cert_path, cert).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    write_secret(&key_path, key)?;
    Ok(format!("{}, {}", cert_path.display(), key_path.display()))
}

fn write_secret(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_issue_and_refuse_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("auth-demo-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = run(CertsCommand::Init {
            dir: dir.clone(),
            force: false,
        })
        .unwrap();
        for f in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "client-alpha.pem",
            "client-alpha-key.pem",
            "client-beta.pem",
            "client-beta-key.pem",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing: {out}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("ca-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "keys are private");
        }
        let again = run(CertsCommand::Init {
            dir: dir.clone(),
            force: false,
        });
        assert!(again.unwrap_err().to_string().contains("--force"));
        let issued = run(CertsCommand::Issue {
            spiffe_id: "spiffe://demo.local/service/gamma".into(),
            days: 1,
            dir: dir.clone(),
            name: None,
        })
        .unwrap();
        assert!(issued.contains("client-gamma.pem"), "{issued}");
        assert!(dir.join("client-gamma-key.pem").is_file());
        for bad in [
            "https://x/y",
            "spiffe://Demo.local/x",
            "spiffe://demo.local",
            "spiffe://d/x?q",
        ] {
            let r = run(CertsCommand::Issue {
                spiffe_id: bad.into(),
                days: 1,
                dir: dir.clone(),
                name: Some("bad".into()),
            });
            assert!(r.is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

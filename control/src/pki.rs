//! The cluster's credentials: a CA created on first start, a serving certificate re-issued on
//! every start (so new addresses are covered), bearer tokens for the admin and for joining
//! nodes, and the admin kubeconfig.
//!
//! Files under the data dir: `pki/ca.crt`, `pki/ca.key`, `pki/apiserver.crt`,
//! `pki/apiserver.key`, `pki/apiserver-kubelet-client.crt`, `pki/apiserver-kubelet-client.key`,
//! `admin-token`, `node-token`, `admin.kubeconfig` (secrets 0600).
//!
//! The kubelet client certificate is what the API server presents to node daemons (logs, exec,
//! port-forward, stats): signed by the cluster CA, subject CN [`KUBELET_CLIENT_CN`], extended
//! key usage clientAuth, valid for a year and re-issued when it is no longer valid a month
//! ahead, or no longer chains to the CA, or no longer matches its key.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate {what}: {source}")]
    Cert {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("invalid subject alternative name {0:?}")]
    BadSan(String),
    #[error("{what}: {message}")]
    Tls { what: &'static str, message: String },
}

/// What the server needs to serve TLS and check tokens.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub admin_token: String,
    pub node_token: String,
    /// The client certificate the API server presents to node daemons (PEM).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

const CA_COMMON_NAME: &str = "skiff-ca";

/// The subject CN node daemons require of the API server's client certificate.
pub const KUBELET_CLIENT_CN: &str = "skiff-apiserver-kubelet-client";
/// How long a kubelet client certificate is issued for.
const KUBELET_CLIENT_VALIDITY_DAYS: i64 = 365;
/// A kubelet client certificate that expires within this many days is re-issued at start.
const KUBELET_CLIENT_RENEW_DAYS: i64 = 30;

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PkiError + 'a {
    move |source| PkiError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Cert { what, source }
}

/// Writes `contents` to `path` with mode 0600, replacing it atomically.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io_err("write", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io_err("chmod", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename", path))
}

fn read_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<String, PkiError>,
) -> Result<String, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = create()?;
            write_secret_file(path, &value)?;
            Ok(value)
        }
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// A random bearer token: 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("ca params"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "skiff");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// Loads the cluster credentials from `data_dir`, creating what is missing, and issues a fresh
/// serving certificate for `sans` (DNS names or IP addresses).
pub fn load_or_create(data_dir: &Path, sans: &[String]) -> Result<ClusterPki, PkiError> {
    let pki_dir = data_dir.join("pki");
    fs::create_dir_all(&pki_dir).map_err(io_err("create", &pki_dir))?;
    fs::set_permissions(&pki_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("chmod", &pki_dir))?;

    let ca_key_path = pki_dir.join("ca.key");
    let ca_cert_path = pki_dir.join("ca.crt");
    let ca_key_pem = read_or_create(&ca_key_path, || {
        // A new CA key makes any old CA certificate useless.
        let _ = fs::remove_file(&ca_cert_path);
        Ok(KeyPair::generate()
            .map_err(cert_err("ca key"))?
            .serialize_pem())
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(cert_err("ca key"))?;
    let ca_pem = read_or_create(&ca_cert_path, || {
        Ok(ca_params()?
            .self_signed(&ca_key)
            .map_err(cert_err("ca"))?
            .pem())
    })?;
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(cert_err("serving params"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    for san in sans {
        let entry = match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                san.clone()
                    .try_into()
                    .map_err(|_| PkiError::BadSan(san.clone()))?,
            ),
        };
        if !params.subject_alt_names.contains(&entry) {
            params.subject_alt_names.push(entry);
        }
    }
    let key = KeyPair::generate().map_err(cert_err("serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(cert_err("serving certificate"))?;
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    write_secret_file(&pki_dir.join("apiserver.crt"), &cert_pem)?;
    write_secret_file(&pki_dir.join("apiserver.key"), &key_pem)?;

    let (kubelet_client_cert_pem, kubelet_client_key_pem) =
        kubelet_client_cert(&pki_dir, &ca_pem, &issuer)?;

    let admin_token = read_or_create(&data_dir.join("admin-token"), || Ok(random_token()))?;
    let node_token = read_or_create(&data_dir.join("node-token"), || Ok(random_token()))?;
    Ok(ClusterPki {
        ca_pem,
        cert_pem,
        key_pem,
        admin_token: admin_token.trim().to_string(),
        node_token: node_token.trim().to_string(),
        kubelet_client_cert_pem,
        kubelet_client_key_pem,
    })
}

fn tls_err(what: &'static str) -> impl FnOnce(String) -> PkiError {
    move |message| PkiError::Tls { what, message }
}

/// PEM certificates as DER.
pub fn parse_certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, PkiError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(what)(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(what)("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// A PEM private key as DER.
pub fn parse_key(
    pem: &str,
    what: &'static str,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, PkiError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| tls_err(what)(e.to_string()))?
        .ok_or_else(|| tls_err(what)("no private key in PEM".into()))
}

/// Whether `cert_pem`/`key_pem` form a client certificate that chains to `ca_pem`, matches its
/// key, allows clientAuth and stays valid until `at`.
fn client_cert_usable(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    at: std::time::SystemTime,
) -> Result<(), PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in parse_certs(ca_pem, "cluster CA")? {
        roots
            .add(ca)
            .map_err(|e| tls_err("cluster CA")(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls_err("client verifier")(e.to_string()))?;
    let certs = parse_certs(cert_pem, "kubelet client certificate")?;
    let now = rustls::pki_types::UnixTime::since_unix_epoch(
        at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default(),
    );
    verifier
        .verify_client_cert(&certs[0], &certs[1..], now)
        .map_err(|e| tls_err("kubelet client certificate")(e.to_string()))?;
    let key = provider
        .key_provider
        .load_private_key(parse_key(key_pem, "kubelet client key")?)
        .map_err(|e| tls_err("kubelet client key")(e.to_string()))?;
    rustls::sign::CertifiedKey::new(certs, key)
        .keys_match()
        .map_err(|e| tls_err("kubelet client key")(e.to_string()))
}

/// The date `days` from today (UTC): year, month, day.
fn date_from_today(days: i64) -> (i32, u8, u8) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let date = today
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(today);
    (
        i32::from(date.year()),
        date.month().unsigned_abs(),
        date.day().unsigned_abs(),
    )
}

/// Loads `pki/apiserver-kubelet-client.{crt,key}`, issuing a new pair when they are missing or
/// no longer usable for another [`KUBELET_CLIENT_RENEW_DAYS`] days.
fn kubelet_client_cert(
    pki_dir: &Path,
    ca_pem: &str,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), PkiError> {
    let cert_path = pki_dir.join("apiserver-kubelet-client.crt");
    let key_path = pki_dir.join("apiserver-kubelet-client.key");
    let existing = match (
        fs::read_to_string(&cert_path),
        fs::read_to_string(&key_path),
    ) {
        (Ok(cert), Ok(key)) => Some((cert, key)),
        (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
        (Err(e), _) => return Err(io_err("read", &cert_path)(e)),
        (_, Err(e)) => return Err(io_err("read", &key_path)(e)),
    };
    if let Some((cert, key)) = existing {
        let renew_at = std::time::SystemTime::now()
            + std::time::Duration::from_secs(KUBELET_CLIENT_RENEW_DAYS.unsigned_abs() * 86_400);
        match client_cert_usable(ca_pem, &cert, &key, renew_at) {
            Ok(()) => return Ok((cert, key)),
            Err(e) => tracing::info!(error = %e, "re-issuing the kubelet client certificate"),
        }
    }
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(cert_err("kubelet client params"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, KUBELET_CLIENT_CN);
    dn.push(DnType::OrganizationName, "skiff");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let (y, m, d) = date_from_today(-1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = date_from_today(KUBELET_CLIENT_VALIDITY_DAYS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = KeyPair::generate().map_err(cert_err("kubelet client key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_err("kubelet client certificate"))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    write_secret_file(&key_path, &key_pem)?;
    write_secret_file(&cert_path, &cert_pem)?;
    Ok((cert_pem, key_pem))
}

/// A kubeconfig for `user` with a bearer token, trusting the cluster CA.
pub fn kubeconfig(server_url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n"
    )
}

/// The names a serving certificate must carry: loopback, the service IP, the in-cluster names,
/// the host's name and the address the server listens on (unless it is a wildcard).
pub fn default_sans(
    listen: IpAddr,
    extra: &[String],
    kubernetes_service_ip: IpAddr,
) -> Vec<String> {
    let mut sans: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!(
            "kubernetes.default.svc.{}",
            skiff_api::constants::CLUSTER_DOMAIN
        ),
        kubernetes_service_ip.to_string(),
    ];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            sans.push(host.to_string());
        }
    }
    if !listen.is_unspecified() {
        sans.push(listen.to_string());
    } else {
        sans.extend(local_addresses().into_iter().map(|ip| ip.to_string()));
    }
    sans.extend(extra.iter().cloned());
    sans.dedup();
    sans
}

/// The host's IPv4 addresses, read from the kernel's view of its routes (no extra crate, no
/// netlink: this runs once at start).
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(text) = fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut last_ip: Option<IpAddr> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-', '`']);
        if let Some(ip) = t
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<IpAddr>().ok())
        {
            last_ip = Some(ip);
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last_ip {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reissues_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &["127.0.0.1".into(), "localhost".into()]).unwrap();
        let second = load_or_create(dir.path(), &["127.0.0.1".into(), "node-a".into()]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem, "CA must persist");
        assert_eq!(first.admin_token, second.admin_token);
        assert_eq!(first.node_token, second.node_token);
        assert_ne!(first.cert_pem, second.cert_pem, "serving cert is re-issued");
        assert_eq!(
            first.kubelet_client_cert_pem, second.kubelet_client_cert_pem,
            "a valid kubelet client certificate is reused"
        );
        assert_eq!(first.kubelet_client_key_pem, second.kubelet_client_key_pem);
        let mode = fs::metadata(dir.path().join("pki/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn kubelet_client_cert_chains_to_ca_and_is_renewed_when_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        client_cert_usable(
            &first.ca_pem,
            &first.kubelet_client_cert_pem,
            &first.kubelet_client_key_pem,
            std::time::SystemTime::now(),
        )
        .unwrap();
        // Not valid two years ahead: it is issued for one.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2 * 365 * 86_400);
        assert!(client_cert_usable(
            &first.ca_pem,
            &first.kubelet_client_cert_pem,
            &first.kubelet_client_key_pem,
            later
        )
        .is_err());
        // A certificate that does not match its key is replaced.
        let cert_path = dir.path().join("pki/apiserver-kubelet-client.crt");
        fs::write(&cert_path, &first.cert_pem).unwrap();
        let second = load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        assert_ne!(second.kubelet_client_cert_pem, first.cert_pem);
        assert_ne!(
            second.kubelet_client_key_pem, first.kubelet_client_key_pem,
            "a new key comes with the new certificate"
        );
        client_cert_usable(
            &second.ca_pem,
            &second.kubelet_client_cert_pem,
            &second.kubelet_client_key_pem,
            std::time::SystemTime::now(),
        )
        .unwrap();
        let mode = fs::metadata(dir.path().join("pki/apiserver-kubelet-client.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn kubeconfig_names_server_and_token() {
        let k = kubeconfig("https://127.0.0.1:6443", "PEM", "admin", "tok");
        assert!(k.contains("server: https://127.0.0.1:6443"));
        assert!(k.contains("token: tok"));
        assert!(k.contains("current-context: skiff"));
    }
}

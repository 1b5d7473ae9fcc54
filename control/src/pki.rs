//! The cluster's credentials: a CA created on first start, a serving certificate re-issued on
//! every start (so new addresses are covered), bearer tokens for the admin and for joining
//! nodes, and the admin kubeconfig.
//!
//! Files under the data dir: `pki/ca.crt`, `pki/ca.key`, `pki/apiserver.crt`,
//! `pki/apiserver.key`, `admin-token`, `node-token`, `admin.kubeconfig` (secrets 0600).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
}

/// What the server needs to serve TLS and check tokens.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub admin_token: String,
    pub node_token: String,
}

const CA_COMMON_NAME: &str = "skiff-ca";

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

    let admin_token = read_or_create(&data_dir.join("admin-token"), || Ok(random_token()))?;
    let node_token = read_or_create(&data_dir.join("node-token"), || Ok(random_token()))?;
    Ok(ClusterPki {
        ca_pem,
        cert_pem,
        key_pem,
        admin_token: admin_token.trim().to_string(),
        node_token: node_token.trim().to_string(),
    })
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
        let mode = fs::metadata(dir.path().join("pki/ca.key"))
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

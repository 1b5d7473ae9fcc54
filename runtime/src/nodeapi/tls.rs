//! The node API's TLS: a self-signed serving certificate kept under the pki dir, and client
//! authentication that admits only the control plane.
//!
//! The serving certificate is self-signed as the kubelet's is: the control plane does not
//! verify it against the cluster CA. The client side is strict: a certificate chaining to
//! the cluster CA is required at the handshake (webpki), and its subject CN must then be
//! [`CONTROL_PLANE_CLIENT_CN`] (checked per connection, answered with 403 otherwise).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tracing::info;

use super::der::{subject_alt_names, subject_common_names, AltName};
use super::NodeApiError;

/// The subject CN of the only client certificate the node API serves.
pub const CONTROL_PLANE_CLIENT_CN: &str = "skiff-apiserver-kubelet-client";
/// The serving certificate's file name in the pki dir.
pub const SERVING_CERT_FILE: &str = "node.crt";
/// The serving key's file name in the pki dir.
pub const SERVING_KEY_FILE: &str = "node.key";

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct ServingIdentity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> NodeApiError {
    move |source| NodeApiError::Io { what, source }
}

fn tls_error(what: impl Into<String>) -> impl FnOnce(rustls::Error) -> NodeApiError {
    let what = what.into();
    move |source| NodeApiError::Tls {
        what,
        reason: source.to_string(),
    }
}

/// Loads `{pki_dir}/node.crt|node.key`, or makes a new self-signed pair when they are
/// missing, unreadable or no longer name `node_ip` and `node_name`.
pub fn ensure_serving_identity(
    pki_dir: &Path,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<ServingIdentity, NodeApiError> {
    let cert_path = pki_dir.join(SERVING_CERT_FILE);
    let key_path = pki_dir.join(SERVING_KEY_FILE);
    if let (Ok(cert_pem), Ok(key_pem)) = (
        fs::read_to_string(&cert_path),
        fs::read_to_string(&key_path),
    ) {
        match existing_covers(&cert_pem, &key_pem, node_name, node_ip) {
            Ok(()) => {
                return Ok(ServingIdentity { cert_pem, key_pem });
            }
            Err(reason) => info!(
                cert = %cert_path.display(),
                reason,
                "making a new node API serving certificate"
            ),
        }
    }
    let identity = new_serving_identity(node_name, node_ip)?;
    fs::create_dir_all(pki_dir)
        .map_err(io_error(format!("create pki dir {}", pki_dir.display())))?;
    write_private(&key_path, &identity.key_pem)?;
    write_private(&cert_path, &identity.cert_pem)?;
    Ok(identity)
}

/// Why the stored pair cannot be reused, if it cannot.
fn existing_covers(
    cert_pem: &str,
    key_pem: &str,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<(), String> {
    KeyPair::from_pem(key_pem).map_err(|err| format!("unreadable key: {err}"))?;
    let certs = parse_certs(cert_pem).map_err(|err| err.to_string())?;
    let first = certs.first().ok_or("no certificate in the file")?;
    let names = subject_alt_names(first).ok_or("unreadable certificate")?;
    if !names.contains(&AltName::Ip(node_ip)) {
        return Err(format!("does not name the node IP {node_ip}"));
    }
    if !names.contains(&AltName::Dns(node_name.to_string())) {
        return Err(format!("does not name the node {node_name}"));
    }
    Ok(())
}

fn new_serving_identity(node_name: &str, node_ip: IpAddr) -> Result<ServingIdentity, NodeApiError> {
    let cert_error = |what: &str| {
        let what = format!("{what} of the node API serving certificate for {node_name}");
        move |source: rcgen::Error| NodeApiError::Certificate { what, source }
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error("params"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::IpAddress(node_ip),
        SanType::DnsName(
            node_name
                .to_string()
                .try_into()
                .map_err(cert_error("DNS name"))?,
        ),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate().map_err(cert_error("key"))?;
    let cert = params.self_signed(&key).map_err(cert_error("signing"))?;
    Ok(ServingIdentity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a file readable by root only, atomically.
fn write_private(path: &Path, contents: &str) -> Result<(), NodeApiError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(io_error(format!("write {}", path.display())))
}

/// Every certificate in a PEM text.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, NodeApiError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error("parse PEM certificates".into()))?;
    if certs.is_empty() {
        return Err(NodeApiError::Tls {
            what: "PEM certificates".into(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, NodeApiError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(io_error("parse PEM private key".into()))?
        .ok_or_else(|| NodeApiError::Tls {
            what: "PEM private key".into(),
            reason: "no private key found".into(),
        })
}

/// The server's rustls config: `identity` as the serving pair, client certificates
/// required and verified against the CA certificates in `ca_pem`; HTTP/1.1 only (the
/// WebSocket upgrades of exec and port-forward are HTTP/1.1 upgrades).
pub fn server_config(
    identity: &ServingIdentity,
    ca_pem: &str,
) -> Result<Arc<ServerConfig>, NodeApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in parse_certs(ca_pem)? {
        roots.add(ca).map_err(tls_error("cluster CA certificate"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| NodeApiError::Tls {
            what: "client certificate verifier".into(),
            reason: err.to_string(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error("protocol versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            parse_certs(&identity.cert_pem)?,
            parse_key(&identity.key_pem)?,
        )
        .map_err(tls_error("serving certificate"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the verified peer certificate is the control plane's; `Err` says why not.
pub fn authorize_peer(peer: Option<&[CertificateDer<'_>]>) -> Result<(), String> {
    let leaf = peer
        .and_then(|chain| chain.first())
        .ok_or("no client certificate")?;
    let names = subject_common_names(leaf).ok_or("unreadable client certificate subject")?;
    if names.iter().any(|name| name == CONTROL_PLANE_CLIENT_CN) {
        Ok(())
    } else {
        Err(format!(
            "client certificate CN {names:?} is not {CONTROL_PLANE_CLIENT_CN:?}: only the control plane may use the node API"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_identity_is_reused_and_renewed_when_the_ip_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        let first = ensure_serving_identity(dir.path(), "node-a", ip).expect("first");
        let again = ensure_serving_identity(dir.path(), "node-a", ip).expect("again");
        assert_eq!(first.cert_pem, again.cert_pem);
        let moved = ensure_serving_identity(dir.path(), "node-a", "10.0.0.6".parse().expect("ip"))
            .expect("moved");
        assert_ne!(first.cert_pem, moved.cert_pem);
        let renamed =
            ensure_serving_identity(dir.path(), "node-b", "10.0.0.6".parse().expect("ip"))
                .expect("renamed");
        assert_ne!(moved.cert_pem, renamed.cert_pem);
        assert_eq!(
            fs::read_to_string(dir.path().join(SERVING_CERT_FILE)).expect("read"),
            renamed.cert_pem
        );
    }

    #[test]
    fn garbage_on_disk_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(SERVING_CERT_FILE), "junk").expect("write");
        fs::write(dir.path().join(SERVING_KEY_FILE), "junk").expect("write");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        let identity = ensure_serving_identity(dir.path(), "n", ip).expect("identity");
        assert!(identity.cert_pem.contains("BEGIN CERTIFICATE"));
    }
}

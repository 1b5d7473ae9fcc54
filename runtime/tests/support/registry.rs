//! A real `docker-registry` (Debian's package) on 127.0.0.1 for pull tests, and a pusher.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::image_support::{TestImage, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A `docker-registry` on 127.0.0.1 with its storage in a temp dir; killed on drop.
pub struct LocalRegistry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> Self {
        assert!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} is missing: apt-get install -y docker-registry"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap();
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Self {
            child,
            host,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut stream) = TcpStream::connect(&self.host) {
                let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.starts_with("HTTP/1.0 200")
                {
                    return;
                }
            }
            let log = fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "registry on {} not ready: {log}",
                self.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client() -> oci_client::Client {
        oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::Http,
            ..Default::default()
        })
    }

    /// Pushes `image`'s blobs and its manifest (bytes unchanged) as `repository:tag`.
    pub async fn push(&self, image: &TestImage, repository: &str, tag: &str) {
        let client = Self::client();
        let reference = oci_client::Reference::with_tag(
            self.host.clone(),
            repository.to_string(),
            tag.to_string(),
        );
        client
            .auth(
                &reference,
                &oci_client::secrets::RegistryAuth::Anonymous,
                oci_client::RegistryOperation::Push,
            )
            .await
            .unwrap();
        for (digest, bytes) in image
            .blobs()
            .into_iter()
            .filter(|(d, _)| *d != image.manifest_digest)
        {
            client.push_blob(&reference, bytes, &digest).await.unwrap();
        }
        client
            .push_manifest_raw(
                &reference,
                image.manifest.clone(),
                http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            )
            .await
            .unwrap();
    }

    /// Pushes an index document as `repository:tag` (its manifests must be pushed).
    pub async fn push_index(&self, index: Vec<u8>, repository: &str, tag: &str) {
        let client = Self::client();
        let reference = oci_client::Reference::with_tag(
            self.host.clone(),
            repository.to_string(),
            tag.to_string(),
        );
        client
            .auth(
                &reference,
                &oci_client::secrets::RegistryAuth::Anonymous,
                oci_client::RegistryOperation::Push,
            )
            .await
            .unwrap();
        client
            .push_manifest_raw(
                &reference,
                index,
                http::HeaderValue::from_static(INDEX_MEDIA_TYPE),
            )
            .await
            .unwrap();
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

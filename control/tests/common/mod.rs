//! A real API server on loopback for tests: in-process on a temp-dir SQLite store, or the
//! `skiff-control` binary as a child process; clients through kube-rs and raw HTTPS.
#![allow(dead_code)]

pub mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses some of them
pub use skiff_control::testing::{client_for, eventually, TestServer};

/// Raw HTTPS to a test server.
pub trait ServerHttp {
    fn http(&self) -> Http;
}

impl ServerHttp for TestServer {
    fn http(&self) -> Http {
        Http::new(
            &self.url,
            &self.api().pki.ca_pem,
            Some(&self.api().pki.admin_token),
        )
    }
}

/// Raw HTTPS requests, for status codes and bodies exactly as sent.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Http {
    pub fn new(base: &str, ca_pem: &str, token: Option<&str>) -> Http {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca pem");
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Http {
            base: base.to_string(),
            client,
            token: token.map(String::from),
        }
    }

    pub fn without_token(&self) -> Http {
        Http {
            token: None,
            ..self.clone()
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    /// Sends and returns (status, body as JSON or a JSON string of the text).
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let resp = rb.send().await.expect("request sent");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (code, body)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }
}

/// The `skiff-control` binary as a child process, killed on drop.
pub struct ServerProcess {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    pub fn start(data_dir: &Path, port: u16, extra: &[&str]) -> ServerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_skiff-control"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skiff-control");
        ServerProcess {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let plain = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("skiff-control exited early: {status}");
                }
            }
            if let Ok(r) = plain.get(format!("{}/readyz", self.url())).send().await {
                if r.status().is_success() && self.data_dir.join("admin.kubeconfig").exists() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "skiff-control not ready within 30s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

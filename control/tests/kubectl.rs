//! A stock kubectl (Debian's kubernetes-client) against skiff's API with the generated
//! kubeconfig: the client nobody here wrote keeps the API honest.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

/// Debian's kubectl: `$SKIFF_KUBECTL`, else where `.ci/setup` unpacks kubernetes-client.
fn kubectl() -> Option<PathBuf> {
    if std::env::var_os("SKIFF_SKIP_KUBECTL").is_some() {
        return None;
    }
    let path = std::env::var_os("SKIFF_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/debian-kubectl/usr/bin/kubectl"));
    assert!(
        path.exists(),
        "stock kubectl not found at {} (run .ci/setup, set SKIFF_KUBECTL, or SKIFF_SKIP_KUBECTL=1)",
        path.display()
    );
    Some(path)
}

fn run(kubectl: &Path, kubeconfig: &Path, cache: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("HOME", cache)
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.19.2-alpine
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"#;

#[tokio::test]
async fn stock_kubectl_gets_applies_and_deletes() {
    let Some(kubectl) = kubectl() else { return };
    let server = TestServer::start().await;
    let kubeconfig = server.kubeconfig();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let manifest = work.path().join("web.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let m = manifest.to_str().unwrap();
    let (kc, c) = (kubeconfig.as_path(), cache.as_path());
    let run = |args: &[&str]| {
        let kubectl = kubectl.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let kc = kc.to_path_buf();
        let c = c.to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                run(&kubectl, &kc, &c, &refs)
            })
            .await
            .unwrap()
        }
    };

    let ns = run(&["get", "ns"]).await;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(name), "{ns}");
    }
    assert!(ns.contains("Active"), "server-side table columns: {ns}");

    let applied = run(&["apply", "-f", m]).await;
    assert!(applied.contains("deployment.apps/web created"), "{applied}");
    assert!(applied.contains("service/web created"), "{applied}");
    let again = run(&["apply", "-f", m]).await;
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    std::fs::write(
        &manifest,
        MANIFEST.replace("nginx:1.19.2-alpine", "nginx:1.25-alpine"),
    )
    .unwrap();
    let changed = run(&["apply", "-f", m]).await;
    assert!(
        changed.contains("deployment.apps/web configured"),
        "{changed}"
    );

    let wide = run(&["get", "deploy,svc", "-o", "wide"]).await;
    assert!(wide.contains("deployment.apps/web"), "{wide}");
    assert!(
        wide.contains("nginx:1.25-alpine"),
        "wide columns show images: {wide}"
    );
    assert!(wide.contains("service/web"), "{wide}");
    assert!(wide.contains("NodePort"), "{wide}");

    let deleted = run(&["delete", "-f", m]).await;
    assert!(
        deleted.contains("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    assert!(deleted.contains("service \"web\" deleted"), "{deleted}");
    let after = run(&["get", "deploy", "-o", "name"]).await;
    assert!(!after.contains("web"), "{after}");
}

//! skiffctl against a real skiff-control: a user's session from namespace to cleanup.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::Server;

const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: frontend}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, labels: {app: web}}
data: {greeting: hello}
"#;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn apply_get_change_and_delete() {
    let s = Server::start();
    assert_eq!(
        s.ctl(&["create", "namespace", "shop"]).ok(),
        "namespace/shop created\n"
    );

    let app = s.file("app.yaml", APP);
    assert_eq!(
        lines(s.ctl(&["apply", "-n", "shop", "-f", &app]).ok()),
        [
            "deployment.apps/web created",
            "service/web created",
            "configmap/web-config created"
        ]
    );
    assert_eq!(
        lines(s.ctl(&["apply", "-n", "shop", "-f", &app]).ok()),
        [
            "deployment.apps/web unchanged",
            "service/web unchanged",
            "configmap/web-config unchanged"
        ]
    );

    // Change the replicas, drop a label, change the ConfigMap; the Service stays as it was.
    let changed = APP
        .replace("replicas: 2", "replicas: 3")
        .replace("labels: {app: web, tier: frontend}", "labels: {app: web}")
        .replace("greeting: hello", "greeting: bonjour");
    let app2 = s.file("app2.yaml", &changed);
    assert_eq!(
        lines(s.ctl(&["apply", "-n", "shop", "-f", &app2]).ok()),
        [
            "deployment.apps/web configured",
            "service/web unchanged",
            "configmap/web-config configured"
        ]
    );
    assert_eq!(
        s.ctl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .ok(),
        "3"
    );
    let labels = s.ctl(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(
        labels.ok(),
        r#"{"app":"web"}"#,
        "the label removed from the manifest is gone"
    );
    assert_eq!(
        s.ctl(&[
            "get",
            "cm",
            "web-config",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.greeting}"
        ])
        .ok(),
        "bonjour"
    );

    // Tables from the server, narrow and wide, several kinds at once.
    let both = s.ctl(&["get", "deploy,svc", "-n", "shop"]);
    let out = both.ok();
    assert!(out.contains("deployment.apps/web"), "{out}");
    assert!(out.contains("service/web"), "{out}");
    let header = lines(out)[0];
    assert!(
        header.starts_with("NAME") && header.contains("READY") && header.contains("UP-TO-DATE"),
        "{out}"
    );
    let wide = s.ctl(&["get", "deploy", "-n", "shop", "-o", "wide"]);
    let out = wide.ok();
    assert!(
        out.contains("CONTAINERS") && out.contains("IMAGES") && out.contains("SELECTOR"),
        "{out}"
    );
    assert!(
        out.contains("nginx:1.25") && out.contains("app=web"),
        "{out}"
    );
    let svc = s.ctl(&["get", "svc", "web", "-n", "shop"]);
    let out = svc.ok();
    assert!(
        out.contains("CLUSTER-IP") && out.contains("80/TCP"),
        "{out}"
    );
    let narrow = s.ctl(&["get", "deploy", "-n", "shop"]);
    assert!(!narrow.ok().contains("CONTAINERS"));
    let all = s.ctl(&["get", "cm", "-A"]);
    let out = all.ok();
    assert!(lines(out)[0].starts_with("NAMESPACE"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("shop") && l.contains("web-config")),
        "{out}"
    );
    let labelled = s.ctl(&[
        "get",
        "cm",
        "web-config",
        "-n",
        "shop",
        "--show-labels",
        "-L",
        "app",
    ]);
    let out = labelled.ok();
    assert!(
        lines(out)[0].ends_with("APP   LABELS") || lines(out)[0].contains("LABELS"),
        "{out}"
    );
    assert!(out.contains("app=web"), "{out}");

    // Other output formats.
    let yaml = s.ctl(&["get", "cm", "web-config", "-n", "shop", "-o", "yaml"]);
    let out = yaml.ok();
    assert!(
        out.contains("kind: ConfigMap") && out.contains("greeting: bonjour"),
        "{out}"
    );
    let json = s.ctl(&["get", "cm", "-n", "shop", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(json.ok()).expect("json list");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "ConfigMap");
    let names = s.ctl(&["get", "deploy,svc,cm", "-n", "shop", "-o", "name"]);
    let out = names.ok();
    for want in ["deployment.apps/web", "service/web", "configmap/web-config"] {
        assert!(out.lines().any(|l| l == want), "{want} in {out}");
    }
    let cc = s.ctl(&[
        "get",
        "deploy",
        "-n",
        "shop",
        "-o",
        "custom-columns=NAME:.metadata.name,IMAGE:.spec.template.spec.containers[*].image",
    ]);
    assert_eq!(lines(cc.ok()), ["NAME   IMAGE", "web    nginx:1.25"]);

    // Selectors.
    assert_eq!(
        s.ctl(&["get", "cm", "-n", "shop", "-l", "app=web", "-o", "name"])
            .ok(),
        "configmap/web-config\n"
    );
    let none = s.ctl(&["get", "cm", "-n", "shop", "-l", "app=nope"]);
    none.ok();
    assert_eq!(none.stderr, "No resources found in shop namespace.\n");
    let fsel = s.ctl(&[
        "get",
        "cm",
        "-n",
        "shop",
        "--field-selector",
        "metadata.name=web-config",
        "-o",
        "name",
    ]);
    assert_eq!(fsel.ok(), "configmap/web-config\n");

    // Labels and annotations.
    assert_eq!(
        s.ctl(&["label", "cm", "web-config", "tier=cache", "-n", "shop"])
            .ok(),
        "configmap/web-config labeled\n"
    );
    let refused = s.ctl(&["label", "cm", "web-config", "tier=db", "-n", "shop"]);
    assert_eq!(
        refused.fails(),
        "error: 'tier' already has a value (cache), and --overwrite is false\n"
    );
    assert_eq!(
        s.ctl(&[
            "label",
            "cm",
            "web-config",
            "tier=db",
            "--overwrite",
            "-n",
            "shop"
        ])
        .ok(),
        "configmap/web-config labeled\n"
    );
    assert_eq!(
        s.ctl(&["get", "cm", "-n", "shop", "-l", "tier=db", "-o", "name"])
            .ok(),
        "configmap/web-config\n"
    );
    assert_eq!(
        s.ctl(&["label", "configmap/web-config", "tier-", "-n", "shop"])
            .ok(),
        "configmap/web-config unlabeled\n"
    );
    assert_eq!(
        s.ctl(&[
            "annotate",
            "deploy",
            "web",
            "note=hello world",
            "-n",
            "shop"
        ])
        .ok(),
        "deployment.apps/web annotated\n"
    );
    assert_eq!(
        s.ctl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ])
        .ok(),
        "hello world"
    );

    // Scale and patch.
    assert_eq!(
        s.ctl(&["scale", "deploy", "web", "--replicas=5", "-n", "shop"])
            .ok(),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        s.ctl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .ok(),
        "5"
    );
    assert_eq!(
        s.ctl(&[
            "patch",
            "deploy",
            "web",
            "-n",
            "shop",
            "-p",
            r#"{"spec":{"replicas":4}}"#
        ])
        .ok(),
        "deployment.apps/web patched\n"
    );
    assert_eq!(
        s.ctl(&[
            "patch",
            "cm",
            "web-config",
            "-n",
            "shop",
            "--type",
            "merge",
            "-p",
            "data:\n  extra: '1'\n"
        ])
        .ok(),
        "configmap/web-config patched\n"
    );
    assert_eq!(
        s.ctl(&[
            "patch",
            "cm",
            "web-config",
            "-n",
            "shop",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/data/extra"}]"#
        ])
        .ok(),
        "configmap/web-config patched\n"
    );
    assert_eq!(
        s.ctl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .ok(),
        "4"
    );
    // Containers merge by name: the strategic patch changes the image, keeps the ports.
    s.ctl(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}"#,
    ])
    .ok();
    assert_eq!(
        s.ctl(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"]).ok(),
        "nginx:1.26 80"
    );

    // Describe.
    let d = s.ctl(&["describe", "deploy", "web", "-n", "shop"]);
    let out = d.ok();
    for want in [
        "Name:",
        "web",
        "Namespace:",
        "shop",
        "Replicas:",
        "4 desired",
        "Pod Template:",
        "nginx:1.26",
        "Events:",
    ] {
        assert!(out.contains(want), "{want} in\n{out}");
    }
    let d = s.ctl(&["describe", "svc", "web", "-n", "shop"]);
    let out = d.ok();
    assert!(
        out.contains("Selector:") && out.contains("app=web") && out.contains("80/TCP"),
        "{out}"
    );
    let d = s.ctl(&["describe", "cm", "web-config", "-n", "shop"]);
    assert!(d.ok().contains("greeting:\n----\nbonjour"), "{}", d.stdout);
    let d = s.ctl(&["describe", "ns", "shop"]);
    assert!(d.ok().contains("Name:"), "{}", d.stdout);

    // Errors read like kubectl's.
    let missing = s.ctl(&["get", "pods", "nonexistent", "-n", "shop"]);
    assert_eq!(
        missing.fails(),
        "Error from server (NotFound): pods \"nonexistent\" not found\n"
    );
    let unknown = s.ctl(&["get", "gadgets"]);
    assert_eq!(
        unknown.fails(),
        "error: the server doesn't have a resource type \"gadgets\"\n"
    );
    let dup = s.ctl(&[
        "create",
        "configmap",
        "web-config",
        "-n",
        "shop",
        "--from-literal",
        "a=b",
    ]);
    let err = dup.fails();
    assert!(
        err.starts_with("Error from server (AlreadyExists): "),
        "{err}"
    );
    assert!(err.contains("web-config"), "{err}");

    // Delete what the manifest made.
    assert_eq!(
        lines(s.ctl(&["delete", "-n", "shop", "-f", &app2]).ok()),
        [
            "deployment.apps \"web\" deleted",
            "service \"web\" deleted",
            "configmap \"web-config\" deleted"
        ]
    );
    let gone = s.ctl(&["get", "deploy,cm", "-n", "shop", "-l", "app=web"]);
    gone.ok();
    assert!(
        gone.stderr.contains("No resources found"),
        "{}",
        gone.stderr
    );
    let again = s.ctl(&["delete", "cm", "web-config", "-n", "shop"]);
    assert_eq!(
        again.fails(),
        "Error from server (NotFound): configmaps \"web-config\" not found\n"
    );
    assert_eq!(
        s.ctl(&[
            "delete",
            "cm",
            "web-config",
            "-n",
            "shop",
            "--ignore-not-found"
        ])
        .code,
        0
    );
}

#[test]
fn manifests_errors_create_and_edit() {
    let s = Server::start();

    // A bad document names the file, the document and the field; nothing is sent.
    let bad = s.file(
        "deploy.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: three\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
    );
    let run = s.ctl(&["apply", "-f", &bad]);
    let err = run.fails();
    assert!(
        err.starts_with("error: error parsing ") && err.contains("deploy.yaml (document 2): spec.replicas: invalid type: string \"three\", expected i32"),
        "{err}"
    );
    assert_eq!(
        s.ctl(&["get", "cm", "first"]).fails(),
        "Error from server (NotFound): configmaps \"first\" not found\n"
    );
    let unknown_kind = s.file(
        "gadget.yaml",
        "apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n",
    );
    let err = s.ctl(&["apply", "-f", &unknown_kind]);
    assert!(
        err.fails()
            .contains("no matches for kind \"Gadget\" in version \"v1\""),
        "{}",
        err.stderr
    );
    let missing = s.ctl(&["apply", "-f", "/nonexistent/file.yaml"]);
    assert_eq!(
        missing.fails(),
        "error: the path \"/nonexistent/file.yaml\" does not exist\n"
    );

    // Manifests from stdin and directories; create and replace.
    let stdin = s.ctl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\ndata: {a: '1'}\n",
    );
    assert_eq!(stdin.ok(), "configmap/piped created\n");
    let dir = s.dir.path().join("manifests");
    std::fs::create_dir_all(dir.join("nested")).expect("mkdir");
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-dir-a}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("nested/b.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-dir-b"}}"#,
    )
    .expect("write");
    let out = s.ctl(&["create", "-f", &dir.display().to_string()]);
    assert_eq!(
        lines(out.ok()),
        [
            "configmap/from-dir-a created",
            "configmap/from-dir-b created"
        ]
    );
    let dup = s.ctl(&["create", "-f", &dir.join("a.yaml").display().to_string()]);
    let err = dup.fails();
    assert!(
        err.starts_with("Error from server (AlreadyExists): error when creating"),
        "{err}"
    );
    assert!(err.contains("\"from-dir-a\" already exists"), "{err}");
    let replacement = s.file(
        "replace.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\ndata: {a: '2'}\n",
    );
    assert_eq!(
        s.ctl(&["replace", "-f", &replacement]).ok(),
        "configmap/piped replaced\n"
    );
    assert_eq!(
        s.ctl(&["get", "cm", "piped", "-o", "jsonpath={.data.a}"])
            .ok(),
        "2"
    );

    // create from flags.
    let conf = s.file("app.properties", "color=blue\n");
    let out = s.ctl(&[
        "create",
        "configmap",
        "settings",
        "--from-literal",
        "mode=fast",
        "--from-file",
        &conf,
        "--from-file",
        &format!("renamed={conf}"),
    ]);
    assert_eq!(out.ok(), "configmap/settings created\n");
    let data = s.ctl(&["get", "cm", "settings", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(data.ok()).expect("json");
    assert_eq!(v["data"]["mode"], "fast");
    assert_eq!(v["data"]["app.properties"], "color=blue\n");
    assert_eq!(v["data"]["renamed"], "color=blue\n");
    assert_eq!(
        s.ctl(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal",
            "password=s3cret"
        ])
        .ok(),
        "secret/creds created\n"
    );
    assert_eq!(
        s.ctl(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"])
            .ok(),
        "czNjcmV0"
    );
    let table = s.ctl(&["get", "secret", "creds"]);
    let out = table.ok();
    assert!(out.contains("TYPE") && out.contains("Opaque"), "{out}");
    let cert = s.file(
        "tls.crt",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let key = s.file(
        "tls.key",
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    );
    assert_eq!(
        s.ctl(&["create", "secret", "tls", "web-tls", "--cert", &cert, "--key", &key])
            .ok(),
        "secret/web-tls created\n"
    );
    assert_eq!(
        s.ctl(&["get", "secret", "web-tls", "-o", "jsonpath={.type}"])
            .ok(),
        "kubernetes.io/tls"
    );
    let dry = s.ctl(&[
        "create",
        "cm",
        "dry",
        "--from-literal",
        "a=b",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(dry.ok().contains("name: dry"), "{}", dry.stdout);
    assert_eq!(s.ctl(&["get", "cm", "dry"]).code, 1);

    // edit: an editor that changes the file, one that does not.
    let out = s.ctl_env(
        &["edit", "cm", "settings"],
        &[("KUBE_EDITOR", "sed -i s/mode:\\ fast/mode:\\ slow/")],
    );
    assert_eq!(out.ok(), "configmap/settings edited\n");
    assert_eq!(
        s.ctl(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
            .ok(),
        "slow"
    );
    let out = s.ctl_env(&["edit", "cm", "settings"], &[("EDITOR", "true")]);
    out.ok();
    assert_eq!(out.stderr, "Edit cancelled, no changes made.\n");
    // An edit the server refuses reopens the file with the error as a comment; this editor
    // breaks the value the first time and fixes it when it sees the error.
    let log = s.dir.path().join("second-pass.yaml");
    let script = s.file(
        "editor.sh",
        &format!(
            "#!/bin/sh\nif grep -q 'was not valid' \"$1\"; then cp \"$1\" {log}; sed -i 's/mode: 5/mode: medium/' \"$1\"; else sed -i 's/mode: slow/mode: 5/' \"$1\"; fi\n",
            log = log.display()
        ),
    );
    std::process::Command::new("chmod")
        .args(["+x", &script])
        .status()
        .expect("chmod");
    let out = s.ctl_env(&["edit", "cm", "settings"], &[("KUBE_EDITOR", &script)]);
    assert_eq!(out.ok(), "configmap/settings edited\n");
    let second = std::fs::read_to_string(&log).expect("the editor ran twice");
    assert!(
        second.contains("# configmaps \"settings\" was not valid:\n# * "),
        "{second}"
    );
    assert!(second.contains("mode: 5"), "{second}");
    assert_eq!(
        s.ctl(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
            .ok(),
        "medium"
    );
    // The same bad change made again is abandoned.
    let out = s.ctl_env(
        &["edit", "cm", "settings"],
        &[("KUBE_EDITOR", "sed -i s/mode:\\ medium/mode:\\ 5/")],
    );
    let err = out.fails();
    assert!(
        err.contains("Edit cancelled, no valid changes were saved."),
        "{err}"
    );

    // Discovery and cluster facts.
    let res = s.ctl(&["api-resources"]);
    let out = res.ok();
    assert!(
        lines(out)[0].starts_with("NAME") && out.contains("SHORTNAMES"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("deployments")
            && l.contains("deploy")
            && l.contains("apps/v1")
            && l.contains("Deployment")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("pods") && l.contains("po") && l.contains("true")),
        "{out}"
    );
    let ver = s.ctl(&["version"]);
    let out = ver.ok();
    assert!(
        out.starts_with("Client Version: v") && out.contains("Server Version: v1."),
        "{out}"
    );
    let info = s.ctl(&["cluster-info"]);
    assert!(
        info.ok().starts_with(&format!(
            "Kubernetes control plane is running at https://127.0.0.1:{}",
            s.port
        )),
        "{}",
        info.stdout
    );
    let view = s.ctl(&["config", "view"]);
    let out = view.ok();
    assert!(
        out.contains("token: REDACTED") || out.contains("DATA+OMITTED"),
        "{out}"
    );
    assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
}

#[test]
fn watch_prints_rows_as_objects_change() {
    let s = Server::start();
    let mut child = s.spawn(&["get", "cm", "-w", "--no-headers"]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the watch a moment to start, then make a change it must report.
    std::thread::sleep(Duration::from_millis(1500));
    s.ctl(&["create", "configmap", "watched", "--from-literal", "a=b"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if line.starts_with("watched") {
                    break true;
                }
                seen.push(line);
            }
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    let _ = child.kill();
    let output = child.wait_with_output().expect("watch output");
    assert!(
        found,
        "the watch never printed the new ConfigMap; saw {seen:?}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn no_server_needed_for_explain_and_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config");
    std::fs::write(
        &cfg,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: QUJD}\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n- name: b\n  context: {cluster: c, user: u, namespace: other}\ncurrent-context: a\nusers:\n- name: u\n  user: {token: secret-token}\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        std::process::Command::new(common::skiffctl_bin())
            .args(args)
            .env("KUBECONFIG", &cfg)
            .env("HOME", dir.path())
            .output()
            .expect("skiffctl")
    };
    let out = run(&["config", "view"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("token: REDACTED")
            && text.contains("certificate-authority-data: DATA+OMITTED"),
        "{text}"
    );
    assert!(!text.contains("secret-token"));
    let out = run(&["config", "use-context", "b"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Switched to context \"b\".\n"
    );
    let out = run(&["config", "current-context"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b\n");
    let out = run(&["config", "use-context", "zzz"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no context exists with the name: \"zzz\"\n"
    );
    let out = run(&["explain", "deployment.spec.replicas"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "KIND:       Deployment\nVERSION:    apps/v1\n\nFIELD: replicas <integer>"
        ),
        "{text}"
    );
    let out = run(&["explain", "pods.spec.bogus"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: field \"bogus\" does not exist\n"
    );
    // A server that is not there is an error that says so.
    let out = run(&["get", "pods"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unable to connect to the server"),
        "{err}"
    );
}

//! skiffctl's workload verbs against a real skiff-control with its control loops off, so
//! the test alone decides which ReplicaSets and pods exist and what every status says:
//! rollout status/history/undo/pause/resume/restart, set image, scale, autoscale, expose,
//! run, cordon/uncordon/drain, `get events` and `describe` of controllers.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;
use serde_json::{json, Value};

/// Text with each run of spaces made one, so checks don't depend on column widths.
fn squash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        out.push(c);
    }
    out
}

fn server() -> Server {
    Server::start_with(&["--controllers=none"])
}

fn get_json(s: &Server, args: &[&str]) -> Value {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(s.ctl(&full).ok()).expect("get -o json")
}

fn apply(s: &Server, name: &str, manifest: &Value) {
    let path = s.file(name, &serde_json::to_string(manifest).expect("json"));
    s.ctl(&["apply", "-f", &path]).ok();
}

fn patch_status(s: &Server, what: &str, status: Value) {
    let body = json!({ "status": status }).to_string();
    s.ctl(&[
        "patch",
        what,
        "--subresource=status",
        "--type=merge",
        "-p",
        &body,
    ])
    .ok();
}

fn template(image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({"metadata": {"labels": labels},
        "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}})
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": template(image, None)}})
}

/// A ReplicaSet of Deployment `web` (uid `owner`) at `revision`.
fn replicaset(owner: &str, revision: u32, image: &str, cause: Option<&str>) -> Value {
    let hash = format!("h{revision}");
    let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string()});
    if let Some(c) = cause {
        annotations["kubernetes.io/change-cause"] = json!(c);
    }
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("web-{hash}"), "annotations": annotations,
            "labels": {"app": "web", "pod-template-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": owner, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 0,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
            "template": template(image, Some(&hash))}})
}

fn image_of(s: &Server) -> String {
    s.ctl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
    .ok()
    .to_string()
}

#[test]
fn history_undo_pause_restart_and_set_image() {
    let s = server();
    apply(&s, "web.json", &deployment("nginx:2"));
    let uid = s
        .ctl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    assert_eq!(
        s.ctl(&["rollout", "history", "deployment/web"]).ok(),
        "deployment.apps/web \nNo rollout history found.\n"
    );
    apply(
        &s,
        "rs1.json",
        &replicaset(&uid, 1, "nginx:1", Some("first release")),
    );
    apply(&s, "rs2.json", &replicaset(&uid, 2, "nginx:2", None));

    assert_eq!(
        s.ctl(&["rollout", "history", "deployment/web"]).ok(),
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         first release\n2         <none>\n\n"
    );
    let one = s.ctl(&["rollout", "history", "deployment/web", "--revision=1"]);
    let text = one.ok();
    assert!(
        text.starts_with("deployment.apps/web with revision #1\nPod Template:\n"),
        "{text}"
    );
    assert!(text.contains("nginx:1"), "{text}");
    assert_eq!(
        s.ctl(&["rollout", "history", "deployment/web", "--revision=9"])
            .fails(),
        "error: unable to find the specified revision\n"
    );

    // Undo: to an unknown revision fails; by default it goes to the previous revision.
    assert_eq!(
        s.ctl(&["rollout", "undo", "deployment/web", "--to-revision=7"])
            .fails(),
        "error: unable to find specified revision 7 in history\n"
    );
    assert_eq!(
        s.ctl(&["rollout", "undo", "deployment/web"]).ok(),
        "deployment.apps/web rolled back\n"
    );
    let d = get_json(&s, &["deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web"}),
        "the pod-template-hash label stays on the ReplicaSet"
    );
    assert_eq!(
        d["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "first release"
    );
    assert_eq!(
        s.ctl(&["rollout", "undo", "deployment/web", "--to-revision=1"])
            .ok(),
        "deployment.apps/web skipped rollback (current template already matches revision 1)\n"
    );
    assert_eq!(
        s.ctl(&["rollout", "undo", "deploy", "web", "--to-revision=2"])
            .ok(),
        "deployment.apps/web rolled back\n"
    );
    assert_eq!(image_of(&s), "nginx:2");

    // Pause and resume flip spec.paused; doing either twice is refused.
    assert_eq!(
        s.ctl(&["rollout", "pause", "deployment/web"]).ok(),
        "deployment.apps/web paused\n"
    );
    assert_eq!(
        s.ctl(&["get", "deploy", "web", "-o", "jsonpath={.spec.paused}"])
            .ok(),
        "true"
    );
    assert_eq!(
        s.ctl(&["rollout", "pause", "deployment/web"]).fails(),
        "error: deployments.apps \"web\" is already paused\n"
    );
    assert!(s
        .ctl(&["rollout", "undo", "deployment/web"])
        .fails()
        .contains("you cannot rollback a paused deployment"));
    assert!(s
        .ctl(&["rollout", "restart", "deployment/web"])
        .fails()
        .contains("can't restart paused deployment (run rollout resume first)"));
    assert_eq!(
        s.ctl(&["rollout", "resume", "deployment/web"]).ok(),
        "deployment.apps/web resumed\n"
    );
    assert_ne!(
        get_json(&s, &["deploy", "web"])["spec"]["paused"],
        json!(true),
        "paused is cleared"
    );
    assert_eq!(
        s.ctl(&["rollout", "resume", "deployment/web"]).fails(),
        "error: deployments.apps \"web\" is not paused\n"
    );
    assert!(s
        .ctl(&["rollout", "pause", "rs/web-h1"])
        .fails()
        .contains("replicasets.apps \"web-h1\" pausing is not supported"));

    // Restart stamps the template.
    assert_eq!(
        s.ctl(&["rollout", "restart", "deployment/web"]).ok(),
        "deployment.apps/web restarted\n"
    );
    let stamp = get_json(&s, &["deploy", "web"])["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .expect("restartedAt")
        .to_string();
    assert!(
        stamp.parse::<jiff::Timestamp>().is_ok(),
        "RFC 3339 with offset: {stamp}"
    );

    // set image: by container name; an unknown container is named in the error.
    assert_eq!(
        s.ctl(&["set", "image", "deployment/web", "web=nginx:3"])
            .ok(),
        "deployment.apps/web image updated\n"
    );
    assert_eq!(image_of(&s), "nginx:3");
    assert_eq!(
        s.ctl(&["set", "image", "deployment/web", "nope=nginx:4"])
            .fails(),
        "error: unable to find container named \"nope\"\n"
    );
    assert_eq!(image_of(&s), "nginx:3");
    let cause = || {
        get_json(&s, &["deploy", "web"])["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // The undo to revision 2 took that ReplicaSet's annotations (no change-cause), and
    // set image without --record records nothing.
    assert_eq!(cause(), "");
    s.ctl(&["set", "image", "deploy/web", "web=nginx:5", "--record"])
        .ok();
    let recorded = cause();
    assert!(
        recorded.starts_with("skiffctl ")
            && recorded.ends_with(" set image deploy/web web=nginx:5 --record"),
        "the command line, as kubectl records it: {recorded}"
    );
    // Pods too.
    apply(
        &s,
        "pod.json",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}}),
    );
    assert_eq!(
        s.ctl(&["set", "image", "pod/solo", "main=busybox:2"]).ok(),
        "pod/solo image updated\n"
    );
    assert_eq!(
        s.ctl(&[
            "get",
            "pod",
            "solo",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ])
        .ok(),
        "busybox:2"
    );
}

fn logs_template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "logs"}},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

#[test]
fn daemonset_history_and_undo_from_controller_revisions() {
    let s = server();
    apply(
        &s,
        "ds.json",
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "logs"},
            "spec": {"selector": {"matchLabels": {"app": "logs"}}, "template": logs_template("fluentd:2")}}),
    );
    let uid = s
        .ctl(&["get", "ds", "logs", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    // ControllerRevisions hold the template as the server defaulted it, as the DaemonSet
    // controller stores them.
    let live = get_json(&s, &["ds", "logs"])["spec"]["template"].clone();
    for (revision, image, cause) in [(1, "fluentd:1", Some("initial")), (2, "fluentd:2", None)] {
        let mut template = live.clone();
        template["spec"]["containers"][0]["image"] = json!(image);
        template["$patch"] = json!("replace");
        let mut cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": format!("logs-{revision}"),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "logs",
                    "uid": uid, "controller": true}]},
            "revision": revision,
            "data": {"spec": {"template": template}}});
        if let Some(c) = cause {
            cr["metadata"]["annotations"] = json!({"kubernetes.io/change-cause": c});
        }
        apply(&s, &format!("cr{revision}.json"), &cr);
    }
    assert_eq!(
        s.ctl(&["rollout", "history", "ds/logs"]).ok(),
        "daemonset.apps/logs \nREVISION  CHANGE-CAUSE\n1         initial\n2         <none>\n\n"
    );
    assert_eq!(
        s.ctl(&["rollout", "undo", "ds/logs", "--to-revision=2"])
            .ok(),
        "daemonset.apps/logs skipped rollback (current template already matches revision 2)\n"
    );
    assert_eq!(
        s.ctl(&["rollout", "undo", "ds/logs"]).ok(),
        "daemonset.apps/logs rolled back\n"
    );
    let ds = get_json(&s, &["ds", "logs"]);
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "fluentd:1"
    );
    assert!(s
        .ctl(&["rollout", "pause", "ds/logs"])
        .fails()
        .contains("daemonsets.apps \"logs\" pausing is not supported"));
    assert_eq!(
        s.ctl(&["rollout", "restart", "ds/logs"]).ok(),
        "daemonset.apps/logs restarted\n"
    );
}

/// Lines a running skiffctl prints, read on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a status line within 20s")
}

#[test]
fn rollout_status_follows_the_status() {
    let s = server();
    apply(&s, "web.json", &deployment("nginx:1"));
    let generation = get_json(&s, &["deploy", "web"])["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    assert_eq!(
        s.ctl(&["rollout", "status", "deployment/web", "--watch=false"])
            .ok(),
        "Waiting for deployment spec update to be observed...\n"
    );
    patch_status(
        &s,
        "deployment/web",
        json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": 1}),
    );
    assert_eq!(
        s.ctl(&["rollout", "status", "deployment/web", "--watch=false"])
            .ok(),
        "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
    );
    assert_eq!(
        s.ctl(&["rollout", "status", "deployment/web", "--timeout=1s"])
            .fails(),
        "error: timed out waiting for the condition\n"
    );

    // Watching: one line per change of the message, exit 0 when rolled out.
    let mut child = s.spawn(&["rollout", "status", "deployment/web"]);
    let rx = lines_of(&mut child);
    assert_eq!(
        next_line(&rx),
        "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
    );
    patch_status(
        &s,
        "deployment/web",
        json!({"replicas": 4, "updatedReplicas": 3}),
    );
    assert_eq!(
        next_line(&rx),
        "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
    );
    patch_status(
        &s,
        "deployment/web",
        json!({"replicas": 3, "availableReplicas": 2}),
    );
    assert_eq!(
        next_line(&rx),
        "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
    );
    patch_status(&s, "deployment/web", json!({"availableReplicas": 3}));
    assert_eq!(next_line(&rx), "deployment \"web\" successfully rolled out");
    let status = child.wait().expect("rollout status ends");
    assert!(status.success(), "exit 0 when rolled out: {status}");

    // A rollout past its deadline fails.
    patch_status(
        &s,
        "deployment/web",
        json!({"conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]}),
    );
    assert_eq!(
        s.ctl(&["rollout", "status", "deployment/web"]).fails(),
        "error: deployment \"web\" exceeded its progress deadline\n"
    );

    // DaemonSets and StatefulSets have their own messages.
    apply(
        &s,
        "ds.json",
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "logs"},
            "spec": {"selector": {"matchLabels": {"app": "logs"}},
                "template": {"metadata": {"labels": {"app": "logs"}},
                    "spec": {"containers": [{"name": "c", "image": "fluentd"}]}}}}),
    );
    patch_status(
        &s,
        "daemonset/logs",
        json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
            "numberAvailable": 1, "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 1}),
    );
    assert_eq!(
        s.ctl(&["rollout", "status", "ds/logs", "--watch=false"])
            .ok(),
        "Waiting for daemon set \"logs\" rollout to finish: 1 of 3 updated pods are available...\n"
    );
    apply(
        &s,
        "sts.json",
        &json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "postgres"}]}}}}),
    );
    let sts = get_json(&s, &["sts", "db"]);
    let partitioned = sts.pointer("/spec/updateStrategy/rollingUpdate").is_some();
    patch_status(
        &s,
        "statefulset/db",
        json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "currentReplicas": 2,
            "updatedReplicas": 2, "currentRevision": "db-1", "updateRevision": "db-1"}),
    );
    let expected = if partitioned {
        "partitioned roll out complete: 2 new pods have been updated...\n"
    } else {
        "statefulset rolling update complete 2 pods at revision db-1...\n"
    };
    assert_eq!(s.ctl(&["rollout", "status", "sts/db"]).ok(), expected);
    assert_eq!(
        s.ctl(&["rollout", "status", "rs/whatever"]).fails(),
        "error: no status viewer has been implemented for ReplicaSet.apps\n"
    );
}

#[test]
fn scale_autoscale_expose_and_run() {
    let s = server();
    apply(&s, "web.json", &deployment("nginx:1"));
    apply(
        &s,
        "rc.json",
        &json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
            "spec": {"replicas": 1, "selector": {"app": "legacy"},
                "template": {"metadata": {"labels": {"app": "legacy"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}}),
    );

    // scale: several objects at once, and the --current-replicas precondition.
    assert_eq!(
        s.ctl(&["scale", "--replicas=4", "deployment/web", "rc/legacy"])
            .ok(),
        "deployment.apps/web scaled\nreplicationcontroller/legacy scaled\n"
    );
    assert_eq!(
        s.ctl(&["get", "rc", "legacy", "-o", "jsonpath={.spec.replicas}"])
            .ok(),
        "4"
    );
    assert_eq!(
        s.ctl(&[
            "scale",
            "--current-replicas=2",
            "--replicas=5",
            "deployment/web"
        ])
        .fails(),
        "error: Expected replicas to be 2, was 4\n"
    );
    s.ctl(&[
        "scale",
        "--current-replicas=4",
        "--replicas=2",
        "deployment",
        "web",
    ])
    .ok();
    assert_eq!(
        s.ctl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .ok(),
        "2"
    );

    // autoscale: an autoscaling/v2 HPA named like its target.
    assert_eq!(
        s.ctl(&[
            "autoscale",
            "deployment/web",
            "--min=2",
            "--max=10",
            "--cpu-percent=80"
        ])
        .ok(),
        "horizontalpodautoscaler.autoscaling/web autoscaled\n"
    );
    let hpa = get_json(&s, &["hpa", "web"]);
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"],
        json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}})
    );
    assert_eq!(
        s.ctl(&["autoscale", "rc", "legacy", "--max=0"]).fails(),
        "error: --max=MAXPODS is required and must be at least 1, max: 0\n"
    );

    // expose: the selector is the target's, the ports the flags' or the containers'.
    assert_eq!(
        s.ctl(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
            "--type=NodePort"
        ])
        .ok(),
        "service/web exposed\n"
    );
    let svc = get_json(&s, &["svc", "web"]);
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        s.ctl(&["expose", "rc/legacy", "--name=legacy-svc"]).ok(),
        "service/legacy-svc exposed\n"
    );
    let svc = get_json(&s, &["svc", "legacy-svc"]);
    assert_eq!(svc["spec"]["selector"], json!({"app": "legacy"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    // run: a pod labelled run=NAME.
    assert_eq!(
        s.ctl(&[
            "run",
            "shell",
            "--image=busybox:1.36",
            "--env=GREETING=hi",
            "--restart=Never",
            "--command",
            "--",
            "sleep",
            "3600"
        ])
        .ok(),
        "pod/shell created\n"
    );
    let pod = get_json(&s, &["pod", "shell"]);
    assert_eq!(pod["metadata"]["labels"], json!({"run": "shell"}));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["name"], "shell");
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["command"], json!(["sleep", "3600"]));
    assert_eq!(c["env"], json!([{"name": "GREETING", "value": "hi"}]));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    // A pod without ports can't be exposed without --port; with it, it can.
    assert_eq!(
        s.ctl(&["expose", "pod", "shell"]).fails(),
        "error: couldn't find port via --port flag or introspection\n"
    );
    assert_eq!(
        s.ctl(&["expose", "pod", "shell", "--port=8080", "--protocol=UDP"])
            .ok(),
        "service/shell exposed\n"
    );
    let svc = get_json(&s, &["svc", "shell"]);
    assert_eq!(svc["spec"]["selector"], json!({"run": "shell"}));
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "UDP");
    s.ctl(&["run", "nolabels", "--image=busybox", "--labels="])
        .ok();
    apply(
        &s,
        "bare.json",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    );
    assert_eq!(
        s.ctl(&["expose", "pod", "bare", "--port=80"]).fails(),
        "error: couldn't retrieve selectors via --selector flag or introspection: the pod has no labels and cannot be exposed\n"
    );
    assert_eq!(
        s.ctl(&["expose", "node", "x", "--port=80"]).fails(),
        "error: cannot expose a Node\n"
    );
    // --dry-run=client prints and creates nothing.
    let yaml = s.ctl(&[
        "run",
        "preview",
        "--image=nginx",
        "--port=80",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let text = yaml.ok();
    assert!(text.contains("kind: Pod\n"), "{text}");
    assert!(text.contains("    run: preview\n"), "{text}");
    assert!(text.contains("- containerPort: 80\n"), "{text}");
    assert!(s
        .ctl(&["get", "pod", "preview"])
        .fails()
        .contains("NotFound"));
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})
}

fn pod_on(name: &str, node: &str, owner: Option<(&str, &str, &str)>, extra: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox"}]}});
    if let Some((kind, owner_name, uid)) = owner {
        let api_version = if kind == "ReplicaSet" || kind == "DaemonSet" {
            "apps/v1"
        } else {
            "v1"
        };
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind,
            "name": owner_name, "uid": uid, "controller": true}]);
    }
    if let Some(volumes) = extra.get("volumes") {
        p["spec"]["volumes"] = volumes.clone();
    }
    if let Some(a) = extra.get("annotations") {
        p["metadata"]["annotations"] = a.clone();
    }
    p
}

fn pods_on(s: &Server, node: &str) -> Vec<String> {
    let list = get_json(
        s,
        &["pods", "--field-selector", &format!("spec.nodeName={node}")],
    );
    let mut names: Vec<String> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn cordon_uncordon_and_drain() {
    let s = server();
    apply(&s, "n1.json", &node("n1"));
    apply(&s, "n2.json", &node("n2"));
    assert_eq!(s.ctl(&["cordon", "n1"]).ok(), "node/n1 cordoned\n");
    assert_eq!(s.ctl(&["cordon", "n1"]).ok(), "node/n1 already cordoned\n");
    assert_eq!(
        s.ctl(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"])
            .ok(),
        "true"
    );
    assert_eq!(s.ctl(&["uncordon", "n1"]).ok(), "node/n1 uncordoned\n");
    assert_eq!(
        s.ctl(&["uncordon", "n1"]).ok(),
        "node/n1 already uncordoned\n"
    );
    assert_eq!(
        s.ctl(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"])
            .ok(),
        ""
    );
    assert!(s
        .ctl(&["cordon", "ghost"])
        .fails()
        .contains("nodes \"ghost\" not found"));

    // A DaemonSet, a ReplicaSet, and pods on n1 of every kind drain cares about.
    apply(
        &s,
        "ds.json",
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "logs"},
            "spec": {"selector": {"matchLabels": {"app": "logs"}},
                "template": {"metadata": {"labels": {"app": "logs"}},
                    "spec": {"containers": [{"name": "c", "image": "fluentd"}]}}}}),
    );
    let ds_uid = s
        .ctl(&["get", "ds", "logs", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    let rs_uid = "00000000-0000-0000-0000-000000000001";
    let managed = Some(("ReplicaSet", "web", rs_uid));
    apply(&s, "p1.json", &pod_on("web-1", "n1", managed, json!({})));
    apply(
        &s,
        "p2.json",
        &pod_on(
            "logs-1",
            "n1",
            Some(("DaemonSet", "logs", &ds_uid)),
            json!({}),
        ),
    );
    apply(&s, "p3.json", &pod_on("bare", "n1", None, json!({})));
    apply(
        &s,
        "p4.json",
        &pod_on(
            "cache",
            "n1",
            managed,
            json!({"volumes": [{"name": "scratch", "emptyDir": {}}]}),
        ),
    );
    apply(
        &s,
        "p5.json",
        &pod_on(
            "static-n1",
            "n1",
            None,
            json!({"annotations": {"kubernetes.io/config.mirror": "abc"}}),
        ),
    );
    apply(&s, "p6.json", &pod_on("web-2", "n2", managed, json!({})));

    // Without flags, drain refuses and says why, pod by pod; nothing is evicted.
    let refused = s.ctl(&["drain", "n1"]);
    assert_eq!(refused.code, 1);
    assert_eq!(refused.stdout, "node/n1 cordoned\n");
    let mut lines = refused.stderr.lines();
    let first = lines.next().unwrap_or("");
    assert!(
        first.starts_with("error: unable to drain node \"n1\" due to error:[cannot delete ")
            && first.ends_with("], continuing command..."),
        "{}",
        refused.stderr
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest[0], "There are pending nodes to be drained:");
    assert_eq!(rest[1], " n1");
    let mut reasons = rest[2..].to_vec();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/logs-1",
            "cannot delete Pods declare no controller (use --force to override): default/bare",
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache",
        ]
    );
    assert_eq!(
        pods_on(&s, "n1"),
        ["bare", "cache", "logs-1", "static-n1", "web-1"]
    );

    // One flag short still refuses, naming only what is left.
    let partly = s.ctl(&["drain", "n1", "--ignore-daemonsets", "--force"]);
    assert_eq!(partly.stdout, "node/n1 already cordoned\n");
    assert!(partly.fails().ends_with(
        "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache\n"
    ));

    // With all three, the pods go (the DaemonSet's and the mirror pod stay).
    let done = s.ctl(&[
        "drain",
        "n1",
        "--ignore-daemonsets",
        "--force",
        "--delete-emptydir-data",
        "--timeout=30s",
    ]);
    let out = done.ok();
    let mut out_lines: Vec<&str> = out.lines().collect();
    assert_eq!(out_lines.first(), Some(&"node/n1 already cordoned"));
    assert_eq!(out_lines.last(), Some(&"node/n1 drained"));
    out_lines.sort();
    assert_eq!(
        out_lines,
        [
            "evicting pod default/bare",
            "evicting pod default/cache",
            "evicting pod default/web-1",
            "node/n1 already cordoned",
            "node/n1 drained",
            "pod/bare evicted",
            "pod/cache evicted",
            "pod/web-1 evicted",
        ]
    );
    assert!(
        done.stderr.contains(
            "Warning: ignoring DaemonSet-managed Pods: default/logs-1; deleting Pods that declare no controller: default/bare"
        ),
        "{}",
        done.stderr
    );
    assert_eq!(pods_on(&s, "n1"), ["logs-1", "static-n1"]);
    assert_eq!(pods_on(&s, "n2"), ["web-2"], "other nodes are left alone");

    // --disable-eviction deletes instead.
    apply(&s, "p7.json", &pod_on("web-3", "n2", managed, json!({})));
    let deleted = s.ctl(&["drain", "n2", "--disable-eviction", "--timeout=30s"]);
    let mut lines: Vec<&str> = deleted.ok().lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "node/n2 cordoned",
            "node/n2 drained",
            "pod/web-2 deleted",
            "pod/web-3 deleted"
        ]
    );
    assert!(pods_on(&s, "n2").is_empty());
}

#[test]
fn events_and_describe_of_controllers() {
    let s = server();
    apply(&s, "web.json", &deployment("nginx:1"));
    let uid = s
        .ctl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    apply(&s, "rs1.json", &replicaset(&uid, 1, "nginx:1", None));
    let rs_uid = s
        .ctl(&["get", "rs", "web-h1", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    patch_status(
        &s,
        "deployment/web",
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
            "unavailableReplicas": 1,
            "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}),
    );
    for (name, minutes_ago, reason, involved) in [
        (
            "ev-old",
            10,
            "ScalingReplicaSet",
            json!({"kind": "Deployment", "name": "web", "namespace": "default", "uid": uid, "apiVersion": "apps/v1"}),
        ),
        (
            "ev-new",
            1,
            "SuccessfulCreate",
            json!({"kind": "ReplicaSet", "name": "web-h1", "namespace": "default", "uid": rs_uid, "apiVersion": "apps/v1"}),
        ),
        (
            "ev-mid",
            5,
            "ScalingReplicaSet",
            json!({"kind": "Deployment", "name": "web", "namespace": "default", "uid": uid, "apiVersion": "apps/v1"}),
        ),
    ] {
        let when = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        apply(
            &s,
            &format!("{name}.json"),
            &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
                "involvedObject": involved, "reason": reason, "type": "Normal",
                "message": format!("{name} happened"), "source": {"component": "deployment-controller"},
                "firstTimestamp": when, "lastTimestamp": when, "count": 1}),
        );
    }

    // get events: kubectl's columns, oldest first by last timestamp.
    let table = s.ctl(&["get", "events"]);
    let text = table.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("LAST SEEN")
            && lines[0].contains("TYPE")
            && lines[0].contains("REASON")
            && lines[0].contains("OBJECT")
            && lines[0].contains("MESSAGE"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].contains("ev-old happened"), "{text}");
    assert!(lines[2].contains("ev-mid happened"), "{text}");
    assert!(lines[3].contains("ev-new happened"), "{text}");
    assert!(lines[3].contains("replicaset/web-h1"), "{text}");

    // get events -w: the rows so far, then each new event as it is recorded.
    let mut watch = s.spawn(&["get", "events", "-w"]);
    let rx = lines_of(&mut watch);
    let header = next_line(&rx);
    assert!(header.starts_with("LAST SEEN"), "{header}");
    for _ in 0..3 {
        next_line(&rx);
    }
    apply(
        &s,
        "ev-live.json",
        &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev-live"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
            "reason": "Live", "type": "Warning", "message": "it is happening now",
            "firstTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "lastTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "count": 1, "source": {"component": "test"}}),
    );
    let live = next_line(&rx);
    assert!(
        live.contains("Warning")
            && live.contains("Live")
            && live.contains("deployment/web")
            && live.ends_with("it is happening now"),
        "{live}"
    );
    let _ = watch.kill();
    let _ = watch.wait();

    // describe deployment: replicas line, strategy, conditions, ReplicaSets, its events.
    let text = squash(s.ctl(&["describe", "deployment", "web"]).ok());
    for want in [
        "\nReplicas: 3 desired | 3 updated | 3 total | 2 available | 1 unavailable\n",
        "\nStrategyType: RollingUpdate\n",
        "\nRollingUpdateStrategy: 25% max unavailable, 25% max surge\n",
        "\n Available False MinimumReplicasUnavailable\n",
        "\nNewReplicaSet: web-h1 (0/0 replicas created)\n",
        "ev-old happened",
        "ev-mid happened",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("ev-new happened"), "{text}");

    // describe replicaset: pod counts by phase and its own events.
    for (name, phase) in [("web-h1-a", "Running"), ("web-h1-b", "Pending")] {
        let mut p = pod_on(name, "", Some(("ReplicaSet", "web-h1", &rs_uid)), json!({}));
        p["spec"].as_object_mut().map(|m| m.remove("nodeName"));
        apply(&s, &format!("{name}.json"), &p);
        patch_status(&s, &format!("pod/{name}"), json!({"phase": phase}));
    }
    let text = squash(s.ctl(&["describe", "rs", "web-h1"]).ok());
    assert!(
        text.contains("\nPods Status: 1 Running / 1 Waiting / 0 Succeeded / 0 Failed\n"),
        "{text}"
    );
    assert!(text.contains("\nControlled By: Deployment/web\n"), "{text}");
    assert!(text.contains("ev-new happened"), "{text}");

    // describe hpa: target, metrics and replica counts.
    s.ctl(&[
        "autoscale",
        "deploy/web",
        "--min=1",
        "--max=4",
        "--cpu-percent=50",
    ])
    .ok();
    let text = squash(s.ctl(&["describe", "hpa", "web"]).ok());
    for want in [
        "\nReference: Deployment/web\n",
        "\n resource cpu on pods (as a percentage of request): <unknown> / 50%\n",
        "\nMin replicas: 1\nMax replicas: 4\n",
        "\nDeployment pods: 0 current / 0 desired\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

//! `skiffctl logs`, `exec`, `port-forward` and `top` against a real `skiff-control` whose
//! node is the fake node daemon shared with skiff-control's tests (loopback, TLS requiring
//! the API server's kubelet client certificate).

mod common;
#[path = "../../control/tests/fake_node/mod.rs"]
mod fake_node;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use common::Server;
use fake_node::FakeNode;
use serde_json::json;

const NODE: &str = "fake-node";

struct Setup {
    server: Server,
    fake: FakeNode,
    // Runs the fake node's tasks while the test runs skiffctl; dropped last.
    _rt: tokio::runtime::Runtime,
}

fn pod(name: &str, containers: &[&str], init: &[&str]) -> serde_json::Value {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| json!({"name": n, "image": "busybox:1.36"}))
            .collect::<Vec<_>>()
    };
    let mut spec = json!({"nodeName": NODE, "containers": list(containers)});
    if !init.is_empty() {
        spec["initContainers"] = json!(list(init));
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn setup() -> Setup {
    let server = Server::start();
    let ca = std::fs::read_to_string(server.dir.path().join("data/pki/ca.crt")).expect("CA");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(FakeNode::start(&ca));
    let node = server.file("node.json", &fake.node_object(NODE).to_string());
    server.ctl(&["apply", "-f", &node]).ok();
    server
        .ctl(&[
            "patch",
            "node",
            NODE,
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            &fake.node_status().to_string(),
        ])
        .ok();
    let pods = json!({"apiVersion": "v1", "kind": "List", "items": [
        pod("solo", &["app"], &[]),
        pod("duo", &["a", "b"], &["setup"]),
        pod("waiting", &["crashy"], &[]),
    ]});
    let file = server.file("pods.json", &pods.to_string());
    server.ctl(&["apply", "-f", &file]).ok();
    Setup {
        server,
        fake,
        _rt: rt,
    }
}

/// Lines of a child's stdout as they come.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn logs_and_exec_through_the_api_server() {
    let s = setup();
    let server = &s.server;

    let out = server.ctl(&["logs", "solo"]).ok().to_string();
    assert_eq!(
        out,
        "line 1 of default/solo/app\nline 2 of default/solo/app\nline 3 of default/solo/app\n"
    );
    let out = server
        .ctl(&["logs", "pod/solo", "--tail", "1", "--timestamps"])
        .ok()
        .to_string();
    assert_eq!(
        out,
        "2024-05-01T10:00:03.000000000Z line 3 of default/solo/app\n"
    );
    let out = server
        .ctl(&[
            "logs",
            "solo",
            "-p",
            "--since",
            "5m",
            "--limit-bytes",
            "4096",
        ])
        .ok()
        .to_string();
    assert!(
        out.starts_with("previous line 1 of default/solo/app\n"),
        "{out}"
    );
    let seen = s.fake.last("/containerLogs/").expect("log request");
    for part in ["previous=true", "sinceSeconds=300", "limitBytes=4096"] {
        assert!(
            seen.query.contains(part),
            "{part} missing in {:?}",
            seen.query
        );
    }

    // Several containers: the first, said so on stderr, as kubectl does.
    let run = server.ctl(&["logs", "duo"]);
    assert!(
        run.ok().starts_with("line 1 of default/duo/a\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("Defaulted container \"a\" out of: a, b, setup (init)"),
        "{}",
        run.stderr
    );
    let out = server
        .ctl(&["logs", "duo", "-c", "b", "--tail=1"])
        .ok()
        .to_string();
    assert_eq!(out, "line 3 of default/duo/b\n");
    let out = server
        .ctl(&["logs", "duo", "--all-containers", "--prefix", "--tail", "1"])
        .ok()
        .to_string();
    assert_eq!(
        out,
        "[pod/duo/setup] line 3 of default/duo/setup\n[pod/duo/a] line 3 of default/duo/a\n[pod/duo/b] line 3 of default/duo/b\n"
    );
    let err = server
        .ctl(&["logs", "duo", "-c", "nope"])
        .fails()
        .to_string();
    assert!(
        err.contains("container nope is not valid for pod duo"),
        "{err}"
    );
    let err = server.ctl(&["logs", "waiting"]).fails().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): container \"crashy\" in pod \"waiting\" is waiting to start: ContainerCreating"
    );
    let err = server.ctl(&["logs", "deploy/web"]).fails().to_string();
    assert!(err.contains("works on pods only"), "{err}");
    let err = server.ctl(&["logs", "ghost"]).fails().to_string();
    assert!(err.contains("pods \"ghost\" not found"), "{err}");
    let err = server
        .ctl(&["logs", "solo", "--since", "5 minutes"])
        .fails()
        .to_string();
    assert!(err.contains("--since"), "{err}");

    // -f: lines arrive while the node holds the stream open, and the command ends with it.
    let mut child = server.spawn(&["logs", "-f", "solo"]);
    let lines = stdout_lines(&mut child);
    for i in 1..=3 {
        assert_eq!(
            next_line(&lines, "a followed line"),
            format!("line {i} of default/solo/app")
        );
    }
    s.fake.release_logs();
    assert_eq!(
        next_line(&lines, "the last line"),
        "line 4 of default/solo/app (followed)"
    );
    let status = child.wait().expect("logs -f ends");
    assert!(
        status.success(),
        "logs -f: {status}: {}",
        stderr_of(&mut child)
    );

    // exec: output, exit codes, stdin.
    let out = server
        .ctl(&["exec", "solo", "--", "echo", "hi", "there"])
        .ok()
        .to_string();
    assert_eq!(out, "hi there\n");
    let seen = s.fake.last("/exec/").expect("exec request");
    assert_eq!(seen.path, "/exec/default/solo/app");
    assert_eq!(seen.client_cn, fake_node::KUBELET_CLIENT_CN);
    let run = server.ctl(&["exec", "duo", "-c", "b", "--", "exit", "3"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("exiting with 3"), "{}", run.stderr);
    assert!(
        run.stderr.contains("command terminated with exit code 3"),
        "{}",
        run.stderr
    );
    let run = server.ctl_stdin(&["exec", "-i", "solo", "--", "cat"], "abc\ndef\n");
    assert_eq!(run.ok(), "abc\ndef\n");
    assert!(s
        .fake
        .last("/exec/")
        .is_some_and(|s| s.query.contains("stdin=true")));
    // -t without a terminal on stdin falls back to plain streams, as kubectl does.
    let run = server.ctl(&["exec", "-it", "solo", "--", "echo", "x"]);
    assert_eq!(run.ok(), "x\n");
    assert!(run.stderr.contains("Unable to use a TTY"), "{}", run.stderr);
    let err = server.ctl(&["exec", "solo"]).fails().to_string();
    assert!(err.contains("at least one command"), "{err}");
}

#[test]
fn port_forward_and_top() {
    let s = setup();
    let server = &s.server;

    let err = server
        .ctl(&["port-forward", "solo", "8080"])
        .fails()
        .to_string();
    assert!(
        err.contains("unable to forward port because pod is not running. Current status=Pending"),
        "{err}"
    );
    server
        .ctl(&[
            "patch",
            "pod",
            "solo",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ])
        .ok();
    let mut child = server.spawn(&["port-forward", "solo", ":8080"]);
    let lines = stdout_lines(&mut child);
    let first = next_line(&lines, "the Forwarding line");
    let port: u16 = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix(" -> 8080"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    for round in 0..2 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let msg = format!("ping {round}");
        conn.write_all(msg.as_bytes()).expect("write");
        let mut buf = vec![0u8; msg.len()];
        conn.read_exact(&mut buf)
            .expect("echo through the pod's port");
        assert_eq!(buf, msg.as_bytes());
        assert_eq!(
            next_line(&lines, "Handling connection"),
            format!("Handling connection for {port}")
        );
    }
    let seen = s.fake.last("/portForward/").expect("port-forward request");
    assert_eq!(seen.path, "/portForward/default/solo");
    assert!(seen.query.contains("ports=8080"), "{:?}", seen.query);
    let _ = child.kill();
    let _ = child.wait();

    let out = server.ctl(&["top", "node"]).ok().to_string();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
            vec![NODE, "250m", "6%", "1024Mi", "12%"],
        ],
        "{out}"
    );
    let out = server.ctl(&["top", "pod"]).ok().to_string();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["duo", "2m", "3Mi"],
            vec!["solo", "5m", "12Mi"],
        ],
        "{out}"
    );
    let out = server
        .ctl(&["top", "pods", "-A", "--no-headers"])
        .ok()
        .to_string();
    // The numbers come from the resource metrics API (which, as metrics-server, lists only
    // pods the API server knows), with a NAMESPACE column.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["default", "duo", "2m", "3Mi"],
            vec!["default", "solo", "5m", "12Mi"],
        ],
        "{out}"
    );
    let out = server
        .ctl(&["top", "pod", "duo", "--containers"])
        .ok()
        .to_string();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["duo", "a", "1m", "1Mi"],
            vec!["duo", "b", "0m", "2Mi"],
        ],
        "{out}"
    );
    let err = server.ctl(&["top", "pod", "ghost"]).fails().to_string();
    assert!(err.contains("metrics not available yet"), "{err}");
}

//! Probes and hooks for real: HTTP and TCP against servers on loopback inside a network
//! namespace each test makes for itself, exec against a busybox container started with
//! `skiff-runtime shim`. Needs root.

#[path = "support/bundle.rs"]
mod bundle;
#[path = "support/rootfs.rs"]
mod rootfs;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, LifecycleHandler, Probe, SleepAction,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::container::ShimReply;
use skiff_runtime::probe::{run_hook, run_probe, HookError, ProbeResult, ProbeTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_skiff-runtime");

/// Runs `body` on a thread of its own in a fresh network namespace (only `lo`, brought
/// up), with a current-thread tokio runtime: the host's namespace is never touched.
fn in_fresh_netns<F, Fut, T>(body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
        loopback_up();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `ip link set lo up` for the calling thread's network namespace, by ioctl.
fn loopback_up() {
    // SAFETY: plain syscalls on a socket we own, with a zeroed ifreq naming "lo".
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(socket >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut request: libc::ifreq = std::mem::zeroed();
        request.ifr_name[0] = b'l' as libc::c_char;
        request.ifr_name[1] = b'o' as libc::c_char;
        assert_eq!(libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request), 0);
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(socket, libc::SIOCSIFFLAGS, &request),
            0,
            "lo up: {}",
            std::io::Error::last_os_error()
        );
        libc::close(socket);
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers by path and records request heads.
struct TestServer {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, port, recorded.clone()));
            }
        });
        TestServer { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }
}

async fn answer(mut stream: TcpStream, port: u16, heads: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    heads.lock().expect("lock").push(head);
    let (status, location) = match path.as_str() {
        "/ok" => ("200 OK", None),
        "/fail" => ("500 Internal Server Error", None),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ("200 OK", None)
        }
        "/relative" => ("302 Found", Some("ok".to_string())),
        "/same-host" => (
            "301 Moved Permanently",
            Some(format!("http://127.0.0.1:{port}/fail")),
        ),
        "/other-host" => ("302 Found", Some(format!("http://127.0.0.2:{port}/fail"))),
        "/loop" => ("307 Temporary Redirect", Some("/loop".to_string())),
        _ => ("404 Not Found", None),
    };
    let location = location
        .map(|l| format!("Location: {l}\r\n"))
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {status}\r\n{location}Content-Length: 4\r\nConnection: close\r\n\r\nbody"
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn loopback_target(ports: Vec<ContainerPort>) -> ProbeTarget {
    ProbeTarget {
        pod_ip: "127.0.0.1".parse().expect("ip"),
        container_ports: ports,
        exec_binary: PathBuf::from(BIN),
        instance_dir: PathBuf::from("/nonexistent"),
        pid: 0,
    }
}

fn http_probe(port: IntOrString, path: &str, timeout_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port,
            path: Some(path.into()),
            ..Default::default()
        }),
        timeout_seconds: Some(timeout_seconds),
        ..Default::default()
    }
}

fn failure_text(result: &ProbeResult) -> &str {
    match result {
        ProbeResult::Failure(message) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn http_probe_status_codes_headers_and_named_port() {
    in_fresh_netns(|| async {
        let server = TestServer::start().await;
        let web = ContainerPort {
            name: Some("web".into()),
            container_port: i32::from(server.port),
            ..Default::default()
        };
        let target = loopback_target(vec![web]);
        let port = IntOrString::Int(i32::from(server.port));

        let ok = run_probe(&http_probe(port.clone(), "/ok", 1), &target).await;
        assert_eq!(ok, ProbeResult::Success);
        let head = server.heads().pop().expect("request seen");
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with("GET /ok HTTP/1.1\r\n"), "{head}");
        assert!(lower.contains("user-agent: kube-probe/1.33\r\n"), "{head}");
        assert!(lower.contains("accept: */*\r\n"), "{head}");
        assert!(
            lower.contains(&format!("host: 127.0.0.1:{}\r\n", server.port)),
            "{head}"
        );

        let failed = run_probe(&http_probe(port.clone(), "/fail", 1), &target).await;
        assert_eq!(
            failed,
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
        );

        let named = run_probe(
            &http_probe(IntOrString::String("web".into()), "/ok", 1),
            &target,
        )
        .await;
        assert_eq!(named, ProbeResult::Success);
        let unknown_name = run_probe(
            &http_probe(IntOrString::String("admin".into()), "/ok", 1),
            &target,
        )
        .await;
        assert_eq!(
            unknown_name,
            ProbeResult::Unknown("port admin not found".into())
        );

        // Custom headers replace the defaults; the Host header is sent as given.
        let mut custom = http_probe(port.clone(), "/ok", 1);
        if let Some(action) = custom.http_get.as_mut() {
            action.http_headers = Some(vec![
                HTTPHeader {
                    name: "Host".into(),
                    value: "virtual.test".into(),
                },
                HTTPHeader {
                    name: "X-Probe".into(),
                    value: "yes".into(),
                },
            ]);
        }
        assert_eq!(run_probe(&custom, &target).await, ProbeResult::Success);
        let head = server
            .heads()
            .pop()
            .expect("request seen")
            .to_ascii_lowercase();
        assert!(head.contains("host: virtual.test\r\n"), "{head}");
        assert!(head.contains("x-probe: yes\r\n"), "{head}");
    });
}

#[test]
fn http_probe_times_out_and_follows_redirects_like_the_kubelet() {
    in_fresh_netns(|| async {
        let server = TestServer::start().await;
        let target = loopback_target(Vec::new());
        let port = IntOrString::Int(i32::from(server.port));

        let started = Instant::now();
        let slow = run_probe(&http_probe(port.clone(), "/slow", 1), &target).await;
        let elapsed = started.elapsed();
        assert_eq!(
            failure_text(&slow),
            format!(
                "Get \"http://127.0.0.1:{}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                server.port
            )
        );
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );

        // Same host: followed (relative and absolute).
        let relative = run_probe(&http_probe(port.clone(), "/relative", 1), &target).await;
        assert_eq!(relative, ProbeResult::Success);
        let same_host = run_probe(&http_probe(port.clone(), "/same-host", 1), &target).await;
        assert_eq!(
            same_host,
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
        );
        // Another host: not followed, the 302 counts as success.
        let before = server.heads().len();
        let other = run_probe(&http_probe(port.clone(), "/other-host", 1), &target).await;
        assert_eq!(other, ProbeResult::Success);
        assert_eq!(server.heads().len(), before + 1, "redirect was followed");
        // A loop stops after 10 redirects.
        let looped = run_probe(&http_probe(port.clone(), "/loop", 1), &target).await;
        assert_eq!(
            failure_text(&looped),
            format!(
                "Get \"http://127.0.0.1:{}/loop\": stopped after 10 redirects",
                server.port
            )
        );
    });
}

#[test]
fn https_probe_accepts_a_self_signed_certificate() {
    in_fresh_netns(|| async {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buffer = [0u8; 4096];
                    let _ = tls.read(&mut buffer).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let mut probe = http_probe(IntOrString::Int(i32::from(port)), "/", 1);
        if let Some(action) = probe.http_get.as_mut() {
            action.scheme = Some("HTTPS".into());
        }
        let target = loopback_target(Vec::new());
        assert_eq!(run_probe(&probe, &target).await, ProbeResult::Success);
        // Plain HTTP against the TLS port fails.
        let plain = run_probe(
            &http_probe(IntOrString::Int(i32::from(port)), "/", 1),
            &target,
        )
        .await;
        assert!(matches!(plain, ProbeResult::Failure(_)), "{plain:?}");
    });
}

#[test]
fn tcp_probe_open_and_closed_ports() {
    in_fresh_netns(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open = listener.local_addr().expect("addr").port();
        let closed = {
            let spare = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            spare.local_addr().expect("addr").port()
        };
        let target = loopback_target(Vec::new());
        let tcp = |port: u16| Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(run_probe(&tcp(open), &target).await, ProbeResult::Success);
        assert_eq!(
            run_probe(&tcp(closed), &target).await,
            ProbeResult::Failure(format!(
                "dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        drop(listener);
    });
}

#[test]
fn http_hooks_ignore_the_status_but_not_connection_errors() {
    in_fresh_netns(|| async {
        let server = TestServer::start().await;
        let target = loopback_target(Vec::new());
        let hook = |port: u16, path: &str| LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some(path.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        run_hook(&hook(server.port, "/fail"), &target, Duration::from_secs(2))
            .await
            .expect("a 500 does not fail a hook");
        let head = server.heads().pop().expect("request").to_ascii_lowercase();
        assert!(
            head.contains("user-agent: kube-lifecycle/1.33\r\n"),
            "{head}"
        );
        let closed = {
            let spare = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            spare.local_addr().expect("addr").port()
        };
        let err = run_hook(&hook(closed, "/stop"), &target, Duration::from_secs(2)).await;
        match err {
            Err(HookError::Http(message)) => assert_eq!(
                message,
                format!("Get \"http://127.0.0.1:{closed}/stop\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
            ),
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// A busybox container started with `skiff-runtime shim`, killed on drop.
struct RunningContainer {
    dir: tempfile::TempDir,
    shim: Child,
    pid: i32,
}

impl RunningContainer {
    fn start(args: &[&str]) -> RunningContainer {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs_dir = dir.path().join("rootfs");
        rootfs::build_busybox_rootfs(&rootfs_dir).expect("busybox rootfs");
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state");
        let spec = bundle::busybox_spec(
            &rootfs_dir,
            "probe-test",
            args,
            bundle::minimal_mounts(),
            None,
        );
        spec.save(bundle.join("config.json")).expect("config.json");
        let mut shim = Command::new(BIN)
            .args(["shim", "--id", "probe-test", "--bundle"])
            .arg(&bundle)
            .arg("--state-dir")
            .arg(&state)
            .arg("--log")
            .arg(dir.path().join("c.log"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn shim");
        let mut line = String::new();
        BufReader::new(shim.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("shim reply");
        let pid = match serde_json::from_str(&line).expect("reply JSON") {
            ShimReply::Started { pid } => pid,
            other => panic!("unexpected reply {other:?}"),
        };
        RunningContainer { dir, shim, pid }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn target(&self) -> ProbeTarget {
        ProbeTarget {
            pod_ip: "127.0.0.1".parse().expect("ip"),
            container_ports: Vec::new(),
            exec_binary: PathBuf::from(BIN),
            instance_dir: self.dir.path().join("bundle"),
            pid: self.pid,
        }
    }

    /// Live (not zombie) processes in the container's pid namespace with this argv.
    fn processes_running(&self, argv: &[&str]) -> Vec<i32> {
        let wanted: Vec<u8> = argv
            .iter()
            .flat_map(|a| a.bytes().chain(std::iter::once(0)))
            .collect();
        let namespace = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid)).ok();
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let proc = Path::new("/proc").join(pid.to_string());
                std::fs::read(proc.join("cmdline")).ok().as_deref() == Some(&wanted[..])
                    && std::fs::read_link(proc.join("ns/pid")).ok() == namespace
            })
            .collect()
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        // SAFETY: kill with integer arguments.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.shim.wait();
    }
}

fn exec_probe(command: &[&str], timeout_seconds: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| c.to_string()).collect()),
        }),
        timeout_seconds: Some(timeout_seconds),
        ..Default::default()
    }
}

fn exec_hook(command: &[&str]) -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| c.to_string()).collect()),
        }),
        ..Default::default()
    }
}

#[test]
fn exec_probe_follows_a_file_in_the_container() {
    let container = RunningContainer::start(&["sleep", "600"]);
    std::fs::write(container.rootfs().join("tmp/healthy"), "ok\n").expect("healthy file");
    let target = container.target();
    in_fresh_netns(move || async move {
        let probe = exec_probe(&["cat", "/tmp/healthy"], 5);
        assert_eq!(run_probe(&probe, &target).await, ProbeResult::Success);
        run_hook(
            &exec_hook(&["rm", "/tmp/healthy"]),
            &target,
            Duration::from_secs(5),
        )
        .await
        .expect("rm through an exec hook");
        let failed = run_probe(&probe, &target).await;
        assert_eq!(
            failure_text(&failed),
            "cat: can't open '/tmp/healthy': No such file or directory\n"
        );
        // Output is capped at 10 KiB.
        let noisy = exec_probe(&["sh", "-c", "yes 0123456789 | head -c 50000; exit 1"], 5);
        let result = run_probe(&noisy, &target).await;
        assert_eq!(failure_text(&result).len(), 10 * 1024);
    });
    assert!(!container.rootfs().join("tmp/healthy").exists());
}

#[test]
fn exec_probe_timeout_kills_the_command_in_the_container() {
    let container = RunningContainer::start(&["sleep", "600"]);
    let target = container.target();
    let started = Instant::now();
    let result =
        in_fresh_netns(
            move || async move { run_probe(&exec_probe(&["sleep", "5"], 1), &target).await },
        );
    let elapsed = started.elapsed();
    assert_eq!(
        result,
        ProbeResult::Failure("command \"sleep 5\" timed out".into())
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // SIGKILL is delivered at once, but give the kernel a moment to tear the process down.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !container.processes_running(&["sleep", "5"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "sleep 5 left running in the container"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(container.processes_running(&["sleep", "600"]).len(), 1);
}

#[test]
fn exec_and_sleep_hooks() {
    let container = RunningContainer::start(&["sleep", "600"]);
    let target = container.target();
    in_fresh_netns(move || async move {
        run_hook(
            &exec_hook(&["sh", "-c", "echo started > /tmp/hook"]),
            &target,
            Duration::from_secs(5),
        )
        .await
        .expect("postStart-like hook");
        let seen = run_probe(
            &exec_probe(&["grep", "-q", "started", "/tmp/hook"], 5),
            &target,
        )
        .await;
        assert_eq!(seen, ProbeResult::Success);

        let failing = exec_hook(&["sh", "-c", "echo bad >&2; exit 3"]);
        match run_hook(&failing, &target, Duration::from_secs(5)).await {
            Err(err @ HookError::ExecFailed { .. }) => {
                assert_eq!(
                    err.to_string(),
                    "command 'sh -c echo bad >&2; exit 3' exited with 3: bad\n"
                );
                assert!(err
                    .describe(&failing, "app", "web_default(uid)")
                    .starts_with(
                        "Exec lifecycle hook ([sh -c echo bad >&2; exit 3]) for Container \"app\""
                    ));
            }
            other => panic!("unexpected {other:?}"),
        }
        let slow = exec_hook(&["sleep", "5"]);
        let err = run_hook(&slow, &target, Duration::from_millis(500)).await;
        assert!(
            matches!(err, Err(HookError::ExecTimedOut { .. })),
            "{err:?}"
        );

        let started = Instant::now();
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        };
        run_hook(&sleep, &target, Duration::from_secs(5))
            .await
            .expect("sleep hook");
        assert!(started.elapsed() >= Duration::from_secs(1));
    });
    assert_eq!(
        std::fs::read_to_string(container.rootfs().join("tmp/hook")).expect("hook file"),
        "started\n"
    );
}

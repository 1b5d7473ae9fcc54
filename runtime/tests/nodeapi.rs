//! The node API for real: TLS with client certificates made here, kube-rs as the client,
//! CRI log files written by the test, a busybox container started with `skiff-runtime shim`
//! in a network namespace the test makes (exec, port-forward), and a real cgroup with a
//! busy process (stats). Needs root. Everything the tests create is removed by guards.

#[path = "support/bundle.rs"]
mod bundle;
#[path = "support/rootfs.rs"]
mod rootfs;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{AsyncBufReadExt, SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use oci_spec::runtime::Spec;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use skiff_runtime::cgroups::{CgroupManager, QosClass, Resources};
use skiff_runtime::container::ShimReply;
use skiff_runtime::nodeapi::{
    start, ContainerInstance, LookupError, NodeApiConfig, NodeApiServer, NodeView, PodCgroups,
};

const BIN: &str = env!("CARGO_BIN_EXE_skiff-runtime");
const TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test run) uses at the same time.
fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_NAME.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------------------
// PKI

/// A client certificate and key, PEM.
#[derive(Clone)]
struct Identity {
    cert_pem: String,
    key_pem: String,
}

struct Pki {
    ca_file: PathBuf,
    control_plane: Identity,
    wrong_cn: Identity,
    other_ca: Identity,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn issue(issuer: &Issuer<'_, KeyPair>, common_name: &str) -> Identity {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:masters");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_pem = ca_params("skiff-ca")
        .self_signed(&ca_key)
        .expect("ca")
        .pem();
    let ca = Issuer::new(ca_params("skiff-ca"), ca_key);
    let other_key = KeyPair::generate().expect("other ca key");
    let other = Issuer::new(ca_params("skiff-ca"), other_key);
    let ca_file = dir.join("ca.crt");
    fs::write(&ca_file, &ca_pem).expect("write ca");
    Pki {
        ca_file,
        control_plane: issue(&ca, "skiff-apiserver-kubelet-client"),
        wrong_cn: issue(&ca, "someone-else"),
        other_ca: issue(&other, "skiff-apiserver-kubelet-client"),
    }
}

/// A kube-rs client for the node API at `addr` presenting `identity`.
fn client(addr: SocketAddr, identity: &Identity) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let mut config = kube::Config::new(format!("https://{addr}").parse().expect("url"));
    // The node's serving certificate is self-signed, as a kubelet's is.
    config.accept_invalid_certs = true;
    config.default_retry = false;
    config.auth_info = serde_json::from_value(serde_json::json!({
        "client-certificate-data": b64(&identity.cert_pem),
        "client-key-data": b64(&identity.key_pem),
    }))
    .expect("auth info");
    kube::Client::try_from(config).expect("client")
}

fn get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).expect("request")
}

// ---------------------------------------------------------------------------------------
// The node's view, faked

#[derive(Default)]
struct FakeView {
    /// (namespace, pod, container, previous) → instance.
    containers: Mutex<HashMap<(String, String, String, bool), ContainerInstance>>,
    netns: Mutex<HashMap<(String, String), PathBuf>>,
    pods: Mutex<Vec<PodCgroups>>,
}

impl FakeView {
    fn add(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
        instance: ContainerInstance,
    ) {
        self.containers.lock().expect("lock").insert(
            (namespace.into(), pod.into(), container.into(), previous),
            instance,
        );
    }
}

impl NodeView for FakeView {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInstance, LookupError> {
        let containers = self.containers.lock().expect("lock");
        let key = (
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
            previous,
        );
        if let Some(instance) = containers.get(&key) {
            return Ok(instance.clone());
        }
        let same_pod = |k: &(String, String, String, bool)| k.0 == namespace && k.1 == pod;
        if !containers.keys().any(same_pod) {
            return Err(LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            });
        }
        if previous && containers.keys().any(|k| same_pod(k) && k.2 == container) {
            return Err(LookupError::NoPreviousInstance {
                pod: pod.into(),
                container: container.into(),
            });
        }
        Err(LookupError::ContainerNotFound {
            pod: pod.into(),
            container: container.into(),
        })
    }

    fn pod_netns(&self, namespace: &str, pod: &str) -> Result<PathBuf, LookupError> {
        self.netns
            .lock()
            .expect("lock")
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })
    }

    fn pods(&self) -> Vec<PodCgroups> {
        self.pods.lock().expect("lock").clone()
    }
}

async fn start_server(dir: &Path, pki: &Pki, view: Arc<FakeView>) -> NodeApiServer {
    start(
        NodeApiConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            node_name: "node-test".into(),
            node_ip: "127.0.0.1".parse().expect("ip"),
            ca_file: pki.ca_file.clone(),
            pki_dir: dir.join("pki"),
            exec_binary: BIN.into(),
        },
        view,
    )
    .await
    .expect("start node API")
}

/// The HTTP code and message of a `Status` error.
fn api_status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("expected a Status error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// TLS and authorization

#[tokio::test(flavor = "multi_thread")]
async fn only_the_control_plane_certificate_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let server = start_server(dir.path(), &pki, Arc::new(FakeView::default())).await;
    let addr = server.local_addr();

    let ok = client(addr, &pki.control_plane)
        .request_text(get("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(ok, "ok");

    let refused = client(addr, &pki.wrong_cn)
        .request_text(get("/healthz"))
        .await
        .expect_err("wrong CN must be refused");
    let (code, message) = api_status(refused);
    assert_eq!(code, 403);
    assert!(
        message.contains("skiff-apiserver-kubelet-client"),
        "{message}"
    );

    let foreign = client(addr, &pki.other_ca)
        .request_text(get("/healthz"))
        .await
        .expect_err("a certificate of another CA must be refused");
    assert!(!matches!(foreign, kube::Error::Api(_)), "{foreign:?}");

    // No client certificate at all: the handshake fails.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(format!("https://{addr}").parse().expect("url"));
    config.accept_invalid_certs = true;
    config.default_retry = false;
    let anonymous = kube::Client::try_from(config).expect("client");
    let err = anonymous
        .request_text(get("/healthz"))
        .await
        .expect_err("no client certificate must be refused");
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");

    // The serving certificate is kept and reused on restart.
    let cert = fs::read_to_string(dir.path().join("pki/node.crt")).expect("node.crt");
    server.stop().await;
    let again = start_server(dir.path(), &pki, Arc::new(FakeView::default())).await;
    assert_eq!(
        fs::read_to_string(dir.path().join("pki/node.crt")).expect("node.crt"),
        cert
    );
    let unknown = client(again.local_addr(), &pki.control_plane)
        .request_text(get("/no/such/route"))
        .await
        .expect_err("404");
    assert_eq!(api_status(unknown).0, 404);
    again.stop().await;
}

// ---------------------------------------------------------------------------------------
// Logs

const T1: &str = "2024-05-01T10:00:01.000000001Z";
const T2: &str = "2024-05-01T10:00:02.000000002Z";
const T3: &str = "2024-05-01T10:00:03.000000003Z";

/// A pod `default/web` with container `app`: instance 0 exited, instance 1 running.
fn log_fixture(dir: &Path, view: &FakeView) -> ContainerInstance {
    let pod_dir = dir.join("pods/uid-1");
    let instance = |attempt: u32| ContainerInstance {
        pod_uid: "uid-1".into(),
        instance_dir: pod_dir.join(format!("containers/app/{attempt}")),
        log: pod_dir.join(format!("logs/app/{attempt}.log")),
        running_pid: None,
    };
    let (previous, current) = (instance(0), instance(1));
    for instance in [&previous, &current] {
        fs::create_dir_all(&instance.instance_dir).expect("instance dir");
        fs::create_dir_all(instance.log.parent().expect("parent")).expect("log dir");
    }
    fs::write(
        &previous.log,
        format!("{T1} stdout F old one\n{T1} stderr F old two\n"),
    )
    .expect("write");
    fs::write(previous.instance_dir.join("exit.json"), "{}").expect("exit.json");
    fs::write(
        format!("{}.1", current.log.display()),
        format!("{T1} stdout F rotated\n{T1} stdout P joi\n"),
    )
    .expect("write");
    fs::write(
        &current.log,
        format!("{T2} stdout F ned\n{T2} stderr F warn\n{T3} stdout F last\n"),
    )
    .expect("write");
    view.add("default", "web", "app", false, current.clone());
    view.add("default", "web", "app", true, previous);
    view.add("default", "web", "fresh", false, instance(9));
    current
}

#[tokio::test(flavor = "multi_thread")]
async fn container_logs_with_the_kubelet_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let view = Arc::new(FakeView::default());
    log_fixture(dir.path(), &view);
    let server = start_server(dir.path(), &pki, view).await;
    let client = client(server.local_addr(), &pki.control_plane);
    let logs = |query: &str| {
        let client = client.clone();
        let path = format!("/containerLogs/default/web/app{query}");
        async move { client.request_text(get(&path)).await }
    };

    assert_eq!(
        logs("").await.expect("logs"),
        "rotated\njoined\nwarn\nlast\n"
    );
    assert_eq!(logs("?tailLines=2").await.expect("tail"), "warn\nlast\n");
    assert_eq!(
        logs(&format!("?sinceTime={T2}&timestamps=true"))
            .await
            .expect("since"),
        format!("{T2} warn\n{T3} last\n")
    );
    assert_eq!(logs("?limitBytes=10").await.expect("limit"), "rotated\njo");
    assert_eq!(
        logs("?previous=true").await.expect("previous"),
        "old one\nold two\n"
    );
    // sinceSeconds is relative to now: all of these lines are older.
    assert_eq!(logs("?sinceSeconds=60").await.expect("since seconds"), "");

    let (code, _) = api_status(logs("?tailLines=many").await.expect_err("400"));
    assert_eq!(code, 400);

    let no_previous = client
        .request_text(get("/containerLogs/default/web/fresh?previous=1"))
        .await
        .expect_err("400");
    assert_eq!(
        api_status(no_previous),
        (
            400,
            "previous terminated container \"fresh\" in pod \"web\" not found".to_string()
        )
    );
    let missing_container = client
        .request_text(get("/containerLogs/default/web/nope"))
        .await
        .expect_err("404");
    assert_eq!(api_status(missing_container).0, 404);
    let missing_pod = client
        .request_text(get("/containerLogs/default/nope/app"))
        .await
        .expect_err("404");
    assert_eq!(api_status(missing_pod).0, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn followed_logs_stream_new_lines_through_rotation_until_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let view = Arc::new(FakeView::default());
    let current = log_fixture(dir.path(), &view);
    let server = start_server(dir.path(), &pki, view).await;
    let client = client(server.local_addr(), &pki.control_plane);
    let stream = client
        .request_stream(get(
            "/containerLogs/default/web/app?follow=true&tailLines=1&timestamps=true",
        ))
        .await
        .expect("follow");
    let mut lines = Box::pin(stream.lines());
    macro_rules! next_line {
        () => {
            tokio::time::timeout(TIMEOUT, lines.next())
                .await
                .expect("a line in time")
        };
    }
    assert_eq!(
        next_line!().expect("line").expect("read"),
        format!("{T3} last")
    );

    let append = |text: String| {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&current.log)
            .expect("open log");
        file.write_all(text.as_bytes()).expect("append");
    };
    append(format!("{T3} stdout F new line\n"));
    assert_eq!(
        next_line!().expect("line").expect("read"),
        format!("{T3} new line")
    );
    // Rotation as the shim does it: rename, then a new file.
    fs::rename(&current.log, format!("{}.2", current.log.display())).expect("rotate");
    fs::write(
        &current.log,
        format!("{T3} stdout P after \n{T3} stdout F rotation\n"),
    )
    .expect("new file");
    assert_eq!(
        next_line!().expect("line").expect("read"),
        format!("{T3} after rotation")
    );
    append(format!("{T3} stderr F the end\n"));
    fs::write(current.instance_dir.join("exit.json"), "{}").expect("exit.json");
    assert_eq!(
        next_line!().expect("line").expect("read"),
        format!("{T3} the end")
    );
    assert!(next_line!().is_none(), "the stream ends after exit.json");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// A real container: exec and port-forward

/// A network namespace made with `ip netns add`, loopback up, deleted on drop.
struct NetnsGuard(String);

impl NetnsGuard {
    fn new() -> Self {
        let name = unique_name("skiff-nodeapi");
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip");
        assert!(status.success(), "ip netns add {name}");
        let guard = Self(name);
        let status = Command::new("ip")
            .args(["-n", &guard.0, "link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(status.success(), "lo up in {}", guard.0);
        guard
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }

    /// Whether something listens on TCP `port` in the namespace (IPv4 or dual-stack).
    fn listens_on(&self, port: u16) -> bool {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "cat",
                "/proc/net/tcp",
                "/proc/net/tcp6",
            ])
            .output()
            .expect("ip netns exec");
        let suffix = format!(":{port:04X}");
        String::from_utf8_lossy(&output.stdout).lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&suffix) && fields[3] == "0A"
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A busybox container run by `skiff-runtime shim`, killed on drop.
struct RunningContainer {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    pid: i32,
    shim: Child,
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.shim.wait();
    }
}

fn container_spec(rootfs: &Path, netns: &Path, args: &[&str]) -> Spec {
    let mut mounts = bundle::minimal_mounts();
    mounts.push(bundle::mount(
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ],
    ));
    mounts.push(bundle::mount(
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ));
    bundle::busybox_spec(rootfs, "nodeapi-test", args, mounts, Some(netns))
}

fn start_container(netns: &NetnsGuard, args: &[&str]) -> RunningContainer {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    rootfs::build_busybox_rootfs(&rootfs).expect("busybox rootfs");
    let bundle = dir.path().join("bundle");
    fs::create_dir_all(&bundle).expect("bundle");
    container_spec(&rootfs, &netns.path(), args)
        .save(bundle.join("config.json"))
        .expect("config.json");
    let mut shim = Command::new(BIN)
        .args(["shim", "--id", "nodeapi-test", "--bundle"])
        .arg(&bundle)
        .arg("--state-dir")
        .arg(&bundle)
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
        other => panic!("container did not start: {other:?}"),
    };
    RunningContainer {
        _dir: dir,
        bundle,
        pid,
        shim,
    }
}

/// What an exec session produced.
#[derive(Debug, Default)]
struct ExecOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<Status>,
}

/// Opens a WebSocket with kube-rs (which offers v5 and v4), sends `input` frames
/// (channel byte first) and collects the output until the node closes.
async fn exec(client: &kube::Client, path: &str, input: Vec<Vec<u8>>) -> ExecOutput {
    let connection = client.connect(get(path)).await.expect("exec upgrade");
    assert!(
        connection.supports_stream_close(),
        "v5.channel.k8s.io chosen"
    );
    let mut stream = connection.into_stream();
    for frame in input {
        stream.send(frame.into()).await.expect("send frame");
    }
    let mut output = ExecOutput::default();
    let deadline = tokio::time::sleep(TIMEOUT);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = &mut deadline => panic!("exec did not finish: {output:?}"),
        };
        let Some(message) = message else { break };
        let message = message.expect("websocket message");
        if message.is_close() {
            break;
        }
        let data = message.into_data();
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            1 => output.stdout.extend_from_slice(payload),
            2 => output.stderr.extend_from_slice(payload),
            3 => {
                assert!(output.status.is_none(), "one status only");
                output.status = Some(serde_json::from_slice(payload).expect("status JSON"));
            }
            other => panic!("unexpected channel {other}"),
        }
    }
    output
}

fn exit_code_cause(status: &Status) -> Option<String> {
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|cause| cause.reason.as_deref() == Some("ExitCode"))?
        .message
        .clone()
}

fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_and_port_forward_into_a_running_container() {
    let netns = NetnsGuard::new();
    let container = start_container(&netns, &["nc", "-ll", "-p", "8080", "-e", "cat"]);
    wait_until("nc to listen on 8080", || netns.listens_on(8080));

    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let view = Arc::new(FakeView::default());
    view.add(
        "default",
        "box",
        "main",
        false,
        ContainerInstance {
            pod_uid: "uid-box".into(),
            instance_dir: container.bundle.clone(),
            log: dir.path().join("unused.log"),
            running_pid: Some(container.pid),
        },
    );
    view.add(
        "default",
        "box",
        "stopped",
        false,
        ContainerInstance {
            pod_uid: "uid-box".into(),
            instance_dir: container.bundle.clone(),
            log: dir.path().join("unused.log"),
            running_pid: None,
        },
    );
    view.netns
        .lock()
        .expect("lock")
        .insert(("default".into(), "box".into()), netns.path());
    let server = start_server(dir.path(), &pki, view).await;
    let client = client(server.local_addr(), &pki.control_plane);

    // stdout, stderr and a non-zero exit code.
    let output = exec(
        &client,
        "/exec/default/box/main?command=sh&command=-c&command=hostname%3B%20echo%20oops%20%3E%262%3B%20exit%203&stdout=true&stderr=true",
        Vec::new(),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&output.stdout), "nodeapi-test\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "oops\n");
    let status = output.status.expect("status");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(exit_code_cause(&status).as_deref(), Some("3"));

    // stdin, closed with the v5 close frame; success.
    let output = exec(
        &client,
        "/exec/default/box/main?command=sh&command=-c&command=tr%20a-z%20A-Z&stdin=true&stdout=true",
        vec![b"\x00hello ".to_vec(), b"\x00world\n".to_vec(), vec![255, 0]],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&output.stdout), "HELLO WORLD\n");
    assert_eq!(
        output.status.expect("status").status.as_deref(),
        Some("Success")
    );

    // A terminal: resize first, then a shell reads its size and exits.
    let output = exec(
        &client,
        "/exec/default/box/main?command=sh&stdin=true&stdout=true&tty=true",
        vec![
            [&[4u8][..], br#"{"Width":123,"Height":45}"#].concat(),
            b"\x00stty size; exit 5\n".to_vec(),
        ],
    )
    .await;
    let screen = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(screen.contains("45 123"), "{screen:?}");
    assert_eq!(
        exit_code_cause(&output.status.expect("status")).as_deref(),
        Some("5")
    );

    // An unknown command: the exec helper's 127.
    let output = exec(
        &client,
        "/exec/default/box/main?command=no-such-command&stdout=true&stderr=true",
        Vec::new(),
    )
    .await;
    assert_eq!(
        exit_code_cause(&output.status.expect("status")).as_deref(),
        Some("127")
    );

    // A container that does not run, and a request without a WebSocket upgrade.
    let err = client
        .connect(get("/exec/default/box/stopped?command=true&stdout=true"))
        .await
        .err()
        .expect("400");
    assert_eq!(api_status(err).0, 400);
    let err = client
        .request_text(get("/exec/default/box/main?command=true&stdout=true"))
        .await
        .expect_err("400");
    assert_eq!(api_status(err).0, 400);

    // Port-forward: 8080 is the echo server, nothing listens on 8081.
    let connection = client
        .connect(get("/portForward/default/box?ports=8080,8081"))
        .await
        .expect("port-forward upgrade");
    let mut stream = connection.into_stream();
    macro_rules! next_frame {
        () => {
            tokio::time::timeout(TIMEOUT, stream.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("message")
                .into_data()
                .to_vec()
        };
    }
    // Each channel opens with its port, little endian.
    for expected in [
        [0u8, 0x90, 0x1f],
        [1, 0x90, 0x1f],
        [2, 0x91, 0x1f],
        [3, 0x91, 0x1f],
    ] {
        assert_eq!(next_frame!(), expected.to_vec());
    }
    let error = next_frame!();
    assert_eq!(error[0], 3);
    let message = String::from_utf8_lossy(&error[1..]).into_owned();
    assert!(message.contains("8081"), "{message}");
    stream
        .send(b"\x00ping through the pod\n".to_vec().into())
        .await
        .expect("send");
    let mut echoed = Vec::new();
    while echoed.len() < "ping through the pod\n".len() {
        let frame = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("message")
            .into_data();
        assert_eq!(frame[0], 0, "data channel of port 8080");
        echoed.extend_from_slice(&frame[1..]);
    }
    assert_eq!(String::from_utf8_lossy(&echoed), "ping through the pod\n");
    SinkExt::close(&mut stream).await.expect("close");

    let missing = client
        .connect(get("/portForward/default/nope?ports=80"))
        .await
        .err()
        .expect("404");
    assert_eq!(api_status(missing).0, 404);
    server.stop().await;
    drop(container);
}

// ---------------------------------------------------------------------------------------
// Stats

/// A node cgroup hierarchy under a test parent, with a busy process; removed on drop.
struct BusyPod {
    manager: CgroupManager,
    busy: Child,
}

impl Drop for BusyPod {
    fn drop(&mut self) {
        let _ = self.busy.kill();
        let _ = self.busy.wait();
        let _ = self.manager.remove_node_hierarchy();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_summary_reports_cgroup_cpu_and_memory() {
    let parent = unique_name("skiff-nodeapi-test");
    let manager = CgroupManager::new(&parent).expect("cgroup manager");
    manager.ensure_node_hierarchy().expect("node hierarchy");
    let pod = manager
        .create_pod("uid-busy", QosClass::Burstable, &Resources::default())
        .expect("pod cgroup");
    let container = manager
        .create_container(&pod, "spin", &Resources::default())
        .expect("container cgroup");
    let busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("busy loop");
    let guard = BusyPod { manager, busy };
    for procs in container.procs_files() {
        fs::write(&procs, guard.busy.id().to_string()).expect("join cgroup");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let view = Arc::new(FakeView::default());
    view.pods.lock().expect("lock").push(PodCgroups {
        namespace: "default".into(),
        name: "busy".into(),
        uid: "uid-busy".into(),
        pod: pod.clone(),
        containers: vec![("spin".into(), container.clone())],
    });
    let server = start_server(dir.path(), &pki, view).await;
    let client = client(server.local_addr(), &pki.control_plane);
    std::thread::sleep(Duration::from_millis(200));

    let text = client
        .request_text(get("/stats/summary"))
        .await
        .expect("summary");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let node = &summary["node"];
    assert_eq!(node["nodeName"], "node-test");
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0,
        "{node}"
    );
    assert!(node["cpu"]["usageNanoCores"].as_u64().is_some(), "{node}");
    assert!(
        node["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0,
        "{node}"
    );
    assert!(
        node["memory"]["availableBytes"].as_u64().unwrap_or(0) > 0,
        "{node}"
    );

    let pods = summary["pods"].as_array().expect("pods");
    assert_eq!(pods.len(), 1, "{summary}");
    let pod_stats = &pods[0];
    assert_eq!(pod_stats["podRef"]["name"], "busy");
    assert_eq!(pod_stats["podRef"]["uid"], "uid-busy");
    let spin = &pod_stats["containers"][0];
    assert_eq!(spin["name"], "spin");
    // A busy loop uses about a core: well above a tenth of one.
    assert!(
        spin["cpu"]["usageNanoCores"].as_u64().unwrap_or(0) > 100_000_000,
        "{spin}"
    );
    assert!(
        spin["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0,
        "{spin}"
    );
    assert!(spin["memory"]["usageBytes"].as_u64().is_some(), "{spin}");
    assert!(
        pod_stats["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap_or(0)
            >= spin["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0),
        "{pod_stats}"
    );

    // The second request uses the first one's readings.
    let again: serde_json::Value = serde_json::from_str(
        &client
            .request_text(get("/stats/summary"))
            .await
            .expect("summary"),
    )
    .expect("JSON");
    assert!(
        again["pods"][0]["containers"][0]["cpu"]["usageNanoCores"]
            .as_u64()
            .unwrap_or(0)
            > 100_000_000,
        "{again}"
    );
    server.stop().await;
    drop(guard);
}

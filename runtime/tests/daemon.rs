//! skiff-runtime end to end, as root, on the real kernel: a control plane in-process and the
//! daemon as a process, both inside a network namespace the test makes (the node's "host"
//! namespace: the bridge, veths and routes go there, never into the machine's own), with
//! its own cgroup parent and temp root and run dirs. Every test removes what it made, even
//! when it fails.

#[path = "support/image/mod.rs"]
mod image_support;
#[path = "support/registry.rs"]
mod registry;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_control::server::{ApiServer, ServerConfig, ServerHandle};
use skiff_control::store::sqlite::{SqliteOptions, SqliteStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node's world: its network namespace, dirs, cgroup parent, daemon. Dropping the
/// [`World`] guard removes all of it.
struct NodeWorld {
    netns: String,
    dir: tempfile::TempDir,
    cgroup_parent: String,
    daemon: Mutex<Option<Child>>,
}

struct World(Arc<NodeWorld>);

impl World {
    fn new() -> World {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let netns = format!("skiff-dt-{}-{n}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {netns}");
        let status = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(status.success());
        World(Arc::new(NodeWorld {
            netns,
            dir: tempfile::tempdir().unwrap(),
            cgroup_parent: format!("skiff-test-dt-{}-{n}", std::process::id()),
            daemon: Mutex::new(None),
        }))
    }

    /// Runs `body` on a thread inside the node's network namespace, on its own runtime.
    fn run<F>(&self, body: impl FnOnce(Arc<NodeWorld>) -> F + Send + 'static)
    where
        F: std::future::Future<Output = ()>,
    {
        let world = self.0.clone();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/run/netns/{}", world.netns)).unwrap();
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(body(world))
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl NodeWorld {
    fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn pod_cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for qos in ["", "burstable", "besteffort"] {
            let dir = Path::new("/sys/fs/cgroup/memory")
                .join(&self.cgroup_parent)
                .join(qos);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with("pod") {
                    found.push(e.path());
                }
            }
        }
        found
    }

    fn mounts_under_dir(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root))
            .collect()
    }

    fn veths(&self) -> Vec<String> {
        sh(
            "ip",
            &["-n", &self.netns, "-o", "link", "show", "type", "veth"],
        )
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|s| s.split('@').next().unwrap_or(s).to_string())
        })
        .collect()
    }

    fn kill_daemon(&self) {
        if let Some(mut d) = self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let w = &self.0;
        w.kill_daemon();
        if let Ok(cg) = skiff_runtime::cgroups::CgroupManager::new(&w.cgroup_parent) {
            for (uid, _) in cg.list_pods().unwrap_or_default() {
                let _ = cg.remove_pod(&uid);
            }
            let _ = cg.remove_node_hierarchy();
        }
        let mut mounts = w.mounts_under_dir();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = Command::new("ip").args(["netns", "del", &w.netns]).status();
    }
}

fn binary_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff-runtime"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pause_binary() -> PathBuf {
    let pause = binary_dir().join("skiff-pause");
    assert!(
        pause.exists(),
        "{} is missing: run `cargo build -p skiff-pause` (make test does)",
        pause.display()
    );
    pause
}

struct Cluster {
    server: ServerHandle,
    data: PathBuf,
    url: String,
}

async fn start_control_plane(data: &Path) -> Cluster {
    let store = SqliteStore::open(&data.join("state.db"), SqliteOptions::default())
        .await
        .unwrap();
    let config = ServerConfig::new(data.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    let api = ApiServer::new(store, config).unwrap();
    let server = api.start().await.unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr.port());
    Cluster {
        server,
        data: data.to_path_buf(),
        url,
    }
}

impl Cluster {
    async fn admin(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.data.join("admin.kubeconfig")).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

fn start_daemon(world: &NodeWorld, cluster: &Cluster) {
    start_daemon_with(world, cluster, &[]);
}

fn start_daemon_with(world: &NodeWorld, cluster: &Cluster, extra: &[String]) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(world.dir.path().join("daemon.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff-runtime"))
        .args(["--server", &cluster.url])
        .arg("--token")
        .arg(format!("@{}", cluster.data.join("node-token").display()))
        .arg("--ca-file")
        .arg(cluster.data.join("pki/ca.crt"))
        .args(["--node-name", "node-a", "--node-ip", "127.0.0.1"])
        .arg("--root-dir")
        .arg(world.root_dir())
        .arg("--run-dir")
        .arg(world.run_dir())
        .args(["--cgroup-parent", &world.cgroup_parent])
        .arg("--pause-binary")
        .arg(pause_binary())
        .args(["--cluster-dns", "10.96.0.10"])
        .args(extra)
        .env("RUST_LOG", "info,skiff_runtime=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    *world.daemon.lock().unwrap() = Some(child);
}

fn daemon_log(world: &NodeWorld) -> String {
    std::fs::read_to_string(world.dir.path().join("daemon.log")).unwrap_or_default()
}

/// A control plane, the busybox image on the node, the daemon running and registered.
async fn boot(world: &NodeWorld) -> (Cluster, kube::Client, String) {
    let data = world.dir.path().join("control");
    std::fs::create_dir_all(&data).unwrap();
    let cluster = start_control_plane(&data).await;
    let client = cluster.admin().await;
    let image = import_busybox(world).await;
    start_daemon(world, &cluster);
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        "the node to register",
        Duration::from_secs(20),
        world,
        async || nodes.get_opt("node-a").await.ok().flatten(),
    )
    .await;
    (cluster, client, image)
}

/// Waits until the pod satisfies `done`, and returns it.
async fn wait_pod(
    world: &NodeWorld,
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Pod) -> bool,
) -> Pod {
    wait_for(&format!("pod {name}: {what}"), timeout, world, async || {
        pods.get(name).await.ok().filter(|p| done(p))
    })
    .await
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminated(p: &Pod, c: &str) -> Option<k8s_openapi::api::core::v1::ContainerStateTerminated> {
    container_state(p, c)?.state.as_ref()?.terminated.clone()
}

fn running(p: &Pod, c: &str) -> bool {
    container_state(p, c)
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn log_of(world: &NodeWorld, p: &Pod, container: &str, attempt: i32) -> String {
    let uid = p.metadata.uid.as_deref().unwrap();
    std::fs::read_to_string(
        world
            .root_dir()
            .join("pods")
            .join(uid)
            .join(format!("logs/{container}/{attempt}.log")),
    )
    .unwrap_or_default()
}

async fn import_busybox(world: &NodeWorld) -> String {
    let layout = image_support::build_busybox_layout(world.dir.path());
    let store = skiff_runtime::image::ImageStore::open(&world.root_dir()).unwrap();
    store.import_archive(&layout.archive).await.unwrap();
    layout.reference
}

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    world: &NodeWorld,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\n--- daemon log ---\n{}",
                daemon_log(world)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

fn container_state<'a>(
    p: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

#[test]
fn a_pod_runs_shares_localhost_and_a_volume_and_leaves_nothing_when_deleted() {
    let world = World::new();
    world.run(|world| async move {
        let (cluster, client, image) = boot(&world).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = json!({
            "nodeName": "node-a",
            "terminationGracePeriodSeconds": 2,
            "volumes": [{"name": "shared", "emptyDir": {}}],
            "containers": [
                {"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                 "command": ["/bin/sh", "-c", "hostname > /shared/x; echo web-up; exec /bin/busybox httpd -f -p 8080 -h /shared"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                {"name": "client", "image": image, "imagePullPolicy": "IfNotPresent",
                 "command": ["/bin/sh", "-c", "until wget -qO- http://127.0.0.1:8080/x; do sleep 0.2; done; exec sleep 3600"],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
            ]
        });
        let created = pods.create(&PostParams::default(), &pod("web", spec)).await.unwrap();
        let uid = created.metadata.uid.clone().unwrap();
        let running = wait_for("the pod to run", Duration::from_secs(30), &world, async || {
            let p = pods.get("web").await.ok()?;
            let st = p.status.as_ref()?;
            let all_running = ["web", "client"].iter().all(|c| {
                container_state(&p, c)
                    .and_then(|s| s.state.as_ref())
                    .is_some_and(|s| s.running.is_some())
            });
            (st.phase.as_deref() == Some("Running") && all_running && st.pod_ip.is_some()).then_some(p)
        })
        .await;
        let pod_ip = running.status.as_ref().unwrap().pod_ip.clone().unwrap();
        assert!(pod_ip.starts_with("10.244."), "pod IP {pod_ip}");

        // From the node to the pod over the bridge: the emptyDir file holds the pod's
        // hostname, written by one container and served by it.
        let body = wait_for("the pod to serve HTTP", Duration::from_secs(10), &world, async || {
            http_get(&format!("{pod_ip}:8080"), "/x").await.ok().filter(|b| b.contains("200"))
        })
        .await;
        assert!(body.trim_end().ends_with("web"), "{body}");

        // The other container reached it on localhost; its stdout is in its CRI log.
        let log = world.root_dir().join("pods").join(&uid).join("logs/client/0.log");
        let text = wait_for("the client's log", Duration::from_secs(10), &world, async || {
            std::fs::read_to_string(&log).ok().filter(|t| t.contains(" stdout F web"))
        })
        .await;
        let first = text.lines().next().unwrap();
        let fields: Vec<&str> = first.splitn(4, ' ').collect();
        assert!(fields[0].parse::<jiff::Timestamp>().is_ok(), "{first}");
        assert_eq!(&fields[1..], ["stdout", "F", "web"]);

        // Through the control plane to the node's own API: logs and exec.
        let logs = pods
            .logs(
                "web",
                &kube::api::LogParams {
                    container: Some("client".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(logs.trim(), "web");
        let mut attached = pods
            .exec(
                "web",
                ["/bin/sh", "-c", "cat /shared/x; id -u; exit 3"],
                &kube::api::AttachParams::default()
                    .container("web")
                    .stderr(false),
            )
            .await
            .unwrap();
        let mut out = String::new();
        attached
            .stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        let status = attached.take_status().unwrap().await.unwrap();
        assert_eq!(out, "web\n0\n");
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");

        assert_eq!(world.veths().len(), 1, "one veth for one pod");
        assert_eq!(world.pod_cgroup_dirs().len(), 1);
        assert!(world.run_dir().join("netns").join(&uid).exists());

        pods.delete("web", &DeleteParams::default()).await.unwrap();
        wait_for("the pod to be gone", Duration::from_secs(20), &world, async || {
            pods.get_opt("web").await.ok().and_then(|p| p.is_none().then_some(()))
        })
        .await;
        wait_for("the node to clean up", Duration::from_secs(10), &world, async || {
            (world.veths().is_empty()
                && world.pod_cgroup_dirs().is_empty()
                && !world.root_dir().join("pods").join(&uid).exists()
                && world.mounts_under_dir().is_empty())
            .then_some(())
        })
        .await;
        assert!(!world.run_dir().join("netns").join(&uid).exists());
        cluster.server.shutdown().await;
    });
}

#[test]
fn exit_codes_restart_policies_oom_and_init_containers_are_reported() {
    let world = World::new();
    world.run(|world| async move {
        let (cluster, client, image) = boot(&world).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let c = |name: &str, script: &str| {
            json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                   "command": ["/bin/sh", "-c", script]})
        };
        let mut oom = c("hog", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done");
        oom["resources"] = json!({"limits": {"memory": "32Mi"}});
        let specs = [
            ("fail", json!({"restartPolicy": "Never", "containers": [c("main", "echo bye; exit 3")]})),
            ("done", json!({"restartPolicy": "OnFailure", "containers": [c("main", "exit 0")]})),
            ("oom", json!({"restartPolicy": "Never", "containers": [oom]})),
            ("crash", json!({"restartPolicy": "Always", "containers": [c("main", "echo crashing; exit 1")]})),
            ("init", json!({
                "restartPolicy": "Always",
                "volumes": [{"name": "work", "emptyDir": {}}],
                "initContainers": [
                    {"name": "first", "image": image, "command": ["/bin/sh", "-c", "echo 1 > /work/order"],
                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                    {"name": "second", "image": image, "command": ["/bin/sh", "-c", "echo 2 >> /work/order"],
                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                ],
                "containers": [{"name": "main", "image": image,
                    "command": ["/bin/sh", "-c", "cat /work/order; exec sleep 3600"],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
            })),
        ];
        for (name, mut spec) in specs {
            spec["nodeName"] = json!("node-a");
            spec["terminationGracePeriodSeconds"] = json!(1);
            pods.create(&PostParams::default(), &pod(name, spec)).await.unwrap();
        }

        let p = wait_pod(&world, &pods, "fail", "Failed", Duration::from_secs(30), |p| phase(p) == "Failed").await;
        let t = terminated(&p, "main").expect("terminated state");
        assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
        assert!(log_of(&world, &p, "main", 0).contains(" stdout F bye"));

        let p = wait_pod(&world, &pods, "done", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
        assert_eq!(terminated(&p, "main").unwrap().reason.as_deref(), Some("Completed"));

        let p = wait_pod(&world, &pods, "oom", "OOMKilled", Duration::from_secs(60), |p| phase(p) == "Failed").await;
        let t = terminated(&p, "hog").unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));

        let p = wait_pod(&world, &pods, "init", "Running after its init containers", Duration::from_secs(30), |p| {
            phase(p) == "Running" && running(p, "main")
        })
        .await;
        let inits = p.status.as_ref().unwrap().init_container_statuses.clone().unwrap();
        assert_eq!(inits.len(), 2);
        for s in &inits {
            let t = s.state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")), "{}", s.name);
        }
        let log = wait_for("the init order in main's log", Duration::from_secs(10), &world, async || {
            Some(log_of(&world, &p, "main", 0)).filter(|l| l.lines().count() >= 2)
        })
        .await;
        let order: Vec<&str> = log.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(order, ["1", "2"]);

        // A crashing container is restarted after a back-off of 10 s, and says so meanwhile.
        let p = wait_pod(&world, &pods, "crash", "in CrashLoopBackOff", Duration::from_secs(20), |p| {
            container_state(p, "main")
                .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .as_deref()
                == Some("CrashLoopBackOff")
        })
        .await;
        let last = container_state(&p, "main").unwrap().last_state.clone().unwrap();
        assert_eq!(last.terminated.unwrap().exit_code, 1);
        let p = wait_pod(&world, &pods, "crash", "restarted", Duration::from_secs(30), |p| {
            container_state(p, "main").is_some_and(|s| s.restart_count >= 1)
        })
        .await;
        assert_eq!(phase(&p), "Running");
        assert!(log_of(&world, &p, "main", 1).contains("crashing") || log_of(&world, &p, "main", 0).contains("crashing"));

        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(client.clone(), "default");
        let reasons = wait_for("the pods' events", Duration::from_secs(10), &world, async || {
            let list = events.list(&Default::default()).await.ok()?;
            let reasons: Vec<(String, String)> = list
                .items
                .iter()
                .map(|e| {
                    (
                        e.involved_object.name.clone().unwrap_or_default(),
                        e.reason.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let has = |pod: &str, reason: &str| reasons.iter().any(|(p, r)| p == pod && r == reason);
            (has("oom", "OOMKilling") && has("crash", "BackOff") && has("done", "Created") && has("done", "Started"))
                .then_some(reasons)
        })
        .await;
        assert!(!reasons.is_empty());

        for name in ["fail", "done", "oom", "crash", "init"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        wait_for("every pod to be gone", Duration::from_secs(30), &world, async || {
            pods.list(&Default::default()).await.ok().filter(|l| l.items.is_empty())
        })
        .await;
        wait_for("the node to clean up", Duration::from_secs(10), &world, async || {
            (world.veths().is_empty() && world.pod_cgroup_dirs().is_empty() && world.mounts_under_dir().is_empty())
                .then_some(())
        })
        .await;
        cluster.server.shutdown().await;
    });
}

#[test]
fn security_context_and_config_maps_reach_the_container() {
    let world = World::new();
    world.run(|world| async move {
        let (cluster, client, image) = boot(&world).await;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm = serde_json::from_value(json!({
            "metadata": {"name": "settings"}, "data": {"greeting": "hello", "mode": "one"}
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = json!({
            "nodeName": "node-a",
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}],
            "containers": [{
                "name": "main", "image": image,
                "command": ["/bin/sh", "-c",
                    "echo uid=$(id -u); grep CapEff /proc/self/status; touch /probe 2>/dev/null && echo rootfs=rw || echo rootfs=ro; echo greeting=$GREETING; while true; do echo mode=$(cat /cfg/mode); sleep 0.3; done"],
                "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
                "securityContext": {
                    "runAsUser": 1000, "runAsGroup": 1000,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }]
        });
        pods.create(&PostParams::default(), &pod("secure", spec)).await.unwrap();
        let p = wait_pod(&world, &pods, "secure", "Running", Duration::from_secs(30), |p| running(p, "main")).await;
        let log = wait_for("the container's report", Duration::from_secs(10), &world, async || {
            Some(log_of(&world, &p, "main", 0)).filter(|l| l.contains("mode=one"))
        })
        .await;
        assert!(log.contains(" stdout F uid=1000"), "{log}");
        // Non-root: the kernel clears effective capabilities at exec.
        assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
        assert!(log.contains(" stdout F rootfs=ro"), "{log}");
        assert!(log.contains(" stdout F greeting=hello"), "{log}");

        // The pod's processes run as uid 1000 in the kernel's own view.
        let pids = std::fs::read_to_string(
            world.pod_cgroup_dirs()[0].join("main").join("cgroup.procs"),
        )
        .unwrap();
        let pid = pids.lines().next().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid_line.split_whitespace().skip(1).all(|u| u == "1000"), "{uid_line}");

        // A change to the config map reaches the mounted file.
        let patch = json!({"data": {"mode": "two"}});
        cms.patch("settings", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .unwrap();
        wait_for("the updated config map in the container", Duration::from_secs(20), &world, async || {
            Some(log_of(&world, &p, "main", 0)).filter(|l| l.contains("mode=two"))
        })
        .await;
        pods.delete("secure", &DeleteParams::default()).await.unwrap();
        wait_for("the pod to be gone", Duration::from_secs(20), &world, async || {
            pods.get_opt("secure").await.ok().and_then(|p| p.is_none().then_some(()))
        })
        .await;
        cluster.server.shutdown().await;
    });
}

/// `kill -9` of the daemon with three running pods; one container ends while the daemon is
/// away. The restarted daemon adopts the two that run (same processes, same addresses) and
/// reports the real exit code of the third.
#[test]
fn a_killed_daemon_adopts_running_pods_and_learns_exits_that_happened_meanwhile() {
    let world = World::new();
    world.run(|world| async move {
        let (cluster, client, image) = boot(&world).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let signal_dir = world.dir.path().join("signal");
        let c = |script: &str| {
            json!({"name": "main", "image": image, "command": ["/bin/sh", "-c", script],
                   "volumeMounts": [{"name": "signal", "mountPath": "/signal"}]})
        };
        for (name, script, policy) in [
            ("steady-a", "exec sleep 3600", "Always"),
            ("steady-b", "exec sleep 3600", "Always"),
            ("ends", "while [ ! -f /signal/stop ]; do sleep 0.1; done; exit 7", "Never"),
        ] {
            let spec = json!({"nodeName": "node-a", "restartPolicy": policy,
                              "terminationGracePeriodSeconds": 1, "containers": [c(script)],
                              "volumes": [{"name": "signal", "hostPath": {
                                  "path": signal_dir.to_string_lossy(), "type": "DirectoryOrCreate"}}]});
            pods.create(&PostParams::default(), &pod(name, spec)).await.unwrap();
        }
        let mut before = BTreeMap::new();
        for name in ["steady-a", "steady-b", "ends"] {
            let p = wait_pod(&world, &pods, name, "Running", Duration::from_secs(30), |p| running(p, "main")).await;
            before.insert(name, p);
        }
        let pauses = pause_pids(&world);
        assert_eq!(pauses.len(), 3, "{pauses:?}");

        world.kill_daemon();
        // While the daemon is away, one container ends (told to through a hostPath volume).
        let uid = before["ends"].metadata.uid.clone().unwrap();
        std::fs::write(signal_dir.join("stop"), b"").unwrap();
        let exit_file = world.root_dir().join("pods").join(&uid).join("containers/main/0/exit.json");
        wait_for("the container to end", Duration::from_secs(10), &world, async || {
            exit_file.exists().then_some(())
        })
        .await;

        // And one pod is force-deleted from the API while the daemon is away.
        let gone = before["steady-b"].metadata.uid.clone().unwrap();
        pods.delete("steady-b", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();

        // And things of a pod the node has no record of: a cgroup and a veth on the bridge.
        let orphan_cgroup = Path::new("/sys/fs/cgroup/memory")
            .join(&world.cgroup_parent)
            .join("besteffort/podorphan");
        std::fs::create_dir_all(&orphan_cgroup).unwrap();
        for args in [
            vec!["link", "add", "veth0123456789a", "type", "veth", "peer", "name", "orphanpeer"],
            vec!["link", "set", "veth0123456789a", "master", "skiff0"],
        ] {
            let status = Command::new("ip").args(["-n", &world.netns]).args(&args).status().unwrap();
            assert!(status.success(), "ip {args:?}");
        }

        start_daemon(&world, &cluster);
        wait_for("the orphans to be removed", Duration::from_secs(20), &world, async || {
            (!orphan_cgroup.exists() && !world.veths().iter().any(|v| v == "veth0123456789a"))
                .then_some(())
        })
        .await;
        let p = wait_pod(&world, &pods, "ends", "Failed with its exit code", Duration::from_secs(30), |p| {
            phase(p) == "Failed"
        })
        .await;
        assert_eq!(terminated(&p, "main").unwrap().exit_code, 7);
        // The force-deleted pod is removed from the node; the finished one keeps no sandbox.
        wait_for("the deleted pod's removal", Duration::from_secs(20), &world, async || {
            (!world.root_dir().join("pods").join(&gone).exists() && world.veths().len() == 1)
                .then_some(())
        })
        .await;
        for name in ["steady-a"] {
            let p = pods.get(name).await.unwrap();
            let old = &before[name];
            let (now_s, old_s) = (container_state(&p, "main").unwrap(), container_state(old, "main").unwrap());
            assert_eq!(now_s.restart_count, 0, "{name} was not restarted");
            assert_eq!(now_s.state, old_s.state, "{name} kept its running instance");
            assert_eq!(
                p.status.as_ref().unwrap().pod_ip,
                old.status.as_ref().unwrap().pod_ip,
                "{name} kept its address"
            );
        }
        let after = pause_pids(&world);
        assert_eq!(after.len(), 1, "{after:?}");
        assert!(pauses.contains(&after[0]), "{pauses:?} vs {after:?}");

        for name in ["steady-a", "ends"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        wait_for("the node to clean up", Duration::from_secs(30), &world, async || {
            (world.veths().is_empty() && world.pod_cgroup_dirs().is_empty() && world.mounts_under_dir().is_empty())
                .then_some(())
        })
        .await;
        cluster.server.shutdown().await;
    });
}

/// Pids of the pause processes in the node's pod cgroups.
fn pause_pids(world: &NodeWorld) -> Vec<String> {
    world
        .pod_cgroup_dirs()
        .iter()
        .flat_map(|d| {
            std::fs::read_to_string(d.join("_sandbox/cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ready(p: &Pod) -> Option<bool> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True")
}

#[test]
fn probes_restart_the_unhealthy_and_flip_readiness_without_restarting() {
    let world = World::new();
    world.run(|world| async move {
        let (cluster, client, image) = boot(&world).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let live = json!({
            "nodeName": "node-a", "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": image,
                "command": ["/bin/sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 3600"],
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]},
                                  "periodSeconds": 1, "failureThreshold": 1},
            }]
        });
        let readiness = json!({
            "nodeName": "node-a", "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": image,
                "ports": [{"name": "http", "containerPort": 8080}],
                "command": ["/bin/sh", "-c",
                    "mkdir -p /www; echo ok > /www/ready; /bin/busybox httpd -p 8080 -h /www; sleep 4; rm /www/ready; exec sleep 3600"],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"},
                                   "periodSeconds": 1, "failureThreshold": 1},
            }]
        });
        pods.create(&PostParams::default(), &pod("live", live)).await.unwrap();
        pods.create(&PostParams::default(), &pod("ready", readiness)).await.unwrap();

        wait_pod(&world, &pods, "ready", "Ready", Duration::from_secs(20), |p| ready(p) == Some(true)).await;
        let p = wait_pod(&world, &pods, "ready", "not Ready any more", Duration::from_secs(20), |p| {
            ready(p) == Some(false)
        })
        .await;
        let s = container_state(&p, "main").unwrap();
        assert_eq!(s.restart_count, 0, "readiness never restarts");
        assert!(running(&p, "main"));

        let p = wait_pod(&world, &pods, "live", "restarted by its liveness probe", Duration::from_secs(40), |p| {
            container_state(p, "main").is_some_and(|s| s.restart_count >= 1)
        })
        .await;
        let last = container_state(&p, "main").unwrap().last_state.clone().unwrap();
        assert!(last.terminated.is_some(), "{last:?}");
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
        let list = events.list(&Default::default()).await.unwrap();
        assert!(
            list.items.iter().any(|e| e.reason.as_deref() == Some("Unhealthy")
                && e.involved_object.name.as_deref() == Some("live")),
            "an Unhealthy event for the pod"
        );
        for name in ["live", "ready"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        wait_for("the pods to be gone", Duration::from_secs(30), &world, async || {
            pods.list(&Default::default()).await.ok().filter(|l| l.items.is_empty())
        })
        .await;
        cluster.server.shutdown().await;
    });
}

#[test]
fn shared_process_namespace_and_host_network_pods() {
    let world = World::new();
    world.run(|world| async move {
        let (cluster, client, image) = boot(&world).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = json!({
            "nodeName": "node-a", "terminationGracePeriodSeconds": 1,
            "shareProcessNamespace": true,
            "containers": [
                {"name": "sleeper", "image": image, "command": ["/bin/sh", "-c", "exec sleep 3600"]},
                {"name": "looker", "image": image, "command": ["/bin/sh", "-c",
                    "until ps | grep -q 'sleep 3600'; do sleep 0.2; done; ps; exec sleep 3600"]},
            ]
        });
        pods.create(&PostParams::default(), &pod("shared", spec)).await.unwrap();
        let p = wait_pod(&world, &pods, "shared", "Running", Duration::from_secs(30), |p| {
            running(p, "sleeper") && running(p, "looker")
        })
        .await;
        let log = wait_for("looker's ps", Duration::from_secs(15), &world, async || {
            Some(log_of(&world, &p, "looker", 0)).filter(|l| l.contains("sleep 3600"))
        })
        .await;
        // PID 1 of the shared namespace is pause, not a container's process.
        let first = log
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
            .find(|l| l.trim_start().starts_with("1 "))
            .unwrap_or_else(|| panic!("no PID 1 in ps output:\n{log}"));
        assert!(first.contains("skiff-pause"), "{first}");

        // hostNetwork: no sandbox network; the pod sees the node's links and has its IP.
        let spec = json!({
            "nodeName": "node-a", "terminationGracePeriodSeconds": 1, "hostNetwork": true,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image,
                "command": ["/bin/sh", "-c", "grep -o skiff0 /proc/net/dev"]}]
        });
        pods.create(&PostParams::default(), &pod("host", spec)).await.unwrap();
        let host = wait_pod(&world, &pods, "host", "Succeeded", Duration::from_secs(30), |p| {
            phase(p) == "Succeeded"
        })
        .await;
        assert_eq!(host.status.as_ref().unwrap().pod_ip.as_deref(), Some("127.0.0.1"));
        assert!(log_of(&world, &host, "main", 0).contains(" stdout F skiff0"));
        assert_eq!(world.veths().len(), 1, "only the shared pod has a veth");
        pods.delete("host", &DeleteParams::default()).await.unwrap();

        pods.delete("shared", &DeleteParams::default()).await.unwrap();
        wait_for("the node to clean up", Duration::from_secs(20), &world, async || {
            (world.pod_cgroup_dirs().is_empty() && world.mounts_under_dir().is_empty()).then_some(())
        })
        .await;
        cluster.server.shutdown().await;
    });
}

#[test]
fn images_are_pulled_from_a_registry_with_events() {
    let world = World::new();
    world.run(|world| async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The registry listens on the node namespace's loopback.
        let registry = registry::LocalRegistry::start();
        let image = image_support::busybox_image();
        registry.push(&image, "team/busybox", "1").await;
        let reference = format!("{}/team/busybox:1", registry.host);

        let data = world.dir.path().join("control");
        std::fs::create_dir_all(&data).unwrap();
        let cluster = start_control_plane(&data).await;
        let client = cluster.admin().await;
        start_daemon_with(
            &world,
            &cluster,
            &["--insecure-registry".into(), registry.host.clone()],
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let spec = json!({
            "nodeName": "node-a", "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
            "containers": [{"name": "main", "image": reference, "command": ["cat", "/etc/hello"]}]
        });
        pods.create(&PostParams::default(), &pod("pulled", spec))
            .await
            .unwrap();
        let p = wait_pod(
            &world,
            &pods,
            "pulled",
            "Succeeded",
            Duration::from_secs(60),
            |p| phase(p) == "Succeeded",
        )
        .await;
        let status = container_state(&p, "main").unwrap();
        assert!(
            status.image_id.ends_with(&image.manifest_digest),
            "imageID {} names the manifest digest",
            status.image_id
        );
        assert!(log_of(&world, &p, "main", 0).contains(image_support::HELLO_CONTENT.trim()));

        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(client.clone(), "default");
        let pulled = wait_for(
            "Pulling and Pulled events",
            Duration::from_secs(10),
            &world,
            async || {
                let list = events.list(&Default::default()).await.ok()?;
                let by = |reason: &str| {
                    list.items
                        .iter()
                        .find(|e| e.reason.as_deref() == Some(reason))
                        .cloned()
                };
                by("Pulling")?;
                by("Pulled")
            },
        )
        .await;
        let message = pulled.message.unwrap_or_default();
        assert!(
            message.contains("Image size:") && message.contains(&reference),
            "{message}"
        );

        // An image that is not there fails the pull, and the pod says why.
        let spec = json!({
            "nodeName": "node-a", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": format!("{}/team/missing:1", registry.host)}]
        });
        pods.create(&PostParams::default(), &pod("missing", spec))
            .await
            .unwrap();
        wait_pod(
            &world,
            &pods,
            "missing",
            "ErrImagePull",
            Duration::from_secs(30),
            |p| {
                container_state(p, "main")
                    .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
                    .is_some_and(|r| r == "ErrImagePull" || r == "CrashLoopBackOff")
            },
        )
        .await;
        for name in ["pulled", "missing"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }
        wait_for(
            "the pods to be gone",
            Duration::from_secs(30),
            &world,
            async || {
                pods.list(&Default::default())
                    .await
                    .ok()
                    .filter(|l| l.items.is_empty())
            },
        )
        .await;
        cluster.server.shutdown().await;
    });
}

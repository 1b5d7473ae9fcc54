//! A controller test bed: a real API server on loopback (SQLite in a temp dir), an admin
//! kube-rs client, a fake clock, and the loops under test started on shared informers.
//! Pods' status is set by the test in place of a node daemon.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_control::testing::TestServer;
use skiff_controllers::clock::{Clock, FakeClock};
use skiff_controllers::context::{Builder, Context, ControllerConfig};

pub use skiff_control::testing::eventually;

/// How long a test waits for the loops to reach a state.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Cluster {
    pub server: TestServer,
    pub client: kube::Client,
    pub clock: FakeClock,
    pub ctx: Arc<Context>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// A server with no loops running yet; the fake clock starts at the real now.
    pub async fn new() -> Cluster {
        Cluster::with_config(ControllerConfig::default()).await
    }

    pub async fn with_config(config: ControllerConfig) -> Cluster {
        let server = TestServer::start().await;
        let client = server.client().await;
        let mut config = config;
        // As skiff-control does: the loops know the cluster CA.
        config
            .cluster_ca_pem
            .get_or_insert_with(|| server.api().pki.ca_pem.clone());
        let clock = FakeClock::new(Timestamp::now());
        let ctx = Context::new(client.clone(), Arc::new(clock.clone()), config);
        Cluster {
            server,
            client,
            clock,
            ctx,
            tasks: Vec::new(),
        }
    }

    /// Starts the given loops, then the informers they subscribed to.
    pub fn run(&mut self, loops: &[Builder]) {
        for build in loops {
            self.tasks.push(tokio::spawn(build(&self.ctx)));
        }
        self.tasks.extend(self.ctx.informers.start());
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn all<K>(&self) -> Api<K>
    where
        K: kube::Resource,
        K::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    /// Creates an object from JSON.
    pub async fn create<K>(&self, api: &Api<K>, obj: serde_json::Value) -> K
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(obj).expect("object JSON matches its type");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create object")
    }

    /// A Ready, schedulable node with the given allocatable cpu / memory / pods and labels.
    pub async fn add_node(
        &self,
        name: &str,
        cpu: &str,
        memory: &str,
        labels: serde_json::Value,
    ) -> Node {
        let nodes: Api<Node> = self.all();
        let mut labels = labels;
        if let Some(map) = labels.as_object_mut() {
            map.insert("kubernetes.io/hostname".into(), json!(name));
        } else {
            labels = json!({"kubernetes.io/hostname": name});
        }
        let node = self
            .create(
                &nodes,
                json!({"metadata": {"name": name, "labels": labels}, "spec": {}}),
            )
            .await;
        let now = Time(Timestamp::now());
        let status = json!({"status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        }});
        let _ = node;
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("set node status")
    }

    /// Marks a pod Running and Ready (as a node daemon would), ready since the fake now.
    pub async fn set_pod_ready(&self, ns: &str, name: &str) -> Pod {
        let now = Time(self.clock.now());
        let status = json!({"status": {
            "phase": "Running",
            "podIP": "10.244.0.10",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ],
        }});
        self.api::<Pod>(ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("set pod ready")
    }

    /// Ends a pod with the given phase (`Succeeded` or `Failed`).
    pub async fn set_pod_phase(&self, ns: &str, name: &str, phase: &str) -> Pod {
        let status = json!({"status": {"phase": phase}});
        self.api::<Pod>(ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("set pod phase")
    }

    /// The Events in `ns` with `reason`.
    pub async fn events(&self, ns: &str, reason: &str) -> Vec<Event> {
        self.api::<Event>(ns)
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// The pods in `ns` matching `selector` (e.g. `app=web`), sorted by name.
    pub async fn pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        let mut pods = self
            .api::<Pod>(ns)
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list pods")
            .items;
        pods.sort_by_key(|p| p.name_any());
        pods
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

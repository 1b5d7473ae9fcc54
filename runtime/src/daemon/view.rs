//! The node API's window on the pods: read from the pod records on disk, so it sees exactly
//! what a restarted daemon would adopt.

use std::path::PathBuf;
use std::sync::Arc;

use skiff_runtime::cgroups::QosClass;
use skiff_runtime::nodeapi::{ContainerInstance, LookupError, NodeView, PodCgroups};

use super::containers;
use super::context::NodeContext;
use super::record::{PodRecord, RECORD_FILE};

pub struct DiskView {
    pub ctx: Arc<NodeContext>,
}

impl DiskView {
    fn records(&self) -> Vec<PodRecord> {
        std::fs::read_dir(self.ctx.config.pods_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(RECORD_FILE).exists())
            .filter_map(|e| PodRecord::load(&e.path()).ok().flatten())
            .collect()
    }

    /// The pod's record; the newest one when a pod of that name was re-created.
    fn find(&self, namespace: &str, pod: &str) -> Result<PodRecord, LookupError> {
        self.records()
            .into_iter()
            .filter(|r| r.namespace == namespace && r.name == pod)
            .max_by(|a, b| a.first_seen.cmp(&b.first_seen))
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            })
    }
}

impl NodeView for DiskView {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInstance, LookupError> {
        let record = self.find(namespace, pod)?;
        let entry = record
            .containers
            .get(container)
            .or_else(|| record.init_containers.get(container))
            .filter(|e| e.attempts > 0)
            .ok_or_else(|| LookupError::ContainerNotFound {
                pod: pod.to_string(),
                container: container.to_string(),
            })?;
        let attempt = if previous {
            entry.attempts - 2
        } else {
            entry.attempts - 1
        };
        if attempt < 0 {
            return Err(LookupError::NoPreviousInstance {
                pod: pod.to_string(),
                container: container.to_string(),
            });
        }
        let pod_dir = self.ctx.config.pod_dir(&record.uid);
        Ok(ContainerInstance {
            pod_uid: record.uid.clone(),
            instance_dir: containers::instance_dir(&pod_dir, container, attempt),
            log: containers::log_path(&pod_dir, container, attempt),
            running_pid: if previous {
                None
            } else {
                containers::running_pid(&pod_dir, container, entry)
            },
        })
    }

    fn pod_netns(&self, namespace: &str, pod: &str) -> Result<PathBuf, LookupError> {
        let record = self.find(namespace, pod)?;
        record
            .sandbox
            .as_ref()
            .and_then(|s| s.namespaces.get("net").cloned())
            .ok_or_else(|| LookupError::Unavailable {
                what: format!("the network namespace of pod {namespace}/{pod}"),
                reason:
                    "the pod has no sandbox with a network of its own (not running, or hostNetwork)"
                        .into(),
            })
    }

    fn pods(&self) -> Vec<PodCgroups> {
        self.records()
            .into_iter()
            .filter(|r| r.sandbox.is_some())
            .filter_map(|r| {
                let qos: QosClass = r.qos.parse().ok()?;
                let pod = self.ctx.cgroups.pod_cgroup(&r.uid, qos).ok()?;
                let containers = r
                    .containers
                    .keys()
                    .filter_map(|name| {
                        let cg = self.ctx.cgroups.container_cgroup(&pod, name).ok()?;
                        Some((name.clone(), cg))
                    })
                    .collect();
                Some(PodCgroups {
                    namespace: r.namespace,
                    name: r.name,
                    uid: r.uid,
                    pod,
                    containers,
                })
            })
            .collect()
    }
}

//! The pod a `logs`, `exec` or `port-forward` names (`NAME`, `pod/NAME`, `po/NAME`), and the
//! container it means when none is given, chosen as kubectl chooses it.

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::client::Cluster;
use crate::errors;

/// The annotation naming the container kubectl uses when none is given.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The pod name in `NAME` or `pod/NAME`; other types are refused (only pods are served).
pub fn pod_name(arg: &str, verb: &str) -> Result<String> {
    match arg.split_once('/') {
        None if !arg.is_empty() => Ok(arg.to_string()),
        Some((kind, name)) if matches!(kind, "pod" | "pods" | "po") && !name.is_empty() => {
            Ok(name.to_string())
        }
        Some((kind, _)) if !kind.is_empty() => anyhow::bail!(
            "cannot {verb} {arg:?}: skiffctl {verb} works on pods only (name a pod, e.g. pod/NAME)"
        ),
        _ => anyhow::bail!("{verb}: expected a pod name, got {arg:?}"),
    }
}

pub async fn fetch(cluster: &Cluster, name: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.get(name).await.map_err(errors::from_kube)
}

/// The names of a pod's containers, init containers and ephemeral containers.
pub struct ContainerNames {
    pub containers: Vec<String>,
    pub init: Vec<String>,
    pub ephemeral: Vec<String>,
}

impl ContainerNames {
    pub fn of(pod: &Pod) -> ContainerNames {
        let spec = pod.spec.as_ref();
        ContainerNames {
            containers: spec
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
            init: spec
                .and_then(|s| s.init_containers.as_ref())
                .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
            ephemeral: spec
                .and_then(|s| s.ephemeral_containers.as_ref())
                .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
        }
    }

    /// Every name, init containers first, as `--all-containers` goes through them.
    pub fn all(&self) -> Vec<String> {
        self.init
            .iter()
            .chain(&self.containers)
            .chain(&self.ephemeral)
            .cloned()
            .collect()
    }

    /// `a, b, setup (init)`, as kubectl lists them.
    fn listing(&self) -> String {
        self.containers
            .iter()
            .cloned()
            .chain(self.init.iter().map(|n| format!("{n} (init)")))
            .chain(self.ephemeral.iter().map(|n| format!("{n} (ephem)")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The container to use: `-c`, else the pod's default-container annotation, else its first
/// container; kubectl says which it picked when the pod has more than one.
pub fn choose_container(pod: &Pod, requested: Option<&str>) -> Result<String> {
    let names = ContainerNames::of(pod);
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    if let Some(c) = requested {
        if names.all().iter().any(|n| n == c) {
            return Ok(c.to_string());
        }
        anyhow::bail!("container {c} is not valid for pod {pod_name}");
    }
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|c| names.all().contains(c));
    let chosen = match annotated {
        Some(c) => c.clone(),
        None => names
            .containers
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("pod {pod_name} has no containers"))?,
    };
    if annotated.is_none() && names.all().len() > 1 {
        eprintln!(
            "Defaulted container \"{chosen}\" out of: {}",
            names.listing()
        );
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    #[test]
    fn names_and_types() {
        assert_eq!(pod_name("web", "logs").unwrap(), "web");
        assert_eq!(pod_name("pod/web", "logs").unwrap(), "web");
        assert_eq!(pod_name("po/web", "exec").unwrap(), "web");
        let err = pod_name("deploy/web", "logs").unwrap_err().to_string();
        assert!(err.contains("works on pods only"), "{err}");
        assert!(pod_name("", "logs").is_err());
    }

    #[test]
    fn containers_default_like_kubectl() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "a"}, {"name": "b"}]}
        }));
        assert_eq!(choose_container(&p, None).unwrap(), "a");
        assert_eq!(choose_container(&p, Some("setup")).unwrap(), "setup");
        assert_eq!(
            choose_container(&p, Some("x")).unwrap_err().to_string(),
            "container x is not valid for pod p"
        );
        assert_eq!(ContainerNames::of(&p).listing(), "a, b, setup (init)");
        assert_eq!(ContainerNames::of(&p).all(), ["setup", "a", "b"]);
        let annotated = pod(serde_json::json!({
            "metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER_ANNOTATION: "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
        }));
        assert_eq!(choose_container(&annotated, None).unwrap(), "b");
    }
}

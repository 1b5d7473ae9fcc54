//! From a Kubernetes pod and container to what the executor runs: environment, command line,
//! user, capabilities, and finally the OCI runtime spec written to `config.json`.
//!
//! Everything here is a pure function of its inputs (the one exception: [`user`] reads
//! `etc/passwd` and `etc/group` from the container's root filesystem), so that the rules
//! Kubernetes, the kubelet and containerd define between them are unit-tested without a
//! kernel. The daemon gathers the inputs (config maps, secrets, services, image config, the
//! sandbox's namespace paths, volume mounts) and hands the results to the executor.
//!
//! Order of use: [`env::container_env`] → [`command::process_args`] /
//! [`command::process_env`] / [`command::working_dir`] → [`user::resolve_user`] → the daemon
//! fills a [`oci::ContainerPlan`] → [`oci::build_spec`].

pub mod caps;
pub mod command;
pub mod env;
mod expansion;
pub mod oci;
pub mod user;

pub use caps::{process_capabilities, ProcessCapabilities};
pub use command::{process_args, process_env, working_dir};
pub use env::{container_env, container_env_with_warnings, ContainerEnv, EnvSources};
pub use oci::{
    build_spec, ContainerPlan, MountKind, MountPlan, OverlayDirs, PidNamespace, PodNamespaces,
};
pub use user::{resolve_user, resolve_user_from, ProcessUser};

use k8s_openapi::api::core::v1::{Container, Pod};

/// Why a container's spec could not be built. Each variant names the container, the field
/// path in the pod (`spec.containers[0].env[2].valueFrom.configMapKeyRef`), the value at
/// fault and why; [`SpecError::reason`] gives the waiting reason Kubernetes would show.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The pod's configuration, or what it refers to, does not allow the container to be
    /// created (a missing config map key, a root user under `runAsNonRoot`, …).
    #[error("container {container:?}: {field}: {value:?}: {reason}")]
    Config {
        container: String,
        field: String,
        value: String,
        reason: String,
    },
    /// The configuration is acceptable but the container cannot be built from it and the
    /// image (no command at all, an unknown capability, …).
    #[error("container {container:?}: {field}: {value:?}: {reason}")]
    Create {
        container: String,
        field: String,
        value: String,
        reason: String,
    },
    /// A file of the container's root filesystem could not be read.
    #[error("container {container:?}: cannot read {} in its root filesystem: {source}", path.display())]
    Io {
        container: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    /// The Kubernetes waiting reason for this error, as the kubelet reports it in
    /// `containerStatuses[].state.waiting.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::Config { .. } => "CreateContainerConfigError",
            SpecError::Create { .. } | SpecError::Io { .. } => "CreateContainerError",
        }
    }

    /// A configuration error about `container` at `field`.
    pub(crate) fn config(
        container: &Container,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> SpecError {
        SpecError::Config {
            container: container.name.clone(),
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// A creation error about `container` at `field`.
    pub(crate) fn create(
        container: &Container,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> SpecError {
        SpecError::Create {
            container: container.name.clone(),
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// The field path of `container` in `pod`: `spec.containers[1]`, `spec.initContainers[0]`
/// or `spec.ephemeralContainers[0]`, found by name; `spec.containers[?]` when the
/// container is not in the pod (a caller's mistake, still worth a readable message).
pub fn container_field_path(pod: &Pod, container: &Container) -> String {
    let Some(spec) = pod.spec.as_ref() else {
        return "spec.containers[?]".to_string();
    };
    if let Some(index) = spec
        .containers
        .iter()
        .position(|c| c.name == container.name)
    {
        return format!("spec.containers[{index}]");
    }
    if let Some(index) = spec
        .init_containers
        .iter()
        .flatten()
        .position(|c| c.name == container.name)
    {
        return format!("spec.initContainers[{index}]");
    }
    if let Some(index) = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .position(|c| c.name == container.name)
    {
        return format!("spec.ephemeralContainers[{index}]");
    }
    "spec.containers[?]".to_string()
}

/// The pod as the kubelet names it in messages (`format.Pod`): `name_namespace(uid)`.
pub(crate) fn pod_display(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn named(name: &str) -> Container {
        Container {
            name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn field_path_finds_regular_init_and_missing_containers() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![named("a"), named("b")],
                init_containers: Some(vec![named("init")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            container_field_path(&pod, &named("b")),
            "spec.containers[1]"
        );
        assert_eq!(
            container_field_path(&pod, &named("init")),
            "spec.initContainers[0]"
        );
        assert_eq!(
            container_field_path(&pod, &named("x")),
            "spec.containers[?]"
        );
    }

    #[test]
    fn reasons_follow_the_kubelet() {
        let c = named("app");
        assert_eq!(
            SpecError::config(&c, "f", "v", "r").reason(),
            "CreateContainerConfigError"
        );
        assert_eq!(
            SpecError::create(&c, "f", "v", "r").reason(),
            "CreateContainerError"
        );
        let message = SpecError::config(&c, "spec.containers[0].env[1]", "X", "why").to_string();
        assert_eq!(
            message,
            r#"container "app": spec.containers[0].env[1]: "X": why"#
        );
    }
}

//! Which namespaces a container joins and which it creates.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::ContainerError;

/// What to do about the pid namespace; handled by the parent, since unshare and setns of
/// a pid namespace only take effect for children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PidNamespace {
    /// Stay in the caller's pid namespace.
    Inherit,
    /// Create one: the container init becomes its PID 1.
    Create,
    /// Join the one at this path.
    Join(PathBuf),
}

/// The namespaces of a container, from `linux.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespacePlan {
    /// The pid namespace.
    pub pid: PidNamespace,
    /// Namespaces joined by path (not pid), in spec order.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Namespaces created by the child (not pid); always includes the mount namespace.
    pub create: CloneFlags,
    /// Namespace kinds the container does not share with the host (joined or created).
    pub private: CloneFlags,
}

impl NamespacePlan {
    /// Reads `linux.namespaces`, refusing what this executor does not do.
    pub fn from_spec(spec: &Spec) -> Result<Self, ContainerError> {
        let mut plan = NamespacePlan {
            pid: PidNamespace::Inherit,
            join: Vec::new(),
            create: CloneFlags::CLONE_NEWNS,
            private: CloneFlags::CLONE_NEWNS,
        };
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|linux| linux.namespaces().as_ref());
        for namespace in namespaces.into_iter().flatten() {
            let kind = namespace.typ();
            let flag = match kind {
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::User | LinuxNamespaceType::Time => {
                    return Err(ContainerError::Unsupported {
                        what: format!("a {kind} namespace"),
                    })
                }
            };
            plan.private |= flag;
            match (kind, namespace.path()) {
                (LinuxNamespaceType::Mount, Some(path)) => {
                    return Err(ContainerError::Unsupported {
                        what: format!("joining the mount namespace {}", path.display()),
                    })
                }
                (LinuxNamespaceType::Pid, Some(path)) => {
                    plan.pid = PidNamespace::Join(path.clone())
                }
                (LinuxNamespaceType::Pid, None) => plan.pid = PidNamespace::Create,
                (_, Some(path)) => plan.join.push((flag, path.clone())),
                (_, None) => plan.create |= flag,
            }
        }
        Ok(plan)
    }

    /// Whether the container gets a UTS namespace of its own, so it may set a hostname.
    pub fn creates_uts(&self) -> bool {
        self.create.contains(CloneFlags::CLONE_NEWUTS)
    }

    /// Parent side: make the next child start in the planned pid namespace.
    pub fn enter_pid_namespace(&self) -> Result<(), ContainerError> {
        match &self.pid {
            PidNamespace::Inherit => Ok(()),
            PidNamespace::Create => unshare(CloneFlags::CLONE_NEWPID)
                .map_err(|err| ContainerError::sys("unshare the pid namespace", err)),
            PidNamespace::Join(path) => join(CloneFlags::CLONE_NEWPID, path),
        }
    }

    /// Child side: join the namespaces given by path, then create the others.
    pub fn enter_other_namespaces(&self) -> Result<(), ContainerError> {
        for (flag, path) in &self.join {
            join(*flag, path)?;
        }
        unshare(self.create).map_err(|err| {
            ContainerError::sys(format!("unshare namespaces {:?}", self.create), err)
        })
    }
}

fn join(flag: CloneFlags, path: &PathBuf) -> Result<(), ContainerError> {
    let file = File::open(path)
        .map_err(|err| ContainerError::io(format!("open namespace {}", path.display()), err))?;
    setns(&file, flag)
        .map_err(|err| ContainerError::sys(format!("join namespace {}", path.display()), err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    fn spec_with(namespaces: Vec<(LinuxNamespaceType, Option<&str>)>) -> Spec {
        let namespaces = namespaces
            .into_iter()
            .map(|(typ, path)| {
                let builder = LinuxNamespaceBuilder::default().typ(typ);
                match path {
                    Some(path) => builder.path(path),
                    None => builder,
                }
                .build()
                .expect("namespace")
            })
            .collect::<Vec<_>>();
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec")
    }

    #[test]
    fn joins_paths_creates_the_rest_and_always_a_mount_namespace() {
        let spec = spec_with(vec![
            (LinuxNamespaceType::Network, Some("/run/netns/pod")),
            (LinuxNamespaceType::Uts, None),
            (LinuxNamespaceType::Pid, None),
        ]);
        let plan = NamespacePlan::from_spec(&spec).expect("plan");
        assert_eq!(plan.pid, PidNamespace::Create);
        assert_eq!(
            plan.join,
            vec![(CloneFlags::CLONE_NEWNET, PathBuf::from("/run/netns/pod"))]
        );
        assert_eq!(
            plan.create,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS
        );
        assert!(plan.creates_uts());
        assert!(plan.private.contains(CloneFlags::CLONE_NEWNET));
        assert!(!plan.private.contains(CloneFlags::CLONE_NEWIPC));
    }

    #[test]
    fn user_namespaces_and_mount_joins_are_refused() {
        let spec = spec_with(vec![(LinuxNamespaceType::User, None)]);
        assert!(NamespacePlan::from_spec(&spec).is_err());
        let spec = spec_with(vec![(LinuxNamespaceType::Mount, Some("/proc/1/ns/mnt"))]);
        assert!(NamespacePlan::from_spec(&spec).is_err());
    }
}

//! The process's capabilities, as containerd's CRI computes them.
//!
//! - Start from the default set of Docker and containerd ([`DEFAULT_CAPABILITIES`]).
//! - `securityContext.capabilities`: `ALL` in `add` first grants every capability, `ALL` in
//!   `drop` then removes every one; then the named additions, then the named drops. So
//!   `add: [ALL], drop: [CHOWN]` is everything but `CAP_CHOWN`, and
//!   `drop: [ALL], add: [NET_BIND_SERVICE]` is only that one. Names are accepted with or
//!   without the `CAP_` prefix, in any case; an unknown name is an error.
//! - `privileged: true`: every capability, whatever `add`/`drop` say.
//!
//! The set goes to the bounding, effective and permitted sets; the inheritable and ambient
//! sets stay empty (containerd since the fix for CVE-2022-24769). containerd does not treat
//! non-root users differently, and neither does skiff: for a process whose uid is not 0,
//! the kernel's `execve` rules empty the effective and permitted sets (nothing is ambient
//! and files carry no capabilities), so such a process keeps only the bounding set, exactly
//! as under containerd and runc — including capabilities it was explicitly given with
//! `add`, a known Kubernetes limitation.

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::{container_field_path, SpecError};

/// Every capability the OCI spec names, by kernel number, with its name without `CAP_`.
pub const ALL_CAPABILITIES: [(Capability, &str); 41] = [
    (Capability::Chown, "CHOWN"),
    (Capability::DacOverride, "DAC_OVERRIDE"),
    (Capability::DacReadSearch, "DAC_READ_SEARCH"),
    (Capability::Fowner, "FOWNER"),
    (Capability::Fsetid, "FSETID"),
    (Capability::Kill, "KILL"),
    (Capability::Setgid, "SETGID"),
    (Capability::Setuid, "SETUID"),
    (Capability::Setpcap, "SETPCAP"),
    (Capability::LinuxImmutable, "LINUX_IMMUTABLE"),
    (Capability::NetBindService, "NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "NET_BROADCAST"),
    (Capability::NetAdmin, "NET_ADMIN"),
    (Capability::NetRaw, "NET_RAW"),
    (Capability::IpcLock, "IPC_LOCK"),
    (Capability::IpcOwner, "IPC_OWNER"),
    (Capability::SysModule, "SYS_MODULE"),
    (Capability::SysRawio, "SYS_RAWIO"),
    (Capability::SysChroot, "SYS_CHROOT"),
    (Capability::SysPtrace, "SYS_PTRACE"),
    (Capability::SysPacct, "SYS_PACCT"),
    (Capability::SysAdmin, "SYS_ADMIN"),
    (Capability::SysBoot, "SYS_BOOT"),
    (Capability::SysNice, "SYS_NICE"),
    (Capability::SysResource, "SYS_RESOURCE"),
    (Capability::SysTime, "SYS_TIME"),
    (Capability::SysTtyConfig, "SYS_TTY_CONFIG"),
    (Capability::Mknod, "MKNOD"),
    (Capability::Lease, "LEASE"),
    (Capability::AuditWrite, "AUDIT_WRITE"),
    (Capability::AuditControl, "AUDIT_CONTROL"),
    (Capability::Setfcap, "SETFCAP"),
    (Capability::MacOverride, "MAC_OVERRIDE"),
    (Capability::MacAdmin, "MAC_ADMIN"),
    (Capability::Syslog, "SYSLOG"),
    (Capability::WakeAlarm, "WAKE_ALARM"),
    (Capability::BlockSuspend, "BLOCK_SUSPEND"),
    (Capability::AuditRead, "AUDIT_READ"),
    (Capability::Perfmon, "PERFMON"),
    (Capability::Bpf, "BPF"),
    (Capability::CheckpointRestore, "CHECKPOINT_RESTORE"),
];

/// The default capability set of Docker and containerd.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The capabilities a container's process gets, in kernel-number order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCapabilities {
    /// The set given to the bounding, effective and permitted sets.
    pub granted: Vec<Capability>,
}

impl ProcessCapabilities {
    /// Whether `capability` is granted.
    pub fn contains(&self, capability: Capability) -> bool {
        self.granted.contains(&capability)
    }

    /// The OCI form: the set as bounding, effective and permitted; inheritable and ambient
    /// empty.
    pub fn to_oci(&self) -> LinuxCapabilities {
        let set: Capabilities = self.granted.iter().copied().collect();
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        caps.set_inheritable(Some(Capabilities::new()));
        caps.set_ambient(Some(Capabilities::new()));
        caps
    }
}

/// Parses a Kubernetes capability name: `NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`.
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .find(|(_, known)| *known == bare)
        .map(|(capability, _)| *capability)
}

/// The capabilities of `container`'s process; see the module documentation.
pub fn process_capabilities(
    pod: &Pod,
    container: &Container,
) -> Result<ProcessCapabilities, SpecError> {
    let security = container.security_context.as_ref();
    if security.and_then(|s| s.privileged) == Some(true) {
        return Ok(ProcessCapabilities {
            granted: ALL_CAPABILITIES.iter().map(|(c, _)| *c).collect(),
        });
    }
    let mut granted: Vec<Capability> = DEFAULT_CAPABILITIES.to_vec();
    let Some(requested) = security.and_then(|s| s.capabilities.as_ref()) else {
        return Ok(sorted(granted));
    };
    let field = format!(
        "{}.securityContext.capabilities",
        container_field_path(pod, container)
    );
    let add = requested.add.as_deref().unwrap_or_default();
    let drop = requested.drop.as_deref().unwrap_or_default();
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");

    if add.iter().any(is_all) {
        granted = ALL_CAPABILITIES.iter().map(|(c, _)| *c).collect();
    }
    if drop.iter().any(is_all) {
        granted.clear();
    }
    let parse = |list: &str, index: usize, name: &String| {
        parse_capability(name).ok_or_else(|| {
            SpecError::create(
                container,
                format!("{field}.{list}[{index}]"),
                name,
                "unknown capability",
            )
        })
    };
    for (index, name) in add.iter().enumerate().filter(|(_, n)| !is_all(n)) {
        let capability = parse("add", index, name)?;
        if !granted.contains(&capability) {
            granted.push(capability);
        }
    }
    for (index, name) in drop.iter().enumerate().filter(|(_, n)| !is_all(n)) {
        let capability = parse("drop", index, name)?;
        granted.retain(|c| *c != capability);
    }
    Ok(sorted(granted))
}

/// `granted` in kernel-number order.
fn sorted(granted: Vec<Capability>) -> ProcessCapabilities {
    ProcessCapabilities {
        granted: ALL_CAPABILITIES
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| granted.contains(c))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities as K8sCapabilities, PodSpec, SecurityContext};

    fn with_caps(add: &[&str], drop: &[&str], privileged: Option<bool>) -> (Pod, Container) {
        let container = Container {
            name: "app".to_string(),
            security_context: Some(SecurityContext {
                privileged,
                capabilities: Some(K8sCapabilities {
                    add: Some(add.iter().map(|s| s.to_string()).collect()),
                    drop: Some(drop.iter().map(|s| s.to_string()).collect()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container.clone()],
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod, container)
    }

    fn caps(add: &[&str], drop: &[&str]) -> Result<ProcessCapabilities, SpecError> {
        let (pod, container) = with_caps(add, drop, None);
        process_capabilities(&pod, &container)
    }

    #[test]
    fn default_set_without_security_context() {
        let container = Container {
            name: "app".to_string(),
            ..Default::default()
        };
        let got = process_capabilities(&Pod::default(), &container).expect("caps");
        assert_eq!(got.granted.len(), 14);
        for capability in DEFAULT_CAPABILITIES {
            assert!(got.contains(capability), "{capability:?}");
        }
        assert!(!got.contains(Capability::NetAdmin));
        assert!(!got.contains(Capability::SysAdmin));
    }

    #[test]
    fn add_and_drop_with_and_without_prefix() {
        let got = caps(
            &["NET_ADMIN", "CAP_SYS_TIME", "sys_ptrace"],
            &["CAP_CHOWN", "KILL"],
        )
        .expect("caps");
        assert!(got.contains(Capability::NetAdmin));
        assert!(got.contains(Capability::SysTime));
        assert!(got.contains(Capability::SysPtrace));
        assert!(!got.contains(Capability::Chown));
        assert!(!got.contains(Capability::Kill));
        assert!(got.contains(Capability::Setuid));
        // Dropping wins over adding the same capability.
        let got = caps(&["NET_ADMIN"], &["NET_ADMIN"]).expect("caps");
        assert!(!got.contains(Capability::NetAdmin));
    }

    #[test]
    fn all_in_add_or_drop() {
        let got = caps(&["ALL"], &["CHOWN"]).expect("caps");
        assert_eq!(got.granted.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!got.contains(Capability::Chown));
        assert!(got.contains(Capability::SysAdmin));

        let got = caps(&["NET_BIND_SERVICE"], &["all"]).expect("caps");
        assert_eq!(got.granted, vec![Capability::NetBindService]);

        let got = caps(&[], &["ALL"]).expect("caps");
        assert!(got.granted.is_empty());
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = caps(&["NET_ADMIN", "FLY"], &[]).expect_err("unknown");
        assert_eq!(err.reason(), "CreateContainerError");
        let message = err.to_string();
        assert!(
            message.contains("spec.containers[0].securityContext.capabilities.add[1]"),
            "{message}"
        );
        assert!(message.contains("\"FLY\""), "{message}");
        assert!(caps(&[], &["CAP_NOPE"]).is_err());
    }

    #[test]
    fn privileged_gets_everything() {
        let (pod, container) = with_caps(&[], &["ALL"], Some(true));
        let got = process_capabilities(&pod, &container).expect("caps");
        assert_eq!(got.granted.len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn oci_form_leaves_inheritable_and_ambient_empty() {
        let oci = caps(&[], &[]).expect("caps").to_oci();
        assert_eq!(oci.bounding().as_ref().map(|s| s.len()), Some(14));
        assert_eq!(oci.effective(), oci.bounding());
        assert_eq!(oci.permitted(), oci.bounding());
        assert_eq!(oci.inheritable().as_ref().map(|s| s.len()), Some(0));
        assert_eq!(oci.ambient().as_ref().map(|s| s.len()), Some(0));
    }

    #[test]
    fn capability_names_round_trip_with_oci_spec() {
        for (capability, name) in ALL_CAPABILITIES {
            let json = serde_json::to_string(&capability).expect("serialize");
            assert_eq!(json, format!("\"CAP_{name}\""));
            assert_eq!(parse_capability(name), Some(capability));
        }
    }
}

//! OCI bundles of the busybox rootfs for tests that start containers with the executor.
#![allow(dead_code)]

use std::path::Path;

use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// One entry of a spec's `mounts`.
pub fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

/// `/proc` and a tmpfs `/dev`: what a shell in the container needs.
pub fn minimal_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "mode=755", "size=65536k"],
        ),
    ]
}

/// Runs `args` as root in `rootfs` with new pid, IPC, UTS and mount namespaces, and the
/// network namespace at `netns` when given (else the caller's).
pub fn busybox_spec(
    rootfs: &Path,
    hostname: &str,
    args: &[&str],
    mounts: Vec<Mount>,
    netns: Option<&Path>,
) -> Spec {
    let mut namespaces: Vec<_> = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .expect("namespace")
    })
    .collect();
    if let Some(netns) = netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(netns)
                .build()
                .expect("netns"),
        );
    }
    SpecBuilder::default()
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()
                .expect("root"),
        )
        .hostname(hostname)
        .process(
            ProcessBuilder::default()
                .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
                .env(vec!["PATH=/bin".to_string()])
                .cwd("/")
                .user(
                    UserBuilder::default()
                        .uid(0u32)
                        .gid(0u32)
                        .build()
                        .expect("user"),
                )
                .build()
                .expect("process"),
        )
        .mounts(mounts)
        .linux(
            LinuxBuilder::default()
                .namespaces(namespaces)
                .build()
                .expect("linux"),
        )
        .build()
        .expect("spec")
}

//! A minimal root filesystem for container tests: Debian's busybox-static (`/bin/busybox`)
//! with a symlink per applet, the usual top-level directories and an `/etc/passwd`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Where Debian's busybox-static package installs the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Fills `root` with a busybox root filesystem.
pub fn build_busybox_rootfs(root: &Path) -> std::io::Result<()> {
    for dir in [
        "bin",
        "dev",
        "etc",
        "proc",
        "sys",
        "tmp",
        "root",
        "home/user",
        "var",
        "run",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy(HOST_BUSYBOX, root.join("bin/busybox"))?;
    let list = Command::new(HOST_BUSYBOX).arg("--list").output()?;
    if !list.status.success() {
        return Err(std::io::Error::other("busybox --list failed"));
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", root.join("bin").join(applet))?;
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )?;
    fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:user\nuser:x:1000:\n",
    )?;
    Ok(())
}

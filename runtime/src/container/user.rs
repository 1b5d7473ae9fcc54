//! Switching to the container's user: groups, gid, uid, in that order.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

use super::ContainerError;

/// Sets the supplementary groups, then gid, then uid (after setuid the process could no
/// longer change its groups). With `keep_caps`, the permitted capabilities survive the
/// switch away from root so they can be set explicitly afterwards.
pub(crate) fn switch_user(user: &User, keep_caps: bool) -> Result<(), ContainerError> {
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|gid| Gid::from_raw(*gid))
        .collect();
    // Always set, so no group of the caller leaks into the container.
    setgroups(&groups).map_err(|err| ContainerError::sys(format!("setgroups {groups:?}"), err))?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|err| ContainerError::sys(format!("setgid {gid}"), err))?;
    let uid = Uid::from_raw(user.uid());
    if keep_caps && !uid.is_root() {
        set_keep_caps(true)?;
    }
    setresuid(uid, uid, uid).map_err(|err| ContainerError::sys(format!("setuid {uid}"), err))?;
    if keep_caps && !uid.is_root() {
        set_keep_caps(false)?;
    }
    Ok(())
}

fn set_keep_caps(keep: bool) -> Result<(), ContainerError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, u64::from(keep), 0, 0, 0) };
    if rc < 0 {
        return Err(ContainerError::sys(
            format!("prctl PR_SET_KEEPCAPS {keep}"),
            nix::Error::last(),
        ));
    }
    Ok(())
}

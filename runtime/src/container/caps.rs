//! Capability sets from `process.capabilities`, applied with prctl and capset.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use super::ContainerError;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The five capability sets as bit masks (bit N = capability number N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapabilitySets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapabilitySets {
    /// Converts the spec's capability names; a name the `caps` crate does not know is an error.
    pub fn from_spec(spec: &LinuxCapabilities) -> Result<Self, ContainerError> {
        Ok(Self {
            bounding: mask(spec.bounding().as_ref())?,
            effective: mask(spec.effective().as_ref())?,
            permitted: mask(spec.permitted().as_ref())?,
            inheritable: mask(spec.inheritable().as_ref())?,
            ambient: mask(spec.ambient().as_ref())?,
        })
    }

    /// Drops from the bounding set every capability not in `self.bounding`. Needs
    /// CAP_SETPCAP, so it runs before the user switch.
    pub fn drop_bounding(&self) -> Result<(), ContainerError> {
        for index in 0..64u64 {
            // SAFETY: prctl with integer arguments only.
            let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, index, 0, 0, 0) };
            if present < 0 {
                // EINVAL: past the kernel's last capability.
                break;
            }
            if present == 1 && self.bounding & (1 << index) == 0 {
                // SAFETY: as above.
                let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, index, 0, 0, 0) };
                if rc < 0 {
                    return Err(ContainerError::sys(
                        format!("drop capability {index} from the bounding set"),
                        nix::Error::last(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sets the effective, permitted and inheritable sets in one capset, then the
    /// ambient set (which needs its capabilities permitted and inheritable).
    pub fn apply(&self) -> Result<(), ContainerError> {
        let mut header = CapUserHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let halves = |set: u64| [set as u32, (set >> 32) as u32];
        let (effective, permitted, inheritable) = (
            halves(self.effective),
            halves(self.permitted),
            halves(self.inheritable),
        );
        let data = [0, 1].map(|half| CapUserData {
            effective: effective[half],
            permitted: permitted[half],
            inheritable: inheritable[half],
        });
        // SAFETY: header and data are valid for the kernel's version-3 layout.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapUserHeader,
                data.as_ptr(),
            )
        };
        if rc < 0 {
            return Err(ContainerError::sys(
                format!(
                    "capset effective {:#x} permitted {:#x} inheritable {:#x}",
                    self.effective, self.permitted, self.inheritable
                ),
                nix::Error::last(),
            ));
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        if rc < 0 {
            return Err(ContainerError::sys(
                "clear the ambient set",
                nix::Error::last(),
            ));
        }
        for index in (0..64u64).filter(|index| self.ambient & (1 << index) != 0) {
            // SAFETY: as above.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    index,
                    0,
                    0,
                )
            };
            if rc < 0 {
                return Err(ContainerError::sys(
                    format!("raise capability {index} in the ambient set"),
                    nix::Error::last(),
                ));
            }
        }
        Ok(())
    }
}

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The bit mask of a set of OCI capability names.
fn mask(set: Option<&Capabilities>) -> Result<u64, ContainerError> {
    let mut bits = 0u64;
    for capability in set.into_iter().flatten() {
        let name = format!("CAP_{capability}");
        let known = caps::Capability::from_str(&name).map_err(|err| ContainerError::Invalid {
            what: format!("capability {name}"),
            reason: err.to_string(),
        })?;
        bits |= known.bitmask();
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn names_become_bit_masks() {
        let spec = LinuxCapabilitiesBuilder::default()
            .bounding([Capability::Chown, Capability::NetRaw, Capability::Kill])
            .effective([Capability::Chown])
            .permitted([Capability::Chown, Capability::Bpf])
            .inheritable(Capabilities::new())
            .ambient(Capabilities::new())
            .build()
            .expect("caps");
        let sets = CapabilitySets::from_spec(&spec).expect("sets");
        assert_eq!(sets.bounding, (1 << 0) | (1 << 13) | (1 << 5));
        assert_eq!(sets.effective, 1);
        assert_eq!(sets.permitted, 1 | (1 << 39));
        assert_eq!(sets.inheritable, 0);
    }
}

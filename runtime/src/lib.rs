//! skiff-runtime: the node daemon that builds pods directly on the kernel.

pub mod ipam;
pub mod node;
pub mod pod;

#[cfg(feature = "wip-cgroups")]
pub mod cgroups;
#[cfg(feature = "wip-container")]
pub mod container;
#[cfg(feature = "wip-image")]
pub mod image;
#[cfg(feature = "wip-network")]
pub mod network;
#[cfg(feature = "wip-spec")]
pub mod spec;
#[cfg(feature = "wip-volumes")]
pub mod volumes;

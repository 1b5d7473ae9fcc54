//! skiff-runtime: the node daemon that builds pods directly on the kernel.

pub mod cgroups;
pub mod ipam;
pub mod network;
pub mod node;
pub mod pod;
pub mod spec;

#[cfg(feature = "wip-container")]
pub mod container;
#[cfg(feature = "wip-image")]
pub mod image;
#[cfg(feature = "wip-volumes")]
pub mod volumes;

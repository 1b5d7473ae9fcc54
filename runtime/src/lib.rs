//! skiff-runtime: the node daemon that builds pods directly on the kernel.

pub mod cgroups;
pub mod container;
pub mod image;
pub mod ipam;
pub mod network;
pub mod node;
pub mod nodeapi;
pub mod pod;
pub mod probe;
pub mod spec;
pub mod volumes;

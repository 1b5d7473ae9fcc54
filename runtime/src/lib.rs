//! skiff-runtime: the node daemon that builds pods directly on the kernel.

pub mod ipam;

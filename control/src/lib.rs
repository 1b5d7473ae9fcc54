//! skiff-control: the control plane. An API server that speaks Kubernetes' REST and JSON, on
//! a revisioned store (embedded SQLite or etcd).

pub mod bench;
pub mod object;
pub mod patch;
pub mod pki;
pub mod printers;
pub mod registry;
pub mod server;
pub mod store;
pub mod testing;

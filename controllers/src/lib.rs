//! skiff-controllers: the control loops of skiff-control — the scheduler and the
//! controllers of kube-controller-manager — as kube-rs clients of the API server.
//!
//! Every loop has the watch → cache → reconcile shape: shared informer caches
//! (`informers`), a kube-rs `Controller` per kind (a debounced work queue that never runs two
//! reconciles of one object at once), retries with per-object back-off
//! (`context::error_policy`), status written through the status subresource, and time read
//! from a `Clock` so tests control it. `manager` runs the set under leader election.

pub mod clock;
pub mod context;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod gc;
pub mod hpa;
pub mod informers;
pub mod job;
pub mod leader;
pub mod manager;
pub mod nodelifecycle;
pub mod objects;
pub mod placement;
pub mod replicaset;
pub mod scheduler;
pub mod serviceaccount;
pub mod statefulset;
pub mod volumes;

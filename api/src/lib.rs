//! skiff-api: what every skiff component shares on top of the Kubernetes types.
//!
//! The object types themselves are `k8s-openapi`'s (re-exported as [`k8s`]) and the client is
//! kube-rs; this crate holds only what those do not give: the table of served resources,
//! label and field selector evaluation, exact resource quantities, name and label validation
//! as Kubernetes does it, defaulting, and the constants the components agree on.

pub mod constants;
pub mod defaults;
pub mod fields;
pub mod labels;
pub mod quantity;
pub mod resources;
pub mod tls;
pub mod validation;

pub use k8s_openapi as k8s;

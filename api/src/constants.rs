//! Names and numbers the skiff components agree on.

/// Namespaces that exist from the first start and cannot be deleted.
pub const BUILTIN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The namespace node leases live in.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The scheduler name skiff's scheduler answers to (Kubernetes' default).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Default Service ClusterIP range.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// Default cluster pod network; each node gets a /24 of it.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

/// Default NodePort range (inclusive).
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// Cluster DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Annotation kubectl apply keeps the last applied manifest in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The finalizer the namespace lifecycle uses while it empties a namespace.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Version reported by `/version` (the Kubernetes API level skiff speaks).
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";

/// Taints the node lifecycle controller puts on nodes (and the scheduler and DaemonSets
/// know about), as in Kubernetes.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NODE_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_NODE_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_NODE_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NODE_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// Marks the StorageClass claims without a class get.
pub const DEFAULT_STORAGE_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

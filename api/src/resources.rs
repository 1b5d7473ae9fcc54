//! The table of resources skiff serves: one row per Kubernetes resource, with everything the
//! API server needs to route and describe it and everything skiffctl needs to resolve the
//! names a user types (`po`, `deploy`, `deployments.apps`).

/// One served resource: its group/version, kind, REST names and subresources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core (legacy `/api/v1`) group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs and in store keys.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served under `{name}/{subresource}`.
    pub subresources: &'static [&'static str],
    /// Whether `kubectl get all` includes this resource.
    pub in_category_all: bool,
}

impl ResourceInfo {
    /// `v1` or `apps/v1`, as written in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`: the name kubectl prints in `kind/name` output.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `pod` or `deployment.apps`: the prefix of `skiffctl get -o name` and apply messages.
    pub fn singular_group(&self) -> String {
        if self.group.is_empty() {
            self.singular.to_string()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }

    /// The kind of the list object, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `/api/v1` or `/apis/apps/v1`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// Whether the object has a `status` that only the status subresource may change.
    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     [$($short:expr),*], [$($sub:expr),*], $all:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            subresources: &[$($sub),*],
            in_category_all: $all,
        }
    };
}

/// Every resource skiff serves.
pub static RESOURCES: &[ResourceInfo] = &[
    resource!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        ["ns"],
        ["status", "finalize"],
        false
    ),
    resource!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        ["po"],
        [
            "status",
            "binding",
            "log",
            "exec",
            "eviction",
            "attach",
            "portforward"
        ],
        true
    ),
    resource!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        ["svc"],
        ["status"],
        true
    ),
    resource!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        ["ep"],
        [],
        false
    ),
    resource!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        ["no"],
        ["status"],
        false
    ),
    resource!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        ["cm"],
        [],
        false
    ),
    resource!("", "v1", "Secret", "secrets", "secret", true, [], [], false),
    resource!(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        ["ev"],
        [],
        false
    ),
    resource!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        ["sa"],
        ["token"],
        false
    ),
    resource!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        ["pv"],
        ["status"],
        false
    ),
    resource!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        ["pvc"],
        ["status"],
        false
    ),
    resource!(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        ["limits"],
        [],
        false
    ),
    resource!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        ["quota"],
        ["status"],
        false
    ),
    resource!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        ["rc"],
        ["status", "scale"],
        true
    ),
    resource!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        ["deploy"],
        ["status", "scale"],
        true
    ),
    resource!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        ["rs"],
        ["status", "scale"],
        true
    ),
    resource!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        ["ds"],
        ["status"],
        true
    ),
    resource!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        ["sts"],
        ["status", "scale"],
        true
    ),
    resource!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        [],
        [],
        false
    ),
    resource!(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        [],
        ["status"],
        true
    ),
    resource!(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        ["cj"],
        ["status"],
        true
    ),
    resource!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        [],
        [],
        false
    ),
    resource!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        ["hpa"],
        ["status"],
        true
    ),
    resource!(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        ["netpol"],
        [],
        false
    ),
    resource!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        ["sc"],
        [],
        false
    ),
    resource!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        [],
        [],
        false
    ),
];

/// The groups in discovery order, each with its one served version.
pub fn api_groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.iter().any(|(g, _)| *g == r.group) {
            groups.push((r.group, r.version));
        }
    }
    groups
}

/// The resource served at `group/version` under `plural`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Resolves what a user typed: `pods`, `pod`, `po`, `Pod`, `deployments.apps`, `deploy.apps`.
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((b, g)) => (b.to_string(), Some(g.to_string())),
        None => (lower.clone(), None),
    };
    RESOURCES.iter().find(|r| {
        let group_ok = match &group {
            Some(g) => r.group == g || (g == "core" && r.group.is_empty()),
            None => true,
        };
        group_ok
            && (r.plural == base
                || r.singular == base
                || r.kind.eq_ignore_ascii_case(&base)
                || r.short_names.contains(&base.as_str()))
    })
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_what_users_type() {
        assert_eq!(resolve("po").unwrap().kind, "Pod");
        assert_eq!(resolve("Pods").unwrap().kind, "Pod");
        assert_eq!(resolve("deploy").unwrap().kind, "Deployment");
        assert_eq!(resolve("deployments.apps").unwrap().kind, "Deployment");
        assert_eq!(resolve("ep").unwrap().kind, "Endpoints");
        assert_eq!(resolve("hpa").unwrap().group, "autoscaling");
        assert!(resolve("pods.apps").is_none());
        assert!(resolve("gadgets").is_none());
    }

    #[test]
    fn names_and_paths() {
        let d = by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.group_version_path(), "/apis/apps/v1");
        assert_eq!(d.singular_group(), "deployment.apps");
        let p = by_plural("", "v1", "pods").unwrap();
        assert_eq!(p.group_version_path(), "/api/v1");
        assert_eq!(p.list_kind(), "PodList");
        assert!(p.has_subresource("binding"));
    }

    #[test]
    fn every_kind_is_unique_and_groups_listed_once() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.kind == b.kind),
                    "{} twice",
                    a.kind
                );
            }
        }
        let groups = api_groups();
        assert!(groups.contains(&("apps", "v1")));
        assert_eq!(groups.iter().filter(|(g, _)| *g == "apps").count(), 1);
    }
}

//! Who is asking, and may they: bearer tokens for the admin, for joining nodes and for
//! service accounts.
//!
//! The admin may do everything. A node (the join token) may read everything and write what a
//! node daemon and network agent write: its Node and its status, pod status, pod deletion
//! (confirming graceful termination), events, leases and EndpointSlices. A service account
//! may read everything and write in its own namespace (what an RBAC-less cluster with
//! namespace-scoped trust gives a workload), but not reach into workloads through logs,
//! exec, attach, port-forward or node proxying. Everything else is 403.

use std::sync::Arc;

use http::HeaderMap;

use super::status::ApiError;
use super::tokens::ServiceAccountTokens;
use skiff_api::resources::ResourceInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    Admin,
    Node,
    ServiceAccount { namespace: String, name: String },
}

impl User {
    pub fn name(&self) -> String {
        match self {
            User::Admin => "skiff-admin".to_string(),
            User::Node => "system:node".to_string(),
            User::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }
}

pub struct Authenticator {
    admin_token: String,
    node_token: String,
    service_accounts: Arc<ServiceAccountTokens>,
}

/// Compares secrets in time independent of where they first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    pub fn new(
        admin_token: String,
        node_token: String,
        service_accounts: Arc<ServiceAccountTokens>,
    ) -> Self {
        Authenticator {
            admin_token,
            node_token,
            service_accounts,
        }
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<User, ApiError> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            Ok(User::Admin)
        } else if constant_time_eq(token.as_bytes(), self.node_token.as_bytes()) {
            Ok(User::Node)
        } else if let Some(sa) = self.service_accounts.lookup(token) {
            Ok(User::ServiceAccount {
                namespace: sa.namespace,
                name: sa.name,
            })
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// The Kubernetes verb of a request.
pub fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

/// Subresources that are served by a node daemon through the API server.
fn is_node_passthrough(subresource: Option<&str>) -> bool {
    matches!(
        subresource,
        Some("log" | "exec" | "attach" | "portforward" | "proxy")
    )
}

pub fn authorize(
    user: &User,
    verb: &str,
    resource: &ResourceInfo,
    subresource: Option<&str>,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let allowed = match user {
        User::Admin => true,
        // Logs, exec, attach, port-forward and node proxying reach into workloads: the
        // admin's alone, as the Node authorizer denies them to kubelets.
        User::Node if is_node_passthrough(subresource) => false,
        User::Node => {
            is_read(verb)
                || matches!(
                    (resource.plural, subresource),
                    ("nodes", None | Some("status"))
                        | ("pods", Some("status"))
                        | ("events", None)
                        | ("leases", None)
                        | ("endpointslices", None)
                )
                || (resource.plural == "pods" && subresource.is_none() && verb == "delete")
        }
        User::ServiceAccount { .. } if is_node_passthrough(subresource) => false,
        User::ServiceAccount { namespace: own, .. } => {
            is_read(verb) || (resource.namespaced && namespace == Some(own.as_str()))
        }
    };
    if allowed {
        return Ok(());
    }
    let what = match subresource {
        Some(s) => format!("{}/{}", resource.plural, s),
        None => resource.plural.to_string(),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    Err(ApiError::forbidden_message(format!(
        "{} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {}",
        resource.plural,
        user.name(),
        verb,
        what,
        resource.group,
        scope
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::by_plural;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn tokens_identify_users() {
        let auth = Authenticator::new(
            "admin-secret".into(),
            "node-secret".into(),
            Default::default(),
        );
        assert_eq!(
            auth.authenticate(&headers("admin-secret")).unwrap(),
            User::Admin
        );
        assert_eq!(
            auth.authenticate(&headers("node-secret")).unwrap(),
            User::Node
        );
        assert_eq!(auth.authenticate(&headers("nope")).unwrap_err().code, 401);
        assert_eq!(auth.authenticate(&HeaderMap::new()).unwrap_err().code, 401);
    }

    #[test]
    fn nodes_write_only_their_share() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let ns = by_plural("", "v1", "namespaces").unwrap();
        assert!(authorize(&User::Node, "list", pods, None, None).is_ok());
        assert!(authorize(&User::Node, "update", pods, Some("status"), Some("d")).is_ok());
        assert!(authorize(&User::Node, "delete", pods, None, Some("d")).is_ok());
        let err = authorize(&User::Node, "delete", ns, None, None).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(
            err.message
                .contains("cannot delete resource \"namespaces\""),
            "{}",
            err.message
        );
        assert!(authorize(&User::Admin, "delete", ns, None, None).is_ok());
    }

    #[test]
    fn node_daemon_subresources_are_the_admins() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let nodes = by_plural("", "v1", "nodes").unwrap();
        for sub in ["log", "exec", "attach", "portforward"] {
            let err = authorize(&User::Node, "get", pods, Some(sub), Some("d")).unwrap_err();
            assert_eq!(err.code, 403, "{sub}");
            assert!(
                err.message.contains(&format!("resource \"pods/{sub}\"")),
                "{}",
                err.message
            );
            assert!(authorize(&User::Admin, "get", pods, Some(sub), Some("d")).is_ok());
        }
        assert_eq!(
            authorize(&User::Node, "get", nodes, Some("proxy"), None)
                .unwrap_err()
                .code,
            403
        );
        assert!(authorize(&User::Admin, "get", nodes, Some("proxy"), None).is_ok());
    }

    #[test]
    fn service_accounts_write_only_in_their_namespace() {
        let sa = User::ServiceAccount {
            namespace: "team".into(),
            name: "default".into(),
        };
        assert_eq!(sa.name(), "system:serviceaccount:team:default");
        let pods = skiff_api::resources::by_plural("", "v1", "pods").unwrap();
        let ns = skiff_api::resources::by_plural("", "v1", "namespaces").unwrap();
        assert!(authorize(&sa, "create", pods, None, Some("team")).is_ok());
        assert!(authorize(&sa, "list", pods, None, None).is_ok());
        let err = authorize(&sa, "create", pods, None, Some("other")).unwrap_err();
        assert!(
            err.message.contains("system:serviceaccount:team:default"),
            "{}",
            err.message
        );
        assert!(authorize(&sa, "delete", ns, None, None).is_err());
        assert!(authorize(&sa, "get", pods, Some("exec"), Some("team")).is_err());
    }
}

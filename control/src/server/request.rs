//! Turns a request path and query into what it asks for, as kube-apiserver's RequestInfo does:
//! discovery, a collection, an object or an object's subresource.

use std::collections::HashMap;

use skiff_api::resources::{self, ResourceInfo};

use super::status::{ApiError, ApiResult};

/// What a path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Healthz,
    Readyz,
    Livez,
    Metrics,
    OpenApiV2,
    OpenApiV3,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
}

/// A path under a group/version naming a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub resource: &'static ResourceInfo,
    /// The namespace in the path; `None` for cluster-scoped resources and all-namespace lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Old-style `/api/v1/watch/...` path.
    pub legacy_watch: bool,
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Parses a request path.
pub fn parse_path(path: &str) -> ApiResult<Route> {
    let segs = segments(path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let route = match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz", ..] => Route::Healthz,
        ["readyz", ..] => Route::Readyz,
        ["livez", ..] => Route::Livez,
        ["metrics"] => Route::Metrics,
        ["openapi", "v2"] | ["swagger.json"] => Route::OpenApiV2,
        ["openapi", "v3", ..] => Route::OpenApiV3,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", version] => Route::ResourceList {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => Route::Resource(parse_resource("", version, rest, path)?),
        ["apis", group, version, rest @ ..] => {
            Route::Resource(parse_resource(group, version, rest, path)?)
        }
        _ => return Err(ApiError::path_not_found(path)),
    };
    Ok(route)
}

fn lookup(
    group: &str,
    version: &str,
    plural: &str,
    path: &str,
) -> ApiResult<&'static ResourceInfo> {
    resources::by_plural(group, version, plural).ok_or_else(|| ApiError::path_not_found(path))
}

fn parse_resource(
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> ApiResult<ResourcePath> {
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let namespaces = lookup("", "v1", "namespaces", path);
    let mut out = match rest {
        // /namespaces/{ns}/{plural}[/{name}[/{sub}...]] for namespaced resources.
        ["namespaces", ns, plural, tail @ ..]
            if resources::by_plural(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let resource = lookup(group, version, plural, path)?;
            ResourcePath {
                resource,
                namespace: Some(ns.to_string()),
                name: tail.first().map(|n| n.to_string()),
                subresource: subresource_of(tail),
                legacy_watch,
            }
        }
        // /namespaces/{name}[/{sub}]: the Namespace object itself (core group only).
        ["namespaces", name, tail @ ..] if group.is_empty() && tail.len() <= 1 => ResourcePath {
            resource: namespaces?,
            namespace: None,
            name: Some(name.to_string()),
            subresource: tail.first().map(|s| s.to_string()),
            legacy_watch,
        },
        [plural, tail @ ..] => {
            let resource = lookup(group, version, plural, path)?;
            if resource.namespaced && !tail.is_empty() {
                // A namespaced object must be addressed through its namespace.
                return Err(ApiError::path_not_found(path));
            }
            ResourcePath {
                resource,
                namespace: None,
                name: tail.first().map(|n| n.to_string()),
                subresource: subresource_of(tail),
                legacy_watch,
            }
        }
        [] => return Err(ApiError::path_not_found(path)),
    };
    if let Some(sub) = &out.subresource {
        if !out.resource.has_subresource(sub) {
            return Err(ApiError::path_not_found(path));
        }
    }
    if out.name.as_deref() == Some("") {
        out.name = None;
    }
    Ok(out)
}

fn subresource_of(tail: &[&str]) -> Option<String> {
    tail.get(1).map(|s| s.to_string())
}

/// Query parameters, decoded.
#[derive(Debug, Clone, Default)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let params = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Query { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1") | Some("true") | Some("True"))
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        match self.get_nonempty(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter {key}: not a number"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse_path(path).unwrap() {
            Route::Resource(r) => r,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/pods");
        assert_eq!(
            (r.resource.plural, r.namespace.as_deref(), r.name.as_deref()),
            ("pods", Some("default"), None)
        );
        let r = res("/api/v1/namespaces/default/pods/web-1/status");
        assert_eq!(r.name.as_deref(), Some("web-1"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/api/v1/pods");
        assert_eq!((r.resource.plural, r.namespace.clone()), ("pods", None));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.plural, r.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = res("/api/v1/nodes/n1/status");
        assert_eq!(
            (r.resource.plural, r.subresource.as_deref()),
            ("nodes", Some("status"))
        );
        let r = res("/apis/apps/v1/namespaces/d/deployments/web/scale");
        assert_eq!(
            (r.resource.kind, r.subresource.as_deref()),
            ("Deployment", Some("scale"))
        );
        let r = res("/api/v1/watch/namespaces/d/pods");
        assert!(r.legacy_watch);
    }

    #[test]
    fn rejects_unknown_paths() {
        for p in [
            "/api/v1/gadgets",
            "/api/v1/pods/x",
            "/apis/apps/v1/namespaces/d/pods",
            "/api/v1/namespaces/d/pods/x/frobnicate",
            "/nothing",
        ] {
            let err = parse_path(p).unwrap_err();
            assert_eq!(err.code, 404, "{p}");
        }
    }

    #[test]
    fn discovery_routes() {
        assert_eq!(parse_path("/api").unwrap(), Route::CoreVersions);
        assert_eq!(
            parse_path("/apis/apps").unwrap(),
            Route::Group("apps".into())
        );
        assert_eq!(
            parse_path("/apis/apps/v1").unwrap(),
            Route::ResourceList {
                group: "apps".into(),
                version: "v1".into()
            }
        );
    }

    #[test]
    fn query_values() {
        let q = Query::parse(Some("watch=1&labelSelector=app%3Dweb&limit=5&bad=x"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.number::<usize>("limit").unwrap(), Some(5));
        assert_eq!(q.number::<usize>("bad").unwrap_err().code, 400);
    }
}

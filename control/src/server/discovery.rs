//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`), `/version`,
//! and a minimal OpenAPI document so that clients which insist on downloading one (kubectl's
//! client-side validation) work: it carries no schemas, which kubectl treats as "nothing to
//! validate against" and leaves to the server.

use serde_json::{json, Value};
use skiff_api::constants::{KUBERNETES_MAJOR, KUBERNETES_MINOR};
use skiff_api::resources::{self, ResourceInfo, RESOURCES};

use super::metrics_api;

const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn groups() -> Value {
    let groups: Vec<Value> = resources::api_groups()
        .iter()
        .map(|(g, v)| group_json(g, v))
        .chain([group_json(metrics_api::GROUP, metrics_api::VERSION)])
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    resources::api_groups()
        .iter()
        .copied()
        .chain([(metrics_api::GROUP, metrics_api::VERSION)])
        .find(|(g, _)| *g == name)
        .map(|(g, v)| {
            let mut doc = group_json(g, v);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

/// (name, kind, group, version, verbs) of a subresource, as kube-apiserver lists it.
fn subresource_entry(r: &ResourceInfo, sub: &str) -> Value {
    let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match sub {
        "status" => (r.kind, "", "", &["get", "patch", "update"]),
        "scale" => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
        "binding" => ("Binding", "", "", &["create"]),
        "eviction" => ("Eviction", "policy", "v1", &["create"]),
        "log" => ("Pod", "", "", &["get"]),
        "exec" => ("PodExecOptions", "", "", &["create", "get"]),
        "attach" => ("PodAttachOptions", "", "", &["create", "get"]),
        "portforward" => ("PodPortForwardOptions", "", "", &["create", "get"]),
        "finalize" => (r.kind, "", "", &["update"]),
        "token" => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
        _ => (r.kind, "", "", &["get"]),
    };
    let mut entry = json!({
        "name": format!("{}/{}", r.plural, sub),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !group.is_empty() {
        entry["group"] = json!(group);
        entry["version"] = json!(version);
    }
    entry
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (metrics_api::GROUP, metrics_api::VERSION) {
        return Some(metrics_api::resource_list());
    }
    let members: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in members {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ALL_VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if r.in_category_all {
            entry["categories"] = json!(["all"]);
        }
        list.push(entry);
        for sub in r.subresources {
            list.push(subresource_entry(r, sub));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

const OPENAPI_TITLE: &str = "skiff";

/// The OpenAPI v2 document as JSON.
pub fn openapi_v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": OPENAPI_TITLE, "version": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}")},
        "paths": {},
        "definitions": {},
    })
}

/// The same document in the protobuf encoding kubectl asks for
/// (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, gnostic's `Document`):
/// field 1 `swagger`, field 2 `info` with `title` (1) and `version` (2).
pub fn openapi_v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2); // length-delimited
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, OPENAPI_TITLE.as_bytes());
    field(
        &mut info,
        2,
        format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}").as_bytes(),
    );
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

pub fn openapi_v3_root() -> Value {
    json!({"paths": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resources_with_subresources() {
        let list = resource_list("", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods"));
        assert!(names.contains(&"pods/status"));
        assert!(names.contains(&"pods/binding"));
        let pods = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(resource_list("nope", "v1").is_none());
    }

    #[test]
    fn groups_list_preferred_versions() {
        let g = groups();
        let apps = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .unwrap();
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert_eq!(group("batch").unwrap()["kind"], "APIGroup");
    }

    #[test]
    fn metrics_group_is_discoverable() {
        assert!(groups()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "metrics.k8s.io"));
        assert_eq!(group("metrics.k8s.io").unwrap()["kind"], "APIGroup");
        let list = resource_list("metrics.k8s.io", "v1beta1").unwrap();
        assert_eq!(list["resources"][0]["kind"], "NodeMetrics");
        assert!(resource_list("metrics.k8s.io", "v1").is_none());
    }

    #[test]
    fn protobuf_document_is_well_formed() {
        let doc = openapi_v2_protobuf();
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc[6] as usize, doc.len() - 7);
    }
}

//! `expose TYPE NAME --port=…`: a Service in front of a Deployment, ReplicaSet,
//! ReplicationController, Pod or Service, whose selector is the target's selector (a pod's
//! labels) and whose ports, when `--port` is not given, are the target's container ports.

use anyhow::Result;
use serde_json::{json, Map, Value};
use skiff_api::resources::ResourceInfo;
use thiserror::Error;

use crate::client::{resource_path, Cluster};
use crate::create;
use crate::fields::{int_at, items_at, name, str_at};
use crate::modify;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExposeError {
    #[error("cannot expose a {0}")]
    NotExposable(String),
    #[error("couldn't retrieve selectors via --selector flag or introspection: {0}")]
    NoSelector(String),
    #[error("couldn't find port via --port flag or introspection")]
    NoPort,
    #[error("invalid port {0:?}: must be a number between 1 and 65535")]
    BadPort(String),
    #[error("invalid label spec {0:?}, expected key=value")]
    BadLabel(String),
}

/// `expose` flags.
#[derive(Debug, Clone, Default)]
pub struct ExposeArgs {
    pub port: Option<String>,
    pub target_port: Option<String>,
    pub protocol: Option<String>,
    pub service_type: Option<String>,
    pub name: Option<String>,
    pub selector: Option<String>,
    pub labels: Option<String>,
    pub cluster_ip: Option<String>,
    pub external_ips: Vec<String>,
}

/// Parses `a=b,c=d`.
pub fn parse_map(text: &str) -> Result<Map<String, Value>, ExposeError> {
    let mut out = Map::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| ExposeError::BadLabel(part.to_string()))?;
        out.insert(k.to_string(), json!(v));
    }
    Ok(out)
}

/// The pod selector of the object, as a map (kubectl's MapBasedSelectorForObject).
pub fn selector_of(
    resource: &ResourceInfo,
    obj: &Value,
) -> Result<Map<String, Value>, ExposeError> {
    let map_at = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            let labels = map_at("/metadata/labels");
            if labels.is_empty() {
                return Err(ExposeError::NoSelector(
                    "the pod has no labels and cannot be exposed".into(),
                ));
            }
            Ok(labels)
        }
        ("", "Service") => {
            let sel = map_at("/spec/selector");
            if sel.is_empty() {
                return Err(ExposeError::NoSelector(
                    "the service has no pod selector set".into(),
                ));
            }
            Ok(sel)
        }
        ("", "ReplicationController") => {
            let sel = map_at("/spec/selector");
            if sel.is_empty() {
                return Err(ExposeError::NoSelector(format!(
                    "the replication controller {} has no selector",
                    name(obj)
                )));
            }
            Ok(sel)
        }
        ("apps", "Deployment" | "ReplicaSet") => {
            let expressions = items_at(obj, "/spec/selector/matchExpressions");
            if !expressions.is_empty() {
                return Err(ExposeError::NoSelector(format!(
                    "couldn't convert expressions - \"{}\" to map-based selector format",
                    Value::Array(expressions.to_vec())
                )));
            }
            let sel = map_at("/spec/selector/matchLabels");
            if sel.is_empty() {
                return Err(ExposeError::NoSelector(format!(
                    "the {} {} has no selector",
                    resource.singular,
                    name(obj)
                )));
            }
            Ok(sel)
        }
        _ => Err(ExposeError::NotExposable(resource.kind.to_string())),
    }
}

/// The ports (and their protocols) the object offers: its containers' ports, or a
/// Service's own ports.
pub fn ports_of(resource: &ResourceInfo, obj: &Value) -> Vec<(i64, String)> {
    let protocol = |p: &Value| match str_at(p, "/protocol") {
        "" => "TCP".to_string(),
        x => x.to_string(),
    };
    let containers: &[Value] = match (resource.group, resource.kind) {
        ("", "Service") => {
            return items_at(obj, "/spec/ports")
                .iter()
                .map(|p| (int_at(p, "/port"), protocol(p)))
                .collect();
        }
        ("", "Pod") => items_at(obj, "/spec/containers"),
        _ => items_at(obj, "/spec/template/spec/containers"),
    };
    let mut out: Vec<(i64, String)> = Vec::new();
    for c in containers {
        for p in items_at(c, "/ports") {
            let entry = (int_at(p, "/containerPort"), protocol(p));
            if entry.0 > 0 && !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

/// The Service `expose` creates for `obj`.
pub fn service_for(
    resource: &ResourceInfo,
    obj: &Value,
    args: &ExposeArgs,
) -> Result<Value, ExposeError> {
    if !matches!(
        (resource.group, resource.kind),
        ("", "Pod" | "Service" | "ReplicationController") | ("apps", "Deployment" | "ReplicaSet")
    ) {
        return Err(ExposeError::NotExposable(resource.kind.to_string()));
    }
    let selector = match args.selector.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => parse_map(s)?,
        None => selector_of(resource, obj)?,
    };
    let introspected = ports_of(resource, obj);
    let ports: Vec<(i64, Option<String>)> = match args.port.as_deref().filter(|p| !p.is_empty()) {
        Some(text) => text
            .split(',')
            .map(|p| {
                let n: i64 = p
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=65535).contains(n))
                    .ok_or_else(|| ExposeError::BadPort(p.to_string()))?;
                let proto = introspected
                    .iter()
                    .find(|(port, _)| *port == n)
                    .map(|(_, proto)| proto.clone());
                Ok((n, proto))
            })
            .collect::<Result<_, ExposeError>>()?,
        None => introspected
            .iter()
            .map(|(p, proto)| (*p, Some(proto.clone())))
            .collect(),
    };
    if ports.is_empty() {
        return Err(ExposeError::NoPort);
    }
    let target_port = args
        .target_port
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>()
                .map(|n| json!(n))
                .unwrap_or_else(|_| json!(t))
        });
    let several = ports.len() > 1;
    let service_ports: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, (port, proto))| {
            let protocol = args
                .protocol
                .clone()
                .filter(|p| !p.is_empty())
                .or_else(|| proto.clone())
                .unwrap_or_else(|| "TCP".into());
            let mut p = json!({
                "port": port,
                "protocol": protocol,
                "targetPort": target_port.clone().unwrap_or_else(|| json!(port)),
            });
            if several {
                p["name"] = json!(format!("port-{}", i + 1));
            }
            p
        })
        .collect();
    let labels = match args.labels.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => parse_map(l)?,
        None => obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    let service_name = args
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name(obj).to_string());
    let mut metadata = json!({"name": service_name});
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    let mut spec = json!({"ports": service_ports, "selector": selector});
    if let Some(t) = args.service_type.as_deref().filter(|t| !t.is_empty()) {
        spec["type"] = json!(t);
    }
    if let Some(ip) = args.cluster_ip.as_deref().filter(|t| !t.is_empty()) {
        spec["clusterIP"] = json!(ip);
    }
    if !args.external_ips.is_empty() {
        spec["externalIPs"] = json!(args.external_ips);
    }
    Ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}))
}

pub async fn run(
    cluster: &Cluster,
    targets: &[String],
    args: &ExposeArgs,
    dry_run: &str,
    output: Option<&str>,
) -> Result<()> {
    for (t, obj_name) in modify::named(targets, "expose")? {
        let resource = t.resource;
        if !matches!(
            (resource.group, resource.kind),
            ("", "Pod" | "Service" | "ReplicationController")
                | ("apps", "Deployment" | "ReplicaSet")
        ) {
            return Err(ExposeError::NotExposable(resource.kind.to_string()).into());
        }
        let obj = cluster
            .get(&resource_path(
                resource,
                cluster.object_namespace(resource),
                Some(&obj_name),
                None,
            ))
            .await?;
        let service = service_for(resource, &obj, args)?;
        create::submit_as(Some(cluster), service, dry_run, output, "exposed").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::resolve;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]},
                    {"name": "side", "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn service_from_a_deployment() {
        let deploy = resolve("deploy").expect("deployments");
        let args = ExposeArgs {
            port: Some("8080".into()),
            target_port: Some("80".into()),
            service_type: Some("NodePort".into()),
            ..Default::default()
        };
        let svc = service_for(deploy, &deployment(), &args).expect("service");
        assert_eq!(
            svc["spec"],
            json!({"ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}],
                "selector": {"app": "web"}, "type": "NodePort"})
        );
        assert_eq!(
            svc["metadata"],
            json!({"name": "web", "labels": {"app": "web", "tier": "fe"}})
        );
        // No --port: the container ports, named when there are several.
        let svc = service_for(deploy, &deployment(), &ExposeArgs::default()).expect("service");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "port-1", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "port-2", "port": 53, "protocol": "UDP", "targetPort": 53}])
        );
    }

    #[test]
    fn refusals() {
        let pod = resolve("po").expect("pods");
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            service_for(pod, &bare, &ExposeArgs::default()).map_err(|e| e.to_string()),
            Err("couldn't retrieve selectors via --selector flag or introspection: the pod has no labels and cannot be exposed".into())
        );
        let labelled = json!({"metadata": {"name": "p", "labels": {"run": "p"}}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            service_for(pod, &labelled, &ExposeArgs::default()),
            Err(ExposeError::NoPort)
        );
        let node = resolve("no").expect("nodes");
        assert_eq!(
            service_for(node, &labelled, &ExposeArgs::default()),
            Err(ExposeError::NotExposable("Node".into()))
        );
        let deploy = resolve("deploy").expect("deployments");
        let mut d = deployment();
        d["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
        assert!(matches!(
            service_for(deploy, &d, &ExposeArgs::default()),
            Err(ExposeError::NoSelector(_))
        ));
    }
}

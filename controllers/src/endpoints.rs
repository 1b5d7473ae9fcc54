//! Endpoints and EndpointSlices for Services with a selector: which pods back a Service, on
//! which ports, and whether each is ready.
//!
//! The desired objects are a pure function of the Service and the pods in its namespace
//! (`desired`); the reconcile writes only what differs. Both carry an owner reference to the
//! Service, so the API server removes them with it. Services without a selector keep
//! whatever Endpoints their users write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::Error;
use crate::objects;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// A periodic re-check, in case a write was lost.
const RESYNC: Duration = Duration::from_secs(300);

pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let services = ctx.informers.services.reader();
    let pods = ctx.informers.pods.reader();
    let mapper = PodToServices::new(services.clone(), pods);
    Controller::for_shared_stream(ctx.informers.services.subscribe(), services)
        .watches_shared_stream(ctx.informers.pods.subscribe(), move |pod| mapper.map(pod))
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(log_outcome("endpoints"))
        .boxed()
}

/// Which Services a pod change concerns: those selecting it now and those that selected it
/// before (its labels may have changed, or it may be gone).
struct PodToServices {
    services: Store<Service>,
    pods: Store<Pod>,
    previous: Mutex<HashMap<String, Vec<ObjectRef<Service>>>>,
}

impl PodToServices {
    fn new(services: Store<Service>, pods: Store<Pod>) -> PodToServices {
        PodToServices {
            services,
            pods,
            previous: Default::default(),
        }
    }

    fn map(&self, pod: Arc<Pod>) -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        let labels = objects::labels(&pod.metadata);
        let now: Vec<ObjectRef<Service>> = self
            .services
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| selects(s, labels))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let uid = pod.uid().unwrap_or_default();
        let gone = self.pods.get(&ObjectRef::from_obj(pod.as_ref())).is_none();
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = if gone {
            previous.remove(&uid).unwrap_or_default()
        } else {
            previous.insert(uid, now.clone()).unwrap_or_default()
        };
        for r in now {
            if !all.contains(&r) {
                all.push(r);
            }
        }
        all
    }
}

fn selector_map(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(svc: &Service, labels: &BTreeMap<String, String>) -> bool {
    selector_map(svc).is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// One backend of a Service: a pod's address, readiness and resolved ports.
#[derive(Debug, Clone, PartialEq)]
struct Backend {
    address: EndpointAddress,
    ready: bool,
    terminating: bool,
    ports: Vec<EndpointPort>,
}

/// The Service's ports as this pod serves them; a named target port the pod does not
/// declare leaves that port out for this pod, as in Kubernetes.
fn resolve_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let Some(ports) = svc.spec.as_ref().and_then(|s| s.ports.as_ref()) else {
        return Vec::new();
    };
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for sp in ports {
        let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
        let number = match &sp.target_port {
            None => Some(sp.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|cp| cp.container_port),
        };
        if let Some(port) = number {
            out.push(EndpointPort {
                name: sp.name.clone(),
                port,
                protocol: Some(protocol),
                app_protocol: sp.app_protocol.clone(),
            });
        }
    }
    out
}

fn backends(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Backend> {
    let ns = svc.namespace().unwrap_or_default();
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let name = svc.name_any();
    let mut out: Vec<Backend> = pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| selects(svc, objects::labels(&p.metadata)))
        .filter(|p| !matches!(objects::phase(p), "Succeeded" | "Failed"))
        .filter_map(|p| {
            let ip = p
                .status
                .as_ref()?
                .pod_ip
                .clone()
                .filter(|ip| !ip.is_empty())?;
            let spec = p.spec.as_ref();
            let hostname = spec
                .filter(|s| s.subdomain.as_deref() == Some(name.as_str()))
                .and_then(|s| s.hostname.clone());
            Some(Backend {
                address: EndpointAddress {
                    ip,
                    hostname,
                    node_name: spec.and_then(|s| s.node_name.clone()),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: p.metadata.name.clone(),
                        namespace: p.metadata.namespace.clone(),
                        uid: p.metadata.uid.clone(),
                        ..Default::default()
                    }),
                },
                ready: publish_not_ready || objects::is_pod_ready(p),
                terminating: objects::is_terminating(&p.metadata),
                ports: resolve_ports(svc, p),
            })
        })
        .collect();
    out.sort_by(|a, b| a.address.ip.cmp(&b.address.ip));
    out
}

fn port_key(ports: &[EndpointPort]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port,
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Endpoints subsets: backends grouped by the ports they serve. Terminating pods are left
/// out (they stay visible in EndpointSlices with `terminating: true`).
fn subsets(backends: &[Backend]) -> Vec<EndpointSubset> {
    let mut groups: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    for b in backends.iter().filter(|b| !b.terminating) {
        let subset = groups
            .entry(port_key(&b.ports))
            .or_insert_with(|| EndpointSubset {
                ports: (!b.ports.is_empty()).then(|| b.ports.clone()),
                ..Default::default()
            });
        let list = if b.ready {
            subset.addresses.get_or_insert_with(Vec::new)
        } else {
            subset.not_ready_addresses.get_or_insert_with(Vec::new)
        };
        list.push(b.address.clone());
    }
    groups.into_values().collect()
}

fn owner(svc: &Service) -> OwnerReference {
    let mut r = objects::controller_reference(svc);
    r.block_owner_deletion = None;
    r
}

fn endpoints_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Endpoints object the Service should have.
fn desired_endpoints(svc: &Service, backends: &[Backend]) -> Endpoints {
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(endpoints_labels(svc)),
            owner_references: Some(vec![owner(svc)]),
            ..Default::default()
        },
        subsets: Some(subsets(backends)).filter(|s| !s.is_empty()),
    }
}

/// One EndpointSlice per distinct port set, named after the Service and the port set.
fn desired_slices(svc: &Service, backends: &[Backend]) -> Vec<EndpointSlice> {
    let name = svc.name_any();
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for b in backends {
        let (_, endpoints) = groups
            .entry(port_key(&b.ports))
            .or_insert_with(|| (b.ports.clone(), Vec::new()));
        endpoints.push(Endpoint {
            addresses: vec![b.address.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(b.ready && !b.terminating),
                serving: Some(b.ready),
                terminating: Some(b.terminating),
            }),
            hostname: b.address.hostname.clone(),
            node_name: b.address.node_name.clone(),
            target_ref: b.address.target_ref.clone(),
            ..Default::default()
        });
    }
    if groups.is_empty() {
        // A Service without backends still has one (empty) slice, as in Kubernetes.
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|ps| {
                ps.iter()
                    .map(|p| EndpointPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: p.protocol.clone(),
                        app_protocol: None,
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        groups.insert(String::new(), (ports, Vec::new()));
    }
    let mut labels = endpoints_labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    groups
        .into_iter()
        .map(|(key, (ports, endpoints))| EndpointSlice {
            metadata: ObjectMeta {
                name: Some(slice_name(&name, &key)),
                namespace: svc.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner(svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(
                ports
                    .into_iter()
                    .map(|p| SlicePort {
                        name: p.name,
                        port: Some(p.port),
                        protocol: p.protocol,
                        app_protocol: p.app_protocol,
                    })
                    .collect(),
            ),
        })
        .collect()
}

fn slice_name(service: &str, port_key: &str) -> String {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let hash = port_key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let prefix: String = service.chars().take(50).collect();
    format!("{prefix}-{:08x}", hash as u32)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = object_key(svc.as_ref());
    if selector_map(&svc).is_none() || objects::is_terminating(&svc.metadata) {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let pods = ctx.informers.pods.reader().state();
    let backends = backends(&svc, &pods);

    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let want = desired_endpoints(&svc, &backends);
    let name = svc.name_any();
    match api
        .get_opt(&name)
        .await
        .map_err(|e| Error::api("get", format!("endpoints {key}"), e))?
    {
        None => {
            api.create(&PostParams::default(), &want)
                .await
                .map_err(|e| Error::api("create", format!("endpoints {key}"), e))?;
        }
        Some(mut have) => {
            if have.subsets.clone().unwrap_or_default() != want.subsets.clone().unwrap_or_default()
                || have.metadata.labels != want.metadata.labels
                || have.metadata.owner_references != want.metadata.owner_references
            {
                have.subsets = want.subsets;
                have.metadata.labels = want.metadata.labels;
                have.metadata.owner_references = want.metadata.owner_references;
                api.replace(&name, &PostParams::default(), &have)
                    .await
                    .map_err(|e| Error::api("update", format!("endpoints {key}"), e))?;
            }
        }
    }

    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = slices
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        )))
        .await
        .map_err(|e| Error::api("list", format!("endpointslices of {key}"), e))?
        .items;
    let wanted = desired_slices(&svc, &backends);
    for want in &wanted {
        let slice_name = want.name_any();
        match existing.iter().find(|s| s.name_any() == slice_name) {
            None => {
                slices
                    .create(&PostParams::default(), want)
                    .await
                    .map_err(|e| {
                        Error::api("create", format!("endpointslice {ns}/{slice_name}"), e)
                    })?;
            }
            Some(have)
                if have.endpoints != want.endpoints
                    || have.ports != want.ports
                    || have.metadata.labels != want.metadata.labels =>
            {
                let mut next = want.clone();
                next.metadata.resource_version = have.metadata.resource_version.clone();
                slices
                    .replace(&slice_name, &PostParams::default(), &next)
                    .await
                    .map_err(|e| {
                        Error::api("update", format!("endpointslice {ns}/{slice_name}"), e)
                    })?;
            }
            Some(_) => {}
        }
    }
    for stale in existing
        .iter()
        .filter(|s| !wanted.iter().any(|w| w.name_any() == s.name_any()))
    {
        match slices
            .delete(&stale.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(Error::api(
                    "delete",
                    format!("endpointslice {ns}/{}", stale.name_any()),
                    e,
                ))
            }
        }
    }
    ctx.succeeded(&key);
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, labels: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                    "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn web() -> Service {
        service(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9000}]},
        }))
    }

    #[test]
    fn ready_and_not_ready_pods_land_in_their_lists_with_named_ports_resolved() {
        let pods = vec![
            pod("b", "10.244.0.3", true, json!({"app": "web"})),
            pod("a", "10.244.0.2", false, json!({"app": "web"})),
            pod("other", "10.244.0.9", true, json!({"app": "db"})),
        ];
        let ep = desired_endpoints(&web(), &backends(&web(), &pods));
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        let ips = |l: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            l.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&s.addresses), vec!["10.244.0.3"]);
        assert_eq!(ips(&s.not_ready_addresses), vec!["10.244.0.2"]);
        let ports: Vec<(Option<String>, i32)> = s
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![(Some("http".into()), 8080), (Some("metrics".into()), 9000)]
        );
    }

    #[test]
    fn a_pod_without_the_named_port_serves_only_the_other_ports() {
        let mut p = (*pod("a", "10.244.0.2", true, json!({"app": "web"}))).clone();
        p.spec.as_mut().unwrap().containers[0].ports = None;
        let b = backends(&web(), &[Arc::new(p)]);
        assert_eq!(b[0].ports.len(), 1);
        assert_eq!(b[0].ports[0].port, 9000);
    }

    #[test]
    fn terminating_pods_leave_endpoints_but_stay_in_slices_marked() {
        let mut p = (*pod("a", "10.244.0.2", true, json!({"app": "web"}))).clone();
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let b = backends(&web(), &[Arc::new(p)]);
        assert!(desired_endpoints(&web(), &b).subsets.is_none());
        let slices = desired_slices(&web(), &b);
        let cond = slices[0].endpoints[0].conditions.clone().unwrap();
        assert_eq!(cond.terminating, Some(true));
        assert_eq!(cond.ready, Some(false));
        assert_eq!(cond.serving, Some(true));
    }

    #[test]
    fn no_selector_means_hands_off_and_slices_are_named_stably() {
        let manual = service(json!({"metadata": {"name": "m"}, "spec": {"ports": [{"port": 1}]}}));
        assert!(selector_map(&manual).is_none());
        assert_eq!(
            slice_name("web", "http:80/TCP"),
            slice_name("web", "http:80/TCP")
        );
        assert_ne!(
            slice_name("web", "http:80/TCP"),
            slice_name("web", "http:81/TCP")
        );
        let empty = desired_slices(&web(), &[]);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].endpoints.is_empty());
        assert_eq!(
            empty[0].metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL],
            "web"
        );
    }

    #[test]
    fn hostname_is_published_for_pods_in_the_services_subdomain() {
        let mut p = (*pod("web-0", "10.244.0.2", true, json!({"app": "web"}))).clone();
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        let b = backends(&web(), &[Arc::new(p)]);
        assert_eq!(b[0].address.hostname.as_deref(), Some("web-0"));
    }
}

//! `cordon`, `uncordon` and `drain`. A drain cordons the node, decides pod by pod what may
//! go (kubectl's filters, in its order: DaemonSet-managed, mirror, local storage,
//! unmanaged), evicts the rest through `pods/{name}/eviction` (deleting them where the
//! server has no eviction), and waits until they are gone.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use crate::client::{encode, with_query, Cluster, PatchType};
use crate::errors::{self, Reported};
use crate::fields::{controller_of, items_at, str_at};

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

const DAEMONSET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMONSET_WARNING: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE_FATAL: &str =
    "Pods with local storage (use --delete-emptydir-data to override)";
const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
const UNMANAGED_FATAL: &str = "Pods declare no controller (use --force to override)";
const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";

// ---- cordon ----

/// `cordon`/`uncordon`: sets or clears `spec.unschedulable`.
pub async fn cordon(cluster: &Cluster, nodes: &[String], unschedulable: bool) -> Result<()> {
    let mut failures = errors::Failures::default();
    for node in nodes {
        match set_unschedulable(cluster, node, unschedulable).await {
            Ok(message) => println!("{message}"),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

/// Returns kubectl's line: `node/n1 cordoned` or `node/n1 already cordoned`.
async fn set_unschedulable(cluster: &Cluster, node: &str, unschedulable: bool) -> Result<String> {
    let path = format!("/api/v1/nodes/{}", encode(node));
    let obj = cluster.get(&path).await?;
    let now = obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    let word = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    if now == unschedulable {
        return Ok(format!("node/{node} already {word}"));
    }
    let value = if unschedulable {
        json!(true)
    } else {
        Value::Null
    };
    cluster
        .patch(
            &path,
            PatchType::Merge,
            &json!({"spec": {"unschedulable": value}}),
        )
        .await?;
    Ok(format!("node/{node} {word}"))
}

// ---- what a drain may do with each pod ----

#[derive(Debug, Clone, Copy, Default)]
pub struct DrainOptions {
    pub force: bool,
    pub ignore_daemonsets: bool,
    pub delete_emptydir_data: bool,
}

/// What happens to one pod; messages are kubectl's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Delete,
    /// Deleted, with a warning.
    DeleteWarn(String),
    /// Left alone silently (mirror pods).
    Skip,
    /// Left alone with a warning (DaemonSet pods with --ignore-daemonsets).
    SkipWarn(String),
    /// Refused: the whole drain stops.
    Fatal(String),
}

impl Verdict {
    fn deletes(&self) -> bool {
        matches!(self, Verdict::Delete | Verdict::DeleteWarn(_))
    }
}

/// A drain decided: the pods to evict, the warnings and the refusals, each refusal or
/// warning with its pods (`namespace/name`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub evict: Vec<Value>,
    pub warnings: Vec<(String, Vec<String>)>,
    pub errors: Vec<(String, Vec<String>)>,
}

impl Plan {
    /// `cannot delete …: ns/a, ns/b` per refusal.
    pub fn error_lines(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|(msg, pods)| format!("cannot delete {msg}: {}", pods.join(", ")))
            .collect()
    }

    /// `ignoring DaemonSet-managed Pods: ns/a; deleting …: ns/b`, or None.
    pub fn warning_line(&self) -> Option<String> {
        (!self.warnings.is_empty()).then(|| {
            self.warnings
                .iter()
                .map(|(msg, pods)| format!("{msg}: {}", pods.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

fn finished(pod: &Value) -> bool {
    matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

fn has_local_storage(pod: &Value) -> bool {
    items_at(pod, "/spec/volumes")
        .iter()
        .any(|v| v.get("emptyDir").is_some_and(|e| !e.is_null()))
}

fn daemonset_filter(
    pod: &Value,
    opts: DrainOptions,
    missing_daemonsets: &HashSet<(String, String)>,
) -> Verdict {
    let Some(owner) = controller_of(pod).filter(|o| str_at(o, "/kind") == "DaemonSet") else {
        return Verdict::Delete;
    };
    if finished(pod) {
        return Verdict::Delete;
    }
    let key = (
        str_at(pod, "/metadata/namespace").to_string(),
        str_at(owner, "/name").to_string(),
    );
    if missing_daemonsets.contains(&key) {
        let message = format!("daemonsets.apps \"{}\" not found", key.1);
        return if opts.force {
            Verdict::DeleteWarn(message)
        } else {
            Verdict::Fatal(message)
        };
    }
    if !opts.ignore_daemonsets {
        return Verdict::Fatal(DAEMONSET_FATAL.into());
    }
    Verdict::SkipWarn(DAEMONSET_WARNING.into())
}

fn mirror_filter(pod: &Value) -> Verdict {
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some();
    if mirror {
        Verdict::Skip
    } else {
        Verdict::Delete
    }
}

fn local_storage_filter(pod: &Value, opts: DrainOptions) -> Verdict {
    if !has_local_storage(pod) || finished(pod) {
        return Verdict::Delete;
    }
    if !opts.delete_emptydir_data {
        return Verdict::Fatal(LOCAL_STORAGE_FATAL.into());
    }
    Verdict::DeleteWarn(LOCAL_STORAGE_WARNING.into())
}

fn unreplicated_filter(pod: &Value, opts: DrainOptions) -> Verdict {
    if finished(pod) || controller_of(pod).is_some() {
        return Verdict::Delete;
    }
    if opts.force {
        return Verdict::DeleteWarn(UNMANAGED_WARNING.into());
    }
    Verdict::Fatal(UNMANAGED_FATAL.into())
}

/// kubectl's filters in its order; the first that keeps the pod decides, else the last
/// one's verdict stands (so an earlier warning can be overwritten, as in kubectl).
fn verdict(pod: &Value, opts: DrainOptions, missing: &HashSet<(String, String)>) -> Verdict {
    let mut last = Verdict::Delete;
    for filter in 0..4 {
        last = match filter {
            0 => daemonset_filter(pod, opts, missing),
            1 => mirror_filter(pod),
            2 => local_storage_filter(pod, opts),
            _ => unreplicated_filter(pod, opts),
        };
        if !last.deletes() {
            break;
        }
    }
    last
}

fn add(groups: &mut Vec<(String, Vec<String>)>, message: String, pod: String) {
    match groups.iter_mut().find(|(m, _)| *m == message) {
        Some((_, pods)) => pods.push(pod),
        None => groups.push((message, vec![pod])),
    }
}

/// Decides the drain of `pods`. `missing_daemonsets` holds (namespace, name) of the
/// DaemonSets that pods name as controller but that no longer exist.
pub fn plan(
    pods: &[Value],
    opts: DrainOptions,
    missing_daemonsets: &HashSet<(String, String)>,
) -> Plan {
    let mut out = Plan::default();
    for pod in pods {
        let id = format!(
            "{}/{}",
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/metadata/name")
        );
        match verdict(pod, opts, missing_daemonsets) {
            Verdict::Delete => out.evict.push(pod.clone()),
            Verdict::DeleteWarn(w) => {
                add(&mut out.warnings, w, id);
                out.evict.push(pod.clone());
            }
            Verdict::Skip => {}
            Verdict::SkipWarn(w) => add(&mut out.warnings, w, id),
            Verdict::Fatal(e) => add(&mut out.errors, e, id),
        }
    }
    // In the order of kubectl's filters, so the output doesn't depend on pod names.
    out.warnings.sort_by_key(|(m, _)| filter_rank(m));
    out.errors.sort_by_key(|(m, _)| filter_rank(m));
    out
}

fn filter_rank(message: &str) -> u8 {
    match message {
        LOCAL_STORAGE_FATAL | LOCAL_STORAGE_WARNING => 2,
        UNMANAGED_FATAL | UNMANAGED_WARNING => 3,
        // DaemonSet messages, including "daemonsets.apps … not found".
        _ => 1,
    }
}

/// A duration as Go prints it (`5s`, `1m30s`, `1h0m0s`), for kubectl's timeout message.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

// ---- drain ----

#[derive(Debug, Clone, Default)]
pub struct DrainArgs {
    pub nodes: Vec<String>,
    pub options: DrainOptions,
    /// Seconds each pod gets to stop (-1: its own terminationGracePeriodSeconds).
    pub grace_period: i64,
    pub timeout: Option<Duration>,
    /// Delete instead of evicting.
    pub disable_eviction: bool,
    pub pod_selector: Option<String>,
}

pub async fn drain(cluster: &Cluster, args: &DrainArgs) -> Result<()> {
    for (i, node) in args.nodes.iter().enumerate() {
        println!("{}", set_unschedulable(cluster, node, true).await?);
        match drain_node(cluster, node, args).await {
            Ok(()) => println!("node/{node} drained"),
            Err(e) => {
                let (summary, lines) = match e.downcast_ref::<Refused>() {
                    Some(refused) => (refused.summary(), refused.0.clone()),
                    None => (format!("{e:#}"), vec![format!("{e:#}")]),
                };
                eprintln!(
                    "error: unable to drain node \"{node}\" due to error:{summary}, continuing command..."
                );
                eprintln!("There are pending nodes to be drained:");
                for pending in &args.nodes[i..] {
                    eprintln!(" {pending}");
                }
                for line in lines {
                    eprintln!("{line}");
                }
                return Err(anyhow::Error::new(Reported));
            }
        }
    }
    Ok(())
}

/// The drain's refusals, one line each.
#[derive(Debug)]
struct Refused(Vec<String>);

impl Refused {
    /// As Go's error aggregate prints: the one message, or `[a, b]`.
    fn summary(&self) -> String {
        match self.0.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl std::error::Error for Refused {}

async fn drain_node(cluster: &Cluster, node: &str, args: &DrainArgs) -> Result<()> {
    let field = format!("spec.nodeName={node}");
    let list = cluster
        .get(&with_query(
            "/api/v1/pods",
            &[
                ("fieldSelector", &field),
                ("labelSelector", args.pod_selector.as_deref().unwrap_or("")),
            ],
        ))
        .await?;
    let pods = items_at(&list, "/items").to_vec();
    let missing = missing_daemonsets(cluster, &pods).await?;
    let plan = plan(&pods, args.options, &missing);
    if !plan.errors.is_empty() {
        return Err(anyhow::Error::new(Refused(plan.error_lines())));
    }
    if let Some(w) = plan.warning_line() {
        eprintln!("Warning: {w}");
    }
    let work = evict_and_wait(cluster, &plan.evict, args);
    match args.timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| anyhow!("drain did not complete within {}", go_duration(limit)))?,
        None => work.await,
    }
}

/// The DaemonSets pods on the node name as controller that are gone.
async fn missing_daemonsets(
    cluster: &Cluster,
    pods: &[Value],
) -> Result<HashSet<(String, String)>> {
    let mut seen = HashSet::new();
    let mut missing = HashSet::new();
    for pod in pods {
        let Some(owner) = controller_of(pod).filter(|o| str_at(o, "/kind") == "DaemonSet") else {
            continue;
        };
        let key = (
            str_at(pod, "/metadata/namespace").to_string(),
            str_at(owner, "/name").to_string(),
        );
        if !seen.insert(key.clone()) {
            continue;
        }
        let path = format!(
            "/apis/apps/v1/namespaces/{}/daemonsets/{}",
            encode(&key.0),
            encode(&key.1)
        );
        match cluster.get(&path).await {
            Ok(_) => {}
            Err(e) if errors::is_not_found(&e) => {
                missing.insert(key);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{}/pods/{}", encode(ns), encode(name))
}

/// How a pod was removed: `evicted` or `deleted`.
async fn remove_pod(cluster: &Cluster, pod: &Value, args: &DrainArgs) -> Result<&'static str> {
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let path = pod_path(ns, name);
    let mut options = json!({"apiVersion": "v1", "kind": "DeleteOptions"});
    if args.grace_period >= 0 {
        options["gracePeriodSeconds"] = json!(args.grace_period);
    }
    if !args.disable_eviction {
        let eviction = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
            "deleteOptions": options,
        });
        loop {
            match cluster.post(&format!("{path}/eviction"), &eviction).await {
                Ok(_) => return Ok("evicted"),
                // A disruption budget says not now: kubectl retries every 5 s.
                Err(e) if errors::server_error(&e).is_some_and(|s| s.code == 429) => {
                    let message = errors::server_error(&e)
                        .map(|s| s.message.clone())
                        .unwrap_or_default();
                    eprintln!(
                        "error when evicting pods/\"{name}\" -n \"{ns}\" (will retry after 5s): {message}"
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) if errors::server_error(&e).is_some_and(|s| s.code == 404) => {
                    // Either the pod is gone already or the server has no eviction.
                    match cluster.get(&path).await {
                        Err(e) if errors::is_not_found(&e) => return Ok("evicted"),
                        _ => break,
                    }
                }
                Err(e) if errors::server_error(&e).is_some_and(|s| s.code == 405) => break,
                Err(e) => return Err(e),
            }
        }
    }
    match cluster.delete(&path, &options).await {
        Ok(_) => Ok("deleted"),
        Err(e) if errors::is_not_found(&e) => Ok("deleted"),
        Err(e) => Err(e),
    }
}

/// Whether the pod with this uid is gone (a new pod of the same name doesn't count).
async fn gone(cluster: &Cluster, pod: &Value) -> Result<bool> {
    let path = pod_path(
        str_at(pod, "/metadata/namespace"),
        str_at(pod, "/metadata/name"),
    );
    match cluster.get(&path).await {
        Ok(now) => Ok(str_at(&now, "/metadata/uid") != str_at(pod, "/metadata/uid")),
        Err(e) if errors::is_not_found(&e) => Ok(true),
        Err(e) => Err(e),
    }
}

async fn evict_and_wait(cluster: &Cluster, pods: &[Value], args: &DrainArgs) -> Result<()> {
    let mut pending = Vec::new();
    for pod in pods {
        let ns = str_at(pod, "/metadata/namespace");
        let name = str_at(pod, "/metadata/name");
        if !args.disable_eviction {
            println!("evicting pod {ns}/{name}");
        }
        let how = remove_pod(cluster, pod, args).await?;
        pending.push((pod, how));
    }
    while !pending.is_empty() {
        let mut left = Vec::new();
        for (pod, how) in pending {
            if gone(cluster, pod).await? {
                println!("pod/{} {how}", str_at(pod, "/metadata/name"));
                let _ = std::io::stdout().flush();
            } else {
                left.push((pod, how));
            }
        }
        pending = left;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: Option<&str>, extra: Value) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running"}});
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "owner", "uid": "u", "controller": true}]);
        }
        if let Some(obj) = extra.as_object() {
            for (k, v) in obj {
                match k.as_str() {
                    "annotations" => p["metadata"]["annotations"] = v.clone(),
                    "volumes" => p["spec"]["volumes"] = v.clone(),
                    "phase" => p["status"]["phase"] = v.clone(),
                    _ => {}
                }
            }
        }
        p
    }

    fn names(pods: &[Value]) -> Vec<&str> {
        pods.iter().map(|p| str_at(p, "/metadata/name")).collect()
    }

    fn cluster_pods() -> Vec<Value> {
        vec![
            pod("web", Some("ReplicaSet"), json!({})),
            pod("ds", Some("DaemonSet"), json!({})),
            pod("bare", None, json!({})),
            pod(
                "cache",
                Some("ReplicaSet"),
                json!({"volumes": [{"name": "v", "emptyDir": {}}]}),
            ),
            pod(
                "static",
                None,
                json!({"annotations": {MIRROR_ANNOTATION: "x"}}),
            ),
            pod("done", None, json!({"phase": "Succeeded"})),
        ]
    }

    #[test]
    fn refuses_like_kubectl() {
        let plan = plan(&cluster_pods(), DrainOptions::default(), &HashSet::new());
        assert_eq!(
            plan.error_lines(),
            [
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds",
                "cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache",
                "cannot delete Pods declare no controller (use --force to override): default/bare",
            ]
        );
    }

    #[test]
    fn evicts_with_the_flags() {
        let opts = DrainOptions {
            force: true,
            ignore_daemonsets: true,
            delete_emptydir_data: true,
        };
        let plan = plan(&cluster_pods(), opts, &HashSet::new());
        assert!(plan.errors.is_empty());
        assert_eq!(names(&plan.evict), ["web", "bare", "cache", "done"]);
        assert_eq!(
            plan.warning_line().as_deref(),
            Some("ignoring DaemonSet-managed Pods: default/ds; deleting Pods that declare no controller: default/bare")
        );
        // A pod whose DaemonSet is gone needs --force.
        let missing: HashSet<_> = [("default".to_string(), "owner".to_string())].into();
        let lonely = [pod("ds", Some("DaemonSet"), json!({}))];
        let p = super::plan(&lonely, DrainOptions::default(), &missing);
        assert_eq!(
            p.error_lines(),
            ["cannot delete daemonsets.apps \"owner\" not found: default/ds"]
        );
    }

    #[test]
    fn refusal_summaries_and_durations() {
        assert_eq!(Refused(vec!["a".into()]).summary(), "a");
        assert_eq!(Refused(vec!["a".into(), "b".into()]).summary(), "[a, b]");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}

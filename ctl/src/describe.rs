//! `describe TYPE NAME`: a readable account of an object and its recent events, laid out as
//! kubectl does (labels on aligned continuation lines, containers, conditions tables…).
//! Pods, Deployments, ReplicaSets, ReplicationControllers, DaemonSets, StatefulSets, Jobs,
//! CronJobs, HorizontalPodAutoscalers, Services, Nodes, ConfigMaps and Secrets have their
//! own layouts; everything else gets the generic key/value rendering.

use anyhow::Result;
use serde_json::Value;
use skiff_api::constants::LAST_APPLIED_ANNOTATION;
use skiff_api::resources::ResourceInfo;

use crate::age;
use crate::client::{resource_path, with_query, Cluster};
use crate::errors::{self, Failures};
use crate::table;

/// Lines of tab-separated cells, aligned at the end like Go's tabwriter (padding 2).
#[derive(Default)]
pub struct Doc {
    lines: Vec<Vec<String>>,
}

fn indent(level: usize, s: &str) -> String {
    format!("{}{s}", "  ".repeat(level))
}

impl Doc {
    pub fn kv(&mut self, level: usize, key: &str, value: impl Into<String>) {
        self.lines
            .push(vec![indent(level, &format!("{key}:")), value.into()]);
    }

    pub fn line(&mut self, level: usize, text: &str) {
        self.lines.push(vec![indent(level, text)]);
    }

    pub fn cells(&mut self, level: usize, cells: Vec<String>) {
        let mut cells = cells;
        if let Some(first) = cells.first_mut() {
            *first = indent(level, first);
        }
        self.lines.push(cells);
    }

    /// A key whose values continue on aligned lines (`Labels:`, `Annotations:`).
    pub fn multi(&mut self, level: usize, key: &str, values: Vec<String>) {
        if values.is_empty() {
            self.kv(level, key, "<none>");
            return;
        }
        for (i, v) in values.into_iter().enumerate() {
            if i == 0 {
                self.kv(level, key, v);
            } else {
                self.cells(level, vec![String::new(), v]);
            }
        }
    }

    pub fn blank(&mut self) {
        self.lines.push(vec![String::new()]);
    }

    pub fn render(&self) -> String {
        table::align(&self.lines, 0, 2)
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text.into()
    }
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// kubectl's describe time format (RFC 1123 with numeric zone) in local time.
pub fn timestamp(v: Option<&Value>) -> String {
    match age::parse(v) {
        Some(t) => {
            let tz = jiff::tz::TimeZone::system();
            t.to_zoned(tz)
                .strftime("%a, %d %b %Y %H:%M:%S %z")
                .to_string()
        }
        None => "<unset>".into(),
    }
}

/// `k=v` lines of a string map, sorted, skipping the last-applied annotation.
fn map_lines(map: Option<&Value>, separator: &str) -> Vec<String> {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED_ANNOTATION)
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}{separator}{s}"),
                    other => format!("{k}{separator}{other}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn labels_text(map: Option<&Value>) -> String {
    let lines = map_lines(map, "=");
    if lines.is_empty() {
        "<none>".into()
    } else {
        lines.join(",")
    }
}

fn selector_text(selector: Option<&Value>) -> String {
    let Some(sel) = selector.filter(|v| !v.is_null()) else {
        return "<none>".into();
    };
    let mut parts = map_lines(sel.get("matchLabels"), "=");
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(e, "/key");
        let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn metadata_head(doc: &mut Doc, obj: &Value, with_namespace: bool) {
    doc.kv(0, "Name", s(obj, "/metadata/name"));
    if with_namespace {
        doc.kv(0, "Namespace", s(obj, "/metadata/namespace"));
    }
}

fn labels_and_annotations(doc: &mut Doc, obj: &Value) {
    doc.multi(0, "Labels", map_lines(obj.pointer("/metadata/labels"), "="));
    doc.multi(
        0,
        "Annotations",
        map_lines(obj.pointer("/metadata/annotations"), ": "),
    );
}

fn controlled_by(obj: &Value) -> Option<String> {
    arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| format!("{}/{}", s(o, "/kind"), s(o, "/name")))
}

// ---- containers ----

fn ports_text(container: &Value, field: &str) -> Vec<String> {
    arr(container, "/ports")
        .iter()
        .map(|p| {
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            let port = n(p, &format!("/{field}"));
            let name = s(p, "/name");
            if field == "containerPort" && !name.is_empty() {
                format!("{port}/{proto} ({name})")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect()
}

fn probe_text(p: &Value) -> String {
    let timing = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        n(p, "/initialDelaySeconds"),
        p.pointer("/timeoutSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        p.pointer("/periodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(10),
        p.pointer("/successThreshold")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        p.pointer("/failureThreshold")
            .and_then(Value::as_i64)
            .unwrap_or(3),
    );
    let port = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    if let Some(h) = p.get("httpGet") {
        let scheme = match s(h, "/scheme") {
            "" => "http".to_string(),
            x => x.to_ascii_lowercase(),
        };
        format!(
            "http-get {scheme}://{}:{}{} {timing}",
            s(h, "/host"),
            port(h.get("port")),
            s(h, "/path")
        )
    } else if let Some(t) = p.get("tcpSocket") {
        format!(
            "tcp-socket {}:{} {timing}",
            s(t, "/host"),
            port(t.get("port"))
        )
    } else if let Some(e) = p.get("exec") {
        let cmd: Vec<&str> = arr(e, "/command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        format!("exec [{}] {timing}", cmd.join(" "))
    } else if let Some(g) = p.get("grpc") {
        format!("grpc <pod>:{} {timing}", port(g.get("port")))
    } else {
        format!("unknown {timing}")
    }
}

fn state_block(doc: &mut Doc, level: usize, key: &str, state: Option<&Value>) {
    let Some(state) = state.filter(|s| s.as_object().is_some_and(|m| !m.is_empty())) else {
        if key == "State" {
            doc.kv(level, key, "Waiting");
        }
        return;
    };
    if let Some(r) = state.get("running") {
        doc.kv(level, key, "Running");
        doc.kv(level + 1, "Started", timestamp(r.get("startedAt")));
    } else if let Some(w) = state.get("waiting") {
        doc.kv(level, key, "Waiting");
        if !s(w, "/reason").is_empty() {
            doc.kv(level + 1, "Reason", s(w, "/reason"));
        }
        if !s(w, "/message").is_empty() {
            doc.kv(level + 1, "Message", s(w, "/message"));
        }
    } else if let Some(t) = state.get("terminated") {
        doc.kv(level, key, "Terminated");
        doc.kv(level + 1, "Reason", s(t, "/reason"));
        if !s(t, "/message").is_empty() {
            doc.kv(level + 1, "Message", s(t, "/message"));
        }
        doc.kv(level + 1, "Exit Code", n(t, "/exitCode").to_string());
        if n(t, "/signal") != 0 {
            doc.kv(level + 1, "Signal", n(t, "/signal").to_string());
        }
        doc.kv(level + 1, "Started", timestamp(t.get("startedAt")));
        doc.kv(level + 1, "Finished", timestamp(t.get("finishedAt")));
    }
}

fn resources_block(doc: &mut Doc, level: usize, container: &Value) {
    for (key, field) in [
        ("Limits", "/resources/limits"),
        ("Requests", "/resources/requests"),
    ] {
        if let Some(map) = container
            .pointer(field)
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            doc.line(level, &format!("{key}:"));
            for (k, v) in map {
                doc.kv(level + 1, k, crate::jsonpath::value_text(v));
            }
        }
    }
}

fn env_block(doc: &mut Doc, level: usize, container: &Value) {
    let env = arr(container, "/env");
    let env_from = arr(container, "/envFrom");
    if env_from.is_empty() {
        if env.is_empty() {
            doc.kv(level, "Environment", "<none>");
            return;
        }
    } else {
        doc.line(level, "Environment Variables from:");
        for from in env_from {
            let (kind, name) = if let Some(cm) = from.get("configMapRef") {
                ("ConfigMap", s(cm, "/name"))
            } else if let Some(sec) = from.get("secretRef") {
                ("Secret", s(sec, "/name"))
            } else {
                ("", "")
            };
            let prefix = s(from, "/prefix");
            let extra = if prefix.is_empty() {
                String::new()
            } else {
                format!(" with prefix '{prefix}'")
            };
            doc.cells(
                level + 1,
                vec![name.to_string(), format!("{kind}{extra}  Optional: false")],
            );
        }
        if env.is_empty() {
            doc.kv(level, "Environment", "<none>");
            return;
        }
    }
    doc.line(level, "Environment:");
    for e in env {
        let name = s(e, "/name");
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            v.to_string()
        } else if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
            format!(
                "<set to the key '{}' of config map '{}'>",
                s(r, "/key"),
                s(r, "/name")
            )
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            format!(
                "<set to the key '{}' in secret '{}'>",
                s(r, "/key"),
                s(r, "/name")
            )
        } else if let Some(r) = e.pointer("/valueFrom/fieldRef") {
            format!("({}:{})", s(r, "/apiVersion"), s(r, "/fieldPath"))
        } else if let Some(r) = e.pointer("/valueFrom/resourceFieldRef") {
            format!("{} ({})", s(r, "/resource"), s(r, "/containerName"))
        } else {
            String::new()
        };
        doc.kv(level + 1, name, value);
    }
}

fn mounts_block(doc: &mut Doc, level: usize, container: &Value) {
    let mounts = arr(container, "/volumeMounts");
    if mounts.is_empty() {
        doc.kv(level, "Mounts", "<none>");
        return;
    }
    doc.line(level, "Mounts:");
    for m in mounts {
        let mode = if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
            "ro"
        } else {
            "rw"
        };
        let sub = s(m, "/subPath");
        let sub = if sub.is_empty() {
            String::new()
        } else {
            format!(",path=\"{sub}\"")
        };
        doc.line(
            level + 1,
            &format!(
                "{} from {} ({mode}{sub})",
                s(m, "/mountPath"),
                s(m, "/name")
            ),
        );
    }
}

/// One container. `status` is its status in a pod (none yet, or a template: `None`);
/// `template` says it belongs to a pod template, which kubectl indents one space further.
fn container_block(doc: &mut Doc, level: usize, c: &Value, status: Option<&Value>, template: bool) {
    let lead = if template { " " } else { "" };
    doc.line(level, &format!("{lead}{}:", s(c, "/name")));
    let l = level + 1;
    if let Some(st) = status {
        doc.kv(l, "Container ID", s(st, "/containerID"));
    }
    doc.kv(l, "Image", s(c, "/image"));
    if let Some(st) = status {
        doc.kv(l, "Image ID", s(st, "/imageID"));
    }
    let ports = ports_text(c, "containerPort");
    let host: Vec<String> = arr(c, "/ports")
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                n(p, "/hostPort"),
                match s(p, "/protocol") {
                    "" => "TCP",
                    x => x,
                }
            )
        })
        .collect();
    match ports.len() {
        0 => doc.kv(l, "Port", "<none>"),
        1 => doc.kv(l, "Port", ports[0].clone()),
        _ => doc.kv(l, "Ports", ports.join(", ")),
    }
    match host.len() {
        0 => doc.kv(l, "Host Port", "<none>"),
        1 => doc.kv(l, "Host Port", host[0].clone()),
        _ => doc.kv(l, "Host Ports", host.join(", ")),
    }
    for (key, field) in [("Command", "/command"), ("Args", "/args")] {
        let items = arr(c, field);
        if !items.is_empty() {
            doc.line(l, &format!("{key}:"));
            for i in items {
                doc.line(l + 1, &crate::jsonpath::value_text(i));
            }
        }
    }
    if let Some(st) = status {
        state_block(doc, l, "State", st.get("state"));
        state_block(doc, l, "Last State", st.get("lastState"));
        doc.kv(
            l,
            "Ready",
            if st.get("ready").and_then(Value::as_bool) == Some(true) {
                "True"
            } else {
                "False"
            },
        );
        doc.kv(l, "Restart Count", n(st, "/restartCount").to_string());
    }
    resources_block(doc, l, c);
    for (key, field) in [
        ("Liveness", "/livenessProbe"),
        ("Readiness", "/readinessProbe"),
        ("Startup", "/startupProbe"),
    ] {
        if let Some(p) = c.pointer(field) {
            doc.kv(l, key, probe_text(p));
        }
    }
    env_block(doc, l, c);
    mounts_block(doc, l, c);
}

fn volumes_block(doc: &mut Doc, level: usize, spec: &Value) {
    let volumes = arr(spec, "/volumes");
    if volumes.is_empty() {
        doc.kv(level, "Volumes", "<none>");
        return;
    }
    doc.line(level, "Volumes:");
    for v in volumes {
        doc.line(level + 1, &format!("{}:", s(v, "/name")));
        let l = level + 2;
        if let Some(e) = v.get("emptyDir") {
            doc.kv(
                l,
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            doc.kv(l, "Medium", s(e, "/medium"));
            doc.kv(
                l,
                "SizeLimit",
                match e.get("sizeLimit") {
                    Some(x) => crate::jsonpath::value_text(x),
                    None => "<unset>".into(),
                },
            );
        } else if let Some(c) = v.get("configMap") {
            doc.kv(l, "Type", "ConfigMap (a volume populated by a ConfigMap)");
            doc.kv(l, "Name", s(c, "/name"));
            doc.kv(
                l,
                "Optional",
                c.get("optional")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            );
        } else if let Some(c) = v.get("secret") {
            doc.kv(l, "Type", "Secret (a volume populated by a Secret)");
            doc.kv(l, "SecretName", s(c, "/secretName"));
            doc.kv(
                l,
                "Optional",
                c.get("optional")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            );
        } else if let Some(h) = v.get("hostPath") {
            doc.kv(l, "Type", "HostPath (bare host directory volume)");
            doc.kv(l, "Path", s(h, "/path"));
            doc.kv(l, "HostPathType", s(h, "/type"));
        } else if let Some(p) = v.get("persistentVolumeClaim") {
            doc.kv(l, "Type", "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)");
            doc.kv(l, "ClaimName", s(p, "/claimName"));
            doc.kv(
                l,
                "ReadOnly",
                p.get("readOnly")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            );
        } else if v.get("projected").is_some() {
            doc.kv(
                l,
                "Type",
                "Projected (a volume that contains injected data from multiple sources)",
            );
        } else {
            let kind = v
                .as_object()
                .and_then(|m| m.keys().find(|k| k.as_str() != "name").cloned())
                .unwrap_or_default();
            doc.kv(l, "Type", kind);
        }
    }
}

pub fn template_block(doc: &mut Doc, template: Option<&Value>) {
    let Some(t) = template else { return };
    doc.line(0, "Pod Template:");
    doc.multi(1, "Labels", map_lines(t.pointer("/metadata/labels"), "="));
    let annotations = map_lines(t.pointer("/metadata/annotations"), ": ");
    if !annotations.is_empty() {
        doc.multi(1, "Annotations", annotations);
    }
    let sa = s(t, "/spec/serviceAccountName");
    if !sa.is_empty() {
        doc.kv(1, "Service Account", sa);
    }
    for (key, field) in [
        ("Init Containers", "/spec/initContainers"),
        ("Containers", "/spec/containers"),
    ] {
        let list = arr(t, field);
        if key == "Init Containers" && list.is_empty() {
            continue;
        }
        doc.line(1, &format!("{key}:"));
        for c in list {
            container_block(doc, 1, c, None, true);
        }
    }
    if let Some(spec) = t.get("spec") {
        volumes_block(doc, 1, spec);
        let ns = map_lines(spec.get("nodeSelector"), "=");
        doc.kv(
            1,
            "Node-Selectors",
            if ns.is_empty() {
                "<none>".into()
            } else {
                ns.join(",")
            },
        );
        doc.kv(
            1,
            "Tolerations",
            tolerations_text(spec)
                .first()
                .cloned()
                .unwrap_or_else(|| "<none>".into()),
        );
    }
}

fn tolerations_text(spec: &Value) -> Vec<String> {
    arr(spec, "/tolerations")
        .iter()
        .map(|t| {
            let mut out = s(t, "/key").to_string();
            if !s(t, "/value").is_empty() {
                out.push('=');
                out.push_str(s(t, "/value"));
            }
            if !s(t, "/effect").is_empty() {
                out.push(':');
                out.push_str(s(t, "/effect"));
            }
            if s(t, "/operator") == "Exists" && s(t, "/value").is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str("op=Exists");
            }
            if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
                out.push_str(&format!(" for {secs}s"));
            }
            out
        })
        .collect()
}

fn conditions_table(doc: &mut Doc, obj: &Value, columns: &[(&str, &str)], dashes: bool) {
    let conditions = arr(obj, "/status/conditions");
    if conditions.is_empty() {
        return;
    }
    doc.line(0, "Conditions:");
    doc.cells(1, columns.iter().map(|(h, _)| h.to_string()).collect());
    if dashes {
        doc.cells(
            1,
            columns.iter().map(|(h, _)| "-".repeat(h.len())).collect(),
        );
    }
    for c in conditions {
        doc.cells(
            1,
            columns
                .iter()
                .map(|(_, f)| {
                    let v = c.get(*f);
                    if f.ends_with("Time") {
                        timestamp(v)
                    } else {
                        v.map(crate::jsonpath::value_text).unwrap_or_default()
                    }
                })
                .collect(),
        );
    }
}

// ---- kinds ----

fn qos_class(pod: &Value) -> String {
    if let Some(q) = pod.pointer("/status/qosClass").and_then(Value::as_str) {
        return q.to_string();
    }
    let containers = arr(pod, "/spec/containers");
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        any |= limits.is_some_and(|m| !m.is_empty()) || requests.is_some_and(|m| !m.is_empty());
        for res in ["cpu", "memory"] {
            let l = limits.and_then(|m| m.get(res));
            let r = requests.and_then(|m| m.get(res)).or(l);
            if l.is_none() || l != r {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort".into()
    } else if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

fn describe_pod(doc: &mut Doc, pod: &Value) {
    metadata_head(doc, pod, true);
    if let Some(priority) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        doc.kv(0, "Priority", priority.to_string());
    }
    if !s(pod, "/spec/priorityClassName").is_empty() {
        doc.kv(0, "Priority Class Name", s(pod, "/spec/priorityClassName"));
    }
    doc.kv(
        0,
        "Service Account",
        match s(pod, "/spec/serviceAccountName") {
            "" => "default",
            x => x,
        },
    );
    let node = s(pod, "/spec/nodeName");
    doc.kv(
        0,
        "Node",
        if node.is_empty() {
            "<none>".to_string()
        } else {
            format!("{node}/{}", s(pod, "/status/hostIP"))
        },
    );
    if pod.pointer("/status/startTime").is_some() {
        doc.kv(0, "Start Time", timestamp(pod.pointer("/status/startTime")));
    }
    labels_and_annotations(doc, pod);
    let deletion = pod
        .pointer("/metadata/deletionTimestamp")
        .filter(|v| !v.is_null());
    match deletion {
        Some(d) => {
            let grace = n(pod, "/metadata/deletionGracePeriodSeconds");
            doc.kv(
                0,
                "Status",
                format!(
                    "Terminating (lasts {})",
                    age::age(Some(d), jiff::Timestamp::now())
                ),
            );
            doc.kv(0, "Termination Grace Period", format!("{grace}s"));
        }
        None => doc.kv(0, "Status", s(pod, "/status/phase")),
    }
    for (key, field) in [("Reason", "/status/reason"), ("Message", "/status/message")] {
        if !s(pod, field).is_empty() {
            doc.kv(0, key, s(pod, field));
        }
    }
    doc.kv(0, "IP", s(pod, "/status/podIP"));
    let ips = arr(pod, "/status/podIPs");
    if ips.is_empty() {
        doc.kv(0, "IPs", "<none>");
    } else {
        doc.line(0, "IPs:");
        for ip in ips {
            doc.kv(1, "IP", s(ip, "/ip"));
        }
    }
    if let Some(owner) = controlled_by(pod) {
        doc.kv(0, "Controlled By", owner);
    }
    let status_of = |list: &str, name: &str| {
        arr(pod, list)
            .iter()
            .find(|st| s(st, "/name") == name)
            .cloned()
    };
    let init = arr(pod, "/spec/initContainers");
    if !init.is_empty() {
        doc.line(0, "Init Containers:");
        for c in init {
            let st = status_of("/status/initContainerStatuses", s(c, "/name"));
            container_block(doc, 1, c, st.as_ref(), false);
        }
    }
    doc.line(0, "Containers:");
    for c in arr(pod, "/spec/containers") {
        let st = status_of("/status/containerStatuses", s(c, "/name"));
        container_block(doc, 1, c, st.as_ref(), false);
    }
    conditions_table(doc, pod, &[("Type", "type"), ("Status", "status")], false);
    if let Some(spec) = pod.get("spec") {
        volumes_block(doc, 0, spec);
    }
    doc.kv(0, "QoS Class", qos_class(pod));
    let ns = map_lines(pod.pointer("/spec/nodeSelector"), "=");
    doc.kv(
        0,
        "Node-Selectors",
        if ns.is_empty() {
            "<none>".into()
        } else {
            ns.join(",")
        },
    );
    doc.multi(
        0,
        "Tolerations",
        pod.get("spec").map(tolerations_text).unwrap_or_default(),
    );
}

fn describe_service(doc: &mut Doc, svc: &Value, endpoints: Option<&Value>) {
    metadata_head(doc, svc, true);
    labels_and_annotations(doc, svc);
    doc.kv(0, "Selector", labels_text(svc.pointer("/spec/selector")));
    let kind = match s(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    doc.kv(0, "Type", kind);
    if !s(svc, "/spec/ipFamilyPolicy").is_empty() {
        doc.kv(0, "IP Family Policy", s(svc, "/spec/ipFamilyPolicy"));
    }
    let families: Vec<&str> = arr(svc, "/spec/ipFamilies")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !families.is_empty() {
        doc.kv(0, "IP Families", families.join(","));
    }
    doc.kv(0, "IP", or_none(s(svc, "/spec/clusterIP")));
    let ips: Vec<&str> = arr(svc, "/spec/clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !ips.is_empty() {
        doc.kv(0, "IPs", ips.join(","));
    }
    if kind == "ExternalName" {
        doc.kv(0, "External Name", s(svc, "/spec/externalName"));
    }
    let external: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !external.is_empty() {
        doc.kv(0, "External IPs", external.join(","));
    }
    let ingress: Vec<String> = arr(svc, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| s(i, "/ip").to_string())
        .filter(|i| !i.is_empty())
        .collect();
    if !ingress.is_empty() {
        doc.kv(0, "LoadBalancer Ingress", ingress.join(", "));
    }
    for p in arr(svc, "/spec/ports") {
        let proto = match s(p, "/protocol") {
            "" => "TCP",
            x => x,
        };
        let name = match s(p, "/name") {
            "" => "<unset>",
            x => x,
        };
        doc.kv(0, "Port", format!("{name}  {}/{proto}", n(p, "/port")));
        let target = match p.get("targetPort") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Number(t)) => t.to_string(),
            _ => n(p, "/port").to_string(),
        };
        doc.kv(0, "TargetPort", format!("{target}/{proto}"));
        if n(p, "/nodePort") != 0 {
            doc.kv(
                0,
                "NodePort",
                format!("{name}  {}/{proto}", n(p, "/nodePort")),
            );
        }
        let eps: Vec<String> = endpoints
            .map(|e| {
                arr(e, "/subsets")
                    .iter()
                    .filter(|subset| {
                        arr(subset, "/ports").iter().any(|sp| {
                            s(sp, "/name") == s(p, "/name") || arr(subset, "/ports").len() == 1
                        })
                    })
                    .flat_map(|subset| {
                        let port = arr(subset, "/ports")
                            .iter()
                            .find(|sp| s(sp, "/name") == s(p, "/name"))
                            .or_else(|| arr(subset, "/ports").first())
                            .map(|sp| n(sp, "/port"))
                            .unwrap_or(0);
                        arr(subset, "/addresses")
                            .iter()
                            .map(move |a| format!("{}:{port}", s(a, "/ip")))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default();
        doc.kv(0, "Endpoints", or_none(&eps.join(",")));
    }
    doc.kv(
        0,
        "Session Affinity",
        match s(svc, "/spec/sessionAffinity") {
            "" => "None",
            x => x,
        },
    );
    if !s(svc, "/spec/externalTrafficPolicy").is_empty() {
        doc.kv(
            0,
            "External Traffic Policy",
            s(svc, "/spec/externalTrafficPolicy"),
        );
    }
    if !s(svc, "/spec/internalTrafficPolicy").is_empty() {
        doc.kv(
            0,
            "Internal Traffic Policy",
            s(svc, "/spec/internalTrafficPolicy"),
        );
    }
}

fn describe_deployment(doc: &mut Doc, d: &Value, replicasets: &[Value]) {
    metadata_head(doc, d, true);
    doc.kv(
        0,
        "CreationTimestamp",
        timestamp(d.pointer("/metadata/creationTimestamp")),
    );
    labels_and_annotations(doc, d);
    doc.kv(0, "Selector", selector_text(d.pointer("/spec/selector")));
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    doc.kv(
        0,
        "Replicas",
        format!(
            "{desired} desired | {} updated | {} total | {} available | {} unavailable",
            n(d, "/status/updatedReplicas"),
            n(d, "/status/replicas"),
            n(d, "/status/availableReplicas"),
            n(d, "/status/unavailableReplicas")
        ),
    );
    let strategy = match s(d, "/spec/strategy/type") {
        "" => "RollingUpdate",
        x => x,
    };
    doc.kv(0, "StrategyType", strategy);
    doc.kv(
        0,
        "MinReadySeconds",
        n(d, "/spec/minReadySeconds").to_string(),
    );
    if strategy == "RollingUpdate" {
        let text = |p: &str| match d.pointer(p) {
            Some(v) => crate::jsonpath::value_text(v),
            None => "25%".into(),
        };
        doc.kv(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                text("/spec/strategy/rollingUpdate/maxUnavailable"),
                text("/spec/strategy/rollingUpdate/maxSurge")
            ),
        );
    }
    template_block(doc, d.pointer("/spec/template"));
    conditions_table(
        doc,
        d,
        &[("Type", "type"), ("Status", "status"), ("Reason", "reason")],
        true,
    );
    let revision = |rs: &Value| {
        s(
            rs,
            "/metadata/annotations/deployment.kubernetes.io~1revision",
        )
        .parse::<i64>()
        .unwrap_or(0)
    };
    let own_template =
        crate::rollout::without_hash(d.pointer("/spec/template").unwrap_or(&Value::Null));
    // The new ReplicaSet is the one whose template is the Deployment's (the oldest, should
    // there be two); until the controller has made it there is none.
    let newest = replicasets
        .iter()
        .filter(|rs| {
            crate::rollout::without_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null))
                == own_template
        })
        .min_by_key(|rs| {
            (
                age::parse(rs.pointer("/metadata/creationTimestamp")),
                revision(rs),
            )
        });
    let describe_rs = |rs: &Value| {
        format!(
            "{} ({}/{} replicas created)",
            s(rs, "/metadata/name"),
            n(rs, "/status/replicas"),
            rs.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        )
    };
    let old: Vec<String> = replicasets
        .iter()
        .filter(|rs| Some(*rs) != newest && n(rs, "/spec/replicas") > 0)
        .map(describe_rs)
        .collect();
    // kubectl names the ReplicaSets only when the Deployment has some.
    if !replicasets.is_empty() {
        doc.kv(
            0,
            "OldReplicaSets",
            if old.is_empty() {
                "<none>".into()
            } else {
                old.join(", ")
            },
        );
        doc.kv(
            0,
            "NewReplicaSet",
            newest.map(describe_rs).unwrap_or_else(|| "<none>".into()),
        );
    }
}

fn pod_phase_counts(pods: &[Value]) -> String {
    let count = |phase: &str| {
        pods.iter()
            .filter(|p| s(p, "/status/phase") == phase)
            .count()
    };
    let waiting = pods
        .iter()
        .filter(|p| matches!(s(p, "/status/phase"), "Pending" | ""))
        .count();
    format!(
        "{} Running / {waiting} Waiting / {} Succeeded / {} Failed",
        count("Running"),
        count("Succeeded"),
        count("Failed")
    )
}

fn describe_replicaset(doc: &mut Doc, rs: &Value, pods: &[Value]) {
    metadata_head(doc, rs, true);
    doc.kv(0, "Selector", selector_text(rs.pointer("/spec/selector")));
    labels_and_annotations(doc, rs);
    if let Some(owner) = controlled_by(rs) {
        doc.kv(0, "Controlled By", owner);
    }
    doc.kv(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            n(rs, "/status/replicas"),
            rs.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
    );
    doc.kv(0, "Pods Status", pod_phase_counts(pods));
    template_block(doc, rs.pointer("/spec/template"));
    conditions_table(
        doc,
        rs,
        &[("Type", "type"), ("Status", "status"), ("Reason", "reason")],
        true,
    );
}

fn bool_text(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bool) {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}

fn int_or_unset(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
        .unwrap_or_else(|| "<unset>".into())
}

fn describe_replication_controller(doc: &mut Doc, rc: &Value, pods: &[Value]) {
    metadata_head(doc, rc, true);
    doc.kv(0, "Selector", labels_text(rc.pointer("/spec/selector")));
    labels_and_annotations(doc, rc);
    doc.kv(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            n(rc, "/status/replicas"),
            rc.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
    );
    doc.kv(0, "Pods Status", pod_phase_counts(pods));
    template_block(doc, rc.pointer("/spec/template"));
    conditions_table(
        doc,
        rc,
        &[("Type", "type"), ("Status", "status"), ("Reason", "reason")],
        true,
    );
}

fn describe_daemonset(doc: &mut Doc, ds: &Value, pods: &[Value]) {
    doc.kv(0, "Name", s(ds, "/metadata/name"));
    doc.kv(0, "Selector", selector_text(ds.pointer("/spec/selector")));
    doc.kv(
        0,
        "Node-Selector",
        labels_text(ds.pointer("/spec/template/spec/nodeSelector")),
    );
    labels_and_annotations(doc, ds);
    for (text, field) in [
        (
            "Desired Number of Nodes Scheduled",
            "desiredNumberScheduled",
        ),
        (
            "Current Number of Nodes Scheduled",
            "currentNumberScheduled",
        ),
        (
            "Number of Nodes Scheduled with Up-to-date Pods",
            "updatedNumberScheduled",
        ),
        (
            "Number of Nodes Scheduled with Available Pods",
            "numberAvailable",
        ),
        ("Number of Nodes Misscheduled", "numberMisscheduled"),
    ] {
        doc.line(
            0,
            &format!("{text}: {}", n(ds, &format!("/status/{field}"))),
        );
    }
    doc.kv(0, "Pods Status", pod_phase_counts(pods));
    template_block(doc, ds.pointer("/spec/template"));
}

fn describe_statefulset(doc: &mut Doc, sts: &Value, pods: &[Value]) {
    metadata_head(doc, sts, true);
    doc.kv(
        0,
        "CreationTimestamp",
        timestamp(sts.pointer("/metadata/creationTimestamp")),
    );
    doc.kv(0, "Selector", selector_text(sts.pointer("/spec/selector")));
    labels_and_annotations(doc, sts);
    doc.kv(
        0,
        "Replicas",
        format!(
            "{} desired | {} total",
            sts.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            n(sts, "/status/replicas")
        ),
    );
    doc.kv(
        0,
        "Update Strategy",
        match s(sts, "/spec/updateStrategy/type") {
            "" => "RollingUpdate",
            t => t,
        },
    );
    if let Some(partition) = sts
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_i64)
    {
        doc.kv(1, "Partition", partition.to_string());
        if let Some(mu) = sts.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable") {
            doc.kv(1, "MaxUnavailable", crate::jsonpath::value_text(mu));
        }
    }
    doc.kv(0, "Pods Status", pod_phase_counts(pods));
    template_block(doc, sts.pointer("/spec/template"));
    let claims = arr(sts, "/spec/volumeClaimTemplates");
    if claims.is_empty() {
        doc.kv(0, "Volume Claims", "<none>");
        return;
    }
    doc.line(0, "Volume Claims:");
    for pvc in claims {
        doc.kv(1, "Name", s(pvc, "/metadata/name"));
        doc.kv(1, "StorageClass", s(pvc, "/spec/storageClassName"));
        doc.multi(1, "Labels", map_lines(pvc.pointer("/metadata/labels"), "="));
        doc.multi(
            1,
            "Annotations",
            map_lines(pvc.pointer("/metadata/annotations"), ": "),
        );
        doc.kv(
            1,
            "Capacity",
            match pvc.pointer("/spec/resources/requests/storage") {
                Some(v) => crate::jsonpath::value_text(v),
                None => "<default>".into(),
            },
        );
        let modes: Vec<&str> = arr(pvc, "/spec/accessModes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        doc.kv(1, "Access Modes", format!("[{}]", modes.join(" ")));
    }
}

fn describe_job(doc: &mut Doc, job: &Value) {
    metadata_head(doc, job, true);
    doc.kv(0, "Selector", selector_text(job.pointer("/spec/selector")));
    labels_and_annotations(doc, job);
    if let Some(owner) = controlled_by(job) {
        doc.kv(0, "Controlled By", owner);
    }
    if let Some(p) = job.pointer("/spec/parallelism").and_then(Value::as_i64) {
        doc.kv(0, "Parallelism", p.to_string());
    }
    doc.kv(0, "Completions", int_or_unset(job, "/spec/completions"));
    let mode = s(job, "/spec/completionMode");
    if !mode.is_empty() {
        doc.kv(0, "Completion Mode", mode);
    }
    if let Some(suspend) = job.pointer("/spec/suspend").and_then(Value::as_bool) {
        doc.kv(0, "Suspend", suspend.to_string());
    }
    if let Some(b) = job.pointer("/spec/backoffLimit").and_then(Value::as_i64) {
        doc.kv(0, "Backoff Limit", b.to_string());
    }
    if let Some(t) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_i64)
    {
        doc.kv(0, "TTL Seconds After Finished", t.to_string());
    }
    let start = job.pointer("/status/startTime");
    let done = job.pointer("/status/completionTime");
    if start.is_some_and(|v| !v.is_null()) {
        doc.kv(0, "Start Time", timestamp(start));
    }
    if done.is_some_and(|v| !v.is_null()) {
        doc.kv(0, "Completed At", timestamp(done));
    }
    if let (Some(a), Some(b)) = (age::parse(start), age::parse(done)) {
        doc.kv(
            0,
            "Duration",
            age::human_duration(b.duration_since(a).as_secs()),
        );
    }
    if let Some(d) = job
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
    {
        doc.kv(0, "Active Deadline Seconds", format!("{d}s"));
    }
    let statuses = match job.pointer("/status/ready").and_then(Value::as_i64) {
        Some(ready) => format!(
            "{} Active ({ready} Ready) / {} Succeeded / {} Failed",
            n(job, "/status/active"),
            n(job, "/status/succeeded"),
            n(job, "/status/failed")
        ),
        None => format!(
            "{} Active / {} Succeeded / {} Failed",
            n(job, "/status/active"),
            n(job, "/status/succeeded"),
            n(job, "/status/failed")
        ),
    };
    doc.kv(0, "Pods Statuses", statuses);
    if mode == "Indexed" {
        doc.kv(
            0,
            "Completed Indexes",
            or_none(s(job, "/status/completedIndexes")),
        );
    }
    template_block(doc, job.pointer("/spec/template"));
}

fn describe_cronjob(doc: &mut Doc, cj: &Value) {
    metadata_head(doc, cj, true);
    labels_and_annotations(doc, cj);
    doc.kv(0, "Schedule", s(cj, "/spec/schedule"));
    let tz = s(cj, "/spec/timeZone");
    if !tz.is_empty() {
        doc.kv(0, "Time Zone", tz);
    }
    doc.kv(0, "Concurrency Policy", s(cj, "/spec/concurrencyPolicy"));
    doc.kv(0, "Suspend", bool_text(cj.pointer("/spec/suspend")));
    doc.kv(
        0,
        "Successful Job History Limit",
        int_or_unset(cj, "/spec/successfulJobsHistoryLimit"),
    );
    doc.kv(
        0,
        "Failed Job History Limit",
        int_or_unset(cj, "/spec/failedJobsHistoryLimit"),
    );
    doc.kv(
        0,
        "Starting Deadline Seconds",
        cj.pointer("/spec/startingDeadlineSeconds")
            .and_then(Value::as_i64)
            .map(|d| format!("{d}s"))
            .unwrap_or_else(|| "<unset>".into()),
    );
    let job = cj
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(Value::Null);
    doc.kv(
        0,
        "Selector",
        match job.pointer("/spec/selector") {
            Some(sel) if !sel.is_null() => selector_text(Some(sel)),
            _ => "<unset>".into(),
        },
    );
    doc.kv(0, "Parallelism", int_or_unset(&job, "/spec/parallelism"));
    doc.kv(0, "Completions", int_or_unset(&job, "/spec/completions"));
    if let Some(d) = job
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
    {
        doc.kv(0, "Active Deadline Seconds", format!("{d}s"));
    }
    template_block(doc, job.pointer("/spec/template"));
    doc.kv(
        0,
        "Last Schedule Time",
        timestamp(cj.pointer("/status/lastScheduleTime")),
    );
    let active: Vec<&str> = arr(cj, "/status/active")
        .iter()
        .map(|r| s(r, "/name"))
        .collect();
    doc.kv(
        0,
        "Active Jobs",
        if active.is_empty() {
            "<none>".into()
        } else {
            active.join(", ")
        },
    );
}

/// One `Metrics:` line of an HPA: what is measured, and current / target.
fn hpa_metric_line(metric: &Value, current: Option<&Value>) -> (String, String) {
    let quantity = |v: Option<&Value>| v.map(crate::jsonpath::value_text);
    match s(metric, "/type") {
        kind @ ("Resource" | "ContainerResource") => {
            let field = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = metric.get(field).cloned().unwrap_or(Value::Null);
            let now = current.and_then(|c| c.get(field));
            let what = if kind == "Resource" {
                format!("resource {} on pods", s(&src, "/name"))
            } else {
                format!(
                    "resource {} of container \"{}\" on pods",
                    s(&src, "/name"),
                    s(&src, "/container")
                )
            };
            if let Some(avg) = src.pointer("/target/averageValue") {
                let cur = quantity(now.and_then(|c| c.pointer("/current/averageValue")))
                    .unwrap_or_else(|| "<unknown>".into());
                return (
                    what,
                    format!("{cur} / {}", crate::jsonpath::value_text(avg)),
                );
            }
            let cur = match now.and_then(|c| c.pointer("/current/averageUtilization")) {
                Some(u) => format!(
                    "{}% ({})",
                    crate::jsonpath::value_text(u),
                    quantity(now.and_then(|c| c.pointer("/current/averageValue")))
                        .unwrap_or_default()
                ),
                None => "<unknown>".into(),
            };
            let target = match src.pointer("/target/averageUtilization") {
                Some(u) => format!("{}%", crate::jsonpath::value_text(u)),
                None => "<auto>".into(),
            };
            (
                format!("{what}  (as a percentage of request)"),
                format!("{cur} / {target}"),
            )
        }
        "Pods" => {
            let cur = quantity(current.and_then(|c| c.pointer("/pods/current/averageValue")))
                .unwrap_or_else(|| "<unknown>".into());
            (
                format!("\"{}\" on pods", s(metric, "/pods/metric/name")),
                format!(
                    "{cur} / {}",
                    quantity(metric.pointer("/pods/target/averageValue")).unwrap_or_default()
                ),
            )
        }
        other => (format!("<unknown metric type \"{other}\">"), String::new()),
    }
}

fn describe_hpa(doc: &mut Doc, hpa: &Value) {
    metadata_head(doc, hpa, true);
    labels_and_annotations(doc, hpa);
    doc.kv(
        0,
        "CreationTimestamp",
        timestamp(hpa.pointer("/metadata/creationTimestamp")),
    );
    let kind = s(hpa, "/spec/scaleTargetRef/kind");
    doc.kv(
        0,
        "Reference",
        format!("{kind}/{}", s(hpa, "/spec/scaleTargetRef/name")),
    );
    doc.kv(0, "Metrics", "( current / target )");
    let current = arr(hpa, "/status/currentMetrics");
    for (i, m) in arr(hpa, "/spec/metrics").iter().enumerate() {
        let (what, values) = hpa_metric_line(m, current.get(i));
        if values.is_empty() {
            doc.line(1, &what);
        } else {
            doc.kv(1, &what, values);
        }
    }
    doc.kv(0, "Min replicas", int_or_unset(hpa, "/spec/minReplicas"));
    doc.kv(0, "Max replicas", n(hpa, "/spec/maxReplicas").to_string());
    if hpa.pointer("/spec/behavior").is_some_and(|b| !b.is_null()) {
        doc.line(0, "Behavior:");
        for (label, field) in [("Scale Up", "scaleUp"), ("Scale Down", "scaleDown")] {
            let Some(rules) = hpa
                .pointer(&format!("/spec/behavior/{field}"))
                .filter(|r| !r.is_null())
            else {
                continue;
            };
            doc.line(1, &format!("{label}:"));
            if let Some(w) = rules
                .get("stabilizationWindowSeconds")
                .and_then(Value::as_i64)
            {
                doc.line(2, &format!("Stabilization Window: {w} seconds"));
            }
            let policies = arr(rules, "/policies");
            if !policies.is_empty() {
                doc.line(
                    2,
                    &format!(
                        "Select Policy: {}",
                        match s(rules, "/selectPolicy") {
                            "" => "Max",
                            p => p,
                        }
                    ),
                );
                doc.line(2, "Policies:");
                for p in policies {
                    doc.cells(
                        3,
                        vec![
                            format!("- Type: {}", s(p, "/type")),
                            format!("Value: {}", n(p, "/value")),
                            format!("Period: {} seconds", n(p, "/periodSeconds")),
                        ],
                    );
                }
            }
        }
    }
    doc.kv(
        0,
        &format!("{kind} pods"),
        format!(
            "{} current / {} desired",
            n(hpa, "/status/currentReplicas"),
            n(hpa, "/status/desiredReplicas")
        ),
    );
    conditions_table(
        doc,
        hpa,
        &[
            ("Type", "type"),
            ("Status", "status"),
            ("Reason", "reason"),
            ("Message", "message"),
        ],
        true,
    );
}

fn describe_node(doc: &mut Doc, node: &Value, pods: &[Value]) {
    doc.kv(0, "Name", s(node, "/metadata/name"));
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    doc.kv(
        0,
        "Roles",
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        },
    );
    labels_and_annotations(doc, node);
    doc.kv(
        0,
        "CreationTimestamp",
        timestamp(node.pointer("/metadata/creationTimestamp")),
    );
    let taints: Vec<String> = arr(node, "/spec/taints")
        .iter()
        .map(|t| {
            let value = s(t, "/value");
            if value.is_empty() {
                format!("{}:{}", s(t, "/key"), s(t, "/effect"))
            } else {
                format!("{}={value}:{}", s(t, "/key"), s(t, "/effect"))
            }
        })
        .collect();
    doc.multi(0, "Taints", taints);
    doc.kv(
        0,
        "Unschedulable",
        node.pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
    );
    conditions_table(
        doc,
        node,
        &[
            ("Type", "type"),
            ("Status", "status"),
            ("LastHeartbeatTime", "lastHeartbeatTime"),
            ("LastTransitionTime", "lastTransitionTime"),
            ("Reason", "reason"),
            ("Message", "message"),
        ],
        true,
    );
    let addresses = arr(node, "/status/addresses");
    if addresses.is_empty() {
        doc.kv(0, "Addresses", "<none>");
    } else {
        doc.line(0, "Addresses:");
        for a in addresses {
            doc.kv(1, s(a, "/type"), s(a, "/address"));
        }
    }
    for (key, field) in [
        ("Capacity", "/status/capacity"),
        ("Allocatable", "/status/allocatable"),
    ] {
        if let Some(map) = node.pointer(field).and_then(Value::as_object) {
            doc.line(0, &format!("{key}:"));
            for (k, v) in map {
                doc.kv(1, k, crate::jsonpath::value_text(v));
            }
        }
    }
    if let Some(info) = node.pointer("/status/nodeInfo").and_then(Value::as_object) {
        doc.line(0, "System Info:");
        for (label, key) in [
            ("Machine ID", "machineID"),
            ("System UUID", "systemUUID"),
            ("Boot ID", "bootID"),
            ("Kernel Version", "kernelVersion"),
            ("OS Image", "osImage"),
            ("Operating System", "operatingSystem"),
            ("Architecture", "architecture"),
            ("Container Runtime Version", "containerRuntimeVersion"),
            ("Kubelet Version", "kubeletVersion"),
            ("Kube-Proxy Version", "kubeProxyVersion"),
        ] {
            doc.kv(
                1,
                label,
                info.get(key).and_then(Value::as_str).unwrap_or(""),
            );
        }
    }
    if !s(node, "/spec/podCIDR").is_empty() {
        doc.kv(0, "PodCIDR", s(node, "/spec/podCIDR"));
        let cidrs: Vec<&str> = arr(node, "/spec/podCIDRs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        doc.kv(0, "PodCIDRs", cidrs.join(","));
    }
    let running: Vec<&Value> = pods
        .iter()
        .filter(|p| !matches!(s(p, "/status/phase"), "Succeeded" | "Failed"))
        .collect();
    doc.kv(
        0,
        "Non-terminated Pods",
        format!("({} in total)", running.len()),
    );
    if !running.is_empty() {
        doc.cells(
            1,
            ["Namespace", "Name", "Age"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        doc.cells(
            1,
            ["---------", "----", "---"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let now = jiff::Timestamp::now();
        for p in running {
            doc.cells(
                1,
                vec![
                    s(p, "/metadata/namespace").into(),
                    s(p, "/metadata/name").into(),
                    age::age(p.pointer("/metadata/creationTimestamp"), now),
                ],
            );
        }
    }
}

fn describe_namespace(doc: &mut Doc, ns: &Value, quotas: &[Value], limits: &[Value]) {
    doc.kv(0, "Name", s(ns, "/metadata/name"));
    labels_and_annotations(doc, ns);
    doc.kv(0, "Status", s(ns, "/status/phase"));
    doc.blank();
    if quotas.is_empty() {
        doc.line(0, "No resource quota.");
    } else {
        doc.line(0, "Resource Quotas");
        for q in quotas {
            doc.kv(1, "Name", s(q, "/metadata/name"));
            doc.cells(1, vec!["Resource".into(), "Used".into(), "Hard".into()]);
            doc.cells(1, vec!["--------".into(), "---".into(), "---".into()]);
            if let Some(hard) = q
                .pointer("/status/hard")
                .or_else(|| q.pointer("/spec/hard"))
                .and_then(Value::as_object)
            {
                for (k, v) in hard {
                    let used = q
                        .pointer("/status/used")
                        .and_then(|u| u.get(k))
                        .map(crate::jsonpath::value_text)
                        .unwrap_or_else(|| "0".into());
                    doc.cells(1, vec![k.clone(), used, crate::jsonpath::value_text(v)]);
                }
            }
        }
    }
    doc.blank();
    if limits.is_empty() {
        doc.line(0, "No LimitRange resource.");
    } else {
        doc.line(0, "Resource Limits");
        doc.cells(
            1,
            [
                "Type",
                "Resource",
                "Min",
                "Max",
                "Default Request",
                "Default Limit",
                "Max Limit/Request Ratio",
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        );
        doc.cells(
            1,
            [
                "----",
                "--------",
                "---",
                "---",
                "---------------",
                "-------------",
                "-----------------------",
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        );
        for lr in limits {
            for item in arr(lr, "/spec/limits") {
                let kind = s(item, "/type");
                let mut resources: Vec<String> = Vec::new();
                for field in [
                    "min",
                    "max",
                    "default",
                    "defaultRequest",
                    "maxLimitRequestRatio",
                ] {
                    if let Some(m) = item.get(field).and_then(Value::as_object) {
                        for k in m.keys() {
                            if !resources.contains(k) {
                                resources.push(k.clone());
                            }
                        }
                    }
                }
                resources.sort();
                for r in resources {
                    let get = |field: &str| {
                        item.get(field)
                            .and_then(|m| m.get(&r))
                            .map(crate::jsonpath::value_text)
                            .unwrap_or_else(|| "-".into())
                    };
                    doc.cells(
                        1,
                        vec![
                            kind.to_string(),
                            r.clone(),
                            get("min"),
                            get("max"),
                            get("defaultRequest"),
                            get("default"),
                            get("maxLimitRequestRatio"),
                        ],
                    );
                }
            }
        }
    }
}

fn describe_configmap(doc: &mut Doc, cm: &Value) {
    metadata_head(doc, cm, true);
    labels_and_annotations(doc, cm);
    doc.blank();
    doc.line(0, "Data");
    doc.line(0, "====");
    if let Some(data) = cm.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            doc.line(0, &format!("{k}:"));
            doc.line(0, "----");
            for l in v.as_str().unwrap_or("").lines() {
                doc.line(0, l);
            }
            doc.blank();
        }
    }
    doc.blank();
    doc.line(0, "BinaryData");
    doc.line(0, "====");
    if let Some(data) = cm.get("binaryData").and_then(Value::as_object) {
        for (k, v) in data {
            let len = v.as_str().map(|s| s.len() * 3 / 4).unwrap_or(0);
            doc.line(0, &format!("{k}: {len} bytes"));
        }
    }
    doc.blank();
}

fn describe_secret(doc: &mut Doc, secret: &Value) {
    metadata_head(doc, secret, true);
    labels_and_annotations(doc, secret);
    doc.blank();
    doc.kv(
        0,
        "Type",
        match s(secret, "/type") {
            "" => "Opaque",
            x => x,
        },
    );
    doc.blank();
    doc.line(0, "Data");
    doc.line(0, "====");
    if let Some(data) = secret.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            use base64::Engine;
            let len = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .map(|b| b.len())
                .unwrap_or(0);
            doc.kv(0, k, format!("{len} bytes"));
        }
    }
}

/// `creationTimestamp` → `Creation Timestamp`, `podIP` → `Pod IP`, as kubectl labels the
/// fields of objects it has no layout for.
pub fn smart_label(key: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let chars: Vec<char> = key.chars().collect();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = c.is_uppercase()
            && !current.is_empty()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if boundary || c == '_' || c == '-' {
            words.push(std::mem::take(&mut current));
        }
        if c != '_' && c != '-' {
            current.push(c);
        }
    }
    words.push(current);
    const INITIALISMS: &[&str] = &[
        "api", "uid", "ip", "ips", "url", "id", "cpu", "tls", "dns", "http", "https", "tcp", "udp",
        "json", "cidr",
    ];
    words
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            if INITIALISMS.contains(&lower.as_str()) {
                if lower == "ips" {
                    "IPs".to_string()
                } else {
                    lower.to_uppercase()
                }
            } else {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn generic_value(doc: &mut Doc, level: usize, key: &str, v: &Value) {
    let label = smart_label(key);
    match v {
        Value::Object(map) => {
            if map.is_empty() {
                doc.kv(level, &label, "");
                return;
            }
            doc.line(level, &format!("{label}:"));
            for (k, child) in map {
                generic_value(doc, level + 1, k, child);
            }
        }
        Value::Array(items) => {
            doc.line(level, &format!("{label}:"));
            for item in items {
                match item {
                    Value::Object(map) => {
                        for (k, child) in map {
                            generic_value(doc, level + 1, k, child);
                        }
                    }
                    other => doc.line(level + 1, &crate::jsonpath::value_text(other)),
                }
            }
        }
        other => doc.kv(level, &label, crate::jsonpath::value_text(other)),
    }
}

fn describe_generic(doc: &mut Doc, obj: &Value, resource: &ResourceInfo) {
    metadata_head(doc, obj, resource.namespaced);
    labels_and_annotations(doc, obj);
    doc.kv(0, "API Version", s(obj, "/apiVersion"));
    doc.kv(0, "Kind", s(obj, "/kind"));
    if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
        let rest: serde_json::Map<String, Value> = meta
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "name" | "namespace" | "labels" | "annotations" | "managedFields"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        generic_value(doc, 0, "metadata", &Value::Object(rest));
    }
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                generic_value(doc, 0, k, v);
            }
        }
    }
}

// ---- events ----

/// Events about the object, oldest first.
async fn events_for(cluster: &Cluster, obj: &Value, resource: &ResourceInfo) -> Vec<Value> {
    let name = s(obj, "/metadata/name");
    let ns = s(obj, "/metadata/namespace");
    let uid = s(obj, "/metadata/uid");
    let selector = if ns.is_empty() {
        format!("involvedObject.name={name}")
    } else {
        format!("involvedObject.name={name},involvedObject.namespace={ns}")
    };
    let events_ns = if ns.is_empty() { "default" } else { ns };
    let base = format!(
        "/api/v1/namespaces/{}/events",
        crate::client::encode(events_ns)
    );
    let list = match cluster
        .get(&with_query(&base, &[("fieldSelector", &selector)]))
        .await
    {
        Ok(l) => l,
        // A server that cannot select on involvedObject: filter here instead.
        Err(e) if errors::server_error(&e).is_some_and(|s| s.code == 400) => {
            cluster.get(&base).await.unwrap_or(Value::Null)
        }
        Err(e) => {
            tracing::debug!("listing events: {e:#}");
            Value::Null
        }
    };
    let mut events: Vec<Value> = arr(&list, "/items")
        .iter()
        .filter(|e| s(e, "/involvedObject/name") == name)
        .filter(|e| {
            let kind = s(e, "/involvedObject/kind");
            kind.is_empty() || kind == resource.kind
        })
        .filter(|e| {
            let u = s(e, "/involvedObject/uid");
            u.is_empty() || uid.is_empty() || u == uid
        })
        .cloned()
        .collect();
    let when = |e: &Value| {
        age::parse(e.pointer("/lastTimestamp"))
            .or_else(|| age::parse(e.pointer("/eventTime")))
            .or_else(|| age::parse(e.pointer("/firstTimestamp")))
    };
    events.sort_by_key(when);
    events
}

fn events_block(doc: &mut Doc, events: &[Value]) {
    if events.is_empty() {
        doc.kv(0, "Events", "<none>");
        return;
    }
    doc.line(0, "Events:");
    doc.cells(
        1,
        ["Type", "Reason", "Age", "From", "Message"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    doc.cells(
        1,
        ["----", "------", "----", "----", "-------"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let now = jiff::Timestamp::now();
    for e in events {
        let first = e
            .pointer("/firstTimestamp")
            .filter(|v| !v.is_null())
            .or_else(|| e.pointer("/eventTime"));
        let last = e
            .pointer("/lastTimestamp")
            .filter(|v| !v.is_null())
            .or(first);
        let count = n(e, "/count");
        let when = if count > 1 {
            format!(
                "{} (x{count} over {})",
                age::age(last, now),
                age::age(first, now)
            )
        } else {
            age::age(first, now)
        };
        let from = match (s(e, "/source/component"), s(e, "/reportingComponent")) {
            ("", r) => r,
            (c, _) => c,
        };
        doc.cells(
            1,
            vec![
                s(e, "/type").into(),
                s(e, "/reason").into(),
                when,
                from.into(),
                s(e, "/message").trim().into(),
            ],
        );
    }
}

async fn list(cluster: &Cluster, path: &str) -> Vec<Value> {
    match cluster.get(path).await {
        Ok(v) => arr(&v, "/items").to_vec(),
        Err(e) => {
            tracing::debug!("listing {path}: {e:#}");
            Vec::new()
        }
    }
}

/// The description of one object, events included.
pub async fn describe_object(cluster: &Cluster, resource: &ResourceInfo, obj: &Value) -> String {
    let mut doc = Doc::default();
    let ns = s(obj, "/metadata/namespace");
    let uid = s(obj, "/metadata/uid");
    let owned_by = |item: &Value| {
        arr(item, "/metadata/ownerReferences")
            .iter()
            .any(|o| s(o, "/uid") == uid)
    };
    match (resource.group, resource.kind) {
        ("", "Pod") => describe_pod(&mut doc, obj),
        ("", "Service") => {
            let ep_res = skiff_api::resources::resolve("endpoints");
            let ep = match ep_res {
                Some(r) => cluster
                    .get(&resource_path(
                        r,
                        Some(ns),
                        Some(s(obj, "/metadata/name")),
                        None,
                    ))
                    .await
                    .ok(),
                None => None,
            };
            describe_service(&mut doc, obj, ep.as_ref());
        }
        ("apps", "Deployment") => {
            let path = format!(
                "/apis/apps/v1/namespaces/{}/replicasets",
                crate::client::encode(ns)
            );
            let owned: Vec<Value> = list(cluster, &path)
                .await
                .into_iter()
                .filter(|rs| owned_by(rs))
                .collect();
            describe_deployment(&mut doc, obj, &owned);
        }
        ("apps", "ReplicaSet" | "DaemonSet" | "StatefulSet") | ("", "ReplicationController") => {
            let path = format!("/api/v1/namespaces/{}/pods", crate::client::encode(ns));
            let pods: Vec<Value> = list(cluster, &path)
                .await
                .into_iter()
                .filter(|p| owned_by(p))
                .collect();
            match resource.kind {
                "ReplicaSet" => describe_replicaset(&mut doc, obj, &pods),
                "DaemonSet" => describe_daemonset(&mut doc, obj, &pods),
                "StatefulSet" => describe_statefulset(&mut doc, obj, &pods),
                _ => describe_replication_controller(&mut doc, obj, &pods),
            }
        }
        ("batch", "Job") => describe_job(&mut doc, obj),
        ("batch", "CronJob") => describe_cronjob(&mut doc, obj),
        ("autoscaling", "HorizontalPodAutoscaler") => describe_hpa(&mut doc, obj),
        ("", "Node") => {
            let path = with_query(
                "/api/v1/pods",
                &[(
                    "fieldSelector",
                    &format!("spec.nodeName={}", s(obj, "/metadata/name")),
                )],
            );
            let pods = list(cluster, &path).await;
            describe_node(&mut doc, obj, &pods);
        }
        ("", "Namespace") => {
            let name = crate::client::encode(s(obj, "/metadata/name"));
            let quotas = list(
                cluster,
                &format!("/api/v1/namespaces/{name}/resourcequotas"),
            )
            .await;
            let limits = list(cluster, &format!("/api/v1/namespaces/{name}/limitranges")).await;
            describe_namespace(&mut doc, obj, &quotas, &limits);
            // kubectl shows no events for namespaces.
            return doc.render();
        }
        ("", "ConfigMap") => describe_configmap(&mut doc, obj),
        ("", "Secret") => describe_secret(&mut doc, obj),
        _ => describe_generic(&mut doc, obj, resource),
    }
    let events = events_for(cluster, obj, resource).await;
    events_block(&mut doc, &events);
    doc.render()
}

pub async fn run(cluster: &Cluster, args: &[String], selector: Option<&str>) -> Result<()> {
    let targets = crate::target::parse(args, "describe")?;
    let mut failures = Failures::default();
    let mut first = true;
    for t in targets {
        let resource = t.resource;
        let objects: Vec<Value> = if t.names.is_empty() {
            let path = with_query(
                &resource_path(resource, cluster.list_namespace(resource), None, None),
                &[("labelSelector", selector.unwrap_or(""))],
            );
            let list = cluster.get(&path).await?;
            let items = arr(&list, "/items").to_vec();
            if items.is_empty() {
                eprintln!("No resources found in {} namespace.", cluster.namespace);
            }
            items
        } else {
            let mut found = Vec::new();
            for name in &t.names {
                let path = resource_path(
                    resource,
                    cluster.object_namespace(resource),
                    Some(name),
                    None,
                );
                match cluster.get(&path).await {
                    Ok(o) => found.push(o),
                    Err(e) => failures.report(&e),
                }
            }
            found
        };
        for obj in objects {
            let obj = crate::get::with_kind(resource, obj);
            if !first {
                println!();
                println!();
            }
            first = false;
            print!("{}", describe_object(cluster, resource, &obj).await);
        }
    }
    failures.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_align_with_their_key() {
        let mut doc = Doc::default();
        doc.kv(0, "Name", "web");
        doc.multi(0, "Labels", vec!["app=web".into(), "tier=fe".into()]);
        doc.multi(0, "Annotations", vec![]);
        assert_eq!(
            doc.render(),
            "Name:         web\nLabels:       app=web\n              tier=fe\nAnnotations:  <none>\n"
        );
    }

    #[test]
    fn smart_labels() {
        assert_eq!(smart_label("creationTimestamp"), "Creation Timestamp");
        assert_eq!(smart_label("podIP"), "Pod IP");
        assert_eq!(smart_label("uid"), "UID");
        assert_eq!(smart_label("apiVersion"), "API Version");
        assert_eq!(smart_label("holderIdentity"), "Holder Identity");
    }

    #[test]
    fn pod_layout() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": true, "uid": "u"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"cpu": "100m"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
            "status": {"phase": "Running", "hostIP": "192.168.0.2", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}}]}
        });
        let mut doc = Doc::default();
        describe_pod(&mut doc, &pod);
        let text = doc.render();
        assert!(
            text.contains("Node:             n1/192.168.0.2\n"),
            "{text}"
        );
        assert!(
            text.contains("Controlled By:  ReplicaSet/web-1\n"),
            "{text}"
        );
        assert!(text.contains("    Port:           80/TCP\n"), "{text}");
        assert!(text.contains("    State:          Running\n"), "{text}");
        assert!(
            text.contains("    Environment:\n      A:     1\n    Mounts:  <none>\n"),
            "{text}"
        );
        assert!(text.contains("Conditions:\n  Type           Status\n  Ready          True\nVolumes:         <none>\n"), "{text}");
        assert!(text.contains("http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"), "{text}");
        assert!(text.contains("QoS Class:       Burstable\n"), "{text}");
        assert!(
            text.contains("    Limits:\n      cpu:      100m\n    Readiness:  http-get"),
            "{text}"
        );
        assert!(
            text.contains("node.kubernetes.io/not-ready:NoExecute op=Exists for 300s"),
            "{text}"
        );
    }

    #[test]
    fn service_and_events() {
        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}});
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"name": "http", "port": 8080}]}]});
        let mut doc = Doc::default();
        describe_service(&mut doc, &svc, Some(&ep));
        events_block(&mut doc, &[]);
        let text = doc.render();
        assert!(text.contains("Port:              http  80/TCP\n"), "{text}");
        assert!(text.contains("TargetPort:        8080/TCP\n"), "{text}");
        assert!(
            text.contains("NodePort:          http  30080/TCP\n"),
            "{text}"
        );
        assert!(
            text.contains("Endpoints:         10.244.0.5:8080\n"),
            "{text}"
        );
        assert!(text.ends_with("Events:            <none>\n"), "{text}");
    }

    fn squash(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if !(c == ' ' && out.ends_with(' ')) {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn controller_layouts() {
        let running = json!({"status": {"phase": "Running"}});
        let ds = json!({"metadata": {"name": "logs"},
            "spec": {"selector": {"matchLabels": {"app": "logs"}},
                "template": {"metadata": {"labels": {"app": "logs"}}, "spec": {"containers": [{"name": "c", "image": "fluentd"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        let mut doc = Doc::default();
        describe_daemonset(&mut doc, &ds, std::slice::from_ref(&running));
        let text = squash(&doc.render());
        for want in [
            "Node-Selector: <none>\n",
            "\nDesired Number of Nodes Scheduled: 3\n",
            "\nNumber of Nodes Scheduled with Up-to-date Pods: 2\n",
            "\nNumber of Nodes Scheduled with Available Pods: 1\n",
            "\nPods Status: 1 Running / 0 Waiting / 0 Succeeded / 0 Failed\n",
            "\nPod Template:\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }

        let sts = json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
            "status": {"replicas": 2}});
        let mut doc = Doc::default();
        describe_statefulset(&mut doc, &sts, &[]);
        let text = squash(&doc.render());
        for want in [
            "\nReplicas: 3 desired | 2 total\n",
            "\nUpdate Strategy: RollingUpdate\n Partition: 1\n",
            "\nVolume Claims:\n Name: data\n",
            " Capacity: 1Gi\n Access Modes: [ReadWriteOnce]\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }

        let job = json!({"metadata": {"name": "pi", "namespace": "default"},
            "spec": {"parallelism": 2, "completions": 5, "completionMode": "NonIndexed", "suspend": false, "backoffLimit": 6},
            "status": {"active": 2, "ready": 1, "succeeded": 3,
                "startTime": "2024-05-01T12:00:00Z", "completionTime": "2024-05-01T12:00:20Z"}});
        let mut doc = Doc::default();
        describe_job(&mut doc, &job);
        let text = squash(&doc.render());
        for want in [
            "\nParallelism: 2\nCompletions: 5\nCompletion Mode: NonIndexed\nSuspend: false\nBackoff Limit: 6\n",
            "\nDuration: 20s\n",
            "\nPods Statuses: 2 Active (1 Ready) / 3 Succeeded / 0 Failed\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }

        let cj = json!({"metadata": {"name": "hello", "namespace": "default"},
            "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "suspend": false,
                "successfulJobsHistoryLimit": 3, "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
            "status": {"active": [{"name": "hello-1"}]}});
        let mut doc = Doc::default();
        describe_cronjob(&mut doc, &cj);
        let text = squash(&doc.render());
        for want in [
            "\nSchedule: */5 * * * *\nConcurrency Policy: Forbid\nSuspend: False\n",
            "\nSuccessful Job History Limit: 3\nFailed Job History Limit: <unset>\nStarting Deadline Seconds: <unset>\nSelector: <unset>\n",
            "\nLast Schedule Time: <unset>\nActive Jobs: hello-1\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }

    #[test]
    fn hpa_layout() {
        let hpa = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 80, "averageValue": "400m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale", "message": "ok"}]}});
        let mut doc = Doc::default();
        describe_hpa(&mut doc, &hpa);
        let text = squash(&doc.render());
        for want in [
            "\nReference: Deployment/web\nMetrics: ( current / target )\n",
            "\n resource cpu on pods (as a percentage of request): 80% (400m) / 50%\n",
            "\n resource memory on pods: <unknown> / 100Mi\n",
            "\nMin replicas: 1\nMax replicas: 10\nBehavior:\n Scale Down:\n Stabilization Window: 300 seconds\n Select Policy: Max\n Policies:\n - Type: Percent Value: 100 Period: 15 seconds\n",
            "\nDeployment pods: 2 current / 3 desired\n",
            "\n AbleToScale True SucceededRescale ok\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }

    #[test]
    fn deployment_new_and_old_replicasets() {
        let template = |image: &str, hash: Option<&str>| {
            let mut labels = json!({"app": "web"});
            if let Some(h) = hash {
                labels["pod-template-hash"] = json!(h);
            }
            json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}})
        };
        let rs = |name: &str, image: &str, replicas: i64| {
            json!({"metadata": {"name": name, "annotations": {"deployment.kubernetes.io/revision": "1"}},
                "spec": {"replicas": replicas, "template": template(image, Some(name))},
                "status": {"replicas": replicas}})
        };
        let d = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "template": template("nginx:2", None)}});
        let old = rs("web-a", "nginx:1", 2);
        let mut doc = Doc::default();
        describe_deployment(&mut doc, &d, std::slice::from_ref(&old));
        let text = squash(&doc.render());
        assert!(
            text.contains(
                "\nOldReplicaSets: web-a (2/2 replicas created)\nNewReplicaSet: <none>\n"
            ),
            "{text}"
        );
        let new = rs("web-b", "nginx:2", 1);
        let mut doc = Doc::default();
        describe_deployment(&mut doc, &d, &[old, new]);
        let text = squash(&doc.render());
        assert!(
            text.contains("\nNewReplicaSet: web-b (1/1 replicas created)\n"),
            "{text}"
        );
    }
}

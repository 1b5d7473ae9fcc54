//! Kubernetes' defaulting for typed objects, as the API server applies it on create and update.
//!
//! Manifests written for Kubernetes leave most fields out and rely on the API server to fill
//! them; clients (kubectl diff, controllers, the node daemon) then read the filled values back.
//! The values here are those of Kubernetes' `pkg/apis/*/v1/defaults.go`, the declarative
//! `+default` tags of `k8s.io/api`, and the few fields the API server's registry and admission
//! fill on every object (pod status phase and QoS class, the pod's service account, service IP
//! families, the job selector).
//!
//! Every function fills only what is absent (or holds the zero value Kubernetes treats as
//! absent, like an empty string), so running it again on every update changes nothing that a
//! user or controller set. A missing `spec` is left missing: validation rejects it with a
//! better message than a half-defaulted object would give.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, Deployment, ReplicaSet, RollingUpdateDaemonSet, RollingUpdateDeployment,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Container, EphemeralContainer, HTTPGetAction, Namespace, NamespaceSpec, Node,
    ObjectFieldSelector, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod,
    PodSecurityContext, PodSpec, PodTemplate, PodTemplateSpec, Probe, ReplicationController,
    ResourceRequirements, Secret, Service, SessionAffinityConfig, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::constants::{DEFAULT_SCHEDULER_NAME, NAMESPACE_FINALIZER};

/// File mode of secret, configMap, downwardAPI and projected volume files (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;
/// Seconds a pod gets between SIGTERM and SIGKILL.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Where a container may write why it terminated.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Stickiness of `sessionAffinity: ClientIP` services (3 hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;
/// The service account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Lifetime of a projected service account token.
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// Target CPU utilisation of a HorizontalPodAutoscaler without metrics.
pub const DEFAULT_HPA_CPU_UTILIZATION: i32 = 80;

/// Job label with the job's uid (the selector uses this one).
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Pre-1.27 spelling of [`JOB_CONTROLLER_UID_LABEL`], still set for old clients.
pub const LEGACY_JOB_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// Job label with the job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Pre-1.27 spelling of [`JOB_NAME_LABEL`].
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

// ---------------------------------------------------------------------------------------------
// Small setters: Go's zero values ("" and 0) mean "unset" for non-pointer fields, which
// k8s-openapi turns into `Option`s.

fn set_if_none<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn set_str_if_empty(slot: &mut Option<String>, value: &str) {
    if slot.as_deref().is_none_or(str::is_empty) {
        *slot = Some(value.to_string());
    }
}

fn set_i32_if_zero(slot: &mut Option<i32>, value: i32) {
    if slot.is_none_or(|v| v == 0) {
        *slot = Some(value);
    }
}

fn is_empty_str(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(str::is_empty)
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates

/// Defaults a Pod: its spec (as [`pod_spec`]) plus what Kubernetes applies to pods only and not
/// to templates — requests from limits, `enableServiceLinks`, host ports on the host network,
/// the `default` service account (the ServiceAccount admission plugin) — and the status the
/// registry gives a new pod: phase `Pending` and its QoS class.
pub fn pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        for c in spec.containers.iter_mut() {
            requests_from_limits(&mut c.resources);
        }
        for c in spec.init_containers.iter_mut().flatten() {
            requests_from_limits(&mut c.resources);
        }
        set_if_none(&mut spec.enable_service_links, true);
        if spec.host_network == Some(true) {
            let all = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for port in all.flat_map(|c| c.ports.iter_mut().flatten()) {
                if port.host_port.is_none_or(|p| p == 0) {
                    port.host_port = Some(port.container_port);
                }
            }
        }
        if is_empty_str(&spec.service_account_name) && is_empty_str(&spec.service_account) {
            spec.service_account_name = Some(DEFAULT_SERVICE_ACCOUNT.to_string());
        }
        pod_spec(spec);
    }
    let qos = pod.spec.as_ref().map_or("BestEffort", qos_class);
    let status = pod.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Pending");
    set_str_if_empty(&mut status.qos_class, qos);
}

/// Defaults a pod spec, wherever it appears (pods and every pod template).
pub fn pod_spec(spec: &mut PodSpec) {
    set_str_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_str_if_empty(&mut spec.restart_policy, "Always");
    set_if_none(&mut spec.security_context, PodSecurityContext::default());
    set_if_none(
        &mut spec.termination_grace_period_seconds,
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    );
    set_str_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    mirror_service_account(spec);
    for c in spec.containers.iter_mut() {
        container(c);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        container(c);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        ephemeral_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

/// Defaults a pod template (Deployment, ReplicaSet, … `spec.template`).
pub fn pod_template_spec(template: &mut PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        pod_spec(spec);
    }
}

/// Defaults a PodTemplate object.
pub fn pod_template(template: &mut PodTemplate) {
    if let Some(t) = template.template.as_mut() {
        pod_template_spec(t);
    }
}

/// `serviceAccount` is the deprecated spelling of `serviceAccountName`; Kubernetes' conversion
/// fills each from the other so old and new clients read the same account.
fn mirror_service_account(spec: &mut PodSpec) {
    if is_empty_str(&spec.service_account_name) && !is_empty_str(&spec.service_account) {
        spec.service_account_name = spec.service_account.clone();
    }
    if !is_empty_str(&spec.service_account_name) {
        spec.service_account = spec.service_account_name.clone();
    }
}

/// A container that states only limits gets the same requests, per resource: the scheduler
/// and the QoS class look at requests.
fn requests_from_limits(resources: &mut Option<ResourceRequirements>) {
    let Some(r) = resources.as_mut() else {
        return;
    };
    let Some(limits) = r.limits.as_ref().filter(|l| !l.is_empty()) else {
        return;
    };
    let requests = r.requests.get_or_insert_with(BTreeMap::new);
    for (name, value) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
}

/// The pull policy Kubernetes picks for an image: `Always` for the `latest` tag (written or
/// implied by a reference with neither tag nor digest), `IfNotPresent` otherwise.
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.is_empty() {
        // Kubernetes cannot parse it either and falls back to IfNotPresent; validation rejects it.
        return "IfNotPresent";
    }
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A colon before the last slash belongs to a registry host:port, not to a tag.
    let last_component = name.rsplit('/').next().unwrap_or(name);
    match last_component.split_once(':').map(|(_, tag)| tag) {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    }
}

/// The container defaults; a macro because `Container` and `EphemeralContainer` are distinct
/// types with the same fields.
macro_rules! default_container_fields {
    ($c:expr) => {{
        let c = $c;
        if is_empty_str(&c.image_pull_policy) {
            c.image_pull_policy = Some(image_pull_policy(c.image.as_deref().unwrap_or("")).into());
        }
        set_str_if_empty(
            &mut c.termination_message_path,
            DEFAULT_TERMINATION_MESSAGE_PATH,
        );
        set_str_if_empty(&mut c.termination_message_policy, "File");
        for port in c.ports.iter_mut().flatten() {
            set_str_if_empty(&mut port.protocol, "TCP");
        }
        for env in c.env.iter_mut().flatten() {
            if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
                object_field_selector(field_ref);
            }
        }
        for p in [
            &mut c.liveness_probe,
            &mut c.readiness_probe,
            &mut c.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            probe(p);
        }
        if let Some(lifecycle) = c.lifecycle.as_mut() {
            for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
                .into_iter()
                .flatten()
            {
                if let Some(get) = handler.http_get.as_mut() {
                    http_get_action(get);
                }
            }
        }
    }};
}

fn container(c: &mut Container) {
    default_container_fields!(c);
}

fn ephemeral_container(c: &mut EphemeralContainer) {
    default_container_fields!(c);
}

fn object_field_selector(selector: &mut ObjectFieldSelector) {
    set_str_if_empty(&mut selector.api_version, "v1");
}

fn probe(p: &mut Probe) {
    set_i32_if_zero(&mut p.timeout_seconds, 1);
    set_i32_if_zero(&mut p.period_seconds, 10);
    set_i32_if_zero(&mut p.success_threshold, 1);
    set_i32_if_zero(&mut p.failure_threshold, 3);
    if let Some(get) = p.http_get.as_mut() {
        http_get_action(get);
    }
    if let Some(grpc) = p.grpc.as_mut() {
        set_if_none(&mut grpc.service, String::new());
    }
}

fn http_get_action(get: &mut HTTPGetAction) {
    set_str_if_empty(&mut get.path, "/");
    set_str_if_empty(&mut get.scheme, "HTTP");
}

/// Whether a volume names any source; one that names none is an emptyDir.
fn volume_has_source(v: &Volume) -> bool {
    v.aws_elastic_block_store.is_some()
        || v.azure_disk.is_some()
        || v.azure_file.is_some()
        || v.cephfs.is_some()
        || v.cinder.is_some()
        || v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.fc.is_some()
        || v.flex_volume.is_some()
        || v.flocker.is_some()
        || v.gce_persistent_disk.is_some()
        || v.git_repo.is_some()
        || v.glusterfs.is_some()
        || v.host_path.is_some()
        || v.image.is_some()
        || v.iscsi.is_some()
        || v.nfs.is_some()
        || v.persistent_volume_claim.is_some()
        || v.photon_persistent_disk.is_some()
        || v.portworx_volume.is_some()
        || v.projected.is_some()
        || v.quobyte.is_some()
        || v.rbd.is_some()
        || v.scale_io.is_some()
        || v.secret.is_some()
        || v.storageos.is_some()
        || v.vsphere_volume.is_some()
}

fn volume(v: &mut Volume) {
    if !volume_has_source(v) {
        v.empty_dir = Some(Default::default());
    }
    if let Some(host_path) = v.host_path.as_mut() {
        // "" means "no check": the path may be anything.
        set_if_none(&mut host_path.type_, String::new());
    }
    if let Some(secret) = v.secret.as_mut() {
        set_if_none(&mut secret.default_mode, DEFAULT_VOLUME_MODE);
    }
    if let Some(config_map) = v.config_map.as_mut() {
        set_if_none(&mut config_map.default_mode, DEFAULT_VOLUME_MODE);
    }
    if let Some(downward) = v.downward_api.as_mut() {
        set_if_none(&mut downward.default_mode, DEFAULT_VOLUME_MODE);
        for item in downward.items.iter_mut().flatten() {
            if let Some(field_ref) = item.field_ref.as_mut() {
                object_field_selector(field_ref);
            }
        }
    }
    if let Some(projected) = v.projected.as_mut() {
        set_if_none(&mut projected.default_mode, DEFAULT_VOLUME_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(downward) = source.downward_api.as_mut() {
                for item in downward.items.iter_mut().flatten() {
                    if let Some(field_ref) = item.field_ref.as_mut() {
                        object_field_selector(field_ref);
                    }
                }
            }
            if let Some(token) = source.service_account_token.as_mut() {
                set_if_none(
                    &mut token.expiration_seconds,
                    DEFAULT_TOKEN_EXPIRATION_SECONDS,
                );
            }
        }
    }
    if let Some(iscsi) = v.iscsi.as_mut() {
        set_str_if_empty(&mut iscsi.iscsi_interface, "default");
    }
    if let Some(rbd) = v.rbd.as_mut() {
        set_str_if_empty(&mut rbd.pool, "rbd");
        set_str_if_empty(&mut rbd.user, "admin");
        set_str_if_empty(&mut rbd.keyring, "/etc/ceph/keyring");
    }
    if let Some(azure) = v.azure_disk.as_mut() {
        set_if_none(&mut azure.caching_mode, "ReadWrite".to_string());
        set_if_none(&mut azure.fs_type, "ext4".to_string());
        set_if_none(&mut azure.read_only, false);
        set_if_none(&mut azure.kind, "Shared".to_string());
    }
    if let Some(scale_io) = v.scale_io.as_mut() {
        set_str_if_empty(&mut scale_io.storage_mode, "ThinProvisioned");
        set_str_if_empty(&mut scale_io.fs_type, "xfs");
    }
    if let Some(template) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        persistent_volume_claim_spec(&mut template.spec);
    }
    if let Some(image) = v.image.as_mut() {
        if is_empty_str(&image.pull_policy) {
            let policy = image_pull_policy(image.reference.as_deref().unwrap_or(""));
            image.pull_policy = Some(policy.to_string());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// QoS class

/// The pod's QoS class as Kubernetes computes it: `BestEffort` when no container asks for or
/// is limited in CPU or memory, `Guaranteed` when every container (init containers included)
/// has CPU and memory limits and the pod's total requests equal its total limits, `Burstable`
/// otherwise. Pod-level `spec.resources`, when given, decide instead of the containers.
///
/// A request left out where a limit is given counts as equal to the limit, as the pod
/// defaulting above makes it, so templates and not-yet-defaulted pods classify the same.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut guaranteed = true;

    let pod_level = spec.resources.as_ref().filter(|r| {
        r.requests.as_ref().is_some_and(|m| !m.is_empty())
            || r.limits.as_ref().is_some_and(|m| !m.is_empty())
    });
    let resource_sets: Vec<&ResourceRequirements> = match pod_level {
        Some(r) => vec![r],
        None => spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.resources.as_ref())
            .collect(),
    };
    let containers_without_resources = pod_level.is_none()
        && spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.resources.is_none());
    if containers_without_resources {
        guaranteed = false;
    }

    for r in resource_sets {
        let empty = BTreeMap::new();
        let lim = r.limits.as_ref().unwrap_or(&empty);
        let req = r.requests.as_ref().unwrap_or(&empty);
        let mut limited = (false, false);
        for name in ["cpu", "memory"] {
            // The effective request: the stated one, else the limit (see doc comment).
            if let Some(q) = req.get(name).or_else(|| lim.get(name)).and_then(positive) {
                add_to(&mut requests, name, q);
            }
            if let Some(q) = lim.get(name).and_then(positive) {
                add_to(&mut limits, name, q);
                if name == "cpu" {
                    limited.0 = true;
                } else {
                    limited.1 = true;
                }
            }
        }
        if limited != (true, true) {
            guaranteed = false;
        }
    }

    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests
            .iter()
            .all(|(name, req)| limits.get(name) == Some(req))
    {
        return "Guaranteed";
    }
    "Burstable"
}

fn positive(q: &Quantity) -> Option<Decimal> {
    Decimal::parse(&q.0).filter(|d| d.mantissa > 0)
}

fn add_to<'a>(sums: &mut BTreeMap<&'a str, Decimal>, name: &'a str, value: Decimal) {
    let sum = match sums.get(name) {
        Some(prev) => prev.add(value),
        None => value,
    };
    sums.insert(name, sum);
}

/// An exact resource quantity, `mantissa × 10^exponent`, normalised (no trailing zeros in the
/// mantissa) so that equal amounts compare equal however they were written (`1Gi`,
/// `1073741824`, `1024Mi`; `0.5`, `500m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    exponent: i32,
}

impl Decimal {
    fn new(mantissa: i128, exponent: i32) -> Decimal {
        let (mut mantissa, mut exponent) = (mantissa, exponent);
        if mantissa == 0 {
            return Decimal {
                mantissa: 0,
                exponent: 0,
            };
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Decimal { mantissa, exponent }
    }

    /// Parses Kubernetes' quantity syntax: `[+-]digits[.digits]` then a binary suffix
    /// (`Ki`…`Ei`), a decimal suffix (`n u m k M G T P E`) or an exponent (`e3`, `E-2`).
    /// `None` for anything else, or for amounts too large to hold exactly.
    fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            if digit == b'.' {
                return None;
            }
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(digit - b'0'))?;
        }
        let mut exponent = -i32::try_from(fraction.len()).ok()?;
        let binary_power = match suffix {
            "Ki" => 1,
            "Mi" => 2,
            "Gi" => 3,
            "Ti" => 4,
            "Pi" => 5,
            "Ei" => 6,
            _ => 0,
        };
        if binary_power > 0 {
            mantissa = mantissa.checked_mul(1024i128.checked_pow(binary_power)?)?;
        } else {
            exponent += match suffix {
                "" => 0,
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                "E" => 18,
                _ => {
                    let digits = suffix.strip_prefix(['e', 'E'])?;
                    if digits.is_empty() {
                        return None;
                    }
                    digits.parse::<i32>().ok().filter(|e| e.abs() <= 1000)?
                }
            };
        }
        if negative {
            mantissa = -mantissa;
        }
        Some(Decimal::new(mantissa, exponent))
    }

    /// The exact sum; on the (absurd) overflow keeps the larger operand, which only matters
    /// for quantities no real pod asks for.
    fn add(self, other: Decimal) -> Decimal {
        let (low, high) = if self.exponent <= other.exponent {
            (self, other)
        } else {
            (other, self)
        };
        let shift = u32::try_from(high.exponent - low.exponent).unwrap_or(u32::MAX);
        let scaled = 10i128
            .checked_pow(shift)
            .and_then(|f| high.mantissa.checked_mul(f));
        match scaled.and_then(|h| h.checked_add(low.mantissa)) {
            Some(sum) => Decimal::new(sum, low.exponent),
            None => high,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// Defaults a Deployment: one replica, a 25%/25% rolling update, 10 old ReplicaSets kept, a
/// 600 s progress deadline, and its pod template.
pub fn deployment(d: &mut Deployment) {
    let Some(spec) = d.spec.as_mut() else {
        return;
    };
    set_if_none(&mut spec.replicas, 1);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    set_str_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set_if_none(
            &mut rolling.max_unavailable,
            IntOrString::String("25%".into()),
        );
        set_if_none(&mut rolling.max_surge, IntOrString::String("25%".into()));
    }
    set_if_none(&mut spec.revision_history_limit, 10);
    set_if_none(&mut spec.progress_deadline_seconds, 600);
    pod_template_spec(&mut spec.template);
}

/// Defaults a ReplicaSet: one replica and its pod template.
pub fn replica_set(rs: &mut ReplicaSet) {
    let Some(spec) = rs.spec.as_mut() else {
        return;
    };
    set_if_none(&mut spec.replicas, 1);
    if let Some(template) = spec.template.as_mut() {
        pod_template_spec(template);
    }
}

/// Defaults a ReplicationController: one replica, and the selector and the controller's own
/// labels taken from the template's labels when not given (RCs predate explicit selectors).
pub fn replication_controller(rc: &mut ReplicationController) {
    let Some(spec) = rc.spec.as_mut() else {
        return;
    };
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels {
        if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
            spec.selector = Some(labels.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            rc.metadata.labels = Some(labels);
        }
    }
    set_if_none(&mut spec.replicas, 1);
    if let Some(template) = spec.template.as_mut() {
        pod_template_spec(template);
    }
}

/// Defaults a DaemonSet: a rolling update of one node at a time without surge, 10 old
/// revisions kept, and its pod template.
pub fn daemon_set(ds: &mut DaemonSet) {
    let Some(spec) = ds.spec.as_mut() else {
        return;
    };
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    set_str_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        set_if_none(&mut rolling.max_unavailable, IntOrString::Int(1));
        set_if_none(&mut rolling.max_surge, IntOrString::Int(0));
    }
    set_if_none(&mut spec.revision_history_limit, 10);
    pod_template_spec(&mut spec.template);
}

/// Defaults a StatefulSet: ordered pod management, a rolling update from partition 0, PVCs
/// retained on delete and scale-down, one replica, 10 old revisions, its pod template and its
/// volume claim templates.
pub fn stateful_set(sts: &mut StatefulSet) {
    let Some(spec) = sts.spec.as_mut() else {
        return;
    };
    set_str_if_empty(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    if is_empty_str(&strategy.type_) {
        strategy.type_ = Some("RollingUpdate".into());
        set_if_none(
            &mut strategy.rolling_update,
            RollingUpdateStatefulSetStrategy::default(),
        );
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        if let Some(rolling) = strategy.rolling_update.as_mut() {
            set_if_none(&mut rolling.partition, 0);
        }
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set_str_if_empty(&mut retention.when_deleted, "Retain");
    set_str_if_empty(&mut retention.when_scaled, "Retain");
    set_if_none(&mut spec.replicas, 1);
    set_if_none(&mut spec.revision_history_limit, 10);
    pod_template_spec(&mut spec.template);
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        persistent_volume_claim(claim);
    }
}

/// Defaults a Job: one completion and parallelism 1 when neither is given (parallelism alone
/// leaves completions open: a work queue), 6 retries, non-indexed, not suspended, a generated
/// selector, the job's labels from its template, and its pod template.
pub fn job(job: &mut Job) {
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    set_if_none(&mut spec.parallelism, 1);
    if spec.backoff_limit.is_none() {
        // With per-index limits the global limit is effectively off.
        let limit = if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        };
        spec.backoff_limit = Some(limit);
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels {
        if job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            job.metadata.labels = Some(labels);
        }
    }
    set_str_if_empty(&mut spec.completion_mode, "NonIndexed");
    set_if_none(&mut spec.suspend, false);
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.into());
    }
    set_if_none(&mut spec.manual_selector, false);
    job_spec_common(spec);
}

/// What every JobSpec gets, in a Job or in a CronJob's job template.
fn job_spec_common(spec: &mut JobSpec) {
    if let Some(policy) = spec.pod_failure_policy.as_mut() {
        for rule in policy.rules.iter_mut() {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                if pattern.status.is_empty() {
                    pattern.status = "True".into();
                }
            }
        }
    }
    pod_template_spec(&mut spec.template);
}

/// Generates a Job's selector and pod labels, as the API server does on create unless
/// `spec.manualSelector` is true: the template gets `controller-uid` and `job-name` (both
/// spellings) without overriding labels the user set, and the selector matches
/// `batch.kubernetes.io/controller-uid`, which alone makes the job's pods its own. A job
/// without labels of its own takes the template's (Kubernetes shows them on the job too).
/// Call it after [`job`].
pub fn job_selector_and_labels(job: &mut Job, uid: &str) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
    let labels = template_meta.labels.get_or_insert_with(BTreeMap::new);
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| name.clone());
    }
    for key in [LEGACY_JOB_CONTROLLER_UID_LABEL, JOB_CONTROLLER_UID_LABEL] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| uid.to_string());
    }
    let template_labels = labels.clone();
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry(JOB_CONTROLLER_UID_LABEL.to_string())
        .or_insert_with(|| uid.to_string());
    if job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
        job.metadata.labels = Some(template_labels);
    }
}

/// Defaults a CronJob: concurrent runs allowed, not suspended, 3 successful and 1 failed job
/// kept, and its job template's pod template.
pub fn cron_job(cj: &mut CronJob) {
    let Some(spec) = cj.spec.as_mut() else {
        return;
    };
    set_str_if_empty(&mut spec.concurrency_policy, "Allow");
    set_if_none(&mut spec.suspend, false);
    set_if_none(&mut spec.successful_jobs_history_limit, 3);
    set_if_none(&mut spec.failed_jobs_history_limit, 1);
    if let Some(job_spec) = spec.job_template.spec.as_mut() {
        job_spec_common(job_spec);
    }
}

// ---------------------------------------------------------------------------------------------
// Services

/// Defaults a Service: type ClusterIP, no session affinity (or a 3 h ClientIP timeout), TCP
/// ports whose target port is the port, traffic policies `Cluster`, node ports allocated for
/// load balancers, and the IP families of a single-stack IPv4 cluster.
pub fn service(svc: &mut Service) {
    let Some(spec) = svc.spec.as_mut() else {
        return;
    };
    set_str_if_empty(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .is_some();
            if !has_timeout {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
                    }),
                });
            }
        }
        _ => {}
    }
    set_str_if_empty(&mut spec.type_, "ClusterIP");
    for port in spec.ports.iter_mut().flatten() {
        set_str_if_empty(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 0,
            Some(IntOrString::String(s)) => s.is_empty(),
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let ty = spec.type_.clone().unwrap_or_default();
    let has_external_ips = spec
        .external_ips
        .as_ref()
        .is_some_and(|ips| !ips.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_str_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_if_none(&mut spec.internal_traffic_policy, "Cluster".to_string());
    }
    if ty == "LoadBalancer" {
        set_if_none(&mut spec.allocate_load_balancer_node_ports, true);
    }
    if ty != "ExternalName" {
        service_ip_families(spec);
    }
    if ty == "LoadBalancer" {
        let ingress = svc
            .status
            .as_mut()
            .and_then(|s| s.load_balancer.as_mut())
            .and_then(|lb| lb.ingress.as_mut());
        for entry in ingress.into_iter().flatten() {
            if !is_empty_str(&entry.ip) {
                set_if_none(&mut entry.ip_mode, "VIP".to_string());
            }
        }
    }
}

/// IP families as the service registry sets them on a single-stack IPv4 cluster. Headless
/// services without a selector get both families: their endpoints are the user's and may be
/// of either.
fn service_ip_families(spec: &mut k8s_openapi::api::core::v1::ServiceSpec) {
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let selectorless = spec.selector.as_ref().is_none_or(BTreeMap::is_empty);
    let default_policy = if headless && selectorless {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    set_str_if_empty(&mut spec.ip_family_policy, default_policy);
    let families = spec.ip_families.get_or_insert_with(Vec::new);
    if families.is_empty() {
        families.push("IPv4".into());
    }
    if headless
        && selectorless
        && spec.ip_family_policy.as_deref() == Some("RequireDualStack")
        && families.len() < 2
    {
        let other = if families[0] == "IPv6" {
            "IPv4"
        } else {
            "IPv6"
        };
        families.push(other.into());
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration and storage

/// Defaults a Secret: type `Opaque`.
pub fn secret(s: &mut Secret) {
    set_str_if_empty(&mut s.type_, "Opaque");
}

/// Defaults a PersistentVolumeClaim: filesystem volume mode and phase `Pending`.
pub fn persistent_volume_claim(pvc: &mut PersistentVolumeClaim) {
    if let Some(spec) = pvc.spec.as_mut() {
        persistent_volume_claim_spec(spec);
    }
    let status = pvc.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Pending");
}

fn persistent_volume_claim_spec(spec: &mut PersistentVolumeClaimSpec) {
    set_if_none(&mut spec.volume_mode, "Filesystem".to_string());
}

/// Defaults a StorageClass: reclaim policy `Delete`, binding mode `Immediate`.
pub fn storage_class(class: &mut StorageClass) {
    set_str_if_empty(&mut class.reclaim_policy, "Delete");
    set_str_if_empty(&mut class.volume_binding_mode, "Immediate");
}

/// Defaults a PersistentVolume: reclaim policy `Retain` (provisioners set `Delete` on the
/// volumes they create), filesystem mode, phase `Pending`, and its volume source.
pub fn persistent_volume(pv: &mut PersistentVolume) {
    if let Some(spec) = pv.spec.as_mut() {
        set_str_if_empty(&mut spec.persistent_volume_reclaim_policy, "Retain");
        set_if_none(&mut spec.volume_mode, "Filesystem".to_string());
        if let Some(host_path) = spec.host_path.as_mut() {
            set_if_none(&mut host_path.type_, String::new());
        }
        if let Some(rbd) = spec.rbd.as_mut() {
            set_str_if_empty(&mut rbd.pool, "rbd");
            set_str_if_empty(&mut rbd.user, "admin");
            set_str_if_empty(&mut rbd.keyring, "/etc/ceph/keyring");
        }
        if let Some(iscsi) = spec.iscsi.as_mut() {
            set_str_if_empty(&mut iscsi.iscsi_interface, "default");
        }
        if let Some(azure) = spec.azure_disk.as_mut() {
            set_if_none(&mut azure.caching_mode, "ReadWrite".to_string());
            set_if_none(&mut azure.fs_type, "ext4".to_string());
            set_if_none(&mut azure.read_only, false);
            set_if_none(&mut azure.kind, "Shared".to_string());
        }
        if let Some(scale_io) = spec.scale_io.as_mut() {
            set_str_if_empty(&mut scale_io.storage_mode, "ThinProvisioned");
            set_str_if_empty(&mut scale_io.fs_type, "xfs");
        }
    }
    let status = pv.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Pending");
}

// ---------------------------------------------------------------------------------------------
// Cluster objects

/// Defaults a Namespace: phase `Active`, the `kubernetes.io/metadata.name` label, and the
/// `kubernetes` finalizer when `spec.finalizers` is absent. An explicitly empty list is kept:
/// that is how the namespace lifecycle controller finishes a deletion.
pub fn namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.to_string(), name);
    }
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    set_if_none(&mut spec.finalizers, vec![NAMESPACE_FINALIZER.to_string()]);
    let status = ns.status.get_or_insert_with(Default::default);
    set_str_if_empty(&mut status.phase, "Active");
}

/// Defaults a Node: allocatable equals capacity until the node reports otherwise.
pub fn node(node: &mut Node) {
    if let Some(status) = node.status.as_mut() {
        if status.allocatable.is_none() {
            status.allocatable = status.capacity.clone();
        }
    }
}

/// Defaults an autoscaling/v2 HorizontalPodAutoscaler: at least one replica, 80% average CPU
/// utilisation when no metric is given, and complete scaling rules wherever `behavior` is set.
pub fn horizontal_pod_autoscaler(hpa: &mut HorizontalPodAutoscaler) {
    let Some(spec) = hpa.spec.as_mut() else {
        return;
    };
    set_if_none(&mut spec.min_replicas, 1);
    if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
        spec.metrics = Some(vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(DEFAULT_HPA_CPU_UTILIZATION),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]);
    }
    if let Some(behavior) = spec.behavior.as_mut() {
        let up = behavior.scale_up.get_or_insert_with(Default::default);
        scaling_rules(
            up,
            Some(0),
            vec![
                scaling_policy("Pods", 4, 15),
                scaling_policy("Percent", 100, 15),
            ],
        );
        // Scale-down stabilisation stays unset: the controller's flag decides it.
        let down = behavior.scale_down.get_or_insert_with(Default::default);
        scaling_rules(down, None, vec![scaling_policy("Percent", 100, 15)]);
    }
}

fn scaling_policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds,
    }
}

fn scaling_rules(
    rules: &mut HPAScalingRules,
    stabilization: Option<i32>,
    policies: Vec<HPAScalingPolicy>,
) {
    set_str_if_empty(&mut rules.select_policy, "Max");
    if rules.stabilization_window_seconds.is_none() {
        rules.stabilization_window_seconds = stabilization;
    }
    set_if_none(&mut rules.policies, policies);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, StatefulSetSpec,
        StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::autoscaling::v2::{
        CrossVersionObjectReference, HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec,
    };
    use k8s_openapi::api::batch::v1::{
        CronJobSpec, JobTemplateSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern,
        PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
        EnvVar, EnvVarSource, GRPCAction, HostPathVolumeSource, Lifecycle, LifecycleHandler,
        LoadBalancerIngress, LoadBalancerStatus, NodeStatus, PersistentVolumeSpec,
        ProjectedVolumeSource, ReplicationControllerSpec, SecretVolumeSource,
        ServiceAccountTokenProjection, ServicePort, ServiceSpec, ServiceStatus, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    fn named_container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    fn with_resources(
        mut c: Container,
        requests: &[(&str, &str)],
        limits: &[(&str, &str)],
    ) -> Container {
        c.resources = Some(ResourceRequirements {
            requests: (!requests.is_empty()).then(|| quantities(requests)),
            limits: (!limits.is_empty()).then(|| quantities(limits)),
            ..Default::default()
        });
        c
    }

    fn spec_with(containers: Vec<Container>) -> PodSpec {
        PodSpec {
            containers,
            ..Default::default()
        }
    }

    fn template(spec: PodSpec) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            spec: Some(spec),
        }
    }

    fn sample_pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(spec_with(vec![named_container("app", "nginx:1.27")])),
            status: None,
        }
    }

    #[test]
    fn pod_spec_top_level_defaults() {
        let mut spec = spec_with(vec![named_container("app", "nginx")]);
        pod_spec(&mut spec);
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.security_context, Some(PodSecurityContext::default()));
        assert_eq!(spec.priority, None, "priority comes from admission");
        // Pod-only defaults stay off templates.
        assert_eq!(spec.enable_service_links, None);
        assert_eq!(spec.service_account_name, None);
    }

    #[test]
    fn pod_spec_keeps_what_is_set() {
        let mut spec = spec_with(vec![named_container("app", "nginx")]);
        spec.restart_policy = Some("Never".into());
        spec.dns_policy = Some("Default".into());
        spec.termination_grace_period_seconds = Some(0);
        spec.scheduler_name = Some("other".into());
        pod_spec(&mut spec);
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.dns_policy.as_deref(), Some("Default"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.scheduler_name.as_deref(), Some("other"));
    }

    #[test]
    fn empty_strings_count_as_unset() {
        let mut spec = spec_with(vec![named_container("app", "nginx")]);
        spec.restart_policy = Some(String::new());
        pod_spec(&mut spec);
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/nginx:v1"), "IfNotPresent");
        assert_eq!(
            image_pull_policy("nginx@sha256:0123456789abcdef"),
            "IfNotPresent"
        );
        assert_eq!(
            image_pull_policy("nginx:latest@sha256:0123456789abcdef"),
            "Always"
        );
        assert_eq!(image_pull_policy(""), "IfNotPresent");
    }

    #[test]
    fn container_defaults() {
        let mut c = named_container("app", "nginx:1.27");
        c.ports = Some(vec![ContainerPort {
            container_port: 80,
            ..Default::default()
        }]);
        c.env = Some(vec![EnvVar {
            name: "NODE".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        c.liveness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            ..Default::default()
        });
        c.readiness_probe = Some(Probe {
            grpc: Some(GRPCAction {
                port: 9000,
                service: None,
            }),
            timeout_seconds: Some(5),
            period_seconds: Some(0),
            ..Default::default()
        });
        c.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::String("http".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut spec = spec_with(vec![c]);
        spec.init_containers = Some(vec![named_container("init", "busybox")]);
        pod_spec(&mut spec);

        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(port.host_port, None, "host ports only on the host network");
        let env = &c.env.as_ref().unwrap()[0];
        let field_ref = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field_ref.api_version.as_deref(), Some("v1"));

        let live = c.liveness_probe.as_ref().unwrap();
        assert_eq!(live.timeout_seconds, Some(1));
        assert_eq!(live.period_seconds, Some(10));
        assert_eq!(live.success_threshold, Some(1));
        assert_eq!(live.failure_threshold, Some(3));
        let get = live.http_get.as_ref().unwrap();
        assert_eq!(get.scheme.as_deref(), Some("HTTP"));
        assert_eq!(get.path.as_deref(), Some("/"));

        let ready = c.readiness_probe.as_ref().unwrap();
        assert_eq!(ready.timeout_seconds, Some(5));
        assert_eq!(ready.period_seconds, Some(10), "0 means unset");
        assert_eq!(ready.grpc.as_ref().unwrap().service.as_deref(), Some(""));

        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(
            pre_stop.http_get.as_ref().unwrap().scheme.as_deref(),
            Some("HTTP")
        );

        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(init.termination_message_policy.as_deref(), Some("File"));
    }

    #[test]
    fn ephemeral_containers_are_defaulted() {
        let mut spec = spec_with(vec![named_container("app", "nginx:1")]);
        spec.ephemeral_containers = Some(vec![EphemeralContainer {
            name: "debug".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }]);
        pod_spec(&mut spec);
        let debug = &spec.ephemeral_containers.as_ref().unwrap()[0];
        assert_eq!(debug.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            debug.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
    }

    #[test]
    fn explicit_pull_policy_is_kept() {
        let mut c = named_container("app", "nginx");
        c.image_pull_policy = Some("Never".into());
        let mut spec = spec_with(vec![c]);
        pod_spec(&mut spec);
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn volume_defaults() {
        let mut spec = spec_with(vec![named_container("app", "nginx:1")]);
        spec.volumes = Some(vec![
            Volume {
                name: "scratch".into(),
                ..Default::default()
            },
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "creds".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("creds".into()),
                    default_mode: Some(0o400),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "host".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/var/log".into(),
                    type_: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "info".into(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "labels".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "token".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        pod_spec(&mut spec);
        let v = spec.volumes.as_ref().unwrap();
        assert!(
            v[0].empty_dir.is_some(),
            "a volume without source is an emptyDir"
        );
        assert_eq!(v[1].config_map.as_ref().unwrap().default_mode, Some(420));
        assert_eq!(v[2].secret.as_ref().unwrap().default_mode, Some(0o400));
        assert!(v[2].empty_dir.is_none());
        assert_eq!(v[3].host_path.as_ref().unwrap().type_.as_deref(), Some(""));
        let downward = v[4].downward_api.as_ref().unwrap();
        assert_eq!(downward.default_mode, Some(420));
        let item_ref = downward.items.as_ref().unwrap()[0]
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(item_ref.api_version.as_deref(), Some("v1"));
        let projected = v[5].projected.as_ref().unwrap();
        assert_eq!(projected.default_mode, Some(420));
        let token = projected.sources.as_ref().unwrap()[0]
            .service_account_token
            .as_ref()
            .unwrap();
        assert_eq!(token.expiration_seconds, Some(3600));
    }

    #[test]
    fn pod_only_defaults_and_status() {
        let mut p = sample_pod();
        pod(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.enable_service_links, Some(true));
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        assert_eq!(spec.service_account.as_deref(), Some("default"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn pod_status_is_not_overwritten() {
        let mut p = sample_pod();
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            qos_class: Some("Burstable".into()),
            ..Default::default()
        });
        pod(&mut p);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
    }

    #[test]
    fn deprecated_service_account_is_mirrored_both_ways() {
        let mut p = sample_pod();
        p.spec.as_mut().unwrap().service_account = Some("builder".into());
        pod(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
        assert_eq!(spec.service_account.as_deref(), Some("builder"));

        let mut spec = spec_with(vec![named_container("app", "nginx:1")]);
        spec.service_account_name = Some("deployer".into());
        pod_spec(&mut spec);
        assert_eq!(spec.service_account.as_deref(), Some("deployer"));
    }

    #[test]
    fn requests_default_to_limits_per_resource_on_pods_only() {
        let c = with_resources(
            named_container("app", "nginx:1"),
            &[("cpu", "100m")],
            &[("cpu", "500m"), ("memory", "128Mi")],
        );
        let mut p = sample_pod();
        p.spec.as_mut().unwrap().containers = vec![c.clone()];
        p.spec.as_mut().unwrap().init_containers = Some(vec![with_resources(
            named_container("init", "busybox:1"),
            &[],
            &[("memory", "64Mi")],
        )]);
        pod(&mut p);
        let spec = p.spec.as_ref().unwrap();
        let requests = spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(
            requests,
            &quantities(&[("cpu", "100m"), ("memory", "128Mi")])
        );
        let init_requests = spec.init_containers.as_ref().unwrap()[0]
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(init_requests, &quantities(&[("memory", "64Mi")]));

        let mut tpl = spec_with(vec![with_resources(c, &[], &[("cpu", "1")])]);
        pod_spec(&mut tpl);
        assert!(tpl.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .requests
            .is_none());
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        let mut p = sample_pod();
        let spec = p.spec.as_mut().unwrap();
        spec.host_network = Some(true);
        spec.containers[0].ports = Some(vec![
            ContainerPort {
                container_port: 8080,
                ..Default::default()
            },
            ContainerPort {
                container_port: 9090,
                host_port: Some(19090),
                ..Default::default()
            },
        ]);
        pod(&mut p);
        let ports = p.spec.as_ref().unwrap().containers[0]
            .ports
            .clone()
            .unwrap();
        assert_eq!(ports[0].host_port, Some(8080));
        assert_eq!(ports[1].host_port, Some(19090));
    }

    #[test]
    fn qos_best_effort() {
        let spec = spec_with(vec![named_container("a", "x:1")]);
        assert_eq!(qos_class(&spec), "BestEffort");
        // Zero amounts and other resources do not count.
        let spec = spec_with(vec![with_resources(
            named_container("a", "x:1"),
            &[("cpu", "0"), ("ephemeral-storage", "1Gi")],
            &[],
        )]);
        assert_eq!(qos_class(&spec), "BestEffort");
    }

    #[test]
    fn qos_guaranteed() {
        let spec = spec_with(vec![
            with_resources(
                named_container("a", "x:1"),
                &[("cpu", "500m"), ("memory", "1Gi")],
                &[("cpu", "0.5"), ("memory", "1024Mi")],
            ),
            // Requests left out default to the limits.
            with_resources(
                named_container("b", "x:1"),
                &[],
                &[("cpu", "1"), ("memory", "64Mi")],
            ),
        ]);
        assert_eq!(qos_class(&spec), "Guaranteed");
    }

    #[test]
    fn qos_burstable() {
        // Requests below limits.
        let spec = spec_with(vec![with_resources(
            named_container("a", "x:1"),
            &[("cpu", "100m"), ("memory", "64Mi")],
            &[("cpu", "200m"), ("memory", "64Mi")],
        )]);
        assert_eq!(qos_class(&spec), "Burstable");
        // Only a CPU limit.
        let spec = spec_with(vec![with_resources(
            named_container("a", "x:1"),
            &[],
            &[("cpu", "1")],
        )]);
        assert_eq!(qos_class(&spec), "Burstable");
        // One guaranteed container beside one without resources.
        let spec = spec_with(vec![
            with_resources(
                named_container("a", "x:1"),
                &[],
                &[("cpu", "1"), ("memory", "1Gi")],
            ),
            named_container("b", "x:1"),
        ]);
        assert_eq!(qos_class(&spec), "Burstable");
        // Init containers count.
        let mut spec = spec_with(vec![with_resources(
            named_container("a", "x:1"),
            &[],
            &[("cpu", "1"), ("memory", "1Gi")],
        )]);
        spec.init_containers = Some(vec![with_resources(
            named_container("i", "x:1"),
            &[("memory", "10Mi")],
            &[],
        )]);
        assert_eq!(qos_class(&spec), "Burstable");
    }

    #[test]
    fn qos_pod_level_resources_decide() {
        let mut spec = spec_with(vec![named_container("a", "x:1")]);
        spec.resources = Some(ResourceRequirements {
            limits: Some(quantities(&[("cpu", "2"), ("memory", "2Gi")])),
            ..Default::default()
        });
        assert_eq!(qos_class(&spec), "Guaranteed");
    }

    #[test]
    fn qos_is_computed_on_pods() {
        let mut p = sample_pod();
        p.spec.as_mut().unwrap().containers = vec![with_resources(
            named_container("a", "x:1"),
            &[],
            &[("cpu", "1"), ("memory", "1Gi")],
        )];
        pod(&mut p);
        assert_eq!(
            p.status.as_ref().unwrap().qos_class.as_deref(),
            Some("Guaranteed")
        );
    }

    #[test]
    fn quantities_compare_by_value() {
        let parse = |s| Decimal::parse(s).unwrap();
        assert_eq!(parse("1Gi"), parse("1073741824"));
        assert_eq!(parse("1Gi"), parse("1024Mi"));
        assert_eq!(parse("0.5"), parse("500m"));
        assert_eq!(parse("1k"), parse("1e3"));
        assert_eq!(parse("1E3"), parse("1000"));
        assert_eq!(parse("2E"), parse("2e18"));
        assert_eq!(parse("+1.50"), parse("1500m"));
        assert_eq!(parse("-1").mantissa, -1);
        assert_eq!(parse("250m").add(parse("0.75")), parse("1"));
        assert_eq!(parse("1Mi").add(parse("1Mi")), parse("2Mi"));
        for bad in ["", "abc", "1.2.3", "1Zi", "1e", ".", "--1", "1 Gi"] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deployment_defaults() {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                template: template(spec_with(vec![named_container("app", "nginx")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        deployment(&mut d);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let strategy = spec.strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
        assert_eq!(
            rolling.max_unavailable,
            Some(IntOrString::String("25%".into()))
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            pod.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        assert_eq!(pod.enable_service_links, None);
    }

    #[test]
    fn recreate_deployments_get_no_rolling_update() {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(0),
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        deployment(&mut d);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(0));
        assert!(spec.strategy.as_ref().unwrap().rolling_update.is_none());
    }

    #[test]
    fn replica_set_and_replication_controller() {
        let mut rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                template: Some(template(spec_with(vec![named_container("a", "x:1")]))),
                ..Default::default()
            }),
            ..Default::default()
        };
        replica_set(&mut rs);
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));

        let mut rc = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                template: Some(template(spec_with(vec![named_container("a", "x:1")]))),
                ..Default::default()
            }),
            ..Default::default()
        };
        replication_controller(&mut rc);
        let spec = rc.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.selector, Some(labels(&[("app", "web")])));
        assert_eq!(rc.metadata.labels, Some(labels(&[("app", "web")])));

        let mut rc = ReplicationController {
            metadata: ObjectMeta {
                labels: Some(labels(&[("tier", "front")])),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                selector: Some(labels(&[("app", "web"), ("v", "2")])),
                template: Some(template(spec_with(vec![named_container("a", "x:1")]))),
                ..Default::default()
            }),
            ..Default::default()
        };
        replication_controller(&mut rc);
        assert_eq!(
            rc.spec.as_ref().unwrap().selector,
            Some(labels(&[("app", "web"), ("v", "2")]))
        );
        assert_eq!(rc.metadata.labels, Some(labels(&[("tier", "front")])));
    }

    #[test]
    fn daemon_set_defaults() {
        let mut ds = DaemonSet {
            spec: Some(DaemonSetSpec {
                template: template(spec_with(vec![named_container("a", "x:1")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        daemon_set(&mut ds);
        let spec = ds.spec.as_ref().unwrap();
        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(
            spec.template
                .spec
                .as_ref()
                .unwrap()
                .scheduler_name
                .as_deref(),
            Some("default-scheduler")
        );
    }

    #[test]
    fn stateful_set_defaults() {
        let mut sts = StatefulSet {
            spec: Some(StatefulSetSpec {
                template: template(spec_with(vec![named_container("a", "x:1")])),
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    spec: Some(PersistentVolumeClaimSpec::default()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        stateful_set(&mut sts);
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        assert_eq!(spec.revision_history_limit, Some(10));
        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(strategy.rolling_update.as_ref().unwrap().partition, Some(0));
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(
            claim.spec.as_ref().unwrap().volume_mode.as_deref(),
            Some("Filesystem")
        );
        assert_eq!(
            claim.status.as_ref().unwrap().phase.as_deref(),
            Some("Pending")
        );

        // OnDelete gets no rolling update block.
        let mut sts = StatefulSet {
            spec: Some(StatefulSetSpec {
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("OnDelete".into()),
                    rolling_update: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        stateful_set(&mut sts);
        let strategy = sts.spec.as_ref().unwrap().update_strategy.as_ref().unwrap();
        assert!(strategy.rolling_update.is_none());
    }

    fn sample_job() -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        ..spec_with(vec![named_container("pi", "perl:5.34")])
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn job_defaults() {
        let mut j = sample_job();
        job(&mut j);
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(spec.completions, Some(1));
        assert_eq!(spec.parallelism, Some(1));
        assert_eq!(spec.backoff_limit, Some(6));
        assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.manual_selector, Some(false));
        assert_eq!(
            spec.pod_replacement_policy.as_deref(),
            Some("TerminatingOrFailed")
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
    }

    #[test]
    fn job_parallelism_alone_leaves_completions_open() {
        let mut j = sample_job();
        j.spec.as_mut().unwrap().parallelism = Some(5);
        job(&mut j);
        assert_eq!(j.spec.as_ref().unwrap().completions, None);
        assert_eq!(j.spec.as_ref().unwrap().parallelism, Some(5));

        let mut j = sample_job();
        j.spec.as_mut().unwrap().completions = Some(4);
        job(&mut j);
        assert_eq!(j.spec.as_ref().unwrap().completions, Some(4));
        assert_eq!(j.spec.as_ref().unwrap().parallelism, Some(1));
    }

    #[test]
    fn job_failure_policy_defaults() {
        let mut j = sample_job();
        let spec = j.spec.as_mut().unwrap();
        spec.backoff_limit_per_index = Some(1);
        spec.pod_failure_policy = Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "Ignore".into(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: String::new(),
                }]),
                ..Default::default()
            }],
        });
        job(&mut j);
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(i32::MAX));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
        let pattern = &spec.pod_failure_policy.as_ref().unwrap().rules[0]
            .on_pod_conditions
            .as_ref()
            .unwrap()[0];
        assert_eq!(pattern.status, "True");
    }

    #[test]
    fn job_labels_come_from_the_template() {
        let mut j = sample_job();
        j.spec.as_mut().unwrap().template.metadata = Some(ObjectMeta {
            labels: Some(labels(&[("app", "pi")])),
            ..Default::default()
        });
        job(&mut j);
        assert_eq!(j.metadata.labels, Some(labels(&[("app", "pi")])));
    }

    #[test]
    fn job_selector_is_generated() {
        let mut j = sample_job();
        job(&mut j);
        job_selector_and_labels(&mut j, "uid-1");
        let spec = j.spec.as_ref().unwrap();
        let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone();
        let expected = labels(&[
            ("batch.kubernetes.io/controller-uid", "uid-1"),
            ("batch.kubernetes.io/job-name", "pi"),
            ("controller-uid", "uid-1"),
            ("job-name", "pi"),
        ]);
        assert_eq!(template_labels, Some(expected.clone()));
        assert_eq!(
            spec.selector.as_ref().unwrap().match_labels,
            Some(labels(&[("batch.kubernetes.io/controller-uid", "uid-1")]))
        );
        assert_eq!(j.metadata.labels, Some(expected));
    }

    #[test]
    fn job_selector_keeps_user_labels_and_manual_selectors() {
        let mut j = sample_job();
        j.metadata.labels = Some(labels(&[("team", "a")]));
        j.spec.as_mut().unwrap().template.metadata = Some(ObjectMeta {
            labels: Some(labels(&[("job-name", "custom")])),
            ..Default::default()
        });
        job(&mut j);
        job_selector_and_labels(&mut j, "uid-2");
        let spec = j.spec.as_ref().unwrap();
        let tl = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(tl.get("job-name").map(String::as_str), Some("custom"));
        assert_eq!(j.metadata.labels, Some(labels(&[("team", "a")])));

        let mut j = sample_job();
        j.spec.as_mut().unwrap().manual_selector = Some(true);
        job_selector_and_labels(&mut j, "uid-3");
        assert!(j.spec.as_ref().unwrap().selector.is_none());
        assert!(j.spec.as_ref().unwrap().template.metadata.is_none());
    }

    #[test]
    fn cron_job_defaults() {
        let mut cj = CronJob {
            spec: Some(CronJobSpec {
                schedule: "*/5 * * * *".into(),
                job_template: JobTemplateSpec {
                    metadata: None,
                    spec: sample_job().spec,
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        cron_job(&mut cj);
        let spec = cj.spec.as_ref().unwrap();
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.successful_jobs_history_limit, Some(3));
        assert_eq!(spec.failed_jobs_history_limit, Some(1));
        let job_spec = spec.job_template.spec.as_ref().unwrap();
        assert_eq!(
            job_spec.backoff_limit, None,
            "Job defaults apply to Jobs only"
        );
        let pod = job_spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(
            pod.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
    }

    fn svc(ty: Option<&str>, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: ty.map(Into::into),
                selector: Some(labels(&[("app", "web")])),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn port(n: i32) -> ServicePort {
        ServicePort {
            port: n,
            ..Default::default()
        }
    }

    #[test]
    fn cluster_ip_service_defaults() {
        let mut named = port(443);
        named.target_port = Some(IntOrString::String("https".into()));
        let mut zero = port(8080);
        zero.target_port = Some(IntOrString::Int(0));
        let mut s = svc(None, vec![port(80), named, zero]);
        service(&mut s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.session_affinity_config, None);
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
        assert_eq!(spec.allocate_load_balancer_node_ports, None);
        let ports = spec.ports.as_ref().unwrap();
        assert!(ports.iter().all(|p| p.protocol.as_deref() == Some("TCP")));
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(
            ports[1].target_port,
            Some(IntOrString::String("https".into()))
        );
        assert_eq!(ports[2].target_port, Some(IntOrString::Int(8080)));
    }

    #[test]
    fn node_port_and_load_balancer_services() {
        let mut s = svc(Some("NodePort"), vec![port(80)]);
        service(&mut s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.allocate_load_balancer_node_ports, None);

        let mut s = svc(Some("LoadBalancer"), vec![port(80)]);
        s.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![
                    LoadBalancerIngress {
                        ip: Some("192.0.2.10".into()),
                        ..Default::default()
                    },
                    LoadBalancerIngress {
                        hostname: Some("lb.example".into()),
                        ..Default::default()
                    },
                ]),
            }),
            ..Default::default()
        });
        service(&mut s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(spec.allocate_load_balancer_node_ports, Some(true));
        let ingress = s.status.as_ref().unwrap().load_balancer.as_ref().unwrap();
        let ingress = ingress.ingress.as_ref().unwrap();
        assert_eq!(ingress[0].ip_mode.as_deref(), Some("VIP"));
        assert_eq!(ingress[1].ip_mode, None);
    }

    #[test]
    fn cluster_ip_service_with_external_ips_gets_external_policy() {
        let mut s = svc(None, vec![port(80)]);
        s.spec.as_mut().unwrap().external_ips = Some(vec!["192.0.2.1".into()]);
        service(&mut s);
        assert_eq!(
            s.spec.as_ref().unwrap().external_traffic_policy.as_deref(),
            Some("Cluster")
        );
    }

    #[test]
    fn external_name_and_headless_services() {
        let mut s = svc(Some("ExternalName"), vec![]);
        s.spec.as_mut().unwrap().external_name = Some("db.example".into());
        service(&mut s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.ip_family_policy, None);
        assert_eq!(spec.ip_families, None);
        assert_eq!(spec.internal_traffic_policy, None);
        assert_eq!(spec.external_traffic_policy, None);

        let mut s = svc(None, vec![port(80)]);
        let spec = s.spec.as_mut().unwrap();
        spec.cluster_ip = Some("None".into());
        spec.selector = None;
        service(&mut s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
        assert_eq!(
            spec.ip_families,
            Some(vec!["IPv4".to_string(), "IPv6".to_string()])
        );
    }

    #[test]
    fn client_ip_affinity_gets_a_timeout() {
        let mut s = svc(None, vec![port(80)]);
        s.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
        service(&mut s);
        let config = s.spec.as_ref().unwrap().session_affinity_config.clone();
        assert_eq!(
            config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds),
            Some(10800)
        );
    }

    #[test]
    fn secret_pvc_pv_defaults() {
        let mut s = Secret::default();
        secret(&mut s);
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let mut s = Secret {
            type_: Some("kubernetes.io/tls".into()),
            ..Default::default()
        };
        secret(&mut s);
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));

        let mut pvc = PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec::default()),
            ..Default::default()
        };
        persistent_volume_claim(&mut pvc);
        assert_eq!(
            pvc.spec.as_ref().unwrap().volume_mode.as_deref(),
            Some("Filesystem")
        );
        assert_eq!(
            pvc.status.as_ref().unwrap().phase.as_deref(),
            Some("Pending")
        );

        let mut pv = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                host_path: Some(HostPathVolumeSource {
                    path: "/data".into(),
                    type_: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        persistent_volume(&mut pv);
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        assert_eq!(spec.host_path.as_ref().unwrap().type_.as_deref(), Some(""));
        assert_eq!(
            pv.status.as_ref().unwrap().phase.as_deref(),
            Some("Pending")
        );
    }

    #[test]
    fn namespace_defaults() {
        let mut ns = Namespace {
            metadata: ObjectMeta {
                name: Some("team-a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespace(&mut ns);
        assert_eq!(
            ns.spec.as_ref().unwrap().finalizers,
            Some(vec!["kubernetes".to_string()])
        );
        assert_eq!(ns.status.as_ref().unwrap().phase.as_deref(), Some("Active"));
        assert_eq!(
            ns.metadata.labels,
            Some(labels(&[("kubernetes.io/metadata.name", "team-a")]))
        );

        // A finalized namespace keeps its empty list and its Terminating phase.
        ns.spec.as_mut().unwrap().finalizers = Some(vec![]);
        ns.status.as_mut().unwrap().phase = Some("Terminating".into());
        namespace(&mut ns);
        assert_eq!(ns.spec.as_ref().unwrap().finalizers, Some(vec![]));
        assert_eq!(
            ns.status.as_ref().unwrap().phase.as_deref(),
            Some("Terminating")
        );
    }

    #[test]
    fn node_allocatable_defaults_to_capacity() {
        let capacity = quantities(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]);
        let mut n = Node {
            status: Some(NodeStatus {
                capacity: Some(capacity.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        node(&mut n);
        assert_eq!(n.status.as_ref().unwrap().allocatable, Some(capacity));

        let mut n = Node::default();
        node(&mut n);
        assert_eq!(n, Node::default());
    }

    #[test]
    fn hpa_defaults() {
        let target = CrossVersionObjectReference {
            api_version: Some("apps/v1".into()),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        let mut hpa = HorizontalPodAutoscaler {
            spec: Some(HorizontalPodAutoscalerSpec {
                max_replicas: 5,
                scale_target_ref: target.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        horizontal_pod_autoscaler(&mut hpa);
        let spec = hpa.spec.as_ref().unwrap();
        assert_eq!(spec.min_replicas, Some(1));
        let metrics = spec.metrics.as_ref().unwrap();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].type_, "Resource");
        let resource = metrics[0].resource.as_ref().unwrap();
        assert_eq!(resource.name, "cpu");
        assert_eq!(resource.target.type_, "Utilization");
        assert_eq!(resource.target.average_utilization, Some(80));
        assert!(spec.behavior.is_none());

        let mut hpa = HorizontalPodAutoscaler {
            spec: Some(HorizontalPodAutoscalerSpec {
                max_replicas: 5,
                scale_target_ref: target,
                behavior: Some(HorizontalPodAutoscalerBehavior {
                    scale_down: Some(HPAScalingRules {
                        stabilization_window_seconds: Some(60),
                        ..Default::default()
                    }),
                    scale_up: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        horizontal_pod_autoscaler(&mut hpa);
        let behavior = hpa.spec.as_ref().unwrap().behavior.clone().unwrap();
        let up = behavior.scale_up.unwrap();
        assert_eq!(up.stabilization_window_seconds, Some(0));
        assert_eq!(up.select_policy.as_deref(), Some("Max"));
        assert_eq!(
            up.policies,
            Some(vec![
                scaling_policy("Pods", 4, 15),
                scaling_policy("Percent", 100, 15)
            ])
        );
        let down = behavior.scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(60));
        assert_eq!(
            down.policies,
            Some(vec![scaling_policy("Percent", 100, 15)])
        );
    }

    #[test]
    fn defaulting_twice_changes_nothing() {
        let mut p = sample_pod();
        pod(&mut p);
        let once = p.clone();
        pod(&mut p);
        assert_eq!(p, once);

        let mut s = svc(Some("LoadBalancer"), vec![port(80)]);
        service(&mut s);
        let once = s.clone();
        service(&mut s);
        assert_eq!(s, once);
    }

    #[test]
    fn missing_specs_are_left_alone() {
        let mut d = Deployment::default();
        deployment(&mut d);
        assert!(d.spec.is_none());
        let mut s = Service::default();
        service(&mut s);
        assert!(s.spec.is_none());
        let mut j = Job::default();
        job(&mut j);
        job_selector_and_labels(&mut j, "u");
        assert!(j.spec.is_none());
    }

    #[test]
    fn pod_template_object_is_defaulted() {
        let mut t = PodTemplate {
            template: Some(template(spec_with(vec![named_container("a", "x")]))),
            ..Default::default()
        };
        pod_template(&mut t);
        let spec = t.template.unwrap().spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    }
}

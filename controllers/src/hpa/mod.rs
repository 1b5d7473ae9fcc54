//! HorizontalPodAutoscaler (`autoscaling/v2`): scales a Deployment, ReplicaSet,
//! StatefulSet or ReplicationController (anything with a `scale` subresource) on the CPU and
//! memory use of its pods against their requests (`Utilization`) or per pod
//! (`AverageValue`), for `Resource` and `ContainerResource` metrics.
//!
//! Each autoscaler is evaluated every `hpa_sync_period` (15 s) and when the clock jumps:
//! 1. the target's scale subresource gives `spec.replicas` and the pod selector;
//! 2. the pods matching it (informer cache) give requests and readiness, the
//!    [`MetricsSource`] (`metrics.k8s.io/v1beta1` in the cluster) their use;
//! 3. [`decision::propose`] turns each metric into a replica count and [`decision::decide`]
//!    takes the largest through the stabilisation windows, the scaling policies and
//!    min/max (see `decision` for the rules and for where skiff differs from Kubernetes);
//! 4. a new size is written through the scale subresource with a `SuccessfulRescale` event;
//!    status (`currentReplicas`, `desiredReplicas`, `currentMetrics`, `lastScaleTime`,
//!    conditions `AbleToScale`, `ScalingActive`, `ScalingLimited`) through the status
//!    subresource.
//!
//! Recommendations and rescale events are remembered in memory per autoscaler, as in
//! Kubernetes (a new leader starts afresh). Metrics of type `Pods`, `Object` and `External`
//! need a custom or external metrics API, which skiff does not serve: they report
//! `ScalingActive=False`.

pub mod decision;
pub mod metrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::ResourceExt;
use serde_json::json;
use skiff_api::labels::Selector;
use skiff_api::quantity::Quantity;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::{is_pod_ready, is_terminating, labels, phase};
use decision::{
    Cond, Decision, History, Inputs, MetricError, MetricOutcome, PodSample, PodState, Proposal,
    Target,
};
pub use metrics::{MetricsSource, PodUsage, ResourceMetricsApi, Usage};

/// Autoscalers not evaluated for this long are forgotten (they were deleted).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The HPA loop reading the cluster's resource metrics API.
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    start_with(ctx, Arc::new(ResourceMetricsApi::new(ctx.client.clone())))
}

/// The HPA loop reading metrics from `source`.
pub fn start_with(ctx: &Arc<Context>, source: Arc<dyn MetricsSource>) -> BoxFuture<'static, ()> {
    let hpas = ctx.informers.horizontal_pod_autoscalers.subscribe();
    let reader = ctx.informers.horizontal_pod_autoscalers.reader();
    let _ = ctx.informers.pods.reader();
    let state = Arc::new(Autoscaler {
        ctx: ctx.clone(),
        source,
        recorder: ctx.recorder("horizontal-pod-autoscaler"),
        memory: Mutex::new(HashMap::new()),
    });
    Controller::for_shared_stream(hpas, reader)
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(ctx.clock.ticks())
        .run(
            reconcile,
            |hpa, error, state: Arc<Autoscaler>| error_policy(hpa, error, state.ctx.clone()),
            state,
        )
        .for_each(log_outcome("horizontal-pod-autoscaler"))
        .boxed()
}

struct Autoscaler {
    ctx: Arc<Context>,
    source: Arc<dyn MetricsSource>,
    recorder: Recorder,
    memory: Mutex<HashMap<String, Memory>>,
}

/// What is remembered of one autoscaler.
#[derive(Default, Clone)]
struct Memory {
    history: History,
    last_evaluation: Option<(Timestamp, Option<i64>)>,
}

impl Autoscaler {
    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memory>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// The API of the scale target (`apps/v1` `Deployment`, …), if it has a scale subresource.
pub fn scale_target(api_version: &str, kind: &str) -> Option<ApiResource> {
    let r = skiff_api::resources::by_kind(api_version, kind)?;
    r.has_subresource("scale").then(|| ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    })
}

/// How a metric is named in events and conditions.
pub fn metric_name(resource: &str, container: bool, target: &MetricTarget) -> String {
    let what = if container {
        "container resource"
    } else {
        "resource"
    };
    if target.type_ == "Utilization" {
        format!("{resource} {what} utilization (percentage of request)")
    } else {
        format!("{resource} {what}")
    }
}

fn target_of(target: &MetricTarget) -> std::result::Result<Target, String> {
    match target.type_.as_str() {
        "Utilization" => target
            .average_utilization
            .filter(|u| *u > 0)
            .map(Target::Utilization)
            .ok_or_else(|| "target.averageUtilization must be a positive percentage".into()),
        "AverageValue" => {
            let q = target
                .average_value
                .as_ref()
                .ok_or("target.averageValue is required for type AverageValue")?;
            let q = Quantity::from_k8s(q)
                .map_err(|e| format!("target.averageValue {:?}: {}", q.0, e.reason()))?;
            Ok(Target::AverageValue(q.nanos()))
        }
        other => Err(format!(
            "target.type {other:?} is not supported for resource metrics (use Utilization or AverageValue)"
        )),
    }
}

/// How `pod` counts for a metric on `resource`.
pub fn pod_state(pod: &Pod, resource: &str) -> PodState {
    if is_terminating(&pod.metadata) || matches!(phase(pod), "Failed" | "Succeeded") {
        PodState::Ignored
    } else if phase(pod) == "Pending" || (resource == "cpu" && !is_pod_ready(pod)) {
        PodState::Unready
    } else {
        PodState::Ready
    }
}

/// The pod's request of `resource` (all containers, or one), in nano-units.
pub fn pod_request(
    pod: &Pod,
    resource: &str,
    container: Option<&str>,
) -> std::result::Result<i128, String> {
    let pod_name = pod.name_any();
    let containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
    let mut total: i128 = 0;
    let mut found = false;
    for c in containers
        .iter()
        .filter(|c| container.is_none_or(|n| n == c.name))
    {
        found = true;
        let request = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .ok_or_else(|| {
                format!(
                    "missing request for {resource} in container {} of Pod {pod_name}",
                    c.name
                )
            })?;
        let q = Quantity::from_k8s(request).map_err(|e| {
            format!(
                "request for {resource} in container {} of Pod {pod_name}: {}",
                c.name,
                e.reason()
            )
        })?;
        total += q.nanos();
    }
    if !found {
        return Err(match container {
            Some(n) => format!("container {n} not present in Pod {pod_name}"),
            None => format!("Pod {pod_name} has no containers"),
        });
    }
    Ok(total)
}

/// The samples of `pods` for `resource` (a pod's total or one container's).
pub fn samples(
    pods: &[Arc<Pod>],
    usage: &HashMap<String, PodUsage>,
    resource: &str,
    container: Option<&str>,
) -> Vec<PodSample> {
    pods.iter()
        .map(|pod| {
            let name = pod.name_any();
            PodSample {
                state: pod_state(pod, resource),
                request: pod_request(pod, resource, container),
                usage: usage
                    .get(&name)
                    .and_then(|u| u.of(resource, container))
                    .map(|q| q.nanos()),
                name,
            }
        })
        .collect()
}

/// The status entry of a metric with a proposal.
fn metric_status(resource: &str, container: Option<&str>, proposal: &Proposal) -> MetricStatus {
    // CPU to the millicore, memory to the byte, as Kubernetes reports them.
    let unit: i128 = if resource == "memory" {
        1_000_000_000
    } else {
        1_000_000
    };
    let current = MetricValueStatus {
        average_utilization: proposal.utilization,
        average_value: Some(Quantity::from_nanos(proposal.average / unit * unit).to_k8s()),
        value: None,
    };
    match container {
        Some(c) => MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(ContainerResourceMetricStatus {
                container: c.to_string(),
                name: resource.to_string(),
                current,
            }),
            ..Default::default()
        },
        None => MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource.to_string(),
                current,
            }),
            ..Default::default()
        },
    }
}

/// Evaluates every metric of `specs` for `pods`; usage is fetched (once) only if needed.
async fn evaluate_metrics(
    source: &dyn MetricsSource,
    namespace: &str,
    selector: &Selector,
    specs: &[MetricSpec],
    pods: &[Arc<Pod>],
    current: i32,
    tolerance: decision::Tolerance,
) -> (Vec<MetricOutcome>, Vec<MetricStatus>) {
    let mut usage: Option<std::result::Result<HashMap<String, PodUsage>, String>> = None;
    let mut outcomes = Vec::new();
    let mut statuses = Vec::new();
    for spec in specs {
        let (resource, container, target) = match spec.type_.as_str() {
            "Resource" => match &spec.resource {
                Some(r) => (r.name.clone(), None, &r.target),
                None => {
                    outcomes.push(MetricOutcome {
                        name: "Resource".into(),
                        result: Err(MetricError::new(
                            "InvalidMetricSourceType",
                            "a metric of type Resource has no resource field",
                        )),
                    });
                    continue;
                }
            },
            "ContainerResource" => match &spec.container_resource {
                Some(r) => (r.name.clone(), Some(r.container.clone()), &r.target),
                None => {
                    outcomes.push(MetricOutcome {
                        name: "ContainerResource".into(),
                        result: Err(MetricError::new(
                            "InvalidMetricSourceType",
                            "a metric of type ContainerResource has no containerResource field",
                        )),
                    });
                    continue;
                }
            },
            kind @ ("Pods" | "Object" | "External") => {
                let reason = match kind {
                    "Pods" => "FailedGetPodsMetric",
                    "Object" => "FailedGetObjectMetric",
                    _ => "FailedGetExternalMetric",
                };
                let api = if kind == "External" {
                    "external.metrics.k8s.io"
                } else {
                    "custom.metrics.k8s.io"
                };
                outcomes.push(MetricOutcome {
                    name: format!("{kind} metric"),
                    result: Err(MetricError::new(
                        reason,
                        format!(
                            "the HPA was unable to compute the replica count: metrics of type {kind} need the {api} API, which skiff does not serve"
                        ),
                    )),
                });
                continue;
            }
            other => {
                outcomes.push(MetricOutcome {
                    name: other.to_string(),
                    result: Err(MetricError::new(
                        "InvalidMetricSourceType",
                        format!("unknown metric source type {other:?}"),
                    )),
                });
                continue;
            }
        };
        let name = metric_name(&resource, container.is_some(), target);
        let failed = |message: String| {
            MetricError {
            reason: if container.is_some() {
                "FailedGetContainerResourceMetric"
            } else {
                "FailedGetResourceMetric"
            },
            message: format!(
                "the HPA was unable to compute the replica count: failed to get {resource} utilization: {message}"
            ),
        }
        };
        let target = match target_of(target) {
            Ok(t) => t,
            Err(e) => {
                outcomes.push(MetricOutcome {
                    name,
                    result: Err(failed(e)),
                });
                continue;
            }
        };
        if usage.is_none() {
            usage = Some(
                source
                    .pod_usage(namespace, selector)
                    .await
                    .map(|list| list.into_iter().map(|u| (u.name.clone(), u)).collect()),
            );
        }
        let result = match usage.as_ref() {
            Some(Ok(by_pod)) => {
                if !matches!(resource.as_str(), "cpu" | "memory") {
                    Err(failed(format!(
                        "no metrics returned from resource metrics API for resource {resource}"
                    )))
                } else {
                    let samples = samples(pods, by_pod, &resource, container.as_deref());
                    decision::propose(target, current, &samples, tolerance).map_err(failed)
                }
            }
            Some(Err(e)) => Err(failed(format!(
                "unable to get metrics for resource {resource}: {e}"
            ))),
            None => Err(failed("no metrics".into())),
        };
        if let Ok(p) = &result {
            statuses.push(metric_status(&resource, container.as_deref(), p));
        }
        outcomes.push(MetricOutcome { name, result });
    }
    (outcomes, statuses)
}

/// The conditions after this evaluation: the ones set now (keeping their transition time
/// when the status did not change) and the others as they were.
pub fn merge_conditions(
    old: &[HorizontalPodAutoscalerCondition],
    set: &[(&str, &Cond)],
    now: Timestamp,
) -> Vec<HorizontalPodAutoscalerCondition> {
    let mut out: Vec<HorizontalPodAutoscalerCondition> = Vec::new();
    for kind in ["AbleToScale", "ScalingActive", "ScalingLimited"] {
        let previous = old.iter().find(|c| c.type_ == kind);
        match set.iter().find(|(k, _)| *k == kind) {
            Some((_, c)) => {
                let status = if c.status { "True" } else { "False" };
                let since = match previous {
                    Some(p) if p.status == status => p.last_transition_time.clone(),
                    _ => Some(Time(now)),
                };
                out.push(HorizontalPodAutoscalerCondition {
                    type_: kind.to_string(),
                    status: status.to_string(),
                    reason: Some(c.reason.to_string()),
                    message: Some(c.message.clone()),
                    last_transition_time: since,
                });
            }
            None => out.extend(previous.cloned()),
        }
    }
    out.extend(
        old.iter()
            .filter(|c| {
                !["AbleToScale", "ScalingActive", "ScalingLimited"].contains(&c.type_.as_str())
            })
            .cloned(),
    );
    out
}

fn cond(status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond {
        status,
        reason,
        message: message.into(),
    }
}

/// What an evaluation found, for the status.
struct Outcome {
    current: i32,
    desired: i32,
    metrics: Option<Vec<MetricStatus>>,
    scaled_at: Option<Timestamp>,
    conditions: Vec<(&'static str, Cond)>,
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, st: Arc<Autoscaler>) -> Result<Action> {
    let ctx = &st.ctx;
    let now = ctx.clock.now();
    let key = format!(
        "{}/{}",
        object_key(hpa.as_ref()),
        hpa.uid().unwrap_or_default()
    );
    let period = ctx.config.hpa_sync_period;
    if is_terminating(&hpa.metadata) {
        st.memory().remove(&key);
        return Ok(Action::await_change());
    }
    // At most one evaluation per period unless the spec changed (status writes and other
    // updates of the object come back here).
    let generation = hpa.metadata.generation;
    let memory = {
        let mut all = st.memory();
        all.retain(|_, m| {
            m.last_evaluation
                .is_none_or(|(at, _)| plus(at, FORGET_AFTER) > now)
        });
        all.get(&key).cloned().unwrap_or_default()
    };
    if let Some((at, evaluated_generation)) = memory.last_evaluation {
        let due = plus(at, period);
        if evaluated_generation == generation && now < due {
            let wait = Duration::try_from(now.duration_until(due)).unwrap_or(period);
            return Ok(Action::requeue(wait));
        }
    }
    let mut history = memory.history;
    let outcome = evaluate(&st, &hpa, now, &mut history).await?;
    st.memory().insert(
        key,
        Memory {
            history,
            last_evaluation: Some((now, generation)),
        },
    );
    write_status(&st, &hpa, outcome, now).await?;
    ctx.succeeded(&object_key(hpa.as_ref()));
    Ok(Action::requeue(period))
}

async fn evaluate(
    st: &Autoscaler,
    hpa: &HorizontalPodAutoscaler,
    now: Timestamp,
    history: &mut History,
) -> Result<Outcome> {
    let ctx = &st.ctx;
    let ns = hpa.namespace().unwrap_or_default();
    let what = format!("HorizontalPodAutoscaler {ns}/{}", hpa.name_any());
    let spec = hpa
        .spec
        .as_ref()
        .ok_or_else(|| Error::invalid(&what, "spec is missing"))?;
    let previous = hpa.status.as_ref();
    let mut out = Outcome {
        current: previous.and_then(|s| s.current_replicas).unwrap_or(0),
        desired: previous.map(|s| s.desired_replicas).unwrap_or(0),
        metrics: None,
        scaled_at: None,
        conditions: Vec::new(),
    };
    let target_ref = &spec.scale_target_ref;
    let api_version = target_ref.api_version.as_deref().unwrap_or("");
    let Some(resource) = scale_target(api_version, &target_ref.kind) else {
        let message = format!(
            "the HPA controller was unable to get the target's current scale: spec.scaleTargetRef: {api_version} {} has no scale subresource",
            target_ref.kind
        );
        st.recorder
            .publish(hpa, EventType::Warning, "FailedGetScale", &message)
            .await;
        out.conditions
            .push(("AbleToScale", cond(false, "FailedGetScale", message)));
        return Ok(out);
    };
    let scales: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &resource);
    let scale = match scales.get_scale(&target_ref.name).await {
        Ok(s) => s,
        Err(e) => {
            let message = format!(
                "the HPA controller was unable to get the target's current scale: {} {}: {e}",
                target_ref.kind, target_ref.name
            );
            st.recorder
                .publish(hpa, EventType::Warning, "FailedGetScale", &message)
                .await;
            out.conditions
                .push(("AbleToScale", cond(false, "FailedGetScale", message)));
            return Ok(out);
        }
    };
    out.conditions.push((
        "AbleToScale",
        cond(
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        ),
    ));
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    out.current = current;
    out.desired = current;
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;

    let behavior = match decision::resolve_behavior(
        spec.behavior.as_ref(),
        ctx.config.hpa_upscale_stabilization,
        ctx.config.hpa_downscale_stabilization,
    ) {
        Ok(b) => b,
        Err(e) => {
            out.conditions
                .push(("ScalingActive", cond(false, "InvalidBehavior", e)));
            return Ok(out);
        }
    };
    let selector_text = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let selector = match Selector::parse(&selector_text) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            out.conditions.push((
                "ScalingActive",
                cond(
                    false,
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector",
                ),
            ));
            return Ok(out);
        }
        Err(e) => {
            out.conditions.push((
                "ScalingActive",
                cond(
                    false,
                    "InvalidSelector",
                    format!("couldn't convert selector into a corresponding internal selector object: {e}"),
                ),
            ));
            return Ok(out);
        }
    };

    let in_range = current != 0 && current >= min && current <= max;
    let (outcomes, statuses) = if in_range {
        let pods: Vec<Arc<Pod>> = ctx.informers.pods.reader().state_filter(|p: &Pod| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && selector.matches(labels(&p.metadata))
        });
        let specs = spec.metrics.clone().unwrap_or_default();
        evaluate_metrics(
            st.source.as_ref(),
            &ns,
            &selector,
            &specs,
            &pods,
            current,
            behavior.tolerance(),
        )
        .await
    } else {
        (Vec::new(), Vec::new())
    };
    if in_range {
        out.metrics = Some(statuses);
    }
    let d: Decision = decision::decide(&Inputs {
        now,
        current,
        min,
        max,
        metrics: &outcomes,
        behavior: &behavior,
        history,
    });
    if let Some(r) = d.recommendation {
        history.record(r, now, &behavior);
    }
    if !d.scaling_active.status && in_range {
        st.recorder
            .publish(
                hpa,
                EventType::Warning,
                d.scaling_active.reason,
                &d.scaling_active.message,
            )
            .await;
    }
    if let Some(c) = d.able_to_scale.clone() {
        out.conditions.retain(|(k, _)| *k != "AbleToScale");
        out.conditions.push(("AbleToScale", c));
    }
    out.conditions
        .push(("ScalingActive", d.scaling_active.clone()));
    if let Some(c) = d.scaling_limited.clone() {
        out.conditions.push(("ScalingLimited", c));
    }
    if d.desired != current {
        let reason = d.reason.clone().unwrap_or_default();
        let patch = json!({"spec": {"replicas": d.desired}});
        match scales
            .patch_scale(
                &target_ref.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(hpa = %what, from = current, to = d.desired, %reason, "rescaled");
                st.recorder
                    .publish(
                        hpa,
                        EventType::Normal,
                        "SuccessfulRescale",
                        &format!("New size: {}; reason: {reason}", d.desired),
                    )
                    .await;
                history.record_scale(current, d.desired, now, &behavior);
                out.desired = d.desired;
                out.scaled_at = Some(now);
                out.conditions.retain(|(k, _)| *k != "AbleToScale");
                out.conditions.push((
                    "AbleToScale",
                    cond(
                        true,
                        "SucceededRescale",
                        format!(
                            "the HPA controller was able to update the target scale to {}",
                            d.desired
                        ),
                    ),
                ));
            }
            Err(e) => {
                st.recorder
                    .publish(
                        hpa,
                        EventType::Warning,
                        "FailedRescale",
                        &format!("New size: {}; reason: {reason}; error: {e}", d.desired),
                    )
                    .await;
                out.conditions.retain(|(k, _)| *k != "AbleToScale");
                out.conditions.push((
                    "AbleToScale",
                    cond(
                        false,
                        "FailedUpdateScale",
                        format!("the HPA controller was unable to update the target scale: {e}"),
                    ),
                ));
            }
        }
    }
    Ok(out)
}

async fn write_status(
    st: &Autoscaler,
    hpa: &HorizontalPodAutoscaler,
    outcome: Outcome,
    now: Timestamp,
) -> Result<()> {
    let old = hpa.status.clone().unwrap_or_default();
    let set: Vec<(&str, &Cond)> = outcome.conditions.iter().map(|(k, c)| (*k, c)).collect();
    let status = HorizontalPodAutoscalerStatus {
        observed_generation: hpa.metadata.generation,
        last_scale_time: outcome
            .scaled_at
            .map(Time)
            .or_else(|| old.last_scale_time.clone()),
        current_replicas: Some(outcome.current),
        desired_replicas: outcome.desired,
        current_metrics: match outcome.metrics {
            Some(m) if m.is_empty() => None,
            Some(m) => Some(m),
            None => old.current_metrics.clone(),
        },
        conditions: Some(merge_conditions(
            old.conditions.as_deref().unwrap_or(&[]),
            &set,
            now,
        )),
    };
    if status == old {
        return Ok(());
    }
    let ns = hpa.namespace().unwrap_or_default();
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(st.ctx.client.clone(), &ns);
    api.patch_status(
        &hpa.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(|e| {
        Error::api(
            "update status of",
            format!("HorizontalPodAutoscaler {ns}/{}", hpa.name_any()),
            e,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(name: &str, cpu: Option<&str>, ready: bool, phase: &str) -> Arc<Pod> {
        let mut resources = json!({});
        if let Some(cpu) = cpu {
            resources = json!({"requests": {"cpu": cpu, "memory": "64Mi"}});
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [
                    {"name": "app", "resources": resources},
                    {"name": "side", "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}}
                ]},
                "status": {"phase": phase, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}
                ]}
            }))
            .unwrap(),
        )
    }

    fn usage(name: &str, app_cpu: &str, side_cpu: &str) -> PodUsage {
        PodUsage {
            name: name.into(),
            timestamp: None,
            containers: BTreeMap::from([
                (
                    "app".to_string(),
                    Usage {
                        cpu: Quantity::parse(app_cpu).unwrap(),
                        memory: Quantity::parse("32Mi").unwrap(),
                    },
                ),
                (
                    "side".to_string(),
                    Usage {
                        cpu: Quantity::parse(side_cpu).unwrap(),
                        memory: Quantity::parse("8Mi").unwrap(),
                    },
                ),
            ]),
        }
    }

    #[test]
    fn scale_targets_are_the_kinds_with_a_scale_subresource() {
        assert_eq!(
            scale_target("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(
            scale_target("apps/v1", "StatefulSet").unwrap().plural,
            "statefulsets"
        );
        assert_eq!(
            scale_target("v1", "ReplicationController").unwrap().plural,
            "replicationcontrollers"
        );
        assert!(scale_target("apps/v1", "DaemonSet").is_none());
        assert!(scale_target("apps/v1", "Nope").is_none());
    }

    #[test]
    fn samples_sum_containers_and_classify_pods() {
        let pods = vec![
            pod("a", Some("150m"), true, "Running"),
            pod("b", Some("150m"), false, "Running"),
            pod("c", Some("150m"), true, "Pending"),
            pod("d", None, true, "Running"),
            pod("e", Some("150m"), true, "Succeeded"),
        ];
        let by_pod: HashMap<String, PodUsage> = [usage("a", "100m", "20m"), usage("b", "1", "0")]
            .into_iter()
            .map(|u| (u.name.clone(), u))
            .collect();
        let s = samples(&pods, &by_pod, "cpu", None);
        assert_eq!(s[0].state, PodState::Ready);
        assert_eq!(s[0].request, Ok(200_000_000));
        assert_eq!(s[0].usage, Some(120_000_000));
        assert_eq!(s[1].state, PodState::Unready);
        assert_eq!(s[2].state, PodState::Unready);
        assert_eq!(s[2].usage, None);
        assert_eq!(
            s[3].request,
            Err("missing request for cpu in container app of Pod d".into())
        );
        assert_eq!(s[4].state, PodState::Ignored);
        // Memory does not care about readiness; one container alone.
        let s = samples(&pods, &by_pod, "memory", Some("side"));
        assert_eq!(s[1].state, PodState::Ready);
        assert_eq!(s[0].request, Ok(16 * 1024 * 1024 * 1_000_000_000));
        assert_eq!(s[0].usage, Some(8 * 1024 * 1024 * 1_000_000_000));
    }

    #[test]
    fn metric_names_and_targets() {
        let util: MetricTarget =
            serde_json::from_value(json!({"type": "Utilization", "averageUtilization": 50}))
                .unwrap();
        assert_eq!(
            metric_name("cpu", false, &util),
            "cpu resource utilization (percentage of request)"
        );
        assert_eq!(target_of(&util), Ok(Target::Utilization(50)));
        let avg: MetricTarget =
            serde_json::from_value(json!({"type": "AverageValue", "averageValue": "200Mi"}))
                .unwrap();
        assert_eq!(
            metric_name("memory", true, &avg),
            "memory container resource"
        );
        assert_eq!(
            target_of(&avg),
            Ok(Target::AverageValue(200 * 1024 * 1024 * 1_000_000_000))
        );
        let bad: MetricTarget =
            serde_json::from_value(json!({"type": "Value", "value": "1"})).unwrap();
        assert!(target_of(&bad).is_err());
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let able = cond(true, "ReadyForNewScale", "m");
        let first = merge_conditions(&[], &[("AbleToScale", &able)], t0);
        assert_eq!(first.len(), 1);
        let limited = cond(false, "DesiredWithinRange", "m");
        let again = merge_conditions(
            &first,
            &[
                ("AbleToScale", &cond(true, "SucceededRescale", "x")),
                ("ScalingLimited", &limited),
            ],
            t1,
        );
        assert_eq!(again[0].last_transition_time, Some(Time(t0)));
        assert_eq!(again[0].reason.as_deref(), Some("SucceededRescale"));
        assert_eq!(again[1].type_, "ScalingLimited");
        assert_eq!(again[1].last_transition_time, Some(Time(t1)));
        let flipped = merge_conditions(
            &again,
            &[("AbleToScale", &cond(false, "FailedGetScale", "y"))],
            t1,
        );
        assert_eq!(flipped[0].status, "False");
        assert_eq!(flipped[0].last_transition_time, Some(Time(t1)));
        assert_eq!(flipped.len(), 2, "ScalingLimited kept");
    }

    #[test]
    fn status_values_are_rounded_like_kubernetes() {
        let p = Proposal {
            replicas: 1,
            utilization: Some(80),
            average: 123_456_789,
        };
        let s = metric_status("cpu", None, &p);
        let current = &s.resource.as_ref().unwrap().current;
        assert_eq!(current.average_value.as_ref().unwrap().0, "123m");
        assert_eq!(current.average_utilization, Some(80));
        let s = metric_status(
            "memory",
            Some("app"),
            &Proposal {
                average: 1_048_576_500_000_000,
                ..p
            },
        );
        assert_eq!(s.type_, "ContainerResource");
        let current = &s.container_resource.as_ref().unwrap().current;
        assert_eq!(current.average_value.as_ref().unwrap().0, "1Mi");
    }
}

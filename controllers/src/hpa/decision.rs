//! The autoscaler's arithmetic, as pure functions: per-metric replica proposals from pod
//! samples (Kubernetes' replica calculator), then the normalisation of the largest proposal
//! by stabilisation windows, scaling policies and min/max (its `normalizeDesiredReplicas-
//! WithBehaviors`).
//!
//! Differences from Kubernetes, on purpose:
//! - CPU readiness is plain: a pod whose `Ready` condition is not `True` counts as unready
//!   (Kubernetes also looks at a 5-minute CPU initialisation period and the metric's window).
//! - The scale-up stabilisation window defaults to the controller's setting (3 minutes in
//!   skiff, 0 in Kubernetes); `behavior.scaleUp.stabilizationWindowSeconds` overrides it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use skiff_api::quantity::Quantity;

/// Kubernetes' default tolerance: no change while the usage ratio is within 10 % of 1.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// Kubernetes' default scale-up policies: 4 pods or 100 % per 15 s, whichever is more.
const DEFAULT_UP_POLICIES: [Policy; 2] = [
    Policy {
        kind: PolicyKind::Pods,
        value: 4,
        period_seconds: 15,
    },
    Policy {
        kind: PolicyKind::Percent,
        value: 100,
        period_seconds: 15,
    },
];
/// Kubernetes' default scale-down policy: 100 % per 15 s.
const DEFAULT_DOWN_POLICIES: [Policy; 1] = [Policy {
    kind: PolicyKind::Percent,
    value: 100,
    period_seconds: 15,
}];

/// How a pod counts for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Ready,
    /// Pending, or (for CPU) not ready: its sample is left out, and on a scale-up it counts
    /// as using nothing.
    Unready,
    /// Terminating or finished: not counted at all.
    Ignored,
}

/// One pod's numbers for one metric, in nano-units (of cores, of bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub name: String,
    pub state: PodState,
    /// The sum of its containers' requests (or the one container's), `None` when a container
    /// has none: then utilisation cannot be computed (`Err` names the container).
    pub request: Result<i128, String>,
    /// Its usage, `None` when the metrics API has no numbers for it.
    pub usage: Option<i128>,
}

/// What a metric aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Nano-units per pod.
    AverageValue(i128),
}

/// Tolerances around a usage ratio of 1 within which nothing changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub up: f64,
    pub down: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            up: DEFAULT_TOLERANCE,
            down: DEFAULT_TOLERANCE,
        }
    }
}

impl Tolerance {
    fn within(&self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Current utilisation in percent of requests (for `Utilization` targets).
    pub utilization: Option<i32>,
    /// Current average per pod, nano-units.
    pub average: i128,
}

/// Why a metric gave no proposal: the condition reason and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricError {
    pub reason: &'static str,
    pub message: String,
}

impl MetricError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> MetricError {
        MetricError {
            reason,
            message: message.into(),
        }
    }
}

fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else if c <= 0.0 {
        0
    } else {
        c as i32
    }
}

/// (usage ratio, utilisation %, average) of `samples` ((request, usage) per pod).
fn ratio(samples: &[(i128, i128)], target: Target) -> Result<(f64, Option<i32>, i128), String> {
    if samples.is_empty() {
        return Err("no metrics for any pod".into());
    }
    let usage: i128 = samples.iter().map(|(_, u)| u).sum();
    let average = usage / samples.len() as i128;
    match target {
        Target::Utilization(percent) => {
            let requests: i128 = samples.iter().map(|(r, _)| r).sum();
            if requests <= 0 {
                return Err("the pods' requests add up to zero".into());
            }
            let utilization = i32::try_from(usage * 100 / requests).unwrap_or(i32::MAX);
            Ok((
                f64::from(utilization) / f64::from(percent.max(1)),
                Some(utilization),
                average,
            ))
        }
        Target::AverageValue(per_pod) => {
            if per_pod <= 0 {
                return Err("the target average value is not positive".into());
            }
            Ok((average as f64 / per_pod as f64, None, average))
        }
    }
}

/// The replicas one metric asks for, as Kubernetes' replica calculator computes them:
/// `ceil(ratio × pods with samples)`, nothing within the tolerance, and pods without samples
/// counted cautiously (missing ones as at the target on a scale-down and idle on a
/// scale-up, unready ones as idle on a scale-up), never turning the direction around.
pub fn propose(
    target: Target,
    current: i32,
    pods: &[PodSample],
    tolerance: Tolerance,
) -> Result<Proposal, String> {
    let counted: Vec<&PodSample> = pods
        .iter()
        .filter(|p| p.state != PodState::Ignored)
        .collect();
    if counted.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let request_of = |p: &PodSample| -> Result<i128, String> {
        match (&p.request, target) {
            (Ok(r), _) => Ok(*r),
            (Err(_), Target::AverageValue(_)) => Ok(0),
            (Err(e), Target::Utilization(_)) => Err(e.clone()),
        }
    };
    let mut samples: Vec<(i128, i128)> = Vec::new();
    let mut missing: Vec<&PodSample> = Vec::new();
    let mut unready: Vec<&PodSample> = Vec::new();
    for p in &counted {
        match (p.state, p.usage) {
            (PodState::Unready, _) => unready.push(p),
            (_, None) => missing.push(p),
            (_, Some(u)) => samples.push((request_of(p)?, u)),
        }
    }
    if samples.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let ready_count = samples.len();
    let (usage_ratio, utilization, average) = ratio(&samples, target)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let scale_up_with_unready = !unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if tolerance.within(usage_ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_i32(usage_ratio * ready_count as f64)));
    }
    // Fill in the pods without samples cautiously and compute again.
    for p in &missing {
        let request = request_of(p)?;
        if usage_ratio < 1.0 {
            let assumed = match target {
                Target::Utilization(percent) => request * i128::from(percent.max(100)) / 100,
                Target::AverageValue(v) => v,
            };
            samples.push((request, assumed));
        } else if usage_ratio > 1.0 {
            samples.push((request, 0));
        }
    }
    if scale_up_with_unready {
        for p in &unready {
            samples.push((request_of(p)?, 0));
        }
    }
    let (new_ratio, _, _) = ratio(&samples, target)?;
    if tolerance.within(new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = ceil_i32(new_ratio * samples.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period_seconds: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// The rules for one direction, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub window_seconds: i64,
    pub select: Select,
    pub policies: Vec<Policy>,
    pub tolerance: f64,
}

/// Both directions' rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Behavior {
    pub fn tolerance(&self) -> Tolerance {
        Tolerance {
            up: self.up.tolerance,
            down: self.down.tolerance,
        }
    }
}

fn rules(
    spec: Option<&HPAScalingRules>,
    default_window: Duration,
    default_policies: &[Policy],
) -> Result<Rules, String> {
    let window_seconds = match spec.and_then(|s| s.stabilization_window_seconds) {
        Some(s) => i64::from(s.max(0)),
        None => i64::try_from(default_window.as_secs()).unwrap_or(i64::MAX),
    };
    let select = match spec.and_then(|s| s.select_policy.as_deref()) {
        None | Some("Max") => Select::Max,
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        Some(other) => {
            return Err(format!(
                "selectPolicy {other:?} is not one of \"Max\", \"Min\", \"Disabled\""
            ))
        }
    };
    let policies = match spec.and_then(|s| s.policies.as_ref()) {
        Some(ps) if !ps.is_empty() => ps
            .iter()
            .map(|p| {
                let kind = match p.type_.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    other => {
                        return Err(format!(
                            "policy type {other:?} is not one of \"Pods\", \"Percent\""
                        ))
                    }
                };
                if p.period_seconds <= 0 || p.value <= 0 {
                    return Err(format!(
                        "policy {} {} per {} s: value and periodSeconds must be positive",
                        p.type_, p.value, p.period_seconds
                    ));
                }
                Ok(Policy {
                    kind,
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        _ => default_policies.to_vec(),
    };
    let tolerance = match spec.and_then(|s| s.tolerance.as_ref()) {
        Some(q) => {
            let q = Quantity::from_k8s(q).map_err(|e| format!("tolerance: {}", e.reason()))?;
            if q.is_negative() {
                return Err("tolerance must not be negative".into());
            }
            q.nanos() as f64 / 1e9
        }
        None => DEFAULT_TOLERANCE,
    };
    Ok(Rules {
        window_seconds,
        select,
        policies,
        tolerance,
    })
}

/// `spec.behavior` with Kubernetes' defaults and the controller's windows filled in; an
/// error names the field that is wrong.
pub fn resolve_behavior(
    spec: Option<&HorizontalPodAutoscalerBehavior>,
    up_window: Duration,
    down_window: Duration,
) -> Result<Behavior, String> {
    Ok(Behavior {
        up: rules(
            spec.and_then(|b| b.scale_up.as_ref()),
            up_window,
            &DEFAULT_UP_POLICIES,
        )
        .map_err(|e| format!("spec.behavior.scaleUp: {e}"))?,
        down: rules(
            spec.and_then(|b| b.scale_down.as_ref()),
            down_window,
            &DEFAULT_DOWN_POLICIES,
        )
        .map_err(|e| format!("spec.behavior.scaleDown: {e}"))?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub at: Timestamp,
    pub replicas: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    pub at: Timestamp,
    /// Pods added (scale-up) or removed (scale-down), positive.
    pub change: i32,
}

/// What one autoscaler remembers between evaluations (in memory, as Kubernetes does).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub recommendations: Vec<Recommendation>,
    pub scale_ups: Vec<ScaleEvent>,
    pub scale_downs: Vec<ScaleEvent>,
}

fn minus_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.saturating_sub(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MIN)
}

impl History {
    /// Remembers an unstabilised recommendation, forgetting those no window looks at.
    pub fn record(&mut self, replicas: i32, now: Timestamp, behavior: &Behavior) {
        let keep = behavior.up.window_seconds.max(behavior.down.window_seconds);
        let cutoff = minus_secs(now, keep);
        self.recommendations.retain(|r| r.at > cutoff);
        self.recommendations
            .push(Recommendation { at: now, replicas });
    }

    /// Remembers a rescale from `from` to `to` replicas for the rate policies.
    pub fn record_scale(&mut self, from: i32, to: i32, now: Timestamp, behavior: &Behavior) {
        let longest = |r: &Rules| {
            r.policies
                .iter()
                .map(|p| i64::from(p.period_seconds))
                .max()
                .unwrap_or(0)
        };
        let up_cut = minus_secs(now, longest(&behavior.up));
        let down_cut = minus_secs(now, longest(&behavior.down));
        self.scale_ups.retain(|e| e.at > up_cut);
        self.scale_downs.retain(|e| e.at > down_cut);
        if to > from {
            self.scale_ups.push(ScaleEvent {
                at: now,
                change: to - from,
            });
        } else if to < from {
            self.scale_downs.push(ScaleEvent {
                at: now,
                change: from - to,
            });
        }
    }
}

fn changes_in_period(events: &[ScaleEvent], period_seconds: i32, now: Timestamp) -> i32 {
    let cutoff = minus_secs(now, i64::from(period_seconds));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .fold(0i32, i32::saturating_add)
}

/// The most replicas the scale-up policies allow now.
pub fn scale_up_limit(current: i32, history: &History, rules: &Rules, now: Timestamp) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::min,
        Select::Max => i32::max,
    };
    let mut result = match rules.select {
        Select::Min => i32::MAX,
        _ => i32::MIN,
    };
    for p in &rules.policies {
        let added = changes_in_period(&history.scale_ups, p.period_seconds, now);
        let removed = changes_in_period(&history.scale_downs, p.period_seconds, now);
        let start = current.saturating_sub(added).saturating_add(removed);
        let proposed = match p.kind {
            PolicyKind::Pods => start.saturating_add(p.value),
            PolicyKind::Percent => ceil_i32(f64::from(start) * (1.0 + f64::from(p.value) / 100.0)),
        };
        result = pick(result, proposed);
    }
    result
}

/// The fewest replicas the scale-down policies allow now.
pub fn scale_down_limit(current: i32, history: &History, rules: &Rules, now: Timestamp) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::max,
        Select::Max => i32::min,
    };
    let mut result = match rules.select {
        Select::Min => i32::MIN,
        _ => i32::MAX,
    };
    for p in &rules.policies {
        let added = changes_in_period(&history.scale_ups, p.period_seconds, now);
        let removed = changes_in_period(&history.scale_downs, p.period_seconds, now);
        let start = current.saturating_sub(added).saturating_add(removed);
        let proposed = match p.kind {
            PolicyKind::Pods => start.saturating_sub(p.value),
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)).floor() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// A condition as decided: (status, reason, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

fn cond(status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond {
        status,
        reason,
        message: message.into(),
    }
}

/// The stabilised recommendation: not above the highest recommendation of the scale-down
/// window, not below the lowest of the scale-up window (the one being made counts in both).
pub fn stabilize(
    history: &History,
    current: i32,
    desired: i32,
    behavior: &Behavior,
    now: Timestamp,
) -> (i32, Cond) {
    let up_cutoff = minus_secs(now, behavior.up.window_seconds);
    let down_cutoff = minus_secs(now, behavior.down.window_seconds);
    let mut up = desired;
    let mut down = desired;
    for r in &history.recommendations {
        if r.at > up_cutoff {
            up = up.min(r.replicas);
        }
        if r.at > down_cutoff {
            down = down.max(r.replicas);
        }
    }
    let mut stabilized = current;
    if stabilized > down {
        stabilized = down;
    }
    if stabilized < up {
        stabilized = up;
    }
    let c = if stabilized == desired {
        cond(
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    } else if desired >= current {
        cond(
            true,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        cond(
            true,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    (stabilized, c)
}

/// Caps a stabilised recommendation by the rate policies and min/max; the condition says
/// whether that limited it.
pub fn limit_rate(
    history: &History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    behavior: &Behavior,
    now: Timestamp,
) -> (i32, Cond) {
    if desired > current {
        let limit = scale_up_limit(current, history, &behavior.up, now).max(current);
        let (allowed, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return (allowed, cond(true, reason, message));
        }
    } else if desired < current {
        let limit = scale_down_limit(current, history, &behavior.down, now).min(current);
        let (allowed, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, cond(true, reason, message));
        }
    }
    (
        desired,
        cond(
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        ),
    )
}

/// One metric's outcome, named as events and conditions name it
/// (`cpu resource utilization (percentage of request)`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricOutcome {
    pub name: String,
    pub result: Result<Proposal, MetricError>,
}

/// Everything a decision needs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub now: Timestamp,
    /// The target's `spec.replicas` (through its scale subresource).
    pub current: i32,
    pub min: i32,
    pub max: i32,
    pub metrics: &'a [MetricOutcome],
    pub behavior: &'a Behavior,
    pub history: &'a History,
}

/// What to do and what to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: i32,
    /// Why the size changes (`cpu resource utilization (percentage of request) above
    /// target`), when it does.
    pub reason: Option<String>,
    /// The unstabilised recommendation to remember, when metrics gave one.
    pub recommendation: Option<i32>,
    pub able_to_scale: Option<Cond>,
    pub scaling_active: Cond,
    pub scaling_limited: Option<Cond>,
}

/// The autoscaler's decision for one evaluation.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let keep = |scaling_active: Cond| Decision {
        desired: i.current,
        reason: None,
        recommendation: None,
        able_to_scale: None,
        scaling_active,
        scaling_limited: None,
    };
    if i.current == 0 && i.min != 0 {
        return keep(cond(
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
    }
    let active = || {
        cond(
            true,
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count",
        )
    };
    if i.current > i.max {
        return Decision {
            desired: i.max,
            reason: Some("Current number of replicas above Spec.MaxReplicas".into()),
            scaling_limited: Some(cond(
                true,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )),
            ..keep(active())
        };
    }
    if i.current < i.min {
        return Decision {
            desired: i.min,
            reason: Some("Current number of replicas below Spec.MinReplicas".into()),
            scaling_limited: Some(cond(
                true,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )),
            ..keep(active())
        };
    }
    let mut proposed: Option<(i32, &str)> = None;
    let mut first_error: Option<&MetricError> = None;
    let mut errors = 0usize;
    for m in i.metrics {
        match &m.result {
            Ok(p) => {
                if proposed.is_none_or(|(r, _)| p.replicas > r) {
                    proposed = Some((p.replicas, m.name.as_str()));
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let failed = |e: Option<&MetricError>| {
        let e = e.cloned().unwrap_or_else(|| {
            MetricError::new(
                "InvalidMetricSourceType",
                "the HPA has no metrics to scale on",
            )
        });
        keep(cond(false, e.reason, e.message))
    };
    let Some((metric_desired, metric)) = proposed else {
        return failed(first_error);
    };
    // Some metrics failed: scale up on the others, but never down.
    if errors > 0 && metric_desired < i.current {
        return failed(first_error);
    }
    let reason = match metric_desired.cmp(&i.current) {
        std::cmp::Ordering::Greater => Some(format!("{metric} above target")),
        std::cmp::Ordering::Less => Some("All metrics below target".to_string()),
        std::cmp::Ordering::Equal => None,
    };
    let (stabilized, able) = stabilize(i.history, i.current, metric_desired, i.behavior, i.now);
    let (desired, limited) = limit_rate(
        i.history, i.current, stabilized, i.min, i.max, i.behavior, i.now,
    );
    Decision {
        desired,
        reason: (desired != i.current).then_some(reason).flatten(),
        recommendation: Some(metric_desired),
        able_to_scale: Some(able),
        scaling_active: cond(
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {metric}"),
        ),
        scaling_limited: Some(limited),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2026-01-01T00:00:00Z";

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn t(secs: i64) -> Timestamp {
        at(T0) + SignedDuration::from_secs(secs)
    }

    fn ready(name: &str, request: i128, usage: i128) -> PodSample {
        PodSample {
            name: name.into(),
            state: PodState::Ready,
            request: Ok(request),
            usage: Some(usage),
        }
    }

    fn pods(n: usize, request: i128, usage: i128) -> Vec<PodSample> {
        (0..n)
            .map(|i| ready(&format!("p{i}"), request, usage))
            .collect()
    }

    fn behavior() -> Behavior {
        resolve_behavior(None, Duration::from_secs(180), Duration::from_secs(300)).unwrap()
    }

    const CPU: &str = "cpu resource utilization (percentage of request)";

    fn outcome(replicas: i32) -> Vec<MetricOutcome> {
        vec![MetricOutcome {
            name: CPU.into(),
            result: Ok(Proposal {
                replicas,
                utilization: Some(0),
                average: 0,
            }),
        }]
    }

    #[test]
    fn utilization_proposals_follow_the_usage_ratio() {
        let tol = Tolerance::default();
        // 4 pods at 100% of a 100m request against a 50% target: twice as many.
        let p = propose(Target::Utilization(50), 4, &pods(4, 100, 100), tol).unwrap();
        assert_eq!(p.replicas, 8);
        assert_eq!(p.utilization, Some(100));
        assert_eq!(p.average, 100);
        // ceil: 3 pods at 70% vs 50% → 4.2 → 5.
        let p = propose(Target::Utilization(50), 3, &pods(3, 100, 70), tol).unwrap();
        assert_eq!(p.replicas, 5);
        // Within 10%: stay (54% vs 50%), and at the edge (55%).
        for usage in [54, 55, 45] {
            let p = propose(Target::Utilization(50), 3, &pods(3, 100, usage), tol).unwrap();
            assert_eq!(p.replicas, 3, "{usage}");
        }
        // Just outside: 56% → ratio 1.12 → ceil(3.36) = 4.
        let p = propose(Target::Utilization(50), 3, &pods(3, 100, 56), tol).unwrap();
        assert_eq!(p.replicas, 4);
        // Down: 10% vs 50% with 5 pods → 1.
        let p = propose(Target::Utilization(50), 5, &pods(5, 100, 10), tol).unwrap();
        assert_eq!(p.replicas, 1);
        // Idle: zero replicas proposed (min clamps later).
        let p = propose(Target::Utilization(50), 5, &pods(5, 100, 0), tol).unwrap();
        assert_eq!(p.replicas, 0);
    }

    #[test]
    fn the_proposal_counts_pods_with_samples_not_the_target_size() {
        // The target says 10 but only 4 pods exist, all at 2× the target: 8.
        let p = propose(
            Target::Utilization(50),
            10,
            &pods(4, 100, 100),
            Tolerance::default(),
        )
        .unwrap();
        assert_eq!(p.replicas, 8);
    }

    #[test]
    fn average_value_targets() {
        let tol = Tolerance::default();
        // 300m per pod against 100m per pod: 3×.
        let p = propose(Target::AverageValue(100), 2, &pods(2, 0, 300), tol).unwrap();
        assert_eq!(p.replicas, 6);
        assert_eq!(p.utilization, None);
        assert_eq!(p.average, 300);
        // Requests are not needed for an average value.
        let mut no_request = pods(2, 0, 300);
        no_request[0].request = Err("missing request for cpu in container app of Pod p0".into());
        assert_eq!(
            propose(Target::AverageValue(100), 2, &no_request, tol)
                .unwrap()
                .replicas,
            6
        );
        // …but they are for utilisation.
        let err = propose(Target::Utilization(50), 2, &no_request, tol).unwrap_err();
        assert!(err.contains("missing request for cpu"), "{err}");
    }

    #[test]
    fn missing_and_unready_pods_are_counted_cautiously() {
        let tol = Tolerance::default();
        // Scale-up with one pod missing metrics: it counts as idle.
        // 3 pods at 100% + 1 at 0% of 100m vs 50% → avg 75% → ratio 1.5 → ceil(6) = 6.
        let mut ps = pods(3, 100, 100);
        ps.push(PodSample {
            name: "new".into(),
            state: PodState::Ready,
            request: Ok(100),
            usage: None,
        });
        assert_eq!(
            propose(Target::Utilization(50), 4, &ps, tol)
                .unwrap()
                .replicas,
            6
        );
        // Scale-down with one pod missing: it counts as at its request (100%), so
        // 3 pods at 10% + 1 at 100% vs 50% → 32.5% → ratio 0.65 → ceil(2.6) = 3.
        let mut ps = pods(3, 100, 10);
        ps.push(PodSample {
            name: "new".into(),
            state: PodState::Ready,
            request: Ok(100),
            usage: None,
        });
        assert_eq!(
            propose(Target::Utilization(50), 4, &ps, tol)
                .unwrap()
                .replicas,
            3
        );
        // Unready pods count as idle on a scale-up: 2 at 100% + 2 unready → 50% → ratio 1.0
        // → within tolerance → stay.
        let mut ps = pods(2, 100, 100);
        for n in ["u1", "u2"] {
            ps.push(PodSample {
                name: n.into(),
                state: PodState::Unready,
                request: Ok(100),
                usage: Some(500),
            });
        }
        assert_eq!(
            propose(Target::Utilization(50), 4, &ps, tol)
                .unwrap()
                .replicas,
            4
        );
        // Ignored pods do not count at all.
        let mut ps = pods(2, 100, 100);
        ps.push(PodSample {
            name: "gone".into(),
            state: PodState::Ignored,
            request: Ok(100),
            usage: Some(0),
        });
        assert_eq!(
            propose(Target::Utilization(50), 2, &ps, tol)
                .unwrap()
                .replicas,
            4
        );
        // Nothing to go on.
        assert!(propose(Target::Utilization(50), 2, &[], tol).is_err());
        let none: Vec<PodSample> = pods(2, 100, 0)
            .into_iter()
            .map(|mut p| {
                p.usage = None;
                p
            })
            .collect();
        let err = propose(Target::Utilization(50), 2, &none, tol).unwrap_err();
        assert!(err.contains("did not receive metrics"), "{err}");
    }

    #[test]
    fn behavior_defaults_and_overrides() {
        let b = behavior();
        assert_eq!(b.up.window_seconds, 180);
        assert_eq!(b.down.window_seconds, 300);
        assert_eq!(b.up.policies, DEFAULT_UP_POLICIES.to_vec());
        assert_eq!(b.down.policies, DEFAULT_DOWN_POLICIES.to_vec());
        let spec: HorizontalPodAutoscalerBehavior = serde_json::from_value(json!({
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Min",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        "tolerance": "50m"},
            "scaleDown": {"selectPolicy": "Disabled"}
        }))
        .unwrap();
        let b = resolve_behavior(
            Some(&spec),
            Duration::from_secs(180),
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(b.up.window_seconds, 0);
        assert_eq!(b.up.select, Select::Min);
        assert_eq!(b.up.policies.len(), 1);
        assert!((b.up.tolerance - 0.05).abs() < 1e-9);
        assert_eq!(b.down.window_seconds, 300);
        assert_eq!(b.down.select, Select::Disabled);
        let bad: HorizontalPodAutoscalerBehavior =
            serde_json::from_value(json!({"scaleDown": {"selectPolicy": "Sometimes"}})).unwrap();
        let err = resolve_behavior(Some(&bad), Duration::ZERO, Duration::ZERO).unwrap_err();
        assert!(
            err.starts_with("spec.behavior.scaleDown: selectPolicy"),
            "{err}"
        );
    }

    #[test]
    fn default_scale_up_is_4_pods_or_100_percent_per_15_seconds() {
        let b = behavior();
        let h = History::default();
        assert_eq!(scale_up_limit(1, &h, &b.up, t(0)), 5);
        assert_eq!(scale_up_limit(2, &h, &b.up, t(0)), 6);
        assert_eq!(scale_up_limit(4, &h, &b.up, t(0)), 8);
        assert_eq!(scale_up_limit(10, &h, &b.up, t(0)), 20);
        // Right after going 4 → 8, the period started at 4: nothing more for 15 s.
        let mut h = History::default();
        h.record_scale(4, 8, t(0), &b);
        assert_eq!(scale_up_limit(8, &h, &b.up, t(10)), 8);
        assert_eq!(scale_up_limit(8, &h, &b.up, t(15)), 16);
        // Scale-down default: all at once.
        assert_eq!(scale_down_limit(8, &History::default(), &b.down, t(0)), 0);
    }

    #[test]
    fn custom_policies_and_select() {
        let spec: HorizontalPodAutoscalerBehavior = serde_json::from_value(json!({
            "scaleUp": {"selectPolicy": "Min", "policies": [
                {"type": "Pods", "value": 2, "periodSeconds": 60},
                {"type": "Percent", "value": 50, "periodSeconds": 60}]},
            "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
        }))
        .unwrap();
        let b = resolve_behavior(Some(&spec), Duration::ZERO, Duration::ZERO).unwrap();
        let h = History::default();
        // min(10 + 2, ceil(10 × 1.5)) = 12
        assert_eq!(scale_up_limit(10, &h, &b.up, t(0)), 12);
        assert_eq!(scale_down_limit(10, &h, &b.down, t(0)), 9);
        let mut h = History::default();
        h.record_scale(10, 9, t(0), &b);
        assert_eq!(scale_down_limit(9, &h, &b.down, t(30)), 9);
        assert_eq!(scale_down_limit(9, &h, &b.down, t(60)), 8);
    }

    #[test]
    fn stabilization_windows() {
        let b = behavior();
        let mut h = History::default();
        // Nothing remembered: the recommendation stands.
        assert_eq!(stabilize(&h, 4, 8, &b, t(0)).0, 8);
        assert_eq!(stabilize(&h, 4, 2, &b, t(0)).0, 2);
        h.record(8, t(0), &b);
        // Down: the highest of the last 300 s.
        let (r, c) = stabilize(&h, 8, 2, &b, t(100));
        assert_eq!(r, 8);
        assert_eq!(c.reason, "ScaleDownStabilized");
        assert_eq!(stabilize(&h, 8, 2, &b, t(299)).0, 8);
        assert_eq!(stabilize(&h, 8, 2, &b, t(300)).0, 2);
        // Up: the lowest of the last 180 s.
        let mut h = History::default();
        h.record(4, t(0), &b);
        let (r, c) = stabilize(&h, 4, 10, &b, t(60));
        assert_eq!(r, 4);
        assert_eq!(c.reason, "ScaleUpStabilized");
        h.record(6, t(60), &b);
        assert_eq!(stabilize(&h, 4, 10, &b, t(180)).0, 6);
        assert_eq!(stabilize(&h, 4, 10, &b, t(240)).0, 10);
        // Old recommendations are forgotten.
        h.record(5, t(1000), &b);
        assert_eq!(h.recommendations.len(), 1);
    }

    #[test]
    fn rate_limit_and_bounds() {
        let b = behavior();
        let h = History::default();
        let (r, c) = limit_rate(&h, 4, 32, 1, 10, &b, t(0));
        assert_eq!(r, 8);
        assert_eq!((c.status, c.reason), (true, "ScaleUpLimit"));
        let (r, c) = limit_rate(&h, 8, 32, 1, 10, &b, t(0));
        assert_eq!(r, 10);
        assert_eq!((c.status, c.reason), (true, "TooManyReplicas"));
        let (r, c) = limit_rate(&h, 8, 0, 2, 10, &b, t(0));
        assert_eq!(r, 2);
        assert_eq!((c.status, c.reason), (true, "TooFewReplicas"));
        let (r, c) = limit_rate(&h, 8, 5, 2, 10, &b, t(0));
        assert_eq!(r, 5);
        assert_eq!((c.status, c.reason), (false, "DesiredWithinRange"));
    }

    fn inputs<'a>(
        current: i32,
        metrics: &'a [MetricOutcome],
        behavior: &'a Behavior,
        history: &'a History,
        now: Timestamp,
    ) -> Inputs<'a> {
        Inputs {
            now,
            current,
            min: 2,
            max: 10,
            metrics,
            behavior,
            history,
        }
    }

    #[test]
    fn decisions_scale_up_at_most_double_then_to_max() {
        let b = behavior();
        let mut h = History::default();
        let m = outcome(32);
        let d = decide(&inputs(4, &m, &b, &h, t(0)));
        assert_eq!(d.desired, 8);
        assert_eq!(
            d.reason.as_deref(),
            Some(format!("{CPU} above target").as_str())
        );
        assert_eq!(d.recommendation, Some(32));
        assert_eq!(d.scaling_limited.as_ref().unwrap().reason, "ScaleUpLimit");
        assert_eq!(d.able_to_scale.as_ref().unwrap().reason, "ReadyForNewScale");
        assert!(d.scaling_active.status);
        h.record(32, t(0), &b);
        h.record_scale(4, 8, t(0), &b);
        // 15 s later the rate allows 16, max says 10.
        let d = decide(&inputs(8, &m, &b, &h, t(15)));
        assert_eq!(d.desired, 10);
        assert_eq!(
            d.scaling_limited.as_ref().unwrap().reason,
            "TooManyReplicas"
        );
    }

    #[test]
    fn decisions_scale_down_only_after_the_window_and_not_below_min() {
        let b = behavior();
        let mut h = History::default();
        h.record(10, t(0), &b);
        let low = outcome(1);
        for s in [15, 150, 299] {
            let d = decide(&inputs(10, &low, &b, &h, t(s)));
            assert_eq!(d.desired, 10, "at {s}");
            assert_eq!(d.reason, None);
            assert_eq!(
                d.able_to_scale.as_ref().unwrap().reason,
                "ScaleDownStabilized"
            );
            h.record(1, t(s), &b);
        }
        let d = decide(&inputs(10, &low, &b, &h, t(300)));
        assert_eq!(d.desired, 2);
        assert_eq!(d.reason.as_deref(), Some("All metrics below target"));
        assert_eq!(d.scaling_limited.as_ref().unwrap().reason, "TooFewReplicas");
    }

    #[test]
    fn out_of_range_targets_and_zero_replicas() {
        let b = behavior();
        let h = History::default();
        let m = outcome(5);
        let d = decide(&inputs(12, &m, &b, &h, t(0)));
        assert_eq!(d.desired, 10);
        assert_eq!(
            d.reason.as_deref(),
            Some("Current number of replicas above Spec.MaxReplicas")
        );
        let d = decide(&inputs(1, &m, &b, &h, t(0)));
        assert_eq!(d.desired, 2);
        let d = decide(&inputs(0, &m, &b, &h, t(0)));
        assert_eq!(d.desired, 0);
        assert_eq!(d.scaling_active.reason, "ScalingDisabled");
        assert!(!d.scaling_active.status);
    }

    #[test]
    fn failed_metrics_block_scale_down_but_not_scale_up() {
        let b = behavior();
        let h = History::default();
        let err = MetricOutcome {
            name: "memory resource utilization (percentage of request)".into(),
            result: Err(MetricError::new(
                "FailedGetResourceMetric",
                "unable to get metrics for resource memory",
            )),
        };
        let mut up = outcome(6);
        up.push(err.clone());
        assert_eq!(decide(&inputs(4, &up, &b, &h, t(0))).desired, 6);
        let mut down = outcome(2);
        down.push(err.clone());
        let d = decide(&inputs(4, &down, &b, &h, t(0)));
        assert_eq!(d.desired, 4);
        assert_eq!(d.scaling_active.reason, "FailedGetResourceMetric");
        assert_eq!(d.recommendation, None);
        let only = vec![err];
        let d = decide(&inputs(4, &only, &b, &h, t(0)));
        assert_eq!(d.desired, 4);
        assert!(!d.scaling_active.status);
    }

    #[test]
    fn the_largest_metric_proposal_wins() {
        let b = behavior();
        let h = History::default();
        let mut m = outcome(5);
        m.push(MetricOutcome {
            name: "memory resource".into(),
            result: Ok(Proposal {
                replicas: 7,
                utilization: None,
                average: 0,
            }),
        });
        let d = decide(&inputs(4, &m, &b, &h, t(0)));
        assert_eq!(d.desired, 7);
        assert_eq!(d.reason.as_deref(), Some("memory resource above target"));
    }
}

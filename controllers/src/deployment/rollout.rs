//! The rollout arithmetic of a Deployment, as pure functions of the ReplicaSets' sizes:
//! how far each ReplicaSet may be scaled in one step of a RollingUpdate or a Recreate, and
//! how a change of `spec.replicas` is spread over the ReplicaSets of a rollout in progress
//! (Kubernetes' proportional scaling). The controller applies one `Step` per pass and looks
//! again when the ReplicaSets report back.

use std::cmp::Ordering;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One ReplicaSet of a Deployment as the planning sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RsState {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: the active pods it has.
    pub actual: i32,
    pub ready: i32,
    pub available: i32,
    pub created: Timestamp,
    pub revision: i64,
    /// `deployment.kubernetes.io/desired-replicas`, the Deployment's size when last scaled.
    pub desired_annotation: Option<i32>,
    /// `deployment.kubernetes.io/max-replicas`, replicas + maxSurge when last scaled.
    pub max_annotation: Option<i32>,
    /// Its controller has seen its latest spec (`observedGeneration >= generation`).
    pub settled: bool,
    pub terminating: bool,
}

/// How the Deployment replaces pods, with maxSurge / maxUnavailable resolved to numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// What the Deployment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub replicas: i32,
    pub strategy: Strategy,
    /// `status.replicas` of the Deployment (the fallback base of proportional scaling).
    pub observed_replicas: i32,
}

impl Target {
    pub fn max_surge(&self) -> i32 {
        match self.strategy {
            Strategy::Recreate => 0,
            Strategy::RollingUpdate { max_surge, .. } => max_surge,
        }
    }

    /// Pods that may be unavailable during the rollout (never more than the replicas).
    pub fn max_unavailable(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate {
                max_unavailable, ..
            } if self.replicas > 0 => max_unavailable.min(self.replicas),
            _ => 0,
        }
    }
}

/// An int-or-percent of `total`; percentages round up (`round_up`, maxSurge) or down
/// (maxUnavailable), as Kubernetes.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) if *n < 0 => Err(format!("{n} is negative")),
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err(format!("{s:?} is neither a number nor a percentage"));
            };
            let pct: i64 = num
                .parse()
                .map_err(|_| format!("{s:?} is not a valid percentage"))?;
            if pct < 0 {
                return Err(format!("{s:?} is negative"));
            }
            let scaled = pct * i64::from(total.max(0));
            let value = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(n) => *n == 0,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<i64>() == Ok(0),
    }
}

/// maxSurge and maxUnavailable as numbers of pods for `replicas`. Both given as zero is
/// refused (the rollout could never make progress); when both round to zero (zero
/// replicas), one pod may be unavailable, as Kubernetes.
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    replicas: i32,
) -> Result<(i32, i32), String> {
    if is_zero(max_surge) && is_zero(max_unavailable) {
        return Err("maxSurge and maxUnavailable may not both be 0".into());
    }
    let surge = scaled_value(max_surge, replicas, true).map_err(|e| format!("maxSurge: {e}"))?;
    let unavailable = scaled_value(max_unavailable, replicas, false)
        .map_err(|e| format!("maxUnavailable: {e}"))?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The resolved strategy of a Deployment spec (defaults: RollingUpdate with 25% / 25%).
pub fn strategy_of(spec: &DeploymentSpec) -> Result<Strategy, String> {
    let replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.as_ref();
    match strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") {
        "Recreate" => Ok(Strategy::Recreate),
        "RollingUpdate" => {
            let ru = strategy.and_then(|s| s.rolling_update.as_ref());
            let quarter = IntOrString::String("25%".into());
            let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
            let unavailable = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&quarter);
            let (max_surge, max_unavailable) = resolve_fenceposts(surge, unavailable, replicas)
                .map_err(|e| format!("spec.strategy.rollingUpdate: {e}"))?;
            Ok(Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            })
        }
        other => Err(format!(
            "spec.strategy.type: unsupported value {other:?}: supported values: \"Recreate\", \"RollingUpdate\""
        )),
    }
}

/// Oldest first (ties by name), the order in which old ReplicaSets are scaled down.
pub fn by_creation(a: &RsState, b: &RsState) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

fn total_replicas(rss: &[&RsState]) -> i32 {
    rss.iter().map(|r| r.replicas).sum()
}

/// The size the new ReplicaSet may grow to now (Kubernetes' NewRSNewReplicas): within
/// replicas + maxSurge pods in all for a RollingUpdate, everything at once for Recreate.
pub fn new_rs_replicas(t: &Target, all: &[&RsState], new_replicas: i32) -> i32 {
    match t.strategy {
        Strategy::Recreate => t.replicas,
        Strategy::RollingUpdate { max_surge, .. } => {
            let current = total_replicas(all);
            let max_total = t.replicas + max_surge;
            if current >= max_total {
                return new_replicas;
            }
            let up = (max_total - current).min(t.replicas - new_replicas);
            new_replicas + up.max(0)
        }
    }
}

/// The new ReplicaSet's next size in a RollingUpdate, if it changes.
pub fn reconcile_new(t: &Target, all: &[&RsState], new: &RsState) -> Option<i32> {
    match new.replicas.cmp(&t.replicas) {
        Ordering::Equal => None,
        Ordering::Greater => Some(t.replicas),
        Ordering::Less => {
            let n = new_rs_replicas(t, all, new.replicas);
            (n != new.replicas).then_some(n)
        }
    }
}

/// Scale-downs of old ReplicaSets in a RollingUpdate: first their unhealthy replicas
/// (which would otherwise block the rollout), then available ones as long as at least
/// replicas − maxUnavailable pods stay available.
pub fn reconcile_old(t: &Target, olds: &[&RsState], new: &RsState) -> Vec<(String, i32)> {
    let old_count = total_replicas(olds);
    if old_count == 0 {
        return Vec::new();
    }
    let mut olds: Vec<RsState> = olds.iter().map(|r| (*r).clone()).collect();
    olds.sort_by(by_creation);
    let all_count = old_count + new.replicas;
    let min_available = t.replicas - t.max_unavailable();
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut changes: Vec<(String, i32)> = Vec::new();
    let mut set = |olds: &mut [RsState], i: usize, to: i32| {
        olds[i].replicas = to;
        olds[i].available = olds[i].available.min(to);
        match changes.iter_mut().find(|(n, _)| *n == olds[i].name) {
            Some(c) => c.1 = to,
            None => changes.push((olds[i].name.clone(), to)),
        }
    };

    // Unhealthy replicas first.
    let mut cleaned = 0;
    for i in 0..olds.len() {
        if cleaned >= max_scaled_down {
            break;
        }
        let rs = &olds[i];
        if rs.replicas == 0 || rs.replicas == rs.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        let to = rs.replicas - down;
        cleaned += down;
        set(&mut olds, i, to);
    }

    // Then as many available ones as availability allows.
    let available = olds.iter().map(|r| r.available).sum::<i32>() + new.available;
    if available > min_available {
        let mut budget = available - min_available;
        for i in 0..olds.len() {
            if budget <= 0 {
                break;
            }
            if olds[i].replicas == 0 {
                continue;
            }
            let down = olds[i].replicas.min(budget);
            budget -= down;
            let to = olds[i].replicas - down;
            set(&mut olds, i, to);
        }
    }
    changes
}

fn active<'a>(new: Option<&'a RsState>, olds: &[&'a RsState]) -> Vec<&'a RsState> {
    new.into_iter()
        .chain(olds.iter().copied())
        .filter(|r| r.replicas > 0)
        .collect()
}

/// Whether `spec.replicas` changed since the active ReplicaSets were last sized.
pub fn is_scaling_event(t: &Target, new: Option<&RsState>, olds: &[&RsState]) -> bool {
    active(new, olds)
        .iter()
        .any(|r| r.desired_annotation.is_some_and(|d| d != t.replicas))
}

/// The share of `to_add` for `rs` (Kubernetes' GetProportion), relative to the size the
/// Deployment had when `rs` was last scaled.
fn proportion(t: &Target, rs: &RsState, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if t.replicas == 0 {
        -rs.replicas
    } else {
        let max_now = t.replicas + t.max_surge();
        let before = match rs.max_annotation {
            Some(m) if m > 0 => m,
            _ => t.observed_replicas,
        };
        if before == 0 {
            0
        } else {
            let size = f64::from(rs.replicas) / f64::from(before) * f64::from(max_now);
            size.round() as i32 - rs.replicas
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Sizes after a change of `spec.replicas` (or while paused): a single active ReplicaSet
/// takes the whole size; a saturated new one empties the old ones; otherwise a rolling
/// Deployment spreads the difference proportionally, larger ReplicaSets first.
pub fn scale(t: &Target, new: Option<&RsState>, olds: &[&RsState]) -> Vec<(String, i32)> {
    let act = active(new, olds);
    // The one active ReplicaSet, or when none is active the new one, else the newest old.
    let single = match act.len() {
        0 => new.or_else(|| olds.iter().copied().max_by(|a, b| by_creation(a, b))),
        1 => Some(act[0]),
        _ => None,
    };
    if act.len() <= 1 {
        return match single {
            Some(rs) if rs.replicas != t.replicas => vec![(rs.name.clone(), t.replicas)],
            _ => Vec::new(),
        };
    }
    if let Some(new) = new {
        if new.desired_annotation == Some(t.replicas) && new.available == t.replicas {
            return olds
                .iter()
                .filter(|r| r.replicas > 0)
                .map(|r| (r.name.clone(), 0))
                .collect();
        }
    }
    if t.strategy == Strategy::Recreate {
        return Vec::new();
    }
    let mut act: Vec<RsState> = act.into_iter().cloned().collect();
    let allowed = if t.replicas > 0 {
        t.replicas + t.max_surge()
    } else {
        0
    };
    let to_add = allowed - act.iter().map(|r| r.replicas).sum::<i32>();
    match to_add.cmp(&0) {
        // Larger first; when scaling up newer first, when scaling down older first.
        Ordering::Greater => {
            act.sort_by(|a, b| b.replicas.cmp(&a.replicas).then_with(|| by_creation(b, a)))
        }
        Ordering::Less => {
            act.sort_by(|a, b| b.replicas.cmp(&a.replicas).then_with(|| by_creation(a, b)))
        }
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &act {
        let p = if to_add != 0 {
            proportion(t, rs, to_add, added)
        } else {
            0
        };
        added += p;
        sizes.push((rs.name.clone(), rs.replicas + p));
    }
    if let Some(first) = sizes.first_mut() {
        if to_add != 0 {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

/// One step of a Deployment's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Only sizes change (paused, or `spec.replicas` changed): these ReplicaSets take these
    /// sizes (unchanged sizes are listed to refresh their annotations).
    Scale(Vec<(String, i32)>),
    /// Create the new ReplicaSet with this many replicas.
    CreateNew(i32),
    /// One rollout step: resize these ReplicaSets.
    Roll(Vec<(String, i32)>),
    /// Recreate: the old pods are not all gone yet.
    WaitForOldPods,
    /// The rollout has nothing to change now.
    Idle,
}

/// The next step for a Deployment whose new ReplicaSet (same template) is `new`.
/// `old_pods_running`: some pod of an old ReplicaSet still exists and has not finished.
pub fn plan(
    t: &Target,
    paused: bool,
    new: Option<&RsState>,
    olds: &[&RsState],
    old_pods_running: bool,
) -> Step {
    if paused || is_scaling_event(t, new, olds) {
        return Step::Scale(scale(t, new, olds));
    }
    let all: Vec<&RsState> = new.into_iter().chain(olds.iter().copied()).collect();
    match t.strategy {
        Strategy::Recreate => {
            let down: Vec<(String, i32)> = olds
                .iter()
                .filter(|r| r.replicas > 0)
                .map(|r| (r.name.clone(), 0))
                .collect();
            if !down.is_empty() {
                return Step::Roll(down);
            }
            if old_pods_running || olds.iter().any(|r| r.actual > 0) {
                return Step::WaitForOldPods;
            }
            match new {
                None => Step::CreateNew(t.replicas),
                Some(n) if n.replicas != t.replicas => {
                    Step::Roll(vec![(n.name.clone(), t.replicas)])
                }
                Some(_) => Step::Idle,
            }
        }
        Strategy::RollingUpdate { .. } => {
            let Some(new) = new else {
                return Step::CreateNew(new_rs_replicas(t, &all, 0));
            };
            if let Some(n) = reconcile_new(t, &all, new) {
                return Step::Roll(vec![(new.name.clone(), n)]);
            }
            let olds: Vec<&RsState> = olds.iter().copied().filter(|r| r.replicas > 0).collect();
            let down = reconcile_old(t, &olds, new);
            if down.is_empty() {
                Step::Idle
            } else {
                Step::Roll(down)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn rs(name: &str, replicas: i32, available: i32, minute: i64) -> RsState {
        RsState {
            name: name.into(),
            replicas,
            actual: replicas,
            ready: available,
            available,
            created: Timestamp::from_second(1_800_000_000 + minute * 60).unwrap(),
            revision: minute,
            desired_annotation: None,
            max_annotation: None,
            settled: true,
            terminating: false,
        }
    }

    fn rolling(replicas: i32, surge: i32, unavailable: i32) -> Target {
        Target {
            replicas,
            strategy: Strategy::RollingUpdate {
                max_surge: surge,
                max_unavailable: unavailable,
            },
            observed_replicas: replicas,
        }
    }

    /// Drives a rollout from `old_size` available old pods to the new template: after each
    /// step the ReplicaSet controller makes the pods (`actual = replicas`), pods of old
    /// ReplicaSets that are kept stay available, and new pods become available one at a time.
    /// Returns every (total pods, available pods) seen.
    fn simulate(t: &Target) -> (Vec<(i32, i32)>, RsState, RsState) {
        let mut old = rs("old", t.replicas, t.replicas, 0);
        let mut new: Option<RsState> = None;
        let mut seen = Vec::new();
        for _ in 0..200 {
            let step = plan(t, false, new.as_ref(), &[&old], false);
            match step {
                Step::CreateNew(n) => {
                    new = Some(RsState {
                        desired_annotation: Some(t.replicas),
                        ..rs("new", n, 0, 1)
                    })
                }
                Step::Roll(changes) => {
                    for (name, to) in changes {
                        let target = if name == "old" {
                            &mut old
                        } else {
                            new.as_mut().unwrap()
                        };
                        target.replicas = to;
                        target.actual = to;
                        target.available = target.available.min(to);
                        target.ready = target.available;
                    }
                }
                Step::Idle => {
                    let n = new.as_mut().unwrap();
                    if n.available < n.replicas {
                        // The test marks one more new pod ready.
                        n.available += 1;
                        n.ready += 1;
                    } else {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
            let n = new.as_ref().map_or((0, 0), |n| (n.actual, n.available));
            seen.push((old.actual + n.0, old.available + n.1));
        }
        (seen, old, new.unwrap())
    }

    #[test]
    fn surge_one_unavailable_zero_never_drops_below_replicas() {
        let t = rolling(3, 1, 0);
        let (seen, old, new) = simulate(&t);
        for (total, available) in &seen {
            assert!(*available >= 3, "available {available} < 3 in {seen:?}");
            assert!(*total <= 4, "total {total} > 4 in {seen:?}");
        }
        assert_eq!((old.replicas, new.replicas, new.available), (0, 3, 3));
    }

    #[test]
    fn surge_zero_unavailable_one_never_exceeds_replicas() {
        let t = rolling(3, 0, 1);
        // The first step takes one old pod away, since no surge is allowed.
        let old = rs("old", 3, 3, 0);
        let new = rs("new", 0, 0, 1);
        assert_eq!(
            plan(&t, false, Some(&new), &[&old], false),
            Step::Roll(vec![("old".into(), 2)])
        );
        let (seen, old, new) = simulate(&t);
        for (total, available) in &seen {
            assert!(*available >= 2, "available {available} < 2 in {seen:?}");
            assert!(*total <= 3, "total {total} > 3 in {seen:?}");
        }
        assert_eq!((old.replicas, new.replicas), (0, 3));
    }

    #[test]
    fn defaults_roll_within_a_quarter() {
        let t = rolling(8, 2, 2);
        let (seen, _, new) = simulate(&t);
        assert!(seen
            .iter()
            .all(|(total, available)| *total <= 10 && *available >= 6));
        assert_eq!(new.replicas, 8);
    }

    #[test]
    fn unhealthy_old_replicas_are_cleaned_up_first() {
        let t = rolling(4, 1, 1);
        // Two old ReplicaSets; the older one has 2 pods that are not available.
        let older = rs("older", 2, 0, 0);
        let old = rs("old", 2, 2, 1);
        let new = rs("new", 1, 0, 2);
        // all=5, minAvailable=3, new unavailable=1: at most 1 down, the unhealthy one.
        assert_eq!(
            reconcile_old(&t, &[&older, &old], &new),
            vec![("older".to_string(), 1)]
        );
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 10), Ok((3, 2)));
        assert_eq!(resolve_fenceposts(&pct("10%"), &pct("10%"), 3), Ok((1, 0)));
        assert_eq!(
            resolve_fenceposts(&IntOrString::Int(2), &pct("50%"), 5),
            Ok((2, 2))
        );
        // Zero replicas: both round to 0, one may be unavailable.
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 0), Ok((0, 1)));
        assert!(resolve_fenceposts(&IntOrString::Int(0), &IntOrString::Int(0), 3).is_err());
        assert!(resolve_fenceposts(&pct("0%"), &IntOrString::Int(0), 3).is_err());
        assert!(resolve_fenceposts(&pct("many"), &IntOrString::Int(1), 3).is_err());
        assert!(scaled_value(&IntOrString::Int(-1), 3, true).is_err());
    }

    #[test]
    fn both_zero_is_refused_by_strategy_of() {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "replicas": 3,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
        }))
        .unwrap();
        let err = strategy_of(&spec).unwrap_err();
        assert!(err.contains("may not both be 0"), "{err}");
        let mut recreate = spec.clone();
        recreate.strategy =
            serde_json::from_value(serde_json::json!({"type": "Recreate"})).unwrap();
        assert_eq!(strategy_of(&recreate), Ok(Strategy::Recreate));
    }

    #[test]
    fn recreate_empties_old_waits_for_pods_then_creates() {
        let t = Target {
            replicas: 3,
            strategy: Strategy::Recreate,
            observed_replicas: 3,
        };
        let old = rs("old", 3, 3, 0);
        assert_eq!(
            plan(&t, false, None, &[&old], true),
            Step::Roll(vec![("old".into(), 0)])
        );
        let mut emptied = rs("old", 0, 0, 0);
        emptied.actual = 1;
        assert_eq!(
            plan(&t, false, None, &[&emptied], false),
            Step::WaitForOldPods
        );
        emptied.actual = 0;
        assert_eq!(
            plan(&t, false, None, &[&emptied], true),
            Step::WaitForOldPods
        );
        assert_eq!(
            plan(&t, false, None, &[&emptied], false),
            Step::CreateNew(3)
        );
        let new = rs("new", 0, 0, 1);
        assert_eq!(
            plan(&t, false, Some(&new), &[&emptied], false),
            Step::Roll(vec![("new".into(), 3)])
        );
        let done = rs("new", 3, 3, 1);
        assert_eq!(plan(&t, false, Some(&done), &[&emptied], false), Step::Idle);
    }

    #[test]
    fn paused_makes_no_rollout_progress_but_scales() {
        let t = rolling(3, 1, 0);
        let mut old = rs("old", 3, 3, 0);
        old.desired_annotation = Some(3);
        // A new template while paused: no new ReplicaSet, nothing to change.
        assert_eq!(plan(&t, true, None, &[&old], false), Step::Scale(vec![]));
        // Mid-rollout while paused: sizes stay.
        let mut new = rs("new", 1, 1, 1);
        new.desired_annotation = Some(3);
        let step = plan(&t, true, Some(&new), &[&old], false);
        let Step::Scale(sizes) = step else {
            panic!("{step:?}")
        };
        assert!(
            sizes
                .iter()
                .all(|(n, s)| (n == "old" && *s == 3) || (n == "new" && *s == 1)),
            "{sizes:?}"
        );
        // A change of replicas while paused is applied to the single active ReplicaSet.
        let t5 = rolling(5, 1, 0);
        assert_eq!(
            plan(&t5, true, None, &[&old], false),
            Step::Scale(vec![("old".into(), 5)])
        );
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 replicas, surge 3: old 8, new 5 (13 = 10 + 3); scaled to 20 (+ surge 5 = 25).
        let t = Target {
            replicas: 20,
            strategy: Strategy::RollingUpdate {
                max_surge: 5,
                max_unavailable: 5,
            },
            observed_replicas: 13,
        };
        let mut old = rs("old", 8, 8, 0);
        old.desired_annotation = Some(10);
        old.max_annotation = Some(13);
        let mut new = rs("new", 5, 0, 1);
        new.desired_annotation = Some(10);
        new.max_annotation = Some(13);
        assert!(is_scaling_event(&t, Some(&new), &[&old]));
        let Step::Scale(sizes) = plan(&t, false, Some(&new), &[&old], false) else {
            panic!()
        };
        let total: i32 = sizes.iter().map(|(_, s)| s).sum();
        assert_eq!(total, 25);
        let get = |n: &str| sizes.iter().find(|(x, _)| x == n).unwrap().1;
        // 8/13 and 5/13 of 25, rounded; the leftover goes to the largest.
        assert_eq!((get("old"), get("new")), (15, 10));

        // Scaling down to 0 empties everything.
        let zero = Target { replicas: 0, ..t };
        let Step::Scale(sizes) = plan(&zero, false, Some(&new), &[&old], false) else {
            panic!()
        };
        assert!(sizes.iter().all(|(_, s)| *s == 0), "{sizes:?}");
    }

    #[test]
    fn a_saturated_new_replica_set_empties_the_old_ones() {
        let t = rolling(3, 1, 0);
        let mut old = rs("old", 1, 1, 0);
        old.desired_annotation = Some(2);
        let mut new = rs("new", 3, 3, 1);
        new.desired_annotation = Some(3);
        assert_eq!(scale(&t, Some(&new), &[&old]), vec![("old".to_string(), 0)]);
    }

    #[test]
    fn a_new_replica_set_above_the_target_shrinks() {
        let t = rolling(2, 1, 0);
        let new = rs("new", 4, 4, 1);
        assert_eq!(reconcile_new(&t, &[&new], &new), Some(2));
    }
}

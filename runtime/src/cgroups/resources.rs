//! What a pod or container asks of the kernel, in cgroup units: a pure function of the spec.
//!
//! The conversions follow the kubelet, so that a pod gets the same shares, quota and limits
//! as it would on a Kubernetes node:
//!
//! - CPU request (millicores) → `cpu.shares = max(2, milli * 1024 / 1000)` (at most 262144);
//!   no request → 2, the smallest share.
//! - CPU limit → CFS quota `milli * period / 1000` over a 100 ms period, at least 1 ms.
//! - Memory limit → the memory limit in bytes.
//! - cgroup v2: `cpu.weight` from the shares with runc's quadratic mapping (the one Kubernetes
//!   1.33 expects), which keeps the default 1024 shares at the default weight 100.
//!
//! A pod's cgroup carries the sum of its containers' requests and limits, or the largest init
//! container's if that is more (init containers run alone, beside the sidecars started before
//! them), plus the pod overhead. A pod gets a CPU (memory) limit only when every container
//! has one: one unlimited container makes the whole pod unlimited.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api::quantity::Quantity;

use super::CgroupError;

/// The smallest `cpu.shares` the kernel accepts, given to BestEffort work.
pub const MIN_CPU_SHARES: u64 = 2;
/// The largest `cpu.shares` the kernel accepts.
pub const MAX_CPU_SHARES: u64 = 262_144;
/// The shares of one whole CPU.
const SHARES_PER_CPU: i128 = 1024;
/// The kernel's default `cpu.weight` (cgroup v2), matching 1024 shares.
pub const DEFAULT_CPU_WEIGHT: u64 = 100;
/// The largest `cpu.weight` the kernel accepts (cgroup v2).
pub const MAX_CPU_WEIGHT: u64 = 10_000;
/// The CFS period the kubelet uses, in microseconds (100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kubelet writes, in microseconds (1 ms).
pub const MIN_CFS_QUOTA_US: i64 = 1_000;

/// `oom_score_adj` of Guaranteed containers: killed last.
const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// `oom_score_adj` of BestEffort containers: killed first.
const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;

/// A pod's quality-of-service class, which decides where its cgroup lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QosClass {
    /// Requests equal limits for CPU and memory in every container.
    Guaranteed,
    /// Some requests or limits, not Guaranteed.
    Burstable,
    /// No requests or limits at all.
    BestEffort,
}

impl QosClass {
    /// Every class.
    pub const ALL: [QosClass; 3] = [
        QosClass::Guaranteed,
        QosClass::Burstable,
        QosClass::BestEffort,
    ];

    /// The Kubernetes spelling (`Guaranteed`, `Burstable`, `BestEffort`).
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QosClass {
    type Err = CgroupError;

    /// Parses the Kubernetes spelling, as `skiff_api::defaults::qos_class` returns it.
    fn from_str(s: &str) -> Result<QosClass, CgroupError> {
        match s {
            "Guaranteed" => Ok(QosClass::Guaranteed),
            "Burstable" => Ok(QosClass::Burstable),
            "BestEffort" => Ok(QosClass::BestEffort),
            other => Err(CgroupError::UnknownQosClass(other.to_string())),
        }
    }
}

/// A CFS bandwidth limit: `quota_us` of CPU time every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    /// CPU time allowed per period, in microseconds.
    pub quota_us: i64,
    /// Length of the period, in microseconds.
    pub period_us: u64,
}

/// The limits of one cgroup; `None` leaves (or puts back) the kernel's default, no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// cgroup v1 `cpu.shares` (v2 derives `cpu.weight` from it).
    pub cpu_shares: Option<u64>,
    /// CFS bandwidth limit.
    pub cpu_quota: Option<CpuQuota>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Largest number of tasks.
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// The cgroup of one container, from its requests and limits, as the kubelet sets it.
    pub fn for_container(container: &Container) -> Result<Resources, CgroupError> {
        let requests = container_requests(container)?;
        let limits = container_limits(container)?;
        Ok(Resources {
            cpu_shares: Some(milli_cpu_to_shares(requests.cpu_milli)),
            cpu_quota: milli_cpu_to_quota(limits.cpu_milli, CFS_PERIOD_US),
            memory_limit: positive(limits.memory_bytes),
            pids_limit: None,
        })
    }

    /// The cgroup of a whole pod, as the kubelet's `ResourceConfigForPod` computes it. The
    /// node's per-pod pids limit, if any, is the caller's to add.
    pub fn for_pod(spec: &PodSpec) -> Result<Resources, CgroupError> {
        let qos: QosClass = skiff_api::defaults::qos_class(spec).parse()?;
        if qos == QosClass::BestEffort {
            return Ok(Resources {
                cpu_shares: Some(MIN_CPU_SHARES),
                ..Resources::default()
            });
        }

        let pod_level = spec.resources.as_ref();
        let pod_requests = Amounts::parse(pod_level.and_then(|r| r.requests.as_ref()), "pod")?;
        let pod_limits = Amounts::parse(pod_level.and_then(|r| r.limits.as_ref()), "pod")?;
        let overhead = Amounts::parse(spec.overhead.as_ref(), "pod overhead")?;

        let requests = aggregate(spec, container_requests)?
            .overridden_by(pod_requests)
            .plus(overhead);
        let limits = aggregate(spec, container_limits)?.overridden_by(pod_limits);
        // Overhead raises a limit but never creates one.
        let limits = Amounts {
            cpu_milli: add_if_set(limits.cpu_milli, overhead.cpu_milli),
            memory_bytes: add_if_set(limits.memory_bytes, overhead.memory_bytes),
        };

        let mut every_container_limited = (true, true);
        for container in all_containers(spec) {
            let own = container_limits(container)?;
            every_container_limited.0 &= own.cpu_milli > 0;
            every_container_limited.1 &= own.memory_bytes > 0;
        }
        let guaranteed = qos == QosClass::Guaranteed;
        let cpu_limited = guaranteed || pod_limits.cpu_milli > 0 || every_container_limited.0;
        let memory_limited = guaranteed || pod_limits.memory_bytes > 0 || every_container_limited.1;

        Ok(Resources {
            cpu_shares: Some(milli_cpu_to_shares(requests.cpu_milli)),
            cpu_quota: if cpu_limited {
                milli_cpu_to_quota(limits.cpu_milli, CFS_PERIOD_US)
            } else {
                None
            },
            memory_limit: if memory_limited {
                positive(limits.memory_bytes)
            } else {
                None
            },
            pids_limit: None,
        })
    }

    /// The cgroup v2 `cpu.weight` matching [`Resources::cpu_shares`].
    pub fn cpu_weight(&self) -> Option<u64> {
        self.cpu_shares.map(cpu_shares_to_weight)
    }
}

/// Kubernetes' `MilliCPUToShares`: a CPU request in millicores as `cpu.shares`.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_CPU_SHARES;
    }
    let shares = i128::from(milli_cpu) * SHARES_PER_CPU / 1000;
    // Within [2, 262144] after the clamp, so the conversion cannot fail.
    u64::try_from(shares.clamp(MIN_CPU_SHARES.into(), MAX_CPU_SHARES.into()))
        .unwrap_or(MAX_CPU_SHARES)
}

/// Kubernetes' `MilliCPUToQuota`: a CPU limit in millicores as a CFS quota over `period_us`;
/// `None` for no limit.
pub fn milli_cpu_to_quota(milli_cpu: i64, period_us: u64) -> Option<CpuQuota> {
    if milli_cpu <= 0 {
        return None;
    }
    let quota = i128::from(milli_cpu) * i128::from(period_us) / 1000;
    let quota_us = i64::try_from(quota)
        .unwrap_or(i64::MAX)
        .max(MIN_CFS_QUOTA_US);
    Some(CpuQuota {
        quota_us,
        period_us,
    })
}

/// runc's `ConvertCPUSharesToCgroupV2Value` (opencontainers/cgroups ≥ 0.0.3, what Kubernetes
/// 1.33 expects): a quadratic curve through log₂ of the shares that maps 2 → 1, 1024 → 100
/// and 262144 → 10000. The older linear mapping gave the default 1024 shares a weight of 39,
/// starving pods next to system services at the default 100. 0 (unset) stays 0.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= MIN_CPU_SHARES {
        return 1;
    }
    if shares >= MAX_CPU_SHARES {
        return MAX_CPU_WEIGHT;
    }
    let log2 = (shares as f64).log2();
    let exponent = (log2 * log2 + 125.0 * log2) / 612.0 - 7.0 / 34.0;
    // The curve stays within [1, 10000] here; the clamp only guards the float conversion.
    (10f64.powf(exponent).ceil() as u64).clamp(1, MAX_CPU_WEIGHT)
}

/// Kubernetes' `GetContainerOOMScoreAdjust`: Guaranteed containers are killed last
/// (-997), BestEffort first (1000), and Burstable ones in between by the share of the
/// node's memory they request, kept within [3, 999] (above any Guaranteed container's score,
/// below any BestEffort's). Node-critical pods, which Kubernetes also puts at -997, are the
/// caller's to recognise.
pub fn oom_score_adj(qos: QosClass, memory_request_bytes: i64, memory_capacity_bytes: i64) -> i32 {
    match qos {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let lowest = 1000 + GUARANTEED_OOM_SCORE_ADJ;
            let highest = BEST_EFFORT_OOM_SCORE_ADJ - 1;
            if memory_capacity_bytes <= 0 {
                return highest;
            }
            let adj = 1000
                - (1000 * i128::from(memory_request_bytes.max(0)))
                    / i128::from(memory_capacity_bytes);
            // Clamped into [3, 999], so the conversion cannot fail.
            i32::try_from(adj.clamp(lowest.into(), highest.into())).unwrap_or(highest)
        }
    }
}

/// A container's memory request in bytes (its limit when it has no request, as the API
/// server defaults it), for [`oom_score_adj`].
pub fn memory_request_bytes(container: &Container) -> Result<i64, CgroupError> {
    Ok(container_requests(container)?.memory_bytes)
}

/// CPU and memory amounts in cgroup units; zero means "not set", as in Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Amounts {
    cpu_milli: i64,
    memory_bytes: i64,
}

impl Amounts {
    /// The CPU and memory of a resource list; other resources are not cgroup matters here.
    fn parse(
        list: Option<&BTreeMap<String, K8sQuantity>>,
        object: &str,
    ) -> Result<Amounts, CgroupError> {
        let Some(list) = list else {
            return Ok(Amounts::default());
        };
        let amount = |resource: &'static str, scale: fn(&Quantity) -> i128| {
            let Some(raw) = list.get(resource) else {
                return Ok(0);
            };
            let invalid = |reason: String| CgroupError::InvalidQuantity {
                object: object.to_string(),
                resource,
                value: raw.0.clone(),
                reason,
            };
            let quantity = Quantity::from_k8s(raw).map_err(|e| invalid(e.reason()))?;
            if quantity.is_negative() {
                return Err(invalid("must not be negative".to_string()));
            }
            i64::try_from(scale(&quantity)).map_err(|_| invalid("too large".to_string()))
        };
        Ok(Amounts {
            cpu_milli: amount("cpu", Quantity::milli_value)?,
            memory_bytes: amount("memory", Quantity::value)?,
        })
    }

    fn plus(self, other: Amounts) -> Amounts {
        Amounts {
            cpu_milli: self.cpu_milli.saturating_add(other.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    fn max(self, other: Amounts) -> Amounts {
        Amounts {
            cpu_milli: self.cpu_milli.max(other.cpu_milli),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }

    /// Each amount `other` sets replaces ours (pod-level resources over the containers' sum).
    fn overridden_by(self, other: Amounts) -> Amounts {
        let pick = |ours: i64, theirs: i64| if theirs > 0 { theirs } else { ours };
        Amounts {
            cpu_milli: pick(self.cpu_milli, other.cpu_milli),
            memory_bytes: pick(self.memory_bytes, other.memory_bytes),
        }
    }
}

/// A container's requests; a resource with a limit but no request requests its limit, as the
/// API server's defaulting (and the kubelet, for objects that predate it) has it.
fn container_requests(container: &Container) -> Result<Amounts, CgroupError> {
    let object = format!("container {:?}", container.name);
    let resources = container.resources.as_ref();
    let requests = Amounts::parse(resources.and_then(|r| r.requests.as_ref()), &object)?;
    let limits = Amounts::parse(resources.and_then(|r| r.limits.as_ref()), &object)?;
    Ok(limits.overridden_by(requests))
}

fn container_limits(container: &Container) -> Result<Amounts, CgroupError> {
    let object = format!("container {:?}", container.name);
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    Amounts::parse(limits, &object)
}

/// Kubernetes' `PodRequests`/`PodLimits` over containers: app containers and sidecars
/// (init containers with `restartPolicy: Always`) run together, and each other init
/// container runs alone beside the sidecars started before it; the pod needs the most of
/// those moments.
fn aggregate(
    spec: &PodSpec,
    amounts_of: fn(&Container) -> Result<Amounts, CgroupError>,
) -> Result<Amounts, CgroupError> {
    let mut running = Amounts::default();
    for container in &spec.containers {
        running = running.plus(amounts_of(container)?);
    }
    let mut sidecars = Amounts::default();
    let mut init_peak = Amounts::default();
    for container in spec.init_containers.iter().flatten() {
        let own = amounts_of(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            running = running.plus(own);
            sidecars = sidecars.plus(own);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(own.plus(sidecars));
        }
    }
    Ok(running.max(init_peak))
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

fn add_if_set(amount: i64, extra: i64) -> i64 {
    if amount > 0 {
        amount.saturating_add(extra)
    } else {
        amount
    }
}

fn positive(amount: i64) -> Option<i64> {
    (amount > 0).then_some(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn list(entries: &[(&str, &str)]) -> Option<BTreeMap<String, K8sQuantity>> {
        Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
                .collect(),
        )
    }

    fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: name.to_string(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sidecar(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            restart_policy: Some("Always".to_string()),
            ..container(name, requests, limits)
        }
    }

    fn pod(containers: Vec<Container>, init_containers: Vec<Container>) -> PodSpec {
        PodSpec {
            containers,
            init_containers: Some(init_containers),
            ..Default::default()
        }
    }

    const MI: i64 = 1024 * 1024;

    #[test]
    fn shares_follow_the_kubelet() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(2), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(257_000), 262_144);
        assert_eq!(milli_cpu_to_shares(i64::MAX), 262_144);
    }

    #[test]
    fn quota_follows_the_kubelet() {
        assert_eq!(milli_cpu_to_quota(0, CFS_PERIOD_US), None);
        let quota = |milli| milli_cpu_to_quota(milli, CFS_PERIOD_US).map(|q| q.quota_us);
        assert_eq!(quota(200), Some(20_000));
        assert_eq!(quota(1500), Some(150_000));
        // The kernel refuses quotas under 1 ms.
        assert_eq!(quota(1), Some(1_000));
        assert_eq!(quota(5), Some(1_000));
        assert_eq!(
            milli_cpu_to_quota(10, CFS_PERIOD_US),
            Some(CpuQuota {
                quota_us: 1_000,
                period_us: 100_000
            })
        );
    }

    #[test]
    fn weight_matches_runc_known_values() {
        // From opencontainers/cgroups' TestConvertCPUSharesToCgroupV2Value.
        let cases = [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 2),
            (1024, 100),
            (262_143, 10_000),
            (262_144, 10_000),
            (262_145, 10_000),
        ];
        for (shares, weight) in cases {
            assert_eq!(cpu_shares_to_weight(shares), weight, "shares {shares}");
        }
        // Monotonic: more shares never means less weight.
        let mut previous = 0;
        for shares in 2..=MAX_CPU_SHARES {
            let weight = cpu_shares_to_weight(shares);
            assert!(weight >= previous, "shares {shares}");
            previous = weight;
        }
    }

    #[test]
    fn container_resources() {
        let c = container(
            "app",
            &[("cpu", "250m"), ("memory", "64Mi")],
            &[("cpu", "500m"), ("memory", "128Mi")],
        );
        let r = Resources::for_container(&c).unwrap();
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(50_000));
        assert_eq!(r.cpu_quota.map(|q| q.period_us), Some(100_000));
        assert_eq!(r.memory_limit, Some(128 * MI));
        assert_eq!(r.pids_limit, None);
        assert_eq!(r.cpu_weight(), Some(cpu_shares_to_weight(256)));
    }

    #[test]
    fn container_without_resources_gets_minimum_shares_and_no_limits() {
        let r = Resources::for_container(&Container::default()).unwrap();
        assert_eq!(
            r,
            Resources {
                cpu_shares: Some(2),
                ..Resources::default()
            }
        );
    }

    #[test]
    fn container_request_defaults_to_limit() {
        let c = container("app", &[], &[("cpu", "2"), ("memory", "1Gi")]);
        let r = Resources::for_container(&c).unwrap();
        assert_eq!(r.cpu_shares, Some(2048));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(200_000));
        assert_eq!(memory_request_bytes(&c).unwrap(), 1024 * MI);
    }

    #[test]
    fn invalid_quantities_name_the_container_and_value() {
        let c = container("web", &[("cpu", "lots")], &[]);
        let err = Resources::for_container(&c).unwrap_err().to_string();
        assert!(
            err.contains("\"web\"") && err.contains("lots") && err.contains("cpu"),
            "{err}"
        );
        let c = container("web", &[("memory", "-1Mi")], &[]);
        let err = Resources::for_container(&c).unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
    }

    #[test]
    fn guaranteed_pod_sums_containers() {
        let spec = pod(
            vec![
                container(
                    "a",
                    &[("cpu", "100m"), ("memory", "32Mi")],
                    &[("cpu", "100m"), ("memory", "32Mi")],
                ),
                container(
                    "b",
                    &[("cpu", "200m"), ("memory", "64Mi")],
                    &[("cpu", "200m"), ("memory", "64Mi")],
                ),
            ],
            vec![],
        );
        let r = Resources::for_pod(&spec).unwrap();
        assert_eq!(r.cpu_shares, Some(milli_cpu_to_shares(300)));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(30_000));
        assert_eq!(r.memory_limit, Some(96 * MI));
    }

    #[test]
    fn pod_takes_the_larger_init_container() {
        let spec = pod(
            vec![container(
                "app",
                &[("cpu", "100m"), ("memory", "10Mi")],
                &[("cpu", "100m"), ("memory", "10Mi")],
            )],
            vec![container(
                "init",
                &[("cpu", "1"), ("memory", "5Mi")],
                &[("cpu", "1"), ("memory", "5Mi")],
            )],
        );
        let r = Resources::for_pod(&spec).unwrap();
        assert_eq!(r.cpu_shares, Some(1024));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(100_000));
        assert_eq!(r.memory_limit, Some(10 * MI));
    }

    #[test]
    fn sidecars_add_up_with_app_containers_and_later_init_containers() {
        let spec = pod(
            vec![container("app", &[("cpu", "100m")], &[])],
            vec![
                sidecar("proxy", &[("cpu", "200m")], &[]),
                container("migrate", &[("cpu", "250m")], &[]),
            ],
        );
        // Running: app + proxy = 300m; the init moment: migrate + proxy = 450m.
        let r = Resources::for_pod(&spec).unwrap();
        assert_eq!(r.cpu_shares, Some(milli_cpu_to_shares(450)));
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.memory_limit, None);
    }

    #[test]
    fn burstable_pod_is_limited_only_when_every_container_is() {
        let limited = container(
            "a",
            &[("cpu", "100m")],
            &[("cpu", "500m"), ("memory", "64Mi")],
        );
        let cpu_only = container("b", &[("cpu", "100m")], &[("cpu", "500m")]);
        let r = Resources::for_pod(&pod(vec![limited.clone(), cpu_only], vec![])).unwrap();
        assert_eq!(r.cpu_shares, Some(milli_cpu_to_shares(200)));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(100_000));
        assert_eq!(r.memory_limit, None);

        // An unlimited init container lifts the limits too.
        let unlimited_init = container("init", &[("cpu", "100m")], &[]);
        let r = Resources::for_pod(&pod(vec![limited], vec![unlimited_init])).unwrap();
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.memory_limit, None);
    }

    #[test]
    fn best_effort_pod_gets_minimum_shares_only() {
        let spec = pod(vec![Container::default()], vec![]);
        assert_eq!(
            Resources::for_pod(&spec).unwrap(),
            Resources {
                cpu_shares: Some(2),
                ..Resources::default()
            }
        );
    }

    #[test]
    fn overhead_adds_to_requests_and_existing_limits() {
        let mut spec = pod(
            vec![container(
                "a",
                &[("cpu", "100m"), ("memory", "10Mi")],
                &[("cpu", "100m"), ("memory", "10Mi")],
            )],
            vec![],
        );
        spec.overhead = list(&[("cpu", "50m"), ("memory", "1Mi")]);
        let r = Resources::for_pod(&spec).unwrap();
        assert_eq!(r.cpu_shares, Some(milli_cpu_to_shares(150)));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(15_000));
        assert_eq!(r.memory_limit, Some(11 * MI));
    }

    #[test]
    fn pod_level_resources_override_the_sum() {
        let mut spec = pod(vec![container("a", &[("cpu", "100m")], &[])], vec![]);
        spec.resources = Some(ResourceRequirements {
            requests: list(&[("cpu", "1")]),
            limits: list(&[("cpu", "2"), ("memory", "1Gi")]),
            ..Default::default()
        });
        let r = Resources::for_pod(&spec).unwrap();
        assert_eq!(r.cpu_shares, Some(1024));
        assert_eq!(r.cpu_quota.map(|q| q.quota_us), Some(200_000));
        assert_eq!(r.memory_limit, Some(1024 * MI));
    }

    #[test]
    fn oom_score_adj_follows_kubernetes() {
        let gi = 1024 * MI;
        assert_eq!(oom_score_adj(QosClass::Guaranteed, gi, 16 * gi), -997);
        assert_eq!(oom_score_adj(QosClass::BestEffort, 0, 16 * gi), 1000);
        // 10% of memory requested → 900.
        assert_eq!(oom_score_adj(QosClass::Burstable, gi, 10 * gi), 900);
        assert_eq!(oom_score_adj(QosClass::Burstable, 8 * gi, 64 * gi), 875);
        // Requesting (nearly) everything stays above Guaranteed containers.
        assert_eq!(oom_score_adj(QosClass::Burstable, 16 * gi, 16 * gi), 3);
        assert_eq!(oom_score_adj(QosClass::Burstable, 32 * gi, 16 * gi), 3);
        // Requesting nothing stays below BestEffort containers.
        assert_eq!(oom_score_adj(QosClass::Burstable, 0, 16 * gi), 999);
        assert_eq!(oom_score_adj(QosClass::Burstable, 1, 16 * gi), 999);
        assert_eq!(oom_score_adj(QosClass::Burstable, gi, 0), 999);
    }

    #[test]
    fn qos_class_round_trips() {
        for qos in QosClass::ALL {
            assert_eq!(qos.as_str().parse::<QosClass>().unwrap(), qos);
        }
        assert!("guaranteed".parse::<QosClass>().is_err());
    }
}

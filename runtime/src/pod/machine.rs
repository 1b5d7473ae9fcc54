//! A pod's life as a pure state machine: what the node sees of a pod (its sandbox and the
//! latest instance of each container) goes in, the next actions and the status to report come
//! out. The pod worker does the actions and feeds back what it then sees; everything here is
//! free of I/O, so every rule is unit-tested.
//!
//! The order is the kubelet's (`computePodActions`): the sandbox first, then the init
//! containers one at a time and in order, each to success, then all app containers; a
//! container that ended is restarted according to `restartPolicy`, after its back-off.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How one instance of a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, or `ContainerCannotRun`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

impl Exit {
    /// The reason Kubernetes gives an exit without a special cause.
    pub fn reason_for(exit_code: i32) -> &'static str {
        if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// The latest instance of a container, as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instance {
    Running { started_at: Timestamp },
    Exited(Exit),
}

/// What the node knows of one container of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerView {
    /// How many times the container was restarted (instances started minus one).
    pub restart_count: i32,
    /// The current (latest) instance; `None` before the first start.
    pub current: Option<Instance>,
    /// How the instance before the current one ended.
    pub last: Option<Exit>,
    /// Why the container is not running when no instance is (image pull, config error).
    pub waiting: Option<(String, String)>,
    /// The image as the pod names it, and the digest it resolved to.
    pub image: String,
    pub image_id: String,
    /// Readiness probe verdict (true when the container has no readiness probe).
    pub ready: bool,
    /// Startup probe verdict (true when the container has no startup probe).
    pub started: bool,
    /// The liveness or startup probe has failed past its threshold: restart.
    pub unhealthy: bool,
    /// No restart before this moment (the back-off after a failure).
    pub backoff_until: Option<Timestamp>,
}

impl ContainerView {
    fn running(&self) -> bool {
        matches!(self.current, Some(Instance::Running { .. }))
    }

    fn exit(&self) -> Option<&Exit> {
        match &self.current {
            Some(Instance::Exited(e)) => Some(e),
            _ => None,
        }
    }
}

/// Everything the machine takes in about one pod.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    /// The sandbox (pause, namespaces, network) exists and is healthy.
    pub sandbox_ready: bool,
    /// The sandbox existed once and is now gone (pause died): the kubelet then recreates the
    /// sandbox and restarts every container.
    pub sandbox_lost: bool,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub init_containers: BTreeMap<String, ContainerView>,
    pub containers: BTreeMap<String, ContainerView>,
    /// The API has marked the pod for deletion.
    pub deleting: bool,
    /// When the node first took the pod on (the status' `startTime`).
    pub start_time: Option<Timestamp>,
}

/// What the worker should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start pause with the pod's namespaces, network and cgroup.
    CreateSandbox,
    /// Start (or restart) a container.
    StartContainer { name: String, init: bool },
    /// Stop a running container (then it is restarted or not by the rules).
    KillContainer { name: String, reason: String },
    /// Stop every container and remove the sandbox: the pod is done or deleted.
    KillPod,
}

/// The machine's answer: actions to take now, and when to look again if nothing happens
/// before (a back-off ending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Option<Timestamp>,
}

/// The phase of a pod, Kubernetes' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// Whether a container that ended this way is started again.
pub fn should_restart(policy: &str, exit: &Exit) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit.exit_code != 0,
        _ => true,
    }
}

/// Init containers always restart on failure unless the pod never restarts.
fn init_should_restart(policy: &str, exit: &Exit) -> bool {
    exit.exit_code != 0 && policy != "Never"
}

fn view<'a>(views: &'a BTreeMap<String, ContainerView>, name: &str) -> Option<&'a ContainerView> {
    views.get(name)
}

/// Where the init containers stand.
enum InitProgress {
    /// All succeeded (or there are none).
    Done,
    /// This one is next to start, or to restart after a failure.
    Start(String),
    /// This one is running, or waiting out its back-off until the given time.
    Waiting(Option<Timestamp>),
    /// One failed under `restartPolicy: Never`: the pod has failed.
    Failed,
}

fn init_progress(spec: &PodSpec, pod: &PodView, now: Timestamp) -> InitProgress {
    let policy = restart_policy(spec);
    for c in spec.init_containers.iter().flatten() {
        let Some(v) = view(&pod.init_containers, &c.name) else {
            return InitProgress::Start(c.name.clone());
        };
        match &v.current {
            None => return InitProgress::Start(c.name.clone()),
            Some(Instance::Running { .. }) => return InitProgress::Waiting(None),
            Some(Instance::Exited(e)) if e.exit_code == 0 => continue,
            Some(Instance::Exited(e)) => {
                if !init_should_restart(policy, e) {
                    return InitProgress::Failed;
                }
                return match v.backoff_until {
                    Some(until) if until > now => InitProgress::Waiting(Some(until)),
                    _ => InitProgress::Start(c.name.clone()),
                };
            }
        }
    }
    InitProgress::Done
}

/// The pod's phase from what the node sees.
pub fn phase(spec: &PodSpec, pod: &PodView) -> Phase {
    let policy = restart_policy(spec);
    // An init container that failed for good fails the pod.
    for c in spec.init_containers.iter().flatten() {
        if let Some(e) = view(&pod.init_containers, &c.name).and_then(ContainerView::exit) {
            if !init_should_restart(policy, e) && e.exit_code != 0 {
                return Phase::Failed;
            }
        }
    }
    let mut running = 0;
    let mut waiting = 0;
    let mut succeeded = 0;
    let mut failed = 0;
    let mut restarting = 0;
    for c in &spec.containers {
        match view(&pod.containers, &c.name) {
            None => waiting += 1,
            Some(v) => match &v.current {
                None => {
                    // Waiting to (re)start: a container that ran before counts as restarting.
                    if v.last.is_some() {
                        restarting += 1
                    } else {
                        waiting += 1
                    }
                }
                Some(Instance::Running { .. }) => running += 1,
                Some(Instance::Exited(e)) => {
                    if should_restart(policy, e) {
                        restarting += 1
                    } else if e.exit_code == 0 {
                        succeeded += 1
                    } else {
                        failed += 1
                    }
                }
            },
        }
    }
    if waiting > 0 {
        return Phase::Pending;
    }
    if running > 0 || restarting > 0 {
        return Phase::Running;
    }
    if failed > 0 {
        Phase::Failed
    } else if succeeded > 0 {
        Phase::Succeeded
    } else {
        Phase::Pending
    }
}

/// The next actions for a pod.
pub fn plan(spec: &PodSpec, pod: &PodView, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let current_phase = phase(spec, pod);
    if pod.deleting || (current_phase.is_terminal() && anything_running(pod)) {
        plan.actions.push(Action::KillPod);
        return plan;
    }
    if current_phase.is_terminal() {
        // Nothing runs and nothing will: release the sandbox (its IP) if it is still there.
        if pod.sandbox_ready {
            plan.actions.push(Action::KillPod);
        }
        return plan;
    }
    if !pod.sandbox_ready {
        plan.actions.push(Action::CreateSandbox);
        return plan;
    }
    match init_progress(spec, pod, now) {
        InitProgress::Failed => {
            plan.actions.push(Action::KillPod);
            return plan;
        }
        InitProgress::Start(name) => {
            plan.actions
                .push(Action::StartContainer { name, init: true });
            return plan;
        }
        InitProgress::Waiting(until) => {
            plan.wake_at = until;
            return plan;
        }
        InitProgress::Done => {}
    }
    let policy = restart_policy(spec);
    for c in &spec.containers {
        let name = c.name.clone();
        let Some(v) = view(&pod.containers, &c.name) else {
            plan.actions
                .push(Action::StartContainer { name, init: false });
            continue;
        };
        match &v.current {
            None => match v.backoff_until {
                Some(until) if until > now => wake_min(&mut plan, until),
                _ => plan
                    .actions
                    .push(Action::StartContainer { name, init: false }),
            },
            Some(Instance::Running { .. }) => {
                if v.unhealthy {
                    plan.actions.push(Action::KillContainer {
                        name,
                        reason: "Unhealthy".into(),
                    });
                }
            }
            Some(Instance::Exited(e)) => {
                if !should_restart(policy, e) {
                    continue;
                }
                match v.backoff_until {
                    Some(until) if until > now => wake_min(&mut plan, until),
                    _ => plan
                        .actions
                        .push(Action::StartContainer { name, init: false }),
                }
            }
        }
    }
    plan
}

fn wake_min(plan: &mut Plan, at: Timestamp) {
    plan.wake_at = Some(match plan.wake_at {
        Some(t) if t < at => t,
        _ => at,
    });
}

fn anything_running(pod: &PodView) -> bool {
    pod.containers
        .values()
        .chain(pod.init_containers.values())
        .any(ContainerView::running)
}

/// Back-off before the next restart after `restarts` restarts: 10 s doubling to 300 s.
pub fn backoff_delay(restarts: i32) -> std::time::Duration {
    let exp = restarts.clamp(0, 5) as u32;
    std::time::Duration::from_secs((10u64 << exp).min(300))
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn terminated(e: &Exit) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: e.exit_code,
        reason: Some(e.reason.clone()),
        message: e.message.clone(),
        started_at: e.started_at.map(time),
        finished_at: Some(time(e.finished_at)),
        ..Default::default()
    }
}

fn container_status(
    name: &str,
    image: &str,
    v: Option<&ContainerView>,
    will_restart: impl Fn(&Exit) -> bool,
    now: Timestamp,
) -> ContainerStatus {
    let Some(v) = v else {
        return ContainerStatus {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            ready: false,
            restart_count: 0,
            started: Some(false),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
    };
    let waiting = |reason: &str, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    };
    let in_backoff = v.backoff_until.is_some_and(|t| t > now);
    let (state, last) = match &v.current {
        Some(Instance::Running { started_at }) => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(*started_at)),
                }),
                ..Default::default()
            },
            v.last.as_ref(),
        ),
        Some(Instance::Exited(e)) if will_restart(e) => {
            // Between instances: waiting (in back-off), and the ended one is the last state.
            let state = if in_backoff {
                waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off restarting failed container {name} in pod"
                    )),
                )
            } else {
                waiting("ContainerCreating", None)
            };
            (state, Some(e))
        }
        Some(Instance::Exited(e)) => (
            ContainerState {
                terminated: Some(terminated(e)),
                ..Default::default()
            },
            v.last.as_ref(),
        ),
        None => {
            let state = match &v.waiting {
                Some((reason, message)) => waiting(reason, Some(message.clone())),
                None if in_backoff => waiting("CrashLoopBackOff", None),
                None => waiting("ContainerCreating", None),
            };
            (state, v.last.as_ref())
        }
    };
    let running = v.running();
    ContainerStatus {
        name: name.to_string(),
        image: if v.image.is_empty() {
            image.to_string()
        } else {
            v.image.clone()
        },
        image_id: v.image_id.clone(),
        container_id: None,
        ready: running && v.ready && v.started,
        restart_count: v.restart_count,
        started: Some(running && v.started),
        state: Some(state),
        last_state: last.map(|e| ContainerState {
            terminated: Some(terminated(e)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, now: Timestamp) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time: Some(time(now)),
        ..Default::default()
    }
}

/// The status to report for a pod. `previous` keeps condition transition times stable.
pub fn status(
    spec: &PodSpec,
    pod: &PodView,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let policy = restart_policy(spec).to_string();
    let phase = phase(spec, pod);
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or(""),
                view(&pod.init_containers, &c.name),
                |e| init_should_restart(&policy, e),
                now,
            )
        })
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or(""),
                view(&pod.containers, &c.name),
                |e| should_restart(&policy, e),
                now,
            )
        })
        .collect();
    let initialized = matches!(init_progress(spec, pod, now), InitProgress::Done);
    let containers_ready = statuses.iter().all(|s| s.ready);
    let not_ready_reason = if phase.is_terminal() {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", pod.sandbox_ready, None, now),
        condition(
            "Initialized",
            initialized || phase == Phase::Succeeded,
            Some("ContainersNotInitialized"),
            now,
        ),
        condition(
            "Ready",
            containers_ready && pod.sandbox_ready,
            Some(not_ready_reason),
            now,
        ),
        condition(
            "ContainersReady",
            containers_ready && pod.sandbox_ready,
            Some(not_ready_reason),
            now,
        ),
        condition("PodScheduled", true, None, now),
    ];
    // A condition that did not change keeps the time it last changed.
    if let Some(prev) = previous.and_then(|p| p.conditions.as_ref()) {
        for c in &mut conditions {
            if let Some(old) = prev
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
    let pod_ips = pod
        .pod_ip
        .as_ref()
        .map(|ip| vec![k8s_openapi::api::core::v1::PodIP { ip: ip.clone() }]);
    PodStatus {
        phase: Some(phase.as_str().to_string()),
        conditions: Some(conditions),
        host_ip: pod.host_ip.clone(),
        host_ips: pod
            .host_ip
            .as_ref()
            .map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip: ip.clone() }]),
        pod_ip: pod.pod_ip.clone(),
        pod_ips,
        start_time: pod.start_time.map(time),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: Some(skiff_api::defaults::qos_class(spec).to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn now() -> Timestamp {
        "2026-11-24T03:00:00Z".parse().unwrap()
    }

    fn secs(n: i64) -> Timestamp {
        now() + jiff::SignedDuration::from_secs(n)
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("busybox".into()),
            ..Default::default()
        }
    }

    fn spec(policy: &str, init: &[&str], app: &[&str]) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty())
                .then(|| init.iter().map(|n| container(n)).collect()),
            containers: app.iter().map(|n| container(n)).collect(),
            ..Default::default()
        }
    }

    fn running() -> ContainerView {
        ContainerView {
            current: Some(Instance::Running { started_at: now() }),
            ready: true,
            started: true,
            ..Default::default()
        }
    }

    fn exited(code: i32) -> ContainerView {
        ContainerView {
            current: Some(Instance::Exited(Exit {
                exit_code: code,
                reason: Exit::reason_for(code).into(),
                message: None,
                started_at: Some(now()),
                finished_at: now(),
            })),
            ready: true,
            started: true,
            ..Default::default()
        }
    }

    fn ready_pod() -> PodView {
        PodView {
            sandbox_ready: true,
            pod_ip: Some("10.244.0.5".into()),
            ..Default::default()
        }
    }

    fn start(name: &str, init: bool) -> Action {
        Action::StartContainer {
            name: name.into(),
            init,
        }
    }

    #[test]
    fn sandbox_comes_first() {
        let s = spec("Always", &["init"], &["app"]);
        let plan = plan(&s, &PodView::default(), now());
        assert_eq!(plan.actions, vec![Action::CreateSandbox]);
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let s = spec("Always", &["a", "b"], &["app"]);
        let mut pod = ready_pod();
        assert_eq!(plan(&s, &pod, now()).actions, vec![start("a", true)]);
        pod.init_containers.insert("a".into(), running());
        assert!(plan(&s, &pod, now()).actions.is_empty());
        pod.init_containers.insert("a".into(), exited(0));
        assert_eq!(plan(&s, &pod, now()).actions, vec![start("b", true)]);
        pod.init_containers.insert("b".into(), exited(0));
        assert_eq!(plan(&s, &pod, now()).actions, vec![start("app", false)]);
        assert_eq!(phase(&s, &pod), Phase::Pending);
    }

    #[test]
    fn failed_init_container_restarts_after_backoff_or_fails_the_pod() {
        let s = spec("Always", &["a"], &["app"]);
        let mut pod = ready_pod();
        let mut failed = exited(1);
        failed.backoff_until = Some(secs(10));
        pod.init_containers.insert("a".into(), failed.clone());
        let p = plan(&s, &pod, now());
        assert!(p.actions.is_empty());
        assert_eq!(p.wake_at, Some(secs(10)));
        assert_eq!(plan(&s, &pod, secs(11)).actions, vec![start("a", true)]);

        let never = spec("Never", &["a"], &["app"]);
        assert_eq!(phase(&never, &pod), Phase::Failed);
        assert_eq!(plan(&never, &pod, now()).actions, vec![Action::KillPod]);
    }

    #[test]
    fn restart_policies() {
        let e = |code| Exit {
            exit_code: code,
            reason: Exit::reason_for(code).into(),
            message: None,
            started_at: None,
            finished_at: now(),
        };
        assert!(should_restart("Always", &e(0)));
        assert!(should_restart("Always", &e(1)));
        assert!(!should_restart("OnFailure", &e(0)));
        assert!(should_restart("OnFailure", &e(2)));
        assert!(!should_restart("Never", &e(1)));
    }

    #[test]
    fn phases_follow_the_containers() {
        let s = spec("Never", &[], &["a", "b"]);
        let mut pod = ready_pod();
        assert_eq!(phase(&s, &pod), Phase::Pending);
        pod.containers.insert("a".into(), running());
        assert_eq!(phase(&s, &pod), Phase::Pending);
        pod.containers.insert("b".into(), running());
        assert_eq!(phase(&s, &pod), Phase::Running);
        pod.containers.insert("a".into(), exited(0));
        assert_eq!(phase(&s, &pod), Phase::Running);
        pod.containers.insert("b".into(), exited(0));
        assert_eq!(phase(&s, &pod), Phase::Succeeded);
        pod.containers.insert("b".into(), exited(3));
        assert_eq!(phase(&s, &pod), Phase::Failed);
        // A finished pod gives its sandbox back.
        assert_eq!(plan(&s, &pod, now()).actions, vec![Action::KillPod]);
        pod.sandbox_ready = false;
        assert!(plan(&s, &pod, now()).actions.is_empty());

        let always = spec("Always", &[], &["a"]);
        let mut pod = ready_pod();
        pod.containers.insert("a".into(), exited(0));
        assert_eq!(phase(&always, &pod), Phase::Running);
    }

    #[test]
    fn crashing_container_waits_out_its_backoff() {
        let s = spec("Always", &[], &["app"]);
        let mut pod = ready_pod();
        let mut v = exited(1);
        v.restart_count = 2;
        v.backoff_until = Some(secs(40));
        pod.containers.insert("app".into(), v);
        let p = plan(&s, &pod, now());
        assert!(p.actions.is_empty());
        assert_eq!(p.wake_at, Some(secs(40)));
        let st = status(&s, &pod, None, now());
        let cs = &st.container_statuses.unwrap()[0];
        let waiting = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        assert_eq!(cs.restart_count, 2);
        assert_eq!(plan(&s, &pod, secs(41)).actions, vec![start("app", false)]);
    }

    #[test]
    fn unhealthy_container_is_killed_and_deletion_kills_the_pod() {
        let s = spec("Always", &[], &["app"]);
        let mut pod = ready_pod();
        let mut v = running();
        v.unhealthy = true;
        pod.containers.insert("app".into(), v);
        assert_eq!(
            plan(&s, &pod, now()).actions,
            vec![Action::KillContainer {
                name: "app".into(),
                reason: "Unhealthy".into()
            }]
        );
        pod.deleting = true;
        assert_eq!(plan(&s, &pod, now()).actions, vec![Action::KillPod]);
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let d: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(d, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn status_reports_readiness_and_keeps_transition_times() {
        let s = spec("Always", &[], &["app"]);
        let mut pod = ready_pod();
        let mut v = running();
        v.ready = false;
        pod.containers.insert("app".into(), v);
        let first = status(&s, &pod, None, now());
        let cond = |st: &PodStatus, t: &str| {
            st.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .cloned()
                .unwrap()
        };
        assert_eq!(first.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&first, "Ready").status, "False");
        assert_eq!(cond(&first, "Initialized").status, "True");
        assert_eq!(first.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(first.qos_class.as_deref(), Some("BestEffort"));

        let later = status(&s, &pod, Some(&first), secs(30));
        assert_eq!(
            cond(&later, "Ready").last_transition_time,
            cond(&first, "Ready").last_transition_time
        );
        pod.containers.get_mut("app").unwrap().ready = true;
        let ready = status(&s, &pod, Some(&later), secs(60));
        assert_eq!(cond(&ready, "Ready").status, "True");
        assert_eq!(
            cond(&ready, "Ready").last_transition_time,
            Some(Time(secs(60)))
        );
        assert!(ready.container_statuses.unwrap()[0].ready);
    }

    #[test]
    fn oom_killed_container_reports_its_reason() {
        let s = spec("Never", &[], &["app"]);
        let mut pod = ready_pod();
        pod.containers.insert(
            "app".into(),
            ContainerView {
                current: Some(Instance::Exited(Exit {
                    exit_code: 137,
                    reason: "OOMKilled".into(),
                    message: None,
                    started_at: Some(now()),
                    finished_at: secs(1),
                })),
                ..Default::default()
            },
        );
        let st = status(&s, &pod, None, secs(2));
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        let t = st.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
    }
}

//! Probe state: schedule and verdicts of the three probes of one container instance.
//!
//! Follows the kubelet's probe worker (`pkg/kubelet/prober/worker.go`):
//! - results count consecutively; a verdict changes only when a run of equal results
//!   reaches `successThreshold` (success) or `failureThreshold` (failure);
//! - a probe that could not be run (`ProbeResult::Unknown`) is thrown away;
//! - nothing runs before `initialDelaySeconds` after the container started;
//! - liveness and readiness do not run until the startup probe has succeeded, and the
//!   startup probe stops once it has;
//! - a liveness or startup verdict of failure means "restart", and the probe stops until
//!   the next container instance (a new [`ContainerProbes`]).
//!
//! One difference: the kubelet probes on a ticker started with the worker, so the first
//! run after the initial delay waits for the next tick; here it is due right at
//! `started + initialDelaySeconds`, then every `periodSeconds` after each run began.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};

use super::{ProbeError, ProbeResult};

/// Reason of the Warning event emitted for a failed (or errored) probe run.
pub const UNHEALTHY_REASON: &str = "Unhealthy";

const DEFAULT_PERIOD_SECONDS: i32 = 10;
const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// The three kinds of container probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Restarts the container when it fails.
    Liveness,
    /// Gates the container's (and pod's) Ready condition.
    Readiness,
    /// Holds the other two back until the container has started.
    Startup,
}

impl ProbeKind {
    /// The kind as the kubelet writes it at the start of its event messages.
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The verdict of a probe: what its results so far add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No threshold reached yet.
    Unknown,
    /// The last run of successes reached `successThreshold`.
    Success,
    /// The last run of failures reached `failureThreshold`.
    Failure,
}

/// A warning event for the container, as the kubelet records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// [`UNHEALTHY_REASON`].
    pub reason: &'static str,
    /// E.g. `Liveness probe failed: HTTP probe failed with statuscode: 500`.
    pub message: String,
}

/// A probe's timing and thresholds, defaults applied and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// `initialDelaySeconds` (default 0).
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` of the probe: overrides the pod's grace period when
    /// this probe's failure kills the container.
    pub termination_grace_period: Option<Duration>,
}

/// A field's value with the API's default for an unset or zero value (the API server
/// defaults zero to the default too).
fn field_or(
    kind: ProbeKind,
    field: &'static str,
    value: Option<i32>,
    default: i32,
) -> Result<u32, ProbeError> {
    match value {
        None | Some(0) => Ok(default.unsigned_abs()),
        Some(v) if v > 0 => Ok(v.unsigned_abs()),
        Some(v) => Err(ProbeError::Invalid {
            kind,
            field,
            value: v.to_string(),
            reason: "must be greater than 0",
        }),
    }
}

/// The probe's `timeoutSeconds` as a duration (default 1 s; a negative value counts as
/// the default, validation refuses it earlier).
pub(crate) fn timeout_of(probe: &Probe) -> Duration {
    let seconds = match probe.timeout_seconds {
        Some(s) if s > 0 => s,
        _ => DEFAULT_TIMEOUT_SECONDS,
    };
    Duration::from_secs(u64::from(seconds.unsigned_abs()))
}

impl ProbeSettings {
    /// Validates a probe of the given kind and applies the API's defaults.
    pub fn from_probe(kind: ProbeKind, probe: &Probe) -> Result<Self, ProbeError> {
        let handlers = [
            probe.exec.is_some(),
            probe.http_get.is_some(),
            probe.tcp_socket.is_some(),
            probe.grpc.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        match handlers {
            0 => {
                return Err(ProbeError::Handler {
                    kind,
                    reason: "must specify a handler type (exec, httpGet, tcpSocket or grpc)",
                })
            }
            1 => {}
            _ => {
                return Err(ProbeError::Handler {
                    kind,
                    reason: "may not specify more than 1 handler type",
                })
            }
        }
        if probe.grpc.is_some() {
            return Err(ProbeError::Unsupported {
                kind,
                handler: "grpc",
            });
        }
        if let Some(exec) = &probe.exec {
            if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
                return Err(ProbeError::EmptyCommand);
            }
        }
        let initial_delay = match probe.initial_delay_seconds {
            None => 0,
            Some(v) if v >= 0 => v.unsigned_abs(),
            Some(v) => {
                return Err(ProbeError::Invalid {
                    kind,
                    field: "initialDelaySeconds",
                    value: v.to_string(),
                    reason: "must be greater than or equal to 0",
                })
            }
        };
        let period = field_or(
            kind,
            "periodSeconds",
            probe.period_seconds,
            DEFAULT_PERIOD_SECONDS,
        )?;
        let timeout = field_or(
            kind,
            "timeoutSeconds",
            probe.timeout_seconds,
            DEFAULT_TIMEOUT_SECONDS,
        )?;
        let success_threshold = field_or(
            kind,
            "successThreshold",
            probe.success_threshold,
            DEFAULT_SUCCESS_THRESHOLD,
        )?;
        let failure_threshold = field_or(
            kind,
            "failureThreshold",
            probe.failure_threshold,
            DEFAULT_FAILURE_THRESHOLD,
        )?;
        if kind != ProbeKind::Readiness && success_threshold != 1 {
            return Err(ProbeError::Invalid {
                kind,
                field: "successThreshold",
                value: success_threshold.to_string(),
                reason: "must be 1 for liveness and startup probes",
            });
        }
        let termination_grace_period = match probe.termination_grace_period_seconds {
            None => None,
            Some(_) if kind == ProbeKind::Readiness => {
                return Err(ProbeError::Invalid {
                    kind,
                    field: "terminationGracePeriodSeconds",
                    value: "set".into(),
                    reason: "must not be set for readiness probes",
                })
            }
            Some(v) if v > 0 => Some(Duration::from_secs(v.unsigned_abs())),
            Some(v) => {
                return Err(ProbeError::Invalid {
                    kind,
                    field: "terminationGracePeriodSeconds",
                    value: v.to_string(),
                    reason: "must be greater than 0",
                })
            }
        };
        Ok(Self {
            initial_delay: Duration::from_secs(u64::from(initial_delay)),
            period: Duration::from_secs(u64::from(period)),
            timeout: Duration::from_secs(u64::from(timeout)),
            success_threshold,
            failure_threshold,
            termination_grace_period,
        })
    }
}

/// Schedule and verdict of one probe of one container instance.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    kind: ProbeKind,
    probe: Probe,
    settings: ProbeSettings,
    container_started: Instant,
    last_run: Option<Instant>,
    /// The result of the current run of equal results (true = success) and its length.
    streak: Option<(bool, u32)>,
    verdict: Verdict,
    last_failure: Option<String>,
    /// Set after a restart verdict: no more runs for this instance.
    on_hold: bool,
}

impl ProbeTracker {
    /// A tracker for a container instance that started at `container_started`.
    pub fn new(
        kind: ProbeKind,
        probe: &Probe,
        container_started: Instant,
    ) -> Result<Self, ProbeError> {
        Ok(Self {
            kind,
            settings: ProbeSettings::from_probe(kind, probe)?,
            probe: probe.clone(),
            container_started,
            last_run: None,
            streak: None,
            verdict: Verdict::Unknown,
            last_failure: None,
            on_hold: false,
        })
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The probe as given in the pod spec (for [`super::run_probe`]).
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Its timing and thresholds.
    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// When the next run is due (possibly in the past: run it now), or `None` when this
    /// probe no longer runs for this instance (restart verdict, or a startup probe that
    /// succeeded). Startup gating is [`ContainerProbes`]' business.
    pub fn due(&self) -> Option<Instant> {
        if self.on_hold || (self.kind == ProbeKind::Startup && self.verdict == Verdict::Success) {
            return None;
        }
        let first = self.container_started + self.settings.initial_delay;
        Some(match self.last_run {
            Some(last) => first.max(last + self.settings.period),
            None => first,
        })
    }

    /// Whether a run is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.due().is_some_and(|due| due <= now)
    }

    /// Counts the result of a run that began at `ran_at` and returns the event the kubelet
    /// would record for it, if any.
    pub fn record(&mut self, result: ProbeResult, ran_at: Instant) -> Option<ProbeEvent> {
        self.last_run = Some(ran_at);
        let (success, event) = match result {
            ProbeResult::Success => (true, None),
            ProbeResult::Failure(output) => {
                let message = format!("{} probe failed: {output}", self.kind);
                self.last_failure = Some(message.clone());
                (
                    false,
                    Some(ProbeEvent {
                        reason: UNHEALTHY_REASON,
                        message,
                    }),
                )
            }
            ProbeResult::Unknown(error) => {
                return Some(ProbeEvent {
                    reason: UNHEALTHY_REASON,
                    message: format!(
                        "{} probe errored and resulted in unknown state: {error}",
                        self.kind
                    ),
                });
            }
        };
        let length = match self.streak {
            Some((last, length)) if last == success => length.saturating_add(1),
            _ => 1,
        };
        self.streak = Some((success, length));
        let threshold = if success {
            self.settings.success_threshold
        } else {
            self.settings.failure_threshold
        };
        if length >= threshold {
            self.verdict = if success {
                Verdict::Success
            } else {
                Verdict::Failure
            };
            if !success && self.kind != ProbeKind::Readiness {
                // The container will be restarted: stop probing this instance.
                self.on_hold = true;
                self.streak = None;
            }
        }
        event
    }

    /// What the results so far add up to.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The event text of the last failed run (`Liveness probe failed: ...`).
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }
}

/// The probes of one running container instance.
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    liveness: Option<ProbeTracker>,
    readiness: Option<ProbeTracker>,
    startup: Option<ProbeTracker>,
    /// When the startup probe first succeeded: liveness and readiness start no earlier.
    startup_succeeded_at: Option<Instant>,
}

impl ContainerProbes {
    /// Trackers for the probes a container declares, for an instance that started at
    /// `container_started`.
    pub fn new(container: &Container, container_started: Instant) -> Result<Self, ProbeError> {
        let tracker = |kind, probe: &Option<Probe>| {
            probe
                .as_ref()
                .map(|p| ProbeTracker::new(kind, p, container_started))
                .transpose()
        };
        Ok(Self {
            liveness: tracker(ProbeKind::Liveness, &container.liveness_probe)?,
            readiness: tracker(ProbeKind::Readiness, &container.readiness_probe)?,
            startup: tracker(ProbeKind::Startup, &container.startup_probe)?,
            startup_succeeded_at: None,
        })
    }

    /// The tracker of one kind, if the container declares that probe.
    pub fn tracker(&self, kind: ProbeKind) -> Option<&ProbeTracker> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Startup => self.startup.as_ref(),
        }
    }

    fn tracker_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeTracker> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
            ProbeKind::Startup => self.startup.as_mut(),
        }
    }

    /// When the probe of `kind` is next due, with startup gating applied.
    pub fn due(&self, kind: ProbeKind) -> Option<Instant> {
        let own = self.tracker(kind)?.due()?;
        match kind {
            ProbeKind::Startup => Some(own),
            _ if self.startup.is_none() => Some(own),
            _ => self.startup_succeeded_at.map(|at| own.max(at)),
        }
    }

    /// The probe due soonest and when (to sleep until then), if any probe still runs.
    pub fn next_due(&self) -> Option<(ProbeKind, Instant)> {
        [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter_map(|kind| self.due(kind).map(|at| (kind, at)))
        .min_by_key(|(_, at)| *at)
    }

    /// The probes due at `now`.
    pub fn due_now(&self, now: Instant) -> Vec<ProbeKind> {
        [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter(|kind| self.due(*kind).is_some_and(|at| at <= now))
        .collect()
    }

    /// Counts a result of the probe of `kind` (run that began at `ran_at`); returns the
    /// event to record, if any. Results for a probe the container lacks are ignored.
    pub fn record(
        &mut self,
        kind: ProbeKind,
        result: ProbeResult,
        ran_at: Instant,
    ) -> Option<ProbeEvent> {
        let tracker = self.tracker_mut(kind)?;
        let event = tracker.record(result, ran_at);
        if kind == ProbeKind::Startup
            && tracker.verdict() == Verdict::Success
            && self.startup_succeeded_at.is_none()
        {
            self.startup_succeeded_at = Some(ran_at);
        }
        event
    }

    /// The container's `started`: true without a startup probe, else once it succeeded.
    pub fn started(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|t| t.verdict() == Verdict::Success)
    }

    /// The container's `ready`: started, and its readiness probe (if any) at success.
    /// Flips back to false on a failure verdict, without a restart.
    pub fn ready(&self) -> bool {
        self.started()
            && self
                .readiness
                .as_ref()
                .is_none_or(|t| t.verdict() == Verdict::Success)
    }

    /// The probe whose failure verdict asks for a restart, with the event text of its last
    /// failure (`Liveness probe failed: HTTP probe failed with statuscode: 500`).
    pub fn unhealthy(&self) -> Option<(ProbeKind, String)> {
        [&self.startup, &self.liveness]
            .into_iter()
            .flatten()
            .find(|t| t.verdict() == Verdict::Failure)
            .map(|t| {
                let message = t
                    .last_failure()
                    .map_or_else(|| format!("{} probe failed", t.kind()), str::to_owned);
                (t.kind(), message)
            })
    }

    /// The grace period to kill with after the probe of `kind` failed: the probe's own
    /// `terminationGracePeriodSeconds`, else `None` (use the pod's).
    pub fn termination_grace_period(&self, kind: ProbeKind) -> Option<Duration> {
        self.tracker(kind)?.settings().termination_grace_period
    }
}

/// The kubelet's message when it kills a container for a failed liveness/startup probe.
pub fn restart_message(kind: ProbeKind, container: &str) -> String {
    let kind = match kind {
        ProbeKind::Liveness => "liveness",
        ProbeKind::Readiness => "readiness",
        ProbeKind::Startup => "startup",
    };
    format!("Container {container} failed {kind} probe, will be restarted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, GRPCAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn tcp_probe() -> Probe {
        Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                host: None,
            }),
            ..Default::default()
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fail(message: &str) -> ProbeResult {
        ProbeResult::Failure(message.into())
    }

    #[test]
    fn defaults_are_the_apis() {
        let settings = ProbeSettings::from_probe(ProbeKind::Liveness, &tcp_probe());
        let settings = settings.map_err(|e| e.to_string());
        assert_eq!(
            settings,
            Ok(ProbeSettings {
                initial_delay: secs(0),
                period: secs(10),
                timeout: secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                termination_grace_period: None,
            })
        );
    }

    #[test]
    fn invalid_probes_are_refused_with_the_field() {
        let mut probe = tcp_probe();
        probe.success_threshold = Some(2);
        let err = ProbeSettings::from_probe(ProbeKind::Liveness, &probe).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("Liveness probe: invalid successThreshold 2: must be 1 for liveness and startup probes".into())
        );
        assert!(ProbeSettings::from_probe(ProbeKind::Readiness, &probe).is_ok());

        let mut probe = tcp_probe();
        probe.period_seconds = Some(-1);
        assert!(ProbeSettings::from_probe(ProbeKind::Readiness, &probe).is_err());

        let mut probe = tcp_probe();
        probe.termination_grace_period_seconds = Some(5);
        assert!(ProbeSettings::from_probe(ProbeKind::Readiness, &probe).is_err());
        let settings = ProbeSettings::from_probe(ProbeKind::Liveness, &probe).ok();
        assert_eq!(
            settings.and_then(|s| s.termination_grace_period),
            Some(secs(5))
        );

        let mut probe = tcp_probe();
        probe.exec = Some(ExecAction {
            command: Some(vec!["true".into()]),
        });
        assert!(matches!(
            ProbeSettings::from_probe(ProbeKind::Startup, &probe),
            Err(ProbeError::Handler { .. })
        ));
        assert!(matches!(
            ProbeSettings::from_probe(ProbeKind::Startup, &Probe::default()),
            Err(ProbeError::Handler { .. })
        ));
        let grpc = Probe {
            grpc: Some(GRPCAction {
                port: 9000,
                service: None,
            }),
            ..Default::default()
        };
        assert!(matches!(
            ProbeSettings::from_probe(ProbeKind::Liveness, &grpc),
            Err(ProbeError::Unsupported { .. })
        ));
        let empty_exec = Probe {
            exec: Some(ExecAction { command: None }),
            ..Default::default()
        };
        assert!(matches!(
            ProbeSettings::from_probe(ProbeKind::Liveness, &empty_exec),
            Err(ProbeError::EmptyCommand)
        ));
    }

    #[test]
    fn initial_delay_then_every_period_after_each_run() {
        let t0 = Instant::now();
        let mut probe = tcp_probe();
        probe.initial_delay_seconds = Some(5);
        probe.period_seconds = Some(3);
        let mut tracker = ProbeTracker::new(ProbeKind::Readiness, &probe, t0).expect("tracker");
        assert_eq!(tracker.due(), Some(t0 + secs(5)));
        assert!(!tracker.is_due(t0 + secs(4)));
        assert!(tracker.is_due(t0 + secs(5)));
        tracker.record(ProbeResult::Success, t0 + secs(6));
        assert_eq!(tracker.due(), Some(t0 + secs(9)));
        // An errored run still counts as a run for the schedule.
        tracker.record(
            ProbeResult::Unknown("port x not found".into()),
            t0 + secs(9),
        );
        assert_eq!(tracker.due(), Some(t0 + secs(12)));
    }

    #[test]
    fn liveness_restarts_after_failure_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut probe = tcp_probe();
        probe.failure_threshold = Some(3);
        let mut tracker = ProbeTracker::new(ProbeKind::Liveness, &probe, t0).expect("tracker");
        assert_eq!(tracker.verdict(), Verdict::Unknown);
        tracker.record(fail("a"), t0);
        tracker.record(fail("b"), t0 + secs(10));
        // A success in between restarts the count.
        tracker.record(ProbeResult::Success, t0 + secs(20));
        assert_eq!(tracker.verdict(), Verdict::Success);
        tracker.record(fail("c"), t0 + secs(30));
        tracker.record(fail("d"), t0 + secs(40));
        // Errors are thrown away: they neither count nor break the run.
        let event = tracker.record(ProbeResult::Unknown("boom".into()), t0 + secs(45));
        assert_eq!(
            event.map(|e| e.message),
            Some("Liveness probe errored and resulted in unknown state: boom".into())
        );
        assert_eq!(tracker.verdict(), Verdict::Success);
        let event = tracker.record(
            fail("HTTP probe failed with statuscode: 500"),
            t0 + secs(50),
        );
        assert_eq!(
            event,
            Some(ProbeEvent {
                reason: UNHEALTHY_REASON,
                message: "Liveness probe failed: HTTP probe failed with statuscode: 500".into(),
            })
        );
        assert_eq!(tracker.verdict(), Verdict::Failure);
        // On hold until the next instance.
        assert_eq!(tracker.due(), None);
    }

    #[test]
    fn readiness_flips_without_restart() {
        let t0 = Instant::now();
        let mut probe = tcp_probe();
        probe.success_threshold = Some(2);
        probe.failure_threshold = Some(2);
        let container = Container {
            name: "app".into(),
            readiness_probe: Some(probe),
            ..Default::default()
        };
        let mut probes = ContainerProbes::new(&container, t0).expect("probes");
        assert!(probes.started());
        assert!(!probes.ready(), "readiness starts false");
        let mut at = t0;
        let mut step = |probes: &mut ContainerProbes, result: ProbeResult| {
            at += secs(10);
            probes.record(ProbeKind::Readiness, result, at);
            probes.ready()
        };
        assert!(!step(&mut probes, ProbeResult::Success));
        assert!(step(&mut probes, ProbeResult::Success));
        assert!(
            step(&mut probes, fail("x")),
            "one failure is below threshold"
        );
        assert!(!step(&mut probes, fail("y")));
        assert!(probes.unhealthy().is_none(), "readiness never restarts");
        assert!(probes.due(ProbeKind::Readiness).is_some());
        assert!(!step(&mut probes, ProbeResult::Success));
        assert!(step(&mut probes, ProbeResult::Success));
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let t0 = Instant::now();
        let mut live = tcp_probe();
        live.initial_delay_seconds = Some(2);
        let container = Container {
            name: "app".into(),
            startup_probe: Some(tcp_probe()),
            liveness_probe: Some(live),
            readiness_probe: Some(tcp_probe()),
            ..Default::default()
        };
        let mut probes = ContainerProbes::new(&container, t0).expect("probes");
        assert!(!probes.started() && !probes.ready());
        assert_eq!(probes.due_now(t0 + secs(100)), vec![ProbeKind::Startup]);
        assert_eq!(probes.next_due(), Some((ProbeKind::Startup, t0)));
        probes.record(ProbeKind::Startup, fail("refused"), t0);
        assert!(!probes.started());
        probes.record(ProbeKind::Startup, ProbeResult::Success, t0 + secs(10));
        assert!(probes.started());
        assert!(!probes.ready(), "readiness has not run yet");
        // Startup stops; the others start from the startup success on.
        assert_eq!(probes.due(ProbeKind::Startup), None);
        assert_eq!(probes.due(ProbeKind::Liveness), Some(t0 + secs(10)));
        assert_eq!(probes.due(ProbeKind::Readiness), Some(t0 + secs(10)));
        probes.record(ProbeKind::Readiness, ProbeResult::Success, t0 + secs(10));
        assert!(probes.ready());
        // A later startup failure cannot happen: its results are no longer asked for.
        assert_eq!(probes.due_now(t0 + secs(10)), vec![ProbeKind::Liveness]);
    }

    #[test]
    fn startup_failing_past_threshold_asks_for_restart() {
        let t0 = Instant::now();
        let mut startup = tcp_probe();
        startup.failure_threshold = Some(2);
        startup.termination_grace_period_seconds = Some(7);
        let container = Container {
            name: "app".into(),
            startup_probe: Some(startup),
            liveness_probe: Some(tcp_probe()),
            ..Default::default()
        };
        let mut probes = ContainerProbes::new(&container, t0).expect("probes");
        probes.record(
            ProbeKind::Startup,
            fail("dial tcp 10.0.0.1:80: i/o timeout"),
            t0,
        );
        assert_eq!(probes.unhealthy(), None);
        probes.record(
            ProbeKind::Startup,
            fail("dial tcp 10.0.0.1:80: connect: connection refused"),
            t0 + secs(10),
        );
        assert_eq!(
            probes.unhealthy(),
            Some((
                ProbeKind::Startup,
                "Startup probe failed: dial tcp 10.0.0.1:80: connect: connection refused".into()
            ))
        );
        assert_eq!(
            probes.termination_grace_period(ProbeKind::Startup),
            Some(secs(7))
        );
        assert_eq!(probes.termination_grace_period(ProbeKind::Liveness), None);
        assert_eq!(probes.next_due(), None, "nothing runs until the restart");
        assert_eq!(
            restart_message(ProbeKind::Startup, "app"),
            "Container app failed startup probe, will be restarted"
        );
    }

    #[test]
    fn no_probes_means_started_ready_and_healthy() {
        let container = Container {
            name: "app".into(),
            ..Default::default()
        };
        let probes = ContainerProbes::new(&container, Instant::now()).expect("probes");
        assert!(probes.started() && probes.ready());
        assert_eq!(probes.unhealthy(), None);
        assert_eq!(probes.next_due(), None);
    }
}

//! Container probes (liveness, readiness, startup) and lifecycle hooks (postStart,
//! preStop), with the kubelet's semantics.
//!
//! Two halves, used together by the daemon's pod worker:
//!
//! - Pure state ([`ProbeTracker`], [`ContainerProbes`]): when each probe is due, how
//!   consecutive results turn into a verdict (thresholds), startup gating, and the event
//!   texts the kubelet emits. No clock of its own: callers pass `Instant`s, so unit tests
//!   drive time by hand.
//! - Runners ([`run_probe`], [`run_hook`]): real async checks. HTTP and TCP probes connect
//!   from the daemon's network namespace to the pod IP, as the kubelet does (for
//!   hostNetwork pods the pod IP is the node IP), so they are plain tokio sockets. Exec
//!   probes spawn `skiff-runtime exec` (a fresh process: the daemon never forks) in its
//!   own process group, so that a timeout kills the command inside the container too.
//!
//! HTTP is spoken with hyper 1's connection-level client (`hyper::client::conn::http1`),
//! one connection per request: the kubelet disables keep-alive for probes, so hyper-util's
//! pooled client would buy nothing, while hyper still gives a real HTTP/1.1 parser.

mod exec;
mod hook;
mod http;
mod tcp;
mod tracker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use hook::{
    run_hook, HookKind, FAILED_POST_START_HOOK, FAILED_PRE_STOP_HOOK, POST_START_HOOK_ERROR,
};
pub use tracker::{
    restart_message, ContainerProbes, ProbeEvent, ProbeKind, ProbeSettings, ProbeTracker, Verdict,
    UNHEALTHY_REASON,
};

/// The User-Agent of probe requests, as the kubelet of the Kubernetes version skiff serves.
pub const PROBE_USER_AGENT: &str = "kube-probe/1.33";
/// The User-Agent of httpGet lifecycle hooks.
pub const LIFECYCLE_USER_AGENT: &str = "kube-lifecycle/1.33";
/// At most this much of an exec probe's output is kept in its message (the kubelet's).
pub const MAX_EXEC_OUTPUT: usize = 10 * 1024;
/// At most this many redirects to the same host are followed (Go's default).
pub const MAX_REDIRECTS: usize = 10;

/// What a probe run says about the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The check passed.
    Success,
    /// The check failed; the kubelet's message for it (e.g. `HTTP probe failed with
    /// statuscode: 500`).
    Failure(String),
    /// The probe could not be run (bad port name, exec binary missing, ...); the result is
    /// thrown away, as the kubelet does, and only an event is emitted.
    Unknown(String),
}

/// Where probes and hooks of one running container instance go.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The pod's IP (the node IP for hostNetwork pods): default host of httpGet/tcpSocket.
    pub pod_ip: IpAddr,
    /// The container's declared ports, for ports given by name.
    pub container_ports: Vec<ContainerPort>,
    /// The `skiff-runtime` binary, run as `exec` for exec probes and hooks.
    pub exec_binary: PathBuf,
    /// The container instance's bundle directory (holds `config.json`).
    pub instance_dir: PathBuf,
    /// Host pid of the container's init process.
    pub pid: i32,
}

/// Why a probe is refused or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A field of a probe has a value Kubernetes does not allow.
    #[error("{kind} probe: invalid {field} {value}: {reason}")]
    Invalid {
        /// Which probe.
        kind: ProbeKind,
        /// The field at fault, as spelled in the API.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The probe names no handler, or more than one.
    #[error("{kind} probe: {reason}")]
    Handler {
        /// Which probe.
        kind: ProbeKind,
        /// What is wrong with the handlers.
        reason: &'static str,
    },
    /// The probe uses a handler skiff does not run.
    #[error("{kind} probe: {handler} probes are not supported by skiff")]
    Unsupported {
        /// Which probe.
        kind: ProbeKind,
        /// The handler (`grpc`).
        handler: &'static str,
    },
    /// A port given by name is not among the container's ports, or a number is out of range.
    #[error("{0}")]
    Port(String),
    /// The URL of an httpGet action cannot be formed.
    #[error("httpGet URL {url}: {reason}")]
    InvalidUrl {
        /// The URL or the part at fault.
        url: String,
        /// Why.
        reason: String,
    },
    /// An exec action has no command.
    #[error("exec action has an empty command")]
    EmptyCommand,
    /// A header of an httpGet action is not valid HTTP.
    #[error("httpGet header {name:?}: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The host of an httpGet/tcpSocket action could not be resolved.
    #[error("resolve host {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// `skiff-runtime exec` could not be started or watched.
    #[error("run {binary} exec for pid {pid}: {source}")]
    Exec {
        /// The binary.
        binary: PathBuf,
        /// The container's pid.
        pid: i32,
        /// The failure.
        source: std::io::Error,
    },
}

/// Why a lifecycle hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The handler names no action, or one skiff does not run (tcpSocket is deprecated and
    /// never run by the kubelet either).
    #[error("invalid handler: {reason}")]
    InvalidHandler {
        /// What is wrong.
        reason: String,
    },
    /// The hook's command exited non-zero.
    #[error("command '{}' exited with {exit_code}: {output}", command.join(" "))]
    ExecFailed {
        /// The command.
        command: Vec<String>,
        /// Its exit code (128 + signal when killed).
        exit_code: i32,
        /// Its combined output, at most [`MAX_EXEC_OUTPUT`] bytes.
        output: String,
    },
    /// The hook's command ran past the timeout and was killed.
    #[error("command {:?} timed out after {timeout:?}", command.join(" "))]
    ExecTimedOut {
        /// The command.
        command: Vec<String>,
        /// The time it was given.
        timeout: Duration,
    },
    /// The httpGet request failed (connect, TLS, protocol, timeout); as in the kubelet, the
    /// response's status code does not matter.
    #[error("{0}")]
    Http(String),
    /// A sleep handler was cut short by the timeout.
    #[error("container terminated before sleep hook finished")]
    SleepInterrupted,
    /// The hook could not be run at all (port, exec binary, ...).
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Runs one probe against a running container and returns its result. Probes are run as
/// the kubelet runs them: exec (a command in the container, exit 0 = success), httpGet
/// (status 200–399 = success, same-host redirects followed), tcpSocket (connect = success).
/// `timeoutSeconds` bounds each run.
pub async fn run_probe(probe: &Probe, target: &ProbeTarget) -> ProbeResult {
    let timeout = tracker::timeout_of(probe);
    if let Some(action) = &probe.exec {
        let command = action.command.clone().unwrap_or_default();
        return exec::exec_probe(target, &command, timeout).await;
    }
    if let Some(action) = &probe.http_get {
        return match http::HttpGet::from_action(action, target, PROBE_USER_AGENT) {
            Ok(request) => http::http_probe(&request, timeout).await,
            Err(err) => ProbeResult::Unknown(err.to_string()),
        };
    }
    if let Some(action) = &probe.tcp_socket {
        let host = action
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.to_string());
        return match resolve_port(&action.port, &target.container_ports) {
            Ok(port) => tcp::tcp_probe(&host, port, timeout).await,
            Err(err) => ProbeResult::Unknown(err.to_string()),
        };
    }
    if probe.grpc.is_some() {
        return ProbeResult::Unknown("grpc probes are not supported by skiff".into());
    }
    ProbeResult::Unknown("probe has no handler (exec, httpGet, tcpSocket)".into())
}

/// A probe or hook port as a number: an integer, a name from the container's ports, or a
/// number written as a string (the kubelet's last resort).
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, ProbeError> {
    let number = match port {
        IntOrString::Int(number) => i64::from(*number),
        IntOrString::String(name) => {
            match ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
            {
                Some(found) => i64::from(found.container_port),
                None => name
                    .parse::<i64>()
                    .map_err(|_| ProbeError::Port(format!("port {name} not found")))?,
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ProbeError::Port(format!("invalid port number: {number}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, number: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.into()),
            container_port: number,
            ..Default::default()
        }
    }

    #[test]
    fn ports_by_number_name_and_numeric_string() {
        let ports = vec![named("http", 8080), named("admin", 9000)];
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports).ok(), Some(80));
        assert_eq!(
            resolve_port(&IntOrString::String("admin".into()), &ports).ok(),
            Some(9000)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("81".into()), &ports).ok(),
            Some(81)
        );
        let missing = resolve_port(&IntOrString::String("grpc".into()), &ports);
        assert_eq!(
            missing.map_err(|e| e.to_string()),
            Err("port grpc not found".to_string())
        );
        for bad in [0, -1, 70000] {
            let err = resolve_port(&IntOrString::Int(bad), &ports).map_err(|e| e.to_string());
            assert_eq!(err, Err(format!("invalid port number: {bad}")));
        }
    }
}

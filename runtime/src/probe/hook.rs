//! postStart and preStop hooks: exec, httpGet and sleep handlers, as the kubelet runs
//! them (`pkg/kubelet/lifecycle/handlers.go`).
//!
//! Differences from probes, all the kubelet's: an httpGet hook fails only when the request
//! fails (the status code does not matter) and uses `kube-lifecycle/1.33` as its agent;
//! an exec hook's failure carries the command's output; tcpSocket handlers are not run.
//! Not done: the kubelet retries an HTTPS hook over HTTP when the server answered in
//! plain HTTP.

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::exec::{exec_in_container, ExecEnd};
use super::http::{http_get, HttpGet};
use super::{HookError, ProbeTarget, LIFECYCLE_USER_AGENT};

/// Waiting/termination reason of a container whose postStart hook failed.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";
/// Reason of the Warning event for a failed postStart hook.
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
/// Reason of the Warning event for a failed preStop hook.
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";

/// Which hook a handler belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Run right after the container started; failure kills the container.
    PostStart,
    /// Run before the container is stopped; failure is only reported.
    PreStop,
}

impl HookKind {
    /// Reason and message of the Warning event for a failure (the kubelet keeps the
    /// details out of the event so that secrets in them do not leak).
    pub fn failure_event(self) -> (&'static str, &'static str) {
        match self {
            HookKind::PostStart => (FAILED_POST_START_HOOK, "PostStartHook failed"),
            HookKind::PreStop => (FAILED_PRE_STOP_HOOK, "PreStopHook failed"),
        }
    }
}

/// Runs a hook handler against a running container; `timeout` bounds it (for preStop,
/// the remaining grace period). A command still running at the timeout is killed.
pub async fn run_hook(
    handler: &LifecycleHandler,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<(), HookError> {
    if let Some(action) = &handler.exec {
        let command = action.command.clone().unwrap_or_default();
        return match exec_in_container(target, &command, timeout).await? {
            ExecEnd::Exited { code: 0, .. } => Ok(()),
            ExecEnd::Exited { code, output } => Err(HookError::ExecFailed {
                command,
                exit_code: code,
                output,
            }),
            ExecEnd::TimedOut => Err(HookError::ExecTimedOut { command, timeout }),
        };
    }
    if let Some(action) = &handler.http_get {
        let request = HttpGet::from_action(action, target, LIFECYCLE_USER_AGENT)?;
        return http_get(&request, timeout)
            .await
            .map(|_| ())
            .map_err(HookError::Http);
    }
    if let Some(action) = &handler.sleep {
        let seconds = u64::try_from(action.seconds).map_err(|_| HookError::InvalidHandler {
            reason: format!("sleep seconds {} is negative", action.seconds),
        })?;
        let wanted = Duration::from_secs(seconds);
        if wanted > timeout {
            tokio::time::sleep(timeout).await;
            return Err(HookError::SleepInterrupted);
        }
        tokio::time::sleep(wanted).await;
        return Ok(());
    }
    Err(HookError::InvalidHandler {
        reason: if handler.tcp_socket.is_some() {
            "tcpSocket lifecycle handlers are deprecated and not run".into()
        } else {
            "no exec, httpGet or sleep action".into()
        },
    })
}

impl HookError {
    /// The kubelet's message for a failed hook, as put in the container's status (e.g.
    /// `Exec lifecycle hook ([sh -c exit 3]) for Container "app" in Pod "web_default(uid)"
    /// failed - error: command 'sh -c exit 3' exited with 3: , message: ""`). `pod` is
    /// written as the caller likes (the kubelet uses `name_namespace(uid)`).
    pub fn describe(&self, handler: &LifecycleHandler, container: &str, pod: &str) -> String {
        if let (Some(action), false) = (
            &handler.exec,
            matches!(self, HookError::InvalidHandler { .. }),
        ) {
            let command = action.command.clone().unwrap_or_default();
            let output = match self {
                HookError::ExecFailed { output, .. } => output.as_str(),
                _ => "",
            };
            return format!(
                "Exec lifecycle hook ([{}]) for Container {container:?} in Pod {pod:?} failed - error: {self}, message: {output:?}",
                command.join(" ")
            );
        }
        if let (Some(action), false) = (
            &handler.http_get,
            matches!(self, HookError::InvalidHandler { .. }),
        ) {
            return format!(
                "HTTP lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {self}",
                action.path.as_deref().unwrap_or_default()
            );
        }
        if let (Some(action), false) = (
            &handler.sleep,
            matches!(self, HookError::InvalidHandler { .. }),
        ) {
            return format!(
                "Sleep lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {self}",
                action.seconds
            );
        }
        format!("Cannot run handler: {self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::path::PathBuf;

    fn target() -> ProbeTarget {
        ProbeTarget {
            pod_ip: "127.0.0.1".parse().expect("ip"),
            container_ports: Vec::new(),
            exec_binary: PathBuf::from("/nonexistent"),
            instance_dir: PathBuf::from("/nonexistent"),
            pid: 1,
        }
    }

    #[test]
    fn messages_are_the_kubelets() {
        let handler = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), "exit 3".into()]),
            }),
            ..Default::default()
        };
        let err = HookError::ExecFailed {
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            exit_code: 3,
            output: "oops\n".into(),
        };
        assert_eq!(
            err.describe(&handler, "app", "web_default(u1)"),
            "Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"web_default(u1)\" failed - error: command 'sh -c exit 3' exited with 3: oops\n, message: \"oops\\n\""
        );
        let handler = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/stop".into()),
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = HookError::Http(
            "Get \"http://10.0.0.1:80/stop\": dial tcp 10.0.0.1:80: connect: connection refused"
                .into(),
        );
        assert_eq!(
            err.describe(&handler, "app", "p"),
            "HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"p\" failed - error: Get \"http://10.0.0.1:80/stop\": dial tcp 10.0.0.1:80: connect: connection refused"
        );
        assert_eq!(
            HookKind::PostStart.failure_event(),
            ("FailedPostStartHook", "PostStartHook failed")
        );
        assert_eq!(
            HookKind::PreStop.failure_event(),
            ("FailedPreStopHook", "PreStopHook failed")
        );
    }

    #[tokio::test]
    async fn sleep_handler_sleeps_or_is_cut_short() {
        let one_second = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        assert!(run_hook(&one_second, &target(), Duration::from_secs(30))
            .await
            .is_ok());
        assert!(started.elapsed() >= Duration::from_secs(1));
        let handler = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 5 }),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let err = run_hook(&handler, &target(), Duration::from_millis(100)).await;
        assert!(matches!(err, Err(HookError::SleepInterrupted)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.map_err(|e| e.describe(&handler, "app", "p")),
            Err("Sleep lifecycle hook (5) for Container \"app\" in Pod \"p\" failed - error: container terminated before sleep hook finished".into())
        );
    }

    #[tokio::test]
    async fn tcp_socket_and_empty_handlers_are_refused() {
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                host: None,
            }),
            ..Default::default()
        };
        let err = run_hook(&tcp, &target(), Duration::from_secs(1)).await;
        assert!(
            matches!(err, Err(HookError::InvalidHandler { .. })),
            "{err:?}"
        );
        let err = run_hook(
            &LifecycleHandler::default(),
            &target(),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            err.map_err(|e| e.describe(&LifecycleHandler::default(), "app", "p")),
            Err("Cannot run handler: invalid handler: no exec, httpGet or sleep action".into())
        );
    }
}

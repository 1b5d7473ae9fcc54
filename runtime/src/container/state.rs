//! The shim's state files, read by the daemon (also after its own restart).

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ContainerError;

/// Name of the file describing a started container, in the shim's state dir.
pub const SHIM_STATE_FILE: &str = "shim.json";
/// Name of the file describing how the container ended, in the shim's state dir.
pub const EXIT_STATE_FILE: &str = "exit.json";
/// Name of the shim's own diagnostics log, in the shim's state dir.
pub const SHIM_LOG_FILE: &str = "shim.log";

/// The one JSON line the shim writes to its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShimReply {
    /// The container reached `execve`; `pid` is its init's host pid.
    Started {
        /// Host pid of the container's init.
        pid: i32,
    },
    /// The container could not be started: `"<step>: <reason>"`.
    Failed {
        /// The failing step and why.
        error: String,
    },
}

/// `shim.json`: written once the container runs, before the shim answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    /// Pid of the shim process.
    pub shim_pid: i32,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot): tells a
    /// reused pid from the container's.
    pub pid_start_time: u64,
    /// When the container started, RFC 3339 with nanoseconds, UTC.
    pub started_at: String,
}

/// `exit.json`: written when the container has exited and its output is drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitState {
    /// Exit code, 128 + signal number when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed the container, if any.
    pub signal: Option<i32>,
    /// When the exit was seen, RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
}

/// Reads `shim.json` from a shim state dir; `Ok(None)` when the shim has not written it.
pub fn read_shim_state(state_dir: &Path) -> Result<Option<ShimState>, ContainerError> {
    read_json(&state_dir.join(SHIM_STATE_FILE))
}

/// Reads `exit.json` from a shim state dir; `Ok(None)` while the container has not exited.
pub fn read_exit_state(state_dir: &Path) -> Result<Option<ExitState>, ContainerError> {
    read_json(&state_dir.join(EXIT_STATE_FILE))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ContainerError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(ContainerError::io(format!("read {}", path.display()), err)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ContainerError::Json {
            what: path.display().to_string(),
            source,
        })
}

/// Writes `value` as JSON to `state_dir/name` atomically (temporary file, then rename).
pub(crate) fn write_state<T: Serialize>(
    state_dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), ContainerError> {
    let path = state_dir.join(name);
    let tmp = state_dir.join(format!(".{name}.tmp"));
    let json = serde_json::to_vec(value).map_err(|source| ContainerError::Json {
        what: path.display().to_string(),
        source,
    })?;
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|err| ContainerError::io(format!("write {}", path.display()), err))
}

/// The current time as RFC 3339 with nanoseconds in UTC, e.g. `2024-05-01T10:00:00.123456789Z`.
pub(crate) fn now_rfc3339_nanos() -> String {
    format!("{:.9}", jiff::Timestamp::now())
}

/// What `/proc/<pid>/stat` tells about a process: whether it has ended, and when it
/// started (which tells a reused pid from the process recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `Z` (ended, not reaped), `X` (dead), …
    pub state: char,
    /// Field 22 (`starttime`), clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Reads the process's stat line; `None` when there is no such process.
    pub fn read(pid: i32) -> Option<ProcStat> {
        parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Whether the process still runs (has not ended, even if not yet reaped).
    pub fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Whether `pid` is still the process that started at `start_time` and has not ended.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.running() && s.start_time == start_time)
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`.
pub fn process_start_time(pid: i32) -> Result<u64, ContainerError> {
    let path = format!("/proc/{pid}/stat");
    let stat =
        fs::read_to_string(&path).map_err(|err| ContainerError::io(format!("read {path}"), err))?;
    parse_start_time(&stat).ok_or_else(|| ContainerError::Invalid {
        what: path,
        reason: "no start time field".into(),
    })
}

/// Extracts field 22 from a `/proc/<pid>/stat` line.
fn parse_start_time(stat: &str) -> Option<u64> {
    parse_stat(stat).map(|s| s.start_time)
}

/// Fields 3 and 22 of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state come fields 4.., so field 22 is the 19th of those.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_comm() {
        let stat =
            "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn state_files_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_exit_state(dir.path()).expect("read"), None);
        let exit = ExitState {
            exit_code: 137,
            signal: Some(9),
            finished_at: now_rfc3339_nanos(),
        };
        write_state(dir.path(), EXIT_STATE_FILE, &exit).expect("write");
        assert_eq!(read_exit_state(dir.path()).expect("read"), Some(exit));
    }

    #[test]
    fn reply_is_one_of_two_shapes() {
        let started: ShimReply = serde_json::from_str(r#"{"pid":42}"#).expect("parse");
        assert_eq!(started, ShimReply::Started { pid: 42 });
        let failed: ShimReply = serde_json::from_str(r#"{"error":"exec: boom"}"#).expect("parse");
        assert_eq!(
            failed,
            ShimReply::Failed {
                error: "exec: boom".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&ShimReply::Started { pid: 7 }).expect("json"),
            r#"{"pid":7}"#
        );
    }

    #[test]
    fn timestamps_have_nine_fraction_digits() {
        let now = now_rfc3339_nanos();
        let fraction = now.split('.').nth(1).expect("fraction");
        assert_eq!(fraction.len(), 10, "{now}");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn own_process_is_alive_and_its_start_time_matters() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).unwrap();
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(i32::MAX, start));
    }
}

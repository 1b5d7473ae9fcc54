//! What the daemon keeps on disk about each pod, so a restarted daemon (even after
//! `kill -9`) adopts what runs instead of starting it twice: `{root}/pods/{uid}/record.json`,
//! rewritten atomically after every change to the pod's sandbox or containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The pod's sandbox: pause, its namespaces, its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub pause_pid: i32,
    /// Field 22 of /proc/PID/stat, to tell a reused pid from pause.
    pub pause_start_time: u64,
    /// The pause that is PID 1 of the pod's shared PID namespace (`shareProcessNamespace`).
    #[serde(default)]
    pub pid_namespace_init: Option<i32>,
    /// Its start time (field 22 of /proc/PID/stat), to tell it from a reused pid.
    #[serde(default)]
    pub pid_namespace_init_start_time: Option<u64>,
    pub pod_ip: Option<String>,
    pub host_veth: Option<String>,
    /// Bind-mounted namespace files (net, ipc, uts), by kind.
    pub namespaces: BTreeMap<String, PathBuf>,
    pub created_at: String,
}

/// One container: its latest instance and the one before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Instances started so far; the latest lives in `containers/{name}/{attempts-1}`.
    pub attempts: i32,
    /// How the instance before the latest ended (for `lastState`).
    pub last_exit: Option<ExitRecord>,
    pub image: String,
    pub image_id: String,
    /// The container's `oom_kill` count before the latest instance started.
    pub oom_kills_before: u64,
    /// Consecutive failed starts or crashes (drives the back-off).
    pub backoff_restarts: i32,
    pub backoff_until: Option<String>,
    /// The instance whose exit `backoff_until` was computed for.
    pub backoff_attempt: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
}

/// Everything the node remembers about a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub qos: String,
    pub sandbox: Option<SandboxRecord>,
    pub init_containers: BTreeMap<String, ContainerRecord>,
    pub containers: BTreeMap<String, ContainerRecord>,
    pub first_seen: String,
    /// The pod's address, kept after the sandbox is gone (finished pods report it still).
    pub last_pod_ip: Option<String>,
}

pub const RECORD_FILE: &str = "record.json";

impl PodRecord {
    pub fn load(pod_dir: &Path) -> Result<Option<PodRecord>> {
        let path = pod_dir.join(RECORD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the record atomically (temp file, fsync, rename).
    pub fn save(&self, pod_dir: &Path) -> Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(pod_dir)
            .with_context(|| format!("creating {}", pod_dir.display()))?;
        let path = pod_dir.join(RECORD_FILE);
        let tmp = pod_dir.join(format!("{RECORD_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).context("encoding pod record")?;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} into place", tmp.display()))?;
        Ok(())
    }

    pub fn container(&self, name: &str, init: bool) -> Option<&ContainerRecord> {
        if init {
            self.init_containers.get(name)
        } else {
            self.containers.get(name)
        }
    }

    pub fn container_mut(&mut self, name: &str, init: bool) -> &mut ContainerRecord {
        let map = if init {
            &mut self.init_containers
        } else {
            &mut self.containers
        };
        map.entry(name.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PodRecord::load(dir.path()).unwrap().is_none());
        let mut rec = PodRecord {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "web".into(),
            ..Default::default()
        };
        rec.container_mut("app", false).attempts = 2;
        rec.save(dir.path()).unwrap();
        assert_eq!(PodRecord::load(dir.path()).unwrap(), Some(rec));
    }
}

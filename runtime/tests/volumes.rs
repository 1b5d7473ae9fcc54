//! Pod volumes for real: directories, tmpfs mounts, atomic updates and subPath bind mounts
//! in temp dirs (root needed). Every test owns its pod dir; a guard tears it down (and
//! unmounts anything left) even when the test fails, so tests run in parallel safely.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use nix::mount::{umount2, MntFlags};
use serde_json::{json, Value};
use skiff_runtime::volumes::{
    self, MountSpec, PreparedVolume, VolumeError, VolumeKind, VolumeSources,
};

/// A temp pod dir that is torn down (teardown, then a forced unmount of anything left)
/// before the temp dir is deleted.
struct PodDir {
    dir: tempfile::TempDir,
}

impl PodDir {
    fn new() -> PodDir {
        PodDir {
            dir: tempfile::Builder::new()
                .prefix("skiff-volumes-test-")
                .tempdir()
                .expect("create temp pod dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PodDir {
    fn drop(&mut self) {
        let _ = volumes::teardown(self.dir.path());
        for (point, _, _) in mounts_below(self.dir.path()) {
            let _ = umount2(&point, MntFlags::MNT_DETACH);
        }
    }
}

/// Mounts strictly below `dir`: (mount point, fs type, super options).
fn mounts_below(dir: &Path) -> Vec<(PathBuf, String, String)> {
    let Ok(root) = dir.canonicalize() else {
        return Vec::new();
    };
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut found: Vec<(PathBuf, String, String)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let point = PathBuf::from(fields[4]);
            (point != root && point.starts_with(&root)).then(|| {
                (
                    point,
                    fields[dash + 1].to_string(),
                    fields[dash + 3].to_string(),
                )
            })
        })
        .collect();
    found.sort_by_key(|(point, _, _)| std::cmp::Reverse(point.components().count()));
    found
}

fn pod(volumes: Value, containers: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "uid": "5f1c-uid",
            "labels": {"tier": "front", "app": "web"},
            "annotations": {"owner": "team \"a\""}
        },
        "spec": {"volumes": volumes, "containers": containers}
    }))
    .expect("pod json")
}

fn simple_pod(volumes: Value) -> Pod {
    pod(volumes, json!([{"name": "main", "image": "busybox"}]))
}

fn config_map(data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": "ignored"}, "data": data}))
        .expect("configmap json")
}

/// A secret as a client writes it, with `stringData` (not yet folded into `data`).
fn string_secret(key: &str, value: &str) -> Secret {
    Secret {
        string_data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn data_target(volume_dir: &Path) -> PathBuf {
    fs::read_link(volume_dir.join("..data")).expect("..data symlink")
}

fn one(prepared: Vec<PreparedVolume>) -> PreparedVolume {
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    prepared.into_iter().next().expect("one volume")
}

fn assert_torn_down(pod_dir: &Path) {
    volumes::teardown(pod_dir).expect("teardown");
    assert!(
        mounts_below(pod_dir).is_empty(),
        "{:?}",
        mounts_below(pod_dir)
    );
    assert!(!pod_dir.join("volumes").exists());
    assert!(!pod_dir.join("volume-subpaths").exists());
    // Idempotent.
    volumes::teardown(pod_dir).expect("second teardown");
}

#[test]
fn empty_dir_on_disk_and_in_memory() {
    let pod_dir = PodDir::new();
    let pod = simple_pod(json!([
        {"name": "scratch", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "ram", "emptyDir": {"medium": "Memory"}},
        {"name": "defaulted"}
    ]));
    let sources = VolumeSources::default();
    let prepared = volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare");
    assert_eq!(prepared.len(), 4);
    for volume in &prepared {
        assert_eq!(volume.kind, VolumeKind::EmptyDir);
        assert!(!volume.read_only);
        assert!(volume.host_path.is_dir(), "{volume:?}");
        assert_eq!(mode_of(&volume.host_path), 0o777, "{volume:?}");
        assert!(volume
            .host_path
            .starts_with(pod_dir.path().canonicalize().unwrap()));
    }
    let mounts = mounts_below(pod_dir.path());
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    let cache = mounts
        .iter()
        .find(|(point, _, _)| *point == prepared[1].host_path)
        .expect("cache is a mount");
    assert_eq!(cache.1, "tmpfs");
    assert!(
        cache.2.split(',').any(|o| o == "size=16384k"),
        "{}",
        cache.2
    );
    let ram = mounts
        .iter()
        .find(|(point, _, _)| *point == prepared[2].host_path)
        .expect("ram is a mount");
    assert_eq!(ram.1, "tmpfs");

    fs::write(prepared[1].host_path.join("kept"), b"x").unwrap();
    // A restarted daemon prepares again: no second tmpfs, files kept.
    let again = volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare again");
    assert_eq!(again, prepared);
    assert_eq!(mounts_below(pod_dir.path()).len(), 2);
    assert!(prepared[1].host_path.join("kept").exists());

    assert_torn_down(pod_dir.path());
}

#[test]
fn host_path_types_are_checked() {
    let pod_dir = PodDir::new();
    let host = tempfile::tempdir().unwrap();
    let sources = VolumeSources::default();
    let prepare_one = |path: &Path, type_: &str| {
        let pod = simple_pod(json!([
            {"name": "host", "hostPath": {"path": path, "type": type_}}
        ]));
        volumes::prepare(&pod, pod_dir.path(), &sources).map(one)
    };
    let error_text = |result: Result<PreparedVolume, VolumeError>| match result {
        Ok(volume) => panic!("expected an error, got {volume:?}"),
        Err(e) => e.to_string(),
    };

    // DirectoryOrCreate makes the directory and its parents, 0755.
    let created = host.path().join("a/b/c");
    let volume = prepare_one(&created, "DirectoryOrCreate").expect("DirectoryOrCreate");
    assert_eq!(volume.host_path, created);
    assert_eq!(volume.kind, VolumeKind::HostPath);
    assert!(created.is_dir());
    assert_eq!(mode_of(&created), 0o755);
    prepare_one(&created, "Directory").expect("Directory");
    prepare_one(&created, "DirectoryOrCreate").expect("DirectoryOrCreate again");

    // FileOrCreate makes the file (0644) but not its parent.
    let file = host.path().join("a/file.txt");
    prepare_one(&file, "FileOrCreate").expect("FileOrCreate");
    assert!(file.is_file());
    assert_eq!(mode_of(&file), 0o644);
    prepare_one(&file, "File").expect("File");
    let orphan = host.path().join("missing-parent/file.txt");
    let text = error_text(prepare_one(&orphan, "FileOrCreate"));
    assert!(text.contains("parent directory does not exist"), "{text}");
    assert!(!orphan.parent().unwrap().exists());

    // Wrong types name the volume, the path, the expected and the found type.
    let text = error_text(prepare_one(&created, "File"));
    assert!(text.contains("\"host\""), "{text}");
    assert!(text.contains(created.to_str().unwrap()), "{text}");
    assert!(text.contains("expected File"), "{text}");
    assert!(text.contains("found a directory"), "{text}");
    let text = error_text(prepare_one(&file, "Directory"));
    assert!(
        text.contains("expected Directory, found a regular file"),
        "{text}"
    );
    let text = error_text(prepare_one(&host.path().join("nope"), "Directory"));
    assert!(text.contains("does not exist"), "{text}");

    // Sockets, devices.
    let socket_path = host.path().join("app.sock");
    let _listener = UnixListener::bind(&socket_path).expect("bind unix socket");
    prepare_one(&socket_path, "Socket").expect("Socket");
    let text = error_text(prepare_one(&file, "Socket"));
    assert!(
        text.contains("expected Socket, found a regular file"),
        "{text}"
    );
    prepare_one(Path::new("/dev/null"), "CharDevice").expect("CharDevice");
    let text = error_text(prepare_one(Path::new("/dev/null"), "BlockDevice"));
    assert!(
        text.contains("expected BlockDevice, found a character device"),
        "{text}"
    );
    let block_device = fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|entry| fs::metadata(entry.path()).is_ok_and(|m| m.file_type().is_block_device()));
    if let Some(device) = block_device {
        prepare_one(&device.path(), "BlockDevice").expect("BlockDevice");
    }
    let text = error_text(prepare_one(&socket_path, "CharDevice"));
    assert!(text.contains("found a socket"), "{text}");

    // No type: nothing checked; unknown type: an error.
    prepare_one(&host.path().join("not-there"), "").expect("untyped");
    assert!(!host.path().join("not-there").exists());
    let text = error_text(prepare_one(&created, "Folder"));
    assert!(text.contains("unknown hostPath type \"Folder\""), "{text}");

    // Teardown never touches hostPath volumes.
    assert_torn_down(pod_dir.path());
    assert!(created.is_dir() && file.is_file());
}

#[test]
fn config_map_items_modes_binary_data_and_optional() {
    let pod_dir = PodDir::new();
    let mut sources = VolumeSources::default();
    let mut app_config = config_map(json!({"a.conf": "hello", "b.conf": "bee"}));
    app_config.binary_data = Some(BTreeMap::from([(
        "blob".to_string(),
        k8s_openapi::ByteString(vec![0, 159, 146, 150]),
    )]));
    sources.config_maps.insert("app-config".into(), app_config);
    let pod = simple_pod(json!([
        {"name": "all", "configMap": {"name": "app-config", "defaultMode": 0o640}},
        {"name": "picked", "configMap": {"name": "app-config", "items": [
            {"key": "a.conf", "path": "nested/dir/a.txt", "mode": 0o600},
            {"key": "blob", "path": "blob.bin"}
        ]}},
        {"name": "maybe", "configMap": {"name": "absent", "optional": true}},
        {"name": "maybe-key", "configMap": {"name": "app-config", "optional": true,
            "items": [{"key": "nope", "path": "nope"}, {"key": "b.conf", "path": "b"}]}}
    ]));
    let prepared = volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare");
    assert!(prepared
        .iter()
        .all(|v| v.read_only && v.kind == VolumeKind::ConfigMap));
    // configMaps live on disk.
    assert!(mounts_below(pod_dir.path()).is_empty());

    let all = &prepared[0].host_path;
    assert_eq!(fs::read_to_string(all.join("a.conf")).unwrap(), "hello");
    assert_eq!(fs::read_to_string(all.join("b.conf")).unwrap(), "bee");
    assert_eq!(fs::read(all.join("blob")).unwrap(), vec![0, 159, 146, 150]);
    assert_eq!(mode_of(&all.join("a.conf")), 0o640);
    assert_eq!(
        fs::read_link(all.join("a.conf")).unwrap(),
        Path::new("..data/a.conf")
    );
    let data_dir = data_target(all);
    let data_name = data_dir.to_str().unwrap();
    assert!(
        data_name.starts_with("..") && data_name.len() == "..2026_11_24_03_10_00.123456789".len(),
        "{data_name}"
    );
    assert_eq!(mode_of(&all.join(&data_dir)), 0o755);

    let picked = &prepared[1].host_path;
    assert_eq!(
        fs::read_to_string(picked.join("nested/dir/a.txt")).unwrap(),
        "hello"
    );
    assert_eq!(mode_of(&picked.join("nested/dir/a.txt")), 0o600);
    assert_eq!(mode_of(&picked.join("blob.bin")), 0o644);
    assert_eq!(
        fs::read_link(picked.join("nested")).unwrap(),
        Path::new("..data/nested")
    );
    assert!(!picked.join("b.conf").exists());

    let maybe = &prepared[2].host_path;
    let visible: Vec<String> = fs::read_dir(maybe)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with(".."))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    assert_eq!(
        fs::read_to_string(prepared[3].host_path.join("b")).unwrap(),
        "bee"
    );
    assert!(!prepared[3].host_path.join("nope").exists());

    // Not optional: a missing object or key is an error naming it.
    let missing = simple_pod(json!([{"name": "cfg", "configMap": {"name": "absent"}}]));
    let text = volumes::prepare(&missing, pod_dir.path(), &sources)
        .unwrap_err()
        .to_string();
    assert!(text.contains("configMap \"absent\" not found"), "{text}");
    let missing_key = simple_pod(json!([{"name": "cfg", "configMap": {"name": "app-config",
        "items": [{"key": "c.conf", "path": "c"}]}}]));
    let text = volumes::prepare(&missing_key, pod_dir.path(), &sources)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("key \"c.conf\" not found in configMap \"app-config\""),
        "{text}"
    );
    let escaping = simple_pod(json!([{"name": "cfg", "configMap": {"name": "app-config",
        "items": [{"key": "a.conf", "path": "../escape"}]}}]));
    let text = volumes::prepare(&escaping, pod_dir.path(), &sources)
        .unwrap_err()
        .to_string();
    assert!(text.contains("must not contain '..'"), "{text}");

    assert_torn_down(pod_dir.path());
}

#[test]
fn secrets_live_on_tmpfs() {
    let pod_dir = PodDir::new();
    let mut sources = VolumeSources::default();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "data": {"username": "YWRtaW4=", "password": "czNjcmV0"}
    }))
    .unwrap();
    sources.secrets.insert("creds".into(), secret);
    let pod = simple_pod(json!([
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "strict", "secret": {"secretName": "creds", "defaultMode": 0o400,
            "items": [{"key": "password", "path": "pw"}]}},
        {"name": "none", "secret": {"secretName": "gone", "optional": true}}
    ]));
    let prepared = volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare");
    let mounts = mounts_below(pod_dir.path());
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    for volume in &prepared {
        assert!(volume.read_only);
        let mount = mounts
            .iter()
            .find(|(point, _, _)| *point == volume.host_path)
            .unwrap_or_else(|| panic!("{} is not a mount", volume.host_path.display()));
        assert_eq!(mount.1, "tmpfs");
    }
    let creds = &prepared[0].host_path;
    assert_eq!(fs::read_to_string(creds.join("username")).unwrap(), "admin");
    assert_eq!(
        fs::read_to_string(creds.join("password")).unwrap(),
        "s3cret"
    );
    assert_eq!(mode_of(&creds.join("password")), 0o644);
    assert_eq!(
        fs::read_to_string(prepared[1].host_path.join("pw")).unwrap(),
        "s3cret"
    );
    assert_eq!(mode_of(&prepared[1].host_path.join("pw")), 0o400);
    assert!(!prepared[1].host_path.join("username").exists());

    // Prepared again: same mounts, same data dir.
    let before = data_target(creds);
    volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare again");
    assert_eq!(mounts_below(pod_dir.path()).len(), 3);
    assert_eq!(data_target(creds), before);

    let missing = simple_pod(json!([{"name": "s", "secret": {"secretName": "gone"}}]));
    let text = volumes::prepare(&missing, pod_dir.path(), &sources)
        .unwrap_err()
        .to_string();
    assert!(text.contains("secret \"gone\" not found"), "{text}");

    assert_torn_down(pod_dir.path());
}

#[test]
fn update_rewrites_only_changed_volumes_atomically() {
    let pod_dir = PodDir::new();
    let mut sources = VolumeSources::default();
    sources.config_maps.insert(
        "cfg".into(),
        config_map(json!({"settings.yaml": "v: 1", "extra": "e"})),
    );
    sources
        .config_maps
        .insert("other".into(), config_map(json!({"x": "stays"})));
    sources
        .secrets
        .insert("tok".into(), string_secret("token", "t1"));
    let pod = simple_pod(json!([
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "other", "configMap": {"name": "other"}},
        {"name": "tok", "secret": {"secretName": "tok"}},
        {"name": "scratch", "emptyDir": {}}
    ]));
    let prepared = volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare");
    let cfg = prepared[0].host_path.clone();
    let other = prepared[1].host_path.clone();
    let tok = prepared[2].host_path.clone();

    // A container bind-mounts the volume directory; simulate it with a bind mount.
    let container_view = pod_dir.path().join("container-view");
    fs::create_dir(&container_view).unwrap();
    nix::mount::mount(
        Some(&cfg),
        &container_view,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind the volume dir");
    assert_eq!(
        fs::read_to_string(container_view.join("settings.yaml")).unwrap(),
        "v: 1"
    );

    let unchanged = volumes::update(&pod, pod_dir.path(), &sources).expect("no-op update");
    assert!(unchanged.is_empty(), "{unchanged:?}");

    let old_cfg_data = data_target(&cfg);
    let old_other_data = data_target(&other);
    let old_tok_data = data_target(&tok);
    sources
        .config_maps
        .insert("cfg".into(), config_map(json!({"settings.yaml": "v: 2"})));
    let updated = volumes::update(&pod, pod_dir.path(), &sources).expect("update");
    assert_eq!(updated, vec!["cfg".to_string()]);
    assert_eq!(
        fs::read_to_string(container_view.join("settings.yaml")).unwrap(),
        "v: 2"
    );
    assert_eq!(
        fs::read_to_string(cfg.join("settings.yaml")).unwrap(),
        "v: 2"
    );
    assert!(!cfg.join("extra").exists(), "removed key still visible");
    assert!(fs::symlink_metadata(cfg.join("extra")).is_err());
    let new_cfg_data = data_target(&cfg);
    assert_ne!(new_cfg_data, old_cfg_data);
    assert!(
        !cfg.join(&old_cfg_data).exists(),
        "old data dir left behind"
    );
    assert_eq!(data_target(&other), old_other_data);
    assert_eq!(data_target(&tok), old_tok_data);

    // A secret update is written on its tmpfs too.
    sources
        .secrets
        .insert("tok".into(), string_secret("token", "t2"));
    assert_eq!(
        volumes::update(&pod, pod_dir.path(), &sources).unwrap(),
        vec!["tok"]
    );
    assert_eq!(fs::read_to_string(tok.join("token")).unwrap(), "t2");
    assert!(mounts_below(pod_dir.path())
        .iter()
        .any(|(p, fs_type, _)| *p == tok && fs_type == "tmpfs"));

    // An object larger than the secret's tmpfs: the tmpfs grows to hold it.
    let big = "x".repeat(3 << 20);
    sources
        .secrets
        .insert("tok".into(), string_secret("token", &big));
    assert_eq!(
        volumes::update(&pod, pod_dir.path(), &sources).unwrap(),
        vec!["tok"]
    );
    assert_eq!(
        fs::read_to_string(tok.join("token")).unwrap().len(),
        big.len()
    );
    let tok_mounts: Vec<_> = mounts_below(pod_dir.path())
        .into_iter()
        .filter(|(point, _, _)| *point == tok)
        .collect();
    assert_eq!(tok_mounts.len(), 1, "{tok_mounts:?}");
    let size_kib: u64 = tok_mounts[0]
        .2
        .split(',')
        .find_map(|option| option.strip_prefix("size="))
        .and_then(|size| size.strip_suffix('k'))
        .and_then(|kib| kib.parse().ok())
        .expect("tmpfs size option");
    assert!(size_kib >= 2 * 3 * 1024, "tmpfs not grown: {size_kib}k");

    // A vanished object that is not optional: the old files stay, the error names it.
    sources.config_maps.remove("other");
    let err = volumes::update(&pod, pod_dir.path(), &sources).unwrap_err();
    assert!(
        err.to_string().contains("configMap \"other\" not found"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(other.join("x")).unwrap(), "stays");

    assert_torn_down(pod_dir.path());
    assert!(!container_view.exists() || fs::read_dir(&container_view).unwrap().next().is_none());
}

#[test]
fn downward_api_files_follow_labels_and_annotations() {
    let pod_dir = PodDir::new();
    let sources = VolumeSources::default();
    let volumes_json = json!([{"name": "podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "meta/namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o600},
        {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
        {"path": "cpu_limit", "resourceFieldRef": {"containerName": "main",
            "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "mem_request", "resourceFieldRef": {"containerName": "main",
            "resource": "requests.memory", "divisor": "1Mi"}}
    ]}}]);
    let containers = json!([{"name": "main", "image": "busybox", "resources": {
        "limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"memory": "100Mi"}}}]);
    let mut pod = pod(volumes_json, containers);
    let volume = one(volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare"));
    assert_eq!(volume.kind, VolumeKind::DownwardApi);
    assert!(volume.read_only);
    let dir = &volume.host_path;
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("labels"), "app=\"web\"\ntier=\"front\"");
    assert_eq!(read("annotations"), "owner=\"team \\\"a\\\"\"");
    assert_eq!(read("name"), "web-0");
    assert_eq!(read("meta/namespace"), "default");
    assert_eq!(read("uid"), "5f1c-uid");
    assert_eq!(mode_of(&dir.join("uid")), 0o600);
    assert_eq!(read("tier"), "front");
    assert_eq!(read("cpu_limit"), "500");
    assert_eq!(read("mem_request"), "100");

    pod.metadata.labels = Some(BTreeMap::from([
        ("tier".to_string(), "back".to_string()),
        ("zone".to_string(), "b".to_string()),
    ]));
    assert_eq!(
        volumes::update(&pod, pod_dir.path(), &sources).unwrap(),
        vec!["podinfo"]
    );
    assert_eq!(read("labels"), "tier=\"back\"\nzone=\"b\"");
    assert_eq!(read("tier"), "back");
    assert!(volumes::update(&pod, pod_dir.path(), &sources)
        .unwrap()
        .is_empty());

    let bad = simple_pod(json!([{"name": "podinfo", "downwardAPI": {"items": [
        {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}]));
    let text = volumes::prepare(&bad, pod_dir.path(), &sources)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("\"spec.nodeName\" is not supported"),
        "{text}"
    );

    assert_torn_down(pod_dir.path());
}

#[test]
fn projected_volume_combines_sources() {
    let pod_dir = PodDir::new();
    let mut sources = VolumeSources::default();
    sources
        .config_maps
        .insert("cfg".into(), config_map(json!({"a": "1"})));
    sources
        .secrets
        .insert("sec".into(), string_secret("s", "2"));
    let pod = simple_pod(
        json!([{"name": "all-in-one", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "cfg"}},
            {"secret": {"name": "sec", "items": [{"key": "s", "path": "secret/s"}]}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
        ]}}]),
    );
    let volume = one(volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare"));
    assert_eq!(volume.kind, VolumeKind::Projected);
    assert_eq!(volume.omitted.len(), 1, "{:?}", volume.omitted);
    assert!(volume.omitted[0].contains("serviceAccountToken"));
    let dir = &volume.host_path;
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
    assert_eq!(fs::read_to_string(dir.join("secret/s")).unwrap(), "2");
    assert_eq!(fs::read_to_string(dir.join("name")).unwrap(), "web-0");
    assert_eq!(mode_of(&dir.join("a")), 0o440);
    assert!(!dir.join("token").exists());
    assert!(mounts_below(pod_dir.path())
        .iter()
        .any(|(p, t, _)| p == dir && t == "tmpfs"));
    assert_torn_down(pod_dir.path());
}

#[test]
fn claims_bound_to_host_path_or_local_volumes() {
    let pod_dir = PodDir::new();
    let storage = tempfile::tempdir().unwrap();
    let mut sources = VolumeSources {
        node_name: "node-a".into(),
        ..Default::default()
    };
    let claim = |volume_name: &str, phase: &str| -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "ignored", "namespace": "default"},
            "spec": {"volumeName": volume_name},
            "status": {"phase": phase}
        }))
        .unwrap()
    };
    let pv = |spec: Value| -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "ignored"}, "spec": spec})).unwrap()
    };
    sources
        .pvcs
        .insert("data".into(), claim("pv-host", "Bound"));
    sources.pvcs.insert("waiting".into(), claim("", "Pending"));
    sources
        .pvcs
        .insert("remote".into(), claim("pv-nfs", "Bound"));
    sources
        .pvcs
        .insert("elsewhere".into(), claim("pv-local", "Bound"));
    sources
        .pvcs
        .insert("local".into(), claim("pv-local-here", "Bound"));
    sources.pvs.insert(
        "pv-host".into(),
        pv(json!({"hostPath": {"path": storage.path()},
            "claimRef": {"name": "data", "namespace": "default"}})),
    );
    sources.pvs.insert(
        "pv-nfs".into(),
        pv(json!({"nfs": {"server": "10.0.0.1", "path": "/exports"}})),
    );
    let affinity = |node: &str| {
        json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}})
    };
    sources.pvs.insert(
        "pv-local".into(),
        pv(json!({"local": {"path": storage.path()}, "nodeAffinity": affinity("node-b")})),
    );
    sources.pvs.insert(
        "pv-local-here".into(),
        pv(json!({"local": {"path": storage.path()}, "nodeAffinity": affinity("node-a")})),
    );
    let prepare_claim = |claim: &str, read_only: bool| {
        let pod = simple_pod(json!([{"name": "vol", "persistentVolumeClaim":
            {"claimName": claim, "readOnly": read_only}}]));
        volumes::prepare(&pod, pod_dir.path(), &sources).map(one)
    };

    let volume = prepare_claim("data", true).expect("bound claim");
    assert_eq!(volume.kind, VolumeKind::PersistentVolumeClaim);
    assert_eq!(volume.host_path, storage.path());
    assert!(volume.read_only);
    assert!(!prepare_claim("data", false).unwrap().read_only);
    assert_eq!(
        prepare_claim("local", false).unwrap().host_path,
        storage.path()
    );

    let text = prepare_claim("waiting", false).unwrap_err().to_string();
    assert!(
        text.contains("persistentVolumeClaim \"waiting\": is not bound (phase Pending)"),
        "{text}"
    );
    let text = prepare_claim("absent", false).unwrap_err().to_string();
    assert!(text.contains("\"absent\": not found"), "{text}");
    let text = prepare_claim("remote", false).unwrap_err().to_string();
    assert!(text.contains("\"pv-nfs\" is of type nfs"), "{text}");
    let text = prepare_claim("elsewhere", false).unwrap_err().to_string();
    assert!(text.contains("another node"), "{text}");

    assert_torn_down(pod_dir.path());
    assert!(storage.path().is_dir());
}

#[test]
fn unsupported_volume_types_are_named() {
    let pod_dir = PodDir::new();
    let pod = simple_pod(json!([{"name": "shared", "nfs": {"server": "nfs.local", "path": "/x"}}]));
    let err = volumes::prepare(&pod, pod_dir.path(), &VolumeSources::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume \"shared\": volume type nfs is not supported by skiff"
    );
    assert_torn_down(pod_dir.path());
}

fn container(mounts: Value, privileged: bool) -> Container {
    serde_json::from_value(json!({
        "name": "app",
        "image": "busybox",
        "volumeMounts": mounts,
        "securityContext": {"privileged": privileged}
    }))
    .unwrap()
}

#[test]
fn container_mounts_resolve_sub_paths_inside_the_volume() {
    let pod_dir = PodDir::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("precious"), b"keep me").unwrap();
    let mut sources = VolumeSources::default();
    sources
        .config_maps
        .insert("cfg".into(), config_map(json!({"app.conf": "port=80"})));
    let pod = simple_pod(json!([
        {"name": "data", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "host", "hostPath": {"path": host.path(), "type": "Directory"}}
    ]));
    let prepared = volumes::prepare(&pod, pod_dir.path(), &sources).expect("prepare");
    let data = prepared[0].host_path.clone();
    let env = BTreeMap::from([("POD_NAME".to_string(), "web-0".to_string())]);

    let app = container(
        json!([
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/logs", "subPath": "logs/app", "readOnly": true},
            {"name": "data", "mountPath": "/mine", "subPathExpr": "per-pod/$(POD_NAME)",
                "mountPropagation": "HostToContainer"},
            {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "host", "mountPath": "/host", "subPath": "sub"}
        ]),
        false,
    );
    let mounts = volumes::container_mounts(&pod, &app, &prepared, pod_dir.path(), &env)
        .expect("container mounts");
    assert_eq!(mounts.len(), 6);
    assert_eq!(
        mounts[0],
        MountSpec {
            destination: "/data".into(),
            source: data.clone(),
            read_only: false,
            propagation: Some("rprivate"),
        }
    );
    // subPath: created in the volume, mounted through a stable bind under volume-subpaths.
    assert!(data.join("logs/app").is_dir());
    let subpaths = pod_dir
        .path()
        .canonicalize()
        .unwrap()
        .join("volume-subpaths");
    assert_eq!(mounts[1].source, subpaths.join("data/app/1"));
    assert!(mounts[1].read_only);
    fs::write(mounts[1].source.join("through-bind"), b"x").unwrap();
    assert!(data.join("logs/app/through-bind").exists());
    assert!(data.join("per-pod/web-0").is_dir());
    assert_eq!(
        mode_of(&data.join("per-pod")),
        0o777,
        "created with the volume's mode"
    );
    assert_eq!(mounts[2].propagation, Some("rslave"));
    // A configMap key: a bind of the file, read-only whatever the mount says.
    assert_eq!(fs::read_to_string(&mounts[3].source).unwrap(), "port=80");
    assert!(mounts[3].source.is_file());
    assert!(mounts[3].read_only && mounts[4].read_only);
    assert!(host.path().join("sub").is_dir());

    // Again (daemon restart): the same answer, no stacked bind mounts.
    let mount_count = mounts_below(pod_dir.path()).len();
    let again = volumes::container_mounts(&pod, &app, &prepared, pod_dir.path(), &env).unwrap();
    assert_eq!(again, mounts);
    assert_eq!(mounts_below(pod_dir.path()).len(), mount_count);

    // Escapes are refused: text, and symlinks out of the volume.
    std::os::unix::fs::symlink("/etc", data.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../..", data.join("up-link")).unwrap();
    std::os::unix::fs::symlink("logs", data.join("in-link")).unwrap();
    let try_sub = |field: &str, sub: &str| {
        let c = container(
            json!([{"name": "data", "mountPath": "/x", field: sub}]),
            false,
        );
        volumes::container_mounts(&pod, &c, &prepared, pod_dir.path(), &env)
    };
    for bad in [
        "../../etc",
        "/etc",
        "abs-link/passwd",
        "up-link/etc",
        "logs/../../x",
    ] {
        let err = try_sub("subPath", bad).expect_err(bad);
        assert!(err.to_string().contains("\"app\""), "{err}");
    }
    let err = try_sub("subPathExpr", "$(POD_NAME)/../..").unwrap_err();
    assert!(err.to_string().contains("must not contain '..'"), "{err}");
    let inside = try_sub("subPath", "in-link/app").expect("symlink inside the volume");
    assert_eq!(fs::read_dir(&inside[0].source).unwrap().count(), 1);
    assert!(!Path::new("/etc/passwd/x").exists());

    // Unknown volumes, bad propagation.
    let c = container(json!([{"name": "nope", "mountPath": "/x"}]), false);
    let text = volumes::container_mounts(&pod, &c, &prepared, pod_dir.path(), &env)
        .unwrap_err()
        .to_string();
    assert!(text.contains("no volume named \"nope\""), "{text}");
    let bidirectional =
        json!([{"name": "data", "mountPath": "/x", "mountPropagation": "Bidirectional"}]);
    let c = container(bidirectional.clone(), false);
    let text = volumes::container_mounts(&pod, &c, &prepared, pod_dir.path(), &env)
        .unwrap_err()
        .to_string();
    assert!(text.contains("only to privileged containers"), "{text}");
    let c = container(bidirectional, true);
    let mounts = volumes::container_mounts(&pod, &c, &prepared, pod_dir.path(), &env).unwrap();
    assert_eq!(mounts[0].propagation, Some("rshared"));

    // Teardown: no mounts, no files, hostPath content and the symlinks' targets untouched.
    assert_torn_down(pod_dir.path());
    assert_eq!(fs::read(host.path().join("precious")).unwrap(), b"keep me");
    assert!(host.path().join("sub").is_dir());
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn teardown_does_not_follow_symlinks_out_of_the_pod_dir() {
    let pod_dir = PodDir::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("file"), b"outside").unwrap();
    let pod = simple_pod(json!([
        {"name": "data", "emptyDir": {}},
        {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    ]));
    let prepared = volumes::prepare(&pod, pod_dir.path(), &VolumeSources::default()).unwrap();
    std::os::unix::fs::symlink(outside.path(), prepared[0].host_path.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), prepared[1].host_path.join("link")).unwrap();
    fs::write(prepared[1].host_path.join("in-ram"), b"x").unwrap();
    assert_torn_down(pod_dir.path());
    assert_eq!(fs::read(outside.path().join("file")).unwrap(), b"outside");
    // A pod dir that never existed is fine too.
    volumes::teardown(&pod_dir.path().join("never")).unwrap();
}

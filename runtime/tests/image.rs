//! The image store against the real file system and kernel: OCI layout import, layer
//! unpacking checked through a real overlayfs mount, path-traversal and digest checks,
//! garbage collection, and pulls from a real `docker-registry` on loopback.

#[path = "support/registry.rs"]
mod registry;
use registry::LocalRegistry;

#[path = "support/image/mod.rs"]
mod image_support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use image_support::*;
use skiff_runtime::image::{ImageError, ImageStore, PullOptions, PullProgress};

fn new_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ImageStore::open(dir.path()).expect("open store");
    (dir, store)
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let c_name = CString::new(name).ok()?;
    let mut buffer = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    if len < 0 {
        return None;
    }
    buffer.truncate(len as usize);
    Some(buffer)
}

fn dir_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An overlayfs mount under a temp dir, unmounted on drop.
struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    fn read_only(lower_dirs_lowest_first: &[PathBuf], target: &Path) -> Self {
        fs::create_dir_all(target).unwrap();
        let lower: Vec<String> = lower_dirs_lowest_first
            .iter()
            .rev()
            .map(|dir| dir.display().to_string())
            .collect();
        let options = format!("lowerdir={}", lower.join(":"));
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap_or_else(|err| panic!("mount overlay {options} on {}: {err}", target.display()));
        Self {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn import_then_list_and_resolve() {
    let (dir, store) = new_store();
    let layout = build_busybox_layout(dir.path());
    let records = store.import_archive(&layout.archive).await.unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.references, vec![BUSYBOX_REFERENCE.to_string()]);
    assert_eq!(record.manifest_digest, layout.image.manifest_digest);
    assert_eq!(record.config_digest, layout.image.config_digest);
    assert_eq!(record.image_id(), layout.image.config_digest);
    assert_eq!(
        record.size,
        (layout.image.config.len()
            + layout
                .image
                .layers
                .iter()
                .map(|l| l.blob.len())
                .sum::<usize>()) as u64
    );
    assert_eq!(
        record.repo_digests(),
        vec![format!(
            "docker.io/skiff-test/busybox@{}",
            layout.image.manifest_digest
        )]
    );
    let layer_dirs: Vec<PathBuf> = layout
        .image
        .layers
        .iter()
        .map(|layer| store.root().join("layers").join(hex_of(&layer.diff_id)))
        .collect();
    assert_eq!(record.layer_dirs, layer_dirs);
    let config = record.config.config().as_ref().expect("runtime config");
    assert_eq!(
        config.entrypoint().as_deref(),
        Some(&["/bin/sh".to_string(), "-c".to_string()][..])
    );
    assert_eq!(
        config.cmd().as_deref(),
        Some(&["cat /etc/hello".to_string()][..])
    );
    assert_eq!(config.working_dir().as_deref(), Some("/data"));
    assert!(config
        .env()
        .as_ref()
        .unwrap()
        .contains(&"SKIFF_TEST=1".to_string()));

    // Short names, digest pins and the image ID all resolve; other names do not.
    for name in [
        "skiff-test/busybox:1",
        BUSYBOX_REFERENCE,
        &format!("skiff-test/busybox@{}", layout.image.manifest_digest),
        &layout.image.config_digest,
    ] {
        let found = store.resolve(name).unwrap();
        assert_eq!(found.as_ref(), Some(record), "resolve {name}");
    }
    assert_eq!(store.resolve("skiff-test/busybox:2").unwrap(), None);
    assert_eq!(store.resolve("skiff-test/busybox").unwrap(), None);
    assert!(matches!(
        store.resolve("Not A Reference"),
        Err(ImageError::InvalidReference { .. })
    ));
    assert_eq!(store.list().unwrap(), records);

    // Reopening reads the same state back from disk; the staging dir is empty.
    let reopened = ImageStore::open(dir.path()).unwrap();
    assert_eq!(reopened.list().unwrap(), records);
    assert!(dir_names(&store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn unpacked_layers_keep_files_and_convert_whiteouts() {
    let (dir, store) = new_store();
    let layout = build_busybox_layout(dir.path());
    let record = store
        .import_archive(&layout.archive)
        .await
        .unwrap()
        .remove(0);
    let lower = &record.layer_dirs[0];
    let upper = &record.layer_dirs[1];

    let busybox = fs::metadata(lower.join("bin/busybox")).unwrap();
    assert_eq!(busybox.len(), fs::metadata(BUSYBOX).unwrap().len());
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(lower.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let hardlink = fs::metadata(lower.join("bin/busybox-hardlink")).unwrap();
    assert_eq!(hardlink.ino(), busybox.ino());
    assert_eq!(busybox.nlink(), 2);

    let owned = fs::metadata(lower.join("home/user/file")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000));
    assert_eq!(owned.permissions().mode() & 0o7777, 0o640);
    let home = fs::metadata(lower.join("home/user")).unwrap();
    assert_eq!(home.permissions().mode() & 0o7777, 0o750);
    let tmp = fs::metadata(lower.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(busybox.mtime(), 1_700_000_000);

    let node = fs::metadata(lower.join("dev/zero-node")).unwrap();
    assert!(node.file_type().is_char_device());
    assert_eq!(node.rdev(), nix::sys::stat::makedev(1, 5));

    // `.wh.removed` became a 0:0 character device named `removed`.
    assert!(!upper.join("etc/.wh.removed").exists());
    let whiteout = fs::symlink_metadata(upper.join("etc/removed")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    // The opaque marker became the overlay xattr.
    assert!(!upper.join("data/.wh..wh..opq").exists());
    assert_eq!(
        get_xattr(&upper.join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        get_xattr(&upper.join("etc"), "trusted.overlay.opaque"),
        None
    );
}

#[tokio::test]
async fn overlay_of_the_layers_shows_the_image_filesystem() {
    let (dir, store) = new_store();
    let layout = build_busybox_layout(dir.path());
    let record = store
        .import_archive(&layout.archive)
        .await
        .unwrap()
        .remove(0);
    let merged = dir.path().join("merged");
    let mount = OverlayMount::read_only(&record.layer_dirs, &merged);

    assert!(
        !merged.join("etc/removed").exists(),
        "whiteout hides /etc/removed"
    );
    assert_eq!(
        fs::read_to_string(merged.join("etc/hello")).unwrap(),
        HELLO_CONTENT
    );
    assert_eq!(
        dir_names(&merged.join("data")),
        vec!["new.txt"],
        "opaque /data"
    );
    assert!(merged.join("bin/busybox").is_file());
    assert!(merged.join("etc/passwd").is_file());

    // The image really runs: busybox's shell inside a chroot of the merged tree.
    let output = Command::new("chroot")
        .arg(&merged)
        .args([
            "/bin/sh",
            "-c",
            "cat /etc/hello; ls /data; test -e /etc/removed || echo gone",
        ])
        .output()
        .expect("run chroot");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{HELLO_CONTENT}new.txt\ngone\n")
    );
    drop(mount);
}

#[tokio::test]
async fn nested_index_resolves_to_this_platform() {
    let (dir, store) = new_store();
    let image = busybox_image();
    // A second "platform" whose manifest is never followed.
    let other = serde_json::json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": sha256(b"not here"),
        "size": 8,
        "platform": {"architecture": "s390x", "os": "linux"},
    });
    let (inner_index, inner_digest) = index_json(vec![
        other,
        image.manifest_descriptor(serde_json::json!({})),
    ]);
    let descriptor = serde_json::json!({
        "mediaType": INDEX_MEDIA_TYPE,
        "digest": inner_digest,
        "size": inner_index.len(),
        "annotations": {
            "io.containerd.image.name": "localhost:5000/multi/arch:v1",
            "org.opencontainers.image.ref.name": "v1",
        },
    });
    let mut blobs = image.blobs();
    blobs.push((inner_digest.clone(), inner_index));
    let archive = dir.path().join("multi.tar");
    write_oci_archive(&archive, &[descriptor], &blobs);

    let records = store.import_archive(&archive).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].references, vec!["localhost:5000/multi/arch:v1"]);
    assert_eq!(records[0].manifest_digest, image.manifest_digest);
    // The index blob itself is not kept: nothing refers to it.
    let blob_dir = store.root().join("blobs/sha256");
    assert!(!blob_dir.join(hex_of(&inner_digest)).exists());
}

#[tokio::test]
async fn bare_tag_names_need_a_repository() {
    let (dir, store) = new_store();
    let image = busybox_image();
    let archive = dir.path().join("tagged.tar");
    write_oci_archive(
        &archive,
        &[image
            .manifest_descriptor(serde_json::json!({"org.opencontainers.image.ref.name": "3.1"}))],
        &image.blobs(),
    );
    let err = store.import_archive(&archive).await.unwrap_err();
    assert!(matches!(err, ImageError::InvalidArchive { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    let records = store
        .import_archive_as(&archive, Some("localhost:5000/tools/busybox"))
        .await
        .unwrap();
    assert_eq!(
        records[0].references,
        vec!["localhost:5000/tools/busybox:3.1"]
    );
}

#[tokio::test]
async fn corrupted_blob_is_rejected() {
    let (dir, store) = new_store();
    let image = busybox_image();
    let mut blobs = image.blobs();
    // Layer 2 (plain tar) with one byte changed, still filed under its digest.
    blobs[1].1[600] ^= 0xff;
    let archive = dir.path().join("corrupt.tar");
    write_oci_archive(
        &archive,
        &[image.manifest_descriptor(
            serde_json::json!({"org.opencontainers.image.ref.name": BUSYBOX_REFERENCE}),
        )],
        &blobs,
    );
    let err = store.import_archive(&archive).await.unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, .. } => {
            assert_eq!(expected, &image.layers[1].digest)
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&image.layers[1].digest), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store
        .root()
        .join("blobs/sha256")
        .join(hex_of(&image.layers[1].digest))
        .exists());
    assert!(dir_names(&store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn wrong_diff_id_is_rejected_and_nothing_is_published() {
    let (dir, store) = new_store();
    let layers = busybox_layers();
    let mut diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    diff_ids[1] = sha256(b"some other tar");
    let image = TestImage::with_diff_ids(layers, busybox_runtime_config(), diff_ids.clone());
    let archive = dir.path().join("lying.tar");
    write_oci_archive(
        &archive,
        &[image.manifest_descriptor(
            serde_json::json!({"org.opencontainers.image.ref.name": "liar:1"}),
        )],
        &image.blobs(),
    );
    let err = store.import_archive(&archive).await.unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&diff_ids[1]), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store
        .root()
        .join("layers")
        .join(hex_of(&diff_ids[1]))
        .exists());
    assert!(dir_names(&store.root().join("tmp")).is_empty());
}

/// Imports an image whose only layer is `layer`, expecting an unsafe-entry error.
async fn expect_unsafe_layer(layer: Vec<u8>, name: &str) -> ImageError {
    let (dir, store) = new_store();
    let image = TestImage::new(
        vec![TestLayer::from_tar(layer, false)],
        busybox_runtime_config(),
    );
    let archive = dir.path().join("evil.tar");
    write_oci_archive(
        &archive,
        &[image
            .manifest_descriptor(serde_json::json!({"org.opencontainers.image.ref.name": name}))],
        &image.blobs(),
    );
    let err = store.import_archive(&archive).await.unwrap_err();
    assert!(
        matches!(err, ImageError::UnsafeLayerEntry { .. }),
        "{name}: {err}"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(dir_names(&store.root().join("layers")).is_empty(), "{name}");
    assert!(dir_names(&store.root().join("tmp")).is_empty(), "{name}");
    err
}

#[tokio::test]
async fn path_traversal_is_rejected() {
    let marker = format!("skiff-evil-{}", std::process::id());
    let err = expect_unsafe_layer(
        LayerTar::new()
            .dir("etc", 0o755)
            .raw_file(&format!("../../../../../../tmp/{marker}"), b"x")
            .finish(),
        "evil/dotdot:1",
    )
    .await;
    assert!(err.to_string().contains(".."), "{err}");

    let err = expect_unsafe_layer(
        LayerTar::new()
            .raw_file(&format!("/tmp/{marker}"), b"x")
            .finish(),
        "evil/absolute:1",
    )
    .await;
    assert!(err.to_string().contains("absolute"), "{err}");

    let err = expect_unsafe_layer(
        LayerTar::new()
            .symlink("escape", "../../../../../../../../tmp")
            .file(&format!("escape/{marker}"), 0o644, b"x")
            .finish(),
        "evil/symlink:1",
    )
    .await;
    assert!(err.to_string().contains("outside the layer"), "{err}");

    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "a file escaped the layer"
    );
}

#[tokio::test]
async fn absolute_symlinks_in_a_path_stay_inside_the_layer() {
    let (dir, store) = new_store();
    let marker = format!("skiff-abs-{}", std::process::id());
    let layer = LayerTar::new()
        .dir("real", 0o755)
        .symlink("link", &format!("/real/{marker}"))
        .dir(&format!("real/{marker}"), 0o755)
        .file("link/inside.txt", 0o644, b"inside\n")
        .finish();
    let image = TestImage::new(
        vec![TestLayer::from_tar(layer, false)],
        busybox_runtime_config(),
    );
    let archive = dir.path().join("abs.tar");
    write_oci_archive(
        &archive,
        &[image.manifest_descriptor(
            serde_json::json!({"org.opencontainers.image.ref.name": "abs:1"}),
        )],
        &image.blobs(),
    );
    let record = store.import_archive(&archive).await.unwrap().remove(0);
    let root = &record.layer_dirs[0];
    assert_eq!(
        fs::read_to_string(root.join("real").join(&marker).join("inside.txt")).unwrap(),
        "inside\n"
    );
    assert!(!Path::new("/real").exists());
}

#[tokio::test]
async fn remove_collects_unused_blobs_and_layers() {
    let (dir, store) = new_store();
    let layout = build_busybox_layout(dir.path());
    store.import_archive(&layout.archive).await.unwrap();

    // A second image sharing layer 1 with its own second layer.
    let base = layout.image.layers[0].clone();
    let extra = TestLayer::from_tar(
        LayerTar::new()
            .dir("srv", 0o755)
            .file("srv/app", 0o755, b"#!/bin/sh\necho app\n")
            .finish(),
        true,
    );
    let app = TestImage::new(vec![base.clone(), extra.clone()], busybox_runtime_config());
    let archive = dir.path().join("app.tar");
    write_oci_archive(
        &archive,
        &[app.manifest_descriptor(
            serde_json::json!({"org.opencontainers.image.ref.name": "localhost:5000/app:v1"}),
        )],
        &app.blobs(),
    );
    store.import_archive(&archive).await.unwrap();
    assert_eq!(store.list().unwrap().len(), 2);

    let blobs = store.root().join("blobs/sha256");
    let layers = store.root().join("layers");
    assert_eq!(dir_names(&layers).len(), 3);

    let err = store.remove("never/imported:1").await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");

    let removed = store.remove("skiff-test/busybox:1").await.unwrap();
    assert_eq!(removed, vec![BUSYBOX_REFERENCE.to_string()]);
    assert_eq!(store.resolve(BUSYBOX_REFERENCE).unwrap(), None);
    let remaining = store
        .resolve("localhost:5000/app:v1")
        .unwrap()
        .expect("app stays");
    for dir in &remaining.layer_dirs {
        assert!(dir.is_dir(), "{} still in use", dir.display());
    }
    assert!(!layers
        .join(hex_of(&layout.image.layers[1].diff_id))
        .exists());
    assert!(layers.join(hex_of(&base.diff_id)).exists());
    let mut expected: Vec<String> = app
        .blobs()
        .iter()
        .map(|(d, _)| hex_of(d).to_string())
        .collect();
    expected.sort();
    assert_eq!(dir_names(&blobs), expected);

    // Removing by image ID drops the last image; the store is empty again.
    let removed = store.remove(&app.config_digest).await.unwrap();
    assert_eq!(removed, vec!["localhost:5000/app:v1".to_string()]);
    assert!(store.list().unwrap().is_empty());
    assert!(dir_names(&blobs).is_empty());
    assert!(dir_names(&layers).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_imports_of_one_image_agree() {
    let (dir, store) = new_store();
    let layout = build_busybox_layout(dir.path());
    let imports = (0..4).map(|_| {
        let store = store.clone();
        let archive = layout.archive.clone();
        tokio::spawn(async move { store.import_archive(&archive).await })
    });
    for result in futures::future::join_all(imports).await {
        let records = result.unwrap().unwrap();
        assert_eq!(records[0].manifest_digest, layout.image.manifest_digest);
    }
    let records = store.list().unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].layer_dirs[0].join("bin/busybox").is_file());
    assert!(dir_names(&store.root().join("tmp")).is_empty());
}

#[test]
fn leftovers_of_dead_processes_are_discarded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let tmp = store.root().join("tmp");
    // No pid can be this large (the kernel's limit is 4194304).
    let dead_layer = tmp.join("layer-abc-999999999-0");
    fs::create_dir_all(dead_layer.join("half/unpacked")).unwrap();
    fs::write(tmp.join("blob-abc-999999999-1"), b"partial").unwrap();
    let live = tmp.join(format!("blob-abc-{}-7", std::process::id()));
    fs::write(&live, b"in progress").unwrap();
    drop(store);
    ImageStore::open(dir.path()).unwrap();
    assert_eq!(
        dir_names(&tmp),
        vec![live.file_name().unwrap().to_string_lossy().into_owned()]
    );
}

// ---------------------------------------------------------------------------------------
// Pulls from a real registry on loopback.
// ---------------------------------------------------------------------------------------

fn install_crypto_provider() {
    // Another test may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn insecure(registry: &LocalRegistry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![registry.host.clone()],
        ..PullOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_local_registry() {
    install_crypto_provider();
    let registry = LocalRegistry::start();
    let image = busybox_image();
    registry.push(&image, "skiff-test/busybox", "1").await;

    let (_dir, store) = new_store();
    let reference = format!("{}/skiff-test/busybox:1", registry.host);
    let mut events = Vec::new();
    let record = store
        .pull(&reference, &insecure(&registry), |event| events.push(event))
        .await
        .unwrap();
    assert_eq!(record.references, vec![reference.clone()]);
    assert_eq!(record.manifest_digest, image.manifest_digest);
    assert_eq!(record.config_digest, image.config_digest);
    assert!(record.layer_dirs[0].join("bin/busybox").is_file());
    assert!(record.layer_dirs[1].join("etc/hello").is_file());

    match events.first() {
        Some(PullProgress::Resolved {
            manifest_digest,
            layers,
            total_bytes,
            registry: host,
            ..
        }) => {
            assert_eq!(manifest_digest, &image.manifest_digest);
            assert_eq!(*layers, 2);
            assert_eq!(*total_bytes, record.size);
            assert_eq!(host, &registry.host);
        }
        other => panic!("first event should be Resolved, got {other:?}"),
    }
    for layer in &image.layers {
        let last = events
            .iter()
            .filter_map(|event| match event {
                PullProgress::Layer {
                    digest,
                    bytes_done,
                    bytes_total,
                    already_present,
                } if digest == &layer.digest => Some((*bytes_done, *bytes_total, *already_present)),
                _ => None,
            })
            .next_back()
            .expect("progress for each layer");
        let size = layer.blob.len() as u64;
        assert_eq!(last, (size, size, false), "layer {}", layer.digest);
    }
    let fetched_first = match events.last() {
        Some(PullProgress::Done {
            size,
            bytes_fetched,
            image_id,
            ..
        }) => {
            assert_eq!(*size, record.size);
            assert_eq!(image_id, &image.config_digest);
            *bytes_fetched
        }
        other => panic!("last event should be Done, got {other:?}"),
    };
    assert_eq!(
        fetched_first, record.size,
        "config and every layer fetched once"
    );

    // The second pull fetches no blob again.
    let mut again = Vec::new();
    let second = store
        .pull(&reference, &insecure(&registry), |event| again.push(event))
        .await
        .unwrap();
    assert_eq!(second, record);
    for event in &again {
        match event {
            PullProgress::Layer {
                already_present, ..
            } => assert!(already_present, "{event:?}"),
            PullProgress::Done { bytes_fetched, .. } => assert_eq!(*bytes_fetched, 0),
            PullProgress::Resolved { .. } => {}
        }
    }
    assert_eq!(
        again
            .iter()
            .filter(|e| matches!(e, PullProgress::Layer { .. }))
            .count(),
        2
    );

    // By digest, too: the stored image is found and nothing is fetched.
    let by_digest = format!(
        "{}/skiff-test/busybox@{}",
        registry.host, image.manifest_digest
    );
    let mut fetched = None;
    let pinned = store
        .pull(&by_digest, &insecure(&registry), |event| {
            if let PullProgress::Done { bytes_fetched, .. } = event {
                fetched = Some(bytes_fetched);
            }
        })
        .await
        .unwrap();
    assert_eq!(fetched, Some(0));
    assert_eq!(
        pinned.references,
        vec![reference.clone(), by_digest.clone()]
    );

    // Without the insecure setting the client speaks TLS to a plain-HTTP port and fails,
    // naming the reference.
    let (_other_dir, other_store) = new_store();
    let err = other_store
        .pull(&reference, &PullOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(err.to_string().contains(&reference), "{err}");
    assert!(other_store.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_a_mirror_and_an_index() {
    install_crypto_provider();
    let registry = LocalRegistry::start();
    let image = busybox_image();
    registry.push(&image, "skiff-test/busybox", "1").await;
    // A multi-platform index whose other entry does not exist: only ours may be fetched.
    let other = serde_json::json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": image.manifest_digest,
        "size": image.manifest.len(),
        "platform": {"architecture": "s390x", "os": "linux"},
    });
    let (index, index_digest) = index_json(vec![
        other,
        image.manifest_descriptor(serde_json::json!({})),
    ]);
    registry
        .push_index(index, "skiff-test/busybox", "multi")
        .await;

    let (_dir, store) = new_store();
    let options = PullOptions {
        mirrors: HashMap::from([("docker.io".to_string(), registry.host.clone())]),
        ..insecure(&registry)
    };
    let mut served_by = None;
    let record = store
        .pull("skiff-test/busybox:multi", &options, |event| {
            if let PullProgress::Resolved { registry, .. } = event {
                served_by = Some(registry);
            }
        })
        .await
        .unwrap();
    assert_eq!(served_by.as_deref(), Some(registry.host.as_str()));
    assert_eq!(
        record.references,
        vec!["docker.io/skiff-test/busybox:multi"]
    );
    assert_eq!(
        record.manifest_digest, image.manifest_digest,
        "platform manifest, not the index"
    );
    assert_ne!(record.manifest_digest, index_digest);
    assert!(store.resolve("skiff-test/busybox:multi").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_one_image_agree() {
    install_crypto_provider();
    let registry = LocalRegistry::start();
    let image = busybox_image();
    registry.push(&image, "skiff-test/busybox", "1").await;
    let (_dir, store) = new_store();
    let reference = format!("{}/skiff-test/busybox:1", registry.host);
    let pulls = (0..4).map(|_| {
        let store = store.clone();
        let reference = reference.clone();
        let options = insecure(&registry);
        tokio::spawn(async move { store.pull(&reference, &options, |_| {}).await })
    });
    for result in futures::future::join_all(pulls).await {
        assert_eq!(
            result.unwrap().unwrap().manifest_digest,
            image.manifest_digest
        );
    }
    let records = store.list().unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].layer_dirs[0].join("bin/busybox").is_file());
    assert!(dir_names(&store.root().join("tmp")).is_empty());
    assert_eq!(dir_names(&store.root().join("layers")).len(), 2);
}

//! `skiff-runtime image import|ls|rm` as a user runs them on a node.

#[path = "support/image/mod.rs"]
mod image_support;

use std::process::Command;

fn image_cmd(root: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff-runtime"))
        .arg("image")
        .args(args)
        .arg("--root-dir")
        .arg(root)
        .output()
        .expect("run skiff-runtime image");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn import_list_and_remove_an_oci_archive() {
    let dir = tempfile::tempdir().unwrap();
    let layout = image_support::build_busybox_layout(dir.path());
    let root = dir.path().join("node");
    let archive = layout.archive.to_string_lossy().into_owned();

    let (ok, out, err) = image_cmd(&root, &["import", &archive]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("imported {}", layout.reference)),
        "{out}"
    );

    let (ok, out, err) = image_cmd(&root, &["ls"]);
    assert!(ok, "{err}");
    let id = layout.image.config_digest.trim_start_matches("sha256:");
    let line = out
        .lines()
        .find(|l| l.starts_with(&layout.reference))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(&id[..12]), "{line}");

    let (ok, _, err) = image_cmd(&root, &["rm", &layout.reference]);
    assert!(ok, "{err}");
    let (_, out, _) = image_cmd(&root, &["ls"]);
    assert!(!out.contains(&layout.reference), "{out}");
    assert_eq!(
        std::fs::read_dir(root.join("images/layers"))
            .unwrap()
            .count(),
        0,
        "unused layers are removed"
    );

    let (ok, _, err) = image_cmd(&root, &["import", "/nonexistent.tar"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent.tar"), "{err}");
}

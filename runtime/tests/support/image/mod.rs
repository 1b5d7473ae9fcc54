//! Test images built from Debian's busybox-static, as OCI layouts, for any test that needs
//! an image (image store, containers, daemon, benchmarks).
//!
//! Include it with `#[path = "support/image/mod.rs"] mod image_support;`.
//!
//! [`build_busybox_layout`] writes an OCI image layout archive with two layers:
//! - layer 1 (gzip): `/bin/busybox` with applet symlinks (`sh`, `ls`, `cat`, …) and a
//!   hardlink `bin/busybox-hardlink`, `/etc/passwd`, `/etc/group`, `/etc/removed`, `/data/old.txt`,
//!   `/home/user/file` (1000:1000, 0640), `/dev/zero-node` (char 1:5), `/tmp` (1777);
//! - layer 2 (plain tar): the whiteout `etc/.wh.removed`, the opaque marker
//!   `data/.wh..wh..opq` with `data/new.txt`, and `/etc/hello`.
//!
//! The config has Entrypoint `["/bin/sh", "-c"]`, Cmd `["cat /etc/hello"]`, Env (PATH,
//! `SKIFF_TEST=1`) and WorkingDir `/data`. Everything is deterministic (fixed mtimes), so
//! the digests are the same on every build from the same busybox binary.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The name the busybox test image is given in its layout's `index.json`.
pub const BUSYBOX_REFERENCE: &str = "docker.io/skiff-test/busybox:1";
/// What `/etc/hello` (layer 2) contains.
pub const HELLO_CONTENT: &str = "hello from layer 2\n";
/// The applets linked to busybox in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "true", "false", "env", "id", "mkdir", "rm", "touch",
    "test", "hostname", "ps", "grep", "head", "wc", "wget", "nc", "kill", "stat",
];

/// The fixed mtime of every entry.
const MTIME: u64 = 1_700_000_000;

/// Media type of OCI image manifests.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of OCI image indexes.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of OCI image configs.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of uncompressed layers.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of gzip layers.
pub const LAYER_GZIP_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The Go name of the architecture we run on, as image configs and platforms spell it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// One layer: its blob as stored in the registry/layout and its diffID.
#[derive(Debug, Clone)]
pub struct TestLayer {
    /// The layer media type.
    pub media_type: String,
    /// The blob bytes (compressed or not).
    pub blob: Vec<u8>,
    /// sha256 of the blob.
    pub digest: String,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
}

impl TestLayer {
    /// A layer from an uncompressed tar, gzip-compressed when `gzip`.
    pub fn from_tar(tar: Vec<u8>, gzip: bool) -> Self {
        let diff_id = sha256(&tar);
        let (media_type, blob) = if gzip {
            (LAYER_GZIP_MEDIA_TYPE, gzip_bytes(&tar))
        } else {
            (LAYER_MEDIA_TYPE, tar)
        };
        Self {
            media_type: media_type.to_string(),
            digest: sha256(&blob),
            blob,
            diff_id,
        }
    }
}

/// A complete single-platform image: layers, config and manifest bytes with digests.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The layers, lowest first.
    pub layers: Vec<TestLayer>,
    /// The config JSON.
    pub config: Vec<u8>,
    /// sha256 of the config: the image ID.
    pub config_digest: String,
    /// The manifest JSON.
    pub manifest: Vec<u8>,
    /// sha256 of the manifest.
    pub manifest_digest: String,
}

impl TestImage {
    /// An image of `layers` whose config carries `runtime_config` (the `config` object:
    /// Entrypoint, Cmd, …) and, unless given, the layers' real diffIDs.
    pub fn new(layers: Vec<TestLayer>, runtime_config: serde_json::Value) -> Self {
        let diff_ids = layers.iter().map(|layer| layer.diff_id.clone()).collect();
        Self::with_diff_ids(layers, runtime_config, diff_ids)
    }

    /// Like [`TestImage::new`] with the config's `rootfs.diff_ids` given explicitly
    /// (to build images whose diffIDs lie).
    pub fn with_diff_ids(
        layers: Vec<TestLayer>,
        runtime_config: serde_json::Value,
        diff_ids: Vec<String>,
    ) -> Self {
        let config = serde_json::to_vec(&serde_json::json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": go_arch(),
            "os": "linux",
            "config": runtime_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config serialises");
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|layer| serde_json::json!({
                "mediaType": layer.media_type, "digest": layer.digest, "size": layer.blob.len(),
            })).collect::<Vec<_>>(),
        }))
        .expect("manifest serialises");
        Self {
            manifest_digest: sha256(&manifest),
            manifest,
            config_digest,
            config,
            layers,
        }
    }

    /// Every blob of the image: (digest, bytes), config and manifest included.
    pub fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        let mut blobs: Vec<(String, Vec<u8>)> = self
            .layers
            .iter()
            .map(|layer| (layer.digest.clone(), layer.blob.clone()))
            .collect();
        blobs.push((self.config_digest.clone(), self.config.clone()));
        blobs.push((self.manifest_digest.clone(), self.manifest.clone()));
        blobs
    }

    /// The descriptor of this image's manifest, for an index.
    pub fn manifest_descriptor(&self, annotations: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
            "platform": {"architecture": go_arch(), "os": "linux"},
            "annotations": annotations,
        })
    }
}

/// An index document over `manifests` (descriptor values) and its digest.
pub fn index_json(manifests: Vec<serde_json::Value>) -> (Vec<u8>, String) {
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    }))
    .expect("index serialises");
    let digest = sha256(&bytes);
    (bytes, digest)
}

/// gzip of `bytes`.
pub fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

/// Builds a layer tar in memory.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    /// An empty layer.
    pub fn new() -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Complete);
        Self { builder }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(MTIME);
        header.set_size(size);
        header
    }

    /// A directory (root-owned).
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0, 0, 0);
        self.builder
            .append_data(&mut header, path, std::io::empty())
            .expect("tar dir");
        self
    }

    /// A regular file owned by `uid:gid`.
    pub fn file_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut header = Self::header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.builder
            .append_data(&mut header, path, data)
            .expect("tar file");
        self
    }

    /// A root-owned regular file.
    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.file_owned(path, mode, 0, 0, data)
    }

    /// A symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.builder
            .append_link(&mut header, path, target)
            .expect("tar symlink");
        self
    }

    /// A hardlink to the archive path `target`.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Link, 0o755, 0, 0, 0);
        self.builder
            .append_link(&mut header, path, target)
            .expect("tar hardlink");
        self
    }

    /// A character device.
    pub fn char_device(mut self, path: &str, mode: u32, major: u32, minor: u32) -> Self {
        let mut header = Self::header(tar::EntryType::Char, mode, 0, 0, 0);
        header.set_device_major(major).expect("device major");
        header.set_device_minor(minor).expect("device minor");
        self.builder
            .append_data(&mut header, path, std::io::empty())
            .expect("tar char device");
        self
    }

    /// A regular file whose name is written into the header verbatim, bypassing the tar
    /// builder's own checks: for `../evil` and `/absolute` entries.
    pub fn raw_file(mut self, raw_name: &str, data: &[u8]) -> Self {
        let mut header = Self::header(tar::EntryType::Regular, 0o644, 0, 0, data.len() as u64);
        {
            let name = &mut header.as_old_mut().name;
            name.fill(0);
            name[..raw_name.len()].copy_from_slice(raw_name.as_bytes());
        }
        header.set_cksum();
        self.builder.append(&header, data).expect("tar raw file");
        self
    }

    /// The tar bytes.
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("tar to memory")
    }
}

/// The two busybox layers described in the module docs.
pub fn busybox_layers() -> Vec<TestLayer> {
    let busybox = fs::read(BUSYBOX).unwrap_or_else(|err| {
        panic!("{BUSYBOX} is needed for test images (apt-get install busybox-static): {err}")
    });
    let mut first = LayerTar::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .hardlink("bin/busybox-hardlink", "bin/busybox");
    for applet in APPLETS {
        first = first.symlink(&format!("bin/{applet}"), "busybox");
    }
    let first = first
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file(
            "etc/group",
            0o644,
            b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
        )
        .file("etc/removed", 0o644, b"removed by layer 2\n")
        .dir("data", 0o755)
        .file("data/old.txt", 0o644, b"old\n")
        .dir("home", 0o755)
        .dir("home/user", 0o750)
        .file_owned("home/user/file", 0o640, 1000, 1000, b"owned by user\n")
        .dir("dev", 0o755)
        .char_device("dev/zero-node", 0o666, 1, 5)
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .finish();
    let second = LayerTar::new()
        .dir("etc", 0o755)
        .file("etc/.wh.removed", 0o644, b"")
        .file("etc/hello", 0o644, HELLO_CONTENT.as_bytes())
        .dir("data", 0o755)
        .file("data/.wh..wh..opq", 0o644, b"")
        .file("data/new.txt", 0o644, b"new\n")
        .finish();
    vec![
        TestLayer::from_tar(first, true),
        TestLayer::from_tar(second, false),
    ]
}

/// The runtime config of the busybox image.
pub fn busybox_runtime_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["cat /etc/hello"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SKIFF_TEST=1"],
        "WorkingDir": "/data",
    })
}

/// The busybox test image.
pub fn busybox_image() -> TestImage {
    TestImage::new(busybox_layers(), busybox_runtime_config())
}

/// What [`build_busybox_layout`] wrote.
#[derive(Debug, Clone)]
pub struct BusyboxLayout {
    /// The OCI layout archive.
    pub archive: PathBuf,
    /// The image inside, with every digest.
    pub image: TestImage,
    /// The name in `index.json` ([`BUSYBOX_REFERENCE`]).
    pub reference: String,
}

/// Writes the busybox image as an OCI layout archive `busybox-oci.tar` in `dir`.
pub fn build_busybox_layout(dir: &Path) -> BusyboxLayout {
    let image = busybox_image();
    let archive = dir.join("busybox-oci.tar");
    write_oci_archive(
        &archive,
        &[image.manifest_descriptor(
            serde_json::json!({"org.opencontainers.image.ref.name": BUSYBOX_REFERENCE}),
        )],
        &image.blobs(),
    );
    BusyboxLayout {
        archive,
        image,
        reference: BUSYBOX_REFERENCE.to_string(),
    }
}

/// Writes an OCI layout archive: `oci-layout`, `index.json` over `manifests`
/// (descriptor values), and `blobs/sha256/<hex>` for each (digest, bytes) in `blobs`
/// (written under the digest given, whatever the bytes, so tests can corrupt them).
pub fn write_oci_archive(
    path: &Path,
    manifests: &[serde_json::Value],
    blobs: &[(String, Vec<u8>)],
) {
    fn append(builder: &mut tar::Builder<fs::File>, name: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(MTIME);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, name, data)
            .expect("append to archive");
    }
    let file = fs::File::create(path).expect("create archive");
    let mut builder = tar::Builder::new(file);
    append(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    let (index, _) = index_json(manifests.to_vec());
    append(&mut builder, "index.json", &index);
    let mut seen = std::collections::BTreeSet::new();
    for (digest, bytes) in blobs {
        if seen.insert(digest.clone()) {
            append(
                &mut builder,
                &format!("blobs/sha256/{}", hex_of(digest)),
                bytes,
            );
        }
    }
    builder.into_inner().expect("finish archive");
}

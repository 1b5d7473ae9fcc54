//! What the files of configMap, secret, downwardAPI and projected volumes should hold: pure
//! functions from the pod and its objects to a [`Payload`], written by the atomic writer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, VolumeProjection,
};
use skiff_api::quantity::Quantity;

use super::atomic::{clean_path, FileProjection, Payload};
use super::{VolumeError, VolumeSources};

/// Kubernetes' default file mode for configMap, secret, downwardAPI and projected volumes.
pub(super) const DEFAULT_MODE: i32 = 0o644;

/// The keys of one object, as bytes.
type ObjectData = BTreeMap<String, Vec<u8>>;

/// Which object a key projection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configMap",
            ObjectKind::Secret => "secret",
        }
    }
}

/// What one projection of keys asks for.
pub(super) struct KeySelection<'a> {
    pub kind: ObjectKind,
    pub name: &'a str,
    pub items: Option<&'a [KeyToPath]>,
    pub optional: bool,
    pub default_mode: u32,
}

/// Checks a mode from the pod spec (`defaultMode`, `mode`): permission bits only.
pub(super) fn file_mode(volume: &str, mode: Option<i32>, default: u32) -> Result<u32, VolumeError> {
    match mode {
        None => Ok(default),
        Some(mode) => u32::try_from(mode)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| VolumeError::Invalid {
                volume: volume.to_string(),
                reason: format!("file mode {mode} is not between 0 and 0777 (511)"),
            }),
    }
}

fn object_data(kind: ObjectKind, name: &str, sources: &VolumeSources) -> Option<ObjectData> {
    match kind {
        ObjectKind::ConfigMap => sources.config_maps.get(name).map(|config_map| {
            let mut data: ObjectData = config_map
                .data
                .iter()
                .flatten()
                .map(|(key, value)| (key.clone(), value.clone().into_bytes()))
                .collect();
            for (key, value) in config_map.binary_data.iter().flatten() {
                data.insert(key.clone(), value.0.clone());
            }
            data
        }),
        ObjectKind::Secret => sources.secrets.get(name).map(|secret| {
            let mut data: ObjectData = secret
                .data
                .iter()
                .flatten()
                .map(|(key, value)| (key.clone(), value.0.clone()))
                .collect();
            // The API server folds stringData into data; a secret built by hand may not be.
            for (key, value) in secret.string_data.iter().flatten() {
                data.insert(key.clone(), value.clone().into_bytes());
            }
            data
        }),
    }
}

fn insert(
    volume: &str,
    payload: &mut Payload,
    path: &str,
    data: Vec<u8>,
    mode: u32,
) -> Result<(), VolumeError> {
    let path = clean_path(path).map_err(|reason| VolumeError::Invalid {
        volume: volume.to_string(),
        reason,
    })?;
    payload.insert(path, FileProjection { data, mode });
    Ok(())
}

/// Adds the files of one configMap or secret projection to `payload`.
pub(super) fn add_keys(
    volume: &str,
    selection: &KeySelection<'_>,
    sources: &VolumeSources,
    payload: &mut Payload,
) -> Result<(), VolumeError> {
    let Some(data) = object_data(selection.kind, selection.name, sources) else {
        if selection.optional {
            return Ok(());
        }
        return Err(VolumeError::ObjectNotFound {
            volume: volume.to_string(),
            kind: selection.kind.as_str(),
            name: selection.name.to_string(),
        });
    };
    match selection.items.filter(|items| !items.is_empty()) {
        None => {
            for (key, value) in data {
                insert(volume, payload, &key, value, selection.default_mode)?;
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if selection.optional {
                        continue;
                    }
                    return Err(VolumeError::KeyNotFound {
                        volume: volume.to_string(),
                        kind: selection.kind.as_str(),
                        name: selection.name.to_string(),
                        key: item.key.clone(),
                    });
                };
                let mode = file_mode(volume, item.mode, selection.default_mode)?;
                insert(volume, payload, &item.path, value.clone(), mode)?;
            }
        }
    }
    Ok(())
}

/// Adds the files of downward API items to `payload`.
pub(super) fn add_downward_api(
    volume: &str,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    payload: &mut Payload,
) -> Result<(), VolumeError> {
    for item in items {
        let item_error = |reason: String| VolumeError::DownwardApi {
            volume: volume.to_string(),
            path: item.path.clone(),
            reason,
        };
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => {
                if let Some(version) = field.api_version.as_deref() {
                    if !version.is_empty() && version != "v1" {
                        return Err(item_error(format!(
                            "fieldRef apiVersion {version:?} is not supported (only v1)"
                        )));
                    }
                }
                field_value(pod, &field.field_path).map_err(item_error)?
            }
            (None, Some(resource)) => resource_value(pod, resource).map_err(item_error)?,
            _ => {
                return Err(item_error(
                    "exactly one of fieldRef and resourceFieldRef must be set".to_string(),
                ))
            }
        };
        let mode = file_mode(volume, item.mode, default_mode)?;
        insert(volume, payload, &item.path, value.into_bytes(), mode)?;
    }
    Ok(())
}

/// Adds the sources of a projected volume; returns the sources left out (with why).
pub(super) fn add_projections(
    volume: &str,
    pod: &Pod,
    projections: &[VolumeProjection],
    default_mode: u32,
    sources: &VolumeSources,
    payload: &mut Payload,
) -> Result<Vec<String>, VolumeError> {
    let mut omitted = Vec::new();
    for projection in projections {
        if let Some(config_map) = &projection.config_map {
            let selection = KeySelection {
                kind: ObjectKind::ConfigMap,
                name: &config_map.name,
                items: config_map.items.as_deref(),
                optional: config_map.optional.unwrap_or(false),
                default_mode,
            };
            add_keys(volume, &selection, sources, payload)?;
        } else if let Some(secret) = &projection.secret {
            let selection = KeySelection {
                kind: ObjectKind::Secret,
                name: &secret.name,
                items: secret.items.as_deref(),
                optional: secret.optional.unwrap_or(false),
                default_mode,
            };
            add_keys(volume, &selection, sources, payload)?;
        } else if let Some(downward_api) = &projection.downward_api {
            add_downward_api(
                volume,
                pod,
                downward_api.items.as_deref().unwrap_or_default(),
                default_mode,
                payload,
            )?;
        } else if let Some(token) = &projection.service_account_token {
            omitted.push(format!(
                "serviceAccountToken (path {:?}): skiff does not issue bound service account \
                 tokens; the file is left out",
                token.path
            ));
        } else if projection.cluster_trust_bundle.is_some() {
            return Err(VolumeError::Unsupported {
                volume: volume.to_string(),
                kind: "projected clusterTrustBundle",
            });
        } else {
            return Err(VolumeError::Invalid {
                volume: volume.to_string(),
                reason: "a projected source sets none of configMap, secret, downwardAPI, \
                         serviceAccountToken"
                    .to_string(),
            });
        }
    }
    Ok(omitted)
}

/// The value of a downward API `fieldRef` in a volume (metadata fields only, as Kubernetes).
pub(super) fn field_value(pod: &Pod, field_path: &str) -> Result<String, String> {
    let metadata = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some(key) = subscript(field_path, "metadata.labels") {
        return Ok(labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript(field_path, "metadata.annotations") {
        return Ok(annotations.get(key).cloned().unwrap_or_default());
    }
    match field_path {
        "metadata.name" => Ok(metadata.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(metadata.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(metadata.uid.clone().unwrap_or_default()),
        "metadata.labels" => Ok(format_map(labels)),
        "metadata.annotations" => Ok(format_map(annotations)),
        other => Err(format!(
            "field path {other:?} is not supported in downward API volumes (supported: \
             metadata.name, metadata.namespace, metadata.uid, metadata.labels, \
             metadata.annotations, metadata.labels['KEY'], metadata.annotations['KEY'])"
        )),
    }
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(field_path: &'a str, prefix: &str) -> Option<&'a str> {
    field_path
        .strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// Kubernetes' `FormatMap`: `key="value"` lines sorted by key, values quoted as Go's `%q`,
/// no trailing newline.
pub(super) fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A double-quoted string escaped as Go's `strconv.Quote` does.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|container| container.name == name)
}

/// The value of a downward API `resourceFieldRef`: the container's request or limit divided
/// by the divisor and rounded up, as Kubernetes writes it. An unset limit of cpu or memory
/// is the node's capacity (the kubelet uses allocatable, which only the daemon knows).
pub(super) fn resource_value(
    pod: &Pod,
    selector: &ResourceFieldSelector,
) -> Result<String, String> {
    let container_name = selector
        .container_name
        .as_deref()
        .filter(|name| !name.is_empty())
        .ok_or("resourceFieldRef needs containerName in a volume")?;
    let container = find_container(pod, container_name)
        .ok_or_else(|| format!("the pod has no container {container_name:?}"))?;
    let (side, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", selector.resource))?;
    let resources = container.resources.as_ref();
    let set = match side {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {:?}", selector.resource)),
    };
    let supported = matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        || resource.starts_with("hugepages-");
    if !supported {
        return Err(format!("unsupported resource {:?}", selector.resource));
    }
    let quantity = match set.and_then(|set| set.get(resource)) {
        Some(quantity) => Quantity::from_k8s(quantity).map_err(|e| e.to_string())?,
        None if side == "requests" => Quantity::zero(),
        None => node_capacity(resource)?,
    };
    let divisor = match &selector.divisor {
        Some(divisor) => Quantity::from_k8s(divisor).map_err(|e| e.to_string())?,
        None => Quantity::from_units(1),
    };
    let (numerator, denominator) = if resource == "cpu" {
        (quantity.milli_value(), divisor.milli_value())
    } else {
        (quantity.value(), divisor.value())
    };
    if denominator <= 0 {
        return Err(format!("divisor {divisor} must be positive"));
    }
    Ok(div_ceil(numerator, denominator).to_string())
}

fn div_ceil(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator > 0 {
        quotient + 1
    } else {
        quotient
    }
}

/// The node's cpu count or memory size, standing in for an unset limit.
fn node_capacity(resource: &str) -> Result<Quantity, String> {
    match resource {
        "cpu" => {
            // SAFETY: sysconf has no preconditions.
            let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            if cpus <= 0 {
                return Err("cannot count the node's cpus".to_string());
            }
            Ok(Quantity::from_units(cpus))
        }
        "memory" => {
            let meminfo = std::fs::read_to_string("/proc/meminfo")
                .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
            let kib = meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .ok()
                })
                .ok_or("no MemTotal in /proc/meminfo")?;
            Ok(Quantity::from_units(kib.saturating_mul(1024)))
        }
        other => Err(format!(
            "the container sets no limit for {other} and skiff does not know the node's \
             allocatable {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use k8s_openapi::ByteString;

    fn labelled_pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = Some("1234".into());
        pod.metadata.labels = Some(BTreeMap::from([
            ("tier".to_string(), "front".to_string()),
            ("app".to_string(), "web".to_string()),
        ]));
        pod.metadata.annotations = Some(BTreeMap::from([(
            "note".to_string(),
            "say \"hi\"\nbye".to_string(),
        )]));
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                resources: Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([
                        ("cpu".to_string(), K8sQuantity("1500m".into())),
                        ("memory".to_string(), K8sQuantity("64Mi".into())),
                    ])),
                    requests: Some(BTreeMap::from([(
                        "cpu".to_string(),
                        K8sQuantity("250m".into()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        pod
    }

    #[test]
    fn formats_fields_as_kubernetes() {
        let pod = labelled_pod();
        assert_eq!(
            field_value(&pod, "metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"front\""
        );
        assert_eq!(
            field_value(&pod, "metadata.annotations").unwrap(),
            "note=\"say \\\"hi\\\"\\nbye\""
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['tier']").unwrap(),
            "front"
        );
        assert_eq!(field_value(&pod, "metadata.labels['missing']").unwrap(), "");
        assert_eq!(field_value(&pod, "metadata.uid").unwrap(), "1234");
        assert!(field_value(&pod, "spec.nodeName").is_err());
    }

    #[test]
    fn divides_resources_rounding_up() {
        let pod = labelled_pod();
        let selector = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            container_name: Some("main".into()),
            resource: resource.into(),
            divisor: divisor.map(|d| K8sQuantity(d.into())),
        };
        assert_eq!(
            resource_value(&pod, &selector("limits.cpu", None)).unwrap(),
            "2"
        );
        assert_eq!(
            resource_value(&pod, &selector("limits.cpu", Some("1m"))).unwrap(),
            "1500"
        );
        assert_eq!(
            resource_value(&pod, &selector("requests.cpu", Some("1m"))).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(&pod, &selector("limits.memory", Some("1Mi"))).unwrap(),
            "64"
        );
        assert_eq!(
            resource_value(&pod, &selector("requests.memory", None)).unwrap(),
            "0"
        );
        assert!(resource_value(&pod, &selector("limits.gpu", None)).is_err());
        let unset_memory = resource_value(
            &Pod {
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            &selector("limits.memory", None),
        )
        .unwrap();
        assert!(unset_memory.parse::<u64>().unwrap() > 0);
    }

    #[test]
    fn selects_items_and_modes() {
        let mut sources = VolumeSources::default();
        sources.config_maps.insert(
            "cfg".into(),
            ConfigMap {
                data: Some(BTreeMap::from([("a".to_string(), "1".to_string())])),
                binary_data: Some(BTreeMap::from([(
                    "bin".to_string(),
                    ByteString(vec![0, 1, 2]),
                )])),
                ..Default::default()
            },
        );
        let items = [KeyToPath {
            key: "bin".into(),
            path: "sub/bin.dat".into(),
            mode: Some(0o600),
        }];
        let mut payload = Payload::new();
        let selection = KeySelection {
            kind: ObjectKind::ConfigMap,
            name: "cfg",
            items: Some(&items),
            optional: false,
            default_mode: 0o644,
        };
        add_keys("v", &selection, &sources, &mut payload).unwrap();
        assert_eq!(payload.len(), 1);
        assert_eq!(payload["sub/bin.dat"].data, vec![0, 1, 2]);
        assert_eq!(payload["sub/bin.dat"].mode, 0o600);

        let missing_key = [KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        let selection = KeySelection {
            items: Some(&missing_key),
            ..selection
        };
        let err = add_keys("v", &selection, &sources, &mut Payload::new()).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
        let optional = KeySelection {
            optional: true,
            ..selection
        };
        add_keys("v", &optional, &sources, &mut Payload::new()).unwrap();

        let absent = KeySelection {
            kind: ObjectKind::Secret,
            name: "gone",
            items: None,
            optional: false,
            default_mode: 0o644,
        };
        let err = add_keys("v", &absent, &sources, &mut Payload::new()).unwrap_err();
        assert!(err.to_string().contains("secret \"gone\""), "{err}");
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\tb\u{1}"), "\"a\\tb\\x01\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }
}

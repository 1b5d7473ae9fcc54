//! A container's environment, built the way the kubelet builds it
//! (`pkg/kubelet/kubelet_pods.go`, `makeEnvironmentVariables`):
//!
//! 1. Service variables (`{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT[_{PORT}]` and the
//!    Docker-link `{NAME}_PORT*` family) for the services of the pod's namespace when
//!    `enableServiceLinks` is true (the default), and always for `default/kubernetes`.
//! 2. `envFrom`, in order: every key of the config map or secret, with the prefix; a later
//!    source overrides an earlier one.
//! 3. `env`, in order: a literal value has its `$(VAR)` references expanded against what
//!    is defined so far (earlier `env` and `envFrom` entries, then service variables);
//!    `valueFrom` reads a config map key, a secret key, a pod field or a resource (values
//!    from `valueFrom` are not expanded). `env` overrides `envFrom` and service variables.
//!
//! The result lists the service variables that nothing overrode first, then the `envFrom`
//! and `env` variables in the order they were first defined (the kubelet's own order is
//! Go map order, that is none).
//!
//! Differences from the kubelet, on purpose:
//! - A secret value that is not UTF-8 is an error: the kubelet passes the raw bytes through
//!   (`string(bytes)` in Go), skiff's environment is made of Rust strings and a lossy
//!   conversion would silently change a secret.
//! - `envFrom` keys that cannot be environment variable names at all (empty, containing
//!   `=`, or not printable ASCII: Kubernetes' relaxed name rule) are skipped with a
//!   warning, like the kubelet's `InvalidEnvironmentVariableNames` event of earlier
//!   releases; any other key is kept, as the kubelet of 1.33 does.
//! - `fieldRef` to the whole `metadata.labels` / `metadata.annotations` map is refused:
//!   API validation does not allow it for environment variables.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};
use skiff_api::quantity::Quantity;
use tracing::warn;

use super::expansion::expand;
use super::{container_field_path, SpecError};

/// Everything outside the pod that its containers' environment is made of.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    /// Config maps of the pod's namespace, by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// Services of the pod's namespace, plus `default/kubernetes` (which always counts);
    /// services of other namespaces are ignored.
    pub services: Vec<Service>,
    /// The node's name (used when the pod's `spec.nodeName` is empty).
    pub node_name: String,
    /// The node's IP address (`status.hostIP`, `status.hostIPs`).
    pub node_ip: String,
    /// The pod's IP addresses, primary first (`status.podIP`, `status.podIPs`).
    pub pod_ips: Vec<String>,
    /// The node's allocatable CPU in millicores: the default for a missing CPU limit.
    pub node_allocatable_cpu_milli: i64,
    /// The node's allocatable memory in bytes: the default for a missing memory limit.
    pub node_allocatable_memory: i64,
    /// The node's allocatable ephemeral storage in bytes: the default for a missing
    /// ephemeral-storage limit (0 when the daemon does not track it).
    pub node_allocatable_ephemeral_storage: i64,
}

/// A container's environment and the warnings met while building it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// Variables in order, names unique.
    pub vars: Vec<(String, String)>,
    /// Things the user should hear about without failing the container (skipped `envFrom`
    /// keys), worded like the kubelet's `InvalidEnvironmentVariableNames` event.
    pub warnings: Vec<String>,
}

/// The container's environment as the kubelet builds it; see the module documentation.
/// Warnings are logged; use [`container_env_with_warnings`] to get them as well.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
) -> Result<Vec<(String, String)>, SpecError> {
    let env = container_env_with_warnings(pod, container, sources)?;
    for warning in &env.warnings {
        warn!(container = %container.name, "{warning}");
    }
    Ok(env.vars)
}

/// [`container_env`], returning the warnings (for pod events) instead of logging them.
pub fn container_env_with_warnings(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
) -> Result<ContainerEnv, SpecError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let container_path = container_field_path(pod, container);
    let enable_service_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_env = service_env_vars(namespace, enable_service_links, &sources.services);
    let service_lookup: HashMap<&str, &str> = service_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let mut defined = OrderedEnv::default();
    let mut warnings = Vec::new();

    for (index, env_from) in container.env_from.iter().flatten().enumerate() {
        let field = format!("{container_path}.envFrom[{index}]");
        let prefix = env_from.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &env_from.config_map_ref {
            let field = format!("{field}.configMapRef");
            let Some(config_map) = sources.config_maps.get(&reference.name) else {
                if reference.optional == Some(true) {
                    continue;
                }
                return Err(SpecError::config(
                    container,
                    field,
                    &reference.name,
                    format!("configmap {:?} not found", reference.name),
                ));
            };
            let mut invalid = Vec::new();
            for (key, value) in config_map.data.iter().flatten() {
                let name = format!("{prefix}{key}");
                if is_relaxed_env_var_name(&name) {
                    defined.set(name, value.clone());
                } else {
                    invalid.push(name);
                }
            }
            if !invalid.is_empty() {
                warnings.push(skipped_keys_warning(
                    &invalid,
                    "configMap",
                    namespace,
                    &reference.name,
                ));
            }
        } else if let Some(reference) = &env_from.secret_ref {
            let field = format!("{field}.secretRef");
            let Some(secret) = sources.secrets.get(&reference.name) else {
                if reference.optional == Some(true) {
                    continue;
                }
                return Err(SpecError::config(
                    container,
                    field,
                    &reference.name,
                    format!("secret {:?} not found", reference.name),
                ));
            };
            let mut invalid = Vec::new();
            for (key, value) in secret.data.iter().flatten() {
                let name = format!("{prefix}{key}");
                if !is_relaxed_env_var_name(&name) {
                    invalid.push(name);
                    continue;
                }
                let value = secret_value_utf8(container, &field, &reference.name, key, &value.0)?;
                defined.set(name, value);
            }
            if !invalid.is_empty() {
                warnings.push(skipped_keys_warning(
                    &invalid,
                    "secret",
                    namespace,
                    &reference.name,
                ));
            }
        }
    }

    for (index, env_var) in container.env.iter().flatten().enumerate() {
        let field = format!("{container_path}.env[{index}]");
        let literal = env_var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(literal, |name| {
                defined
                    .get(name)
                    .or_else(|| service_lookup.get(name).copied())
            })
        } else if env_var.value_from.is_some() {
            match value_from(pod, container, sources, namespace, env_var, &field)? {
                Some(value) => value,
                // An optional source that is absent leaves the variable undefined.
                None => continue,
            }
        } else {
            String::new()
        };
        defined.set(env_var.name.clone(), value);
    }

    let mut vars: Vec<(String, String)> = service_env
        .into_iter()
        .filter(|(name, _)| defined.get(name).is_none())
        .collect();
    vars.extend(defined.into_vars());
    Ok(ContainerEnv { vars, warnings })
}

/// Variables in first-definition order; setting a defined name replaces its value in place.
#[derive(Debug, Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&position) => {
                if let Some(slot) = self.vars.get_mut(position) {
                    slot.1 = value;
                }
            }
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index
            .get(name)
            .and_then(|&position| self.vars.get(position))
            .map(|(_, value)| value.as_str())
    }

    fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// Kubernetes' relaxed environment variable name rule: non-empty, printable ASCII, no `=`.
fn is_relaxed_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

fn skipped_keys_warning(invalid: &[String], kind: &str, namespace: &str, name: &str) -> String {
    let mut keys = invalid.to_vec();
    keys.sort();
    format!(
        "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are \
         considered invalid environment variable names.",
        keys.join(", ")
    )
}

fn secret_value_utf8(
    container: &Container,
    field: &str,
    secret: &str,
    key: &str,
    bytes: &[u8],
) -> Result<String, SpecError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        SpecError::config(
            container,
            field,
            format!("{secret}/{key}"),
            format!(
                "the value of key {key:?} in secret {secret:?} is not UTF-8 text ({e}); \
                 skiff cannot pass it in an environment variable"
            ),
        )
    })
}

/// Resolves `env_var.valueFrom`; `None` when an optional source is absent.
fn value_from(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
    namespace: &str,
    env_var: &EnvVar,
    field: &str,
) -> Result<Option<String>, SpecError> {
    let Some(source) = &env_var.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(selector) = &source.field_ref {
        let field = format!("{field}.valueFrom.fieldRef");
        return pod_field_value(pod, container, sources, selector, &field).map(Some);
    }
    if let Some(selector) = &source.resource_field_ref {
        let field = format!("{field}.valueFrom.resourceFieldRef");
        return container_resource_value(pod, container, sources, selector, &field).map(Some);
    }
    if let Some(selector) = &source.config_map_key_ref {
        let field = format!("{field}.valueFrom.configMapKeyRef");
        let optional = selector.optional == Some(true);
        let value = format!("{}/{}", selector.name, selector.key);
        let Some(config_map) = sources.config_maps.get(&selector.name) else {
            if optional {
                return Ok(None);
            }
            return Err(SpecError::config(
                container,
                field,
                value,
                format!("configmap {:?} not found", selector.name),
            ));
        };
        return match config_map.data.as_ref().and_then(|d| d.get(&selector.key)) {
            Some(found) => Ok(Some(found.clone())),
            None if optional => Ok(None),
            None => Err(SpecError::config(
                container,
                field,
                value,
                format!(
                    "couldn't find key {} in ConfigMap {namespace}/{}",
                    selector.key, selector.name
                ),
            )),
        };
    }
    if let Some(selector) = &source.secret_key_ref {
        let field = format!("{field}.valueFrom.secretKeyRef");
        let optional = selector.optional == Some(true);
        let value = format!("{}/{}", selector.name, selector.key);
        let Some(secret) = sources.secrets.get(&selector.name) else {
            if optional {
                return Ok(None);
            }
            return Err(SpecError::config(
                container,
                field,
                value,
                format!("secret {:?} not found", selector.name),
            ));
        };
        return match secret.data.as_ref().and_then(|d| d.get(&selector.key)) {
            Some(bytes) => {
                secret_value_utf8(container, &field, &selector.name, &selector.key, &bytes.0)
                    .map(Some)
            }
            None if optional => Ok(None),
            None => Err(SpecError::config(
                container,
                field,
                value,
                format!(
                    "couldn't find key {} in Secret {namespace}/{}",
                    selector.key, selector.name
                ),
            )),
        };
    }
    Err(SpecError::config(
        container,
        format!("{field}.valueFrom"),
        &env_var.name,
        "no source set (fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef)",
    ))
}

/// The downward API value of a pod field (`podFieldSelectorRuntimeValue`).
fn pod_field_value(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
    selector: &ObjectFieldSelector,
    field: &str,
) -> Result<String, SpecError> {
    let path = selector.field_path.as_str();
    let api_version = selector.api_version.as_deref().unwrap_or("v1");
    if !api_version.is_empty() && api_version != "v1" {
        return Err(SpecError::config(
            container,
            format!("{field}.apiVersion"),
            api_version,
            "unsupported pod version",
        ));
    }
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| sources.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => sources.node_ip.clone(),
        "status.podIP" => sources.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => sources.pod_ips.join(","),
        _ => match subscripted(path) {
            Some(("metadata.labels", key)) => meta
                .labels
                .as_ref()
                .and_then(|l| l.get(key))
                .cloned()
                .unwrap_or_default(),
            Some(("metadata.annotations", key)) => meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .cloned()
                .unwrap_or_default(),
            _ => {
                return Err(SpecError::config(
                    container,
                    format!("{field}.fieldPath"),
                    path,
                    format!("unsupported fieldPath: {path}"),
                ));
            }
        },
    };
    Ok(value)
}

/// Splits `metadata.labels['key']` into `("metadata.labels", "key")`.
fn subscripted(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    Some((base, key))
}

/// The downward API value of a container resource (`containerResourceRuntimeValue` with
/// `defaultPodLimitsForDownwardAPI`): limits default to the node's allocatable amounts,
/// and the value is divided by the divisor, rounding up.
fn container_resource_value(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
    selector: &ResourceFieldSelector,
    field: &str,
) -> Result<String, SpecError> {
    let target = match selector.container_name.as_deref() {
        None | Some("") => container,
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| {
                SpecError::config(
                    container,
                    format!("{field}.containerName"),
                    name,
                    format!("container {name} not found"),
                )
            })?,
    };
    let divisor = match &selector.divisor {
        Some(divisor) if !divisor.0.is_empty() => Quantity::from_k8s(divisor).map_err(|e| {
            SpecError::config(
                container,
                format!("{field}.divisor"),
                &divisor.0,
                e.reason(),
            )
        })?,
        _ => Quantity::from_units(1),
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_units(1)
    } else {
        divisor
    };

    let resource = selector.resource.as_str();
    let (section, name) = resource.split_once('.').ok_or_else(|| {
        SpecError::config(
            container,
            format!("{field}.resource"),
            resource,
            format!("unsupported container resource : {resource}"),
        )
    })?;
    let supported =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !supported || !matches!(section, "limits" | "requests") {
        return Err(SpecError::config(
            container,
            format!("{field}.resource"),
            resource,
            format!("unsupported container resource : {resource}"),
        ));
    }

    let resources = target.resources.as_ref();
    let declared = if section == "limits" {
        resources.and_then(|r| r.limits.as_ref())
    } else {
        resources.and_then(|r| r.requests.as_ref())
    };
    let amount = match declared.and_then(|m| m.get(name)) {
        Some(q) => Quantity::from_k8s(q).map_err(|e| {
            SpecError::config(
                container,
                format!("{field}.resource"),
                format!("{resource}={}", q.0),
                e.reason(),
            )
        })?,
        None if section == "limits" => match name {
            "cpu" => Quantity::from_milli(sources.node_allocatable_cpu_milli),
            "memory" => Quantity::from_units(sources.node_allocatable_memory),
            "ephemeral-storage" => Quantity::from_units(sources.node_allocatable_ephemeral_storage),
            _ => Quantity::zero(),
        },
        None => Quantity::zero(),
    };

    // CPU is divided in millicores, everything else in whole units, as the kubelet does.
    let (numerator, denominator) = if name == "cpu" {
        (amount.milli_value(), divisor.milli_value())
    } else {
        (amount.value(), divisor.value())
    };
    if denominator == 0 {
        return Err(SpecError::config(
            container,
            format!("{field}.divisor"),
            divisor.to_string(),
            format!("divisor is below one unit of {name}"),
        ));
    }
    Ok(ceil_div(numerator, denominator).to_string())
}

/// `a / b` rounded towards positive infinity.
fn ceil_div(a: i128, b: i128) -> i128 {
    let quotient = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        quotient + 1
    } else {
        quotient
    }
}

/// The service environment variables (`getServiceEnvVarMap` + `envvars.FromServices`), in
/// order of service name, each service's variables in the kubelet's order.
fn service_env_vars(
    namespace: &str,
    enable_service_links: bool,
    services: &[Service],
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    // The master service of `default` counts even without service links...
    for service in services {
        if service.metadata.namespace.as_deref() == Some("default")
            && service.metadata.name.as_deref() == Some("kubernetes")
            && service_ip(service).is_some()
        {
            chosen.insert("kubernetes", service);
        }
    }
    // ...and a same-named service of the pod's own namespace wins over it.
    if enable_service_links {
        for service in services {
            let in_namespace =
                service.metadata.namespace.as_deref().unwrap_or("default") == namespace;
            if let (true, Some(name), Some(_)) = (
                in_namespace,
                service.metadata.name.as_deref(),
                service_ip(service),
            ) {
                chosen.insert(name, service);
            }
        }
    }

    let mut vars = Vec::new();
    for (name, service) in chosen {
        let (Some(ip), Some(ports)) = (
            service_ip(service),
            service.spec.as_ref().and_then(|s| s.ports.as_ref()),
        ) else {
            continue;
        };
        let Some(first) = ports.first() else {
            continue;
        };
        let prefix = env_name_of(name);
        vars.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                vars.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name_of(port_name)),
                    port.port.to_string(),
                ));
            }
        }
        // Docker link variables.
        for (index, port) in ports.iter().enumerate() {
            let protocol = port
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let host_port = join_host_port(ip, port.port);
            let url = format!("{lower}://{host_port}");
            if index == 0 {
                vars.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            vars.push((port_prefix.clone(), url));
            vars.push((format!("{port_prefix}_PROTO"), lower));
            vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            vars.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    vars
}

/// The service's cluster IP, when it has one (not empty, not `None`).
fn service_ip(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// `my-svc` → `MY_SVC`.
fn env_name_of(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// `ip:port`, with brackets around an IPv6 address.
fn join_host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, PodSpec,
        ResourceRequirements, SecretEnvSource, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            ..Default::default()
        }
    }

    fn pod_with(container: Container) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some("uid-1".to_string()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                annotations: Some(BTreeMap::from([("note".to_string(), "hello".to_string())])),
                ..meta("shop", "web-0")
            },
            spec: Some(PodSpec {
                containers: vec![container],
                node_name: Some("node-a".to_string()),
                service_account_name: Some("robot".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Container {
        Container {
            name: "app".to_string(),
            env: Some(env),
            env_from: Some(env_from),
            ..Default::default()
        }
    }

    fn literal(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_string(),
            value: Some(value.to_string()),
            ..Default::default()
        }
    }

    fn from_source(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.to_string(),
            value_from: Some(source),
            ..Default::default()
        }
    }

    fn field_ref(name: &str, path: &str) -> EnvVar {
        from_source(
            name,
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".to_string()),
                    field_path: path.to_string(),
                }),
                ..Default::default()
            },
        )
    }

    fn resource_ref(name: &str, resource: &str, divisor: Option<&str>) -> EnvVar {
        from_source(
            name,
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: resource.to_string(),
                    divisor: divisor.map(|d| K8sQuantity(d.to_string())),
                    container_name: None,
                }),
                ..Default::default()
            },
        )
    }

    fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: meta("shop", name),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn secret(name: &str, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: meta("shop", name),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn service(
        namespace: &str,
        name: &str,
        ip: &str,
        ports: &[(Option<&str>, i32, &str)],
    ) -> Service {
        Service {
            metadata: meta(namespace, name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.to_string()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: Some(proto.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sources() -> EnvSources {
        EnvSources {
            node_name: "node-a".to_string(),
            node_ip: "192.168.1.10".to_string(),
            pod_ips: vec!["10.244.1.5".to_string(), "fd00::5".to_string()],
            node_allocatable_cpu_milli: 3500,
            node_allocatable_memory: 8 * 1024 * 1024 * 1024,
            node_allocatable_ephemeral_storage: 100 * 1024 * 1024 * 1024,
            ..Default::default()
        }
    }

    fn env_of(pod: &Pod, sources: &EnvSources) -> Result<Vec<(String, String)>, SpecError> {
        let spec = pod.spec.as_ref().expect("test pod has a spec");
        container_env(pod, &spec.containers[0], sources)
    }

    fn lookup<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn service_variables_for_two_named_ports() {
        let pod = pod_with(container(vec![], vec![]));
        let mut src = sources();
        src.services = vec![service(
            "shop",
            "redis-master",
            "10.96.0.11",
            &[
                (Some("client"), 6379, "TCP"),
                (Some("metrics-udp"), 9121, "UDP"),
            ],
        )];
        let vars = env_of(&pod, &src).expect("env");
        assert_eq!(
            vars,
            pairs(&[
                ("REDIS_MASTER_SERVICE_HOST", "10.96.0.11"),
                ("REDIS_MASTER_SERVICE_PORT", "6379"),
                ("REDIS_MASTER_SERVICE_PORT_CLIENT", "6379"),
                ("REDIS_MASTER_SERVICE_PORT_METRICS_UDP", "9121"),
                ("REDIS_MASTER_PORT", "tcp://10.96.0.11:6379"),
                ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
                ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
                ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
                ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.96.0.11"),
                ("REDIS_MASTER_PORT_9121_UDP", "udp://10.96.0.11:9121"),
                ("REDIS_MASTER_PORT_9121_UDP_PROTO", "udp"),
                ("REDIS_MASTER_PORT_9121_UDP_PORT", "9121"),
                ("REDIS_MASTER_PORT_9121_UDP_ADDR", "10.96.0.11"),
            ])
        );
    }

    #[test]
    fn service_selection_follows_links_namespace_and_cluster_ip() {
        let mut src = sources();
        src.services = vec![
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[(Some("https"), 443, "TCP")],
            ),
            service("shop", "db", "10.96.0.20", &[(None, 5432, "TCP")]),
            service("shop", "headless", "None", &[(None, 80, "TCP")]),
            service("shop", "pending", "", &[(None, 80, "TCP")]),
            service("other", "elsewhere", "10.96.0.30", &[(None, 80, "TCP")]),
            service("shop", "v6", "fd00::1", &[(None, 80, "TCP")]),
        ];
        let pod = pod_with(container(vec![], vec![]));
        let vars = env_of(&pod, &src).expect("env");
        assert_eq!(lookup(&vars, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(lookup(&vars, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(lookup(&vars, "DB_SERVICE_HOST"), Some("10.96.0.20"));
        assert_eq!(lookup(&vars, "DB_PORT"), Some("tcp://10.96.0.20:5432"));
        assert_eq!(lookup(&vars, "V6_PORT"), Some("tcp://[fd00::1]:80"));
        assert!(lookup(&vars, "HEADLESS_SERVICE_HOST").is_none());
        assert!(lookup(&vars, "PENDING_SERVICE_HOST").is_none());
        assert!(lookup(&vars, "ELSEWHERE_SERVICE_HOST").is_none());
        // Unnamed first port: no `_SERVICE_PORT_{NAME}` variable.
        assert!(!vars.iter().any(|(k, _)| k.starts_with("DB_SERVICE_PORT_")));

        // Without service links only the master service remains.
        let mut pod = pod_with(container(vec![], vec![]));
        if let Some(spec) = pod.spec.as_mut() {
            spec.enable_service_links = Some(false);
        }
        let vars = env_of(&pod, &src).expect("env");
        assert_eq!(lookup(&vars, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert!(lookup(&vars, "DB_SERVICE_HOST").is_none());
    }

    #[test]
    fn env_from_with_prefix_and_overrides() {
        let c = container(
            vec![literal("B", "from-env")],
            vec![
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "settings".to_string(),
                        optional: None,
                    }),
                    prefix: Some("CFG_".to_string()),
                    ..Default::default()
                },
                EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: "creds".to_string(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "absent".to_string(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ],
        );
        let pod = pod_with(c);
        let mut src = sources();
        src.config_maps.insert(
            "settings".to_string(),
            config_map("settings", &[("a", "1"), ("bad=key", "x"), ("lives", "3")]),
        );
        src.secrets.insert(
            "creds".to_string(),
            secret("creds", &[("B", b"from-secret"), ("USER", b"admin")]),
        );
        let spec = pod.spec.as_ref().expect("spec");
        let env = container_env_with_warnings(&pod, &spec.containers[0], &src).expect("env");
        assert_eq!(
            env.vars,
            pairs(&[
                ("CFG_a", "1"),
                ("CFG_lives", "3"),
                ("B", "from-env"),
                ("USER", "admin"),
            ])
        );
        assert_eq!(
            env.warnings,
            vec![
                "Keys [CFG_bad=key] from the EnvFrom configMap shop/settings were skipped since \
                 they are considered invalid environment variable names."
                    .to_string()
            ]
        );
    }

    #[test]
    fn env_from_missing_required_source_is_a_config_error() {
        let c = container(
            vec![],
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "gone".to_string(),
                    optional: Some(false),
                }),
                ..Default::default()
            }],
        );
        let err = env_of(&pod_with(c), &sources()).expect_err("missing secret");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        let message = err.to_string();
        assert!(
            message.contains("spec.containers[0].envFrom[0].secretRef"),
            "{message}"
        );
        assert!(message.contains(r#"secret "gone" not found"#), "{message}");
    }

    #[test]
    fn expansion_of_earlier_variables() {
        let c = container(
            vec![
                literal("HOST", "db"),
                literal("URL", "postgres://$(HOST):$(DB_SERVICE_PORT)/$(CFG_name)"),
                literal("ESCAPED", "$$(HOST)"),
                literal("UNDEFINED", "x$(NOPE)y"),
                literal("LATER_REF", "$(LATER)"),
                literal("LATER", "z"),
                field_ref("NAME", "metadata.name"),
                literal("NOT_EXPANDED_AGAIN", "$(NAME)"),
            ],
            vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".to_string(),
                    optional: None,
                }),
                prefix: Some("CFG_".to_string()),
                ..Default::default()
            }],
        );
        let mut src = sources();
        src.config_maps.insert(
            "settings".to_string(),
            config_map("settings", &[("name", "shop")]),
        );
        src.services = vec![service("shop", "db", "10.96.0.20", &[(None, 5432, "TCP")])];
        let vars = env_of(&pod_with(c), &src).expect("env");
        assert_eq!(lookup(&vars, "URL"), Some("postgres://db:5432/shop"));
        assert_eq!(lookup(&vars, "ESCAPED"), Some("$(HOST)"));
        assert_eq!(lookup(&vars, "UNDEFINED"), Some("x$(NOPE)y"));
        assert_eq!(lookup(&vars, "LATER_REF"), Some("$(LATER)"));
        assert_eq!(lookup(&vars, "NOT_EXPANDED_AGAIN"), Some("web-0"));
        // Service variables come first.
        assert_eq!(vars[0].0, "DB_SERVICE_HOST");
    }

    #[test]
    fn env_overrides_service_variable_in_place_of_it() {
        let c = container(vec![literal("DB_SERVICE_HOST", "override")], vec![]);
        let mut src = sources();
        src.services = vec![service("shop", "db", "10.96.0.20", &[(None, 5432, "TCP")])];
        let vars = env_of(&pod_with(c), &src).expect("env");
        let hosts: Vec<_> = vars
            .iter()
            .filter(|(k, _)| k == "DB_SERVICE_HOST")
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(lookup(&vars, "DB_SERVICE_HOST"), Some("override"));
        assert_eq!(
            vars.last().map(|(k, _)| k.as_str()),
            Some("DB_SERVICE_HOST")
        );
    }

    #[test]
    fn every_field_ref() {
        let c = container(
            vec![
                field_ref("NAME", "metadata.name"),
                field_ref("NAMESPACE", "metadata.namespace"),
                field_ref("UID", "metadata.uid"),
                field_ref("LABEL", "metadata.labels['app']"),
                field_ref("NO_LABEL", "metadata.labels['missing']"),
                field_ref("ANNOTATION", "metadata.annotations['note']"),
                field_ref("NODE", "spec.nodeName"),
                field_ref("SA", "spec.serviceAccountName"),
                field_ref("HOST_IP", "status.hostIP"),
                field_ref("HOST_IPS", "status.hostIPs"),
                field_ref("POD_IP", "status.podIP"),
                field_ref("POD_IPS", "status.podIPs"),
            ],
            vec![],
        );
        let vars = env_of(&pod_with(c), &sources()).expect("env");
        assert_eq!(
            vars,
            pairs(&[
                ("NAME", "web-0"),
                ("NAMESPACE", "shop"),
                ("UID", "uid-1"),
                ("LABEL", "web"),
                ("NO_LABEL", ""),
                ("ANNOTATION", "hello"),
                ("NODE", "node-a"),
                ("SA", "robot"),
                ("HOST_IP", "192.168.1.10"),
                ("HOST_IPS", "192.168.1.10"),
                ("POD_IP", "10.244.1.5"),
                ("POD_IPS", "10.244.1.5,fd00::5"),
            ])
        );
    }

    #[test]
    fn unsupported_field_ref_is_a_config_error() {
        let c = container(vec![field_ref("X", "spec.hostname")], vec![]);
        let err = env_of(&pod_with(c), &sources()).expect_err("unsupported");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        assert!(
            err.to_string()
                .contains("spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"),
            "{err}"
        );
    }

    #[test]
    fn resource_field_refs_with_divisors_and_allocatable_defaults() {
        let mut c = container(
            vec![
                resource_ref("CPU_LIMIT_M", "limits.cpu", Some("1m")),
                resource_ref("CPU_LIMIT", "limits.cpu", None),
                resource_ref("CPU_REQUEST", "requests.cpu", Some("1")),
                resource_ref("MEM_REQUEST_MI", "requests.memory", Some("1Mi")),
                resource_ref("MEM_LIMIT_MI", "limits.memory", Some("1Mi")),
                resource_ref("MEM_LIMIT", "limits.memory", None),
                resource_ref("EPH_LIMIT_GI", "limits.ephemeral-storage", Some("1Gi")),
                resource_ref("EPH_REQUEST", "requests.ephemeral-storage", None),
            ],
            vec![],
        );
        c.resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), K8sQuantity("250m".to_string())),
                ("memory".to_string(), K8sQuantity("100Mi".to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                K8sQuantity("300M".to_string()),
            )])),
            ..Default::default()
        });
        let vars = env_of(&pod_with(c), &sources()).expect("env");
        assert_eq!(
            vars,
            pairs(&[
                // No CPU limit: the node's allocatable 3500m.
                ("CPU_LIMIT_M", "3500"),
                ("CPU_LIMIT", "4"),
                // 250m in whole cores rounds up.
                ("CPU_REQUEST", "1"),
                ("MEM_REQUEST_MI", "100"),
                // 300M = 286.1Mi, rounded up.
                ("MEM_LIMIT_MI", "287"),
                ("MEM_LIMIT", "300000000"),
                ("EPH_LIMIT_GI", "100"),
                ("EPH_REQUEST", "0"),
            ])
        );
    }

    #[test]
    fn resource_field_ref_of_another_container_and_unknown_resource() {
        let mut sidecar = Container {
            name: "sidecar".to_string(),
            ..Default::default()
        };
        sidecar.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "cpu".to_string(),
                K8sQuantity("1500m".to_string()),
            )])),
            ..Default::default()
        });
        let mut by_name = resource_ref("SIDECAR_CPU", "limits.cpu", Some("1m"));
        if let Some(r) = by_name
            .value_from
            .as_mut()
            .and_then(|s| s.resource_field_ref.as_mut())
        {
            r.container_name = Some("sidecar".to_string());
        }
        let mut pod = pod_with(container(vec![by_name], vec![]));
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers.push(sidecar);
        }
        let vars = env_of(&pod, &sources()).expect("env");
        assert_eq!(lookup(&vars, "SIDECAR_CPU"), Some("1500"));

        let c = container(vec![resource_ref("X", "limits.gpu", None)], vec![]);
        let err = env_of(&pod_with(c), &sources()).expect_err("unsupported");
        assert!(
            err.to_string().contains("unsupported container resource"),
            "{err}"
        );
    }

    fn key_ref(name: &str, config_map: &str, key: &str, optional: Option<bool>) -> EnvVar {
        from_source(
            name,
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: config_map.to_string(),
                    key: key.to_string(),
                    optional,
                }),
                ..Default::default()
            },
        )
    }

    fn secret_key_ref(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
        from_source(
            name,
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_string(),
                    key: key.to_string(),
                    optional,
                }),
                ..Default::default()
            },
        )
    }

    #[test]
    fn config_map_and_secret_keys_optional_and_required() {
        let mut src = sources();
        src.config_maps.insert(
            "settings".to_string(),
            config_map("settings", &[("level", "debug")]),
        );
        src.secrets.insert(
            "creds".to_string(),
            secret("creds", &[("password", b"s3cret")]),
        );
        let c = container(
            vec![
                key_ref("LEVEL", "settings", "level", None),
                key_ref("OPTIONAL_KEY", "settings", "nope", Some(true)),
                key_ref("OPTIONAL_MAP", "absent", "x", Some(true)),
                secret_key_ref("PASSWORD", "creds", "password", None),
                secret_key_ref("OPTIONAL_SECRET", "creds", "nope", Some(true)),
                literal("LEVEL_AGAIN", "$(LEVEL)"),
                literal("OPTIONAL_REF", "$(OPTIONAL_KEY)"),
            ],
            vec![],
        );
        let vars = env_of(&pod_with(c), &src).expect("env");
        assert_eq!(
            vars,
            pairs(&[
                ("LEVEL", "debug"),
                ("PASSWORD", "s3cret"),
                ("LEVEL_AGAIN", "debug"),
                ("OPTIONAL_REF", "$(OPTIONAL_KEY)"),
            ])
        );

        let c = container(
            vec![
                literal("A", "1"),
                key_ref("LEVEL", "settings", "nope", None),
            ],
            vec![],
        );
        let err = env_of(&pod_with(c), &src).expect_err("missing key");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        let message = err.to_string();
        assert!(
            message.contains("spec.containers[0].env[1].valueFrom.configMapKeyRef"),
            "{message}"
        );
        assert!(message.contains("settings/nope"), "{message}");
        assert!(
            message.contains("couldn't find key nope in ConfigMap shop/settings"),
            "{message}"
        );

        let c = container(
            vec![key_ref("LEVEL", "absent", "level", Some(false))],
            vec![],
        );
        let err = env_of(&pod_with(c), &src).expect_err("missing map");
        assert!(
            err.to_string().contains(r#"configmap "absent" not found"#),
            "{err}"
        );

        let c = container(vec![secret_key_ref("P", "creds", "nope", None)], vec![]);
        let err = env_of(&pod_with(c), &src).expect_err("missing secret key");
        assert!(
            err.to_string()
                .contains("couldn't find key nope in Secret shop/creds"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_secret_is_refused() {
        let mut src = sources();
        src.secrets
            .insert("bin".to_string(), secret("bin", &[("blob", &[0xff, 0xfe])]));
        let c = container(vec![secret_key_ref("B", "bin", "blob", None)], vec![]);
        let err = env_of(&pod_with(c), &src).expect_err("not utf-8");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn empty_literal_defines_an_empty_variable() {
        let c = container(
            vec![
                literal("EMPTY", ""),
                EnvVar {
                    name: "NONE".to_string(),
                    ..Default::default()
                },
            ],
            vec![],
        );
        let vars = env_of(&pod_with(c), &sources()).expect("env");
        assert_eq!(vars, pairs(&[("EMPTY", ""), ("NONE", "")]));
    }
}

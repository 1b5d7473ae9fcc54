//! A pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, computed as the kubelet
//! does (pure functions of the pod and the node's settings) and written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};
use tracing::debug;

use super::NetworkError;

/// Longest hostname the kubelet gives a pod (a DNS-1123 label).
const MAX_HOSTNAME_LEN: usize = 63;
/// Longest FQDN usable as a hostname with `setHostnameAsFQDN` (the kernel's limit).
const MAX_FQDN_HOSTNAME_LEN: usize = 64;
/// resolv.conf limits the kubelet enforces (glibc reads at most 3 nameservers).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_LINE_CHARS: usize = 2048;
const MAX_SEARCH_DOMAIN_LEN: usize = 253;
/// The options the kubelet gives pods that use the cluster's DNS.
const CLUSTER_DNS_OPTIONS: &[&str] = &["ndots:5"];

const HOSTS_FILE: &str = "hosts";
const HOSTNAME_FILE: &str = "hostname";
const RESOLV_CONF_FILE: &str = "resolv.conf";

/// The node's settings that shape pod files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFileSettings {
    /// Nameservers of the cluster DNS (the node's netagent), for `ClusterFirst` pods.
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain, normally "cluster.local".
    pub cluster_domain: String,
    /// The node's resolv.conf, for `Default` pods and host-network `ClusterFirst` pods;
    /// `None` means the node has none (such pods get no nameserver).
    pub host_resolv_conf: Option<PathBuf>,
    /// The node's hosts file, which host-network pods see.
    pub host_hosts_file: PathBuf,
    /// The node's hostname, which host-network pods get.
    pub node_hostname: String,
}

impl PodFileSettings {
    /// Settings with the standard cluster domain and the node's own files.
    pub fn new(cluster_dns: Vec<String>, node_hostname: impl Into<String>) -> PodFileSettings {
        PodFileSettings {
            cluster_dns,
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            host_hosts_file: PathBuf::from("/etc/hosts"),
            node_hostname: node_hostname.into(),
        }
    }
}

/// Where [`write_pod_files`] put the files, to be bind-mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// Becomes `/etc/hosts`.
    pub hosts: PathBuf,
    /// Becomes `/etc/hostname`.
    pub hostname: PathBuf,
    /// Becomes `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

/// A pod's hostname and, when it has a subdomain, its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHostname {
    /// Short hostname: `spec.hostname`, else the pod name, at most 63 characters.
    pub hostname: String,
    /// `<subdomain>.<namespace>.svc.<cluster-domain>` when `spec.subdomain` is set.
    pub domain: Option<String>,
}

impl PodHostname {
    /// `hostname.domain`, or the short hostname when there is no domain.
    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{}.{domain}", self.hostname),
            None => self.hostname.clone(),
        }
    }
}

/// The nameservers, search domains and options of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line, each `name` or `name:value`.
    pub options: Vec<String>,
}

/// How a pod's resolv.conf is made, from `spec.dnsPolicy` and `spec.hostNetwork`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsSource {
    /// The cluster DNS and search domains.
    Cluster,
    /// The node's resolv.conf.
    Host,
    /// Only what `spec.dnsConfig` says.
    Empty,
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn spec_error(pod: &Pod, reason: String) -> NetworkError {
    NetworkError::PodSpec {
        pod: pod_name(pod),
        reason,
    }
}

fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_HOSTNAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// The pod's hostname and domain, as the kubelet derives them.
pub fn pod_hostname(pod: &Pod, cluster_domain: &str) -> Result<PodHostname, NetworkError> {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let hostname = match spec
        .and_then(|spec| spec.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        Some(hostname) if is_dns_label(hostname) => hostname.to_string(),
        Some(hostname) => {
            return Err(spec_error(
                pod,
                format!("spec.hostname {hostname:?} is not a DNS-1123 label"),
            ))
        }
        None => name.to_string(),
    };
    if hostname.is_empty() {
        return Err(spec_error(
            pod,
            "has neither a name nor spec.hostname".to_string(),
        ));
    }
    // Long pod names are cut like the kubelet does, without a trailing '-' or '.'.
    let hostname = if hostname.len() > MAX_HOSTNAME_LEN {
        hostname[..MAX_HOSTNAME_LEN]
            .trim_end_matches(['-', '.'])
            .to_string()
    } else {
        hostname
    };
    let domain = match spec
        .and_then(|spec| spec.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(subdomain) if is_dns_label(subdomain) => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            Some(format!("{subdomain}.{namespace}.svc.{cluster_domain}"))
        }
        Some(subdomain) => {
            return Err(spec_error(
                pod,
                format!("spec.subdomain {subdomain:?} is not a DNS-1123 label"),
            ))
        }
        None => None,
    };
    Ok(PodHostname { hostname, domain })
}

fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.host_network)
        .unwrap_or(false)
}

/// Content of the pod's `/etc/hostname`: the node's name for host-network pods, else the
/// pod hostname (its FQDN with `setHostnameAsFQDN`).
pub fn hostname_file_content(
    pod: &Pod,
    settings: &PodFileSettings,
) -> Result<String, NetworkError> {
    if is_host_network(pod) {
        return Ok(format!("{}\n", settings.node_hostname));
    }
    let names = pod_hostname(pod, &settings.cluster_domain)?;
    let as_fqdn = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.set_hostname_as_fqdn)
        .unwrap_or(false);
    let hostname = if as_fqdn {
        names.fqdn()
    } else {
        names.hostname
    };
    if hostname.len() > MAX_FQDN_HOSTNAME_LEN {
        return Err(spec_error(
            pod,
            format!("hostname {hostname:?} is longer than {MAX_FQDN_HOSTNAME_LEN} characters"),
        ));
    }
    Ok(format!("{hostname}\n"))
}

/// The `hostAliases` section of a hosts file (empty when there are none).
fn host_alias_entries(pod: &Pod) -> Result<String, NetworkError> {
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.host_aliases.as_deref())
        .unwrap_or_default();
    if aliases.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let ip: IpAddr = alias.ip.parse().map_err(|_| {
            spec_error(
                pod,
                format!("hostAliases ip {:?} is not an IP address", alias.ip),
            )
        })?;
        let hostnames = alias.hostnames.as_deref().unwrap_or_default();
        // A hostname with whitespace would forge further entries in the file.
        if let Some(bad) = hostnames.iter().find(|name| {
            name.is_empty() || name.contains(char::is_whitespace) || name.contains('#')
        }) {
            return Err(spec_error(
                pod,
                format!("hostAliases hostname {bad:?} is not a hostname"),
            ));
        }
        out.push_str(&format!("{ip}\t{}\n", hostnames.join("\t")));
    }
    Ok(out)
}

/// Content of the pod's `/etc/hosts`: the kubelet's managed file (localhost, IPv6 names,
/// the pod's own names on its IPs, `hostAliases`), or for host-network pods the node's
/// hosts file (`host_hosts`) followed by `hostAliases`.
pub fn hosts_file_content(
    pod: &Pod,
    pod_ips: &[IpAddr],
    cluster_domain: &str,
    host_hosts: Option<&str>,
) -> Result<String, NetworkError> {
    let aliases = host_alias_entries(pod)?;
    if is_host_network(pod) {
        let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
        let node_hosts = host_hosts.unwrap_or_default();
        out.push_str(node_hosts);
        if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&aliases);
        return Ok(out);
    }
    let names = pod_hostname(pod, cluster_domain)?;
    let mut out = String::from(concat!(
        "# Kubernetes-managed hosts file.\n",
        "127.0.0.1\tlocalhost\n",
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
        "fe00::\tip6-localnet\n",
        "fe00::\tip6-mcastprefix\n",
        "fe00::1\tip6-allnodes\n",
        "fe00::2\tip6-allrouters\n",
    ));
    for ip in pod_ips {
        match &names.domain {
            Some(_) => out.push_str(&format!("{ip}\t{}\t{}\n", names.fqdn(), names.hostname)),
            None => out.push_str(&format!("{ip}\t{}\n", names.hostname)),
        }
    }
    out.push_str(&aliases);
    Ok(out)
}

/// Parses a resolv.conf as the kubelet does: `nameserver` lines add up, the last
/// `search` line wins, `options` add up (a later option replaces one of the same name).
pub fn parse_resolv_conf(content: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(server) = fields.next() {
                    config.nameservers.push(server.to_string());
                }
            }
            Some("search") => {
                config.searches = fields
                    .filter(|domain| *domain != ".")
                    .map(|domain| domain.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                for option in fields {
                    merge_option(&mut config.options, option);
                }
            }
            _ => {}
        }
    }
    config
}

fn option_name(option: &str) -> &str {
    option.split_once(':').map_or(option, |(name, _)| name)
}

/// Adds `option`, replacing an option of the same name in place.
fn merge_option(options: &mut Vec<String>, option: &str) {
    let name = option_name(option);
    match options
        .iter_mut()
        .find(|existing| option_name(existing) == name)
    {
        Some(existing) => *existing = option.to_string(),
        None => options.push(option.to_string()),
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn dns_source(pod: &Pod) -> Result<DnsSource, NetworkError> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.dns_policy.as_deref())
        .filter(|policy| !policy.is_empty())
        .unwrap_or("ClusterFirst");
    match policy {
        "None" => Ok(DnsSource::Empty),
        "ClusterFirstWithHostNet" => Ok(DnsSource::Cluster),
        // A host-network pod cannot reach the cluster DNS through its own address.
        "ClusterFirst" if is_host_network(pod) => Ok(DnsSource::Host),
        "ClusterFirst" => Ok(DnsSource::Cluster),
        "Default" => Ok(DnsSource::Host),
        other => Err(spec_error(
            pod,
            format!("spec.dnsPolicy {other:?} is not ClusterFirst, ClusterFirstWithHostNet, Default or None"),
        )),
    }
}

/// The pod's DNS settings, as the kubelet computes them from `dnsPolicy`, the cluster DNS,
/// the node's resolv.conf (`host`) and `spec.dnsConfig`, within resolv.conf's limits.
pub fn pod_dns_config(
    pod: &Pod,
    settings: &PodFileSettings,
    host: &DnsConfig,
) -> Result<DnsConfig, NetworkError> {
    let mut source = dns_source(pod)?;
    // Without a known cluster DNS, the kubelet falls back to the node's settings.
    if source == DnsSource::Cluster && settings.cluster_dns.is_empty() {
        source = DnsSource::Host;
    }
    let mut config = match source {
        DnsSource::Empty => DnsConfig::default(),
        DnsSource::Host => host.clone(),
        DnsSource::Cluster => {
            let mut searches = Vec::new();
            if !settings.cluster_domain.is_empty() {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let domain = &settings.cluster_domain;
                searches = vec![
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.clone(),
                ];
            }
            push_unique(&mut searches, host.searches.iter().cloned());
            DnsConfig {
                nameservers: settings.cluster_dns.clone(),
                searches,
                options: CLUSTER_DNS_OPTIONS.iter().map(|o| o.to_string()).collect(),
            }
        }
    };
    if let Some(extra) = pod.spec.as_ref().and_then(|spec| spec.dns_config.as_ref()) {
        append_pod_dns_config(pod, &mut config, extra)?;
    }
    fit_limits(&mut config);
    Ok(config)
}

/// Adds `spec.dnsConfig`: nameservers and searches appended without duplicates, options
/// merged by name (the pod's value wins).
fn append_pod_dns_config(
    pod: &Pod,
    config: &mut DnsConfig,
    extra: &PodDNSConfig,
) -> Result<(), NetworkError> {
    let all_words = |values: &[String], what: &str| -> Result<(), NetworkError> {
        match values
            .iter()
            .find(|v| v.is_empty() || v.contains(char::is_whitespace))
        {
            Some(bad) => Err(spec_error(
                pod,
                format!("dnsConfig {what} {bad:?} is empty or has whitespace"),
            )),
            None => Ok(()),
        }
    };
    let nameservers = extra.nameservers.clone().unwrap_or_default();
    all_words(&nameservers, "nameserver")?;
    push_unique(&mut config.nameservers, nameservers);
    let searches = extra.searches.clone().unwrap_or_default();
    all_words(&searches, "search domain")?;
    push_unique(&mut config.searches, searches);
    for option in extra.options.as_deref().unwrap_or_default() {
        let name = option.name.as_deref().unwrap_or_default();
        let text = match option.value.as_deref().filter(|v| !v.is_empty()) {
            Some(value) => format!("{name}:{value}"),
            None => name.to_string(),
        };
        all_words(std::slice::from_ref(&text), "option")?;
        merge_option(&mut config.options, &text);
    }
    Ok(())
}

/// Cuts nameservers and search domains to what resolvers accept, like the kubelet.
fn fit_limits(config: &mut DnsConfig) {
    if config.nameservers.len() > MAX_NAMESERVERS {
        debug!(dropped = ?&config.nameservers[MAX_NAMESERVERS..], "too many nameservers");
        config.nameservers.truncate(MAX_NAMESERVERS);
    }
    config.searches.truncate(MAX_SEARCH_PATHS);
    // Some glibc versions abort on a search domain longer than 255 characters.
    config
        .searches
        .retain(|domain| domain.len() <= MAX_SEARCH_DOMAIN_LEN);
    while config.searches.join(" ").len() > MAX_SEARCH_LINE_CHARS {
        config.searches.pop();
    }
}

/// Renders a resolv.conf (search, nameservers, options; lines left out when empty).
pub fn resolv_conf_content(config: &DnsConfig) -> String {
    let mut out = String::new();
    if !config.searches.is_empty() {
        out.push_str(&format!("search {}\n", config.searches.join(" ")));
    }
    for server in &config.nameservers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !config.options.is_empty() {
        out.push_str(&format!("options {}\n", config.options.join(" ")));
    }
    out
}

/// The pod's resolv.conf. A pod that simply uses the node's resolv.conf gets it verbatim
/// (keeping lines the kubelet's parser does not know); all others get a rendered one.
pub fn pod_resolv_conf(
    pod: &Pod,
    settings: &PodFileSettings,
    host_resolv_conf: &str,
) -> Result<String, NetworkError> {
    let has_dns_config = pod
        .spec
        .as_ref()
        .is_some_and(|spec| spec.dns_config.is_some());
    let host = parse_resolv_conf(host_resolv_conf);
    let source = dns_source(pod)?;
    let uses_host = source == DnsSource::Host
        || (source == DnsSource::Cluster && settings.cluster_dns.is_empty());
    if uses_host && !has_dns_config {
        let mut fitted = host.clone();
        fit_limits(&mut fitted);
        if fitted == host {
            return Ok(host_resolv_conf.to_string());
        }
    }
    Ok(resolv_conf_content(&pod_dns_config(pod, settings, &host)?))
}

fn read_optional(path: &Path) -> Result<String, NetworkError> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(content),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(NetworkError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `content` to `path` so readers see the old or the new file, never a part:
/// a temporary file beside it, flushed to disk, renamed over it.
pub fn write_file_atomic(path: &Path, content: &str, mode: u32) -> Result<(), NetworkError> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| NetworkError::Io {
            action,
            path,
            source,
        }
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| NetworkError::Io {
            action: "write",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        })?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_error("replace", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("sync directory", dir))?;
    }
    Ok(())
}

/// Computes the pod's hosts, hostname and resolv.conf files and writes them into
/// `pod_dir` (created if needed) as `hosts`, `hostname` and `resolv.conf`.
pub fn write_pod_files(
    pod_dir: &Path,
    pod: &Pod,
    pod_ips: &[IpAddr],
    settings: &PodFileSettings,
) -> Result<PodFiles, NetworkError> {
    let host_hosts = if is_host_network(pod) {
        Some(read_optional(&settings.host_hosts_file)?)
    } else {
        None
    };
    let host_resolv_conf = match &settings.host_resolv_conf {
        Some(path) => read_optional(path)?,
        None => String::new(),
    };
    let hosts = hosts_file_content(
        pod,
        pod_ips,
        &settings.cluster_domain,
        host_hosts.as_deref(),
    )?;
    let hostname = hostname_file_content(pod, settings)?;
    let resolv_conf = pod_resolv_conf(pod, settings, &host_resolv_conf)?;

    fs::create_dir_all(pod_dir).map_err(|source| NetworkError::Io {
        action: "create pod directory",
        path: pod_dir.to_path_buf(),
        source,
    })?;
    let files = PodFiles {
        hosts: pod_dir.join(HOSTS_FILE),
        hostname: pod_dir.join(HOSTNAME_FILE),
        resolv_conf: pod_dir.join(RESOLV_CONF_FILE),
    };
    write_file_atomic(&files.hosts, &hosts, 0o644)?;
    write_file_atomic(&files.hostname, &hostname, 0o644)?;
    write_file_atomic(&files.resolv_conf, &resolv_conf, 0o644)?;
    debug!(pod = %pod_name(pod), dir = %pod_dir.display(), "pod files written");
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, namespace: &str, spec: PodSpec) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn settings() -> PodFileSettings {
        PodFileSettings {
            cluster_dns: vec!["10.96.0.10".to_string()],
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: None,
            host_hosts_file: PathBuf::from("/nonexistent/hosts"),
            node_hostname: "node-a".to_string(),
        }
    }

    const HOST_RESOLV: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example. lab.example\noptions timeout:2 rotate\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_file_for_a_plain_pod() {
        let pod = pod("web-0", "shop", PodSpec::default());
        let hosts = hosts_file_content(&pod, &[ip("10.244.1.5")], "cluster.local", None).unwrap();
        assert_eq!(
            hosts,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::\tip6-localnet\n\
             fe00::\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.244.1.5\tweb-0\n"
        );
    }

    #[test]
    fn hosts_file_with_subdomain_and_aliases() {
        let pod = pod(
            "web-0",
            "shop",
            PodSpec {
                hostname: Some("db".to_string()),
                subdomain: Some("backend".to_string()),
                host_aliases: Some(vec![HostAlias {
                    ip: "192.0.2.7".to_string(),
                    hostnames: Some(vec!["foo.local".to_string(), "bar".to_string()]),
                }]),
                ..Default::default()
            },
        );
        let hosts = hosts_file_content(&pod, &[ip("10.244.1.5")], "corp.internal", None).unwrap();
        assert!(
            hosts.contains("10.244.1.5\tdb.backend.shop.svc.corp.internal\tdb\n"),
            "{hosts}"
        );
        assert!(
            hosts.ends_with("\n# Entries added by HostAliases.\n192.0.2.7\tfoo.local\tbar\n"),
            "{hosts}"
        );
    }

    #[test]
    fn hosts_file_rejects_forged_aliases() {
        let bad_ip = pod(
            "p",
            "d",
            PodSpec {
                host_aliases: Some(vec![HostAlias {
                    ip: "1.2.3.4\n5.6.7.8".to_string(),
                    hostnames: Some(vec!["x".to_string()]),
                }]),
                ..Default::default()
            },
        );
        assert!(hosts_file_content(&bad_ip, &[], "cluster.local", None).is_err());
        let bad_name = pod(
            "p",
            "d",
            PodSpec {
                host_aliases: Some(vec![HostAlias {
                    ip: "1.2.3.4".to_string(),
                    hostnames: Some(vec!["x\n9.9.9.9 evil".to_string()]),
                }]),
                ..Default::default()
            },
        );
        let error = hosts_file_content(&bad_name, &[], "cluster.local", None).unwrap_err();
        assert!(error.to_string().contains("d/p"), "{error}");
    }

    #[test]
    fn host_network_pod_sees_node_hosts_and_hostname() {
        let pod = pod(
            "agent",
            "kube-system",
            PodSpec {
                host_network: Some(true),
                host_aliases: Some(vec![HostAlias {
                    ip: "192.0.2.1".to_string(),
                    hostnames: Some(vec!["gw".to_string()]),
                }]),
                ..Default::default()
            },
        );
        let hosts = hosts_file_content(
            &pod,
            &[ip("192.0.2.10")],
            "cluster.local",
            Some("127.0.0.1 localhost"),
        )
        .unwrap();
        assert_eq!(
            hosts,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n192.0.2.1\tgw\n"
        );
        assert_eq!(
            hostname_file_content(&pod, &settings()).unwrap(),
            "node-a\n"
        );
    }

    #[test]
    fn hostname_rules() {
        let long_name = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let long = pod(&long_name, "d", PodSpec::default());
        let names = pod_hostname(&long, "cluster.local").unwrap();
        assert_eq!(
            names.hostname,
            "a".repeat(62),
            "cut to 63, trailing '-' removed"
        );

        let fqdn = pod(
            "p",
            "ns",
            PodSpec {
                hostname: Some("h".to_string()),
                subdomain: Some("s".to_string()),
                set_hostname_as_fqdn: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            hostname_file_content(&fqdn, &settings()).unwrap(),
            "h.s.ns.svc.cluster.local\n"
        );

        let plain = pod("p", "ns", PodSpec::default());
        assert_eq!(hostname_file_content(&plain, &settings()).unwrap(), "p\n");

        let bad = pod(
            "p",
            "ns",
            PodSpec {
                hostname: Some("Not_A_Label".to_string()),
                ..Default::default()
            },
        );
        assert!(pod_hostname(&bad, "cluster.local").is_err());
    }

    #[test]
    fn cluster_first_resolv_conf() {
        let pod = pod("p", "shop", PodSpec::default());
        let content = pod_resolv_conf(&pod, &settings(), "").unwrap();
        assert_eq!(
            content,
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn cluster_first_appends_host_search_and_drops_host_servers() {
        let pod = pod("p", "shop", PodSpec::default());
        let mut s = settings();
        s.cluster_domain = "corp.internal".to_string();
        let content = pod_resolv_conf(&pod, &s, HOST_RESOLV).unwrap();
        assert_eq!(
            content,
            "search shop.svc.corp.internal svc.corp.internal corp.internal corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_cluster_first_uses_node_resolv_conf_verbatim() {
        let pod = pod(
            "p",
            "shop",
            PodSpec {
                host_network: Some(true),
                dns_policy: Some("ClusterFirst".to_string()),
                ..Default::default()
            },
        );
        assert_eq!(
            pod_resolv_conf(&pod, &settings(), HOST_RESOLV).unwrap(),
            HOST_RESOLV
        );

        let with_host_net = pod_with_policy("ClusterFirstWithHostNet", true);
        assert!(pod_resolv_conf(&with_host_net, &settings(), HOST_RESOLV)
            .unwrap()
            .contains("nameserver 10.96.0.10\n"));
    }

    fn pod_with_policy(policy: &str, host_network: bool) -> Pod {
        pod(
            "p",
            "shop",
            PodSpec {
                host_network: Some(host_network),
                dns_policy: Some(policy.to_string()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn default_policy_uses_node_settings() {
        let pod = pod_with_policy("Default", false);
        assert_eq!(
            pod_resolv_conf(&pod, &settings(), HOST_RESOLV).unwrap(),
            HOST_RESOLV
        );
        let config = pod_dns_config(&pod, &settings(), &parse_resolv_conf(HOST_RESOLV)).unwrap();
        assert_eq!(config.nameservers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(config.searches, ["corp.example", "lab.example"]);
        assert_eq!(config.options, ["timeout:2", "rotate"]);
    }

    #[test]
    fn none_policy_takes_only_dns_config() {
        let mut pod = pod_with_policy("None", false);
        pod.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".to_string()]),
            searches: Some(vec!["a.example".to_string()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".to_string()),
                value: Some("2".to_string()),
            }]),
        });
        assert_eq!(
            pod_resolv_conf(&pod, &settings(), HOST_RESOLV).unwrap(),
            "search a.example\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn dns_config_merges_into_cluster_first() {
        let mut pod = pod("p", "shop", PodSpec::default());
        pod.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["10.96.0.10".to_string(), "192.0.2.99".to_string()]),
            searches: Some(vec![
                "svc.cluster.local".to_string(),
                "extra.example".to_string(),
            ]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".to_string()),
                    value: Some("1".to_string()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".to_string()),
                    value: None,
                },
            ]),
        });
        let config = pod_dns_config(&pod, &settings(), &DnsConfig::default()).unwrap();
        assert_eq!(config.nameservers, ["10.96.0.10", "192.0.2.99"]);
        assert_eq!(
            config.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "extra.example"
            ]
        );
        assert_eq!(config.options, ["ndots:1", "edns0"]);
    }

    #[test]
    fn limits_and_bad_policy() {
        let mut pod = pod_with_policy("None", false);
        pod.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some((1..=5).map(|i| format!("192.0.2.{i}")).collect()),
            searches: Some((0..40).map(|i| format!("d{i}.example")).collect()),
            options: None,
        });
        let config = pod_dns_config(&pod, &settings(), &DnsConfig::default()).unwrap();
        assert_eq!(config.nameservers.len(), 3);
        assert_eq!(config.searches.len(), 32);

        let bad = pod_with_policy("Sometimes", false);
        let error = pod_resolv_conf(&bad, &settings(), "").unwrap_err();
        assert!(error.to_string().contains("\"Sometimes\""), "{error}");
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_node() {
        let pod = pod("p", "shop", PodSpec::default());
        let mut s = settings();
        s.cluster_dns.clear();
        assert_eq!(pod_resolv_conf(&pod, &s, HOST_RESOLV).unwrap(), HOST_RESOLV);
    }

    #[test]
    fn parse_resolv_conf_like_the_kubelet() {
        let config = parse_resolv_conf("search a b\n; comment\nsearch c.\nnameserver 1.1.1.1\noptions ndots:1 x\noptions ndots:3\ndomain ignored\n");
        assert_eq!(config.searches, ["c"]);
        assert_eq!(config.nameservers, ["1.1.1.1"]);
        assert_eq!(config.options, ["ndots:3", "x"]);
    }

    #[test]
    fn files_are_written_atomically_into_the_pod_dir() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pods/uid-1");
        let pod = pod("web", "shop", PodSpec::default());
        let files = write_pod_files(&pod_dir, &pod, &[ip("10.244.1.9")], &settings()).unwrap();
        assert_eq!(fs::read_to_string(&files.hostname).unwrap(), "web\n");
        assert!(fs::read_to_string(&files.hosts)
            .unwrap()
            .contains("10.244.1.9\tweb\n"));
        assert!(fs::read_to_string(&files.resolv_conf)
            .unwrap()
            .contains("options ndots:5\n"));
        // Rewriting replaces the content and leaves no temporary file.
        write_file_atomic(&files.hostname, "other\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&files.hostname).unwrap(), "other\n");
        let mut names: Vec<_> = fs::read_dir(&pod_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hostname", "hosts", "resolv.conf"]);
    }
}

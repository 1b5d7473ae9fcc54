//! What pods draw on besides their own spec — config maps, secrets, services, claims — kept
//! in watch-fed caches (kube-rs reflectors), so starting a container costs no API round
//! trip and mounted config maps and secrets follow their objects.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use skiff_runtime::volumes::VolumeSources;

/// The objects of one namespace a pod may refer to.
#[derive(Debug, Clone, Default)]
pub struct NamespaceObjects {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// The namespace's services plus `default/kubernetes`.
    pub services: Vec<Service>,
}

pub struct ClusterCache {
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
    services: Store<Service>,
    client: kube::Client,
}

fn spawn_reflector<K>(client: &kube::Client) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let api: Api<K> = Api::all(client.clone());
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                tracing::debug!(error = %e, kind = %K::kind(&()), "cache watch");
            }
        }
    });
    store
}

fn by_name<K: kube::Resource + Clone>(
    items: Vec<std::sync::Arc<K>>,
    ns: &str,
) -> BTreeMap<String, K> {
    items
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter_map(|o| o.meta().name.clone().map(|n| (n, (*o).clone())))
        .collect()
}

/// Names of config maps and secrets the pod refers to (env, envFrom, volumes).
fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (cms, secrets);
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value_from {
                if let Some(r) = &v.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &v.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &e.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

impl ClusterCache {
    pub fn start(client: &kube::Client) -> ClusterCache {
        ClusterCache {
            config_maps: spawn_reflector(client),
            secrets: spawn_reflector(client),
            services: spawn_reflector(client),
            client: client.clone(),
        }
    }

    fn cached(&self, ns: &str) -> NamespaceObjects {
        let mut services: Vec<Service> = self
            .services
            .state()
            .into_iter()
            .filter(|s| {
                let m = &s.metadata;
                m.namespace.as_deref() == Some(ns)
                    || (m.namespace.as_deref() == Some("default")
                        && m.name.as_deref() == Some("kubernetes"))
            })
            .map(|s| (*s).clone())
            .collect();
        services.dedup_by(|a, b| a.metadata.uid == b.metadata.uid);
        NamespaceObjects {
            config_maps: by_name(self.config_maps.state(), ns),
            secrets: by_name(self.secrets.state(), ns),
            services,
        }
    }

    /// The pod's namespace's objects: from the caches, or from the API when the caches do
    /// not (yet) hold something the pod names — an object created a moment ago.
    pub async fn for_pod(&self, pod: &Pod) -> Result<NamespaceObjects> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let cached = self.cached(ns);
        let (cms, secrets) = referenced(pod);
        let complete = cms.iter().all(|n| cached.config_maps.contains_key(n))
            && secrets.iter().all(|n| cached.secrets.contains_key(n))
            && !cached.services.is_empty();
        if complete {
            return Ok(cached);
        }
        let lp = kube::api::ListParams::default();
        let config_maps = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .context("listing config maps")?
            .items;
        let secrets = Api::<Secret>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .context("listing secrets")?
            .items;
        let mut services = Api::<Service>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .context("listing services")?
            .items;
        if ns != "default" {
            if let Some(k) = Api::<Service>::namespaced(self.client.clone(), "default")
                .get_opt("kubernetes")
                .await
                .context("reading the kubernetes service")?
            {
                services.push(k);
            }
        }
        let named = |m: &kube::api::ObjectMeta| m.name.clone().unwrap_or_default();
        Ok(NamespaceObjects {
            config_maps: config_maps
                .into_iter()
                .map(|o| (named(&o.metadata), o))
                .collect(),
            secrets: secrets
                .into_iter()
                .map(|o| (named(&o.metadata), o))
                .collect(),
            services,
        })
    }

    /// What the pod's volumes need: the namespace's config maps and secrets, and the
    /// claims it mounts with their volumes.
    pub async fn volume_sources(
        &self,
        pod: &Pod,
        objects: &NamespaceObjects,
        node_name: &str,
    ) -> Result<VolumeSources> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut pvcs = BTreeMap::new();
        let mut pvs = BTreeMap::new();
        let claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        for claim in claims {
            let Some(pvc) = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
                .get_opt(&claim)
                .await
                .with_context(|| format!("reading claim {ns}/{claim}"))?
            else {
                continue;
            };
            if let Some(pv_name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                if let Some(pv) = Api::<PersistentVolume>::all(self.client.clone())
                    .get_opt(&pv_name)
                    .await
                    .with_context(|| format!("reading volume {pv_name}"))?
                {
                    pvs.insert(pv_name, pv);
                }
            }
            pvcs.insert(claim, pvc);
        }
        Ok(VolumeSources {
            config_maps: objects.config_maps.clone(),
            secrets: objects.secrets.clone(),
            pvcs,
            pvs,
            node_name: node_name.to_string(),
        })
    }

    /// The cached view only (for the periodic refresh of mounted config maps and secrets).
    pub fn cached_for(&self, ns: &str) -> NamespaceObjects {
        self.cached(ns)
    }
}

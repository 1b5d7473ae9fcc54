//! The garbage collector's sweep: objects whose owners are all gone are deleted, and
//! references to owners that are gone are dropped from objects that still have a live owner.
//!
//! Cascading deletion itself (background, foreground with `blockOwnerDeletion`, orphan) is
//! done by the API server when an owner is deleted (control/src/registry/lifecycle.rs). This
//! sweep catches what that cannot: dependents created with a reference to an owner that was
//! already gone, and dependents left behind when the control plane stopped mid-cascade.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PropagationPolicy,
};
use kube::Resource;
use serde_json::json;
use skiff_api::resources;

use crate::context::Context;
use crate::error::Error;
use crate::objects;

/// Time between sweeps.
const SWEEP_INTERVAL: Duration = Duration::from_secs(20);

pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let ctx = ctx.clone();
    let pods = ctx.informers.pods.reader();
    let replica_sets = ctx.informers.replica_sets.reader();
    let revisions = ctx.informers.controller_revisions.reader();
    let jobs = ctx.informers.jobs.reader();
    let claims = ctx.informers.persistent_volume_claims.reader();
    let mut ticks = ctx.clock.ticks();
    async move {
        let _ = pods.wait_until_ready().await;
        loop {
            let mut owners = OwnerLookup::new(ctx.client.clone());
            let mut dependents: Vec<Dependent> = Vec::new();
            dependents.extend(pods.state().iter().map(|o| Dependent::of(o.as_ref())));
            dependents.extend(
                replica_sets
                    .state()
                    .iter()
                    .map(|o| Dependent::of(o.as_ref())),
            );
            dependents.extend(revisions.state().iter().map(|o| Dependent::of(o.as_ref())));
            dependents.extend(jobs.state().iter().map(|o| Dependent::of(o.as_ref())));
            dependents.extend(claims.state().iter().map(|o| Dependent::of(o.as_ref())));
            for dep in dependents.iter().filter(|d| !d.owners.is_empty()) {
                if let Err(e) = collect(&ctx, &mut owners, dep).await {
                    tracing::warn!(object = %dep.describe(), error = %e, "garbage collection");
                }
            }
            // A jump of the clock (tests) sweeps at once.
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                _ = ticks.next() => {}
            }
        }
    }
    .boxed()
}

/// What the sweep needs of a possible dependent.
struct Dependent {
    resource: ApiResource,
    meta: ObjectMeta,
    owners: Vec<OwnerReference>,
}

impl Dependent {
    fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Dependent {
        Dependent {
            resource: ApiResource::erase::<K>(&()),
            meta: obj.meta().clone(),
            owners: obj.meta().owner_references.clone().unwrap_or_default(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}/{}",
            self.resource.kind,
            self.meta.namespace.as_deref().unwrap_or(""),
            self.meta.name.as_deref().unwrap_or("")
        )
    }

    fn api(&self, ctx: &Context) -> Api<DynamicObject> {
        match &self.meta.namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &self.resource),
            None => Api::all_with(ctx.client.clone(), &self.resource),
        }
    }
}

/// Whether owners exist, asked of the API once per sweep each.
struct OwnerLookup {
    client: kube::Client,
    known: HashMap<String, bool>,
}

impl OwnerLookup {
    fn new(client: kube::Client) -> OwnerLookup {
        OwnerLookup {
            client,
            known: HashMap::new(),
        }
    }

    /// Whether the owner named by `r` (in `namespace` when it is namespaced) still exists
    /// with the same uid. Unknown kinds count as existing: never delete on a guess.
    async fn exists(&mut self, r: &OwnerReference, namespace: Option<&str>) -> Result<bool, Error> {
        if let Some(known) = self.known.get(&r.uid) {
            return Ok(*known);
        }
        let Some(info) = resources::by_kind(&r.api_version, &r.kind) else {
            return Ok(true);
        };
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(info.group, info.version, info.kind),
            info.plural,
        );
        let api: Api<DynamicObject> = match (info.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (true, None) => return Ok(true),
            (false, _) => Api::all_with(self.client.clone(), &ar),
        };
        let found = api
            .get_opt(&r.name)
            .await
            .map_err(|e| Error::api("get", format!("owner {} {}", r.kind, r.name), e))?;
        let exists = found.is_some_and(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str()));
        self.known.insert(r.uid.clone(), exists);
        Ok(exists)
    }
}

/// What to do with a dependent given which of its owners exist.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Some owners are gone: keep only these references.
    DropReferences(Vec<String>),
    /// Every owner is gone.
    Delete,
}

fn verdict(owner_uids: &[String], alive: &[bool]) -> Verdict {
    let live: Vec<String> = owner_uids
        .iter()
        .zip(alive)
        .filter(|(_, a)| **a)
        .map(|(u, _)| u.clone())
        .collect();
    if live.is_empty() {
        Verdict::Delete
    } else if live.len() < owner_uids.len() {
        Verdict::DropReferences(live)
    } else {
        Verdict::Keep
    }
}

async fn collect(ctx: &Context, owners: &mut OwnerLookup, dep: &Dependent) -> Result<(), Error> {
    if dep.meta.deletion_timestamp.is_some() {
        return Ok(());
    }
    let mut alive = Vec::with_capacity(dep.owners.len());
    for r in &dep.owners {
        alive.push(owners.exists(r, dep.meta.namespace.as_deref()).await?);
    }
    let uids: Vec<String> = dep.owners.iter().map(|r| r.uid.clone()).collect();
    let name = dep.meta.name.clone().unwrap_or_default();
    let api = dep.api(ctx);
    match verdict(&uids, &alive) {
        Verdict::Keep => Ok(()),
        Verdict::Delete => {
            tracing::info!(object = %dep.describe(), "deleting: all owners are gone");
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..objects::delete_exactly(dep.meta.uid.as_deref())
            };
            match api.delete(&name, &params).await {
                Ok(_) => Ok(()),
                Err(e) if objects::already_gone(&e) => Ok(()),
                Err(e) => Err(Error::api("delete", dep.describe(), e)),
            }
        }
        Verdict::DropReferences(live) => {
            let kept: Vec<&OwnerReference> = dep
                .owners
                .iter()
                .filter(|r| live.contains(&r.uid))
                .collect();
            let patch = json!({"metadata": {
                "resourceVersion": dep.meta.resource_version,
                "ownerReferences": kept,
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(Error::api("patch", dep.describe(), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_only_when_every_owner_is_gone() {
        let uids = vec!["a".to_string(), "b".to_string()];
        assert_eq!(verdict(&uids, &[true, true]), Verdict::Keep);
        assert_eq!(
            verdict(&uids, &[false, true]),
            Verdict::DropReferences(vec!["b".into()])
        );
        assert_eq!(verdict(&uids, &[false, false]), Verdict::Delete);
    }
}

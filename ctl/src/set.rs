//! `set image TYPE/NAME CONTAINER=IMAGE…`: changes container images in the pod template of
//! a workload (or in a pod), read-modify-write with the object's resourceVersion so a
//! concurrent change is retried, not overwritten.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use thiserror::Error;

use crate::client::{resource_path, Cluster};
use crate::errors::{self, Failures};
use crate::modify;
use crate::rollout::CHANGE_CAUSE_ANNOTATION;
use crate::target;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SetError {
    #[error("unable to find container named \"{0}\"")]
    NoContainer(String),
    #[error("{0} has no pod template to set images in")]
    NoPodSpec(String),
}

/// Where the pod spec sits in an object of this kind.
pub fn pod_spec_pointer(resource: &ResourceInfo) -> Option<&'static str> {
    match (resource.group, resource.kind) {
        ("", "Pod") => Some("/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        ("", "ReplicationController" | "PodTemplate")
        | ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet")
        | ("batch", "Job") => Some("/spec/template/spec"),
        _ => None,
    }
}

/// `CONTAINER=IMAGE` pairs.
pub type ImageChanges = Vec<(String, String)>;

/// Splits `set image` arguments into the objects and the `CONTAINER=IMAGE` pairs.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, ImageChanges)> {
    let mut objects = Vec::new();
    let mut images = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((container, image)) if !container.is_empty() && !image.is_empty() => {
                images.push((container.to_string(), image.to_string()))
            }
            Some(_) => bail!("invalid image update {arg:?}, expected CONTAINER=IMAGE"),
            None if images.is_empty() => objects.push(arg.clone()),
            None => bail!("all resources must be specified before image changes: {arg}"),
        }
    }
    if images.is_empty() {
        bail!("at least one image update is required");
    }
    if objects.is_empty() {
        bail!("one or more resources must be specified as <resource> <name> or <resource>/<name>");
    }
    Ok((objects, images))
}

/// Sets the images in `obj` (`*` names every container); true when anything changed.
pub fn set_images(
    resource: &ResourceInfo,
    obj: &mut Value,
    images: &[(String, String)],
) -> Result<bool, SetError> {
    let pointer =
        pod_spec_pointer(resource).ok_or_else(|| SetError::NoPodSpec(resource.kind.into()))?;
    let Some(spec) = obj.pointer_mut(pointer) else {
        return Err(SetError::NoPodSpec(resource.kind.into()));
    };
    let mut changed = false;
    for (container, image) in images {
        let mut found = false;
        for field in ["initContainers", "containers"] {
            let Some(list) = spec.get_mut(field).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in list {
                if container == "*" || c.get("name").and_then(Value::as_str) == Some(container) {
                    found = true;
                    if c.get("image").and_then(Value::as_str) != Some(image) {
                        c["image"] = json!(image);
                        changed = true;
                    }
                }
            }
        }
        if !found {
            return Err(SetError::NoContainer(container.clone()));
        }
    }
    Ok(changed)
}

pub async fn image(cluster: &Cluster, args: &[String], record: Option<&str>) -> Result<()> {
    let (objects, images) = split_args(args)?;
    let mut failures = Failures::default();
    for (t, name) in modify::named(&objects, "set image")? {
        let resource = t.resource;
        let path = resource_path(
            resource,
            cluster.object_namespace(resource),
            Some(&name),
            None,
        );
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let attempt = async {
                let mut obj = cluster.get(&path).await?;
                let changed = set_images(resource, &mut obj, &images)?;
                if let Some(cause) = record {
                    obj["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = json!(cause);
                }
                if changed || record.is_some() {
                    cluster.put(&path, &obj).await?;
                }
                Ok::<(), anyhow::Error>(())
            }
            .await;
            match attempt {
                Err(e)
                    if attempts < 5
                        && errors::server_error(&e)
                            .is_some_and(errors::ServerError::is_conflict) => {}
                other => break other,
            }
        };
        match result {
            Ok(()) => println!("{}/{name} image updated", resource.singular_group()),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

/// Checks `set image` arguments before connecting.
pub fn check_args(args: &[String]) -> Result<()> {
    let (objects, _) = split_args(args)?;
    target::parse(&objects, "set image")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::resolve;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_objects_and_images() {
        let (objects, images) = split_args(&strings(&[
            "deployment/web",
            "web=nginx:1.26",
            "side=busybox",
        ]))
        .expect("split");
        assert_eq!(objects, ["deployment/web"]);
        assert_eq!(images[1], ("side".to_string(), "busybox".to_string()));
        assert!(split_args(&strings(&["deployment/web"])).is_err());
        assert!(split_args(&strings(&["web=nginx"])).is_err());
    }

    #[test]
    fn sets_images_by_container_name() {
        let deploy = resolve("deploy").expect("deployments");
        let mut d = json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "envoy"}]}}}});
        let set = |d: &mut Value, c: &str, i: &str| set_images(deploy, d, &[(c.into(), i.into())]);
        assert_eq!(set(&mut d, "web", "nginx:2"), Ok(true));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert_eq!(set(&mut d, "web", "nginx:2"), Ok(false));
        assert_eq!(set(&mut d, "init", "alpine"), Ok(true));
        assert_eq!(
            set(&mut d, "nope", "x").map_err(|e| e.to_string()),
            Err("unable to find container named \"nope\"".into())
        );
        assert_eq!(set(&mut d, "*", "same"), Ok(true));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["image"],
            "same"
        );
        let pod = resolve("po").expect("pods");
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(
            set_images(pod, &mut p, &[("c".into(), "b".into())]),
            Ok(true)
        );
        let svc = resolve("svc").expect("services");
        assert!(set_images(svc, &mut p, &[("c".into(), "b".into())]).is_err());
    }
}

//! `autoscale TYPE NAME --min --max --cpu-percent`: an autoscaling/v2
//! HorizontalPodAutoscaler for a Deployment, ReplicaSet, ReplicationController or
//! StatefulSet, named after its target unless `--name` says otherwise.

use anyhow::Result;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use thiserror::Error;

use crate::client::{resource_path, Cluster};
use crate::create;
use crate::fields::name;
use crate::modify;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AutoscaleError {
    #[error("--max=MAXPODS is required and must be at least 1, max: {0}")]
    BadMax(i64),
    #[error("--max=MAXPODS must be larger or equal to --min=MINPODS, max: {max}, min: {min}")]
    MinAboveMax { min: i64, max: i64 },
    #[error("cannot autoscale a {0}")]
    NotScalable(String),
}

#[derive(Debug, Clone, Default)]
pub struct AutoscaleArgs {
    /// -1: unset (the server's default, 1).
    pub min: i64,
    pub max: i64,
    /// -1: unset (the autoscaler's default policy).
    pub cpu_percent: i64,
    pub name: Option<String>,
}

/// Checks the flags (before any request, as kubectl does).
pub fn check(args: &AutoscaleArgs) -> Result<(), AutoscaleError> {
    if args.max < 1 {
        return Err(AutoscaleError::BadMax(args.max));
    }
    if args.min > args.max {
        return Err(AutoscaleError::MinAboveMax {
            min: args.min,
            max: args.max,
        });
    }
    Ok(())
}

fn scalable(resource: &ResourceInfo) -> bool {
    matches!(
        (resource.group, resource.kind),
        ("", "ReplicationController") | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet")
    )
}

/// The HorizontalPodAutoscaler for `target`.
pub fn hpa_for(
    resource: &ResourceInfo,
    target: &Value,
    args: &AutoscaleArgs,
) -> Result<Value, AutoscaleError> {
    check(args)?;
    if !scalable(resource) {
        return Err(AutoscaleError::NotScalable(resource.kind.to_string()));
    }
    let target_name = name(target);
    let hpa_name = args
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| target_name.to_string());
    let mut spec = json!({
        "scaleTargetRef": {
            "apiVersion": resource.api_version(),
            "kind": resource.kind,
            "name": target_name,
        },
        "maxReplicas": args.max,
    });
    if args.min >= 0 {
        spec["minReplicas"] = json!(args.min);
    }
    if args.cpu_percent >= 0 {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": args.cpu_percent},
            },
        }]);
    }
    Ok(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": hpa_name},
        "spec": spec,
    }))
}

pub async fn run(
    cluster: &Cluster,
    targets: &[String],
    args: &AutoscaleArgs,
    dry_run: &str,
    output: Option<&str>,
) -> Result<()> {
    check(args)?;
    for (t, obj_name) in modify::named(targets, "autoscale")? {
        let resource = t.resource;
        if !scalable(resource) {
            return Err(AutoscaleError::NotScalable(resource.kind.to_string()).into());
        }
        let target = cluster
            .get(&resource_path(
                resource,
                cluster.object_namespace(resource),
                Some(&obj_name),
                None,
            ))
            .await?;
        let hpa = hpa_for(resource, &target, args)?;
        create::submit_as(Some(cluster), hpa, dry_run, output, "autoscaled").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::resolve;

    #[test]
    fn builds_a_v2_hpa() {
        let deploy = resolve("deploy").expect("deployments");
        let target = json!({"metadata": {"name": "web"}});
        let args = AutoscaleArgs {
            min: 2,
            max: 10,
            cpu_percent: 80,
            name: None,
        };
        let hpa = hpa_for(deploy, &target, &args).expect("hpa");
        assert_eq!(hpa["metadata"]["name"], "web");
        assert_eq!(
            hpa["spec"],
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]})
        );
        let bare = AutoscaleArgs {
            min: -1,
            max: 3,
            cpu_percent: -1,
            name: Some("x".into()),
        };
        let hpa = hpa_for(deploy, &target, &bare).expect("hpa");
        assert_eq!(hpa["metadata"]["name"], "x");
        assert!(hpa["spec"].get("minReplicas").is_none());
        assert!(hpa["spec"].get("metrics").is_none());
    }

    #[test]
    fn refusals() {
        let args = |min, max| AutoscaleArgs {
            min,
            max,
            cpu_percent: -1,
            name: None,
        };
        assert_eq!(
            check(&args(-1, -1)).map_err(|e| e.to_string()),
            Err("--max=MAXPODS is required and must be at least 1, max: -1".into())
        );
        assert_eq!(
            check(&args(5, 2)),
            Err(AutoscaleError::MinAboveMax { min: 5, max: 2 })
        );
        let pod = resolve("po").expect("pods");
        assert_eq!(
            hpa_for(pod, &json!({}), &args(1, 2)),
            Err(AutoscaleError::NotScalable("Pod".into()))
        );
    }
}

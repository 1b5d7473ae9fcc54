//! `run NAME --image=IMAGE`: one Pod labelled `run=NAME` with one container named NAME,
//! as kubectl has made since 1.18 (no Deployments or Jobs from `run`).

use anyhow::Result;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::client::Cluster;
use crate::create;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RunError {
    #[error("--image is required")]
    NoImage,
    #[error("invalid restart policy: {0}")]
    BadRestart(String),
    #[error("invalid env: {0}")]
    BadEnv(String),
    #[error("invalid label spec: {0}")]
    BadLabels(String),
    #[error("invalid annotation spec: {0}")]
    BadAnnotation(String),
    #[error("invalid port {0:?}")]
    BadPort(String),
    #[error("--command requires a command after --")]
    NoCommand,
    #[error("invalid image pull policy: {0}")]
    BadPullPolicy(String),
}

#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    pub name: String,
    pub image: String,
    pub port: Option<String>,
    pub env: Vec<String>,
    pub labels: Option<String>,
    pub annotations: Vec<String>,
    pub restart: String,
    pub command: bool,
    pub image_pull_policy: Option<String>,
    pub service_account: Option<String>,
    /// What came after `--`.
    pub args: Vec<String>,
}

fn pairs(text: &str, sep: char) -> Option<Vec<(String, String)>> {
    text.split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The Pod `run` creates.
pub fn pod_for(args: &RunArgs) -> Result<Value, RunError> {
    if args.image.is_empty() {
        return Err(RunError::NoImage);
    }
    if !matches!(args.restart.as_str(), "Always" | "OnFailure" | "Never") {
        return Err(RunError::BadRestart(args.restart.clone()));
    }
    let mut labels = Map::new();
    match args.labels.as_deref().filter(|l| !l.is_empty()) {
        Some(text) => {
            for (k, v) in pairs(text, ',').ok_or_else(|| RunError::BadLabels(text.into()))? {
                labels.insert(k, json!(v));
            }
        }
        None => {
            labels.insert("run".into(), json!(args.name));
        }
    }
    let mut container = json!({"name": args.name, "image": args.image, "resources": {}});
    if !args.args.is_empty() {
        let field = if args.command { "command" } else { "args" };
        container[field] = json!(args.args);
    } else if args.command {
        return Err(RunError::NoCommand);
    }
    if !args.env.is_empty() {
        let env: Vec<Value> = args
            .env
            .iter()
            .map(|e| {
                e.split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .ok_or_else(|| RunError::BadEnv(e.clone()))
            })
            .collect::<Result<_, _>>()?;
        container["env"] = json!(env);
    }
    if let Some(port) = args.port.as_deref().filter(|p| !p.is_empty()) {
        let n: i64 = port
            .parse()
            .ok()
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| RunError::BadPort(port.into()))?;
        container["ports"] = json!([{"containerPort": n}]);
    }
    if let Some(policy) = args.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
            return Err(RunError::BadPullPolicy(policy.into()));
        }
        container["imagePullPolicy"] = json!(policy);
    }
    let mut metadata = json!({"name": args.name, "labels": labels});
    if !args.annotations.is_empty() {
        let mut annotations = Map::new();
        for a in &args.annotations {
            let (k, v) = a
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| RunError::BadAnnotation(a.clone()))?;
            annotations.insert(k.to_string(), json!(v));
        }
        metadata["annotations"] = Value::Object(annotations);
    }
    let mut spec = json!({
        "containers": [container],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": args.restart,
    });
    if let Some(sa) = args.service_account.as_deref().filter(|s| !s.is_empty()) {
        spec["serviceAccountName"] = json!(sa);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": {},
    }))
}

pub async fn run(
    cluster: Option<&Cluster>,
    args: &RunArgs,
    dry_run: &str,
    output: Option<&str>,
) -> Result<()> {
    let pod = pod_for(args)?;
    create::submit(cluster, pod, dry_run, output).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RunArgs {
        RunArgs {
            name: "web".into(),
            image: "nginx".into(),
            restart: "Always".into(),
            ..Default::default()
        }
    }

    #[test]
    fn plain_pod() {
        let pod = pod_for(&base()).expect("pod");
        assert_eq!(
            pod,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "labels": {"run": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"},
                "status": {}})
        );
    }

    #[test]
    fn flags_fill_the_container() {
        let args = RunArgs {
            port: Some("80".into()),
            env: vec!["A=1".into(), "B=x=y".into()],
            labels: Some("app=web,tier=fe".into()),
            restart: "Never".into(),
            command: true,
            args: vec!["sleep".into(), "10".into()],
            ..base()
        };
        let pod = pod_for(&args).expect("pod");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["sleep", "10"]));
        assert_eq!(c["env"][1], json!({"name": "B", "value": "x=y"}));
        assert_eq!(c["ports"], json!([{"containerPort": 80}]));
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", "tier": "fe"})
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        let args = RunArgs {
            args: vec!["-c".into()],
            ..base()
        };
        assert_eq!(
            pod_for(&args).expect("pod")["spec"]["containers"][0]["args"],
            json!(["-c"])
        );
        let bad = RunArgs {
            restart: "Sometimes".into(),
            ..base()
        };
        assert_eq!(
            pod_for(&bad).map_err(|e| e.to_string()),
            Err("invalid restart policy: Sometimes".into())
        );
        assert_eq!(
            pod_for(&RunArgs {
                env: vec!["NOEQ".into()],
                ..base()
            }),
            Err(RunError::BadEnv("NOEQ".into()))
        );
    }
}

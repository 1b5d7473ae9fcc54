//! Service account credentials: a token Secret per ServiceAccount (the API server accepts
//! its token as that account), and the cluster CA published in every namespace as the
//! ConfigMap `kube-root-ca.crt`, as Kubernetes' tokens controller and root-CA publisher do.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::Error;
use crate::objects;

pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const SERVICE_ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";
pub const SERVICE_ACCOUNT_UID: &str = "kubernetes.io/service-account.uid";
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let tokens = Controller::for_shared_stream(
        ctx.informers.service_accounts.subscribe(),
        ctx.informers.service_accounts.reader(),
    )
    .watches_shared_stream(ctx.informers.secrets.subscribe(), |secret: Arc<Secret>| {
        account_of(&secret).map(|name| {
            ObjectRef::<ServiceAccount>::new(&name).within(&secret.namespace().unwrap_or_default())
        })
    })
    .with_config(Config::default().concurrency(ctx.config.concurrency))
    .run(reconcile_account, error_policy, ctx.clone())
    .for_each(log_outcome("serviceaccount-token"));
    let root_ca = Controller::for_shared_stream(
        ctx.informers.namespaces.subscribe(),
        ctx.informers.namespaces.reader(),
    )
    .run(publish_root_ca, error_policy, ctx.clone())
    .for_each(log_outcome("root-ca-cert-publisher"));
    async move {
        futures::join!(tokens, root_ca);
    }
    .boxed()
}

/// The account a token Secret belongs to.
fn account_of(secret: &Secret) -> Option<String> {
    if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
        return None;
    }
    secret.annotations().get(SERVICE_ACCOUNT_NAME).cloned()
}

/// Whether `secret` is a usable token Secret of `sa`.
fn is_token_of(secret: &Secret, sa: &ServiceAccount) -> bool {
    let uid_matches = match secret.annotations().get(SERVICE_ACCOUNT_UID) {
        Some(uid) => Some(uid) == sa.metadata.uid.as_ref(),
        None => true,
    };
    account_of(secret).as_deref() == Some(sa.name_any().as_str())
        && secret.namespace() == sa.namespace()
        && uid_matches
        && !objects::is_terminating(&secret.metadata)
        && secret
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .is_some_and(|t| !t.0.is_empty())
}

/// A new token Secret for `sa` (name `<sa>-token-<5 random>`).
fn token_secret(sa: &ServiceAccount, ca_pem: Option<&str>) -> Secret {
    let suffix = Alphanumeric
        .sample_string(&mut rand::rng(), 5)
        .to_ascii_lowercase();
    let prefix: String = sa.name_any().chars().take(50).collect();
    let mut data = BTreeMap::new();
    let token = Alphanumeric.sample_string(&mut rand::rng(), 48);
    data.insert("token".to_string(), ByteString(token.into_bytes()));
    data.insert(
        "namespace".to_string(),
        ByteString(sa.namespace().unwrap_or_default().into_bytes()),
    );
    if let Some(ca) = ca_pem {
        data.insert("ca.crt".to_string(), ByteString(ca.as_bytes().to_vec()));
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(SERVICE_ACCOUNT_NAME.to_string(), sa.name_any());
    if let Some(uid) = &sa.metadata.uid {
        annotations.insert(SERVICE_ACCOUNT_UID.to_string(), uid.clone());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}-token-{suffix}")),
            namespace: sa.namespace(),
            annotations: Some(annotations),
            owner_references: Some(vec![objects::controller_reference(sa)]),
            ..Default::default()
        },
        type_: Some(TOKEN_SECRET_TYPE.to_string()),
        data: Some(data),
        ..Default::default()
    }
}

async fn reconcile_account(sa: Arc<ServiceAccount>, ctx: Arc<Context>) -> Result<Action, Error> {
    if objects::is_terminating(&sa.metadata) {
        return Ok(Action::await_change());
    }
    let key = object_key(sa.as_ref());
    let ns = sa.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let referenced: Vec<String> = sa
        .secrets
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect();

    let mut token = ctx
        .informers
        .secrets
        .reader()
        .state()
        .into_iter()
        .find(|s| is_token_of(s, &sa))
        .map(|s| s.name_any());
    if token.is_none() {
        // The cache may not show a Secret created moments ago: ask the API about the
        // referenced ones before making another.
        for name in &referenced {
            let found = secrets
                .get_opt(name)
                .await
                .map_err(|e| Error::api("get", format!("secret {ns}/{name}"), e))?;
            if found.is_some_and(|s| is_token_of(&s, &sa)) {
                token = Some(name.clone());
                break;
            }
        }
    }
    let token = match token {
        Some(name) => name,
        None => {
            let secret = token_secret(&sa, ctx.config.cluster_ca_pem.as_deref());
            let created = secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(|e| Error::api("create", format!("token secret for {key}"), e))?;
            tracing::info!(
                service_account = key,
                secret = created.name_any(),
                "created token secret"
            );
            created.name_any()
        }
    };
    if !referenced.contains(&token) {
        let mut refs: Vec<ObjectReference> = sa.secrets.clone().unwrap_or_default();
        refs.push(ObjectReference {
            name: Some(token.clone()),
            ..Default::default()
        });
        let patch = json!({
            "metadata": {"resourceVersion": sa.metadata.resource_version},
            "secrets": refs,
        });
        Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &sa.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Error::api("patch", format!("serviceaccount {key}"), e))?;
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

async fn publish_root_ca(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(ca) = ctx.config.cluster_ca_pem.clone() else {
        return Ok(Action::await_change());
    };
    if objects::is_terminating(&ns.metadata) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let what = format!("configmap {name}/{ROOT_CA_CONFIG_MAP}");
    let current = api
        .get_opt(ROOT_CA_CONFIG_MAP)
        .await
        .map_err(|e| Error::api("get", &what, e))?;
    let data = BTreeMap::from([("ca.crt".to_string(), ca)]);
    match current {
        Some(cm) if cm.data.as_ref() == Some(&data) => {}
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map_err(|e| Error::api("update", &what, e))?;
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIG_MAP.to_string()),
                    namespace: Some(name.clone()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                // The namespace is being deleted: nothing to publish into.
                Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => {}
                Err(e) => return Err(Error::api("create", &what, e)),
            }
        }
    }
    ctx.succeeded(&name);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> ServiceAccount {
        serde_json::from_value(
            json!({"metadata": {"name": "default", "namespace": "team", "uid": "u1"}}),
        )
        .unwrap()
    }

    #[test]
    fn a_new_token_secret_names_its_account_and_carries_the_ca() {
        let s = token_secret(&account(), Some("PEM"));
        assert!(s.name_any().starts_with("default-token-"));
        assert_eq!(s.name_any().len(), "default-token-".len() + 5);
        assert!(is_token_of(&s, &account()));
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["ca.crt"].0, b"PEM");
        assert_eq!(data["namespace"].0, b"team");
        assert_eq!(data["token"].0.len(), 48);
        assert_eq!(account_of(&s).as_deref(), Some("default"));
    }

    #[test]
    fn a_secret_of_an_earlier_account_with_the_same_name_is_not_its_token() {
        let s = token_secret(&account(), None);
        let mut recreated = account();
        recreated.metadata.uid = Some("u2".into());
        assert!(!is_token_of(&s, &recreated));
    }
}

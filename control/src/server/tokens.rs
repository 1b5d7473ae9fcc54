//! Service account tokens: the index the authenticator consults.
//!
//! A Secret of type `kubernetes.io/service-account-token` (its token filled in by the
//! ServiceAccount controller) names the account in the annotation
//! `kubernetes.io/service-account.name`; a request bearing its token acts as
//! `system:serviceaccount:{namespace}:{name}`. The index follows the store's watch on
//! Secrets, so with several control planes on one etcd a token works on all of them at once,
//! and stops working as soon as its Secret is deleted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde_json::Value;

use crate::object::REGISTRY_PREFIX;
use crate::store::{EventKind, Store, StoreError, WatchItem};

pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// Who a service account token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountIdentity {
    pub namespace: String,
    pub name: String,
}

#[derive(Default)]
struct Index {
    by_token: HashMap<String, ServiceAccountIdentity>,
    /// Store key of each token Secret → its token, to forget it on change or deletion.
    by_key: HashMap<String, String>,
}

#[derive(Default)]
pub struct ServiceAccountTokens {
    index: RwLock<Index>,
}

/// The token and owner a Secret's JSON carries, if it is a usable token Secret.
fn token_of(secret: &Value) -> Option<(String, ServiceAccountIdentity)> {
    if secret.get("type").and_then(Value::as_str) != Some(TOKEN_SECRET_TYPE) {
        return None;
    }
    let name = secret
        .pointer("/metadata/annotations")?
        .get(SERVICE_ACCOUNT_NAME_ANNOTATION)?
        .as_str()?;
    let namespace = secret.pointer("/metadata/namespace")?.as_str()?;
    let encoded = secret.pointer("/data/token")?.as_str()?;
    let token = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    let token = token.trim().to_string();
    if token.is_empty() || secret.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    Some((
        token,
        ServiceAccountIdentity {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
    ))
}

impl ServiceAccountTokens {
    pub fn lookup(&self, token: &str) -> Option<ServiceAccountIdentity> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.by_token.get(token).cloned()
    }

    /// Records the Secret stored at `key` (`None`: deleted).
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let parsed = value
            .and_then(|v| serde_json::from_slice::<Value>(v).ok())
            .and_then(|s| token_of(&s));
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = index.by_key.remove(key) {
            index.by_token.remove(&old);
        }
        if let Some((token, who)) = parsed {
            index.by_key.insert(key.to_string(), token.clone());
            index.by_token.insert(token, who);
        }
    }

    fn clear(&self) {
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Index::default();
    }

    /// Lists the token Secrets, then follows the store's watch; re-lists when the watch
    /// breaks or its history was compacted.
    pub fn spawn_index(self: &Arc<Self>, store: Arc<dyn Store>) {
        let tokens = self.clone();
        tokio::spawn(async move {
            let prefix = format!("{REGISTRY_PREFIX}secrets/");
            loop {
                if let Err(e) = tokens.follow(store.as_ref(), &prefix).await {
                    tracing::warn!(error = %e, "service account token index; re-listing");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn follow(&self, store: &dyn Store, prefix: &str) -> Result<(), StoreError> {
        let list = store.list(prefix, None, 0).await?;
        self.clear();
        for kv in &list.items {
            self.apply(&kv.key, Some(&kv.value));
        }
        let mut watch = store.watch(prefix, list.revision).await?;
        while let Some(item) = watch.next().await {
            if let WatchItem::Event(ev) = item? {
                match ev.kind {
                    EventKind::Put => self.apply(&ev.key, Some(&ev.value)),
                    EventKind::Delete => self.apply(&ev.key, None),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(kind: &str, token: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(token);
        serde_json::to_vec(&json!({
            "type": kind,
            "metadata": {"name": "default-token-abcde", "namespace": "team",
                         "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: "default"}},
            "data": {"token": encoded},
        }))
        .unwrap()
    }

    #[test]
    fn token_secrets_are_indexed_and_forgotten() {
        let tokens = ServiceAccountTokens::default();
        let key = "/registry/secrets/team/default-token-abcde";
        tokens.apply(key, Some(&secret(TOKEN_SECRET_TYPE, "t1")));
        assert_eq!(
            tokens.lookup("t1"),
            Some(ServiceAccountIdentity {
                namespace: "team".into(),
                name: "default".into()
            })
        );
        // A new token in the same Secret replaces the old one.
        tokens.apply(key, Some(&secret(TOKEN_SECRET_TYPE, "t2")));
        assert!(tokens.lookup("t1").is_none());
        assert!(tokens.lookup("t2").is_some());
        tokens.apply(key, None);
        assert!(tokens.lookup("t2").is_none());
        // Opaque secrets are not tokens, whatever they hold.
        tokens.apply(key, Some(&secret("Opaque", "t3")));
        assert!(tokens.lookup("t3").is_none());
    }
}

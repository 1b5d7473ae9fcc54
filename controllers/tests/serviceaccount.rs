//! Each ServiceAccount gets a token Secret that the API server accepts as that account, and
//! every namespace gets the cluster CA as `kube-root-ca.crt`.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_controllers::serviceaccount;
use support::{eventually, Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_token_authenticates_as_that_account() {
    let mut c = Cluster::new().await;
    let ca = c.server.api().pki.ca_pem.clone();
    c.run(&[serviceaccount::start]);
    let namespaces: Api<Namespace> = c.all();
    c.create(&namespaces, json!({"metadata": {"name": "team"}}))
        .await;

    let accounts = c.api::<ServiceAccount>("team");
    let secret_name = eventually("the default account to reference a token", WAIT, || async {
        let sa = accounts.get_opt("default").await.ok()??;
        sa.secrets?.first()?.name.clone()
    })
    .await;
    let secret = c.api::<Secret>("team").get(&secret_name).await.unwrap();
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/service-account-token")
    );
    let data = secret.data.unwrap();
    assert_eq!(data["ca.crt"].0, ca.as_bytes());
    let token = String::from_utf8(data["token"].0.clone()).unwrap();

    let root_ca = eventually("kube-root-ca.crt in the namespace", WAIT, || async {
        c.api::<ConfigMap>("team")
            .get_opt("kube-root-ca.crt")
            .await
            .ok()?
    })
    .await;
    assert_eq!(root_ca.data.unwrap()["ca.crt"], ca);

    // The token works, as `system:serviceaccount:team:default`, in its own namespace only.
    let mut config = kube::Config::new(c.server.url.parse().unwrap());
    config.root_cert = Some(vec![rustls_pem_der(&ca)]);
    config.auth_info.token = Some(token.into());
    let as_account = kube::Client::try_from(config).unwrap();
    let own: Api<Pod> = Api::namespaced(as_account.clone(), "team");
    own.list(&ListParams::default())
        .await
        .expect("a service account lists pods");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .unwrap();
    own.create(&PostParams::default(), &pod)
        .await
        .expect("a service account creates pods in its namespace");
    let elsewhere: Api<Pod> = Api::namespaced(as_account, "default");
    match elsewhere.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("system:serviceaccount:team:default"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403 outside the account's namespace, got {other:?}"),
    }

    // Deleting the token Secret gets the account a new one; the old token stops working.
    c.api::<Secret>("team")
        .delete(&secret_name, &Default::default())
        .await
        .unwrap();
    eventually("a replacement token", WAIT, || async {
        let list = c
            .api::<Secret>("team")
            .list(&ListParams::default())
            .await
            .ok()?;
        list.items
            .iter()
            .any(|s| {
                s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                    && s.metadata.name.as_deref() != Some(secret_name.as_str())
            })
            .then_some(())
    })
    .await;
    eventually("the deleted token to be refused", WAIT, || async {
        match own.list(&ListParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 401 => Some(()),
            _ => None,
        }
    })
    .await;
}

/// The DER of the first certificate in a PEM bundle.
fn rustls_pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("CA PEM")
}

//! Throws a few thousand malformed and mutated manifests at the API: every answer must be a
//! success or a 4xx `Status` (never a 5xx, never a dropped connection), and the server must
//! keep serving.

mod common;

use common::{ServerHttp, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const REQUESTS: usize = 3000;

fn seeds() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/api/v1/namespaces/fuzz/pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "volumes": [{"name": "v", "emptyDir": {}}]}}),
        ),
        (
            "/api/v1/namespaces/fuzz/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        ),
        (
            "/api/v1/namespaces/fuzz/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}),
        ),
        (
            "/apis/apps/v1/namespaces/fuzz/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
        (
            "/apis/batch/v1/namespaces/fuzz/cronjobs",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        ),
        (
            "/api/v1/nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24"}}),
        ),
    ]
}

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(-1),
        4 => json!(1e308),
        5 => json!("Ünïcödé \u{0}\u{7f} \"quoted\""),
        6 => json!("x".repeat(rng.random_range(0..400))),
        7 => json!([1, "two", null]),
        _ => json!({"nested": {"deeper": [{}]}}),
    }
}

/// Mutates one random place in the value.
fn mutate(v: &mut Value, rng: &mut StdRng, depth: usize) {
    match v {
        Value::Object(map) if !map.is_empty() && depth < 8 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.random_range(0..keys.len())].clone();
            match rng.random_range(0..6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, random_scalar(rng));
                }
                2 => {
                    map.insert(format!("{key}X"), random_scalar(rng));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 8 => {
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..4) {
                0 => {
                    items.remove(i);
                }
                1 => items.push(items[i].clone()),
                _ => mutate(&mut items[i], rng, depth + 1),
            }
        }
        Value::String(s) => {
            *s = match rng.random_range(0..5) {
                0 => String::new(),
                1 => s.to_uppercase(),
                2 => format!("{s}_!"),
                3 => "a".repeat(300),
                _ => "-leading".into(),
            }
        }
        other => *other = random_scalar(rng),
    }
}

#[tokio::test]
async fn malformed_manifests_get_4xx_statuses_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let http = server.http();
    let (code, _) = http
        .post("/api/v1/namespaces", &json!({"metadata": {"name": "fuzz"}}))
        .await;
    assert_eq!(code, 201);
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(0x5_c1ff_u64);
    let mut cases = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let (path, seed) = &seeds[i % seeds.len()];
        let mut body = seed.clone();
        body["metadata"]["name"] = json!(format!("f{i}"));
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut body, &mut rng, 0);
        }
        let mut bytes = serde_json::to_vec(&body).unwrap();
        let content_type = match rng.random_range(0..20) {
            0 => {
                bytes.truncate(rng.random_range(0..bytes.len().max(1)));
                "application/json"
            }
            1 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
                "application/json"
            }
            2 => "application/yaml",
            3 => "text/plain",
            _ => "application/json",
        };
        let method = match rng.random_range(0..10) {
            0 => reqwest::Method::PUT,
            1 => reqwest::Method::PATCH,
            _ => reqwest::Method::POST,
        };
        let path = if method == reqwest::Method::POST {
            path.to_string()
        } else {
            format!("{path}/f{}", i % 50)
        };
        cases.push((method, path, content_type, bytes));
    }

    let mut tasks = Vec::new();
    for chunk in cases.chunks(REQUESTS / 8) {
        let chunk = chunk.to_vec();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for (method, path, ct, bytes) in chunk {
                let ct = if method == reqwest::Method::PATCH {
                    "application/merge-patch+json"
                } else {
                    ct
                };
                let (code, body) = http
                    .send(
                        http.request(method.clone(), &path)
                            .header("Content-Type", ct)
                            .body(bytes.clone()),
                    )
                    .await;
                outcomes.push((
                    code,
                    body,
                    method,
                    path,
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(300)
                        .collect::<String>(),
                ));
            }
            outcomes
        }));
    }
    let (mut ok, mut rejected) = (0, 0);
    for t in tasks {
        for (code, body, method, path, sent) in t.await.unwrap() {
            match code {
                200..=299 => ok += 1,
                400..=499 => {
                    rejected += 1;
                    assert_eq!(
                        body["kind"], "Status",
                        "{method} {path} → {code} without a Status: {body}\nsent: {sent}"
                    );
                    assert_eq!(body["code"], code, "{body}");
                    assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
                }
                _ => panic!("{method} {path} → {code}: {body}\nsent: {sent}"),
            }
        }
    }
    assert!(
        rejected > REQUESTS / 2,
        "most mutations are rejected ({rejected} of {REQUESTS}, {ok} accepted)"
    );
    let (code, _) = http.get("/healthz").await;
    assert_eq!(code, 200);
    let (code, body) = http
        .post(
            "/api/v1/namespaces/fuzz/configmaps",
            &json!({"metadata": {"name": "after-fuzz"}, "data": {"ok": "yes"}}),
        )
        .await;
    assert_eq!(code, 201, "still serving: {body}");
}

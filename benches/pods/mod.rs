//! What the API benchmarks send: one pod of a typical size, created and read
//! back from concurrent clients.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use crate::common::{Figures, measure};

/// A pod named `name`, of a typical size.
pub fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0",
            "ports": [{"containerPort": 8080}], "env": [{"name": "MODE", "value": "fast"}]}]},
    }))
    .unwrap()
}

/// `ops` pod creates, then as many gets of them, through `pods`, for each
/// number of concurrent clients: a row each.
#[allow(
    dead_code,
    reason = "each bench compiles this module; not every bench reads pods back"
)]
pub async fn creates_and_gets(
    pods: &Api<Pod>,
    clients: &[usize],
    ops: usize,
) -> Vec<(String, Figures)> {
    let mut rows = Vec::new();
    for &clients in clients {
        let api = pods.clone();
        let create = measure(clients, ops, move |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &pod(&format!("p{clients}-{i}")))
                    .await
                    .unwrap();
            }
        })
        .await;
        rows.push((format!("create  {clients:>3}"), create));
        let api = pods.clone();
        let get = measure(clients, ops, move |i| {
            let api = api.clone();
            async move {
                api.get(&format!("p{clients}-{i}")).await.unwrap();
            }
        })
        .await;
        rows.push((format!("get     {clients:>3}"), get));
    }
    rows
}

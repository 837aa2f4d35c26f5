//! ResourceQuotas: what each quota's namespace uses of what the quota
//! limits, written into its status (`hard` and `used`, which `kubectl
//! describe quota` shows), against which the ResourceQuota admission policy
//! checks every create. Pods are counted as they change (those not finished
//! and not being deleted, with what they ask); other objects (`configmaps`,
//! `count/deployments.apps`, NodePorts, …) are counted again every
//! [`RECOUNT`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use wasmkube_quantity::{format, usage};

use crate::runtime::{Context, Error, Pods, of_pods};

/// How often objects other than pods are counted again.
const RECOUNT: Duration = Duration::from_secs(10);

/// Whether `pod` counts against its namespace's quotas: not finished, not
/// being deleted.
fn live(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// What the live pods of `pods` use, by the names a quota limits.
fn pods_usage(pods: &[Arc<Pod>]) -> BTreeMap<String, f64> {
    let mut used: BTreeMap<String, f64> = BTreeMap::new();
    let live: Vec<&Arc<Pod>> = pods.iter().filter(|p| live(p)).collect();
    for pod in &live {
        let spec = serde_json::to_value(&pod.spec).unwrap_or_default();
        for (name, value) in usage::pod(&spec) {
            *used.entry(name).or_default() += value;
        }
    }
    used.insert("pods".into(), live.len() as f64);
    used.insert("count/pods".into(), live.len() as f64);
    used
}

/// The kind a count (`count/deployments.apps`, `secrets`) names, as the API
/// serves it.
async fn counted_kind(client: &Client, name: &str) -> Option<ApiResource> {
    let named = name
        .strip_prefix("count/")
        .or_else(|| usage::LEGACY_COUNTS.contains(&name).then_some(name))?;
    let (plural, group) = named.split_once('.').unwrap_or((named, ""));
    if group.is_empty() {
        return Some(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.into(),
        });
    }
    let served = kube::discovery::oneshot::group(client, group).await.ok()?;
    served
        .recommended_resources()
        .into_iter()
        .map(|(resource, _)| resource)
        .find(|r| r.plural == plural)
}

/// How many objects of `kind` are in `namespace`.
async fn count(client: &Client, kind: &ApiResource, namespace: &str) -> Result<f64, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, kind);
    let listed = api.list_metadata(&ListParams::default()).await?;
    Ok(listed.items.len() as f64)
}

/// The NodePorts and load balancers of the Services in `namespace`.
async fn service_usage(client: &Client, namespace: &str) -> Result<(f64, f64), Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let (mut node_ports, mut balancers) = (0.0, 0.0);
    for service in api.list(&ListParams::default()).await? {
        let spec = service.spec.unwrap_or_default();
        let ports = spec.ports.map_or(0, |p| p.len()) as f64;
        match spec.type_.as_deref() {
            Some("NodePort") => node_ports += ports,
            Some("LoadBalancer") => {
                node_ports += ports;
                balancers += 1.0;
            }
            _ => {}
        }
    }
    Ok((node_ports, balancers))
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(namespace) = quota.namespace() else {
        return Ok(Action::await_change());
    };
    crate::runtime::listed(&ctx.pods)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let pods = pods_usage(&ctx.pods_in(&namespace));
    let mut used = BTreeMap::new();
    let mut services = None;
    for name in hard.keys() {
        let value = if let Some(value) = pods.get(name) {
            *value
        } else if let Some(kind) = counted_kind(&ctx.client, name).await {
            count(&ctx.client, &kind, &namespace).await?
        } else if name.starts_with("services.") {
            if services.is_none() {
                services = Some(service_usage(&ctx.client, &namespace).await?);
            }
            let (node_ports, balancers) = services.unwrap_or_default();
            if name == "services.nodeports" {
                node_ports
            } else {
                balancers
            }
        } else {
            // A resource this controller does not count: left out of used.
            continue;
        };
        used.insert(name.clone(), Quantity(format(name, value)));
    }
    let status = quota.status.clone().unwrap_or_default();
    if status.hard.as_ref() != Some(&hard) || status.used.as_ref() != Some(&used) {
        let mut counted = (*quota).clone();
        let mut new = counted.status.take().unwrap_or_default();
        new.hard = Some(hard);
        new.used = Some(used);
        counted.status = Some(new);
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &namespace);
        api.replace_status(&quota.name_any(), &PostParams::default(), &counted)
            .await?;
    }
    Ok(Action::requeue(RECOUNT))
}

/// The quotas a pod change concerns: every one of its namespace.
fn quotas_of(pod: &Pod, quotas: &Store<ResourceQuota>) -> Vec<ObjectRef<ResourceQuota>> {
    let namespace = pod.namespace();
    quotas
        .state()
        .iter()
        .filter(|q| q.namespace() == namespace)
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    of_pods(
        client,
        pods,
        "resourcequota-controller",
        quotas_of,
        reconcile,
        closed,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(phase: &str, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": phase}}))
            .unwrap(),
        )
    }

    #[test]
    fn live_pods_count_with_what_they_ask() {
        let used = pods_usage(&[
            pod("Running", "500m"),
            pod("Pending", "1"),
            pod("Succeeded", "2"),
        ]);
        assert_eq!(used["pods"], 2.0);
        assert_eq!(used["requests.cpu"], 1.5);
        assert_eq!(format("requests.cpu", used["requests.cpu"]), "1500m");
    }
}

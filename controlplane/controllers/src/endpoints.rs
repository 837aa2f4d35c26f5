//! Endpoints and EndpointSlices: for each Service with a selector, the
//! addresses of the pods it selects (ready ones as addresses, the others as
//! not ready), with the Service's ports resolved on each pod (a named
//! `targetPort` is the pod's container port of that name). Pods whose ports
//! resolve alike share a subset and a slice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::runtime::{Context, Error, Pods, of_pods, selecting};

/// The label that ties a slice to its Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label that says who keeps a slice.
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";
/// The field manager of what this controller applies.
const FIELD_MANAGER: &str = "endpoint-controller";

/// The Service's ports as they land on `pod`: name, port, protocol; `None`
/// when a named target port is not among the pod's.
fn ports_on(ports: &[ServicePort], pod: &Pod) -> Option<Vec<(String, i32, String)>> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    ports
        .iter()
        .map(|p| {
            let port = match &p.target_port {
                None => p.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => {
                    containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|cp| cp.name.as_deref() == Some(name.as_str()))?
                        .container_port
                }
            };
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            Some((p.name.clone().unwrap_or_default(), port, protocol))
        })
        .collect()
}

fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A pod as an endpoint: its address, node and reference.
struct Member {
    ip: String,
    node: Option<String>,
    name: String,
    uid: Option<String>,
    namespace: String,
    ready: bool,
    terminating: bool,
}

impl Member {
    fn target(&self) -> Value {
        json!({"kind": "Pod", "name": self.name, "namespace": self.namespace, "uid": self.uid})
    }
}

type PortSet = Vec<(String, i32, String)>;

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let Some(spec) = service.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        // Without a selector, its endpoints are the user's.
        return Ok(Action::await_change());
    };
    if service.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    crate::runtime::listed(&ctx.pods)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.clone().unwrap_or_default();
    let mut groups: BTreeMap<PortSet, Vec<Member>> = BTreeMap::new();
    for pod in ctx.pods_in(&namespace) {
        let labels = pod.labels();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let status = pod.status.as_ref();
        let Some(ip) = status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        if matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        let Some(resolved) = ports_on(&ports, &pod) else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        groups.entry(resolved).or_default().push(Member {
            ip,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            name: pod.name_any(),
            uid: pod.uid(),
            namespace: namespace.clone(),
            ready: (ready(&pod) || publish_not_ready) && !terminating,
            terminating,
        });
    }
    for members in groups.values_mut() {
        members.sort_by(|a, b| a.ip.cmp(&b.ip));
    }
    let owner = service.controller_owner_ref(&());
    let params = PatchParams::apply(FIELD_MANAGER).force();

    // Endpoints: a subset per port set.
    let port_list = |set: &PortSet| -> Vec<Value> {
        set.iter()
            .map(|(name, port, protocol)| {
                let mut p = json!({"port": port, "protocol": protocol});
                if !name.is_empty() {
                    p["name"] = json!(name);
                }
                p
            })
            .collect()
    };
    let subsets: Vec<Value> = groups
        .iter()
        .map(|(set, members)| {
            let address =
                |m: &&Member| json!({"ip": m.ip, "nodeName": m.node, "targetRef": m.target()});
            let (ready, not_ready): (Vec<&Member>, Vec<&Member>) =
                members.iter().partition(|m| m.ready);
            json!({
                "addresses": ready.iter().map(address).collect::<Vec<_>>(),
                "notReadyAddresses": not_ready.iter().map(address).collect::<Vec<_>>(),
                "ports": port_list(set),
            })
        })
        .collect();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": service.labels(),
            "ownerReferences": owner.as_ref().map(|o| vec![o])},
        "subsets": subsets,
    });
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(&name, &params, &Patch::Apply(&endpoints)).await?;

    // EndpointSlices: one per port set, named by the Service and the set.
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut wanted = Vec::new();
    for (i, (set, members)) in groups.iter().enumerate() {
        let slice_name = if i == 0 {
            name.clone()
        } else {
            format!("{name}-{i}")
        };
        let endpoints: Vec<Value> = members
            .iter()
            .map(|m| {
                json!({
                    "addresses": [m.ip], "nodeName": m.node, "targetRef": m.target(),
                    "conditions": {"ready": m.ready, "serving": m.ready, "terminating": m.terminating},
                })
            })
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": namespace,
                "labels": {SERVICE_NAME: name, MANAGED_BY: MANAGER},
                "ownerReferences": owner.as_ref().map(|o| vec![o])},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": port_list(set),
        });
        slices
            .patch(&slice_name, &params, &Patch::Apply(&slice))
            .await?;
        wanted.push(slice_name);
    }
    // Slices of port sets no pod has any more go.
    let selector = format!("{SERVICE_NAME}={name},{MANAGED_BY}={MANAGER}");
    for old in slices
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        let old_name = old.name_any();
        if !wanted.contains(&old_name) {
            match slices.delete(&old_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The Services in the pod's namespace that select it.
fn services_of(pod: &Pod, services: &Store<Service>) -> Vec<ObjectRef<Service>> {
    selecting(pod, services, |s, labels| {
        let selector = s.spec.as_ref().and_then(|s| s.selector.as_ref());
        selector
            .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
    })
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &mut Pods,
    closed: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    of_pods(
        client,
        pods,
        "endpoint-controller",
        services_of,
        reconcile,
        closed,
    )
}

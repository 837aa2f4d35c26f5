//! Endpoints and EndpointSlices: for each Service with a selector, the
//! addresses of the pods it selects, with the Service's ports resolved on
//! each pod (a named `targetPort` is the pod's container port, or sidecar
//! port, of that name and protocol; a port a pod does not have is left out
//! of its endpoint). Pods whose ports resolve alike share a subset, and
//! slices of at most 100 endpoints. A slice endpoint is `serving` when its
//! pod is ready, `terminating` when its pod is being deleted, and `ready`
//! when serving and not terminating (always, with
//! `publishNotReadyAddresses`); Endpoints list the ready pods as addresses,
//! the others as not ready, and leave out those being deleted (unless
//! `publishNotReadyAddresses`). A Service without a selector is left alone:
//! its endpoints are the user's.
//!
//! A reconcile is a [`plan`] computed from the Service and the pods as the
//! cache has them, then [`apply`]'d through the API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use crate::runtime::{Context, Error, Pods, of_pods, selecting};
use tokio_util::sync::CancellationToken;

/// The label that ties a slice to its Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label that says who keeps a slice.
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";
/// The field manager of what this controller applies.
const FIELD_MANAGER: &str = "endpoint-controller";
/// The most endpoints a slice holds, as Kubernetes' default.
const MAX_PER_SLICE: usize = 100;

/// A Service's port as it lands on a pod: name, port, protocol.
type ResolvedPort = (String, i32, String);

/// The container port of `pod` named `name` with `protocol`: of its
/// containers, or of its sidecars (init containers always restarted).
fn named_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    let spec = pod.spec.as_ref()?;
    let sidecars = spec.init_containers.iter().flatten();
    let sidecars = sidecars.filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut ports = spec
        .containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten());
    let port = ports.find(|p| {
        p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
    })?;
    Some(port.container_port)
}

/// The Service's ports as they land on `pod`; a named target port the pod
/// does not have is left out.
fn ports_on(ports: &[ServicePort], pod: &Pod) -> Vec<ResolvedPort> {
    ports
        .iter()
        .filter_map(|p| {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let port = match &p.target_port {
                None => p.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => named_port(pod, name, &protocol)?,
            };
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

/// A pod as an endpoint.
struct Member {
    ip: String,
    node: Option<String>,
    hostname: Option<String>,
    target: ObjectReference,
    /// The pod is ready.
    serving: bool,
    /// The pod is being deleted.
    terminating: bool,
}

/// What a reconcile of a Service does, computed from it and the pods as the
/// cache has them: the objects to apply (slices not among them go).
#[derive(Debug)]
struct Plan {
    endpoints: Endpoints,
    slices: Vec<EndpointSlice>,
}

/// Metadata of an object named `name` that `service` owns, with `labels`.
fn owned_by(service: &Service, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: service.namespace(),
        labels: Some(labels),
        owner_references: service.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The Endpoints and EndpointSlices of `service` over `pods` (those of its
/// namespace); `None` for a Service the controller leaves alone.
fn plan(service: &Service, pods: &[&Pod]) -> Option<Plan> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    if service.meta().deletion_timestamp.is_some() {
        return None;
    }
    let name = service.name_any();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.clone().unwrap_or_default();
    // By address type and ports.
    let mut groups: BTreeMap<(&str, Vec<ResolvedPort>), Vec<Member>> = BTreeMap::new();
    for pod in pods {
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
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec
            .filter(|s| s.subdomain.as_deref() == Some(name.as_str()))
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty());
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        groups
            .entry((family, ports_on(&ports, pod)))
            .or_default()
            .push(Member {
                node: pod_spec.and_then(|s| s.node_name.clone()),
                hostname,
                target: ObjectReference {
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    namespace: pod.namespace(),
                    uid: pod.uid(),
                    ..ObjectReference::default()
                },
                serving: ready(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                ip,
            });
    }
    for members in groups.values_mut() {
        members.sort_by(|a, b| a.ip.cmp(&b.ip));
    }

    // Endpoints: a subset per port set; pods being deleted are left out,
    // and so are pods none of the Service's ports land on.
    let address = |m: &Member| EndpointAddress {
        ip: m.ip.clone(),
        hostname: m.hostname.clone(),
        node_name: m.node.clone(),
        target_ref: Some(m.target.clone()),
    };
    let subsets = groups
        .iter()
        .filter(|((_, resolved), _)| ports.is_empty() || !resolved.is_empty())
        .filter_map(|((_, resolved), members)| {
            let listed = members
                .iter()
                .filter(|m| publish_not_ready || !m.terminating);
            let (ready, not_ready): (Vec<&Member>, Vec<&Member>) =
                listed.partition(|m| publish_not_ready || m.serving);
            let some = |list: Vec<&Member>| {
                Some(list.into_iter().map(address).collect::<Vec<_>>()).filter(|l| !l.is_empty())
            };
            let subset = EndpointSubset {
                addresses: some(ready),
                not_ready_addresses: some(not_ready),
                ports: Some(
                    resolved
                        .iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: Some(name.clone()).filter(|n| !n.is_empty()),
                            port: *port,
                            protocol: Some(protocol.clone()),
                            app_protocol: None,
                        })
                        .collect(),
                ),
            };
            (subset.addresses.is_some() || subset.not_ready_addresses.is_some()).then_some(subset)
        })
        .collect();
    let endpoints = Endpoints {
        metadata: owned_by(service, name.clone(), service.labels().clone()),
        subsets: Some(subsets),
    };

    // EndpointSlices: per address type and port set, at most 100 endpoints
    // each, named after the Service and numbered.
    let labels = BTreeMap::from([
        (SERVICE_NAME.to_owned(), name.clone()),
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
    ]);
    let chunks = groups
        .iter()
        .flat_map(|(key, members)| members.chunks(MAX_PER_SLICE).map(move |chunk| (key, chunk)));
    let slices = chunks
        .enumerate()
        .map(|(i, ((family, resolved), chunk))| {
            let slice_name = if i == 0 {
                name.clone()
            } else {
                format!("{name}-{i}")
            };
            EndpointSlice {
                metadata: owned_by(service, slice_name, labels.clone()),
                address_type: (*family).to_owned(),
                endpoints: chunk
                    .iter()
                    .map(|m| Endpoint {
                        addresses: vec![m.ip.clone()],
                        conditions: Some(EndpointConditions {
                            ready: Some(publish_not_ready || (m.serving && !m.terminating)),
                            serving: Some(m.serving),
                            terminating: Some(m.terminating),
                        }),
                        hostname: m.hostname.clone(),
                        node_name: m.node.clone(),
                        target_ref: Some(m.target.clone()),
                        ..Endpoint::default()
                    })
                    .collect(),
                ports: Some(
                    resolved
                        .iter()
                        .map(|(name, port, protocol)| SlicePort {
                            name: Some(name.clone()).filter(|n| !n.is_empty()),
                            port: Some(*port),
                            protocol: Some(protocol.clone()),
                            app_protocol: None,
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    Some(Plan { endpoints, slices })
}

/// Carries out `plan` for `service`: applies its objects, and deletes the
/// slices it no longer has.
async fn apply(service: &Service, ctx: &Context, plan: Plan) -> Result<Action, Error> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(&name, &params, &Patch::Apply(&plan.endpoints))
        .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut wanted = Vec::new();
    for slice in &plan.slices {
        let slice_name = slice.name_any();
        slices
            .patch(&slice_name, &params, &Patch::Apply(slice))
            .await?;
        wanted.push(slice_name);
    }
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

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::runtime::listed(&ctx.pods)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let pods = ctx.pods_in(&service.namespace().unwrap_or_default());
    let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    match plan(&service, &pods) {
        Some(next) => apply(&service, &ctx, next).await,
        None => Ok(Action::await_change()),
    }
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
    closed: CancellationToken,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Fixture, pod};
    use serde_json::{Value, json};

    /// A Service `web` selecting `app=web` with `spec` added.
    fn service(spec: Value) -> Service {
        let mut spec = spec;
        spec["selector"] = json!({"app": "web"});
        Fixture::new(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": spec}),
        )
        .build()
    }

    /// A pod `name` of the Service at `ip`, ready.
    fn backend(name: &str, ip: &str) -> Fixture<Pod> {
        pod(name).label("app", "web").ip(ip).ready(0)
    }

    fn plan_of(service: &Service, pods: &[Fixture<Pod>]) -> Plan {
        let pods: Vec<Pod> = pods.iter().cloned().map(Fixture::build).collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        plan(service, &pods).expect("a plan")
    }

    /// Each endpoint of the slices: pod name, ready, serving, terminating.
    fn conditions(plan: &Plan) -> Vec<(String, bool, bool, bool)> {
        let endpoints = plan.slices.iter().flat_map(|s| &s.endpoints);
        endpoints
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                let name = e
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default();
                (
                    name,
                    c.ready == Some(true),
                    c.serving == Some(true),
                    c.terminating == Some(true),
                )
            })
            .collect()
    }

    /// The Endpoints' addresses, ready and not, by pod name.
    fn addresses(plan: &Plan) -> (Vec<String>, Vec<String>) {
        let subsets = plan.endpoints.subsets.iter().flatten();
        let names = |list: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            let list = list.iter().flatten();
            list.filter_map(|a| a.target_ref.as_ref()?.name.clone())
                .collect()
        };
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for subset in subsets {
            ready.extend(names(&subset.addresses));
            not_ready.extend(names(&subset.not_ready_addresses));
        }
        (ready, not_ready)
    }

    fn ports(slice: &EndpointSlice) -> Vec<(String, i32)> {
        let ports = slice.ports.iter().flatten();
        ports
            .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0)))
            .collect()
    }

    #[test]
    fn a_service_without_a_selector_is_left_alone() {
        let manual: Service = Fixture::new(json!({"metadata": {"name": "db"}, "spec": {}})).build();
        assert!(plan(&manual, &[]).is_none());
    }

    #[test]
    fn endpoints_are_ready_serving_or_terminating_as_their_pods() {
        let web = service(json!({"ports": [{"port": 80}]}));
        let pods = [
            backend("up", "10.0.0.1"),
            pod("starting")
                .label("app", "web")
                .ip("10.0.0.2")
                .phase("Running"),
            backend("stopping", "10.0.0.3").deleting(),
            backend("done", "10.0.0.4").phase("Succeeded"),
            pod("unplaced").label("app", "web"),
            backend("other", "10.0.0.5").label("app", "api"),
        ];
        let next = plan_of(&web, &pods);
        assert_eq!(
            conditions(&next),
            [
                ("up".into(), true, true, false),
                ("starting".into(), false, false, false),
                ("stopping".into(), false, true, true),
            ]
        );
        assert_eq!(
            addresses(&next),
            (vec!["up".into()], vec!["starting".into()])
        );
    }

    #[test]
    fn published_not_ready_addresses_are_ready_even_when_terminating() {
        let web = service(json!({"ports": [{"port": 80}], "publishNotReadyAddresses": true}));
        let pods = [
            pod("starting")
                .label("app", "web")
                .ip("10.0.0.2")
                .phase("Running"),
            backend("stopping", "10.0.0.3").deleting(),
        ];
        let next = plan_of(&web, &pods);
        assert_eq!(
            conditions(&next),
            [
                ("starting".into(), true, false, false),
                ("stopping".into(), true, true, true),
            ]
        );
        assert_eq!(addresses(&next).0, ["starting", "stopping"]);
    }

    #[test]
    fn a_named_target_port_is_resolved_on_each_pod() {
        let web = service(json!({"ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9100, "targetPort": 9100}]}));
        let serving = |port: i32, protocol: &str| json!([{"name": "main", "ports": [{"name": "http", "containerPort": port, "protocol": protocol}]}]);
        let sidecar = json!([{"name": "proxy", "restartPolicy": "Always",
            "ports": [{"name": "http", "containerPort": 8443}]}]);
        let pods = [
            backend("a", "10.0.0.1").with(&["spec", "containers"], serving(8080, "TCP")),
            backend("b", "10.0.0.2").with(&["spec", "containers"], serving(9090, "TCP")),
            backend("udp", "10.0.0.3").with(&["spec", "containers"], serving(8080, "UDP")),
            backend("proxied", "10.0.0.4").with(&["spec", "initContainers"], sidecar),
        ];
        let next = plan_of(&web, &pods);
        let by_pod: BTreeMap<String, Vec<(String, i32)>> = next
            .slices
            .iter()
            .flat_map(|s| {
                s.endpoints.iter().map(move |e| {
                    let name = e
                        .target_ref
                        .as_ref()
                        .and_then(|r| r.name.clone())
                        .unwrap_or_default();
                    (name, ports(s))
                })
            })
            .collect();
        let http = |port: i32| vec![("http".to_string(), port), ("metrics".to_string(), 9100)];
        assert_eq!(by_pod["a"], http(8080));
        assert_eq!(by_pod["b"], http(9090));
        assert_eq!(by_pod["proxied"], http(8443));
        // Its port is UDP: only the metrics port lands on it.
        assert_eq!(by_pod["udp"], [("metrics".to_string(), 9100)]);
        assert_eq!(next.slices.len(), 4);
        let subsets = next.endpoints.subsets.as_ref().unwrap();
        assert_eq!(subsets.len(), 4);
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let web = service(json!({"ports": [{"port": 80}]}));
        let pods: Vec<Fixture<Pod>> = (0..250)
            .map(|i| backend(&format!("p{i}"), &format!("10.0.{}.{}", i / 200, i % 200)))
            .collect();
        let next = plan_of(&web, &pods);
        let sizes: Vec<(String, usize)> = next
            .slices
            .iter()
            .map(|s| (s.name_any(), s.endpoints.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("web".into(), 100),
                ("web-1".into(), 100),
                ("web-2".into(), 50)
            ]
        );
        let slice = &next.slices[0];
        assert_eq!(slice.labels()[SERVICE_NAME], "web");
        assert_eq!(slice.labels()[MANAGED_BY], MANAGER);
        assert_eq!(slice.address_type, "IPv4");
    }

    #[test]
    fn a_pod_of_the_services_subdomain_is_named_by_its_hostname() {
        let web = service(json!({"clusterIP": "None"}));
        let named = backend("web-0", "10.0.0.1")
            .with(&["spec", "hostname"], json!("web-0"))
            .with(&["spec", "subdomain"], json!("web"));
        let next = plan_of(&web, &[named, backend("loose", "fd00::2")]);
        let hostnames: Vec<Option<String>> = next
            .slices
            .iter()
            .map(|s| s.endpoints[0].hostname.clone())
            .collect();
        assert_eq!(hostnames, [Some("web-0".into()), None]);
        let families: Vec<&str> = next
            .slices
            .iter()
            .map(|s| s.address_type.as_str())
            .collect();
        assert_eq!(families, ["IPv4", "IPv6"]);
        // A headless Service without ports still lists its pods.
        assert_eq!(addresses(&next).0, ["web-0", "loose"]);
    }
}

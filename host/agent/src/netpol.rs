//! NetworkPolicy (networking.k8s.io/v1) for Wasm pods. The agent mediates
//! every connection of its pods, so it enforces policies exactly and needs no
//! packet filter: a pod's outgoing connection is checked against the egress
//! policies that select it when the runtime makes it, a connection coming to
//! a pod against the ingress policies that select it when the pod's listener
//! accepts it, and a connection through a Service against both (the client's
//! egress, the chosen endpoint's ingress) when the proxy picks the endpoint.
//!
//! The rules are Kubernetes': a pod is isolated in a direction once a policy
//! of its namespace selects it with that policy type (`policyTypes`, or
//! Ingress plus Egress when `egress` is given); an isolated pod's connection
//! is allowed when a rule of one of those policies allows it (peers by pod
//! and namespace selectors or `ipBlock` with `except`; TCP ports, named ports
//! and ranges with `endPort`); connections from the pod's own node are always
//! allowed. Beyond Kubernetes: a refused connection is a Warning Event on the
//! pod, naming the policies that isolate it (once a minute per peer).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use wasmkube_events::{Kind, Reporter};
use wasmkube_runtime::Net;
use wasmkube_types::selector::labels::Selector;

/// How often one refusal (pod, peer, direction) becomes an Event.
const EVENT_EVERY: Duration = Duration::from_secs(60);

/// One side of a connection: a pod of the cluster, or an address outside it.
#[derive(Clone, Debug)]
pub(crate) enum Side {
    Pod(Arc<Pod>),
    Outside(IpAddr),
}

/// A refusal told: the pod's uid, the peer, the direction.
type Told = (String, String, &'static str);

/// A rule of a policy: its peers and its ports.
type Rule<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

/// Which policies of a pod a connection is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// The caches the policies are decided from.
#[derive(Clone)]
pub struct Policies {
    policies: Store<NetworkPolicy>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    client: Client,
    node: String,
    /// The node's own addresses (its address, its pods' gateway).
    node_addresses: Vec<IpAddr>,
    /// When each refusal was last told, by (pod uid, peer, direction).
    told: Arc<Mutex<HashMap<Told, Instant>>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Policies decided from these caches, told as Events through `client` by
    /// the node `node`, whose own addresses are `node_addresses`.
    pub fn new(
        policies: Store<NetworkPolicy>,
        pods: Store<Pod>,
        namespaces: Store<Namespace>,
        client: Client,
        node: String,
        node_addresses: Vec<IpAddr>,
    ) -> Policies {
        Policies {
            policies,
            pods,
            namespaces,
            client,
            node,
            node_addresses,
            told: Arc::default(),
        }
    }

    /// Whether a connection from `peer` comes from the node itself (its
    /// proxy, its probes, a process of the host): those reach every pod, as in
    /// Kubernetes.
    pub(crate) fn is_node(&self, peer: IpAddr) -> bool {
        (peer.is_loopback() && !in_pod_ranges(peer)) || self.node_addresses.contains(&peer)
    }

    /// The pod at `ip`, or the address outside the cluster.
    pub(crate) fn side(&self, ip: IpAddr) -> Side {
        let text = ip.to_string();
        self.pods
            .find(|p| {
                let status = p.status.as_ref();
                status.and_then(|s| s.pod_ip.as_deref()) == Some(text.as_str())
                    && !matches!(
                        status.and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
            .map_or(Side::Outside(ip), Side::Pod)
    }

    /// The pod `namespace/name` as the cache has it.
    pub(crate) fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
    }

    /// Whether `from` may connect to `to` at `port` (at `to_ip`): `from`'s
    /// egress policies and `to`'s ingress policies. A refusal is told as an
    /// Event on the pod whose policies refused it, and returned as a message.
    pub(crate) fn check(
        &self,
        from: &Side,
        to: &Side,
        to_ip: IpAddr,
        port: u16,
    ) -> Result<(), String> {
        let policies = self.policies.state();
        let labels_of = |ns: &str| {
            self.namespaces
                .get(&kube::runtime::reflector::ObjectRef::new(ns))
                .map(|n| n.labels().clone())
                .unwrap_or_default()
        };
        if let Side::Pod(pod) = from
            && let Err(names) = decide(
                &policies,
                pod,
                Direction::Egress,
                to,
                to_ip,
                port,
                &labels_of,
            )
        {
            let peer = format!("{to_ip}:{port}");
            return Err(self.refused(pod, Direction::Egress, &peer, &names));
        }
        if let Side::Pod(pod) = to {
            let from_ip = match from {
                Side::Pod(p) => pod_ip(p).unwrap_or(to_ip),
                Side::Outside(ip) => *ip,
            };
            if let Err(names) = decide(
                &policies,
                pod,
                Direction::Ingress,
                from,
                from_ip,
                port,
                &labels_of,
            ) {
                let peer = from_ip.to_string();
                return Err(self.refused(pod, Direction::Ingress, &peer, &names));
            }
        }
        Ok(())
    }

    /// Tells a refusal as an Event on `pod` (once a minute per peer); its message.
    fn refused(&self, pod: &Pod, direction: Direction, peer: &str, names: &[String]) -> String {
        let (what, towards) = match direction {
            Direction::Egress => ("egress", "to"),
            Direction::Ingress => ("ingress", "from"),
        };
        let message = format!(
            "connection {towards} {peer} refused: the {what} of NetworkPolicy {} allows it not",
            names.join(", ")
        );
        let key = (pod.uid().unwrap_or_default(), peer.to_owned(), what);
        let now = Instant::now();
        let due = {
            let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
            told.retain(|_, at| now.duration_since(*at) < EVENT_EVERY);
            let due = !told.contains_key(&key);
            if due {
                told.insert(key, now);
            }
            due
        };
        if due {
            let reporter = Reporter {
                component: "kubelet",
                host: Some(&self.node),
            };
            wasmkube_events::emit(
                &self.client,
                reporter,
                pod,
                None,
                Kind::Warning,
                "NetworkPolicyDenied",
                message.clone(),
            );
        }
        message
    }
}

/// Whether `ip` is in the loopback pod ranges (127.64.0.0/10).
fn in_pod_ranges(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 127 && (64..128).contains(&v4.octets()[1]))
}

/// The decision of the pod `namespace/name`'s policies on its connections, once
/// `policies` has any: to an address (`ingress` false), or to its port from
/// one (`ingress` true); the node's own connections to it are always let in.
pub fn decision(
    policies: Arc<std::sync::OnceLock<Policies>>,
    namespace: String,
    name: String,
    ingress: bool,
) -> wasmkube_runtime::Decide {
    wasmkube_runtime::Decide(Arc::new(move |other: std::net::SocketAddr| {
        let Some(policies) = policies.get() else {
            return Ok(());
        };
        if ingress && policies.is_node(other.ip()) {
            return Ok(());
        }
        let Some(me) = policies.pod(&namespace, &name) else {
            return Ok(());
        };
        let own = pod_ip(&me).unwrap_or(other.ip());
        let (me, peer) = (Side::Pod(me), policies.side(other.ip()));
        if ingress {
            policies.check(&peer, &me, own, other.port())
        } else {
            policies.check(&me, &peer, other.ip(), other.port())
        }
    }))
}

/// Starts the caches the policies are decided from once the cluster has a
/// NetworkPolicy (until then nothing is isolated, and no agent keeps every pod
/// in memory for nothing), and hands them to `policies` when they are filled.
pub(crate) async fn follow(
    client: Client,
    node: String,
    node_addresses: Vec<IpAddr>,
    policies: Arc<std::sync::OnceLock<Policies>>,
    closing: tokio_util::sync::CancellationToken,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let (policy_store, watching) =
        crate::proxy::informer::<NetworkPolicy>(&client, changed.clone());
    let mut watches = vec![tokio::spawn(watching)];
    loop {
        tokio::select! {
            () = closing.cancelled() => break,
            () = changed.notified() => {}
        }
        if policy_store.is_empty() {
            continue;
        }
        let quiet = Arc::new(tokio::sync::Notify::new());
        let (pods, watching_pods) = crate::proxy::informer::<Pod>(&client, quiet.clone());
        let (namespaces, watching_namespaces) = crate::proxy::informer::<Namespace>(&client, quiet);
        watches.push(tokio::spawn(watching_pods));
        watches.push(tokio::spawn(watching_namespaces));
        tokio::select! {
            () = closing.cancelled() => break,
            _ = futures::future::join(pods.wait_until_ready(), namespaces.wait_until_ready()) => {}
        }
        let made = Policies::new(policy_store, pods, namespaces, client, node, node_addresses);
        let _ = policies.set(made);
        closing.cancelled().await;
        break;
    }
    for watch in watches {
        watch.abort();
    }
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Whether the policies that select `pod` in `direction` allow the
/// connection with `peer` (at `peer_ip`) on `port`: `Err` with their names
/// when they isolate it and none allows it.
fn decide(
    policies: &[Arc<NetworkPolicy>],
    pod: &Pod,
    direction: Direction,
    peer: &Side,
    peer_ip: IpAddr,
    port: u16,
    namespace_labels: &dyn Fn(&str) -> BTreeMap<String, String>,
) -> Result<(), Vec<String>> {
    let namespace = pod.namespace().unwrap_or_default();
    let isolating: Vec<&Arc<NetworkPolicy>> = policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| selects(p, pod) && types(p).contains(&direction))
        .collect();
    if isolating.is_empty() {
        return Ok(());
    }
    // A named port is the port of the pod that serves it.
    let served = match (direction, peer) {
        (Direction::Ingress, _) => Some(pod),
        (Direction::Egress, Side::Pod(to)) => Some(&**to),
        (Direction::Egress, Side::Outside(_)) => None,
    };
    let allowed = isolating.iter().any(|policy| {
        let spec = policy.spec.as_ref();
        let rules: Vec<Rule<'_>> = match direction {
            Direction::Ingress => spec
                .and_then(|s| s.ingress.as_ref())
                .into_iter()
                .flatten()
                .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                .collect(),
            Direction::Egress => spec
                .and_then(|s| s.egress.as_ref())
                .into_iter()
                .flatten()
                .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                .collect(),
        };
        rules.into_iter().any(|(peers, ports)| {
            let peer_ok = peers.is_none_or(|peers| {
                peers.is_empty()
                    || peers
                        .iter()
                        .any(|p| peer_matches(p, &namespace, peer, peer_ip, namespace_labels))
            });
            peer_ok && ports_match(ports, port, served)
        })
    });
    if allowed {
        Ok(())
    } else {
        Err(isolating
            .iter()
            .map(|p| format!("{namespace}/{}", p.name_any()))
            .collect())
    }
}

/// Whether `policy` selects `pod` (of its own namespace).
fn selects(policy: &NetworkPolicy, pod: &Pod) -> bool {
    let Some(spec) = &policy.spec else {
        return false;
    };
    // No selector selects every pod of the namespace, as an empty one does.
    match &spec.pod_selector {
        None => true,
        Some(selector) => {
            Selector::from_label_selector(selector).is_ok_and(|s| s.matches(pod.labels()))
        }
    }
}

/// The directions a policy isolates.
fn types(policy: &NetworkPolicy) -> Vec<Direction> {
    let spec = policy.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(types) => types
            .iter()
            .filter_map(|t| match t.as_str() {
                "Ingress" => Some(Direction::Ingress),
                "Egress" => Some(Direction::Egress),
                _ => None,
            })
            .collect(),
        None if spec.is_some_and(|s| s.egress.is_some()) => {
            vec![Direction::Ingress, Direction::Egress]
        }
        None => vec![Direction::Ingress],
    }
}

/// Whether `peer` (of a policy in `namespace`) names the other side.
fn peer_matches(
    peer: &NetworkPolicyPeer,
    namespace: &str,
    other: &Side,
    other_ip: IpAddr,
    namespace_labels: &dyn Fn(&str) -> BTreeMap<String, String>,
) -> bool {
    if let Some(block) = &peer.ip_block {
        let within = |cidr: &str| cidr.parse::<Net>().is_ok_and(|n| n.contains(other_ip));
        return within(&block.cidr) && !block.except.iter().flatten().any(|e| within(e));
    }
    let Side::Pod(pod) = other else {
        return false;
    };
    let pod_namespace = pod.namespace().unwrap_or_default();
    let namespace_ok = match &peer.namespace_selector {
        Some(selector) => Selector::from_label_selector(selector)
            .is_ok_and(|s| s.matches(&namespace_labels(&pod_namespace))),
        None => pod_namespace == namespace,
    };
    let pod_ok = match &peer.pod_selector {
        Some(selector) => {
            Selector::from_label_selector(selector).is_ok_and(|s| s.matches(pod.labels()))
        }
        None => true,
    };
    namespace_ok && pod_ok
}

/// Whether `port` (TCP) is among `ports`; a named port is looked up in the
/// containers of `served`.
fn ports_match(ports: Option<&Vec<NetworkPolicyPort>>, port: u16, served: Option<&Pod>) -> bool {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return true;
    };
    ports.iter().any(|p| {
        if p.protocol.as_deref().is_some_and(|proto| proto != "TCP") {
            return false;
        }
        match &p.port {
            None => true,
            Some(IntOrString::Int(first)) => {
                let last = p.end_port.unwrap_or(*first);
                (*first..=last).contains(&i32::from(port))
            }
            Some(IntOrString::String(name)) => served.is_some_and(|pod| {
                pod.spec.iter().flat_map(|s| &s.containers).any(|c| {
                    c.ports.iter().flatten().any(|cp| {
                        cp.name.as_deref() == Some(name.as_str())
                            && cp.container_port == i32::from(port)
                    })
                })
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, labels: serde_json::Value, ip: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": ip, "phase": "Running"},
            }))
            .unwrap(),
        )
    }

    fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> Arc<NetworkPolicy> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace}, "spec": spec,
            }))
            .unwrap(),
        )
    }

    fn labels(ns: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())])
    }

    /// Whether `from` may reach `to` at `port` under `policies`.
    fn allowed(policies: &[Arc<NetworkPolicy>], from: &Side, to: &Arc<Pod>, port: u16) -> bool {
        let to_ip = pod_ip(to).unwrap();
        let from_ip = match from {
            Side::Pod(p) => pod_ip(p).unwrap(),
            Side::Outside(ip) => *ip,
        };
        let egress = match from {
            Side::Pod(p) => decide(
                policies,
                p,
                Direction::Egress,
                &Side::Pod(to.clone()),
                to_ip,
                port,
                &labels,
            ),
            Side::Outside(_) => Ok(()),
        };
        egress.is_ok()
            && decide(
                policies,
                to,
                Direction::Ingress,
                from,
                from_ip,
                port,
                &labels,
            )
            .is_ok()
    }

    #[test]
    fn the_network_policy_scenarios_of_kubernetes() {
        let server = pod("x", "server", json!({"app": "server"}), "127.64.0.2");
        let client = pod("x", "client", json!({"app": "client"}), "127.64.0.3");
        let other = pod("y", "other", json!({"app": "client"}), "127.64.0.4");
        let (client, other) = (Side::Pod(client), Side::Pod(other));
        let outside = Side::Outside("10.1.2.3".parse().unwrap());

        // No policy: everything is allowed.
        assert!(allowed(&[], &client, &server, 8080));
        // Default deny of ingress in x.
        let deny = policy("x", "default-deny", json!({"podSelector": {}}));
        assert!(!allowed(
            std::slice::from_ref(&deny),
            &client,
            &server,
            8080
        ));
        assert!(!allowed(
            std::slice::from_ref(&deny),
            &outside,
            &server,
            8080
        ));
        let error = decide(
            std::slice::from_ref(&deny),
            &server,
            Direction::Ingress,
            &client,
            "127.64.0.3".parse().unwrap(),
            8080,
            &labels,
        )
        .unwrap_err();
        assert_eq!(error, ["x/default-deny"]);
        // Allow by pod label, on a named port.
        let by_label = policy(
            "x",
            "allow-client",
            json!({"podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}]}),
        );
        let both = [deny.clone(), by_label];
        assert!(allowed(&both, &client, &server, 8080));
        assert!(!allowed(&both, &client, &server, 9090), "another port");
        assert!(
            !allowed(&both, &other, &server, 8080),
            "same labels, another namespace"
        );
        // Allow by namespace.
        let by_namespace = policy(
            "x",
            "allow-y",
            json!({"podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}),
        );
        let both = [deny.clone(), by_namespace];
        assert!(allowed(&both, &other, &server, 8080));
        assert!(!allowed(&both, &client, &server, 8080));
        // Egress to an ipBlock with an exception, on a port range.
        let egress = policy(
            "x",
            "egress",
            json!({"podSelector": {"matchLabels": {"app": "client"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "127.64.0.0/16", "except": ["127.64.0.4/32"]}}],
                        "ports": [{"port": 8000, "endPort": 8100}]}]}),
        );
        let egress = [egress];
        assert!(allowed(&egress, &client, &server, 8080));
        assert!(
            !allowed(&egress, &client, &server, 9090),
            "outside the range of ports"
        );
        let Side::Pod(other_pod) = &other else {
            unreachable!()
        };
        assert!(!allowed(&egress, &client, other_pod, 8080), "the exception");
        // The policy isolates only the pods it selects.
        assert!(allowed(
            &egress,
            &Side::Pod(server.clone()),
            other_pod,
            8080
        ));
    }
}

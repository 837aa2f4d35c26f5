//! The Service proxy, kube-proxy's part on a node: every TCP port of every
//! Service with a cluster IP is served at `clusterIP:port`, and a NodePort
//! Service's also at the node's address and its node port; each connection
//! goes to one of the ready endpoints of that port (from the Service's
//! EndpointSlices, on any node), in turn, or with `sessionAffinity:
//! ClientIP` to the one the client had last. Endpoints that are not ready
//! leave the rotation as soon as their slice says so, and one that refuses a
//! connection (its slice not updated yet) is passed over for the next; a
//! port with no ready endpoint refuses connections.
//!
//! Cluster IPs are in 127.0.0.0/8 by default, so on one machine they work
//! with no configuration. Several agents on one machine have one network:
//! the first to bind an address serves it (with the same tables as the
//! others), and another binds it within a few seconds if that one goes.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often addresses this agent could not bind are tried again.
const RETRY: Duration = Duration::from_secs(3);

/// How long a connection to one endpoint may take before the next is tried.
const CONNECT: Duration = Duration::from_secs(3);

/// A port of a Service: namespace, name, port name.
pub(crate) type PortKey = (String, String, String);

/// How the proxy serves one listening address.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Route {
    pub(crate) port: PortKey,
    /// How long a client sticks to its endpoint, with ClientIP affinity.
    pub(crate) affinity: Option<Duration>,
}

/// Where connections go: ready endpoints by port, whose turn is next, and
/// which endpoint each client had.
#[derive(Debug, Default)]
pub(crate) struct Table {
    endpoints: HashMap<PortKey, Vec<SocketAddr>>,
    turn: HashMap<PortKey, usize>,
    sticky: HashMap<(PortKey, IpAddr), (SocketAddr, Instant)>,
}

impl Table {
    /// The endpoint for a connection from `client` to `route`, if any is
    /// ready but those in `failed`.
    pub(crate) fn pick(
        &mut self,
        route: &Route,
        client: IpAddr,
        failed: &[SocketAddr],
    ) -> Option<SocketAddr> {
        let ready: Vec<SocketAddr> = self
            .endpoints
            .get(&route.port)?
            .iter()
            .filter(|e| !failed.contains(e))
            .copied()
            .collect();
        if ready.is_empty() {
            return None;
        }
        let key = (route.port.clone(), client);
        let had = self.sticky.get(&key).copied();
        if let (Some(timeout), Some((had, since))) = (route.affinity, had)
            && since.elapsed() < timeout
            && ready.contains(&had)
        {
            self.sticky.insert(key, (had, Instant::now()));
            return Some(had);
        }
        let turn = self.turn.entry(route.port.clone()).or_default();
        let chosen = ready[*turn % ready.len()];
        *turn = turn.wrapping_add(1);
        if route.affinity.is_some() {
            self.sticky.insert(key, (chosen, Instant::now()));
        }
        Some(chosen)
    }
}

/// The ready endpoints of every Service port, from the slices.
fn endpoints(slices: &[Arc<EndpointSlice>]) -> HashMap<PortKey, Vec<SocketAddr>> {
    let mut all: HashMap<PortKey, Vec<SocketAddr>> = HashMap::new();
    for slice in slices {
        let Some(service) = slice.labels().get("kubernetes.io/service-name") else {
            continue;
        };
        let namespace = slice.namespace().unwrap_or_default();
        for port in slice.ports.iter().flatten() {
            let (Some(number), protocol) = (port.port, port.protocol.as_deref()) else {
                continue;
            };
            if protocol.is_some_and(|p| p != "TCP") {
                continue;
            }
            let key = (
                namespace.clone(),
                service.clone(),
                port.name.clone().unwrap_or_default(),
            );
            let ready = slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
            let addresses = ready
                .flat_map(|e| e.addresses.iter())
                .filter_map(|a| a.parse::<IpAddr>().ok());
            let list = all.entry(key).or_default();
            list.extend(addresses.map(|ip| SocketAddr::new(ip, number as u16)));
            list.sort();
            list.dedup();
        }
    }
    all
}

/// The addresses to listen on, and what each serves.
fn routes(services: &[Arc<Service>], node: IpAddr) -> HashMap<SocketAddr, Route> {
    let mut all = HashMap::new();
    for service in services {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let seconds = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref()?.timeout_seconds)
                .unwrap_or(10_800);
            Duration::from_secs(seconds.max(1) as u64)
        });
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let route = Route {
                port: (
                    service.namespace().unwrap_or_default(),
                    service.name_any(),
                    port.name.clone().unwrap_or_default(),
                ),
                affinity,
            };
            if let Some(ip) = cluster_ip {
                all.insert(SocketAddr::new(ip, port.port as u16), route.clone());
            }
            if let Some(node_port) = port.node_port.filter(|_| node_ports) {
                all.insert(SocketAddr::new(node, node_port as u16), route);
            }
        }
    }
    all
}

/// Accepts connections at `address` and forwards each to an endpoint.
fn listen(
    address: SocketAddr,
    route: Route,
    table: Arc<Mutex<Table>>,
    policies: Arc<std::sync::OnceLock<crate::netpol::Policies>>,
) -> std::io::Result<JoinHandle<()>> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    let listener = socket.listen(1024)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((client, peer)) = listener.accept().await else {
                continue;
            };
            let (route, table, policies) = (route.clone(), table.clone(), policies.clone());
            tokio::spawn(forward(client, peer.ip(), route, table, policies));
        }
    }))
}

/// Joins `client` to an endpoint of `route`.
async fn forward(
    mut client: TcpStream,
    peer: IpAddr,
    route: Route,
    table: Arc<Mutex<Table>>,
    policies: Arc<std::sync::OnceLock<crate::netpol::Policies>>,
) {
    // A pod's connection goes only to an endpoint its egress and the
    // endpoint's ingress allow; the node's own always may.
    // The client, once: each endpoint tried is checked against it.
    let caller = policies
        .get()
        .filter(|policies| !policies.is_node(peer))
        .map(|policies| (policies, policies.side(peer)));
    let allowed = |endpoint: SocketAddr| match &caller {
        Some((policies, from)) => {
            let to = policies.side(endpoint.ip());
            policies
                .check(from, &to, endpoint.ip(), endpoint.port())
                .is_ok()
        }
        None => true,
    };
    if let Some(mut upstream) = connect(&table, &route, peer, allowed).await {
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// A connection to an endpoint of `route` for a client at `peer`. An
/// endpoint that refuses (a pod just gone whose slice is not updated yet)
/// is skipped for the next one; none when every endpoint refuses.
pub(crate) async fn connect(
    table: &Mutex<Table>,
    route: &Route,
    peer: IpAddr,
    allowed: impl Fn(SocketAddr) -> bool,
) -> Option<TcpStream> {
    let mut failed = Vec::new();
    loop {
        let endpoint = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pick(route, peer, &failed)?;
        if !allowed(endpoint) {
            failed.push(endpoint);
            continue;
        }
        match tokio::time::timeout(CONNECT, TcpStream::connect(endpoint)).await {
            Ok(Ok(upstream)) => return Some(upstream),
            Ok(Err(e)) => tracing::debug!(%endpoint, error = %e, "an endpoint refused"),
            Err(_) => tracing::debug!(%endpoint, "an endpoint did not answer in time"),
        }
        failed.push(endpoint);
    }
}

/// A cache of every object of kind `K`, and a signal rung at each change.
pub(crate) fn informer<K>(
    client: &Client,
    changed: Arc<Notify>,
) -> (Store<K>, impl Future<Output = ()> + use<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let run = events.for_each(move |_| {
        changed.notify_one();
        futures::future::ready(())
    });
    (store, run)
}

/// What the node serves beside the Service proxy, from the same caches.
#[derive(Default)]
pub(crate) struct Serving {
    /// Where the caches are given to the pods' name lookups.
    pub(crate) names: Arc<std::sync::OnceLock<crate::dns::Names>>,
    /// Cluster DNS where the agent was told to answer it; without one, at
    /// the `kube-system/kube-dns` Service's cluster IP, port 53.
    pub(crate) dns: Option<crate::dns::Sockets>,
    /// The node, which Events about addresses it cannot serve are about.
    pub(crate) node: String,
    /// The Ingresses of the class `wasmkube`.
    pub(crate) ingress: Option<tokio::net::TcpListener>,
    /// Told every Service address and port, which the node's pods may reach.
    pub(crate) listeners: wasmkube_runtime::Listeners,
    /// The NetworkPolicies a connection from a pod to an endpoint passes,
    /// once any exist.
    pub(crate) policies: Arc<std::sync::OnceLock<crate::netpol::Policies>>,
}

/// Proxies every Service until `closing` is cancelled; node ports on `node`; answers
/// cluster DNS and Ingresses where `serving` says.
pub(crate) async fn run(
    client: Client,
    node: IpAddr,
    serving: Serving,
    closing: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let (services, watching_services) = informer::<Service>(&client, changed.clone());
    let (slices, watching_slices) = informer::<EndpointSlice>(&client, changed.clone());
    // The watches end with the proxy: a watch left open would keep the API
    // server of the same process from finishing its shutdown.
    let mut watches = vec![
        tokio::spawn(watching_services),
        tokio::spawn(watching_slices),
    ];
    let listeners = serving.listeners.clone();
    let policies = serving.policies.clone();
    let _ = serving.names.set(crate::dns::Names {
        services: services.clone(),
        slices: slices.clone(),
    });
    let mut cluster_dns = None;
    match serving.dns {
        Some(sockets) => {
            let answering = crate::dns::serve(sockets, services.clone(), slices.clone());
            watches.push(tokio::spawn(answering));
        }
        None => {
            cluster_dns = Some(ClusterDns {
                client: client.clone(),
                node: serving.node.clone(),
                serving: None,
                refused: None,
            });
        }
    }
    let table = Arc::new(Mutex::new(Table::default()));
    if let Some(listener) = serving.ingress {
        let (ingresses, watching) = informer::<Ingress>(&client, Arc::new(Notify::new()));
        watches.push(tokio::spawn(watching));
        let routing = crate::ingress::serve(
            client.clone(),
            listener,
            ingresses,
            services.clone(),
            table.clone(),
        );
        watches.push(tokio::spawn(routing));
    }
    let mut listening: HashMap<SocketAddr, (Route, JoinHandle<()>)> = HashMap::new();
    // Addresses refused for want of privilege, warned about once.
    let mut refused = HashSet::new();
    loop {
        tokio::select! {
            () = closing.cancelled() => break,
            () = changed.notified() => {}
            // Addresses another agent of this machine served may be free now.
            () = tokio::time::sleep(RETRY) => {}
        }
        table.lock().unwrap_or_else(|e| e.into_inner()).endpoints = endpoints(&slices.state());
        if let Some(dns) = &mut cluster_dns {
            dns.follow(&services, &slices);
        }
        let wanted = routes(&services.state(), node);
        listeners.set_services(wanted.keys().copied().collect());
        listening.retain(|address, (route, task)| {
            let keep = wanted.get(address) == Some(route);
            if !keep {
                task.abort();
            }
            keep
        });
        for (address, route) in wanted {
            if listening.contains_key(&address) {
                continue;
            }
            match listen(address, route.clone(), table.clone(), policies.clone()) {
                Ok(task) => {
                    listening.insert(address, (route, task));
                }
                // Served by another agent on this machine.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) if refused.insert(address) => {
                    tracing::warn!(%address, error = %e, "cannot serve a Service address");
                }
                Err(_) => {}
            }
        }
    }
    let dns = cluster_dns
        .and_then(|dns| dns.serving)
        .map(|(_, task)| task);
    for task in listening
        .into_values()
        .map(|(_, task)| task)
        .chain(watches)
        .chain(dns)
    {
        task.abort();
    }
}

/// Cluster DNS at the `kube-system/kube-dns` Service's cluster IP, port 53
/// (UDP), as pods and tools expect it; an address that cannot be bound (no
/// privilege for port 53, or another cluster's agent on this machine holds
/// it) is an Event on the node, and tried again.
struct ClusterDns {
    client: Client,
    node: String,
    /// Where it answers, and the task that does.
    serving: Option<(SocketAddr, JoinHandle<()>)>,
    /// The address last refused, so the Event is not repeated.
    refused: Option<SocketAddr>,
}

impl ClusterDns {
    /// Answers at the address the caches name now, if it can.
    fn follow(&mut self, services: &Store<Service>, slices: &Store<EndpointSlice>) {
        let wanted = services
            .state()
            .iter()
            .find(|s| s.namespace().as_deref() == Some("kube-system") && s.name_any() == "kube-dns")
            .and_then(|s| {
                s.spec
                    .as_ref()?
                    .cluster_ip
                    .as_deref()?
                    .parse::<IpAddr>()
                    .ok()
            })
            .map(|ip| SocketAddr::new(ip, 53));
        if self.serving.as_ref().map(|(at, _)| *at) == wanted {
            return;
        }
        if let Some((_, task)) = self.serving.take() {
            task.abort();
        }
        let Some(address) = wanted else {
            return;
        };
        match crate::dns::Sockets::bind(address) {
            Ok(sockets) => {
                let answering = crate::dns::serve(sockets, services.clone(), slices.clone());
                self.serving = Some((address, tokio::spawn(answering)));
                self.refused = None;
                tracing::info!(%address, "answering cluster DNS");
            }
            Err(e) if self.refused != Some(address) => {
                self.refused = Some(address);
                crate::node::warn(
                    &self.client,
                    &self.node,
                    "ClusterDNSUnavailable",
                    format!("cannot answer cluster DNS at {address}: {e}; trying again"),
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(port: &str) -> PortKey {
        ("default".into(), "web".into(), port.into())
    }

    #[test]
    fn connections_take_turns_or_stick_to_their_client() {
        let a: SocketAddr = "127.64.0.2:8080".parse().unwrap();
        let b: SocketAddr = "127.65.0.2:8080".parse().unwrap();
        let mut table = Table::default();
        table.endpoints.insert(key("http"), vec![a, b]);
        let round = Route {
            port: key("http"),
            affinity: None,
        };
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let picks: Vec<_> = (0..4)
            .map(|_| table.pick(&round, client, &[]).unwrap())
            .collect();
        assert_eq!(picks, [a, b, a, b]);
        let sticky = Route {
            port: key("http"),
            affinity: Some(Duration::from_secs(60)),
        };
        let first = table.pick(&sticky, client, &[]).unwrap();
        assert!((0..4).all(|_| table.pick(&sticky, client, &[]) == Some(first)));
        // Its endpoint gone, the client moves on.
        table
            .endpoints
            .insert(key("http"), vec![if first == a { b } else { a }]);
        assert_ne!(table.pick(&sticky, client, &[]), Some(first));
        // An endpoint that refused is passed over, and none is left when
        // all did.
        table.endpoints.insert(key("http"), vec![a, b]);
        assert!((0..4).all(|_| table.pick(&round, client, &[a]) == Some(b)));
        assert_eq!(table.pick(&round, client, &[a, b]), None);
        table.endpoints.insert(key("http"), vec![]);
        assert_eq!(table.pick(&round, client, &[]), None);
    }

    #[test]
    fn routes_and_endpoints_come_from_services_and_ready_slice_endpoints() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "127.192.0.10", "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                          {"name": "dns", "port": 53, "protocol": "UDP"}]}}))
        .unwrap();
        let node: IpAddr = "127.0.0.1".parse().unwrap();
        let routes = routes(&[Arc::new(service)], node);
        let mut addresses: Vec<String> = routes.keys().map(ToString::to_string).collect();
        addresses.sort();
        assert_eq!(addresses, ["127.0.0.1:30080", "127.192.0.10:80"]);
        assert_eq!(
            routes.values().next().unwrap().affinity,
            Some(Duration::from_secs(10_800))
        );
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["127.64.0.2"], "conditions": {"ready": true}},
                {"addresses": ["127.64.0.3"], "conditions": {"ready": false}}]}))
        .unwrap();
        let ready = endpoints(&[Arc::new(slice)]);
        assert_eq!(
            ready[&key("http")],
            ["127.64.0.2:8080".parse::<SocketAddr>().unwrap()]
        );
    }
}

//! The node agent: a kubelet for WebAssembly. It registers its Node, renews its
//! Lease, and runs the pods bound to it as Wasm components on the node's
//! [`Runtime`], reporting their status through the API.
//!
//! Level-triggered: a watch of the node's pods feeds one worker per pod, which
//! reads the pod it is given and drives its containers toward it; a lost event
//! costs nothing but the next one. Deleting a pod stops its containers within the
//! grace period, then the agent removes the object.
//!
//! Its own endpoint (container logs, port-forward) is served over mutual TLS
//! to the API server alone ([`Endpoint`]), with a serving certificate from
//! the cluster CA, asked of the cluster when the agent runs on its own
//! ([`certificates`]). Given a [`Home`], it also keeps connections open to
//! the API server and serves the endpoint on them, for a node the server
//! cannot dial (behind NAT).
//!
//! It is the node's Service proxy too ([`proxy`]): Service addresses and
//! node ports forward to ready endpoints; and, when asked, it answers
//! cluster DNS ([`dns`]), and the Ingress controller of the class `wasmkube`
//! ([`ingress`]).
//!
//! The agent keeps a local record of its pods ([`record`]): started again, it
//! takes them back before it hears from the API server; cut off from the
//! server, it keeps running them, and when the watch lists again, pods the
//! server no longer has are stopped.

pub mod certificates;
mod dns;
mod endpoint;
mod ingress;
mod logs;
pub mod netpol;
mod network;
mod node;
mod pod;
mod portforward;
mod prepare;
mod probes;
mod proxy;
mod pull;
mod record;
mod tunnel;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wasmkube_engine::Engine;
use wasmkube_plugin_host::PluginHost;
use wasmkube_runtime::{Decide, Egress, Net, Rotation, Runtime};

pub use endpoint::{Endpoint, EndpointCertificate, KUBELET_CLIENT, serving_profile};
pub use network::{Backend, Range};
pub use node::{INSTANCES, POD_CAPACITY};
pub use pod::FRESH_INSTANCES;
pub use tunnel::Home;

/// How many pod statuses the agent writes at once.
const STATUS_WRITERS: usize = 4;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The API server refused or could not be reached.
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] wasmkube_runtime::RuntimeError),
    /// The network plugins could not be loaded.
    #[error(transparent)]
    Network(wasmkube_plugin_host::PluginError),
    /// The agent's endpoint cannot be secured with the client CA or the
    /// certificate it is given.
    #[error("the agent's endpoint: {0}")]
    Endpoint(#[source] wasmkube_pki::Error),
}

/// One node's agent.
#[derive(Clone)]
pub struct Agent {
    client: Client,
    /// `host:port` of the API server: images it names come from its built-in
    /// registry through `client`.
    registry: String,
    node: String,
    runtime: Arc<Runtime>,
    /// Where pods keep their record, logs and volumes.
    pods_dir: PathBuf,
    /// Where the agent keeps the serving certificate it asks the cluster for.
    pki_dir: PathBuf,
    /// The node's address, given to its pods as `hostIP`.
    host_ip: String,
    /// When container logs rotate.
    rotation: Rotation,
    /// The containers running now, as `uid/name`.
    running: Arc<Mutex<HashSet<String>>>,
    /// The UIDs of the pods the agent has, by `namespace/name`.
    pods: Arc<Mutex<HashMap<String, String>>>,
    /// The pods' network: their own addresses.
    network: Arc<network::PodNetwork>,
    /// Where it answers cluster DNS, if anywhere.
    dns: Option<std::net::SocketAddr>,
    /// Where it serves Ingresses, if anywhere.
    ingress: Option<std::net::SocketAddr>,
    /// The names the cluster gives (Services), once the proxy's caches are
    /// filling.
    names: Arc<std::sync::OnceLock<dns::Names>>,
    /// Where it dials home, if it does.
    home: Option<Arc<Home>>,
    /// Where the node's pods and Services listen, which pods may reach.
    listeners: wasmkube_runtime::Listeners,
    /// The API server's addresses, which pods may not reach but through the
    /// `kubernetes` Service.
    control_plane: Vec<std::net::IpAddr>,
    /// The NetworkPolicies, once the cluster has any.
    policies: Arc<std::sync::OnceLock<netpol::Policies>>,
    /// Turns at writing pods' statuses: a few at once, as the kubelet's one
    /// status writer, so a burst of pods does not open a connection each.
    status_writes: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent for node `node`, running pods and network plugins on
    /// `engine`, keeping images and pod data under `data_dir`, giving pods
    /// addresses from `pod_range` unless the Node has a `spec.podCIDR` (by
    /// default, [`Range::for_node`]), routed to other nodes by `backend`
    /// when the range is not a loopback one. `client` reaches the API server at
    /// `registry` (`host:port`, as the clients' URL has it), whose built-in
    /// registry images naming it are pulled from with the client's identity.
    pub fn new(
        client: Client,
        registry: &str,
        engine: Arc<Engine>,
        node: &str,
        data_dir: &std::path::Path,
        pod_range: Option<Range>,
        backend: Backend,
    ) -> Result<Agent, AgentError> {
        let pods_dir = data_dir.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(wasmkube_runtime::RuntimeError::from)?;
        raise_open_files();
        Ok(Agent {
            client,
            registry: registry.to_owned(),
            node: node.to_owned(),
            runtime: Arc::new(Runtime::new(engine.clone(), data_dir)?),
            pods_dir,
            pki_dir: data_dir.join("pki"),
            host_ip: String::new(),
            rotation: Rotation::default(),
            running: Arc::default(),
            pods: Arc::default(),
            network: Arc::new(
                network::PodNetwork::new(
                    PluginHost::new(engine),
                    data_dir,
                    pod_range.unwrap_or_else(|| Range::for_node(node)),
                    backend,
                )
                .map_err(AgentError::Network)?,
            ),
            dns: None,
            ingress: None,
            names: Arc::default(),
            home: None,
            listeners: wasmkube_runtime::Listeners::default(),
            control_plane: addresses_of(registry),
            policies: Arc::default(),
            status_writes: Arc::new(tokio::sync::Semaphore::new(STATUS_WRITERS)),
        })
    }

    /// The decision of `pod`'s NetworkPolicies on its connections: to an
    /// address (`ingress` false), or from one to its port (`ingress` true).
    pub(crate) fn policy(&self, pod: &Pod, ingress: bool) -> Decide {
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        netpol::decision(self.policies.clone(), namespace, name, ingress)
    }

    /// What the node's pods may connect to now: `pod`'s policies on top.
    pub(crate) fn egress(&self, pod: &Pod) -> Arc<Egress> {
        let range = self.network.range();
        let net = |address: std::net::Ipv4Addr, bits| Net {
            address: address.into(),
            bits,
        };
        let own = net(range.nth(0), range.bits());
        // Other nodes of this machine take their ranges from the loopback one.
        let cluster = if range.nth(0).is_loopback() {
            net(std::net::Ipv4Addr::new(127, 64, 0, 0), 10)
        } else {
            own
        };
        Arc::new(Egress {
            node_pods: Some(own),
            cluster_pods: vec![cluster],
            node: self.host_ip.parse().into_iter().collect(),
            control_plane: self.control_plane.clone(),
            listeners: self.listeners.clone(),
            policy: Some(self.policy(pod, false)),
        })
    }

    /// The agent, answering cluster DNS (UDP) at `address` too.
    pub fn serve_dns(mut self, address: std::net::SocketAddr) -> Agent {
        self.dns = Some(address);
        self
    }

    /// The agent, serving the Ingresses of the class `wasmkube` (HTTP) at
    /// `address` too.
    pub fn serve_ingress(mut self, address: std::net::SocketAddr) -> Agent {
        self.ingress = Some(address);
        self
    }

    /// The agent, keeping connections open to the API server at `home`,
    /// through which the server reaches its endpoint.
    pub fn dial_home(mut self, home: Home) -> Agent {
        self.home = Some(Arc::new(home));
        self
    }

    /// The name of the agent's node.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The UID of the pod `namespace/name` the agent has, if it has it.
    fn uid_of(&self, namespace: &str, name: &str) -> Option<String> {
        let pods = self.pods.lock().expect("pods lock");
        pods.get(&format!("{namespace}/{name}")).cloned()
    }

    /// Notes that the agent has `pod`.
    fn remember(&self, pod: &Pod) {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let mut pods = self.pods.lock().expect("pods lock");
        pods.insert(key, pod.uid().unwrap_or_default());
    }

    /// Notes that the agent no longer has `pod` (unless a new pod took its name).
    fn forget(&self, pod: &Pod) {
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let mut pods = self.pods.lock().expect("pods lock");
        if pods.get(&key) == pod.metadata.uid.as_ref() {
            pods.remove(&key);
        }
    }

    /// Whether the container `name` of the pod `uid` is running.
    fn is_running(&self, uid: &str, name: &str) -> bool {
        let running = self.running.lock().expect("running lock");
        running.contains(&format!("{uid}/{name}"))
    }

    /// Marks the container `name` of the pod `uid` running or not.
    fn set_running(&self, uid: &str, name: &str, running: bool) {
        let key = format!("{uid}/{name}");
        let mut set = self.running.lock().expect("running lock");
        if running {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    /// Takes back the pods on record, registers the node (with the address
    /// of its `endpoint`), serves the endpoint, and runs the node's pods until
    /// `closing` is cancelled. The pods on record run whether or not the API
    /// server can be reached; registration is retried until it can.
    pub async fn run(
        mut self,
        endpoint: Endpoint,
        closing: CancellationToken,
    ) -> Result<(), AgentError> {
        let address = endpoint
            .listener
            .local_addr()
            .map_err(wasmkube_runtime::RuntimeError::from)?;
        self.host_ip = address.ip().to_string();
        let mut workers = Workers::new(closing.clone());
        for pod in record::load_all(&self.pods_dir) {
            workers.feed(&self, pod);
        }
        endpoint::start(&self, endpoint, &closing)?;
        if let Some(home) = self.home.clone() {
            tunnel::start(&self, home, &closing);
        }
        let mut backoff = Retry::default();
        loop {
            match node::register(&self.client, &self.node, address).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "registering the node"),
            }
            let delay = backoff.next().unwrap_or(RETRY_MAX);
            tokio::select! {
                () = closing.cancelled() => {
                    workers.stopped().await;
                    return Ok(());
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
        // New pods get addresses once the node's network is set up from
        // its range and the other nodes' (or that could not be done).
        let (ready, set_up) = tokio::sync::oneshot::channel();
        tokio::spawn(node::follow_nodes(
            self.client.clone(),
            self.node.clone(),
            self.host_ip.clone(),
            self.network.clone(),
            ready,
            closing.clone(),
        ));
        tokio::spawn(node::renew_lease(
            self.client.clone(),
            self.node.clone(),
            closing.clone(),
        ));
        let mut serving = proxy::Serving {
            names: self.names.clone(),
            node: self.node.clone(),
            listeners: self.listeners.clone(),
            policies: self.policies.clone(),
            ..proxy::Serving::default()
        };
        if let Some(address) = self.dns {
            match dns::Sockets::bind(address) {
                Ok(sockets) => serving.dns = Some(sockets),
                Err(e) => tracing::warn!(%address, error = %e, "cannot serve cluster DNS"),
            }
        }
        if let Some(address) = self.ingress {
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => serving.ingress = Some(listener),
                Err(e) => tracing::warn!(%address, error = %e, "cannot serve Ingresses"),
            }
        }
        tokio::spawn(proxy::run(
            self.client.clone(),
            address.ip(),
            serving,
            closing.clone(),
        ));
        tokio::select! {
            () = closing.cancelled() => {
                workers.stopped().await;
                return Ok(());
            }
            _ = set_up => {}
        }
        let range = self.network.range();
        let node_addresses = [Some(address.ip()), Some(range.nth(0).into())];
        tokio::spawn(netpol::follow(
            self.client.clone(),
            self.node.clone(),
            node_addresses.into_iter().flatten().collect(),
            self.policies.clone(),
            closing.clone(),
        ));
        let pods: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut events = watcher(pods, config).backoff(Retry::default()).boxed();
        // The UIDs listed since the watch last started over.
        let mut listed: HashSet<String> = HashSet::new();
        loop {
            let event = tokio::select! {
                () = closing.cancelled() => {
                    workers.stopped().await;
                    return Ok(());
                }
                event = events.next() => match event {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching pods");
                        continue;
                    }
                    None => return Ok(()),
                },
            };
            match event {
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitApply(pod) => {
                    listed.extend(pod.uid());
                    workers.feed(&self, pod);
                }
                watcher::Event::Apply(pod) => workers.feed(&self, pod),
                watcher::Event::Delete(pod) => workers.gone(pod.uid().unwrap_or_default()),
                // Pods the agent has that the server no longer lists were
                // deleted while it could not see: they go too.
                watcher::Event::InitDone => {
                    let missing: Vec<String> = workers
                        .fed
                        .keys()
                        .filter(|uid| !listed.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in missing {
                        workers.gone(uid);
                    }
                }
            }
        }
    }
}

/// One worker per pod, fed the pod each time it changes.
struct Workers {
    fed: HashMap<String, watch::Sender<Pod>>,
    tasks: tokio::task::JoinSet<()>,
    closing: CancellationToken,
}

impl Workers {
    fn new(closing: CancellationToken) -> Workers {
        Workers {
            fed: HashMap::new(),
            tasks: tokio::task::JoinSet::new(),
            closing,
        }
    }

    /// Waits until every worker has stopped its pod (the agent is
    /// stopping), for as long as the longest grace period allows.
    async fn stopped(mut self) {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_LIMIT, all).await.is_err() {
            tracing::warn!("pods still stopping after {STOP_LIMIT:?}; leaving them");
        }
    }

    /// Gives `pod` to its worker, starting one if it has none.
    fn feed(&mut self, agent: &Agent, pod: Pod) {
        let Some(uid) = pod.uid() else { return };
        // A worker ends only once its pod is gone from the API, whose Delete
        // event removes it here; one found ended is replaced.
        match self.fed.get(&uid).filter(|worker| !worker.is_closed()) {
            Some(worker) => {
                worker.send_replace(pod);
            }
            None => {
                agent.remember(&pod);
                let (sender, receiver) = watch::channel(pod);
                self.fed.insert(uid, sender);
                let worker = pod::Worker::new(agent.clone(), receiver, self.closing.clone());
                self.tasks.spawn(worker.run());
            }
        }
    }

    /// Tells the worker of a pod that is no longer in the API to stop it.
    fn gone(&mut self, uid: String) {
        if let Some(worker) = self.fed.remove(&uid) {
            worker.send_modify(|pod| {
                pod.metadata
                    .deletion_timestamp
                    .get_or_insert_with(|| Time(k8s_openapi::jiff::Timestamp::now()));
            });
        }
    }
}

/// How long a stopping agent waits for its pods to stop: the longest grace
/// period a wasi:http server is likely to use, and a little more.
const STOP_LIMIT: Duration = Duration::from_secs(35);

/// How long the agent waits before it tries the API server again, at first and
/// at most: short, so a node cut off catches up soon after the server is back.
const RETRY_START: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Doubling waits from [`RETRY_START`] to [`RETRY_MAX`].
struct Retry(Duration);

impl Default for Retry {
    fn default() -> Self {
        Retry(RETRY_START)
    }
}

impl Iterator for Retry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.0;
        self.0 = (self.0 * 2).min(RETRY_MAX);
        Some(wait)
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.0 = RETRY_START;
    }
}

/// Raises the limit of open files to what the system allows: every pod's log
/// and volumes hold some.
fn raise_open_files() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "raising the open-file limit");
        }
    }
}

/// The addresses `authority` (`host:port`) names: its IP, or what its name
/// resolves to.
fn addresses_of(authority: &str) -> Vec<std::net::IpAddr> {
    use std::net::ToSocketAddrs as _;
    authority
        .to_socket_addrs()
        .map(|found| found.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

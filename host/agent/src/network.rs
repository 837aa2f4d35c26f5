//! Pod addresses through the node's network plugins: each pod is added to
//! the network list `wasmkube` (CNI's contract, run by the plugin host):
//! `pod-network` gives the pod's interface the address its IPAM plugin,
//! `host-local`, reserves out of the node's range (`spec.podCIDR` when the
//! Node has one, else the agent's `--pod-cidr`). Many pods serve the same
//! port, and two nodes with different ranges never collide. On one machine,
//! any range inside 127.0.0.0/8 works with no configuration: Linux routes
//! all of it to the loopback interface.
//!
//! Any other range is routed between machines (Flannel's model): the
//! plugin's node setup puts the node's range on a bridge of its own, where
//! pods' addresses go, and routes every other node's range through that
//! node (`host-gw`) or a VXLAN device (`vxlan`). The setup runs when the
//! node gets its range, whenever nodes come, go or move, and every
//! [`RECHECK`] (the kernel drops routes through a link that goes down; they
//! are put back when it comes back up).
//!
//! The reservations are the plugins' state on disk, so a pod keeps its
//! address across restarts of the agent and a restarted agent hands out no
//! address twice; a pod's address is released when it is deleted. The
//! node's last setup is kept on disk too, so an agent that restarts cut off
//! from the API server sets its network up again before its pods return.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};
use wasmkube_plugin_host::{Limits, Networks, Node, PluginError, PluginHost, Sandbox};

pub use wasmkube_types::cidr::Range;

/// The network every pod is on.
const NETWORK: &str = "wasmkube";

/// What a network plugin call may take: its time includes the host's
/// synced writes, which a busy disk slows.
const LIMITS: Limits = Limits {
    call_time: Duration::from_secs(10),
    memory: 64 << 20,
};

/// How many pods join or leave the network at once: every call writes the
/// plugins' state through to disk, and a call's time limit counts from its
/// start, so a burst of pods waits its turn here rather than inside the
/// plugins.
const AT_ONCE: usize = 4;

/// How often the node's setup is made again when nothing changed.
pub(crate) const RECHECK: Duration = Duration::from_secs(10);

/// How the pod network reaches other nodes' ranges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Routes through the other nodes' addresses: nodes on one link.
    #[default]
    HostGw,
    /// A VXLAN device: nodes anywhere their UDP port 8472 reaches.
    Vxlan,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::HostGw => "host-gw",
            Backend::Vxlan => "vxlan",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(name: &str) -> Result<Backend, String> {
        match name {
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            other => Err(format!("{other:?} is not host-gw or vxlan")),
        }
    }
}

/// The node's pod network.
#[derive(Debug)]
pub(crate) struct PodNetwork {
    /// Turns to call the plugins, [`AT_ONCE`] at a time.
    turns: tokio::sync::Semaphore,
    networks: Networks,
    /// The node's range.
    range: Mutex<Range>,
    backend: Backend,
    /// Where the node's last setup is kept, and what it says.
    kept: std::path::PathBuf,
    last: Mutex<Option<Node>>,
}

/// The pod a network call is for.
#[derive(Clone, Debug)]
pub(crate) struct PodRef {
    uid: String,
    namespace: String,
    name: String,
}

impl From<&Pod> for PodRef {
    fn from(pod: &Pod) -> PodRef {
        PodRef {
            uid: pod.uid().unwrap_or_default(),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
        }
    }
}

impl PodRef {
    fn sandbox(&self, requested: Option<IpAddr>) -> Sandbox {
        let mut args = vec![
            ("K8S_POD_NAMESPACE".to_owned(), self.namespace.clone()),
            ("K8S_POD_NAME".to_owned(), self.name.clone()),
            ("K8S_POD_UID".to_owned(), self.uid.clone()),
        ];
        if let Some(ip) = requested {
            args.push(("IP".to_owned(), ip.to_string()));
        }
        Sandbox {
            container_id: self.uid.clone(),
            netns: format!("wasm:{}", self.uid),
            ifname: "eth0".to_owned(),
            args,
        }
    }
}

impl PodNetwork {
    /// The network of a node, its plugins run by `host` and their state
    /// under `data_dir/network`, reaching other nodes by `backend`. Its
    /// range is the one of its last setup, which is made again now, or
    /// `range` when it was never set up.
    pub(crate) fn new(
        host: PluginHost,
        data_dir: &Path,
        range: Range,
        backend: Backend,
    ) -> Result<PodNetwork, PluginError> {
        let state = data_dir.join("network");
        let networks = Networks::new(&host, &state, LIMITS)?;
        let kept = state.join("node.json");
        let last: Option<Node> = std::fs::read(&kept)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Node>(&bytes).ok());
        let network = PodNetwork {
            turns: tokio::sync::Semaphore::new(AT_ONCE),
            networks,
            range: Mutex::new(range),
            backend,
            kept,
            last: Mutex::new(last.clone()),
        };
        if let Some(node) = last
            && let Err(e) = network.setup(&node)
        {
            tracing::warn!(error = %e, "setting up the node's pod network as it last was");
        }
        Ok(network)
    }

    /// Sets the node up as `node` says (its range, address and peers):
    /// pods get addresses from its range from now on (pods keep theirs),
    /// and the plugins make its devices and routes. The setup is kept on
    /// disk first, when it changed.
    pub(crate) fn setup(&self, node: &Node) -> Result<(), String> {
        let range: Range = node.pod_cidr.parse()?;
        *self.range.lock().expect("range lock") = range;
        let mut last = self.last.lock().expect("last setup lock");
        if last.as_ref() != Some(node) {
            let kept = serde_json::to_vec(node).map_err(|e| e.to_string())?;
            let written = self
                .kept
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&self.kept, kept));
            match written {
                Ok(()) => *last = Some(node.clone()),
                Err(e) => tracing::warn!(
                    file = %self.kept.display(), error = %e, "keeping the node's network setup"
                ),
            }
        }
        drop(last);
        self.networks
            .setup(&self.list(), node)
            .map_err(|e| e.to_string())
    }

    /// The node's range now.
    pub(crate) fn range(&self) -> Range {
        *self.range.lock().expect("range lock")
    }

    /// [`PodNetwork::setup`] in its turn, off the async threads.
    pub(crate) async fn set_up(self: Arc<Self>, node: Node) -> Result<(), String> {
        let network = self.clone();
        self.in_turn(move || network.setup(&node)).await
    }

    /// The network list, over the node's range now.
    fn list(&self) -> Value {
        let range = self.range.lock().expect("range lock").to_string();
        json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
            {"type": "pod-network", "backend": self.backend.name(),
             "ipam": {"type": "host-local", "ranges": [[{"subnet": range}]]}}]})
    }

    /// Puts the pod on the network: its address, the one it had when that
    /// is free (a pod taken back from an agent's record), else a new one.
    pub(crate) fn add(&self, pod: &PodRef, had: Option<IpAddr>) -> Result<IpAddr, String> {
        let list = self.list();
        let added = match had {
            Some(had) => self
                .networks
                .add(&list, &pod.sandbox(Some(had)))
                .or_else(|_| self.networks.add(&list, &pod.sandbox(None))),
            None => self.networks.add(&list, &pod.sandbox(None)),
        }
        .map_err(|e| e.to_string())?;
        added
            .attachment
            .addresses
            .first()
            .map(|(_, ip)| *ip)
            .ok_or_else(|| "the network plugins gave the pod no address".to_owned())
    }

    /// Takes the pod off the network, releasing its address.
    pub(crate) fn del(&self, pod: &PodRef) -> Result<(), String> {
        self.networks
            .del(&self.list(), &pod.sandbox(None))
            .map_err(|e| e.to_string())
    }

    /// [`PodNetwork::add`] in its turn, off the async threads (the plugins
    /// write their state to disk).
    pub(crate) async fn join(
        self: Arc<Self>,
        pod: PodRef,
        had: Option<IpAddr>,
    ) -> Result<IpAddr, String> {
        let network = self.clone();
        self.in_turn(move || network.add(&pod, had)).await
    }

    /// [`PodNetwork::del`] in its turn, off the async threads.
    pub(crate) async fn leave(self: Arc<Self>, pod: PodRef) -> Result<(), String> {
        let network = self.clone();
        self.in_turn(move || network.del(&pod)).await
    }

    async fn in_turn<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let _turn = self.turns.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(call)
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> PodRef {
        PodRef {
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
        }
    }

    #[test]
    fn pods_get_distinct_addresses_keep_them_and_give_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let settings = wasmkube_engine::Settings::at(&dir.path().join("compiled"));
        let host = PluginHost::new(Arc::new(wasmkube_engine::Engine::start(&settings).unwrap()));
        let range = |text: &str| text.parse().unwrap();
        let network = PodNetwork::new(
            host.clone(),
            dir.path(),
            range("127.80.0.0/29"),
            Backend::HostGw,
        )
        .unwrap();
        let a = network.add(&pod("a"), None).unwrap();
        let b = network.add(&pod("b"), None).unwrap();
        assert_ne!(a, b);
        assert_eq!(network.add(&pod("a"), None).unwrap(), a);
        network.del(&pod("a")).unwrap();
        // A pod taken back asks for the address it had.
        assert_eq!(network.add(&pod("c"), Some(a)).unwrap(), a);
        // One that cannot have it gets another.
        let d = network.add(&pod("d"), Some(a)).unwrap();
        assert!(d != a && d != b, "{d}");
        // A new range is used for new pods; the others keep theirs.
        let node = Node {
            name: "n".into(),
            pod_cidr: "127.81.0.0/29".into(),
            address: "127.0.0.1".into(),
            peers: Vec::new(),
        };
        network.setup(&node).unwrap();
        assert_eq!(
            network.add(&pod("e"), None).unwrap().to_string(),
            "127.81.0.2"
        );
        drop(network);
        // A restarted agent has the range of its last setup.
        let again =
            PodNetwork::new(host, dir.path(), range("127.82.0.0/29"), Backend::HostGw).unwrap();
        assert_eq!(
            again.add(&pod("f"), None).unwrap().to_string(),
            "127.81.0.3"
        );
    }
}

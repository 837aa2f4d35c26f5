//! Pod addresses through the node's network plugins: each pod is added to
//! the network list `wasmkube` (CNI's contract, run by the plugin host):
//! `pod-network` gives the pod's interface the address its IPAM plugin,
//! `host-local`, reserves out of the node's range (`spec.podCIDR` when the
//! Node has one, else the agent's `--pod-cidr`). Many pods serve the same
//! port, and two nodes with different ranges never collide. On one machine,
//! any range inside 127.0.0.0/8 works with no configuration: Linux routes
//! all of it to the loopback interface.
//!
//! The reservations are the plugins' state on disk, so a pod keeps its
//! address across restarts of the agent and a restarted agent hands out no
//! address twice; a pod's address is released when it is deleted.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};
use wasmkube_plugin_host::{Limits, Networks, PluginError, PluginHost, Sandbox};

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

/// The node's pod network.
#[derive(Debug)]
pub(crate) struct PodNetwork {
    /// Turns to call the plugins, [`AT_ONCE`] at a time.
    turns: tokio::sync::Semaphore,
    networks: Networks,
    /// The node's range.
    range: Mutex<Range>,
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
    /// The network of a node whose range is `range` (until it is given
    /// another), its plugins run by `host` and their state under
    /// `data_dir/network`.
    pub(crate) fn new(
        host: PluginHost,
        data_dir: &Path,
        range: Range,
    ) -> Result<PodNetwork, PluginError> {
        let networks = Networks::new(&host, &data_dir.join("network"), LIMITS)?;
        Ok(PodNetwork {
            turns: tokio::sync::Semaphore::new(AT_ONCE),
            networks,
            range: Mutex::new(range),
        })
    }

    /// Hands out addresses from `range` from now on (pods keep theirs).
    pub(crate) fn set_range(&self, range: Range) {
        *self.range.lock().expect("range lock") = range;
    }

    /// The network list, over the node's range now.
    fn list(&self) -> Value {
        let range = self.range.lock().expect("range lock").to_string();
        json!({"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
            {"type": "pod-network", "ipam": {"type": "host-local", "ranges": [[{"subnet": range}]]}}]})
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
        let network =
            PodNetwork::new(host.clone(), dir.path(), "127.80.0.0/29".parse().unwrap()).unwrap();
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
        network.set_range("127.81.0.0/29".parse().unwrap());
        assert_eq!(
            network.add(&pod("e"), None).unwrap().to_string(),
            "127.81.0.2"
        );
        drop(network);
        let again = PodNetwork::new(host, dir.path(), "127.81.0.0/29".parse().unwrap()).unwrap();
        assert_eq!(
            again.add(&pod("f"), None).unwrap().to_string(),
            "127.81.0.3"
        );
    }
}

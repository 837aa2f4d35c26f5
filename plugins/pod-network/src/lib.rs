//! `pod-network`, the network plugin of Wasm pods, as a Wasm component of
//! the world `wasmkube:cni/network-plugin`. A Wasm pod has no network
//! namespace: its sandbox is in the node's, and its interface is the
//! address its listeners bind to. On `add` the plugin has its IPAM plugin
//! (`ipam.type`, by delegation) reserve an address, asks the host to give
//! it to the pod's interface and to route what the IPAM result routes, and
//! records it; `del` releases the address (and succeeds when there is none);
//! `check` compares the recorded address with the result `add` gave.
//!
//! It also sets the node up (`wasmkube:cni/node`, Flannel's role). A range
//! inside 127.0.0.0/8 needs nothing: the loopback interface holds it all,
//! on one machine. Any other range is routed between nodes: a bridge
//! (`wasmkube0`) holds the range's first address and the pods' addresses,
//! and each other node's range is routed, with the `backend` the
//! configuration names:
//! - `host-gw` (the default): through that node's address, for nodes on
//!   one link;
//! - `vxlan`: through a VXLAN device (`wasmkube.1`, id 1, UDP 8472, as
//!   Flannel's), whose MAC each node derives from its range, so nodes need
//!   to tell each other nothing but their ranges and addresses.
//!
//! The node's own traffic to other ranges leaves from its range's first
//! address, so answers come back over the same routes.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "wasmkube", "plugins": [
//!   {"type": "pod-network", "backend": "host-gw",
//!    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.42.1.0/24"}]]}}]}
//! ```

use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// CNI's error code for an invalid network configuration.
const INVALID_CONFIG: u32 = 7;
/// CNI's error code for an I/O failure.
const IO_FAILURE: u32 = 5;
/// This plugin's own code: the pod is not as `add` left it.
const NOT_AS_ADDED: u32 = 100;

/// A CNI error: code and message.
pub type Failure = (u32, String);

/// What the plugin asks of the host.
pub trait Host {
    /// The IPAM plugin's `add`.
    fn ipam_add(&self, plugin: &str, config: &str) -> Result<String, Failure>;
    /// The IPAM plugin's `del`.
    fn ipam_del(&self, plugin: &str, config: &str) -> Result<(), Failure>;
    /// Gives the pod's interface an address.
    fn set_address(&self, ifname: &str, address: &str) -> Result<(), String>;
    /// Routes a destination from the pod.
    fn add_route(&self, destination: &str, gateway: Option<&str>) -> Result<(), String>;
    /// The plugin's recorded value of `key`.
    fn recorded(&self, key: &str) -> Option<String>;
    /// Records `value` under `key` (none: forgets it).
    fn record(&self, key: &str, value: Option<&str>) -> Result<(), String>;
}

/// The pod whose network it is: container, sandbox, interface.
pub struct Pod<'a> {
    pub container: &'a str,
    pub sandbox: &'a str,
    pub ifname: &'a str,
}

impl Pod<'_> {
    fn key(&self) -> String {
        format!("{}:{}", self.container, self.ifname)
    }
}

fn ipam_type(config: &Value) -> Result<&str, Failure> {
    config
        .pointer("/ipam/type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            (
                INVALID_CONFIG,
                "ipam.type: an IPAM plugin must be named".into(),
            )
        })
}

/// Puts the pod on the network; returns CNI's result.
pub fn add(host: &dyn Host, config: &Value, pod: &Pod) -> Result<String, Failure> {
    let plugin = ipam_type(config)?;
    let reserved: Value = serde_json::from_str(&host.ipam_add(plugin, &config.to_string())?)
        .map_err(|e| {
            (
                IO_FAILURE,
                format!("{plugin} gave a result that is not JSON: {e}"),
            )
        })?;
    let ips = reserved["ips"].as_array().cloned().unwrap_or_default();
    let Some(first) = ips.first().and_then(|ip| ip["address"].as_str()) else {
        let _ = host.ipam_del(plugin, &config.to_string());
        return Err((IO_FAILURE, format!("{plugin} gave no address")));
    };
    let given = (|| {
        for ip in &ips {
            host.set_address(pod.ifname, ip["address"].as_str().unwrap_or_default())?;
        }
        for route in reserved["routes"].as_array().into_iter().flatten() {
            let destination = route["dst"].as_str().unwrap_or_default();
            host.add_route(destination, route["gw"].as_str())?;
        }
        host.record(&pod.key(), Some(first))
    })();
    if let Err(e) = given {
        let _ = host.ipam_del(plugin, &config.to_string());
        return Err((IO_FAILURE, e));
    }
    let ips: Vec<Value> = ips
        .into_iter()
        .map(|mut ip| {
            ip["interface"] = json!(0);
            ip
        })
        .collect();
    Ok(json!({
        "cniVersion": config.get("cniVersion").cloned().unwrap_or(json!("1.0.0")),
        "interfaces": [{"name": pod.ifname, "sandbox": pod.sandbox}],
        "ips": ips,
        "routes": reserved["routes"],
        "dns": reserved.get("dns").cloned().unwrap_or(json!({})),
    })
    .to_string())
}

/// Takes the pod off the network.
pub fn del(host: &dyn Host, config: &Value, pod: &Pod) -> Result<(), Failure> {
    host.ipam_del(ipam_type(config)?, &config.to_string())?;
    host.record(&pod.key(), None).map_err(|e| (IO_FAILURE, e))
}

/// Whether the pod still has the address `add` gave it.
pub fn check(host: &dyn Host, config: &Value, pod: &Pod) -> Result<(), Failure> {
    ipam_type(config)?;
    let given = config
        .pointer("/prevResult/ips/0/address")
        .and_then(Value::as_str)
        .ok_or_else(|| (INVALID_CONFIG, "check needs the prevResult of add".into()))?;
    match host.recorded(&pod.key()) {
        Some(recorded) if recorded == given => Ok(()),
        Some(recorded) => Err((
            NOT_AS_ADDED,
            format!("{} has {recorded}, not {given}", pod.ifname),
        )),
        None => Err((NOT_AS_ADDED, format!("{} has no address", pod.ifname))),
    }
}

/// The bridge that holds the node's pod addresses.
const BRIDGE: &str = "wasmkube0";
/// The VXLAN device, its network id and UDP port (Flannel's defaults).
const VXLAN: &str = "wasmkube.1";
const VNI: u32 = 1;
const VXLAN_PORT: u16 = 8472;

/// A route to another node's range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: String,
    pub gateway: String,
    pub device: Option<String>,
    pub source: Option<String>,
}

/// Another node's VXLAN device: MAC, address, the node's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanPeer {
    pub mac: String,
    pub address: String,
    pub remote: String,
}

/// What a node setup asks of the host.
pub trait Links {
    /// A bridge, up, with an address.
    fn ensure_bridge(&self, name: &str, address: &str) -> Result<(), String>;
    /// A VXLAN device, up: network id, UDP port, MAC and address.
    fn ensure_vxlan(
        &self,
        name: &str,
        vni: u32,
        port: u16,
        mac: &str,
        address: &str,
    ) -> Result<(), String>;
    /// The VXLAN device's peers, exactly.
    fn set_vxlan_peers(&self, name: &str, peers: &[VxlanPeer]) -> Result<(), String>;
    /// The network's routes, exactly.
    fn set_routes(&self, routes: &[Route]) -> Result<(), String>;
}

/// A node: its pod range and address.
pub struct NodeRange<'a> {
    pub pod_cidr: &'a str,
    pub address: &'a str,
}

/// An IPv4 range `a.b.c.d/n`, its network address and prefix length.
fn range(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, bits) = text.split_once('/')?;
    let bits = bits.parse::<u8>().ok().filter(|b| *b <= 32)?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
    Some((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

/// The `n`th address of a range.
fn nth(network: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network).wrapping_add(n))
}

/// The MAC of the VXLAN device of the node whose range starts at
/// `network`: locally administered, `0a:58` and the four bytes.
fn vxlan_mac(network: Ipv4Addr) -> String {
    let [a, b, c, d] = network.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Sets the node `node` up for the network of `config`, routing the
/// ranges of `peers` (ranges inside 127.0.0.0/8 and peers that are not
/// well formed are left out: they are not routed).
pub fn setup(
    links: &dyn Links,
    config: &Value,
    node: &NodeRange,
    peers: &[NodeRange],
) -> Result<(), Failure> {
    let invalid = |what: String| (INVALID_CONFIG, what);
    let (network, bits) = range(node.pod_cidr)
        .ok_or_else(|| invalid(format!("{:?} is not a pod range", node.pod_cidr)))?;
    if network.is_loopback() {
        return Ok(());
    }
    let failed = |e: String| (IO_FAILURE, e);
    let gateway = nth(network, 1);
    links
        .ensure_bridge(BRIDGE, &format!("{gateway}/{bits}"))
        .map_err(failed)?;
    let peers: Vec<(Ipv4Addr, u8, &str)> = peers
        .iter()
        .filter_map(|p| {
            let (network, bits) = range(p.pod_cidr)?;
            p.address.parse::<Ipv4Addr>().ok()?;
            Some((network, bits, p.address)).filter(|_| !network.is_loopback())
        })
        .collect();
    let source = Some(gateway.to_string());
    let routes: Vec<Route> = match config.get("backend").and_then(Value::as_str) {
        None | Some("host-gw") => peers
            .iter()
            .map(|(network, bits, address)| Route {
                destination: format!("{network}/{bits}"),
                gateway: (*address).to_owned(),
                device: None,
                source: source.clone(),
            })
            .collect(),
        Some("vxlan") => {
            let address = format!("{network}/32");
            links
                .ensure_vxlan(VXLAN, VNI, VXLAN_PORT, &vxlan_mac(network), &address)
                .map_err(failed)?;
            let known: Vec<VxlanPeer> = peers
                .iter()
                .map(|(network, _, address)| VxlanPeer {
                    mac: vxlan_mac(*network),
                    address: network.to_string(),
                    remote: (*address).to_owned(),
                })
                .collect();
            links.set_vxlan_peers(VXLAN, &known).map_err(failed)?;
            peers
                .iter()
                .map(|(network, bits, _)| Route {
                    destination: format!("{network}/{bits}"),
                    gateway: network.to_string(),
                    device: Some(VXLAN.to_owned()),
                    source: source.clone(),
                })
                .collect()
        }
        Some(other) => {
            return Err(invalid(format!(
                "backend: {other:?} is not host-gw or vxlan"
            )));
        }
    };
    links.set_routes(&routes).map_err(failed)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit/cni", world: "node-network-plugin" });

    use exports::wasmkube::cni::node::NodeInfo;
    use exports::wasmkube::cni::plugin::Guest;
    use wasmkube::cni::types::{Error, Runtime};
    use wasmkube::cni::{host, node_links};

    struct FromHost;

    impl super::Host for FromHost {
        fn ipam_add(&self, plugin: &str, config: &str) -> Result<String, super::Failure> {
            host::delegate_add(plugin, config).map_err(|e| (e.code, e.msg))
        }
        fn ipam_del(&self, plugin: &str, config: &str) -> Result<(), super::Failure> {
            host::delegate_del(plugin, config).map_err(|e| (e.code, e.msg))
        }
        fn set_address(&self, ifname: &str, address: &str) -> Result<(), String> {
            host::set_address(ifname, address)
        }
        fn add_route(&self, destination: &str, gateway: Option<&str>) -> Result<(), String> {
            host::add_route(destination, gateway)
        }
        fn recorded(&self, key: &str) -> Option<String> {
            host::state_get(key)
        }
        fn record(&self, key: &str, value: Option<&str>) -> Result<(), String> {
            match value {
                Some(value) => host::state_set(key, value),
                None => host::state_remove(key),
            }
        }
    }

    fn call<T>(
        config: &str,
        runtime: &Runtime,
        f: impl FnOnce(&dyn super::Host, &serde_json::Value, &super::Pod) -> Result<T, super::Failure>,
    ) -> Result<T, Error> {
        let failed = |(code, msg): super::Failure| Error {
            code,
            msg,
            details: String::new(),
        };
        let config: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| failed((6, format!("the configuration is not JSON: {e}"))))?;
        let pod = super::Pod {
            container: &runtime.container_id,
            sandbox: &runtime.netns,
            ifname: &runtime.ifname,
        };
        f(&FromHost, &config, &pod).map_err(failed)
    }

    impl super::Links for FromHost {
        fn ensure_bridge(&self, name: &str, address: &str) -> Result<(), String> {
            node_links::ensure_bridge(name, address)
        }
        fn ensure_vxlan(
            &self,
            name: &str,
            vni: u32,
            port: u16,
            mac: &str,
            address: &str,
        ) -> Result<(), String> {
            node_links::ensure_vxlan(name, vni, port, mac, address)
        }
        fn set_vxlan_peers(&self, name: &str, peers: &[super::VxlanPeer]) -> Result<(), String> {
            let peers: Vec<node_links::VxlanPeer> = peers
                .iter()
                .map(|p| node_links::VxlanPeer {
                    mac: p.mac.clone(),
                    address: p.address.clone(),
                    remote: p.remote.clone(),
                })
                .collect();
            node_links::set_vxlan_peers(name, &peers)
        }
        fn set_routes(&self, routes: &[super::Route]) -> Result<(), String> {
            let routes: Vec<node_links::Route> = routes
                .iter()
                .map(|r| node_links::Route {
                    destination: r.destination.clone(),
                    gateway: r.gateway.clone(),
                    device: r.device.clone(),
                    source: r.source.clone(),
                })
                .collect();
            node_links::set_routes(&routes)
        }
    }

    impl exports::wasmkube::cni::node::Guest for PodNetwork {
        fn setup(config: String, node: NodeInfo) -> Result<(), Error> {
            let failed = |(code, msg): super::Failure| Error {
                code,
                msg,
                details: String::new(),
            };
            let config: serde_json::Value = serde_json::from_str(&config)
                .map_err(|e| failed((6, format!("the configuration is not JSON: {e}"))))?;
            let own = super::NodeRange {
                pod_cidr: &node.pod_cidr,
                address: &node.address,
            };
            let peers: Vec<super::NodeRange> = node
                .peers
                .iter()
                .map(|p| super::NodeRange {
                    pod_cidr: &p.pod_cidr,
                    address: &p.address,
                })
                .collect();
            super::setup(&FromHost, &config, &own, &peers).map_err(failed)
        }
    }

    struct PodNetwork;

    impl Guest for PodNetwork {
        fn versions() -> Vec<String> {
            ["0.4.0", "1.0.0", "1.1.0"].map(String::from).to_vec()
        }
        fn add(config: String, runtime: Runtime) -> Result<String, Error> {
            call(&config, &runtime, super::add)
        }
        fn del(config: String, runtime: Runtime) -> Result<(), Error> {
            call(&config, &runtime, super::del)
        }
        fn check(config: String, runtime: Runtime) -> Result<(), Error> {
            call(&config, &runtime, super::check)
        }
    }

    export!(PodNetwork);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// What a setup asked, in order.
    #[derive(Default)]
    struct Asked(RefCell<Vec<String>>);

    impl Links for Asked {
        fn ensure_bridge(&self, name: &str, address: &str) -> Result<(), String> {
            self.0.borrow_mut().push(format!("bridge {name} {address}"));
            Ok(())
        }
        fn ensure_vxlan(
            &self,
            name: &str,
            vni: u32,
            port: u16,
            mac: &str,
            address: &str,
        ) -> Result<(), String> {
            let line = format!("vxlan {name} {vni} {port} {mac} {address}");
            self.0.borrow_mut().push(line);
            Ok(())
        }
        fn set_vxlan_peers(&self, name: &str, peers: &[VxlanPeer]) -> Result<(), String> {
            for p in peers {
                let line = format!("peer {name} {} {} {}", p.mac, p.address, p.remote);
                self.0.borrow_mut().push(line);
            }
            Ok(())
        }
        fn set_routes(&self, routes: &[Route]) -> Result<(), String> {
            for r in routes {
                let line = format!(
                    "route {} via {} dev {:?} src {:?}",
                    r.destination, r.gateway, r.device, r.source
                );
                self.0.borrow_mut().push(line);
            }
            Ok(())
        }
    }

    const NODE: NodeRange = NodeRange {
        pod_cidr: "10.42.1.0/24",
        address: "192.168.5.1",
    };
    const PEERS: [NodeRange; 3] = [
        NodeRange {
            pod_cidr: "10.42.2.0/24",
            address: "192.168.5.2",
        },
        // One machine's kind of range is not routed, nor is nonsense.
        NodeRange {
            pod_cidr: "127.64.3.0/24",
            address: "192.168.5.3",
        },
        NodeRange {
            pod_cidr: "10.42.4.0/24",
            address: "not an address",
        },
    ];

    fn asked(config: Value, node: &NodeRange) -> Result<Vec<String>, Failure> {
        let links = Asked::default();
        setup(&links, &config, node, &PEERS)?;
        Ok(links.0.into_inner())
    }

    #[test]
    fn host_gw_routes_each_range_through_its_node() {
        assert_eq!(
            asked(json!({"type": "pod-network"}), &NODE).unwrap(),
            [
                "bridge wasmkube0 10.42.1.1/24",
                "route 10.42.2.0/24 via 192.168.5.2 dev None src Some(\"10.42.1.1\")",
            ]
        );
    }

    #[test]
    fn vxlan_routes_each_range_through_the_device_to_a_mac_derived_from_it() {
        assert_eq!(
            asked(json!({"backend": "vxlan"}), &NODE).unwrap(),
            [
                "bridge wasmkube0 10.42.1.1/24",
                "vxlan wasmkube.1 1 8472 0a:58:0a:2a:01:00 10.42.1.0/32",
                "peer wasmkube.1 0a:58:0a:2a:02:00 10.42.2.0 192.168.5.2",
                "route 10.42.2.0/24 via 10.42.2.0 dev Some(\"wasmkube.1\") src Some(\"10.42.1.1\")",
            ]
        );
    }

    #[test]
    fn a_loopback_range_needs_nothing_and_bad_input_is_refused() {
        let local = NodeRange {
            pod_cidr: "127.64.0.0/16",
            address: "127.0.0.1",
        };
        assert!(asked(json!({}), &local).unwrap().is_empty());
        let (code, msg) = asked(json!({"backend": "gre"}), &NODE).unwrap_err();
        assert_eq!(code, INVALID_CONFIG);
        assert!(msg.contains("gre"), "{msg}");
        let bad = NodeRange {
            pod_cidr: "10.42.1.0",
            address: "192.168.5.1",
        };
        assert_eq!(asked(json!({}), &bad).unwrap_err().0, INVALID_CONFIG);
    }
}

//! Network plugins: the world `wasmkube:cni/network-plugin` of `wit/cni`,
//! and the runtime's side of CNI (libcni's role): a network list's plugins
//! run in order on add and in reverse on del, each given the previous
//! result as `prevResult`; the result of an add is kept, so del and check
//! get it too; one add per container and network.
//!
//! Every call is a fresh instance of the plugin (as CNI runs a fresh
//! process), bounded like every plugin call. The host gives plugins state
//! on disk (`<state>/<network>/<plugin>/<key>`, each write synced before the
//! call returns), delegation to other plugins by type (IPAM), and the
//! container's addresses and routes, which the caller reads back as the
//! [`Attachment`].

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wasmtime::Store;
use wasmtime::component::{Component, HasData, Linker};

use crate::sandbox::{self, State};
use crate::{Limits, PluginError, PluginHost};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/cni",
        world: "node-network-plugin",
    });
}

use bindings::exports::wasmkube::cni::{node as node_export, plugin as plugin_export};
use bindings::wasmkube::cni::node_links;
use bindings::wasmkube::cni::types::{Error as CallError, Runtime};

use crate::links::{self, Net};

/// The interface a network plugin exports, with its version.
pub const CNI_WIT_PACKAGE: &str = "wasmkube:cni/plugin@0.1.0";

/// How deep plugins may delegate to plugins.
const MAX_DELEGATION: u32 = 4;

/// A CNI error, from a plugin or from the host: CNI's code, a message,
/// details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    /// CNI's code (7: invalid network configuration; 100 and up: the
    /// plugin's own).
    pub code: u32,
    /// The message.
    pub msg: String,
    /// Details.
    pub details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
}

impl From<CallError> for CniError {
    fn from(e: CallError) -> CniError {
        CniError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }
}

impl From<CniError> for CallError {
    fn from(e: CniError) -> CallError {
        CallError {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }
}

/// CNI's codes the host uses.
const INCOMPATIBLE_VERSION: u32 = 1;
const UNKNOWN_CONTAINER: u32 = 3;
const IO_FAILURE: u32 = 5;
const DECODING_FAILURE: u32 = 6;
const INVALID_CONFIG: u32 = 7;
/// A plugin that trapped, ran too long or wanted too much memory.
const PLUGIN_FAILED: u32 = 999;

/// The container a call is for: CNI's `CNI_CONTAINERID`, `CNI_NETNS`,
/// `CNI_IFNAME` and `CNI_ARGS`.
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    /// The container (for a Wasm pod, its uid).
    pub container_id: String,
    /// Its network namespace (for a Wasm pod, `wasm:<uid>`).
    pub netns: String,
    /// The interface (`eth0`).
    pub ifname: String,
    /// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`…
    pub args: Vec<(String, String)>,
}

/// What plugins gave the container in an add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// Its addresses: interface and address.
    pub addresses: Vec<(String, IpAddr)>,
    /// Its routes: destination and gateway.
    pub routes: Vec<(String, Option<IpAddr>)>,
}

impl Attachment {
    /// What a kept `result` says the container was given on `ifname`.
    fn of(result: &Value, ifname: &str) -> Attachment {
        let ip = |text: &str| text.split('/').next()?.parse::<IpAddr>().ok();
        let ips = result["ips"].as_array().into_iter().flatten();
        let routes = result["routes"].as_array().into_iter().flatten();
        Attachment {
            addresses: ips
                .filter_map(|i| ip(i["address"].as_str()?))
                .map(|a| (ifname.to_owned(), a))
                .collect(),
            routes: routes
                .filter_map(|r| {
                    let destination = r["dst"].as_str()?.to_owned();
                    Some((destination, r["gw"].as_str().and_then(ip)))
                })
                .collect(),
        }
    }
}

/// A network list added to a container: its final result and what the
/// host gave the container.
#[derive(Clone, Debug)]
pub struct Added {
    /// The last plugin's result (CNI's result JSON).
    pub result: Value,
    /// The addresses and routes the plugins asked for.
    pub attachment: Attachment,
}

/// The node a network is set up on, and the other nodes of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its pod range (`spec.podCIDR`).
    pub pod_cidr: String,
    /// Its address (InternalIP).
    pub address: String,
    /// The other nodes: name, pod range and address each.
    pub peers: Vec<(String, String, String)>,
}

/// What a node setup may touch: the node's range and address, and the
/// ranges and addresses of its peers.
struct Scope {
    range: Net,
    address: Ipv4Addr,
    peers: Vec<(Net, Ipv4Addr)>,
}

impl Scope {
    fn of(node: &Node) -> Result<Scope, CniError> {
        let invalid = |what: String| CniError::new(INVALID_CONFIG, what);
        let address = |text: &str| {
            text.parse::<Ipv4Addr>()
                .map_err(|_| invalid(format!("{text:?} is not a node address")))
        };
        Ok(Scope {
            range: Net::parse(&node.pod_cidr).map_err(invalid)?,
            address: address(&node.address)?,
            peers: node
                .peers
                .iter()
                .filter_map(|(_, cidr, ip)| Some((Net::parse(cidr).ok()?, ip.parse().ok()?)))
                .collect(),
        })
    }

    /// An address inside the node's range.
    fn own(&self, text: &str) -> Result<Net, String> {
        let net = Net::parse(text)?;
        if self.range.covers(net) {
            Ok(net)
        } else {
            Err(format!(
                "{net} is not inside the node's range {}",
                self.range
            ))
        }
    }

    /// The peer `ip` is an address of (a node's) or inside (a range's).
    fn peer(&self, ip: Ipv4Addr) -> Option<(Net, Ipv4Addr)> {
        self.peers
            .iter()
            .copied()
            .find(|(range, node)| *node == ip || range.contains(ip))
    }

    /// A VXLAN peer whose device's address is in the range of the node at
    /// its remote address.
    fn vxlan_peer(&self, peer: &node_links::VxlanPeer) -> Result<links::VxlanPeer, String> {
        let address = parse_ip(&peer.address)?;
        let remote = parse_ip(&peer.remote)?;
        match self.peer(address) {
            Some((range, node)) if range.contains(address) && node == remote => {
                Ok(links::VxlanPeer {
                    mac: links::parse_mac(&peer.mac)?,
                    address,
                    remote,
                })
            }
            _ => Err(format!(
                "{address} is not an address in the range of the node at {remote}"
            )),
        }
    }

    /// A route to a peer's range (the whole range) through that peer (its
    /// address, or one in its range on a device), from an address of the
    /// node's range.
    fn route(&self, route: node_links::Route) -> Result<links::Route, String> {
        let destination = Net::parse(&route.destination)?;
        let gateway = parse_ip(&route.gateway)?;
        match self.peer(gateway) {
            Some((range, _)) if range == destination => {}
            _ => {
                return Err(format!(
                    "{destination} via {gateway} is not a route to a node's range through that node"
                ));
            }
        }
        if let Some(device) = &route.device {
            device_name(device)?;
        }
        let source = match &route.source {
            Some(source) => Some(self.own(&format!("{source}/32"))?.ip),
            None => None,
        };
        Ok(links::Route {
            destination,
            gateway,
            device: route.device,
            source,
        })
    }
}

/// Refuses a list that names a thing twice: with that, a setup asks at
/// most one request per peer of the host.
fn once_each<T: std::fmt::Display>(
    things: impl Iterator<Item = T>,
    what: &str,
) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for thing in things {
        if !seen.insert(thing.to_string()) {
            return Err(format!("more than one {what} {thing}"));
        }
    }
    Ok(())
}

fn parse_ip(text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IPv4 address"))
}

/// A network plugin: its component ready to instantiate, and where its
/// exports are.
struct Plugin {
    pre: wasmtime::component::InstancePre<State<Call>>,
    pods: plugin_export::GuestIndices,
    /// Where its node setup is, if it sets nodes up.
    node: Option<node_export::GuestIndices>,
}

/// The network plugins of a node, by CNI type, and their state.
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

struct Inner {
    /// The host, whose engine's ticker bounds the calls while it lives.
    host: PluginHost,
    plugins: HashMap<String, Plugin>,
    state: PathBuf,
    limits: Limits,
    /// Each network's bridge, where routable pod addresses go, once its
    /// node setup has made one.
    bridges: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut types: Vec<&String> = self.inner.plugins.keys().collect();
        types.sort();
        f.debug_struct("Networks")
            .field("plugins", &types)
            .field("state", &self.inner.state)
            .finish_non_exhaustive()
    }
}

/// What the host keeps for one plugin call.
struct Call {
    inner: Arc<Inner>,
    network: String,
    plugin: String,
    sandbox: Arc<Sandbox>,
    attachment: Arc<Mutex<Attachment>>,
    depth: u32,
    /// What a node setup may touch; none in a call for a container.
    scope: Option<Arc<Scope>>,
}

struct HostField;

impl HasData for HostField {
    type Data<'a> = &'a mut Call;
}

/// Whether `name` may name a state key, a network or a plugin on disk.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// Writes `value` to `file` through a temporary file, synced, and syncs
/// the directory; with `exclusive`, only if `file` does not exist (false
/// then).
fn write_synced(file: &Path, value: &str, exclusive: bool) -> std::io::Result<bool> {
    let dir = file.parent().expect("a state file has a directory");
    std::fs::create_dir_all(dir)?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // A name of its own for every write, even of one key at once.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let partial = dir.join(format!(".{name}.{}.{write}", std::process::id()));
    let mut out = std::fs::File::create(&partial)?;
    out.write_all(value.as_bytes())?;
    out.sync_all()?;
    let placed = if exclusive {
        // A hard link fails if the name is taken: the claim is atomic.
        match std::fs::hard_link(&partial, file) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        }
    } else {
        std::fs::rename(&partial, file)?;
        true
    };
    let _ = std::fs::remove_file(&partial);
    std::fs::File::open(dir)?.sync_all()?;
    Ok(placed)
}

impl Call {
    fn dir(&self) -> PathBuf {
        self.inner.state.join(&self.network).join(&self.plugin)
    }

    fn key(&self, key: &str) -> Result<PathBuf, String> {
        if plain(key) {
            Ok(self.dir().join(key))
        } else {
            Err(format!(
                "{key:?} is not a state key: letters, digits, '.', '-', '_', ':'"
            ))
        }
    }
}

impl bindings::wasmkube::cni::types::Host for Call {}

impl bindings::wasmkube::cni::host::Host for Call {
    fn state_get(&mut self, key: String) -> Option<String> {
        std::fs::read_to_string(self.key(&key).ok()?).ok()
    }

    fn state_claim(&mut self, key: String, value: String) -> Result<bool, String> {
        write_synced(&self.key(&key)?, &value, true).map_err(|e| format!("claiming {key}: {e}"))
    }

    fn state_set(&mut self, key: String, value: String) -> Result<(), String> {
        write_synced(&self.key(&key)?, &value, false)
            .map(drop)
            .map_err(|e| format!("setting {key}: {e}"))
    }

    fn state_remove(&mut self, key: String) -> Result<(), String> {
        match std::fs::remove_file(self.key(&key)?) {
            Ok(()) => std::fs::File::open(self.dir())
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("removing {key}: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {key}: {e}")),
        }
    }

    fn state_list(&mut self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut all: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok().filter(|n| plain(n))?;
                let value = std::fs::read_to_string(e.path()).ok()?;
                Some((name, value))
            })
            .collect();
        all.sort();
        all
    }

    fn delegate_add(&mut self, plugin: String, config: String) -> Result<String, CallError> {
        self.delegate(&plugin, Verb::Add, &config)
            .map_err(CallError::from)
    }

    fn delegate_del(&mut self, plugin: String, config: String) -> Result<(), CallError> {
        self.delegate(&plugin, Verb::Del, &config)
            .map(drop)
            .map_err(CallError::from)
    }

    fn set_address(&mut self, ifname: String, address: String) -> Result<(), String> {
        let ip = Net::parse(&address)?.ip;
        self.inner.place(&self.network, ip, true)?;
        let mut attachment = self.attachment.lock().unwrap_or_else(|e| e.into_inner());
        attachment.addresses.push((ifname, IpAddr::V4(ip)));
        Ok(())
    }

    fn add_route(&mut self, destination: String, gateway: Option<String>) -> Result<(), String> {
        let valid = destination.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 128)
        });
        if !valid {
            return Err(format!(
                "{destination:?} is not a destination like 10.0.0.0/8"
            ));
        }
        let gateway = match gateway {
            Some(gateway) => Some(
                gateway
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{gateway:?} is not a gateway address"))?,
            ),
            None => None,
        };
        let mut attachment = self.attachment.lock().unwrap_or_else(|e| e.into_inner());
        attachment.routes.push((destination, gateway));
        Ok(())
    }
}

/// The longest name Linux gives a network device.
const MAX_DEVICE_NAME: usize = 15;

impl Call {
    /// What this node setup may touch, or why nothing.
    fn scope(&self) -> Result<Arc<Scope>, String> {
        self.scope
            .clone()
            .ok_or_else(|| "devices and routes are set up by a node setup, not for a pod".into())
    }
}

fn device_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_DEVICE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a device name: up to {MAX_DEVICE_NAME} letters, digits, '.', '-', '_'"
        ))
    }
}

impl node_links::Host for Call {
    fn ensure_bridge(&mut self, name: String, address: String) -> Result<(), String> {
        let scope = self.scope()?;
        device_name(&name)?;
        links::ensure_bridge(&name, scope.own(&address)?)?;
        let mut bridges = self.inner.bridges.lock().unwrap_or_else(|e| e.into_inner());
        bridges.insert(self.network.clone(), name);
        Ok(())
    }

    fn ensure_vxlan(
        &mut self,
        name: String,
        vni: u32,
        port: u16,
        mac: String,
        address: String,
    ) -> Result<(), String> {
        let scope = self.scope()?;
        device_name(&name)?;
        if vni == 0 || vni >= 1 << 24 {
            return Err(format!("{vni} is not a VXLAN network id (1 to 16777215)"));
        }
        let mac = links::parse_mac(&mac)?;
        links::ensure_vxlan(&name, vni, port, scope.address, mac, scope.own(&address)?)
    }

    fn set_vxlan_peers(
        &mut self,
        name: String,
        peers: Vec<node_links::VxlanPeer>,
    ) -> Result<(), String> {
        let scope = self.scope()?;
        device_name(&name)?;
        let checked: Vec<links::VxlanPeer> = peers
            .into_iter()
            .map(|peer| scope.vxlan_peer(&peer))
            .collect::<Result<_, _>>()?;
        once_each(checked.iter().map(|p| p.remote), "VXLAN peer at")?;
        links::set_vxlan_peers(&name, &checked)
    }

    fn set_routes(&mut self, routes: Vec<node_links::Route>) -> Result<(), String> {
        let scope = self.scope()?;
        let checked: Vec<links::Route> = routes
            .into_iter()
            .map(|route| scope.route(route))
            .collect::<Result<_, _>>()?;
        once_each(checked.iter().map(|r| r.destination), "route to")?;
        links::set_routes(&checked)
    }
}

#[derive(Clone, Copy, Debug)]
enum Verb {
    Add,
    Del,
    Check,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Del => "del",
            Verb::Check => "check",
        }
    }
}

impl Call {
    /// Runs `verb` of the plugin of type `plugin` for the same container
    /// and network.
    fn delegate(&self, plugin: &str, verb: Verb, config: &str) -> Result<String, CniError> {
        if self.depth >= MAX_DELEGATION {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("plugins delegate deeper than {MAX_DELEGATION}"),
            ));
        }
        run(
            &self.inner,
            Call {
                inner: self.inner.clone(),
                network: self.network.clone(),
                plugin: plugin.to_owned(),
                sandbox: self.sandbox.clone(),
                attachment: self.attachment.clone(),
                depth: self.depth + 1,
                scope: self.scope.clone(),
            },
            verb,
            config,
        )
    }
}

impl Inner {
    /// The plugin of type `plugin`.
    fn plugin(&self, plugin: &str) -> Result<&Plugin, CniError> {
        self.plugins.get(plugin).ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                format!("no network plugin of type {plugin:?}"),
            )
        })
    }
}

/// A fresh store and instance of `found`, the plugin `call.plugin`.
fn instantiate(
    inner: &Inner,
    found: &Plugin,
    call: Call,
) -> Result<(Store<State<Call>>, wasmtime::component::Instance), CniError> {
    let plugin = call.plugin.clone();
    let mut store: Store<State<Call>> = sandbox::store(inner.host.engine(), inner.limits, call);
    let instance = sandbox::bounded(&mut store, inner.limits, &plugin, "instantiate", |s| {
        found.pre.instantiate(s)
    })
    .map_err(plugin_failed)?;
    Ok((store, instance))
}

fn plugin_failed(e: PluginError) -> CniError {
    CniError::new(PLUGIN_FAILED, e.to_string())
}

/// Runs `verb` of the plugin `call.plugin` with `config` on a fresh
/// instance; a plugin that does not speak the configuration's `cniVersion`
/// is refused.
fn run(inner: &Inner, call: Call, verb: Verb, config: &str) -> Result<String, CniError> {
    let plugin = call.plugin.clone();
    let version = serde_json::from_str::<Value>(config)
        .ok()
        .and_then(|c| c.get("cniVersion")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    let runtime = Runtime {
        container_id: call.sandbox.container_id.clone(),
        netns: call.sandbox.netns.clone(),
        ifname: call.sandbox.ifname.clone(),
        args: call.sandbox.args.clone(),
    };
    let limits = inner.limits;
    let found = inner.plugin(&plugin)?;
    let (mut store, instance) = instantiate(inner, found, call)?;
    let guest = sandbox::bounded(&mut store, limits, &plugin, "instantiate", |s| {
        found.pods.load(s, &instance)
    })
    .map_err(plugin_failed)?;
    let versions = sandbox::bounded(&mut store, limits, &plugin, "versions", |s| {
        guest.call_versions(s)
    })
    .map_err(plugin_failed)?;
    if !versions.contains(&version) {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!("plugin {plugin} speaks CNI {versions:?}, not {version:?}"),
        ));
    }
    let outcome = sandbox::bounded(&mut store, limits, &plugin, verb.name(), |s| match verb {
        Verb::Add => guest.call_add(s, config, &runtime),
        Verb::Del => guest
            .call_del(s, config, &runtime)
            .map(|r| r.map(|()| String::new())),
        Verb::Check => guest
            .call_check(s, config, &runtime)
            .map(|r| r.map(|()| String::new())),
    })
    .map_err(plugin_failed)?;
    outcome.map_err(CniError::from)
}

/// The plugins of a network list, in order, each with the list's
/// `cniVersion` and `name`.
fn entries(list: &Value) -> Result<(String, Vec<Value>), CniError> {
    let invalid = |what: &str| CniError::new(INVALID_CONFIG, format!("the network list {what}"));
    let name = list
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| plain(n))
        .ok_or_else(|| invalid("needs a name of letters, digits, '.', '-', '_'"))?;
    let version = list
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("needs a cniVersion"))?;
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("needs plugins"))?;
    let mut all = Vec::new();
    for (i, plugin) in plugins.iter().enumerate() {
        let Some(Value::String(_)) = plugin.get("type") else {
            return Err(invalid(&format!("has no type in plugins[{i}]")));
        };
        let mut plugin = plugin.clone();
        plugin["cniVersion"] = json!(version);
        plugin["name"] = json!(name);
        all.push(plugin);
    }
    Ok((name.to_owned(), all))
}

impl Networks {
    /// The built-in network plugins (`pod-network`, `host-local`), keeping
    /// their state under `state`.
    pub fn new(host: &PluginHost, state: &Path, limits: Limits) -> Result<Networks, PluginError> {
        let mut plugins = HashMap::new();
        for builtin in crate::builtin::NETWORK {
            let component = host.builtin(builtin)?;
            plugins.insert(
                builtin.name.to_owned(),
                pre(host, builtin.name, &component)?,
            );
        }
        Ok(Networks {
            inner: Arc::new(Inner {
                host: host.clone(),
                plugins,
                state: state.to_owned(),
                limits,
                bridges: Mutex::default(),
            }),
        })
    }

    /// Sets `node` up for the network list `list`: each plugin that sets
    /// nodes up, in order, with its entry of the list. The host carries out
    /// only what fits `node` (see [`Node`]).
    pub fn setup(&self, list: &Value, node: &Node) -> Result<(), CniError> {
        let (network, plugins) = entries(list)?;
        let scope = Arc::new(Scope::of(node)?);
        let info = node_export::NodeInfo {
            name: node.name.clone(),
            pod_cidr: node.pod_cidr.clone(),
            address: node.address.clone(),
            peers: node
                .peers
                .iter()
                .map(|(name, pod_cidr, address)| node_export::Peer {
                    name: name.clone(),
                    pod_cidr: pod_cidr.clone(),
                    address: address.clone(),
                })
                .collect(),
        };
        for config in plugins {
            let plugin = config["type"].as_str().unwrap_or_default().to_owned();
            let found = self.inner.plugin(&plugin)?;
            let Some(indices) = &found.node else {
                continue;
            };
            let call = Call {
                inner: self.inner.clone(),
                network: network.clone(),
                plugin: plugin.clone(),
                sandbox: Arc::new(Sandbox::default()),
                attachment: Arc::default(),
                depth: 0,
                scope: Some(scope.clone()),
            };
            let (mut store, instance) = instantiate(&self.inner, found, call)?;
            let limits = self.inner.limits;
            let outcome = sandbox::bounded(&mut store, limits, &plugin, "setup", |s| {
                indices
                    .load(&mut *s, &instance)?
                    .call_setup(s, &config.to_string(), &info)
            })
            .map_err(plugin_failed)?;
            outcome.map_err(CniError::from)?;
        }
        Ok(())
    }

    /// Adds the container to the network list `list` (CNI's JSON): each
    /// plugin in order, given the one before's result. A list added before
    /// gives its kept result again. If a plugin fails, the list is deleted
    /// again and the error returned.
    pub fn add(&self, list: &Value, sandbox: &Sandbox) -> Result<Added, CniError> {
        let (network, plugins) = entries(list)?;
        let kept = self.result_file(&network, sandbox);
        if let Some(result) = std::fs::read_to_string(&kept)
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r).ok())
        {
            // The node may have lost its routable addresses since (a
            // reboot): they are put back on the bridge.
            let attachment = Attachment::of(&result, &sandbox.ifname);
            self.place(&network, &attachment, true)?;
            return Ok(Added { result, attachment });
        }
        let attachment = Arc::new(Mutex::new(Attachment::default()));
        let mut previous: Option<Value> = None;
        for mut config in plugins {
            if let Some(result) = &previous {
                config["prevResult"] = result.clone();
            }
            match self.call(&network, &config, sandbox, &attachment, Verb::Add) {
                Ok(result) => {
                    let result = serde_json::from_str(&result).map_err(|e| {
                        CniError::new(
                            DECODING_FAILURE,
                            format!("{} gave a result that is not JSON: {e}", config["type"]),
                        )
                    })?;
                    previous = Some(result);
                }
                Err(e) => {
                    if let Err(undone) = self.del(list, sandbox) {
                        tracing::warn!(error = %undone, "undoing a failed network add");
                    }
                    return Err(e);
                }
            }
        }
        let result = previous.unwrap_or_default();
        write_synced(&kept, &result.to_string(), false)
            .map_err(|e| CniError::new(IO_FAILURE, format!("keeping the result: {e}")))?;
        let attachment = attachment.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Added { result, attachment })
    }

    /// Deletes the container from the network list: each plugin in reverse
    /// order, given the kept result of the add. Deleting what was never
    /// added succeeds.
    pub fn del(&self, list: &Value, sandbox: &Sandbox) -> Result<(), CniError> {
        let (network, plugins) = entries(list)?;
        let kept = self.result_file(&network, sandbox);
        let previous = std::fs::read_to_string(&kept)
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r).ok());
        let attachment = Arc::new(Mutex::new(Attachment::default()));
        for mut config in plugins.into_iter().rev() {
            if let Some(result) = &previous {
                config["prevResult"] = result.clone();
            }
            self.call(&network, &config, sandbox, &attachment, Verb::Del)?;
        }
        if let Some(result) = &previous {
            self.place(&network, &Attachment::of(result, &sandbox.ifname), false)?;
        }
        match std::fs::remove_file(&kept) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CniError::new(IO_FAILURE, e.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Checks the container is still as the add left it: each plugin in
    /// order, given the kept result.
    pub fn check(&self, list: &Value, sandbox: &Sandbox) -> Result<(), CniError> {
        let (network, plugins) = entries(list)?;
        let previous: Value = std::fs::read_to_string(self.result_file(&network, sandbox))
            .ok()
            .and_then(|r| serde_json::from_str(&r).ok())
            .ok_or_else(|| {
                CniError::new(
                    UNKNOWN_CONTAINER,
                    format!("{} was not added to {network}", sandbox.container_id),
                )
            })?;
        let attachment = Arc::new(Mutex::new(Attachment::default()));
        for mut config in plugins {
            config["prevResult"] = previous.clone();
            self.call(&network, &config, sandbox, &attachment, Verb::Check)?;
        }
        Ok(())
    }

    fn result_file(&self, network: &str, sandbox: &Sandbox) -> PathBuf {
        let name: String = format!("{}-{}", sandbox.container_id, sandbox.ifname)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.inner.state.join(network).join(".results").join(name)
    }

    fn call(
        &self,
        network: &str,
        config: &Value,
        sandbox: &Sandbox,
        attachment: &Arc<Mutex<Attachment>>,
        verb: Verb,
    ) -> Result<String, CniError> {
        let plugin = config["type"].as_str().unwrap_or_default().to_owned();
        let call = Call {
            inner: self.inner.clone(),
            network: network.to_owned(),
            plugin,
            sandbox: Arc::new(sandbox.clone()),
            attachment: attachment.clone(),
            depth: 0,
            scope: None,
        };
        run(&self.inner, call, verb, &config.to_string())
    }
}

impl Networks {
    /// Puts the addresses of `attachment` on the node (`present`), or
    /// takes them off.
    fn place(&self, network: &str, attachment: &Attachment, present: bool) -> Result<(), CniError> {
        for (_, ip) in &attachment.addresses {
            if let IpAddr::V4(ip) = ip {
                self.inner
                    .place(network, *ip, present)
                    .map_err(|e| CniError::new(IO_FAILURE, e))?;
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Gives the node the pod address `ip` (`present`), or takes it off:
    /// Linux gives all of 127.0.0.0/8 to the loopback interface, where an
    /// address need only be bindable; a routable one goes on the bridge of
    /// `network`, which its node setup made.
    fn place(&self, network: &str, ip: Ipv4Addr, present: bool) -> Result<(), String> {
        if ip.is_loopback() && present {
            return std::net::UdpSocket::bind((ip, 0))
                .map(drop)
                .map_err(|e| format!("this node cannot give {ip} to a pod: {e}"));
        }
        if ip.is_loopback() {
            return Ok(());
        }
        match self.bridge(network) {
            Some(bridge) => links::set_host_address(&bridge, ip, present),
            None if present => Err(format!(
                "{ip} cannot be given before the node's network {network} is set up"
            )),
            None => Ok(()),
        }
    }

    /// The bridge of `network`, once its node setup made one.
    fn bridge(&self, network: &str) -> Option<String> {
        let bridges = self.bridges.lock().unwrap_or_else(|e| e.into_inner());
        bridges.get(network).cloned()
    }
}

/// The pre-instantiated plugin of `component`, its interface version
/// checked.
fn pre(host: &PluginHost, plugin: &str, component: &Component) -> Result<Plugin, PluginError> {
    let engine = host.engine();
    sandbox::check_version(engine, component, plugin, CNI_WIT_PACKAGE)?;
    let load = |message: String| PluginError::Load {
        plugin: plugin.to_owned(),
        message,
    };
    let mut linker: Linker<State<Call>> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| load(e.to_string()))?;
    bindings::NodeNetworkPlugin::add_to_linker::<_, HostField>(&mut linker, |state| {
        &mut state.host
    })
    .map_err(|e| load(e.to_string()))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| load(format!("{e:#}")))?;
    Ok(Plugin {
        pods: plugin_export::GuestIndices::new(&pre).map_err(|e| load(format!("{e:#}")))?,
        node: node_export::GuestIndices::new(&pre).ok(),
        pre,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::of(&Node {
            name: "b".into(),
            pod_cidr: "10.42.1.0/24".into(),
            address: "192.168.5.2".into(),
            peers: vec![("c".into(), "10.42.2.0/24".into(), "192.168.5.3".into())],
        })
        .unwrap()
    }

    fn route(destination: &str, gateway: &str, source: Option<&str>) -> node_links::Route {
        node_links::Route {
            destination: destination.into(),
            gateway: gateway.into(),
            device: None,
            source: source.map(Into::into),
        }
    }

    #[test]
    fn a_node_setup_touches_only_its_range_and_its_peers() {
        let scope = scope();
        assert!(scope.own("10.42.1.1/24").is_ok());
        for outside in ["10.42.2.1/24", "10.42.0.0/16", "0.0.0.0/0"] {
            assert!(scope.own(outside).is_err(), "{outside}");
        }
        // Routes to a peer's range, through the peer or its range.
        let host_gw = scope.route(route("10.42.2.0/24", "192.168.5.3", Some("10.42.1.1")));
        assert_eq!(host_gw.unwrap().gateway, Ipv4Addr::new(192, 168, 5, 3));
        assert!(
            scope
                .route(route("10.42.2.0/24", "10.42.2.0", None))
                .is_ok()
        );
        // Not the default route, another range, another gateway, or from
        // an address the node does not have.
        for (destination, gateway, source) in [
            ("0.0.0.0/0", "192.168.5.3", None),
            ("10.42.0.0/16", "192.168.5.3", None),
            ("10.42.2.7/32", "192.168.5.3", None),
            ("10.42.2.0/24", "192.168.5.9", None),
            ("10.42.2.0/24", "192.168.5.3", Some("10.42.2.1")),
        ] {
            let refused = scope.route(route(destination, gateway, source));
            assert!(
                refused.is_err(),
                "{destination} via {gateway} from {source:?}"
            );
        }
        let peer = |address: &str, remote: &str, mac: &str| node_links::VxlanPeer {
            mac: mac.into(),
            address: address.into(),
            remote: remote.into(),
        };
        assert!(
            scope
                .vxlan_peer(&peer("10.42.2.0", "192.168.5.3", "0a:58:0a:2a:02:00"))
                .is_ok()
        );
        for wrong in [
            peer("10.42.2.0", "192.168.5.9", "0a:58:0a:2a:02:00"),
            peer("10.42.1.0", "192.168.5.3", "0a:58:0a:2a:02:00"),
            peer("10.42.2.0", "192.168.5.3", "00:11:22:33:44:55"),
        ] {
            assert!(scope.vxlan_peer(&wrong).is_err(), "{}", wrong.address);
        }
        let twice = ["10.42.2.0/24", "10.42.2.0/24"].map(|d| Net::parse(d).unwrap());
        assert!(once_each(twice.into_iter(), "route to").is_err());
        assert!(device_name("wasmkube.1").is_ok());
        for bad in ["", "a-name-too-long-for-linux", "a/b", "eth 0"] {
            assert!(device_name(bad).is_err(), "{bad:?}");
        }
    }
}

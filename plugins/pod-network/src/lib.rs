//! `pod-network`, the network plugin of Wasm pods, as a Wasm component of
//! the world `wasmkube:cni/network-plugin`. A Wasm pod has no network
//! namespace: its sandbox is in the node's, and its interface is the
//! address its listeners bind to. On `add` the plugin has its IPAM plugin
//! (`ipam.type`, by delegation) reserve an address, asks the host to give
//! it to the pod's interface and to route what the IPAM result routes, and
//! records it; `del` releases the address (and succeeds when there is none);
//! `check` compares the recorded address with the result `add` gave.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "wasmkube", "plugins": [
//!   {"type": "pod-network", "ipam": {"type": "host-local", "ranges": [[{"subnet": "127.64.0.0/20"}]]}}]}
//! ```

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

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit/cni", world: "network-plugin" });

    use exports::wasmkube::cni::plugin::Guest;
    use wasmkube::cni::host;
    use wasmkube::cni::types::{Error, Runtime};

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

//! `host-local`, CNI's IPAM plugin of that name, as a Wasm component of the
//! world `wasmkube:cni/network-plugin`: it hands out addresses from the
//! ranges of its configuration, one per container and interface, and keeps
//! what it handed out in the host's state for the network, so no address
//! is handed out twice, even after a restart.
//!
//! ```json
//! "ipam": {"type": "host-local",
//!          "ranges": [[{"subnet": "127.64.0.0/20", "rangeStart": "127.64.0.10",
//!                       "rangeEnd": "127.64.0.250", "gateway": "127.64.0.1"}]],
//!          "routes": [{"dst": "0.0.0.0/0"}]}
//! ```
//!
//! As in CNI's plugin: the ranges of the first range set are tried in
//! order; a range's addresses run from `rangeStart` (default: the second
//! address of the subnet) to `rangeEnd` (default: the one before the
//! broadcast address), past its `gateway` (default: the subnet's first
//! address); the search starts after the last address handed out; an
//! address is reserved under its own key, its value the container and
//! interface; `del` releases the container's addresses and succeeds when it
//! has none. Unlike CNI's, an `add` for a container and interface that
//! already have an address returns that address: the runtime may not know
//! whether its last `add` finished before a crash.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// CNI's error code for an invalid network configuration.
const INVALID_CONFIG: u32 = 7;
/// CNI's error code for invalid arguments (CNI_ARGS).
const INVALID_ARGS: u32 = 4;
/// CNI's error code for an I/O failure.
const IO_FAILURE: u32 = 5;
/// This plugin's own code: no address is left, or none is reserved.
const NO_ADDRESS: u32 = 100;

/// Where the search for a free address of a range starts again.
const LAST_RESERVED: &str = "last_reserved_ip.0";

/// The host's state for the network, as the plugin uses it.
pub trait State {
    /// The value of `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Sets `key` if it has no value; false when it has.
    fn claim(&self, key: &str, value: &str) -> Result<bool, String>;
    /// Sets `key`.
    fn set(&self, key: &str, value: &str) -> Result<(), String>;
    /// Removes `key`.
    fn remove(&self, key: &str) -> Result<(), String>;
    /// Every key and value.
    fn list(&self) -> Vec<(String, String)>;
}

/// A CNI error: code and message.
pub type Failure = (u32, String);

fn invalid(message: impl Into<String>) -> Failure {
    (INVALID_CONFIG, message.into())
}

/// One range of addresses to hand out.
#[derive(Debug, PartialEq)]
struct Range {
    prefix: u8,
    first: u32,
    last: u32,
    gateway: u32,
}

fn address(value: &Value, field: &str) -> Result<Option<u32>, Failure> {
    match value.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => text
            .parse::<Ipv4Addr>()
            .map(|a| Some(u32::from(a)))
            .map_err(|_| invalid(format!("ipam: {field} {text:?} is not an IPv4 address"))),
        Some(other) => Err(invalid(format!(
            "ipam: {field} must be a string, not {other}"
        ))),
    }
}

impl Range {
    fn parse(entry: &Value) -> Result<Range, Failure> {
        let subnet = entry
            .get("subnet")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("ipam: every range needs a subnet"))?;
        let bad = || invalid(format!("ipam: subnet {subnet:?} is not like 10.22.0.0/16"));
        let (base, prefix) = subnet.split_once('/').ok_or_else(bad)?;
        let base = u32::from(base.parse::<Ipv4Addr>().map_err(|_| bad())?);
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(1..=30).contains(&prefix) {
            return Err(invalid(format!(
                "ipam: subnet {subnet:?} is too small or too big"
            )));
        }
        let mask = u32::MAX << (32 - prefix);
        let (network, broadcast) = (base & mask, (base & mask) | !mask);
        let inside = |a: u32| a > network && a < broadcast;
        let gateway = address(entry, "gateway")?.unwrap_or(network + 1);
        let first = address(entry, "rangeStart")?.unwrap_or(network + 1);
        let last = address(entry, "rangeEnd")?.unwrap_or(broadcast - 1);
        if !inside(first) || !inside(last) || first > last {
            return Err(invalid(format!(
                "ipam: rangeStart..rangeEnd must lie inside {subnet}, in order"
            )));
        }
        Ok(Range {
            prefix,
            first,
            last,
            gateway,
        })
    }

    fn contains(&self, address: u32) -> bool {
        (self.first..=self.last).contains(&address)
    }
}

/// The ranges of the first range set (or of the older `subnet` form), and
/// the routes to give.
fn ipam(config: &Value) -> Result<(Vec<Range>, Value), Failure> {
    let ipam = config
        .get("ipam")
        .ok_or_else(|| invalid("the configuration has no ipam"))?;
    let ranges = match ipam.get("ranges") {
        Some(sets) => {
            let first = sets
                .as_array()
                .and_then(|sets| sets.first())
                .and_then(Value::as_array)
                .filter(|set| !set.is_empty())
                .ok_or_else(|| invalid("ipam: ranges must be a list of lists of ranges"))?;
            first.iter().map(Range::parse).collect::<Result<_, _>>()?
        }
        None => vec![Range::parse(ipam)?],
    };
    let routes = ipam.get("routes").cloned().unwrap_or_else(|| json!([]));
    Ok((ranges, routes))
}

/// What an address's key holds: who has it.
fn holder(container: &str, ifname: &str) -> String {
    format!("{container}\n{ifname}")
}

/// The key that names the address `container`'s `ifname` holds: a lookup
/// in one read, not a scan of every reservation.
fn index(container: &str, ifname: &str) -> String {
    format!("by:{container}:{ifname}")
}

/// The address held by the container's interface, if any.
fn held(state: &dyn State, container: &str, ifname: &str) -> Option<u32> {
    let address = state.get(&index(container, ifname))?;
    let parsed = address.parse::<Ipv4Addr>().ok()?;
    (state.get(&address)? == holder(container, ifname)).then_some(u32::from(parsed))
}

/// The result for `address` in `range`.
fn result(config: &Value, range: &Range, address: u32, routes: Value) -> String {
    let version = config.get("cniVersion").cloned().unwrap_or(json!("1.0.0"));
    json!({
        "cniVersion": version,
        "ips": [{
            "address": format!("{}/{}", Ipv4Addr::from(address), range.prefix),
            "gateway": Ipv4Addr::from(range.gateway).to_string(),
        }],
        "routes": routes,
        "dns": {},
    })
    .to_string()
}

/// Reserves an address for the container's interface (the one it has, if
/// it has one; else `requested`, CNI_ARGS' `IP`, when given) and returns
/// CNI's result.
pub fn add(
    state: &dyn State,
    config: &Value,
    (container, ifname): (&str, &str),
    requested: Option<&str>,
) -> Result<String, Failure> {
    let (ranges, routes) = ipam(config)?;
    let who = holder(container, ifname);
    if let Some(address) = held(state, container, ifname)
        && let Some(range) = ranges.iter().find(|r| r.contains(address))
    {
        return Ok(result(config, range, address, routes));
    }
    let reserve = |key: &str| -> Result<bool, Failure> {
        if !state.claim(key, &who).map_err(|e| (IO_FAILURE, e))? {
            return Ok(false);
        }
        state
            .set(&index(container, ifname), key)
            .map_err(|e| (IO_FAILURE, e))?;
        Ok(true)
    };
    if let Some(requested) = requested {
        let address = requested.parse::<Ipv4Addr>().map(u32::from).map_err(|_| {
            (
                INVALID_ARGS,
                format!("IP={requested:?} is not an IPv4 address"),
            )
        })?;
        let range = ranges
            .iter()
            .find(|r| r.contains(address) && r.gateway != address)
            .ok_or_else(|| {
                (
                    NO_ADDRESS,
                    format!("requested IP address {requested} is not in the range set"),
                )
            })?;
        if !reserve(requested)? {
            return Err((
                NO_ADDRESS,
                format!("requested IP address {requested} is not available"),
            ));
        }
        return Ok(result(config, range, address, routes));
    }
    let last = state
        .get(LAST_RESERVED)
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .map(u32::from);
    for range in &ranges {
        let size = range.last - range.first + 1;
        // Start after the last one handed out, if it is in this range.
        let start = last
            .filter(|l| range.contains(*l))
            .map_or(0, |l| l - range.first + 1);
        for i in 0..size {
            let address = range.first + (start + i) % size;
            if address == range.gateway {
                continue;
            }
            let key = Ipv4Addr::from(address).to_string();
            if reserve(&key)? {
                state
                    .set(LAST_RESERVED, &key)
                    .map_err(|e| (IO_FAILURE, e))?;
                return Ok(result(config, range, address, routes));
            }
        }
    }
    Err((NO_ADDRESS, "no IP addresses available in range set".into()))
}

/// Releases the container's addresses.
pub fn del(
    state: &dyn State,
    config: &Value,
    container: &str,
    ifname: &str,
) -> Result<(), Failure> {
    ipam(config)?;
    let who = holder(container, ifname);
    let by = index(container, ifname);
    let remove = |key: &str| state.remove(key).map_err(|e| (IO_FAILURE, e));
    match state.get(&by) {
        Some(address) => {
            if state.get(&address).as_deref() == Some(who.as_str()) {
                remove(&address)?;
            }
        }
        // No index (a crash between a claim and its index): look through
        // every reservation.
        None => {
            for (key, value) in state.list() {
                if value == who && key.parse::<Ipv4Addr>().is_ok() {
                    remove(&key)?;
                }
            }
        }
    }
    remove(&by)
}

/// Whether the container's interface still holds an address.
pub fn check(
    state: &dyn State,
    config: &Value,
    container: &str,
    ifname: &str,
) -> Result<(), Failure> {
    ipam(config)?;
    match held(state, container, ifname) {
        Some(_) => Ok(()),
        None => Err((
            NO_ADDRESS,
            format!("no address is reserved for {container} {ifname}"),
        )),
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit/cni", world: "network-plugin" });

    use exports::wasmkube::cni::plugin::Guest;
    use wasmkube::cni::host;
    use wasmkube::cni::types::{Error, Runtime};

    struct HostState;

    impl super::State for HostState {
        fn get(&self, key: &str) -> Option<String> {
            host::state_get(key)
        }
        fn claim(&self, key: &str, value: &str) -> Result<bool, String> {
            host::state_claim(key, value)
        }
        fn set(&self, key: &str, value: &str) -> Result<(), String> {
            host::state_set(key, value)
        }
        fn remove(&self, key: &str) -> Result<(), String> {
            host::state_remove(key)
        }
        fn list(&self) -> Vec<(String, String)> {
            host::state_list()
        }
    }

    fn call<T>(
        config: &str,
        runtime: &Runtime,
        f: impl FnOnce(&dyn super::State, &serde_json::Value, &str, &str) -> Result<T, super::Failure>,
    ) -> Result<T, Error> {
        let failed = |(code, msg): super::Failure| Error {
            code,
            msg,
            details: String::new(),
        };
        let config: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| failed((6, format!("the configuration is not JSON: {e}"))))?;
        f(&HostState, &config, &runtime.container_id, &runtime.ifname).map_err(failed)
    }

    struct HostLocal;

    impl Guest for HostLocal {
        fn versions() -> Vec<String> {
            ["0.4.0", "1.0.0", "1.1.0"].map(String::from).to_vec()
        }
        fn add(config: String, runtime: Runtime) -> Result<String, Error> {
            let requested = runtime.args.iter().find(|(k, _)| k == "IP");
            let requested = requested.map(|(_, ip)| ip.as_str());
            call(&config, &runtime, |state, config, container, ifname| {
                super::add(state, config, (container, ifname), requested)
            })
        }
        fn del(config: String, runtime: Runtime) -> Result<(), Error> {
            call(&config, &runtime, super::del)
        }
        fn check(config: String, runtime: Runtime) -> Result<(), Error> {
            call(&config, &runtime, super::check)
        }
    }

    export!(HostLocal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Memory(RefCell<BTreeMap<String, String>>);

    impl State for Memory {
        fn get(&self, key: &str) -> Option<String> {
            self.0.borrow().get(key).cloned()
        }
        fn claim(&self, key: &str, value: &str) -> Result<bool, String> {
            let mut map = self.0.borrow_mut();
            if map.contains_key(key) {
                return Ok(false);
            }
            map.insert(key.into(), value.into());
            Ok(true)
        }
        fn set(&self, key: &str, value: &str) -> Result<(), String> {
            self.0.borrow_mut().insert(key.into(), value.into());
            Ok(())
        }
        fn remove(&self, key: &str) -> Result<(), String> {
            self.0.borrow_mut().remove(key);
            Ok(())
        }
        fn list(&self) -> Vec<(String, String)> {
            self.0.borrow().clone().into_iter().collect()
        }
    }

    fn ip(result: &str) -> String {
        let result: Value = serde_json::from_str(result).unwrap();
        result["ips"][0]["address"].as_str().unwrap().to_owned()
    }

    #[test]
    fn addresses_are_handed_out_once_kept_and_released() {
        let state = Memory::default();
        let config = json!({"cniVersion": "1.0.0", "name": "net", "ipam": {"type": "host-local",
            "ranges": [[{"subnet": "10.1.0.0/29", "rangeStart": "10.1.0.1", "rangeEnd": "10.1.0.4"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}});
        // The gateway (.1) is passed over.
        let a = ip(&add(&state, &config, ("a", "eth0"), None).unwrap());
        assert_eq!(a, "10.1.0.2/29");
        assert_eq!(
            ip(&add(&state, &config, ("b", "eth0"), None).unwrap()),
            "10.1.0.3/29"
        );
        // Asked again, a container keeps its address.
        assert_eq!(ip(&add(&state, &config, ("a", "eth0"), None).unwrap()), a);
        // Another interface of a is another holder.
        assert_eq!(
            ip(&add(&state, &config, ("a", "net1"), None).unwrap()),
            "10.1.0.4/29"
        );
        let full = add(&state, &config, ("c", "eth0"), None).unwrap_err();
        assert_eq!(full.0, NO_ADDRESS);
        check(&state, &config, "a", "eth0").unwrap();
        // Without its index (a crash right after the claim), del still
        // finds the reservation.
        state.remove("by:a:net1").unwrap();
        del(&state, &config, "a", "net1").unwrap();
        assert_eq!(state.get("10.1.0.4"), None);
        assert_eq!(
            ip(&add(&state, &config, ("a", "net1"), None).unwrap()),
            "10.1.0.4/29"
        );
        del(&state, &config, "a", "eth0").unwrap();
        del(&state, &config, "a", "eth0").unwrap();
        assert_eq!(
            check(&state, &config, "a", "eth0").unwrap_err().0,
            NO_ADDRESS
        );
        // Released, .2 is handed out again, after the others were tried.
        assert_eq!(
            ip(&add(&state, &config, ("c", "eth0"), None).unwrap()),
            "10.1.0.2/29"
        );
        // A free address may be asked for; a taken one or one outside is
        // refused.
        let asked = add(&state, &config, ("d", "eth0"), Some("10.1.0.4")).unwrap_err();
        assert_eq!(
            asked,
            (
                NO_ADDRESS,
                "requested IP address 10.1.0.4 is not available".into()
            )
        );
        let outside = add(&state, &config, ("d", "eth0"), Some("10.1.0.6")).unwrap_err();
        assert_eq!(outside.0, NO_ADDRESS);
        del(&state, &config, "c", "eth0").unwrap();
        let asked = add(&state, &config, ("d", "eth0"), Some("10.1.0.2")).unwrap();
        assert_eq!(ip(&asked), "10.1.0.2/29");
        let result: Value = serde_json::from_str(&asked).unwrap();
        assert_eq!(result["ips"][0]["gateway"], "10.1.0.1");
        assert_eq!(result["routes"], json!([{"dst": "0.0.0.0/0"}]));
    }

    #[test]
    fn bad_configurations_are_refused_with_cni_code_7() {
        let state = Memory::default();
        for ipam in [
            json!(null),
            json!({"ranges": []}),
            json!({"ranges": [[{"subnet": "10.0.0.0"}]]}),
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}]]}),
            json!({"subnet": "10.0.0.0/24", "gateway": 7}),
        ] {
            let config = json!({"cniVersion": "1.0.0", "name": "net", "ipam": ipam});
            let config = if ipam.is_null() {
                json!({"name": "net"})
            } else {
                config
            };
            let refused = add(&state, &config, ("a", "eth0"), None).unwrap_err();
            assert_eq!(refused.0, INVALID_CONFIG, "{config}: {}", refused.1);
        }
        assert!(state.list().is_empty());
    }
}

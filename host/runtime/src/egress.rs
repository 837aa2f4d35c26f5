//! Where a pod's outgoing connections may go, decided by the host on the
//! address it actually connects to: a name is resolved first and every address
//! it resolves to is checked, so no spelling of an address (`127.1`,
//! `LOCALHOST`, `[::ffff:127.0.0.1]`, `0x7f000001`) and no DNS answer gets
//! around the check, and the connection is made to the address checked.
//!
//! Pod and Service addresses are often host loopback addresses, where any host
//! server bound to all addresses answers too. So this node's pod range is
//! reached only at the listeners of its pods, and a Service's address only at
//! its ports; the rest of the loopback range, the node's own addresses, the
//! control plane's, link-local (metadata) and unspecified addresses are refused.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

/// An IPv4 or IPv6 range: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// The first address.
    pub address: IpAddr,
    /// The prefix length.
    pub bits: u8,
}

impl Net {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Net {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, or one address.
    fn from_str(text: &str) -> Result<Net, String> {
        let bad = || format!("{text:?} is not an address range");
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(bits) => bits.parse().ok().filter(|b| *b <= most).ok_or_else(bad)?,
            None => most,
        };
        Ok(Net { address, bits })
    }
}

/// A decision the node makes on a connection of a pod (its NetworkPolicies):
/// given the other side's address (for a connection to the pod, with the
/// pod's port), `Err` with why it is refused.
#[derive(Clone)]
pub struct Decide(pub Arc<dyn Fn(SocketAddr) -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for Decide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decide")
    }
}

/// The addresses a node's pods and Services listen at. Shared: the runtime adds
/// a pod's listeners while it serves, the Service proxy sets the Services'.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    pods: Arc<RwLock<HashSet<SocketAddr>>>,
    services: Arc<RwLock<HashSet<SocketAddr>>>,
}

impl Listeners {
    /// Notes that a pod of the node listens at `address` until the guard goes.
    pub(crate) fn pod(&self, address: SocketAddr) -> Listening {
        write(&self.pods).insert(address);
        Listening {
            listeners: self.clone(),
            address,
        }
    }

    /// The Service addresses and ports, all of them at once.
    pub fn set_services(&self, services: HashSet<SocketAddr>) {
        *write(&self.services) = services;
    }

    fn serve(&self, address: SocketAddr) -> bool {
        contains(&self.pods, address) || self.service(address)
    }

    /// Whether a Service listens at `address`.
    fn service(&self, address: SocketAddr) -> bool {
        contains(&self.services, address)
    }
}

fn contains(set: &RwLock<HashSet<SocketAddr>>, address: SocketAddr) -> bool {
    set.read()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&address)
}

fn write(
    set: &RwLock<HashSet<SocketAddr>>,
) -> std::sync::RwLockWriteGuard<'_, HashSet<SocketAddr>> {
    set.write().unwrap_or_else(|p| p.into_inner())
}

/// A pod listener noted in [`Listeners`], until dropped.
#[derive(Debug)]
pub(crate) struct Listening {
    listeners: Listeners,
    address: SocketAddr,
}

impl Drop for Listening {
    fn drop(&mut self) {
        write(&self.listeners.pods).remove(&self.address);
    }
}

/// What a node's pods may connect to.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    /// This node's pod range: reached only at its pods' listeners.
    pub node_pods: Option<Net>,
    /// The cluster's pod ranges (those of other nodes on this machine among
    /// them): reached even where they are loopback addresses.
    pub cluster_pods: Vec<Net>,
    /// The node's own addresses.
    pub node: Vec<IpAddr>,
    /// The control plane's addresses (the API server's): pods reach the API
    /// through the `kubernetes` Service.
    pub control_plane: Vec<IpAddr>,
    /// Where the node's pods and Services listen.
    pub listeners: Listeners,
    /// The pod's NetworkPolicies on a connection to a pod or an address (a
    /// connection to a Service is decided by the proxy, on the endpoint).
    pub policy: Option<Decide>,
}

impl Egress {
    /// Whether a pod may connect to `to`: the address, then its policies.
    pub fn allows(&self, to: SocketAddr) -> Result<(), String> {
        self.check(to)?;
        match &self.policy {
            Some(policy) if !self.listeners.service(to) => (policy.0)(to),
            _ => Ok(()),
        }
    }

    /// Whether `to` is an address of the cluster's pods or Services, which a
    /// pod's connection comes from its own address to.
    pub fn in_cluster(&self, to: SocketAddr) -> bool {
        let ip = canonical(to.ip());
        self.listeners.service(SocketAddr::new(ip, to.port()))
            || self
                .node_pods
                .iter()
                .chain(&self.cluster_pods)
                .any(|n| n.contains(ip))
    }

    /// Whether a pod may connect to `to`, by its address alone; if not, why.
    pub fn check(&self, to: SocketAddr) -> Result<(), String> {
        let ip = canonical(to.ip());
        let to = SocketAddr::new(ip, to.port());
        if self.listeners.serve(to) {
            return Ok(());
        }
        let refused = |why: &str| Err(format!("connecting to {to} is refused: {why}"));
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return refused("not an address of one host");
        }
        if self.node_pods.is_some_and(|n| n.contains(ip)) {
            return refused("no pod of this node listens there");
        }
        if self.control_plane.contains(&ip) {
            return refused(
                "it is the control plane's address (pods reach the API through the kubernetes Service)",
            );
        }
        if self.node.contains(&ip) {
            return refused("it is the node's own address");
        }
        if link_local(ip) {
            return refused("it is a link-local (metadata) address");
        }
        if ip.is_loopback() && !self.cluster_pods.iter().any(|n| n.contains(ip)) {
            return refused("it is a loopback address of the host");
        }
        Ok(())
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Net {
        let (address, bits) = text.split_once('/').unwrap();
        Net {
            address: address.parse().unwrap(),
            bits: bits.parse().unwrap(),
        }
    }

    #[test]
    fn the_host_decides_on_the_address_connected_to() {
        let egress = Egress {
            node_pods: Some(net("127.64.3.0/24")),
            cluster_pods: vec![net("127.64.0.0/10")],
            node: vec!["10.0.0.7".parse().unwrap()],
            control_plane: vec!["10.0.0.1".parse().unwrap()],
            listeners: Listeners::default(),
            policy: None,
        };
        let own: SocketAddr = "127.64.3.2:8080".parse().unwrap();
        let _serving = egress.listeners.pod(own);
        egress
            .listeners
            .set_services(["127.192.0.10:80".parse().unwrap()].into());
        let allowed = [
            "127.64.3.2:8080",
            "[::ffff:127.64.3.2]:8080",
            "127.192.0.10:80",
            "127.65.0.2:8080",
            "10.0.0.9:443",
            "93.184.216.34:443",
            "[2001:db8::1]:443",
        ];
        for to in allowed {
            assert_eq!(egress.check(to.parse().unwrap()), Ok(()), "{to}");
        }
        let refused = [
            ("127.64.3.2:6443", "no pod of this node listens"),
            ("127.64.3.9:8080", "no pod of this node listens"),
            ("127.192.0.10:6443", "loopback address of the host"),
            ("127.0.0.1:6443", "loopback address of the host"),
            ("127.0.0.1:2379", "loopback address of the host"),
            ("[::ffff:127.0.0.1]:6443", "loopback address of the host"),
            ("[::1]:6443", "loopback address of the host"),
            ("0.0.0.0:6443", "not an address of one host"),
            ("[::]:6443", "not an address of one host"),
            ("255.255.255.255:80", "not an address of one host"),
            ("169.254.169.254:80", "link-local"),
            ("[fe80::1]:80", "link-local"),
            ("10.0.0.7:10250", "the node's own address"),
            ("10.0.0.1:6443", "control plane"),
        ];
        for (to, why) in refused {
            let error = egress.check(to.parse().unwrap()).unwrap_err();
            assert!(error.contains(why), "{to}: {error}");
        }
        // A pod's listener is reached only while it serves.
        drop(_serving);
        assert!(egress.check(own).is_err());
    }
}

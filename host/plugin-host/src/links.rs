//! The node's network devices, addresses and routes, set over rtnetlink:
//! what the host carries out for a network plugin once it has checked the
//! request (see `cni.rs`). Every function makes a state so, whatever was
//! there before, and may be called again.
//!
//! Each call opens its own netlink socket and runs on a small runtime of
//! its own, on a thread of its own: plugin calls are synchronous.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan, RouteMessageBuilder};

/// The protocol the network's routes carry in the routing table, so they
/// are told from everyone else's (`ip route show proto 87`).
const PROTOCOL: u8 = 87;

/// An IPv4 address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Net {
    pub(crate) ip: Ipv4Addr,
    pub(crate) bits: u8,
}

impl Net {
    /// `a.b.c.d/n`, or an error naming what was wanted.
    pub(crate) fn parse(text: &str) -> Result<Net, String> {
        text.split_once('/')
            .and_then(|(ip, bits)| {
                let bits = bits.parse::<u8>().ok().filter(|b| *b <= 32)?;
                Some(Net {
                    ip: ip.parse().ok()?,
                    bits,
                })
            })
            .ok_or_else(|| format!("{text:?} is not an address like 10.42.0.1/24"))
    }

    fn mask(self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0)
    }

    /// Whether `ip` is inside this network.
    pub(crate) fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.ip) & self.mask()
    }

    /// Whether `other` lies wholly inside this network.
    pub(crate) fn covers(self, other: Net) -> bool {
        other.bits >= self.bits && self.contains(other.ip)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.bits)
    }
}

/// A route of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) destination: Net,
    pub(crate) gateway: Ipv4Addr,
    /// The device it leaves by (on-link to the gateway); none: whichever
    /// reaches the gateway.
    pub(crate) device: Option<String>,
    pub(crate) source: Option<Ipv4Addr>,
}

/// A peer of a VXLAN device: its MAC, its device's address, its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VxlanPeer {
    pub(crate) mac: [u8; 6],
    pub(crate) address: Ipv4Addr,
    pub(crate) remote: Ipv4Addr,
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?} is not a MAC address"))?;
    let mac: [u8; 6] = bytes
        .try_into()
        .map_err(|_| format!("{text:?} is not a MAC address"))?;
    // Locally administered and unicast: never a vendor's or a group.
    if mac[0] & 0b11 != 0b10 {
        return Err(format!(
            "{text:?} is not a locally administered unicast MAC address"
        ));
    }
    Ok(mac)
}

/// Why a netlink request failed.
struct Failed(String);

impl From<rtnetlink::Error> for Failed {
    fn from(e: rtnetlink::Error) -> Failed {
        Failed(e.to_string())
    }
}

impl From<String> for Failed {
    fn from(e: String) -> Failed {
        Failed(e)
    }
}

/// Runs `work` with a fresh netlink handle, on a thread of its own (the
/// caller may be inside an async runtime, where another cannot block).
fn with_handle<T, F>(work: impl FnOnce(Handle) -> F + Send) -> Result<T, String>
where
    T: Send,
    F: Future<Output = Result<T, Failed>>,
{
    let run = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("netlink: {e}"))?;
        runtime.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
            let connection = tokio::spawn(connection);
            let result = work(handle).await.map_err(|Failed(e)| e);
            connection.abort();
            result
        })
    };
    std::thread::scope(|scope| {
        scope
            .spawn(run)
            .join()
            .unwrap_or_else(|_| Err("netlink: the request panicked".to_owned()))
    })
}

/// The link named `name`, if there is one.
async fn link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    match handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The index of the link `name`, which must exist.
async fn index_of(handle: &Handle, name: &str) -> Result<u32, Failed> {
    let found = link(handle, name).await?;
    Ok(found
        .ok_or_else(|| format!("{name} does not exist"))?
        .header
        .index)
}

fn kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// The index of the link `name` of kind `want`, made by `create` when
/// there is none, and up.
async fn ensure_link(
    handle: &Handle,
    name: &str,
    want: InfoKind,
    create: LinkMessage,
) -> Result<u32, String> {
    let failed = |e: rtnetlink::Error| format!("{name}: {e}");
    let index = match link(handle, name).await.map_err(failed)? {
        Some(found) if kind(&found) == Some(&want) => found.header.index,
        Some(_) => return Err(format!("{name} exists and is not a {want:?} device")),
        None => {
            handle.link().add(create).execute().await.map_err(failed)?;
            link(handle, name)
                .await
                .map_err(failed)?
                .ok_or_else(|| format!("{name} was made and is gone"))?
                .header
                .index
        }
    };
    let up = LinkUnspec::new_with_index(index).up().build();
    handle.link().set(up).execute().await.map_err(failed)?;
    Ok(index)
}

/// Puts `address` on the link `index`, whatever it had.
async fn put_address(handle: &Handle, index: u32, address: Net) -> Result<(), rtnetlink::Error> {
    handle
        .address()
        .add(index, address.ip.into(), address.bits)
        .replace()
        .execute()
        .await
}

/// A bridge `name`, up, with `address`.
pub(crate) fn ensure_bridge(name: &str, address: Net) -> Result<(), String> {
    with_handle(|handle| async move {
        let index = ensure_link(
            &handle,
            name,
            InfoKind::Bridge,
            LinkBridge::new(name).build(),
        )
        .await?;
        Ok(put_address(&handle, index, address).await?)
    })
}

/// A VXLAN device `name` (id `vni`, UDP `port`, from `local`, MAC `mac`),
/// up, with `address`.
pub(crate) fn ensure_vxlan(
    name: &str,
    vni: u32,
    port: u16,
    local: Ipv4Addr,
    mac: [u8; 6],
    address: Net,
) -> Result<(), String> {
    with_handle(|handle| async move {
        let create = LinkVxlan::new(name, vni)
            .port(port)
            .local(local)
            .learning(false)
            .address(mac.to_vec())
            .build();
        let index = ensure_link(&handle, name, InfoKind::Vxlan, create).await?;
        Ok(put_address(&handle, index, address).await?)
    })
}

/// The VXLAN device `name` knows exactly `peers`: a neighbour entry (its
/// address to its MAC) and a forwarding entry (its MAC to its node) each.
pub(crate) fn set_vxlan_peers(name: &str, peers: &[VxlanPeer]) -> Result<(), String> {
    with_handle(|handle| async move {
        let index = index_of(&handle, name).await?;
        for peer in peers {
            let neighbours = handle.neighbours();
            neighbours
                .add(index, peer.address.into())
                .link_layer_address(&peer.mac)
                .replace()
                .execute()
                .await?;
            neighbours
                .add_bridge(index, &peer.mac)
                .destination(peer.remote.into())
                .flags(NeighbourFlags::Own)
                .replace()
                .execute()
                .await?;
        }
        // Entries of nodes that left.
        let known: Vec<_> = handle.neighbours().get().execute().try_collect().await?;
        for entry in known {
            if entry.header.ifindex != index {
                continue;
            }
            let stale = entry.attributes.iter().any(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                    match entry.header.family {
                        AddressFamily::Bridge => !peers.iter().any(|p| p.remote == *ip),
                        _ => !peers.iter().any(|p| p.address == *ip),
                    }
                }
                _ => false,
            });
            if stale {
                handle.neighbours().del(entry).execute().await?;
            }
        }
        Ok(())
    })
}

/// The routes of protocol [`PROTOCOL`] are exactly `routes`. Each route
/// is tried even when another fails (a gateway on a link that is down);
/// the failures are returned together.
pub(crate) fn set_routes(routes: &[Route]) -> Result<(), String> {
    with_handle(|handle| async move {
        let mut failures = Vec::new();
        // Each device's index, looked up once.
        let mut devices: HashMap<&str, Option<u32>> = HashMap::new();
        for route in routes {
            let mut message = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(route.destination.ip, route.destination.bits)
                .gateway(route.gateway)
                .protocol(RouteProtocol::Other(PROTOCOL));
            if let Some(source) = route.source {
                message = message.pref_source(source);
            }
            if let Some(device) = &route.device {
                let index = match devices.get(device.as_str()) {
                    Some(index) => *index,
                    None => {
                        let index = link(&handle, device).await?.map(|l| l.header.index);
                        devices.insert(device, index);
                        index
                    }
                };
                match index {
                    Some(index) => message = message.output_interface(index).onlink(),
                    None => {
                        failures.push(format!("{}: {device} does not exist", route.destination));
                        continue;
                    }
                }
            }
            if let Err(e) = handle
                .route()
                .add(message.build())
                .replace()
                .execute()
                .await
            {
                failures.push(format!("{} via {}: {e}", route.destination, route.gateway));
            }
        }
        let all = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let had: Vec<_> = handle.route().get(all).execute().try_collect().await?;
        for route in had {
            if route.header.protocol != RouteProtocol::Other(PROTOCOL) {
                continue;
            }
            let destination = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(Net {
                    ip: *ip,
                    bits: route.header.destination_prefix_length,
                }),
                _ => None,
            });
            let wanted = destination.is_some_and(|d| routes.iter().any(|r| r.destination == d));
            if !wanted {
                handle.route().del(route).execute().await?;
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Failed(failures.join("; ")))
        }
    })
}

/// Puts `ip/32` on the link `device`, or takes it off.
pub(crate) fn set_host_address(device: &str, ip: Ipv4Addr, present: bool) -> Result<(), String> {
    with_handle(|handle| async move {
        let index = index_of(&handle, device).await?;
        let host = Net { ip, bits: 32 };
        if present {
            return Ok(put_address(&handle, index, host).await?);
        }
        let mut on = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(address) = on.try_next().await? {
            let same = address.header.prefix_len == 32
                && address.attributes.iter().any(|a| {
                    matches!(a, rtnetlink::packet_route::address::AddressAttribute::Local(a) if *a == std::net::IpAddr::V4(ip))
                });
            if same {
                return Ok(handle.address().del(address).execute().await?);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_and_cover() {
        let pods = Net::parse("10.42.1.0/24").unwrap();
        assert!(pods.contains("10.42.1.200".parse().unwrap()));
        assert!(!pods.contains("10.42.2.1".parse().unwrap()));
        assert!(pods.covers(Net::parse("10.42.1.1/24").unwrap()));
        assert!(pods.covers(Net::parse("10.42.1.7/32").unwrap()));
        assert!(!pods.covers(Net::parse("10.42.0.0/16").unwrap()));
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        for bad in ["10.42.1.0", "10.42.1.0/33", "x/24", "10.42.1/24"] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_local_unicast_macs() {
        assert_eq!(
            parse_mac("0a:58:0a:2a:01:00").unwrap(),
            [0x0a, 0x58, 0x0a, 0x2a, 0x01, 0x00]
        );
        // A vendor's, a group's, and not a MAC at all.
        for bad in [
            "00:11:22:33:44:55",
            "0b:58:0a:2a:01:00",
            "0a:58",
            "zz:58:0a:2a:01:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}

//! Pod addresses: each pod gets one of its own, from the node's range
//! (`spec.podCIDR` when the Node has one, else the agent's `--pod-cidr`), so many
//! pods serve the same port and two nodes with different ranges never collide.
//! On one machine, any range inside 127.0.0.0/8 works with no configuration:
//! Linux routes all of it to the loopback interface.
//!
//! A pod keeps its address for its life, across restarts of the agent (it is in
//! the pod's recorded status). Handing out addresses stays behind this one type,
//! so pod networking can move into plugins without the agent changing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// An IPv4 range, `a.b.c.d/n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    base: u32,
    bits: u8,
}

impl std::str::FromStr for Range {
    type Err = String;

    fn from_str(text: &str) -> Result<Range, String> {
        let bad = || format!("{text:?} is not an IPv4 range like 127.64.0.0/16");
        let (address, bits) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&bits) {
            return Err(format!("{text:?}: the prefix must be /8 to /30"));
        }
        let mask = u32::MAX << (32 - bits);
        Ok(Range {
            base: u32::from(address) & mask,
            bits,
        })
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

impl Range {
    /// The range a node named `node` takes when it is given none: a /16 inside
    /// 127.64.0.0/10, chosen by its name.
    pub fn for_node(node: &str) -> Range {
        let hash = node.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Range {
            base: u32::from(Ipv4Addr::new(127, 64 + (hash % 64) as u8, 0, 0)),
            bits: 16,
        }
    }

    /// How many addresses pods can have: all but the first and the last.
    fn size(self) -> u32 {
        (1u32 << (32 - self.bits)) - 2
    }

    fn contains(self, address: Ipv4Addr) -> bool {
        let offset = u32::from(address).wrapping_sub(self.base);
        (1..=self.size()).contains(&offset)
    }

    fn nth(self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + i % self.size())
    }
}

/// The addresses of the node's pods.
#[derive(Debug)]
pub(crate) struct Addresses {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    range: Range,
    /// Addresses by pod UID.
    taken: HashMap<String, Ipv4Addr>,
    /// Where the search for a free address starts.
    next: u32,
}

impl Addresses {
    pub(crate) fn new(range: Range) -> Addresses {
        Addresses {
            state: Mutex::new(State {
                range,
                taken: HashMap::new(),
                next: 0,
            }),
        }
    }

    /// Hands out addresses from `range` from now on (pods keep theirs).
    pub(crate) fn set_range(&self, range: Range) {
        self.state.lock().expect("addresses lock").range = range;
    }

    /// The address of pod `uid`: the one it has, else `had` when that is still
    /// in the range and free, else the next free one.
    pub(crate) fn assign(&self, uid: &str, had: Option<IpAddr>) -> Result<IpAddr, String> {
        let mut state = self.state.lock().expect("addresses lock");
        if let Some(found) = state.taken.get(uid) {
            return Ok(IpAddr::V4(*found));
        }
        let free = |state: &State, address: Ipv4Addr| !state.taken.values().any(|a| *a == address);
        let kept = match had {
            Some(IpAddr::V4(address)) if state.range.contains(address) && free(&state, address) => {
                Some(address)
            }
            _ => None,
        };
        let address = match kept {
            Some(address) => address,
            None => {
                let range = state.range;
                let found = (0..range.size())
                    .map(|i| range.nth(state.next.wrapping_add(i)))
                    .find(|a| free(&state, *a))
                    .ok_or_else(|| format!("no free address left in {range}"))?;
                state.next = u32::from(found) - range.base;
                found
            }
        };
        state.taken.insert(uid.to_owned(), address);
        Ok(IpAddr::V4(address))
    }

    /// Gives pod `uid`'s address back.
    pub(crate) fn release(&self, uid: &str) {
        self.state.lock().expect("addresses lock").taken.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_name_their_default() {
        let range: Range = "127.70.3.9/16".parse().unwrap();
        assert_eq!(range.to_string(), "127.70.0.0/16");
        assert!("127.0.0.1".parse::<Range>().is_err());
        assert!("10.0.0.0/31".parse::<Range>().is_err());
        assert_eq!(Range::for_node("edge-1"), Range::for_node("edge-1"));
        let default = Range::for_node("edge-1").to_string();
        assert!(
            default.starts_with("127.") && default.ends_with(".0.0/16"),
            "{default}"
        );
    }

    #[test]
    fn pods_get_distinct_addresses_and_keep_them() {
        let addresses = Addresses::new("127.80.0.0/30".parse().unwrap());
        let a = addresses.assign("a", None).unwrap();
        let b = addresses.assign("b", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(addresses.assign("a", None).unwrap(), a);
        // Only two usable addresses in a /30.
        assert!(addresses.assign("c", None).is_err());
        addresses.release("a");
        assert_eq!(addresses.assign("c", None).unwrap(), a);
        // A pod taken back keeps its address when it is free.
        let fresh = Addresses::new("127.80.0.0/16".parse().unwrap());
        let had: IpAddr = "127.80.3.4".parse().unwrap();
        assert_eq!(fresh.assign("x", Some(had)).unwrap(), had);
        assert_ne!(fresh.assign("y", Some(had)).unwrap(), had);
        let outside: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(fresh.assign("z", Some(outside)).unwrap(), outside);
    }
}

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
pub use wasmkube_types::cidr::Range;

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
                let (at, found) = (0..range.size())
                    .map(|i| state.next.wrapping_add(i))
                    .map(|at| (at, range.nth(at)))
                    .find(|(_, a)| free(&state, *a))
                    .ok_or_else(|| format!("no free address left in {range}"))?;
                state.next = at.wrapping_add(1);
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

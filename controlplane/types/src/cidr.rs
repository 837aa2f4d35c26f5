//! IPv4 ranges (`a.b.c.d/n`): the cluster's pod range, the subnet each node
//! takes out of it (`spec.podCIDR`), and the addresses pods get inside it.

use std::net::Ipv4Addr;

/// An IPv4 range, `a.b.c.d/n`, its address bits past the prefix zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
        Ok(Range::new(address, bits))
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

impl Range {
    /// The range of `bits` prefix bits that holds `address`.
    fn new(address: Ipv4Addr, bits: u8) -> Range {
        let mask = u32::MAX << (32 - bits);
        Range {
            base: u32::from(address) & mask,
            bits,
        }
    }

    /// The range a node named `node` takes when it is given none: a /16
    /// inside 127.64.0.0/10, chosen by its name.
    pub fn for_node(node: &str) -> Range {
        let hash = node.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Range::new(Ipv4Addr::new(127, 64 + (hash % 64) as u8, 0, 0), 16)
    }

    /// The prefix length.
    pub fn bits(self) -> u8 {
        self.bits
    }

    /// How many addresses pods can have: all but the first and the last.
    pub fn size(self) -> u32 {
        (1u32 << (32 - self.bits)) - 2
    }

    /// Whether `address` is one pods can have in this range.
    pub fn contains(self, address: Ipv4Addr) -> bool {
        let offset = u32::from(address).wrapping_sub(self.base);
        (1..=self.size()).contains(&offset)
    }

    /// Whether `other` lies wholly inside this range.
    pub fn covers(self, other: Range) -> bool {
        other.bits >= self.bits && Range::new(Ipv4Addr::from(other.base), self.bits) == self
    }

    /// The `i`-th address pods can have (counting around).
    pub fn nth(self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + i % self.size())
    }

    /// The subnets of `bits` prefix bits this range splits into, in order
    /// (none when `bits` is shorter than the range's own prefix).
    pub fn subnets(self, bits: u8) -> impl Iterator<Item = Range> {
        let count = if (self.bits..=30).contains(&bits) {
            1u64 << (bits - self.bits)
        } else {
            0
        };
        let step = 1u64 << (32 - u32::from(bits));
        (0..count).map(move |i| Range {
            base: (u64::from(self.base) + i * step) as u32,
            bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_split_and_name_their_default() {
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
        let cluster: Range = "127.64.0.0/10".parse().unwrap();
        assert!(cluster.covers(Range::for_node("edge-1")));
        assert!(!range.covers(cluster));
        let nodes: Vec<String> = cluster.subnets(16).map(|r| r.to_string()).collect();
        assert_eq!(nodes.len(), 64);
        assert_eq!(nodes[0], "127.64.0.0/16");
        assert_eq!(nodes[63], "127.127.0.0/16");
        assert_eq!(range.subnets(8).count(), 0);
        assert!(range.contains("127.70.0.1".parse().unwrap()));
        assert!(!range.contains("127.70.0.0".parse().unwrap()));
        assert!(!range.contains("127.70.255.255".parse().unwrap()));
        assert_eq!(range.nth(0), "127.70.0.1".parse::<Ipv4Addr>().unwrap());
    }
}

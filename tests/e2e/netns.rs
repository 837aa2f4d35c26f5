//! Test machines: network namespaces joined to this one by a veth pair, each
//! with a /30 of 10.231.0.0/16 (this side `.1`, the machine `.2`), or
//! sharing one link: a bridge in a namespace of its own with a /24 of
//! 10.232.0.0/16, this side at `.1` on it too. Each is removed with
//! everything in it when dropped.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// One of `count` numbered slots of a kind that no other test process
/// running now holds: a file naming the holder's pid, free again when
/// dropped or when its holder is gone.
pub struct Slot {
    pub n: u32,
    claim: PathBuf,
}

impl Slot {
    /// A free slot of `kind`, trying from one the process id picks.
    pub fn claim(kind: &str, count: u32) -> Slot {
        let dir = std::env::temp_dir().join(format!("wasmkube-e2e-{kind}"));
        std::fs::create_dir_all(&dir).unwrap();
        let start = std::process::id();
        for n in (0..count).map(|i| (start + i) % count) {
            let claim = dir.join(n.to_string());
            let held = std::fs::read_to_string(&claim)
                .is_ok_and(|pid| Path::new("/proc").join(pid.trim()).exists());
            if held {
                continue;
            }
            let _ = std::fs::remove_file(&claim);
            let Ok(mut file) = std::fs::File::create_new(&claim) else {
                continue;
            };
            write!(file, "{}", std::process::id()).unwrap();
            return Slot { n, claim };
        }
        panic!("all {count} test slots of {kind} are held");
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.claim);
    }
}

/// A network namespace reached over a veth pair.
pub struct Machine {
    name: String,
    /// The veth end on this side.
    link: String,
    /// This side's address on the pair.
    pub gateway: Ipv4Addr,
    /// The machine's address on the pair.
    pub address: Ipv4Addr,
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Machine {
    /// A new machine, its loopback and its end of the pair up.
    pub fn new() -> Machine {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // One /30 per machine: this process's id and a count pick it.
        let slot = (std::process::id() * 8 + NEXT.fetch_add(1, Ordering::Relaxed)) % 16_384;
        let base = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + slot * 4;
        let machine = Machine {
            name: format!("wk-test-{slot}"),
            link: format!("wkh{slot}"),
            gateway: Ipv4Addr::from(base + 1),
            address: Ipv4Addr::from(base + 2),
        };
        // What a run killed midway left behind.
        machine.remove();
        let inner = format!("wka{slot}");
        ip(&["netns", "add", &machine.name]);
        ip(&[
            "link",
            "add",
            &machine.link,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &machine.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", machine.gateway),
            "dev",
            &machine.link,
        ]);
        ip(&["link", "set", &machine.link, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &machine.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        exec(&[
            "addr",
            "add",
            &format!("{}/30", machine.address),
            "dev",
            &inner,
        ]);
        exec(&["link", "set", &inner, "up"]);
        exec(&["link", "set", "lo", "up"]);
        machine
    }

    /// What `program ARGS` printed inside the machine, or why it failed.
    pub fn output(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        } else {
            format!("failed: {}", String::from_utf8_lossy(&out.stderr))
        }
    }

    /// `program` to run inside the machine.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

/// The pod ranges of a cluster on a [`Lan`] (server arguments): a /24
/// each out of 10.42.0.0/16, routed between the machines.
pub const POD_RANGES: [&str; 4] = [
    "--cluster-cidr",
    "10.42.0.0/16",
    "--node-cidr-mask-size",
    "24",
];

/// One link several machines share, this side on it too.
pub struct Lan {
    /// The namespace holding the bridge.
    switch: String,
    /// The veth end on this side.
    link: String,
    /// The first three bytes of its /24.
    prefix: [u8; 3],
    /// This side's address on it.
    pub gateway: Ipv4Addr,
    next: AtomicU32,
    /// Held while the link is: its number.
    _slot: Slot,
}

impl Lan {
    /// A new link, this side on it at `.1`.
    pub fn new() -> Lan {
        let held = Slot::claim("lans", 256);
        let slot = held.n;
        let prefix = [10, 232, slot as u8];
        let lan = Lan {
            switch: format!("wk-lan-{slot}"),
            link: format!("wkl{slot}"),
            prefix,
            gateway: Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 1),
            next: AtomicU32::new(2),
            _slot: held,
        };
        lan.remove();
        ip(&["netns", "add", &lan.switch]);
        let switch = |args: &[&str]| {
            let mut all = vec!["-n", &lan.switch];
            all.extend_from_slice(args);
            ip(&all);
        };
        switch(&["link", "add", "br0", "type", "bridge"]);
        switch(&["link", "set", "br0", "up"]);
        lan.plug(&lan.link, None);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.gateway),
            "dev",
            &lan.link,
        ]);
        ip(&["link", "set", &lan.link, "up"]);
        lan
    }

    /// Makes the veth `end` (left in namespace `into`, else this one) with
    /// its other end on the bridge, as `port`.
    fn plug(&self, end: &str, into: Option<&str>) {
        let port = format!("{end}p");
        ip(&["link", "add", end, "type", "veth", "peer", "name", &port]);
        ip(&["link", "set", &port, "netns", &self.switch]);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        if let Some(into) = into {
            ip(&["link", "set", end, "netns", into]);
        }
    }

    /// A new machine on the link (its interface is `eth0`).
    pub fn machine(&self) -> Machine {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let [a, b, c] = self.prefix;
        let machine = Machine {
            name: format!("{}-{n}", self.switch),
            link: String::new(),
            gateway: self.gateway,
            address: Ipv4Addr::new(a, b, c, n as u8),
        };
        machine.remove();
        ip(&["netns", "add", &machine.name]);
        let end = format!("wkl{c}-{n}");
        self.plug(&end, Some(&machine.name));
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", &machine.name];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["link", "set", &end, "name", "eth0"]);
        inside(&[
            "addr",
            "add",
            &format!("{}/24", machine.address),
            "dev",
            "eth0",
        ]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["link", "set", "lo", "up"]);
        machine
    }

    fn remove(&self) {
        remove(&self.switch, &self.link);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Machine {
    /// Takes the machine's link down (`false`) or up again.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", "eth0", state]);
    }

    fn remove(&self) {
        remove(&self.name, &self.link);
    }
}

/// Removes the namespace `name`, with everything in it, and this side's
/// link `link` (none when empty), whatever of them is there.
fn remove(name: &str, link: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    if !link.is_empty() {
        let _ = Command::new("ip").args(["link", "del", link]).output();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.remove();
    }
}

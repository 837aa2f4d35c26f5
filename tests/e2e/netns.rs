//! Test machines: network namespaces joined to this one by a veth pair, each
//! with a /30 of 10.231.0.0/16 (this side `.1`, the machine `.2`), removed
//! with everything in them when dropped.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

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

    /// `program` to run inside the machine.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Machine {
    /// Removes the namespace, with everything in it, and this side's link.
    fn remove(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.remove();
    }
}

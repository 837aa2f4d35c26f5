//! `wasmkube` processes under measurement: started, measured (CPU, memory),
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `wasmkube` process under measurement, killed when dropped.
pub struct Process {
    pub child: Child,
    pub url: String,
}

impl Process {
    /// Runs `wasmkube ARGS` with its data in `data_dir`; `url` is the last word
    /// of the first line it prints (where it serves).
    #[allow(
        dead_code,
        reason = "each bench compiles this module; the footprint bench picks its binary"
    )]
    pub fn start(args: &[&str], data_dir: &Path) -> Process {
        Process::start_binary(Path::new(env!("CARGO_BIN_EXE_wasmkube")), args, data_dir)
    }

    /// [`Process::start`] of another build of `wasmkube`.
    pub fn start_binary(binary: &Path, args: &[&str], data_dir: &Path) -> Process {
        let mut child = Command::new(binary)
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = first.trim().rsplit(' ').next().unwrap().to_owned();
        Process { child, url }
    }

    /// User plus system CPU time of the process so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// Resident memory of the process, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

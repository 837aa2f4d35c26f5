//! `wasmkube` processes under measurement: started, measured (CPU, memory),
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `wasmkube` process under measurement, killed when dropped.
pub struct Process {
    pub child: Child,
    /// The admin's kubeconfig a server writes in its data dir.
    pub kubeconfig: PathBuf,
}

/// The `wasmkube` measured: `WASMKUBE_BIN` (the binary that ships, say),
/// else the one this benchmark was built with.
pub fn binary() -> PathBuf {
    std::env::var_os("WASMKUBE_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_wasmkube").into(), PathBuf::from)
}

impl Process {
    /// Runs `wasmkube ARGS` ([`binary`]) with its data in `data_dir`, once it
    /// has printed its first line (where it serves).
    pub fn start(args: &[&str], data_dir: &Path) -> Process {
        Process::start_by(Command::new(binary()), args, data_dir)
    }

    /// [`Process::start`] through `command`, which runs [`binary`] (inside
    /// a network namespace, say).
    pub fn start_by(mut command: Command, args: &[&str], data_dir: &Path) -> Process {
        let mut child = command
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
        Process {
            child,
            kubeconfig: data_dir.join("kubeconfig"),
        }
    }

    /// A client of this server as its admin.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; not every bench starts a server"
    )]
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// User plus system CPU time of the process so far.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; not every bench measures CPU and memory"
    )]
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
    #[allow(
        dead_code,
        reason = "each bench compiles this module; not every bench measures CPU and memory"
    )]
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

impl Process {
    /// The share of a core the process used over `quiet`, in percent.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; only the footprint bench uses it"
    )]
    pub async fn idle_cpu(&self, quiet: Duration) -> f64 {
        let before = self.cpu();
        tokio::time::sleep(quiet).await;
        (self.cpu() - before).as_secs_f64() / quiet.as_secs_f64() * 100.0
    }

    /// Where the process's resident memory is: anonymous and file pages and
    /// threads (from `/proc/PID/status`), then the largest mappings by
    /// resident size (from `/proc/PID/smaps`), in KiB.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; only the footprint bench uses it"
    )]
    pub fn breakdown(&self) -> String {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let mut out: Vec<String> = status
            .lines()
            .filter(|l| {
                ["RssAnon", "RssFile", "RssShmem", "Threads"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(|l| format!("  {}", l.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        let mut mappings: Vec<(u64, String)> = Vec::new();
        let mut name = String::new();
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("Rss:") => {
                    let kib = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    mappings.push((kib, name.clone()));
                }
                Some(first) if first.contains('-') && !first.ends_with(':') => {
                    let path = words.nth(4).unwrap_or("[anon]");
                    name = path.rsplit('/').next().unwrap_or(path).to_owned();
                }
                _ => {}
            }
        }
        // Mappings of one file (or all anonymous ones) summed, and the
        // five largest anonymous mappings on their own.
        let mut by_name = std::collections::BTreeMap::<String, u64>::new();
        for (kib, name) in &mappings {
            *by_name.entry(name.clone()).or_default() += kib;
        }
        let mut named: Vec<(u64, String)> = by_name.into_iter().map(|(n, k)| (k, n)).collect();
        named.sort_unstable_by(|a, b| b.cmp(a));
        for (kib, name) in named.iter().take(6) {
            out.push(format!("  {name}: {kib} kB"));
        }
        let mut anonymous: Vec<u64> = mappings
            .iter()
            .filter(|(_, n)| n == "[anon]")
            .map(|(k, _)| *k)
            .collect();
        anonymous.sort_unstable_by(|a, b| b.cmp(a));
        anonymous.truncate(5);
        out.push(format!("  largest anonymous mappings: {anonymous:?} kB"));
        out.join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A containerd of its own, for tests and benchmarks: its root, state and
//! socket in a temporary directory, the CRI plugin's sandbox image the local
//! `pause` image, and the images `scripts/oci-images.sh` builds imported.
//! Dropped, it stops, and so do the shims and mounts of what it ran.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The images imported into every instance.
pub const BUSYBOX: &str = "wasmkube.local/busybox:1";
pub const PAUSE: &str = "wasmkube.local/pause:1";

/// A running containerd.
#[derive(Debug)]
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts one and waits for its socket; the images are built first if
    /// they are not yet.
    pub fn start() -> Containerd {
        let images = images();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_text(dir.path())).expect("writing containerd's config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("a log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian's containerd package) runs");
        let containerd = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(containerd.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for image in ["busybox", "pause"] {
            let imported = Command::new("ctr")
                .arg("--address")
                .arg(containerd.socket())
                .args(["--namespace", "k8s.io", "images", "import"])
                .arg(images.join(format!("{image}.tar")))
                .stdout(Stdio::null())
                .status()
                .expect("ctr runs");
            assert!(imported.success(), "importing {image}");
        }
        containerd
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Its endpoint, as the kubelet's flag takes it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// A directory for what a test keeps beside it (logs, say).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The shims of its containers outlive it: they are told by its
        // address, which is in their arguments.
        let socket = self.socket().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&socket) {
                let pid = entry.file_name();
                let _ = Command::new("kill").arg("-9").arg(&pid).status();
            }
        }
        // Then its mounts (rootfs overlays, sandboxes' shm), deepest first.
        let root = self.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
    }
}

/// containerd's configuration: its own places, and what the CRI plugin
/// needs on these machines (the local pause image; OOM score adjustments
/// within the caller's).
fn config_text(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
"#
    )
}

/// The directory of the image archives, built if they are not there.
fn images() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = workspace.join("target/oci-images");
    if !(out.join("busybox.tar").exists() && out.join("pause.tar").exists()) {
        let built = Command::new(workspace.join("scripts/oci-images.sh"))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("scripts/oci-images.sh runs");
        assert!(built.success(), "building the OCI images");
    }
    out
}

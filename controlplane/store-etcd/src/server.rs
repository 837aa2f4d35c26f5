//! A local etcd server process on loopback ports picked at run time, for tests and
//! benchmarks. The `etcd` binary is taken from `$WASMKUBE_ETCD` or the `PATH`.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd; killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// The member's name.
    name: String,
    /// Every member's `name=peer URL`.
    initial_cluster: String,
}

impl EtcdServer {
    /// Starts etcd with its data in `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> io::Result<EtcdServer> {
        let mut servers = EtcdServer::start_cluster(data_dir, 1)?;
        Ok(servers.remove(0))
    }

    /// Starts a cluster of `members` etcd processes, each with its data in
    /// `<data_dir>/member-<n>`, and waits until every one listens.
    pub fn start_cluster(data_dir: &Path, members: usize) -> io::Result<Vec<EtcdServer>> {
        let mut servers = Vec::new();
        for n in 0..members {
            let dir = if members == 1 {
                data_dir.to_owned()
            } else {
                data_dir.join(format!("member-{n}"))
            };
            std::fs::create_dir_all(&dir)?;
            servers.push(EtcdServer {
                child: None,
                data_dir: dir,
                client_port: free_port()?,
                peer_port: free_port()?,
                name: format!("member-{n}"),
                initial_cluster: String::new(),
            });
        }
        let cluster: Vec<String> = servers
            .iter()
            .map(|s| format!("{}=http://127.0.0.1:{}", s.name, s.peer_port))
            .collect();
        for server in &mut servers {
            server.initial_cluster = cluster.join(",");
            server.launch()?;
        }
        for server in &mut servers {
            server.wait_listening(Duration::from_secs(20))?;
        }
        Ok(servers)
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again on the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.spawn()
    }

    fn spawn(&mut self) -> io::Result<()> {
        self.launch()?;
        self.wait_listening(Duration::from_secs(20))
    }

    /// Starts the process, without waiting for it.
    fn launch(&mut self) -> io::Result<()> {
        let binary = std::env::var_os("WASMKUBE_ETCD").unwrap_or_else(|| "etcd".into());
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.data_dir.join("etcd.log"))?;
        let child = Command::new(&binary)
            .arg(format!("--name={}", self.name))
            .arg(format!(
                "--data-dir={}",
                self.data_dir.join("etcd").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-token=wasmkube-test")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot run {} ({e}); install it with `apt-get install etcd-server`",
                        binary.to_string_lossy()
                    ),
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_listening(&mut self, patience: Duration) -> io::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if TcpStream::connect(("127.0.0.1", self.client_port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "etcd exited with {status}; see {}",
                    self.data_dir.join("etcd.log").display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("etcd did not listen on {} within {patience:?}", self.url()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

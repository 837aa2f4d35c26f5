//! A local etcd server process on loopback ports picked at run time, for tests and
//! benchmarks: plain, or serving its clients over TLS and asking them for a
//! certificate of a test CA. The `etcd` binary is taken from `$WASMKUBE_ETCD` or
//! the `PATH`.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmkube_pki::{Ca, Profile};

use crate::Tls;

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
    /// The certificates of an etcd serving its clients over TLS.
    tls: Option<TlsFiles>,
}

/// The PEM files of an etcd serving its clients over TLS with client
/// certificate authentication (`--cert-file`, `--key-file`,
/// `--trusted-ca-file`, `--client-cert-auth`), and of a client it accepts,
/// all issued by a test CA.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate: it signs etcd's serving certificate and the
    /// client certificates etcd accepts.
    pub ca: PathBuf,
    /// etcd's serving certificate, for `127.0.0.1` and `localhost`.
    pub server_cert: PathBuf,
    /// Its private key.
    pub server_key: PathBuf,
    /// A client certificate etcd accepts.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A test CA in `dir` (made if missing) and the certificates it issues.
    fn issue(dir: &Path) -> io::Result<TlsFiles> {
        let ca = Ca::load_or_create(dir).map_err(io::Error::other)?;
        let files = TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("etcd-server.crt"),
            server_key: dir.join("etcd-server.key"),
            client_cert: dir.join("etcd-client.crt"),
            client_key: dir.join("etcd-client.key"),
        };
        let server = Profile::server("etcd", &["localhost"], &[Ipv4Addr::LOCALHOST.into()]);
        let client = Profile::client("etcd-client", &[]);
        for (profile, cert, key) in [
            (server, &files.server_cert, &files.server_key),
            (client, &files.client_cert, &files.client_key),
        ] {
            let issued = ca.issue(&profile).map_err(io::Error::other)?;
            std::fs::write(cert, &issued.cert_pem)?;
            wasmkube_pki::write_private(key, issued.key_pem.as_bytes())
                .map_err(io::Error::other)?;
        }
        Ok(files)
    }

    /// The store's TLS with the client certificate: what etcd accepts.
    pub fn client_tls(&self) -> io::Result<Tls> {
        Ok(Tls {
            identity: Some((
                std::fs::read_to_string(&self.client_cert)?,
                std::fs::read_to_string(&self.client_key)?,
            )),
            ..self.anonymous_tls()?
        })
    }

    /// The store's TLS without a client certificate: it trusts etcd, but
    /// etcd does not know it.
    pub fn anonymous_tls(&self) -> io::Result<Tls> {
        Ok(Tls {
            ca_pem: Some(std::fs::read_to_string(&self.ca)?),
            identity: None,
        })
    }
}

impl EtcdServer {
    /// Starts etcd with its data in `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> io::Result<EtcdServer> {
        let mut servers = EtcdServer::start_cluster(data_dir, 1)?;
        Ok(servers.remove(0))
    }

    /// Starts etcd with its data in `data_dir`, serving its clients over TLS
    /// and refusing those without a certificate of its CA, and waits until
    /// it listens. The certificates are issued in `<data_dir>/pki` by a test
    /// CA ([`EtcdServer::tls`]).
    pub fn start_tls(data_dir: &Path) -> io::Result<EtcdServer> {
        let tls = TlsFiles::issue(&data_dir.join("pki"))?;
        let mut servers = EtcdServer::start_members(data_dir, 1, Some(tls))?;
        Ok(servers.remove(0))
    }

    /// Starts a cluster of `members` etcd processes, each with its data in
    /// `<data_dir>/member-<n>`, and waits until every one listens.
    pub fn start_cluster(data_dir: &Path, members: usize) -> io::Result<Vec<EtcdServer>> {
        EtcdServer::start_members(data_dir, members, None)
    }

    /// Ports are picked free and bound by etcd a moment later, and another
    /// process may take one between: members one of which exits at start
    /// are all started again, on new ports and with no data, up to
    /// [`START_TRIES`] times.
    fn start_members(
        data_dir: &Path,
        members: usize,
        tls: Option<TlsFiles>,
    ) -> io::Result<Vec<EtcdServer>> {
        let mut tries = 1;
        loop {
            match EtcdServer::try_start_members(data_dir, members, tls.clone()) {
                Err(e) if e.kind() == io::ErrorKind::Other && tries < START_TRIES => {
                    tries += 1;
                    for n in 0..members {
                        let data = member_dir(data_dir, members, n).join("etcd");
                        match std::fs::remove_dir_all(data) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                            _ => {}
                        }
                    }
                }
                started => return started,
            }
        }
    }

    fn try_start_members(
        data_dir: &Path,
        members: usize,
        tls: Option<TlsFiles>,
    ) -> io::Result<Vec<EtcdServer>> {
        let mut servers = Vec::new();
        for n in 0..members {
            let dir = member_dir(data_dir, members, n);
            std::fs::create_dir_all(&dir)?;
            servers.push(EtcdServer {
                child: None,
                data_dir: dir,
                client_port: free_port()?,
                peer_port: free_port()?,
                name: format!("member-{n}"),
                initial_cluster: String::new(),
                tls: tls.clone(),
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

    /// The client URL, `http://127.0.0.1:<port>` (`https://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The certificates of an etcd started with [`EtcdServer::start_tls`].
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
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
        let mut command = Command::new(&binary);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = command
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

/// How many times members are started before their failure is returned.
const START_TRIES: u32 = 3;

/// The directory of member `n` of `members` under `data_dir`.
fn member_dir(data_dir: &Path, members: usize, n: usize) -> PathBuf {
    if members == 1 {
        data_dir.to_owned()
    } else {
        data_dir.join(format!("member-{n}"))
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

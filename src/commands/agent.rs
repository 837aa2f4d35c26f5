//! `agent`: a node joining a cluster — it runs the pods bound to it as Wasm
//! components, in this process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use kube::Client;
use tokio::net::TcpListener;
use wasmkube_agent::{Endpoint, EndpointCertificate, Range};
use wasmkube_engine::Engine;

use super::engine::engine;
use super::join::{self, JoinArgs};
use super::shutdown::closed_on_shutdown;
use crate::cluster::Cluster;

/// Joins a cluster as a node.
#[derive(Debug, Args)]
pub struct Agent {
    /// How to reach the API server (without it, the node joins with
    /// `--server` and `--token`, or uses the node kubeconfig it got then:
    /// `DATA_DIR/pki/node.kubeconfig`, whose certificate it renews).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    join: JoinArgs,
    #[command(flatten)]
    node: NodeArgs,
    /// Where the node keeps images, compiled components and pod data.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    /// Where the agent serves its own endpoint (container logs,
    /// port-forward) over TLS, which only the API server may use; its
    /// serving certificate is asked of the cluster (signer
    /// `kubernetes.io/kubelet-serving`) and kept in `DATA_DIR/pki`.
    #[arg(long, default_value = "127.0.0.1:10250")]
    listen: SocketAddr,
}

impl Agent {
    /// Runs the node agent against the cluster of the kubeconfig until the
    /// process is asked to stop.
    pub async fn run(self) -> Result<()> {
        let closed = closed_on_shutdown();
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data dir {}", self.data_dir.display()))?;
        let kubeconfig = match &self.kubeconfig {
            Some(file) => file.clone(),
            None => {
                let name = self.node.name();
                self.join.credentials(&name, &self.data_dir).await?
            }
        };
        let mut cluster = Cluster::find(Some(&kubeconfig)).await?;
        if self.kubeconfig.is_none() {
            let client = cluster.client.clone();
            cluster.client = join::renewing(&kubeconfig, client, closed.clone());
        }
        let client_ca_pem = cluster_ca(&cluster, &kubeconfig)?;
        let engine = engine(&self.data_dir, true)?;
        let mut agent = self
            .node
            .agent(cluster.client, &cluster.server, engine, &self.data_dir)?;
        // Connections home, so the server reaches the agent behind NAT: a
        // kubeconfig without a client certificate (a token's) dials no home.
        match join::home(&kubeconfig) {
            Ok(home) => agent = agent.dial_home(home),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "the agent will not dial home"),
        }
        let listener = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("listening on {}", self.listen))?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Node {}: agent endpoint at https://{}",
            agent.node_name(),
            listener.local_addr()?
        );
        let _ = out.flush();
        drop(out);
        let endpoint = Endpoint {
            listener,
            client_ca_pem,
            certificate: EndpointCertificate::Requested,
        };
        agent.run(endpoint, closed).await?;
        Ok(())
    }
}

/// What makes a node.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's name (default: the host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where pods get their own addresses from, unless the Node has a
    /// `spec.podCIDR` (default: a /16 in 127.64.0.0/10 chosen by the node's
    /// name; any range in 127.0.0.0/8 needs no configuration).
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Option<Range>,
    /// How pods reach other nodes' pods when the node's range is routed
    /// (outside 127.0.0.0/8): `host-gw`, through the other nodes' addresses
    /// (nodes on one link), or `vxlan`, over a VXLAN device (UDP 8472).
    #[arg(long, value_name = "BACKEND", default_value = "host-gw")]
    network_backend: wasmkube_agent::Backend,
    /// Answer cluster DNS (`<service>.<namespace>.svc.cluster.local` and
    /// the like) over UDP at ADDRESS, e.g. `127.0.0.1:5353` (default: the
    /// `kube-system/kube-dns` Service's cluster IP, port 53).
    #[arg(long, value_name = "ADDRESS")]
    dns_listen: Option<SocketAddr>,
    /// Serve the Ingresses of the class `wasmkube` (HTTP) at ADDRESS, e.g.
    /// `127.0.0.1:8081`.
    #[arg(long, value_name = "ADDRESS")]
    ingress_listen: Option<SocketAddr>,
}

impl NodeArgs {
    /// The node's name: the one given, else the host's.
    pub fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(host_name)
    }

    /// The node's agent, running its pods on `engine`; `client` reaches the
    /// API server at `registry` (`host:port`, as the clients' URL has it),
    /// whose built-in registry images naming it are pulled from.
    pub fn agent(
        self,
        client: Client,
        registry: &str,
        engine: Arc<Engine>,
        data_dir: &Path,
    ) -> Result<wasmkube_agent::Agent> {
        let name = self.name();
        let mut agent = wasmkube_agent::Agent::new(
            client,
            registry,
            engine,
            &name,
            data_dir,
            self.pod_cidr,
            self.network_backend,
        )?;
        if let Some(address) = self.dns_listen {
            agent = agent.serve_dns(address);
        }
        if let Some(address) = self.ingress_listen {
            agent = agent.serve_ingress(address);
        }
        Ok(agent)
    }
}

/// The cluster CA the kubeconfig of `cluster` trusts (PEM): the agent's
/// endpoint answers clients with a certificate it issued.
fn cluster_ca(cluster: &Cluster, kubeconfig: &Path) -> Result<String> {
    match &cluster.ca_certificates[..] {
        [] => Err(anyhow::anyhow!(
            "{} names no certificate-authority for its cluster: the agent's endpoint \
             needs the cluster CA to know the API server's client certificate",
            kubeconfig.display()
        )),
        ders => Ok(wasmkube_pki::certificates_pem(ders)),
    }
}

/// The host's name, as a node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

//! `server`: the Kubernetes API and the built-in OCI registry on one
//! listener; with `--control-plane`, the scheduler and the controllers too,
//! each while this server leads. `up` is this with a node beside it.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use kube::Client;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasmkube_agent::{Endpoint, EndpointCertificate, serving_profile};
use wasmkube_apiserver::{ApiServer, Config as ApiConfig, Limits, PolicyHost, kubeconfig};
use wasmkube_engine::Engine;
use wasmkube_pki::Ca;
use wasmkube_plugin_host::PluginHost;
use wasmkube_scheduler::{Config as SchedulerConfig, Serving};

use super::agent::NodeArgs;
use super::controller_manager::{ControllingArgs, control};
use super::engine::engine;
use super::security::{Security, SecurityArgs};
use super::shutdown::shutdown;
use super::store::{self, EtcdArgs};

/// Serves the API; with `--control-plane`, schedules and runs the
/// controllers too.
#[derive(Debug, Args)]
pub struct Server {
    #[command(flatten)]
    server: ServerArgs,
    /// Also run the scheduler and the controllers; with etcd, each while
    /// this process holds its leader Lease (`kube-system/kube-scheduler`,
    /// `kube-system/kube-controller-manager`), so servers sharing one etcd
    /// take over from each other.
    #[arg(long)]
    control_plane: bool,
    #[command(flatten)]
    control: ControlArgs,
}

impl Server {
    /// Serves until the process is asked to stop.
    pub async fn run(self) -> Result<()> {
        let control = self.control_plane.then_some(self.control);
        serve(self.server, control, None).await
    }
}

/// Where a server keeps its data, where it serves and how it secures it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where the store file and the kubeconfig are kept.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    /// Address to serve on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Encrypt the resources an EncryptionConfiguration file names (as the
    /// Kubernetes API server's flag of the same name) in the store.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,
    /// Reads the API serves at once; more are answered 429 (watches and other
    /// long-running requests, and system:masters, are not counted).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_requests_inflight)]
    max_requests_inflight: usize,
    /// Writes the API serves at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_mutating_requests_inflight)]
    max_mutating_requests_inflight: usize,
    /// Watches one user may hold open at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_watches_per_user)]
    max_watches_per_user: usize,
    /// The largest blob (image layer) the built-in registry takes.
    #[arg(long, value_name = "BYTES", default_value_t = wasmkube_registry::DEFAULT_MAX_BLOB)]
    registry_max_blob_bytes: u64,
    /// Settings of the built-in admission policies (an
    /// AdmissionConfiguration, as Kubernetes' flag of the same name reads):
    /// PodSecurity's default levels and exemptions.
    #[arg(long, value_name = "FILE")]
    admission_control_config_file: Option<PathBuf>,
    #[command(flatten)]
    security: SecurityArgs,
}

/// The scheduler and the controllers, run beside the API server.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The scheduler's profiles (a KubeSchedulerConfiguration; default: one
    /// profile, `default-scheduler`, with the default plugins).
    #[arg(long, value_name = "FILE")]
    scheduler_config: Option<PathBuf>,
    /// Serve the scheduler's metrics (Prometheus text) at
    /// `http://ADDRESS/metrics`.
    #[arg(long, value_name = "ADDRESS")]
    scheduler_metrics: Option<SocketAddr>,
    #[command(flatten)]
    controlling: ControllingArgs,
}

/// Serves the API; with a control plane, runs the scheduler and the
/// controllers (each while this process leads); with a node, that node's
/// agent, in the same process.
pub async fn serve(
    args: ServerArgs,
    control: Option<ControlArgs>,
    node: Option<NodeArgs>,
) -> Result<()> {
    let stopping = shutdown();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    // Only servers sharing etcd can stand by for each other: they elect
    // leaders; one with its own store file leads alone.
    let elect = args.etcd.chosen();
    let store = store::open(
        &args.data_dir,
        &args.etcd,
        args.encryption_provider_config.as_deref(),
    )
    .await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let mut local = listener.local_addr()?;
    let closed = CancellationToken::new();
    let security = Security::prepare(
        &args.security,
        &args.data_dir,
        local,
        store.clone(),
        &closed,
    )
    .await?;
    if local.ip().is_unspecified() {
        local.set_ip([127, 0, 0, 1].into());
    }
    let url = format!("https://{local}");
    // Images naming this server's address are in its built-in registry.
    let own_registry = local.to_string();
    let config = args.data_dir.join("kubeconfig");
    let admin = security.kubeconfig(&url, ADMIN, &["system:masters"])?;
    kubeconfig::write(&config, &admin).context("writing the kubeconfig")?;
    announce(&url, local, &config, node.is_some());
    // Admission policies run in Wasm, so every server has the engine.
    let engine = engine(&args.data_dir, node.is_some())?;
    let plugins = PluginHost::new(engine.clone());
    let policies = PolicyHost {
        builtin: super::admission::builtin(
            &plugins,
            args.admission_control_config_file.as_deref(),
        )?,
        plugins,
        plugin_dir: args.data_dir.join("plugins"),
    };
    let api = ApiServer::start_with(
        store.clone(),
        ApiConfig {
            access: security.access.clone(),
            kubelet_client: Some(security.kubelet_client.clone()),
            limits: Limits {
                max_requests_inflight: args.max_requests_inflight,
                max_mutating_requests_inflight: args.max_mutating_requests_inflight,
                max_watches_per_user: args.max_watches_per_user,
            },
            policies: Some(policies),
            ..ApiConfig::default()
        },
    )
    .await?;
    wasmkube_apiserver::create_cluster_services(&store, local)
        .await
        .context("creating the kubernetes and kube-dns Services")?;
    let registry = wasmkube_registry::Registry::open_with_max_blob(
        &args.data_dir.join("registry"),
        args.registry_max_blob_bytes,
    )
    .context("opening the built-in registry")?;
    let router = api.router_with(registry.router());
    let mut leading = Vec::new();
    if let Some(control) = control {
        let scheduler = security.client(&url, "system:kube-scheduler", &[]).await?;
        let controllers = security
            .client(&url, "system:kube-controller-manager", &[])
            .await?;
        let clients = Clients {
            scheduler,
            controllers,
            signing: security.ca(),
        };
        leading = lead(
            control,
            clients,
            &engine,
            &args.data_dir,
            elect,
            &closed,
            &own_registry,
        )?;
    }
    let mut node_agent = None;
    if let Some(node) = node {
        let name = format!("system:node:{}", node.name());
        let client = security.client(&url, &name, &["system:nodes"]).await?;
        // Its network plugins compile (once) beside the serving API.
        let agent = tokio::task::block_in_place(|| {
            node.agent(client, &own_registry, engine, &args.data_dir)
        })?;
        // The in-process agent serves its endpoint on a free loopback port,
        // with a certificate from the CA at hand.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let profile = serving_profile(agent.node_name(), listener.local_addr()?.ip());
        let endpoint = Endpoint {
            listener,
            client_ca_pem: security.ca_pem().to_owned(),
            certificate: EndpointCertificate::Issued(security.issue(&profile)?),
        };
        let closed = closed.clone();
        node_agent = Some(tokio::spawn(async move {
            if let Err(e) = agent.run(endpoint, closed).await {
                tracing::error!(error = %e, "the node agent stopped");
            }
        }));
    }
    let stopped = closed.clone();
    wasmkube_pki::serve(listener, router, security.tls.clone(), async move {
        stopping.await;
        stopped.cancel();
        // Leaders give their leases up through the API while it serves.
        let stopped = futures::future::join_all(leading);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stopped).await;
        api.close();
    })
    .await?;
    // The node's pods stop within their grace periods.
    if let Some(agent) = node_agent {
        let _ = agent.await;
    }
    Ok(())
}

/// Says where the API serves and how to reach it. A closed stdout must not
/// stop a server: what it says here is a courtesy.
fn announce(url: &str, local: SocketAddr, config: &Path, node: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Serving the Kubernetes API at {url}");
    let _ = writeln!(out, "  kubectl:   export KUBECONFIG={}", config.display());
    let _ = writeln!(
        out,
        "  registry:  wasmkube push FILE.wasm (images {local}/NAME:TAG)"
    );
    if node {
        let _ = writeln!(
            out,
            "  more nodes: wasmkube agent --server {url} --token \"$(wasmkube token create \\
              --kubeconfig {})\" --node-name NAME --data-dir DIR --listen ADDRESS",
            config.display()
        );
    }
    let _ = out.flush();
}

/// The cluster's admin, as the kubeconfig a server writes names them.
const ADMIN: &str = "wasmkube-admin";

/// What the components a control plane runs are given: a client each, with
/// its own identity, and the CA with which the controllers sign nodes'
/// certificates.
struct Clients {
    scheduler: Client,
    controllers: Client,
    signing: Arc<Ca>,
}

/// Starts the scheduler and the controllers, each while this process leads
/// (always, without `elect`), until `closed`. A bad scheduler configuration
/// stops the start; its plugins compile while the API serves.
fn lead(
    args: ControlArgs,
    clients: Clients,
    engine: &Arc<Engine>,
    data_dir: &Path,
    elect: bool,
    closed: &CancellationToken,
    registry: &str,
) -> Result<Vec<JoinHandle<()>>> {
    let config = args.scheduler_config.as_deref();
    let serving = Serving {
        config: SchedulerConfig::read(config).map_err(anyhow::Error::msg)?,
        metrics: args.scheduler_metrics,
        host: PluginHost::new(engine.clone()),
        data_dir: data_dir.to_owned(),
        plugin_dir: data_dir.join("plugins"),
        elect,
        registry: registry.to_owned(),
    };
    let (scheduler_client, closed_too) = (clients.scheduler, closed.clone());
    let scheduler = tokio::spawn(async move {
        if let Err(e) = wasmkube_scheduler::serve(scheduler_client, serving, closed_too).await {
            tracing::error!(error = format!("{e:#}"), "the scheduler stopped");
        }
    });
    let root_ca = clients.signing.cert_pem().to_owned();
    let settings = args
        .controlling
        .settings(Some(clients.signing), Some(root_ca));
    let controllers = tokio::spawn(control(
        clients.controllers,
        settings,
        elect,
        closed.clone(),
    ));
    Ok(vec![scheduler, controllers])
}

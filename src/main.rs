//! `wasmkube`: the command line. Parses arguments and wires the parts together;
//! everything it runs lives in the workspace's crates.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use kube::Client;
use kube::config::{Config as KubeConfig, Kubeconfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use wasmkube_agent::{Agent, Range};
use wasmkube_apiserver::{ApiServer, kubeconfig};
use wasmkube_runtime::{Credentials, ImageStore, normalize};
use wasmkube_scheduler::Config as SchedulerConfig;
use wasmkube_store::Store;
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME};

mod leader;

#[derive(Debug, Parser)]
#[command(
    name = "wasmkube",
    version,
    about = "A Kubernetes-compatible orchestrator for WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Kubernetes API; with `--control-plane`, schedule and run
    /// the controllers too, while this server leads.
    Server(ServerCommand),
    /// Run a single-node cluster in one process: the API server, the
    /// scheduler, the controllers and a node agent.
    Up(UpArgs),
    /// Place pending pods on nodes, with Wasm scheduler plugins.
    Scheduler(SchedulerArgs),
    /// Run the controllers (workloads, node lifecycle, endpoints, garbage
    /// collection…) against a cluster.
    ControllerManager(ControllerArgs),
    /// Join a cluster as a node: run the pods bound to it as Wasm components.
    Agent(AgentArgs),
    /// Manage the components of a node's local image store.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Put a component in the local image store of the node whose data dir is
    /// given (for air-gapped nodes); pods then name it with
    /// `imagePullPolicy: Never` or `IfNotPresent`.
    Import {
        /// The node's data dir.
        #[arg(long, default_value = "wasmkube-data")]
        data_dir: PathBuf,
        /// The component (`.wasm`).
        file: PathBuf,
        /// The name pods use: `NAME[:TAG]`.
        reference: String,
    },
    /// Push a component to an OCI registry as a Wasm artifact, for pods to
    /// pull (`image: REGISTRY/NAME:TAG`). Registries on loopback are spoken to
    /// over plain HTTP.
    Push {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Where it goes: `REGISTRY/NAME[:TAG]`.
        reference: String,
        /// A user of the registry (the password comes from
        /// `WASMKUBE_REGISTRY_PASSWORD`).
        #[arg(long)]
        username: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Where the store file and the kubeconfig are kept.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    /// Address to serve on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Keep objects in etcd instead of the embedded store: `etcd=http://HOST:PORT[,…]`.
    #[arg(long, value_name = "etcd=URL[,URL…]", value_parser = parse_etcd)]
    store: Option<EtcdEndpoints>,
}

#[derive(Debug, Args)]
struct ServerCommand {
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

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    control: ControlArgs,
}

/// The scheduler and the controllers, run beside the API server.
#[derive(Debug, Args)]
struct ControlArgs {
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

#[derive(Debug, Args)]
struct SchedulerArgs {
    /// How to reach the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The profiles (a KubeSchedulerConfiguration; default: one profile,
    /// `default-scheduler`, with the default plugins).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where compiled plugins and pulled plugin images are kept.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    /// Serve the metrics (Prometheus text) at `http://ADDRESS/metrics`.
    #[arg(long, value_name = "ADDRESS")]
    metrics: Option<SocketAddr>,
    /// Schedule only while holding the Lease `kube-system/kube-scheduler`,
    /// so several schedulers can stand by (`--leader-elect=false`: always).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
}

#[derive(Debug, Args)]
struct ControllerArgs {
    /// How to reach the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    controlling: ControllingArgs,
    /// Run the controllers only while holding the Lease
    /// `kube-system/kube-controller-manager`, so several can stand by
    /// (`--leader-elect=false`: always).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
}

#[derive(Debug, Args)]
struct ControllingArgs {
    /// How long a node may go unheard (its Lease not renewed) before it is
    /// marked Unknown and tainted unreachable: `40s`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Give every Node a `spec.podCIDR` out of `--cluster-cidr`
    /// (`--allocate-node-cidrs=false`: agents use their own `--pod-cidr`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The range of every pod address.
    #[arg(long, value_name = "CIDR", default_value = "127.64.0.0/10")]
    cluster_cidr: Range,
    /// The prefix length of each node's pod range.
    #[arg(long, value_name = "BITS", default_value_t = 16)]
    node_cidr_mask_size: u8,
}

impl ControllingArgs {
    fn settings(&self) -> wasmkube_controllers::Settings {
        let ranges = wasmkube_controllers::PodRanges {
            cluster: self.cluster_cidr,
            node_bits: self.node_cidr_mask_size,
        };
        wasmkube_controllers::Settings {
            node_monitor_grace: self.node_monitor_grace_period,
            pod_ranges: self.allocate_node_cidrs.then_some(ranges),
        }
    }
}

/// A duration as Kubernetes' flags write it: `500ms`, `40s`, `2m`, `1h`.
fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("expected a duration like 40s, got {text:?}"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => bail!("expected a duration like 40s (ms, s, m or h), got {text:?}"),
    };
    Ok(std::time::Duration::from_millis(number * millis))
}

/// The scheduler's configuration, read from `config` (or the defaults).
fn scheduler_config(config: Option<&Path>) -> Result<SchedulerConfig> {
    let Some(file) = config else {
        return Ok(SchedulerConfig::default());
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    SchedulerConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// What the scheduler is told to do.
struct Scheduling {
    config: SchedulerConfig,
    /// Where its metrics are served, if anywhere.
    metrics: Option<SocketAddr>,
}

/// Loads the profiles (compiling their plugins, under `data_dir`; a bad
/// configuration stops the start), serves the metrics, then schedules until
/// `closed`: with `elect`, only while this process holds the scheduler's
/// Lease (loading the profiles again each time it takes the lease over).
async fn schedule(
    client: Client,
    scheduling: Scheduling,
    data_dir: PathBuf,
    elect: bool,
    closed: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let data_dir = data_dir.join("scheduler");
    // Compiling the plugins the first time takes seconds: a stop asked
    // meanwhile is not kept waiting.
    let first = tokio::select! {
        loaded = wasmkube_scheduler::load(&scheduling.config, &data_dir) => loaded?,
        () = until_closed(closed.clone()) => return Ok(()),
    };
    let metrics = first.metrics.clone();
    if let Some(address) = scheduling.metrics {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let metrics = metrics.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || async move { metrics.render() }),
        );
        tracing::info!(address = %listener.local_addr()?, "serving the scheduler's metrics");
        let mut closing = closed.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        });
    }
    let names: Vec<&String> = first.frameworks.keys().collect();
    tracing::info!(profiles = ?names, "scheduling");
    let mut first = Some(first);
    let work = |stop| {
        let (client, config, data_dir) =
            (client.clone(), scheduling.config.clone(), data_dir.clone());
        let (loaded, metrics) = (first.take(), metrics.clone());
        async move {
            let profiles = match loaded {
                Some(profiles) => Ok(profiles),
                None => wasmkube_scheduler::load(&config, &data_dir).await,
            };
            let result = match profiles {
                Ok(mut profiles) => {
                    profiles.metrics = metrics;
                    wasmkube_scheduler::run(client, profiles, stop).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::error!(error = format!("{e:#}"), "the scheduler stopped");
            }
        }
    };
    elected(&client, "kube-scheduler", elect, closed, work).await;
    Ok(())
}

/// Runs the controllers until `closed`: with `elect`, only while this
/// process holds the controller manager's Lease.
async fn control_plane(
    client: Client,
    settings: wasmkube_controllers::Settings,
    elect: bool,
    closed: tokio::sync::watch::Receiver<bool>,
) {
    let work = |stop| wasmkube_controllers::run(client.clone(), settings.clone(), stop);
    elected(&client, "kube-controller-manager", elect, closed, work).await;
}

/// Runs `work` until `closed`: with `elect`, while this process holds the
/// Lease `kube-system/<lease>`.
async fn elected<W, F>(
    client: &Client,
    lease: &'static str,
    elect: bool,
    closed: tokio::sync::watch::Receiver<bool>,
    mut work: W,
) where
    W: FnMut(tokio::sync::watch::Receiver<bool>) -> F,
    F: Future<Output = ()>,
{
    if elect {
        let election = leader::Election::new(client.clone(), lease, leader::identity());
        election.lead(closed, work).await;
    } else {
        work(closed).await;
    }
}

/// Resolves once `closed` turns true.
async fn until_closed(mut closed: tokio::sync::watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

/// A signal that turns true when the process is asked to stop.
fn closed_on_shutdown() -> tokio::sync::watch::Receiver<bool> {
    let (closing, closed) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        closing.send_replace(true);
    });
    closed
}

/// What makes a node.
#[derive(Debug, Args)]
struct NodeArgs {
    /// The node's name (default: the host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where pods get their own addresses from, unless the Node has a
    /// `spec.podCIDR` (default: a /16 in 127.64.0.0/10 chosen by the node's
    /// name; any range in 127.0.0.0/8 needs no configuration).
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Option<Range>,
    /// Answer cluster DNS (`<service>.<namespace>.svc.cluster.local` and
    /// the like) over UDP at ADDRESS, e.g. `127.0.0.1:53`.
    #[arg(long, value_name = "ADDRESS")]
    dns_listen: Option<SocketAddr>,
    /// Serve the Ingresses of the class `wasmkube` (HTTP) at ADDRESS, e.g.
    /// `127.0.0.1:8081`.
    #[arg(long, value_name = "ADDRESS")]
    ingress_listen: Option<SocketAddr>,
}

impl NodeArgs {
    fn agent(self, client: Client, data_dir: &Path) -> Result<Agent> {
        let name = self.node_name.unwrap_or_else(host_name);
        let mut agent = Agent::new(client, &name, data_dir, self.pod_cidr)?;
        if let Some(address) = self.dns_listen {
            agent = agent.serve_dns(address);
        }
        if let Some(address) = self.ingress_listen {
            agent = agent.serve_ingress(address);
        }
        Ok(agent)
    }
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// How to reach the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
    /// Where the node keeps images, compiled components and pod data.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    /// Where the agent serves its own endpoints (container logs), which the API
    /// server reaches.
    #[arg(long, default_value = "127.0.0.1:10250")]
    listen: SocketAddr,
}

/// The host's name, as a node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The client URLs of an etcd cluster.
#[derive(Debug, Clone)]
struct EtcdEndpoints(Vec<String>);

fn parse_etcd(spec: &str) -> Result<EtcdEndpoints> {
    let Some(urls) = spec.strip_prefix("etcd=") else {
        bail!("expected etcd=http://HOST:PORT[,…], got {spec:?}");
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    if let Some(bad) = urls.iter().find(|u| !u.starts_with("http://")) {
        bail!("etcd endpoint {bad:?} must be an http:// URL");
    }
    Ok(EtcdEndpoints(urls))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(run(Cli::parse().command));
    // Work that cannot be cut short (a plugin compiling when a stop comes)
    // is left behind, not waited for: what had to finish has finished.
    runtime.shutdown_background();
    result
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Server(args) => {
            let control = args.control_plane.then_some(args.control);
            server(args.server, control, None).await
        }
        Command::Up(args) => server(args.server, Some(args.control), Some(args.node)).await,
        Command::Agent(args) => agent(args).await,
        Command::Scheduler(args) => {
            let scheduling = Scheduling {
                config: scheduler_config(args.config.as_deref())?,
                metrics: args.metrics,
            };
            let client = client(&args.kubeconfig).await?;
            let closed = closed_on_shutdown();
            let elect = args.leader_elect;
            schedule(client, scheduling, args.data_dir, elect, closed).await
        }
        Command::ControllerManager(args) => {
            let client = client(&args.kubeconfig).await?;
            let settings = args.controlling.settings();
            control_plane(client, settings, args.leader_elect, closed_on_shutdown()).await;
            Ok(())
        }
        Command::Image(ImageCommand::Import {
            data_dir,
            file,
            reference,
        }) => {
            let images = ImageStore::open(&data_dir)
                .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
            let image = images.import(&file, &reference)?;
            println!("{} is {}", normalize(&reference)?, image.digest);
            Ok(())
        }
        Command::Image(ImageCommand::Push {
            file,
            reference,
            username,
        }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let credentials = username.map(|username| Credentials {
                username,
                password: std::env::var("WASMKUBE_REGISTRY_PASSWORD").unwrap_or_default(),
            });
            let url = wasmkube_runtime::push(bytes, &reference, credentials.as_ref()).await?;
            println!("pushed {reference}: {url}");
            Ok(())
        }
    }
}

/// Serves the API; with a control plane, runs the scheduler and the
/// controllers (each while this process leads); with a node, that node's
/// agent, in the same process.
async fn server(
    args: ServerArgs,
    control: Option<ControlArgs>,
    node: Option<NodeArgs>,
) -> Result<()> {
    let stopping = shutdown();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    // Only servers sharing etcd can stand by for each other: they elect
    // leaders; one with its own store file leads alone.
    let elect = args.store.is_some();
    let store: Arc<dyn Store> = match args.store {
        None => {
            let path = args.data_dir.join(FILE_NAME);
            let store = EmbeddedStore::open(&path, Default::default())?;
            if let Some(r) = store.recovery() {
                tracing::warn!(
                    torn_bytes = r.torn_bytes,
                    "store recovered from a torn write"
                );
            }
            Arc::new(store)
        }
        Some(EtcdEndpoints(endpoints)) => {
            let options = wasmkube_store_etcd::Options::new(endpoints);
            Arc::new(wasmkube_store_etcd::EtcdStore::connect(options).await?)
        }
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        local.set_ip([127, 0, 0, 1].into());
    }
    let url = format!("http://{local}");
    let config = args.data_dir.join("kubeconfig");
    kubeconfig::write(&config, &url).context("writing the kubeconfig")?;
    // A closed stdout must not stop a server: what it says here is a courtesy.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Serving the Kubernetes API at {url}");
    let _ = writeln!(out, "kubectl --kubeconfig {} version", config.display());
    let _ = out.flush();
    drop(out);
    let api = ApiServer::start(store).await?;
    let router = api.router();
    let (closing, closed) = tokio::sync::watch::channel(false);
    let client = Client::try_from(KubeConfig::new(url.parse()?))?;
    let mut leading = Vec::new();
    if let Some(control) = control {
        // A bad configuration stops the start; its plugins compile while the
        // API serves.
        let scheduling = Scheduling {
            config: scheduler_config(control.scheduler_config.as_deref())?,
            metrics: control.scheduler_metrics,
        };
        let (data_dir, scheduler_client, closed_too) =
            (args.data_dir.clone(), client.clone(), closed.clone());
        leading.push(tokio::spawn(async move {
            if let Err(e) =
                schedule(scheduler_client, scheduling, data_dir, elect, closed_too).await
            {
                tracing::error!(error = format!("{e:#}"), "the scheduler stopped");
            }
        }));
        let settings = control.controlling.settings();
        leading.push(tokio::spawn(control_plane(
            client.clone(),
            settings,
            elect,
            closed.clone(),
        )));
    }
    if let Some(node) = node {
        // Its network plugins compile (once) beside the serving API.
        let agent = tokio::task::block_in_place(|| node.agent(client, &args.data_dir))?;
        // The in-process agent serves its endpoint on a free loopback port.
        let endpoint = TcpListener::bind("127.0.0.1:0").await?;
        let closed = closed.clone();
        tokio::spawn(async move {
            if let Err(e) = agent.run(endpoint, closed).await {
                tracing::error!(error = %e, "the node agent stopped");
            }
        });
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stopping.await;
            closing.send_replace(true);
            // Leaders give their leases up through the API while it serves.
            let stopped = futures::future::join_all(leading);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stopped).await;
            api.close();
        })
        .await?;
    Ok(())
}

/// A client of the cluster of a kubeconfig.
async fn client(kubeconfig: &Path) -> Result<Client> {
    let read = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = KubeConfig::from_custom_kubeconfig(read, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Runs a node agent against the cluster of a kubeconfig.
async fn agent(args: AgentArgs) -> Result<()> {
    let stopping = shutdown();
    let client = client(&args.kubeconfig).await?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let agent = args.node.agent(client, &args.data_dir)?;
    let endpoint = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Node {}: agent endpoint at http://{}",
        agent.node_name(),
        endpoint.local_addr()?
    );
    let _ = out.flush();
    drop(out);
    let (closing, closed) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stopping.await;
        closing.send_replace(true);
    });
    agent.run(endpoint, closed).await?;
    Ok(())
}

/// Resolves once the process is asked to stop: SIGTERM, or SIGINT (Ctrl-C).
fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed now, not when first polled: a signal that comes while the
    // process is still starting is not lost.
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    }
}

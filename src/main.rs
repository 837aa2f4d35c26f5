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
use wasmkube_engine::{Engine, Settings};
use wasmkube_plugin_host::PluginHost;
use wasmkube_scheduler::{Config as SchedulerConfig, Serving};
use wasmkube_store::Store;
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME};

mod cluster;
mod exit;
mod settings;
mod verbs;
mod wasm;

use cluster::Cluster;

#[derive(Debug, Parser)]
#[command(
    name = "wasmkube",
    version,
    about = "A Kubernetes-compatible orchestrator for WebAssembly",
    after_help = settings::AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single-node cluster in one process: the API server (with the
    /// built-in OCI registry), the scheduler, the controllers and a node
    /// agent, on the embedded store in the data dir.
    #[command(
        after_help = "Examples:\n  wasmkube up\n  wasmkube up --data-dir /var/lib/wasmkube \
--listen 0.0.0.0:6443 --node-name edge-1\n  wasmkube up --store etcd=http://127.0.0.1:2379"
    )]
    Up(UpArgs),
    /// Serve the Kubernetes API and the built-in OCI registry; with
    /// `--control-plane`, schedule and run the controllers too, while this
    /// server leads.
    #[command(
        after_help = "Example (two of these on one etcd stand by for each other):\n  \
wasmkube server --control-plane --store etcd=http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379"
    )]
    Server(ServerCommand),
    /// Join a cluster as a node: run the pods bound to it as Wasm components.
    #[command(
        after_help = "Example:\n  wasmkube agent --kubeconfig wasmkube-data/kubeconfig \
--node-name edge-2 --data-dir edge-2 --listen 127.0.0.1:10251"
    )]
    Agent(AgentArgs),
    /// Place pending pods on nodes, with Wasm scheduler plugins.
    Scheduler(SchedulerArgs),
    /// Run the controllers (workloads, node lifecycle, endpoints, garbage
    /// collection…) against a cluster.
    ControllerManager(ControllerArgs),
    /// Run a Wasm component as a Deployment (and, with a port, a Service):
    /// a file is pushed to the cluster's built-in registry first.
    #[command(
        after_help = "Examples:\n  wasmkube run hello --wasm http_hello.wasm --port 8080\n  \
wasmkube run batch --wasm 127.0.0.1:6443/batch:1 --replicas 3 -- --verbose"
    )]
    Run(Verb<wasm::RunArgs>),
    /// Push a Wasm component to an OCI registry as a Wasm artifact (the
    /// cluster's built-in registry by default).
    #[command(after_help = "Examples:\n  wasmkube push hello.wasm            \
# to the cluster's registry, as hello:latest\n  wasmkube push hello.wasm hello:1\n  \
wasmkube push hello.wasm registry.example.com/team/hello:1 --username me")]
    Push(Verb<wasm::PushArgs>),
    /// Manage the components of a node's local image store.
    Image(ImageArgs),
    /// Load, list and unload plugins (Plugin objects).
    #[command(
        after_help = "Examples:\n  wasmkube plugin load prefer_edge.wasm --name prefer-edge \
--extension-points Score --weight 5 --args '{\"tier\":\"edge\"}'\n  wasmkube plugin ls\n  \
wasmkube plugin unload prefer-edge"
    )]
    Plugin(Verb<PluginArgs>),
    /// Show objects, as `kubectl get` does.
    #[command(
        after_help = "Examples:\n  wasmkube get pods\n  wasmkube get deploy,svc -n shop -o wide\n  \
wasmkube get pod/web -o yaml\n  wasmkube get pods -A -l app=web"
    )]
    Get(Verb<verbs::GetArgs>),
    /// Show objects in detail, with the Events about them.
    #[command(after_help = "Example:\n  wasmkube describe pod web")]
    Describe(Verb<verbs::DescribeArgs>),
    /// Create or update objects from manifests (server-side apply).
    #[command(
        after_help = "Examples:\n  wasmkube apply -f examples/deployment/web.yaml\n  \
cat app.yaml | wasmkube apply -f -"
    )]
    Apply(Verb<verbs::ApplyArgs>),
    /// Delete objects.
    #[command(
        after_help = "Examples:\n  wasmkube delete pod web\n  wasmkube delete deploy/web svc/web\n  \
wasmkube delete -f examples/deployment/web.yaml"
    )]
    Delete(Verb<verbs::DeleteArgs>),
    /// Print a container's log.
    #[command(after_help = "Examples:\n  wasmkube logs hello\n  wasmkube logs web -f --tail 10")]
    Logs(Verb<verbs::LogsArgs>),
    /// Move a cluster between stores: a snapshot of the embedded store (or
    /// etcd) restored into etcd (or a new data dir).
    #[command(
        subcommand,
        after_help = "Example (stop `wasmkube up` first):\n  \
wasmkube store snapshot cluster.snap --data-dir wasmkube-data\n  \
wasmkube store restore cluster.snap --store etcd=http://127.0.0.1:2379"
    )]
    Store(StoreCommand),
    /// Print a shell's completion script: `source <(wasmkube completion bash)`.
    Completion { shell: clap_complete::Shell },
}

/// A client verb's own arguments, and how it finds the cluster.
#[derive(Debug, Args)]
struct Verb<T: Args> {
    /// The cluster's kubeconfig (default: `KUBECONFIG`, else `~/.kube/config`,
    /// else `wasmkube-data/kubeconfig`).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    args: T,
}

impl<T: Args> Verb<T> {
    /// The cluster the verb works on.
    async fn cluster(&self) -> Result<Cluster> {
        Cluster::find(self.kubeconfig.as_deref()).await
    }
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// The node's data dir.
    #[arg(long, default_value = "wasmkube-data", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: wasm::ImageCommand,
}

#[derive(Debug, Args)]
struct PluginArgs {
    #[command(subcommand)]
    command: wasm::PluginCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write every object of a store to FILE (the embedded store must not
    /// be in use: stop `wasmkube up` first).
    Snapshot(StoreArgs),
    /// Write every object of a snapshot into an empty store.
    Restore(StoreArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// The data dir of the embedded store.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    /// etcd instead of the embedded store: `etcd=http://HOST:PORT[,…]`.
    #[arg(long, value_name = "etcd=URL[,URL…]", value_parser = parse_etcd)]
    store: Option<EtcdEndpoints>,
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

/// Runs the controllers until `closed`: with `elect`, only while this
/// process holds the controller manager's Lease.
async fn control_plane(
    client: Client,
    settings: wasmkube_controllers::Settings,
    elect: bool,
    closed: tokio::sync::watch::Receiver<bool>,
) {
    let work = |stop| wasmkube_controllers::run(client.clone(), settings.clone(), stop);
    wasmkube_leader::elected(&client, "kube-controller-manager", elect, closed, work).await;
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
    fn agent(self, client: Client, engine: Arc<Engine>, data_dir: &Path) -> Result<Agent> {
        let name = self.node_name.unwrap_or_else(host_name);
        let mut agent = Agent::new(client, engine, &name, data_dir, self.pod_cidr)?;
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

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let command = match settings::parse::<Cli>() {
        Ok(cli) => cli.command,
        Err(e) => e.exit(),
    };
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| {
            let result = runtime.block_on(run(command));
            // Work that cannot be cut short (a plugin compiling when a stop
            // comes) is left behind, not waited for: what had to finish has
            // finished.
            runtime.shutdown_background();
            result
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit::Failure::of(&e).code())
        }
    }
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
            let serving = Serving {
                config: scheduler_config(args.config.as_deref())?,
                metrics: args.metrics,
                host: PluginHost::new(engine(&args.data_dir, false)?),
                data_dir: args.data_dir,
                elect: args.leader_elect,
            };
            let client = client(&args.kubeconfig).await?;
            wasmkube_scheduler::serve(client, serving, closed_on_shutdown()).await
        }
        Command::ControllerManager(args) => {
            let client = client(&args.kubeconfig).await?;
            let settings = args.controlling.settings();
            control_plane(client, settings, args.leader_elect, closed_on_shutdown()).await;
            Ok(())
        }
        Command::Image(args) => wasm::image(&args.data_dir, args.command),
        Command::Push(push) => {
            // A reference naming its registry needs no cluster.
            let named = push
                .args
                .reference
                .as_deref()
                .is_some_and(wasmkube_oci::names_a_registry);
            let cluster = match named {
                true => None,
                false => Some(push.cluster().await?),
            };
            wasm::push(cluster.as_ref(), push.args).await.map(drop)
        }
        Command::Run(run) => wasm::run(&run.cluster().await?, run.args).await,
        Command::Plugin(plugin) => {
            wasm::plugin(&plugin.cluster().await?, plugin.args.command).await
        }
        Command::Get(get) => verbs::get(&get.cluster().await?, get.args).await,
        Command::Describe(describe) => {
            verbs::describe(&describe.cluster().await?, describe.args).await
        }
        Command::Apply(apply) => verbs::apply(&apply.cluster().await?, apply.args).await,
        Command::Delete(delete) => verbs::delete(&delete.cluster().await?, delete.args).await,
        Command::Logs(logs) => verbs::logs(&logs.cluster().await?, logs.args).await,
        Command::Store(command) => store_command(command).await,
        Command::Completion { shell } => {
            let mut command = settings::command::<Cli>()?;
            clap_complete::generate(shell, &mut command, "wasmkube", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The store a `store` subcommand works on.
/// The store in `data_dir` (made if missing), or the etcd of `etcd`.
async fn open_store(data_dir: &Path, etcd: Option<&EtcdEndpoints>) -> Result<Arc<dyn Store>> {
    Ok(match etcd {
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating data dir {}", data_dir.display()))?;
            let store = EmbeddedStore::open(data_dir.join(FILE_NAME), Default::default())?;
            if let Some(r) = store.recovery() {
                tracing::warn!(
                    torn_bytes = r.torn_bytes,
                    "store recovered from a torn write"
                );
            }
            Arc::new(store)
        }
        Some(EtcdEndpoints(endpoints)) => {
            let options = wasmkube_store_etcd::Options::new(endpoints.clone());
            Arc::new(wasmkube_store_etcd::EtcdStore::connect(options).await?)
        }
    })
}

async fn store_command(command: StoreCommand) -> Result<()> {
    use wasmkube_store::snapshot;
    match command {
        StoreCommand::Snapshot(args) => {
            let store = open_store(&args.data_dir, args.store.as_ref()).await?;
            let file = std::fs::File::create(&args.file)
                .with_context(|| format!("creating {}", args.file.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let moved = snapshot::snapshot(store.as_ref(), &mut out).await?;
            out.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .with_context(|| format!("writing {}", args.file.display()))?;
            println!(
                "{} keys at revision {} written to {}",
                moved.keys,
                moved.revision,
                args.file.display()
            );
        }
        StoreCommand::Restore(args) => {
            let file = std::fs::File::open(&args.file).map_err(|e| {
                exit::Failure::Usage.because(format!("opening {}: {e}", args.file.display()))
            })?;
            let store = open_store(&args.data_dir, args.store.as_ref()).await?;
            let mut input = std::io::BufReader::new(file);
            let moved = snapshot::restore(store.as_ref(), &mut input).await?;
            println!(
                "{} keys (taken at revision {}) restored",
                moved.keys, moved.revision
            );
        }
    }
    Ok(())
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
    let store = open_store(&args.data_dir, args.store.as_ref()).await?;
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
    let _ = writeln!(out, "  kubectl:   export KUBECONFIG={}", config.display());
    let _ = writeln!(
        out,
        "  registry:  wasmkube push FILE.wasm (images {local}/NAME:TAG)"
    );
    if node.is_some() {
        let _ = writeln!(
            out,
            "  more nodes: wasmkube agent --kubeconfig {} --node-name NAME --data-dir DIR \\
              --listen ADDRESS",
            config.display()
        );
    }
    let _ = out.flush();
    drop(out);
    let api = ApiServer::start(store).await?;
    let registry = wasmkube_registry::Registry::open(&args.data_dir.join("registry"))
        .context("opening the built-in registry")?;
    let router = api.router().merge(registry.router());
    let (closing, closed) = tokio::sync::watch::channel(false);
    let client = Client::try_from(KubeConfig::new(url.parse()?))?;
    let engine = match (&control, &node) {
        (None, None) => None,
        _ => Some(engine(&args.data_dir, node.is_some())?),
    };
    let mut leading = Vec::new();
    if let (Some(control), Some(engine)) = (control, &engine) {
        // A bad configuration stops the start; its plugins compile while the
        // API serves.
        let serving = Serving {
            config: scheduler_config(control.scheduler_config.as_deref())?,
            metrics: control.scheduler_metrics,
            host: PluginHost::new(engine.clone()),
            data_dir: args.data_dir.clone(),
            elect,
        };
        let (scheduler_client, closed_too) = (client.clone(), closed.clone());
        leading.push(tokio::spawn(async move {
            if let Err(e) = wasmkube_scheduler::serve(scheduler_client, serving, closed_too).await {
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
    let mut node_agent = None;
    if let (Some(node), Some(engine)) = (node, engine) {
        // Its network plugins compile (once) beside the serving API.
        let agent = tokio::task::block_in_place(|| node.agent(client, engine, &args.data_dir))?;
        // The in-process agent serves its endpoint on a free loopback port.
        let endpoint = TcpListener::bind("127.0.0.1:0").await?;
        let closed = closed.clone();
        node_agent = Some(tokio::spawn(async move {
            if let Err(e) = agent.run(endpoint, closed).await {
                tracing::error!(error = %e, "the node agent stopped");
            }
        }));
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
    // The node's pods stop within their grace periods.
    if let Some(agent) = node_agent {
        let _ = agent.await;
    }
    Ok(())
}

/// The process's one Wasm engine, keeping compiled components in
/// `data_dir/compiled`; pooled for a node's pods when it runs a `node`.
fn engine(data_dir: &Path, node: bool) -> Result<Arc<Engine>> {
    let settings = Settings {
        cache_dir: data_dir.join("compiled"),
        instances: if node { wasmkube_agent::INSTANCES } else { 0 },
    };
    Ok(Arc::new(Engine::start(&settings)?))
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
    let engine = engine(&args.data_dir, true)?;
    let agent = args.node.agent(client, engine, &args.data_dir)?;
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

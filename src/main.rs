//! `wasmkube`: the command line. It parses arguments and hands each command
//! to its module in `commands/`; everything those run lives in the
//! workspace's crates.
//!
//! - Servers: `up` (a whole single-node cluster), `server`, `agent`,
//!   `scheduler`, `controller-manager`.
//! - Client verbs, finding the cluster as kubectl does (`cluster`, with the
//!   kinds it serves from discovery in `kinds`): `run`, `push`, `plugin`,
//!   `get`, `describe`, `apply`, `delete`, `logs`, `token`.
//! - Local: `image`, `bundle`, `store`, `completion`.
//!
//! Flags also come from the environment and a config file (`settings`);
//! every failure carries an exit code (`exit`).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod cluster;
mod commands;
mod exit;
mod kinds;
mod settings;

use commands::{
    Verb, agent, apply, completion, controller_manager, delete, describe, engine, get, image, logs,
    plugin, push, run, scheduler, server, store, token, up,
};

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
    Up(up::Up),
    /// Serve the Kubernetes API and the built-in OCI registry; with
    /// `--control-plane`, schedule and run the controllers too, while this
    /// server leads.
    #[command(
        after_help = "Example (two of these on one etcd stand by for each other):\n  \
wasmkube server --control-plane --store etcd=http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379"
    )]
    Server(server::Server),
    /// Join a cluster as a node: run the pods bound to it as Wasm components.
    #[command(
        after_help = "Examples:\n  wasmkube agent --server https://10.0.0.1:6443 --token \"$TOKEN\" \
--node-name edge-2 --data-dir edge-2 --listen 10.0.0.2:10250\n  \
wasmkube agent --kubeconfig wasmkube-data/kubeconfig --node-name edge-2 --data-dir edge-2 \
--listen 127.0.0.1:10251\nThe join token comes from `wasmkube token create`; once joined, the node \
restarts with no token."
    )]
    Agent(agent::Agent),
    /// Place pending pods on nodes, with Wasm scheduler plugins.
    Scheduler(scheduler::Scheduler),
    /// Run the controllers (workloads, node lifecycle, endpoints, garbage
    /// collection…) against a cluster.
    ControllerManager(controller_manager::ControllerManager),
    /// Run a Wasm component as a Deployment (and, with a port, a Service):
    /// a file is pushed to the cluster's built-in registry first.
    #[command(
        after_help = "Examples:\n  wasmkube run hello --wasm http_hello.wasm --port 8080\n  \
wasmkube run batch --wasm 127.0.0.1:6443/batch:1 --replicas 3 -- --verbose"
    )]
    Run(Verb<run::Run>),
    /// Push a Wasm component to an OCI registry as a Wasm artifact (the
    /// cluster's built-in registry by default).
    #[command(after_help = "Examples:\n  wasmkube push hello.wasm            \
# to the cluster's registry, as hello:latest\n  wasmkube push hello.wasm hello:1\n  \
wasmkube push hello.wasm registry.example.com/team/hello:1 --username me")]
    Push(push::Push),
    /// Manage the components of a node's local image store.
    Image(image::Image),
    /// Write a copy of this program that ships its built-in plugins
    /// compiled for this machine: a fresh node runs them without compiling.
    #[command(after_help = "Example:\n  wasmkube bundle --output /usr/local/bin/wasmkube")]
    Bundle(engine::Bundle),
    /// Load, list and unload plugins (Plugin objects).
    #[command(
        after_help = "Examples:\n  wasmkube plugin load prefer_edge.wasm --name prefer-edge \
--extension-points Score --weight 5 --args '{\"tier\":\"edge\"}'\n  wasmkube plugin ls\n  \
wasmkube plugin unload prefer-edge"
    )]
    Plugin(Verb<plugin::Plugin>),
    /// Show objects, as `kubectl get` does.
    #[command(
        after_help = "Examples:\n  wasmkube get pods\n  wasmkube get deploy,svc -n shop -o wide\n  \
wasmkube get pod/web -o yaml\n  wasmkube get pods -A -l app=web"
    )]
    Get(Verb<get::Get>),
    /// Show objects in detail, with the Events about them.
    #[command(after_help = "Example:\n  wasmkube describe pod web")]
    Describe(Verb<describe::Describe>),
    /// Create or update objects from manifests (server-side apply).
    #[command(
        after_help = "Examples:\n  wasmkube apply -f examples/deployment/web.yaml\n  \
cat app.yaml | wasmkube apply -f -"
    )]
    Apply(Verb<apply::Apply>),
    /// Delete objects.
    #[command(
        after_help = "Examples:\n  wasmkube delete pod web\n  wasmkube delete deploy/web svc/web\n  \
wasmkube delete -f examples/deployment/web.yaml"
    )]
    Delete(Verb<delete::Delete>),
    /// Create the bootstrap tokens with which nodes join the cluster.
    #[command(
        subcommand,
        after_help = "Example:\n  TOKEN=$(wasmkube token create --ttl 2h --description edge-2)\n  \
wasmkube agent --server https://10.0.0.1:6443 --token \"$TOKEN\" --node-name edge-2 --data-dir edge-2\n\
Deleting the Secret kube-system/bootstrap-token-<id> revokes a token."
    )]
    Token(token::Token),
    /// Print a container's log.
    #[command(after_help = "Examples:\n  wasmkube logs hello\n  wasmkube logs web -f --tail 10")]
    Logs(Verb<logs::Logs>),
    /// Move a cluster between stores: a snapshot of the embedded store (or
    /// etcd) restored into etcd (or a new data dir).
    #[command(
        subcommand,
        after_help = "Example (stop `wasmkube up` first):\n  \
wasmkube store snapshot cluster.snap --data-dir wasmkube-data\n  \
wasmkube store restore cluster.snap --store etcd=http://127.0.0.1:2379"
    )]
    Store(store::StoreCommand),
    /// Print a shell's completion script: `source <(wasmkube completion bash)`.
    Completion(completion::Completion),
}

fn main() -> std::process::ExitCode {
    // The one TLS provider of the process, for every client and server.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
            let result = runtime.block_on(dispatch(command));
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

/// Runs the command.
async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Up(up) => up.run().await,
        Command::Server(server) => server.run().await,
        Command::Agent(agent) => agent.run().await,
        Command::Scheduler(scheduler) => scheduler.run().await,
        Command::ControllerManager(manager) => manager.run().await,
        Command::Run(run) => run.run().await,
        Command::Push(push) => push.run().await,
        Command::Image(image) => image.run(),
        Command::Bundle(bundle) => bundle.run(),
        Command::Plugin(plugin) => plugin.run().await,
        Command::Get(get) => get.run().await,
        Command::Describe(describe) => describe.run().await,
        Command::Apply(apply) => apply.run().await,
        Command::Delete(delete) => delete.run().await,
        Command::Logs(logs) => logs.run().await,
        Command::Token(token) => token.run().await,
        Command::Store(store) => store.run().await,
        Command::Completion(completion) => completion.run(settings::command::<Cli>()?),
    }
}

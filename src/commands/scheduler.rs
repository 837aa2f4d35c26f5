//! `scheduler`: pending pods placed on nodes by the profiles of a
//! KubeSchedulerConfiguration, with Wasm plugins, against a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use wasmkube_plugin_host::PluginHost;
use wasmkube_scheduler::{Config, Serving};

use super::engine::engine;
use super::shutdown::closed_on_shutdown;
use crate::cluster::Cluster;

/// Places pending pods on nodes.
#[derive(Debug, Args)]
pub struct Scheduler {
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
    /// The directory Plugin objects' file sources must be under (default:
    /// `plugins` in the data dir).
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// Serve the metrics (Prometheus text) at `http://ADDRESS/metrics`.
    #[arg(long, value_name = "ADDRESS")]
    metrics: Option<SocketAddr>,
    /// Schedule only while holding the Lease `kube-system/kube-scheduler`,
    /// so several schedulers can stand by (`--leader-elect=false`: always).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
}

impl Scheduler {
    /// Schedules until the process is asked to stop.
    pub async fn run(self) -> Result<()> {
        let cluster = Cluster::find(Some(&self.kubeconfig)).await?;
        let serving = Serving {
            config: Config::read(self.config.as_deref()).map_err(anyhow::Error::msg)?,
            metrics: self.metrics,
            host: PluginHost::new(engine(&self.data_dir, false)?),
            plugin_dir: self
                .plugin_dir
                .unwrap_or_else(|| self.data_dir.join("plugins")),
            data_dir: self.data_dir,
            registry: cluster.server,
            elect: self.leader_elect,
        };
        wasmkube_scheduler::serve(cluster.client, serving, closed_on_shutdown()).await
    }
}

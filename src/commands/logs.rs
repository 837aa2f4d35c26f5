//! `logs`: a container's log, as the API server relays it from the node.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::{OnCluster, Scope};
use crate::cluster::{Cluster, refusal};

/// Prints a container's log.
#[derive(Debug, Args)]
pub struct Logs {
    /// The pod.
    pod: String,
    /// The container (default: the pod's only one).
    #[arg(short, long)]
    container: Option<String>,
    #[command(flatten)]
    scope: Scope,
    /// Keep streaming as the container writes.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<i64>,
    /// The previous run of a restarted container.
    #[arg(short, long)]
    previous: bool,
    /// Each line with the time it was written.
    #[arg(long)]
    timestamps: bool,
}

impl OnCluster for Logs {
    /// Prints the log as it comes (following it with `-f`).
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), self.scope.namespace(cluster));
        let params = LogParams {
            container: self.container,
            follow: self.follow,
            tail_lines: self.tail,
            previous: self.previous,
            timestamps: self.timestamps,
            ..LogParams::default()
        };
        let mut stream = pods.log_stream(&self.pod, &params).await.map_err(refusal)?;
        let mut buffer = vec![0; 64 * 1024];
        let mut out = std::io::stdout();
        loop {
            let n = stream.read(&mut buffer).await.context("reading the log")?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buffer[..n])?;
            out.flush()?;
        }
    }
}

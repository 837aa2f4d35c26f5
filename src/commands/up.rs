//! `up`: a single-node cluster in one process — the API server (with the
//! built-in OCI registry), the scheduler, the controllers and a node agent,
//! on the embedded store in the data dir (or on etcd).

use anyhow::Result;
use clap::Args;

use super::agent::NodeArgs;
use super::server::{ControlArgs, ServerArgs, serve};

/// Runs a single-node cluster.
#[derive(Debug, Args)]
pub struct Up {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    control: ControlArgs,
}

impl Up {
    /// Serves the cluster until the process is asked to stop.
    pub async fn run(self) -> Result<()> {
        serve(self.server, Some(self.control), Some(self.node)).await
    }
}

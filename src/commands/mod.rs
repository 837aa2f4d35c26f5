//! The commands, one module each, and what the client verbs share: finding
//! the cluster (`--kubeconfig`, as kubectl does), the namespace flag, kinds
//! and names as kubectl takes them, and going on past failures.
//!
//! Servers: `up`, `server`, `agent` (joining with `join`), `scheduler`,
//! `controller_manager` (with `engine`, `shutdown` and `store`'s way of
//! opening a store). Client verbs:
//! `run`, `push`, `plugin`, `get`, `describe`, `apply`, `delete`, `logs`,
//! `token` (with `print`, `manifest` and `upload`). Local: `image`, `engine`
//! (`bundle`), `store`, `completion`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::cluster::Cluster;
use crate::exit::Failure;
use crate::kinds::Kind;

mod admission;
pub mod agent;
pub mod apply;
pub mod completion;
pub mod controller_manager;
pub mod delete;
pub mod describe;
pub mod engine;
pub mod get;
pub mod image;
mod join;
pub mod logs;
mod manifest;
pub mod plugin;
mod print;
pub mod push;
pub mod run;
pub mod scheduler;
mod security;
pub mod server;
mod shutdown;
pub mod store;
pub mod token;
pub mod up;
mod upload;

/// Where a client command finds its cluster.
#[derive(Debug, Args)]
pub struct Target {
    /// The cluster's kubeconfig (default: `KUBECONFIG`, else `~/.kube/config`,
    /// else `wasmkube-data/kubeconfig`).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

impl Target {
    /// The cluster the command works on.
    async fn cluster(&self) -> Result<Cluster> {
        Cluster::find(self.kubeconfig.as_deref()).await
    }
}

/// A client verb's own arguments, and how it finds the cluster.
#[derive(Debug, Args)]
pub struct Verb<T: Args> {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    args: T,
}

impl<T: Args + OnCluster> Verb<T> {
    /// Finds the cluster and runs the verb on it.
    pub async fn run(self) -> Result<()> {
        self.args.run(&self.target.cluster().await?).await
    }
}

/// A command that works on a cluster.
pub trait OnCluster {
    /// Runs the command on `cluster`.
    async fn run(self, cluster: &Cluster) -> Result<()>;
}

/// Which namespace a verb works in.
#[derive(Debug, Default, Args)]
pub struct Scope {
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long)]
    namespace: Option<String>,
}

impl Scope {
    /// The namespace asked for, else the cluster's.
    fn namespace<'a>(&'a self, cluster: &'a Cluster) -> &'a str {
        self.namespace.as_deref().unwrap_or(&cluster.namespace)
    }
}

/// Kinds and names as kubectl takes them: `pods web db`, `po,svc`,
/// `pod/web deploy/api`.
async fn targets<'c>(
    cluster: &'c Cluster,
    what: &[String],
) -> Result<Vec<(&'c Kind, Vec<String>)>> {
    if what.iter().all(|w| w.contains('/')) {
        let mut targets: Vec<(&Kind, Vec<String>)> = Vec::new();
        for item in what {
            let (kind, name) = item.split_once('/').expect("checked");
            let kind = cluster.kind(kind).await?;
            match targets
                .iter_mut()
                .find(|(k, _)| k.resource == kind.resource)
            {
                Some((_, names)) => names.push(name.to_owned()),
                None => targets.push((kind, vec![name.to_owned()])),
            }
        }
        return Ok(targets);
    }
    let Some((kinds, names)) = what.split_first() else {
        return Err(Failure::Usage.because("name a kind: `pods`, `deployments`…"));
    };
    if names.iter().any(|n| n.contains('/')) {
        return Err(Failure::Usage.because(
            "there is no need to specify a resource type as a separate argument when \
             passing arguments in resource/name form",
        ));
    }
    let mut targets = Vec::new();
    for kind in kinds.split(',') {
        targets.push((cluster.kind(kind).await?, names.to_vec()));
    }
    Ok(targets)
}

/// The end of a verb that went on past failures: each failure but the last
/// is printed, the last is the verb's error.
fn settle(mut failures: Vec<anyhow::Error>) -> Result<()> {
    let Some(last) = failures.pop() else {
        return Ok(());
    };
    for failure in failures {
        eprintln!("error: {failure:#}");
    }
    Err(last)
}

//! `apply`: objects of manifests created or updated by server-side apply,
//! each said as kubectl says it (`deployment.apps/web created`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use kube::api::{DynamicObject, Patch, PatchParams};

use super::{OnCluster, Scope, manifest, settle};
use crate::cluster::{Cluster, refusal};
use crate::exit::Failure;

/// The field manager of what this command line applies.
const FIELD_MANAGER: &str = "wasmkube";

/// Creates or updates objects from manifests (server-side apply).
#[derive(Debug, Args)]
pub struct Apply {
    /// Manifests: a YAML or JSON file (several documents allowed), a
    /// directory of them, or `-` for standard input.
    #[arg(short, long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    scope: Scope,
}

impl OnCluster for Apply {
    /// Applies each object of the manifests, going on past failures.
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let objects = manifest::objects(&self.files)?;
        if objects.is_empty() {
            return Err(Failure::Usage.because("no objects passed to apply"));
        }
        let mut failed = Vec::new();
        for (source, object) in objects {
            if let Err(e) = apply(cluster, &self.scope, object).await {
                failed.push(e.context(format!("applying {source}")));
            }
        }
        settle(failed)
    }
}

/// Applies `object` (in the namespace of `scope` unless it names its own),
/// as field manager `wasmkube` taking over fields other managers set, and
/// says what became of it.
pub async fn apply(cluster: &Cluster, scope: &Scope, mut object: DynamicObject) -> Result<()> {
    let kind = cluster.kind_of(&object).await?;
    let name = manifest::name(&object)?.to_owned();
    if kind.namespaced() && object.metadata.namespace.is_none() {
        object.metadata.namespace = Some(scope.namespace(cluster).to_owned());
    }
    let api = kind.api(&cluster.client, object.metadata.namespace.as_deref());
    let before = api.get_opt(&name).await.map_err(refusal)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let after = api
        .patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(refusal)?;
    // What the apply could change: not the status, which controllers write
    // meanwhile, nor the bookkeeping of every write.
    let applied = |o: &DynamicObject| {
        let mut o = o.clone();
        if let Some(fields) = o.data.as_object_mut() {
            fields.remove("status");
        }
        o.metadata.resource_version = None;
        o.metadata.managed_fields = None;
        o
    };
    let what = match before {
        None => "created",
        Some(before) if applied(&before) == applied(&after) => "unchanged",
        Some(_) => "configured",
    };
    println!("{} {what}", kind.qualified(&name));
    Ok(())
}

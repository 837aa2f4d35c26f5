//! `delete`: objects named (or named by manifests) deleted, then waited for
//! until they are gone (finalizers, graceful pod stops).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use kube::api::DeleteParams;
use kube::runtime::wait::{await_condition, conditions};

use super::{OnCluster, Scope, manifest, settle, targets};
use crate::cluster::{Cluster, refusal};
use crate::exit::Failure;
use crate::kinds::Kind;

/// Deletes objects.
#[derive(Debug, Args)]
pub struct Delete {
    /// A kind and names, or `KIND/NAME`.
    #[arg(value_name = "KIND [NAME…]")]
    pub what: Vec<String>,
    /// Delete what these manifests name instead.
    #[arg(short, long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub scope: Scope,
    /// Succeed when an object is already gone.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone (finalizers, graceful pod stops).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Seconds a pod gets to stop (default: its own
    /// `terminationGracePeriodSeconds`; a negative number is ignored).
    #[arg(long)]
    pub grace_period: Option<i64>,
}

impl OnCluster for Delete {
    /// Deletes what is named, going on past failures.
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let namespace = self.scope.namespace(cluster);
        let mut doomed: Vec<(&Kind, String, String)> = Vec::new();
        if !self.files.is_empty() {
            for (_, object) in manifest::objects(&self.files)? {
                let kind = cluster.kind_of(&object).await?;
                let name = manifest::name(&object)?.to_owned();
                let ns = object.metadata.namespace.as_deref().unwrap_or(namespace);
                doomed.push((kind, ns.to_owned(), name));
            }
        } else {
            for (kind, names) in targets(cluster, &self.what).await? {
                if names.is_empty() {
                    return Err(Failure::Usage.because(format!(
                        "name the {} to delete (or give -f FILE)",
                        kind.resource.plural
                    )));
                }
                doomed.extend(names.into_iter().map(|n| (kind, namespace.to_owned(), n)));
            }
        }
        if doomed.is_empty() {
            return Err(
                Failure::Usage.because("name what to delete: KIND NAME, KIND/NAME or -f FILE")
            );
        }
        let params = match self.grace_period.and_then(|s| u32::try_from(s).ok()) {
            Some(seconds) => DeleteParams::default().grace_period(seconds),
            None => DeleteParams::background(),
        };
        let mut failed = Vec::new();
        let mut waiting = Vec::new();
        for (kind, ns, name) in doomed {
            let api = kind.api(&cluster.client, Some(&ns));
            match api.delete(&name, &params).await.map_err(refusal) {
                Ok(deleted) => {
                    println!("{} \"{name}\" deleted", kind.singular);
                    // An object that is still there (stopping, or held by a
                    // finalizer) is waited for; one answered by a Status is
                    // gone.
                    let uid = deleted.left().and_then(|o| o.metadata.uid);
                    waiting.extend(uid.map(|uid| (api, name, uid)));
                }
                Err(e) if self.ignore_not_found && Failure::of(&e) == Failure::NotFound => {}
                Err(e) => failed.push(e),
            }
        }
        if self.wait {
            for (api, name, uid) in waiting {
                await_condition(api, &name, conditions::is_deleted(&uid)).await?;
            }
        }
        settle(failed)
    }
}

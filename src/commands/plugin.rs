//! `plugin`: Plugin objects (`wasmkube.io`) declared from a file or an image,
//! listed, and deleted; the scheduler loads and lets go of them.

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

use super::upload::{image_for, stem};
use super::{OnCluster, Scope, delete::Delete, get::Get};
use crate::cluster::{Cluster, refusal};
use crate::exit::Failure;

/// Loads, lists and unloads plugins.
#[derive(Debug, Args)]
pub struct Plugin {
    #[command(subcommand)]
    command: PluginCommand,
}

/// What to do with plugins.
#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// List the Plugin objects: whether each is loaded, how often it failed.
    Ls,
    /// Declare a plugin: a `.wasm` file (pushed to the built-in registry
    /// first) or an image reference becomes a Plugin object the scheduler
    /// loads.
    Load(Load),
    /// Delete a Plugin object; the scheduler lets the plugin go.
    Unload {
        /// The Plugin's name.
        name: String,
    },
}

/// A plugin to declare.
#[derive(Debug, Args)]
struct Load {
    /// The plugin: a `.wasm` file or an image reference.
    #[arg(value_name = "FILE|REF")]
    source: String,
    /// The Plugin's name (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    /// What kind of plugin it is.
    #[arg(long, default_value = "Scheduler")]
    extension: String,
    /// The scheduler profiles that run it (default: every profile).
    #[arg(long = "profile")]
    profiles: Vec<String>,
    /// Where a scheduler plugin runs: `Filter`, `Score` or `Filter,Score`.
    #[arg(long, value_delimiter = ',')]
    extension_points: Vec<String>,
    /// Its score's weight.
    #[arg(long)]
    weight: Option<i64>,
    /// Its arguments, as a JSON object.
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
}

impl OnCluster for Plugin {
    /// Runs the subcommand.
    async fn run(self, cluster: &Cluster) -> Result<()> {
        match self.command {
            PluginCommand::Ls => {
                let get = Get {
                    what: vec!["plugins".into()],
                    scope: Scope::default(),
                    all_namespaces: false,
                    selector: None,
                    output: None,
                };
                get.run(cluster).await
            }
            PluginCommand::Load(load) => load.run(cluster).await,
            PluginCommand::Unload { name } => {
                let delete = Delete {
                    what: vec!["plugins".into(), name],
                    files: Vec::new(),
                    scope: Scope::default(),
                    ignore_not_found: false,
                    wait: true,
                    grace_period: None,
                };
                delete.run(cluster).await
            }
        }
    }
}

impl Load {
    /// Creates the Plugin object, or replaces its spec whole.
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let scheduler = self.extension == "Scheduler";
        if scheduler && self.extension_points.is_empty() {
            return Err(Failure::Usage.because(
                "say where the plugin runs: --extension-points Filter, Score or Filter,Score",
            ));
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| stem(Path::new(&self.source)));
        let image = image_for(cluster, &self.source, &format!("plugins/{name}")).await?;
        let mut spec = json!({"extension": self.extension, "source": {"image": image}});
        if let Some(text) = &self.args {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                Failure::Usage.because(format!("--args must be a JSON object: {e}"))
            })?;
            spec["args"] = value;
        }
        if scheduler {
            let mut placement = json!({"profiles": self.profiles,
                                       "extensionPoints": self.extension_points});
            if let Some(weight) = self.weight {
                placement["weight"] = json!(weight);
            }
            spec["scheduler"] = placement;
        }
        let mut plugin: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "wasmkube.io/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name}, "spec": spec,
        }))?;
        // The spec is replaced whole, not merged: a plugin loaded from a
        // path before is loaded from the registry now.
        let kind = cluster.kind_of(&plugin).await?;
        let plugins = kind.api(&cluster.client, None);
        let params = PostParams::default();
        let (written, what) = match plugins.get_opt(&name).await.map_err(refusal)? {
            Some(old) => {
                plugin.metadata.resource_version = old.metadata.resource_version;
                (plugins.replace(&name, &params, &plugin).await, "configured")
            }
            None => (plugins.create(&params, &plugin).await, "created"),
        };
        written.map_err(refusal)?;
        println!("{} {what}", kind.qualified(&name));
        Ok(())
    }
}

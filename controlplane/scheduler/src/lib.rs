//! The scheduler of Wasmkube: places pending pods on nodes, with the
//! Kubernetes scheduling framework's extension points run by Wasm plugins.
//!
//! - [`config`]: profiles as KubeSchedulerConfiguration has them (plugins per
//!   extension point, weights, args), chosen by `spec.schedulerName`.
//! - The default plugins (`plugins/`, built with the SDK) are embedded as
//!   components; others load from a file or an OCI reference, without a
//!   rebuild. Each runs on the plugin host, every call bounded.
//! - A queue (priority from `spec.priority` or the PriorityClass, back-off,
//!   unschedulable pods retried on cluster changes), a node cache with
//!   assumed pods, binding through `pods/binding`, and a PodScheduled
//!   condition and Events that say why a pod fits nowhere.
//!
//! Plugin calls are synchronous: cycles run on a thread of their own, fed by
//! the watches; bindings and reports go back to the async side.

mod cache;
pub mod config;
mod framework;
mod queue;
mod run;

include!(concat!(env!("OUT_DIR"), "/default_plugins.rs"));

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, bail};
use wasmkube_plugin_host::{Limits, PluginHost, SchedulerPlugin};
use wasmkube_runtime::{ImageStore, Pulled};

pub use config::{Config, DEFAULT_SCHEDULER};
pub use framework::{Extension, Framework, Outcome, nodes_to_find, unavailable};
pub use run::run;

/// The components of the default plugins, by name.
pub fn default_plugins() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    DEFAULT_PLUGINS.iter().copied()
}

/// The bytes of every plugin `config` names beyond the defaults: read from
/// their files, or pulled into `images`.
async fn sources(config: &Config, images: &ImageStore) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut bytes = HashMap::new();
    for source in &config.plugins {
        let read = match (&source.file, &source.image) {
            (Some(file), None) => std::fs::read(file)
                .with_context(|| format!("plugin {}: reading {}", source.name, file.display()))?,
            (None, Some(image)) => match images.pull(image, None).await {
                Ok(Pulled::Wasm(image)) => std::fs::read(&image.path)?,
                Ok(Pulled::Container(_)) => {
                    bail!(
                        "plugin {}: {image} is a container image, not a component",
                        source.name
                    )
                }
                Err(e) => bail!("plugin {}: {e}", source.name),
            },
            _ => bail!("plugin {}: give exactly one of file and image", source.name),
        };
        bytes.insert(source.name.clone(), read);
    }
    Ok(bytes)
}

/// The profiles of a configuration, loaded.
#[derive(Debug)]
pub struct Profiles {
    /// The frameworks, by scheduler name.
    pub frameworks: BTreeMap<String, Framework>,
    /// The plugins' host (its ticker bounds their calls while it lives).
    pub host: PluginHost,
}

/// Loads `config`'s profiles: each profile gets its own instance of each of
/// its plugins, configured with its args. Compiled plugins are kept under
/// `data_dir`.
pub async fn load(config: &Config, data_dir: &Path) -> anyhow::Result<Profiles> {
    let images = ImageStore::open(&data_dir.join("plugins"))?;
    let bytes = sources(config, &images).await?;
    let config = config.clone();
    let cache = data_dir.join("compiled");
    tokio::task::spawn_blocking(move || {
        let host = PluginHost::new(&cache)?;
        let mut components = HashMap::new();
        let mut frameworks = BTreeMap::new();
        for profile in &config.profiles {
            let plan = profile.plan();
            let names = plan.plugins();
            let mut plugins: Vec<Box<dyn Extension>> = Vec::new();
            for name in &names {
                let named = bytes.get(name).map(Vec::as_slice);
                let embedded = || default_plugins().find(|(n, _)| n == name).map(|(_, b)| b);
                let Some(wasm) = named.or_else(embedded) else {
                    bail!(
                        "profile {}: plugin {name} is neither a default plugin nor named under plugins",
                        profile.scheduler_name
                    );
                };
                if !components.contains_key(name) {
                    components.insert(name.clone(), host.compile(name, wasm)?);
                }
                let args = profile.args(name);
                let plugin =
                    SchedulerPlugin::new(&host, name, &components[name], &args, Limits::default())?;
                plugins.push(Box::new(plugin));
            }
            let percentage = config.percentage_of_nodes_to_score.unwrap_or(0);
            frameworks.insert(
                profile.scheduler_name.clone(),
                Framework::planned(&plan, plugins, percentage),
            );
        }
        Ok(Profiles { frameworks, host })
    })
    .await?
}

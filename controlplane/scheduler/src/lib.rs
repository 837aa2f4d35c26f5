//! The scheduler of Wasmkube: places pending pods on nodes, with the
//! Kubernetes scheduling framework's extension points run by Wasm plugins.
//!
//! - [`config`]: profiles as KubeSchedulerConfiguration has them (plugins per
//!   extension point, weights, args), chosen by `spec.schedulerName`.
//! - The default plugins (`plugins/`, built with the SDK) are embedded as
//!   components; others load from a file or an OCI reference, without a
//!   rebuild. Each runs on the plugin host, every call bounded.
//! - Plugins can also be declared by `Plugin` objects (`wasmkube.io`): loaded
//!   when declared, again when their source changes, taken out when deleted,
//!   with their load state and failures in the object's status and in the
//!   [`Metrics`].
//! - A queue (priority from `spec.priority` or the PriorityClass, back-off,
//!   unschedulable pods retried on cluster changes), a node cache with
//!   assumed pods, binding through `pods/binding`, and a PodScheduled
//!   condition and Events that say why a pod fits nowhere.
//! - [`serve`]: the scheduler as a process runs it (metrics, leader
//!   election).
//!
//! Plugin calls are synchronous: cycles run on a thread of their own, fed by
//! the watches; bindings and reports go back to the async side.

mod cache;
pub mod config;
mod declared;
mod framework;
mod metrics;
mod queue;
mod run;
mod serve;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kube::Client;
use wasmkube_oci::{ImageStore, PullError, Pulled, same_registry};
use wasmkube_plugin_host::{Builtin, Component, Limits, PluginHost, SchedulerPlugin};

pub use config::{Config, DEFAULT_SCHEDULER};
pub use framework::{Extension, Failures, Framework, Outcome, nodes_to_find, unavailable};
pub use metrics::Metrics;
pub use run::run;
pub use serve::{Serving, serve};

/// The components of the default plugins.
pub fn default_plugins() -> impl Iterator<Item = &'static Builtin> {
    wasmkube_plugin_host::builtin::SCHEDULING.iter()
}

/// Where the images of plugins come from: the cluster's own registry through
/// the scheduler's client (with its identity), any other directly.
#[derive(Clone)]
pub struct Images {
    /// Where pulled images are kept.
    pub store: ImageStore,
    /// A client of the API server.
    pub client: Client,
    /// `host:port` of the API server, as the clients' URL has it: images
    /// naming it come from its built-in registry through `client`.
    pub registry: String,
    /// The directory Plugin objects' file sources must be under: an object
    /// names a file, and only the scheduler's operator puts files there.
    pub plugin_dir: PathBuf,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("store", &self.store)
            .field("registry", &self.registry)
            .field("plugin_dir", &self.plugin_dir)
            .finish_non_exhaustive()
    }
}

impl Images {
    /// Pulls `image` into the store, from the registry it names.
    async fn pull(&self, image: &str) -> Result<Pulled, PullError> {
        if same_registry(image, &self.registry) {
            self.store.pull_via(&self.client, image).await
        } else {
            self.store.pull(image, None).await
        }
    }
}

/// The bytes of the plugin `name`: read from `file`, or pulled into `images`
/// from `image` (exactly one of them).
pub(crate) async fn fetch(
    name: &str,
    file: Option<&Path>,
    image: Option<&str>,
    images: &Images,
) -> anyhow::Result<Vec<u8>> {
    Ok(match (file, image) {
        (Some(file), None) => std::fs::read(file)
            .with_context(|| format!("plugin {name}: reading {}", file.display()))?,
        (None, Some(image)) => match images.pull(image).await {
            Ok(Pulled::Wasm(image)) => std::fs::read(&image.path)?,
            Ok(Pulled::Container(_)) => {
                bail!("plugin {name}: {image} is a container image, not a component")
            }
            Err(e) => bail!("plugin {name}: {e}"),
        },
        _ => bail!("plugin {name}: give exactly one of file and image"),
    })
}

/// The bytes of every plugin `config` names beyond the defaults.
async fn sources(config: &Config, images: &Images) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut bytes = HashMap::new();
    for source in &config.plugins {
        let (file, image) = (source.file.as_deref(), source.image.as_deref());
        let read = fetch(&source.name, file, image, images).await?;
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
    /// Where images of plugins declared by Plugin objects come from and are
    /// pulled to.
    pub images: Images,
    /// What the scheduler counts.
    pub metrics: Metrics,
}

/// Where a plugin's component comes from.
enum Source<'a> {
    /// Bytes named under the configuration's `plugins`.
    Named(&'a [u8]),
    /// A default plugin.
    Builtin(&'static Builtin),
}

/// The component of every plugin `config`'s profiles use, by name: from
/// `bytes` (the plugins named under `plugins`), else built in. Those not
/// compiled yet compile side by side, one a core.
fn compile_all(
    config: &Config,
    bytes: &HashMap<String, Vec<u8>>,
    host: &PluginHost,
) -> anyhow::Result<HashMap<String, Component>> {
    // Each plugin once, with where it comes from.
    let mut wanted: Vec<(String, Source)> = Vec::new();
    for profile in &config.profiles {
        for name in profile.plan().plugins() {
            if wanted.iter().any(|(known, _)| *known == name) {
                continue;
            }
            let source = match (bytes.get(&name), default_plugins().find(|b| b.name == name)) {
                (Some(wasm), _) => Source::Named(wasm),
                (None, Some(builtin)) => Source::Builtin(builtin),
                (None, None) => bail!(
                    "profile {}: plugin {name} is neither a default plugin nor named under plugins",
                    profile.scheduler_name
                ),
            };
            wanted.push((name, source));
        }
    }
    let compile = |(name, source): &(String, Source)| {
        let component = match source {
            Source::Named(wasm) => host.compile(name, wasm),
            Source::Builtin(builtin) => host.builtin(builtin),
        };
        component.map(|c| (name.clone(), c))
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let share = wanted.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = wanted
            .chunks(share)
            .map(|chunk| scope.spawn(move || chunk.iter().map(compile).collect::<Vec<_>>()))
            .collect();
        let mut components = HashMap::new();
        for thread in threads {
            for compiled in thread.join().expect("a compiling thread") {
                let (name, component) = compiled?;
                components.insert(name, component);
            }
        }
        Ok(components)
    })
}

/// Loads `config`'s profiles on `host`: each profile gets its own instance
/// of each of its plugins, configured with its args. Images of plugins are
/// pulled with `images`.
pub async fn load(config: &Config, host: PluginHost, images: Images) -> anyhow::Result<Profiles> {
    let bytes = sources(config, &images).await?;
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let components = compile_all(&config, &bytes, &host)?;
        let mut frameworks = BTreeMap::new();
        for profile in &config.profiles {
            let plan = profile.plan();
            let mut plugins: Vec<Box<dyn Extension>> = Vec::new();
            for name in &plan.plugins() {
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
        Ok(Profiles {
            frameworks,
            host,
            images,
            metrics: Metrics::default(),
        })
    })
    .await?
}

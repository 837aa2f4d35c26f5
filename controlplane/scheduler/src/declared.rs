//! Plugins declared by `Plugin` objects (`wasmkube.io/v1alpha1`): fetched and
//! compiled here, off the scheduling thread, when an object is declared, when
//! its spec changes and when the file it names changes; the thread then puts
//! them in their profiles, and takes them out when the object is deleted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use wasmkube_oci::digest;
use wasmkube_plugin_host::{Component, PluginHost, read_declared};
use wasmkube_types::plugin::{Extension, Plugin, PluginSpec};

use crate::run::Input;
use crate::{Images, fetch};

/// How often the files of plugins declared by path are looked at.
const FILE_CHECK: Duration = Duration::from_secs(2);

/// A declared plugin, ready for the thread to put in its profiles.
pub(crate) struct Declared {
    /// The Plugin object's name.
    pub name: String,
    /// The generation of the spec it was loaded from.
    pub generation: i64,
    /// That spec.
    pub spec: PluginSpec,
    /// Its component and the component's digest, or why there is none.
    pub component: Result<(Component, String), String>,
}

impl std::fmt::Debug for Declared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Declared")
            .field("name", &self.name)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a loaded plugin was loaded from.
struct Seen {
    spec: PluginSpec,
    generation: i64,
    /// The file's modification time and length, for a plugin declared by path.
    file: Option<(SystemTime, u64)>,
}

fn stat(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Fetches and compiles the plugin `name` of `spec`.
async fn load(
    name: &str,
    spec: &PluginSpec,
    host: &PluginHost,
    images: &Images,
) -> Result<(Component, String), String> {
    let bytes = match (spec.source.path.as_deref(), spec.source.image.as_deref()) {
        (Some(path), None) => {
            read_declared(Path::new(path), &images.plugin_dir).map_err(anyhow::Error::from)
        }
        (path, image) => fetch(name, path.map(Path::new), image, images).await,
    }
    .map_err(|e| format!("{e:#}"))?;
    let (host, name) = (host.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let component = host.compile(&name, &bytes).map_err(|e| e.to_string())?;
        Ok((component, digest(&bytes)))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Loads what the Plugin objects told by `objects` declare (scheduler plugins
/// only) and hands them to the thread through `to`, until either side ends.
pub(crate) async fn watch(
    mut objects: UnboundedReceiver<Input>,
    host: PluginHost,
    images: Images,
    to: Sender<Input>,
) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut files = tokio::time::interval(FILE_CHECK);
    loop {
        // Plugins to load: name, generation, spec.
        let mut due: Vec<(String, i64, PluginSpec)> = Vec::new();
        tokio::select! {
            input = objects.recv() => match input {
                Some(Input::Applied(_, object)) => match serde_json::from_value::<Plugin>(object) {
                    Ok(plugin) if plugin.spec.extension == Extension::Scheduler => {
                        let known = seen.get(plugin.name());
                        if known.is_none_or(|s| s.spec != plugin.spec) {
                            let generation = plugin.metadata.generation.unwrap_or(0);
                            due.push((plugin.name().to_owned(), generation, plugin.spec));
                        }
                    }
                    Ok(plugin) => {
                        // No longer a scheduler plugin (or never one).
                        let name = plugin.name().to_owned();
                        if seen.remove(&name).is_some() && to.send(Input::Undeclared(name)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "a Plugin object does not decode"),
                },
                Some(Input::Deleted(_, name)) => {
                    if seen.remove(&name).is_some() && to.send(Input::Undeclared(name)).is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = files.tick() => {
                for (name, known) in &seen {
                    let Some(path) = known.spec.source.path.as_deref() else {
                        continue;
                    };
                    if stat(Path::new(path)) != known.file {
                        tracing::info!(plugin = %name, path, "the plugin's file changed; loading it again");
                        due.push((name.clone(), known.generation, known.spec.clone()));
                    }
                }
            }
        }
        for (name, generation, spec) in due {
            let file = spec.source.path.as_deref().and_then(|p| stat(Path::new(p)));
            let component = load(&name, &spec, &host, &images).await;
            if let Err(e) = &component {
                tracing::warn!(plugin = %name, error = %e, "the plugin could not be loaded");
            }
            let known = Seen {
                spec: spec.clone(),
                generation,
                file,
            };
            seen.insert(name.clone(), known);
            let declared = Declared {
                name,
                generation,
                spec,
                component,
            };
            if to.send(Input::Declared(Box::new(declared))).is_err() {
                return;
            }
        }
    }
}

/// The JSON a plugin's `configure` gets.
pub(crate) fn args(spec: &PluginSpec) -> String {
    spec.args
        .as_ref()
        .map_or_else(|| "{}".to_owned(), Value::to_string)
}

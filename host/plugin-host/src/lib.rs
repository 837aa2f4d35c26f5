//! The host of Wasmkube's plugins: every plugin kind (scheduler and network
//! now; admission and CSI later) is a Wasm component whose interface is a
//! WIT world under `wit/`, loaded and called through this crate.
//!
//! - [`load_component`] compiles a component once and keeps the artefact on
//!   disk, keyed by the bytes' digest and the engine's compatibility hash (the
//!   node runtime uses it for workloads too).
//! - [`PluginHost`] owns the plugins' engine (epoch interruption, a ticker
//!   thread) and their compile cache.
//! - [`SchedulerPlugin`] is a loaded `wasmkube:scheduler/plugin@0.1.0`: every
//!   call is bounded in time (epochs) and memory (a limiter); a trap or a refusal
//!   becomes a [`PluginError`] naming the plugin, and the trapped instance is
//!   never entered again: the next call gets a fresh one from the
//!   pre-instantiated component, configured and fed the nodes again.
//! - [`Networks`] runs CNI network lists of `wasmkube:cni/plugin@0.1.0`
//!   plugins (the built-in `pod-network` and `host-local`, in [`builtin`]).

/// The built-in plugins, as components (built from `plugins/`).
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

mod cache;
mod cni;
mod limits;
mod sandbox;
mod scheduler;

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::{Config, Engine};

pub use cache::{compile, digest, load_component};
pub use cni::{Added, Attachment, CNI_WIT_PACKAGE, CniError, Networks, Sandbox};
pub use limits::{EpochTicker, MemoryLimit};
pub use scheduler::{Code, NodeChange, Rejection, SchedulerPlugin, Status, WIT_PACKAGE};
pub use wasmtime::component::Component;

/// How often the plugins' epoch advances.
pub const TICK: Duration = Duration::from_millis(1);

/// Why a plugin could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component could not be read, compiled or linked.
    #[error("plugin {plugin}: cannot load: {message}")]
    Load {
        /// The plugin's file.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// The component speaks another version of the interface.
    #[error("plugin {plugin}: built for {found}, but this host speaks {expected}")]
    Version {
        /// The plugin's file.
        plugin: String,
        /// What it exports.
        found: String,
        /// What the host offers.
        expected: String,
    },
    /// The plugin refused its arguments.
    #[error("plugin {plugin}: refused its args: {message}")]
    Config {
        /// The plugin's name.
        plugin: String,
        /// Its words.
        message: String,
    },
    /// The plugin was declared but could not be loaded.
    #[error("plugin {plugin} is not loaded: {message}")]
    NotLoaded {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
    /// A call trapped, ran out of time or wanted too much memory.
    #[error("plugin {plugin}: {call} failed: {message}")]
    Call {
        /// The plugin's name.
        plugin: String,
        /// The extension point.
        call: &'static str,
        /// What happened, with what the plugin wrote to stderr.
        message: String,
    },
}

/// What every call of a plugin is bounded by.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest a call may run.
    pub call_time: Duration,
    /// The most linear memory an instance may hold, in bytes.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_time: Duration::from_millis(100),
            memory: 256 << 20,
        }
    }
}

/// The engine and compile cache of a process's plugins.
pub struct PluginHost {
    engine: Engine,
    cache_dir: PathBuf,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host keeping compiled plugins under `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<PluginHost, PluginError> {
        let load = |message: String| PluginError::Load {
            plugin: cache_dir.display().to_string(),
            message,
        };
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| load(e.to_string()))?;
        std::fs::create_dir_all(cache_dir).map_err(|e| load(e.to_string()))?;
        let ticker =
            EpochTicker::start(&engine, TICK, "plugin-epoch").map_err(|e| load(e.to_string()))?;
        Ok(PluginHost {
            engine,
            cache_dir: cache_dir.to_owned(),
            _ticker: ticker,
        })
    }

    /// The plugins' engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The component in `file`, compiled (or loaded from the cache).
    pub fn component(&self, file: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(file).map_err(|e| PluginError::Load {
            plugin: file.display().to_string(),
            message: e.to_string(),
        })?;
        self.compile(&file.display().to_string(), &bytes)
    }

    /// The component of `bytes` (the plugin called `plugin` in errors),
    /// compiled or loaded from the cache.
    pub fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        compile(&self.engine, bytes, &self.cache_dir).map_err(|message| PluginError::Load {
            plugin: plugin.to_owned(),
            message,
        })
    }
}

//! The host of Wasmkube's plugins: every plugin kind (scheduler, network and
//! admission now; CSI later) is a Wasm component whose interface is a
//! WIT world under `wit/`, loaded and called through this crate.
//!
//! - [`PluginHost`] loads plugins on the process's one engine
//!   (`wasmkube-engine`: its epoch ticker bounds their calls, its compile
//!   cache keeps them compiled).
//! - [`SchedulerPlugin`] is a loaded `wasmkube:scheduler/plugin@0.1.0`: every
//!   call is bounded in time (epochs) and memory (a limiter); a trap or a refusal
//!   becomes a [`PluginError`] naming the plugin, and the trapped instance is
//!   never entered again: the next call gets a fresh one from the
//!   pre-instantiated component, configured and fed the nodes again.
//! - [`AdmissionPolicy`] is a loaded `wasmkube:admission/policy@0.1.0`,
//!   called by the API server for the writes it matches, each call bounded,
//!   its lookups served by the server's caches ([`Lookup`]).
//! - [`Networks`] runs CNI network lists of `wasmkube:cni/plugin@0.1.0`
//!   plugins (the built-in `pod-network` and `host-local`, in [`builtin`]),
//!   and sets the node up for them (`wasmkube:cni/node`): the devices,
//!   addresses and routes a plugin asks for, checked against the node's
//!   range and its peers, are made over rtnetlink.

/// The built-in plugins, as packed components (built from `plugins/`).
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

mod admission;
mod cni;
mod links;
mod sandbox;
mod scheduler;

use std::borrow::Cow;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmkube_engine::Engine;

pub use admission::{
    ADMISSION_WIT_PACKAGE, AdmissionPolicy, Lookup, MAX_LISTED, MAX_LOOKUPS, Operation, Phase,
    Request, User, Verdict,
};
pub use cni::{Added, Attachment, CNI_WIT_PACKAGE, CniError, Networks, Node, Sandbox};
pub use scheduler::{Code, NodeChange, Rejection, SchedulerPlugin, Status, WIT_PACKAGE};
pub use wasmtime::component::Component;

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

/// The largest plugin component read from a file.
pub const MAX_COMPONENT: u64 = 128 << 20;

/// The bytes of the file a Plugin object names: a regular file under the
/// plugin directory `dir` (links resolved first), of at most
/// [`MAX_COMPONENT`] bytes. An object names a file; only the operator of the
/// component that loads it puts files in its directory.
pub fn read_declared(file: &Path, dir: &Path) -> std::io::Result<Vec<u8>> {
    let refused = |why: String| std::io::Error::other(format!("{} is {why}", file.display()));
    let outside = || refused(format!("outside the plugin directory {}", dir.display()));
    let resolved = file.canonicalize().map_err(|_| outside())?;
    let dir = dir.canonicalize().map_err(|_| outside())?;
    if !resolved.starts_with(&dir) {
        return Err(outside());
    }
    let opened = std::fs::File::open(&resolved)?;
    let meta = opened.metadata()?;
    if !meta.is_file() {
        return Err(refused("not a regular file".into()));
    }
    let too_large = || refused(format!("larger than {MAX_COMPONENT} bytes"));
    if meta.len() > MAX_COMPONENT {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    opened.take(MAX_COMPONENT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_COMPONENT {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A plugin built into the binary.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// Its name (a scheduler plugin's) or CNI type (a network plugin's).
    pub name: &'static str,
    /// The component, zlib-compressed.
    pub packed: &'static [u8],
    /// The SHA-256 of the component ([`Builtin::bytes`]), in hex, taken
    /// when it was built in.
    pub sha256: &'static str,
}

impl Builtin {
    /// The component.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(self.packed)
            .read_to_end(&mut bytes)
            .expect("a built-in plugin unpacks: the build packed it");
        bytes
    }
}

/// Loads plugins on the process's engine.
#[derive(Clone, Debug)]
pub struct PluginHost {
    engine: Arc<Engine>,
}

impl PluginHost {
    /// A host of plugins run by `engine`.
    pub fn new(engine: Arc<Engine>) -> PluginHost {
        PluginHost { engine }
    }

    /// The wasmtime engine the plugins run on.
    pub fn engine(&self) -> &wasmtime::Engine {
        self.engine.wasmtime()
    }

    /// The component in `file`, compiled (or loaded from the cache).
    pub fn component(&self, file: &Path) -> Result<Component, PluginError> {
        self.engine.load(file).map_err(|e| PluginError::Load {
            plugin: file.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The component of a built-in plugin, loaded from the cache without
    /// reading its bytes unless they must be compiled.
    pub fn builtin(&self, builtin: &Builtin) -> Result<Component, PluginError> {
        let bytes = || Ok(Cow::Owned(builtin.bytes()));
        let compiled = self.engine.compile_lazily(builtin.sha256, bytes);
        compiled.map_err(|e| PluginError::Load {
            plugin: builtin.name.to_owned(),
            message: e.to_string(),
        })
    }

    /// The component of `bytes` (the plugin called `plugin` in errors),
    /// compiled or loaded from the cache.
    pub fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        self.engine.compile(bytes).map_err(|e| PluginError::Load {
            plugin: plugin.to_owned(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::builtin::{ADMISSION, NETWORK, SCHEDULING};

    #[test]
    fn built_in_plugins_unpack_to_the_components_their_digests_name() {
        for plugin in SCHEDULING.iter().chain(NETWORK).chain(ADMISSION) {
            let bytes = plugin.bytes();
            assert!(
                plugin.packed.len() < bytes.len(),
                "{} is packed",
                plugin.name
            );
            assert_eq!(format!("{:x}", Sha256::digest(&bytes)), plugin.sha256);
            assert!(bytes.starts_with(b"\0asm"), "{} is Wasm", plugin.name);
        }
    }
}

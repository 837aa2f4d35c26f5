//! The process's one Wasm engine, shared by whatever runs components in it:
//! a node's pods, the scheduler's plugins, the agent's network plugins.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use wasmkube_engine::{Engine, Settings};

/// The engine, keeping compiled components in `data_dir/compiled`; pooled
/// for a node's pods when the process runs a `node`.
pub fn engine(data_dir: &Path, node: bool) -> Result<Arc<Engine>> {
    let settings = Settings {
        cache_dir: data_dir.join("compiled"),
        instances: if node { wasmkube_agent::INSTANCES } else { 0 },
    };
    Ok(Arc::new(Engine::start(&settings)?))
}

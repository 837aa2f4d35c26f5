//! The process's one Wasm engine, shared by whatever runs components in it:
//! a node's pods, the scheduler's plugins, the agent's network plugins; and
//! `bundle`, which ships the built-in plugins compiled for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use wasmkube_engine::{Engine, Settings, Shipped};
use wasmkube_plugin_host::builtin;

/// The engine, keeping compiled components in `data_dir/compiled` (filled
/// from what the executable ships); pooled for a node's pods when the
/// process runs a `node`.
pub fn engine(data_dir: &Path, node: bool) -> Result<Arc<Engine>> {
    let settings = Settings {
        cache_dir: data_dir.join("compiled"),
        instances: if node { wasmkube_agent::INSTANCES } else { 0 },
        shipped: Shipped::in_current_exe(),
    };
    Ok(Arc::new(Engine::start(&settings)?))
}

/// Write a copy of this program that ships its built-in plugins (the
/// default scheduler plugins, the network plugins and the admission
/// policies) compiled for this
/// machine, so that a node on a fresh data dir runs them at once. Run on
/// another CPU or with another wasmtime, the copy compiles them as usual.
#[derive(Debug, Args)]
pub struct Bundle {
    /// Where the copy goes.
    #[arg(long, short)]
    output: PathBuf,
}

impl Bundle {
    pub fn run(self) -> Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::start(&Settings::at(dir.path()))?;
        let artefacts = builtin::SCHEDULING
            .iter()
            .chain(builtin::NETWORK)
            .chain(builtin::ADMISSION)
            .map(|plugin| {
                engine
                    .precompile(&plugin.bytes())
                    .with_context(|| format!("compiling the built-in plugin {}", plugin.name))
            })
            .collect::<Result<Vec<_>>>()?;
        let program = std::env::current_exe()?;
        Shipped::bundle(&program, &artefacts, &self.output)
            .with_context(|| format!("writing {}", self.output.display()))?;
        let size: usize = artefacts.iter().map(|(_, bytes)| bytes.len()).sum();
        println!(
            "{} ships {} compiled plugins ({:.1} MiB)",
            self.output.display(),
            artefacts.len(),
            size as f64 / 1_048_576.0
        );
        Ok(())
    }
}

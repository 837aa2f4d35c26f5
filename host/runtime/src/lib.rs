//! The Wasm pod runtime: the node's components, compiled once, run as the
//! containers of pods by one wasmtime [`Engine`].
//!
//! - [`ImageStore`] keeps components by digest under the node's data dir, with
//!   tags naming them (`wasmkube image import`), and pulls them from OCI
//!   registries ([`ImageStore::pull`]).
//! - [`Runtime`] owns the process's one Engine (async, epoch interruption) and
//!   compiles each image once: in memory for this process, on disk for the next
//!   (keyed by digest and by the engine's compatibility hash, so a new wasmtime
//!   never loads an old artefact).
//! - [`Runtime::run`] runs one `wasi:cli/command` container to its end: args,
//!   env, preopened directories, working dir, stdout and stderr to a rotated
//!   log in the CRI format ([`log`]), a memory limit whose
//!   refusal is reported as OOMKilled, and cooperative preemption every tick so a
//!   busy loop stalls neither other containers nor the agent (under a CPU limit
//!   it also rests for its share). A [`Stop`] ends it.
//!
//! - A `wasi:http/proxy` container serves its ports on the pod's address, an
//!   instance of the component per request in flight ([`http`]).
//!
//! It knows nothing of Kubernetes objects: the agent maps pods to [`Container`]s.

mod http;
mod images;
pub mod log;
mod registry;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use wasmkube_plugin_host::EpochTicker;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use images::{Image, ImageError, ImageStore, normalize};
pub use jiff;
pub use log::Rotation;
pub use registry::{Credentials, PullError, Pulled, names_a_registry, push, registry_of};
pub use run::{Container, Exit, Mount, Names, Stop};

/// How often running guests are interrupted to let others run.
pub const TICK: Duration = Duration::from_millis(10);

/// Why the runtime cannot start or a component cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration or the component.
    #[error("{0}")]
    Wasm(String),
    /// The data dir could not be used.
    #[error("runtime: {0}")]
    Io(#[from] std::io::Error),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

fn wasm_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Wasm(e.to_string())
}

/// The runtime of one node.
pub struct Runtime {
    engine: Engine,
    images: ImageStore,
    /// Where compiled components are kept.
    compiled_dir: PathBuf,
    /// Components compiled or loaded by this process, by digest.
    compiled: Mutex<HashMap<String, Component>>,
    /// Advances the engine's epoch while the runtime lives.
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("compiled_dir", &self.compiled_dir)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime for up to `pods` pods, keeping its images and compiled
    /// components under `data_dir`.
    ///
    /// Instances come from wasmtime's pooling allocator, sized for `pods` pods of
    /// two containers on average: slots are reserved once (address space, not
    /// memory) and reused, so starting a container maps nothing new. When the
    /// pool cannot be reserved (an address-space limit) the runtime allocates on
    /// demand instead.
    pub fn new(data_dir: &Path, pods: u32) -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let mut pooled = config.clone();
        pooled.allocation_strategy(pool(pods));
        let engine = match Engine::new(&pooled) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(error = %e, "no pooling allocator: instances allocated on demand");
                Engine::new(&config).map_err(wasm_error)?
            }
        };
        let compiled_dir = data_dir.join("compiled");
        std::fs::create_dir_all(&compiled_dir)?;
        let ticker = EpochTicker::start(&engine, TICK, "wasm-epoch")?;
        Ok(Runtime {
            engine,
            images: ImageStore::open(data_dir)?,
            compiled_dir,
            compiled: Mutex::default(),
            _ticker: ticker,
        })
    }

    /// The node's images.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The compiled form of `image`: from memory, else from disk, else compiled
    /// now (off the async threads) and kept in both.
    pub async fn component(&self, image: &Image) -> Result<Component, RuntimeError> {
        if let Some(found) = self
            .compiled
            .lock()
            .expect("compiled lock")
            .get(&image.digest)
        {
            return Ok(found.clone());
        }
        let engine = self.engine.clone();
        let (source, cache) = (image.path.clone(), self.compiled_dir.clone());
        let component = tokio::task::spawn_blocking(move || {
            wasmkube_plugin_host::load_component(&engine, &source, &cache)
        })
        .await
        .map_err(wasm_error)?
        .map_err(RuntimeError::Wasm)?;
        self.compiled
            .lock()
            .expect("compiled lock")
            .insert(image.digest.clone(), component.clone());
        Ok(component)
    }

    /// Runs `container` until it ends or `stop` is set: a `wasi:cli/command`
    /// to its end, a `wasi:http/proxy` serving its ports until stopped.
    pub async fn run(&self, container: &Container, stop: &Stop) -> Exit {
        let component = match self.component(&container.image).await {
            Ok(c) => c,
            Err(e) => {
                return Exit::Failed {
                    code: 128,
                    reason: format!("cannot load the image: {e}"),
                };
            }
        };
        let log = match log::LogFile::open(&container.log, container.rotation) {
            Ok(log) => log,
            Err(e) => {
                return Exit::Failed {
                    code: 128,
                    reason: format!("cannot open the log: {e}"),
                };
            }
        };
        let exit = if http::serves_http(&self.engine, &component) {
            http::serve(&self.engine, &component, container, &log, stop).await
        } else {
            run::run(&self.engine, &component, container, &log, stop).await
        };
        if let Err(e) = log.finish() {
            tracing::warn!(log = %container.log.display(), error = %e, "writing the log");
        }
        exit
    }
}

/// The instance pool for `pods` pods: two containers each on average, each a
/// component of a few core instances (the program and its adapter shims) with
/// one memory of up to 4 GiB (wasm32's most) and tables big enough for the
/// interpreters other languages bring.
fn pool(pods: u32) -> InstanceAllocationStrategy {
    let containers = pods.max(1).saturating_mul(2);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(containers)
        .total_core_instances(containers.saturating_mul(6))
        .total_memories(containers.saturating_mul(2))
        .total_tables(containers.saturating_mul(6))
        .total_stacks(containers)
        .max_memory_size(4 << 30)
        .table_elements(100_000)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_tables_per_module(4)
        .max_core_instances_per_component(32);
    InstanceAllocationStrategy::Pooling(pool)
}

//! The Wasm pod runtime: the node's components run as the containers of
//! pods on the process's one [`Engine`].
//!
//! - [`Runtime`] compiles each image of the node's [`ImageStore`] once (the
//!   engine's compile cache keeps the artefact on disk for the next process)
//!   and keeps it in memory for this one.
//! - [`Runtime::run`] runs one `wasi:cli/command` container to its end: args,
//!   env, preopened directories, working dir, stdout and stderr to a rotated
//!   log in the CRI format ([`log`]), a memory limit whose
//!   refusal is reported as OOMKilled, and cooperative preemption every tick so a
//!   busy loop stalls neither other containers nor the agent (under a CPU limit
//!   it also rests for its share). Cancelling its token ends it.
//! - A `wasi:http/proxy` container serves its ports on the pod's address, an
//!   instance of the component per request in flight ([`http`]).
//! - Containers' outgoing requests are resolved and connected here, each
//!   address checked by the node's [`Egress`] first ([`egress`]).
//!
//! It knows nothing of Kubernetes objects (the agent maps pods to
//! [`Container`]s) and nothing of plugins.

pub mod egress;
mod http;
pub mod log;
mod run;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use wasmkube_engine::Engine;
use wasmkube_oci::{Image, ImageStore};
use wasmtime::component::{Component, Linker};

pub use egress::{Decide, Egress, Listeners, Net};
pub use jiff;
pub use log::Rotation;
pub use run::{Container, Exit, Mount, Names};
pub use tokio_util::sync::CancellationToken;

/// Why the runtime cannot start or a component cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration or the component.
    #[error("{0}")]
    Wasm(String),
    /// The data dir could not be used.
    #[error("runtime: {0}")]
    Io(#[from] std::io::Error),
}

fn wasm_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Wasm(e.to_string())
}

/// The runtime of one node.
pub struct Runtime {
    engine: Arc<Engine>,
    /// WASI and wasi:http, linked once for every container.
    linker: Linker<run::State>,
    images: ImageStore,
    /// Components compiled or loaded by this process, by digest: one cell
    /// per image, so the pods of a new image wait for one compilation
    /// rather than each starting its own.
    compiled: Mutex<HashMap<String, Arc<OnceCell<Component>>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime on `engine`, keeping its images under `data_dir`.
    pub fn new(engine: Arc<Engine>, data_dir: &Path) -> Result<Runtime, RuntimeError> {
        let mut linker = Linker::new(engine.wasmtime());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| RuntimeError::Wasm(format!("cannot link WASI: {e}")))?;
        Ok(Runtime {
            engine,
            linker,
            images: ImageStore::open(data_dir)?,
            compiled: Mutex::default(),
        })
    }

    /// The node's images.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The compiled form of `image`: from memory, else from disk, else compiled
    /// now (off the async threads) and kept in both.
    pub async fn component(&self, image: &Image) -> Result<Component, RuntimeError> {
        let cell = self
            .compiled
            .lock()
            .expect("compiled lock")
            .entry(image.digest.clone())
            .or_default()
            .clone();
        let component = cell
            .get_or_try_init(|| async {
                let (engine, source) = (self.engine.clone(), image.path.clone());
                // Images are stored by digest: a compiled one is found without
                // reading and hashing its file again.
                let sha256 = image.digest.trim_start_matches("sha256:").to_owned();
                tokio::task::spawn_blocking(move || engine.load_known(&sha256, &source))
                    .await
                    .map_err(wasm_error)?
                    .map_err(wasm_error)
            })
            .await?;
        Ok(component.clone())
    }

    /// Runs `container` until it ends or `stop` is set: a `wasi:cli/command`
    /// to its end, a `wasi:http/proxy` serving its ports until stopped.
    pub async fn run(&self, container: &Container, stop: &CancellationToken) -> Exit {
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
        let engine = self.engine.wasmtime();
        let shares = run::Shares::of(container, self.engine.instances());
        let exit = if http::serves_http(engine, &component) {
            http::serve(
                engine,
                &self.linker,
                &component,
                container,
                &log,
                stop,
                shares,
            )
            .await
        } else {
            run::run(
                engine,
                &self.linker,
                &component,
                container,
                &log,
                stop,
                &shares,
            )
            .await
        };
        if let Err(e) = log.finish() {
            tracing::warn!(log = %container.log.display(), error = %e, "writing the log");
        }
        exit
    }
}

//! What bounds a guest: an epoch ticker (time) and a memory limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// Advances an engine's epoch every tick on a thread of its own, until dropped
/// (or the engine is gone).
#[derive(Debug)]
pub(crate) struct EpochTicker(Arc<AtomicBool>);

impl EpochTicker {
    /// Starts a thread ticking `engine` every `tick`.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let gone = Arc::new(AtomicBool::new(false));
        let (engine, stop) = (engine.weak(), gone.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(EpochTicker(gone))
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Refuses linear memory growth past a limit (over all of a store's memories),
/// and remembers that it did: a refusal shows in the guest only as a failed
/// allocation, usually a trap, so the host reads it here to say why.
#[derive(Debug, Default)]
pub struct MemoryLimit {
    limit: Option<usize>,
    used: usize,
    refused: bool,
}

impl MemoryLimit {
    /// A limit of `limit` bytes (none: unlimited).
    pub fn new(limit: Option<usize>) -> MemoryLimit {
        MemoryLimit {
            limit,
            ..MemoryLimit::default()
        }
    }

    /// Whether a growth was refused.
    pub fn refused(&self) -> bool {
        self.refused
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.used - current.min(self.used) + desired;
        if self.limit.is_some_and(|limit| after > limit) {
            self.refused = true;
            return Ok(false);
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

//! What bounds a guest: an epoch ticker (time) and a memory limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Bytes of linear memory several stores share (the instances of one
/// container): each store's growth is charged here, and given back when the
/// store goes.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more, unless that goes past the limit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Refuses linear memory growth past a limit (over all of a store's memories,
/// or over all the stores sharing a [`MemoryBudget`]), and remembers that it
/// did: a refusal shows in the guest only as a failed allocation, usually a
/// trap, so the host reads it here to say why.
#[derive(Debug, Default)]
pub struct MemoryLimit {
    limit: Option<usize>,
    budget: Option<Arc<MemoryBudget>>,
    used: usize,
    refused: bool,
}

impl MemoryLimit {
    /// A limit of `limit` bytes (none: unlimited).
    pub fn new(limit: Option<usize>) -> MemoryLimit {
        MemoryLimit {
            limit,
            budget: None,
            used: 0,
            refused: false,
        }
    }

    /// A limit shared with the other stores of `budget`.
    pub fn shared(budget: Arc<MemoryBudget>) -> MemoryLimit {
        MemoryLimit {
            limit: None,
            budget: Some(budget),
            used: 0,
            refused: false,
        }
    }

    /// The bytes of linear memory and tables its instance holds.
    pub fn used(&self) -> usize {
        self.used
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
        let more = after.saturating_sub(self.used);
        let refused = self.limit.is_some_and(|limit| after > limit)
            || self.budget.as_ref().is_some_and(|b| !b.take(more));
        if refused {
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

impl Drop for MemoryLimit {
    /// Gives what the store took back to the budget it shares.
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.used);
        }
    }
}

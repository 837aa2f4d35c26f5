//! The one wasmtime [`Engine`] of a Wasmkube process, shared by everything
//! that runs Wasm in it: the pod runtime, the scheduler's plugins, the
//! agent's network plugins.
//!
//! - One configuration: epoch interruption, and wasmtime's pooling allocator
//!   sized by [`Settings::instances`] (slots reserved once as address space,
//!   then reused), or allocation on demand where no pool is wanted or the
//!   pool cannot be reserved.
//! - One ticker thread advancing the epoch every [`TICK`]: a guest's time is
//!   counted in ticks ([`Engine::ticks`]).
//! - One compile cache ([`Engine::compile`]): artefacts on disk keyed by the
//!   component's digest and the engine's compatibility hash, so a component
//!   is compiled once per wasmtime build, not once per process; artefacts
//!   [`Shipped`] in the executable fill it on a fresh data dir.
//! - [`MemoryLimit`] bounds the linear memory of a store.
//!
//! This crate knows neither pods nor plugins; it must not depend on either.

mod cache;
mod limits;
mod shipped;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use limits::{MemoryBudget, MemoryLimit};
pub use shipped::Shipped;

/// How often the epoch advances: the granularity of every guest's time
/// limit and of preemption.
pub const TICK: Duration = Duration::from_millis(10);

/// Why the engine cannot start or a component cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("wasm engine: {0}")]
    Config(String),
    /// The compile cache or the ticker thread could not be set up.
    #[error("wasm engine: {0}")]
    Io(#[from] std::io::Error),
    /// The component could not be read or compiled.
    #[error("{0}")]
    Compile(String),
}

/// What the engine is built for.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where compiled components are kept.
    pub cache_dir: PathBuf,
    /// How many component instances the pool holds at once (0: no pool,
    /// instances allocated on demand).
    pub instances: u32,
    /// Compiled artefacts shipped with the program.
    pub shipped: Shipped,
}

impl Settings {
    /// An engine without a pool, keeping compiled components in `cache_dir`
    /// (for processes that run only a few plugins).
    pub fn at(cache_dir: &Path) -> Settings {
        Settings {
            cache_dir: cache_dir.to_owned(),
            instances: 0,
            shipped: Shipped::default(),
        }
    }
}

/// The process's engine, its ticker and its compile cache.
pub struct Engine {
    engine: wasmtime::Engine,
    /// The instances its pool holds (0: no pool).
    instances: u32,
    cache_dir: PathBuf,
    shipped: Shipped,
    _ticker: limits::EpochTicker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine of `settings`, its ticker started.
    pub fn start(settings: &Settings) -> Result<Engine, EngineError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // No map from machine code back to Wasm offsets: it only adds
        // offsets to a trap's backtrace, which the host leaves out anyway,
        // and it is a tenth of every artefact, resident and shipped.
        config.generate_address_map(false);
        let (engine, instances) = if settings.instances == 0 {
            (wasmtime::Engine::new(&config), 0)
        } else {
            let mut pooled = config.clone();
            pooled.allocation_strategy(pool(settings.instances));
            match wasmtime::Engine::new(&pooled) {
                Ok(engine) => (Ok(engine), settings.instances),
                Err(e) => {
                    tracing::warn!(error = %e, "no pooling allocator: instances allocated on demand");
                    (wasmtime::Engine::new(&config), 0)
                }
            }
        };
        let engine = engine.map_err(|e| EngineError::Config(format!("{e:#}")))?;
        std::fs::create_dir_all(&settings.cache_dir)?;
        let ticker = limits::EpochTicker::start(&engine, TICK)?;
        Ok(Engine {
            engine,
            instances,
            cache_dir: settings.cache_dir.clone(),
            shipped: settings.shipped.clone(),
            _ticker: ticker,
        })
    }

    /// How many instances its pool holds at once (0: no pool).
    pub fn instances(&self) -> u32 {
        self.instances
    }

    /// The wasmtime engine, for stores, linkers and instances.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The component of `bytes`, from its artefact in the cache when this
    /// engine's build wrote one, else compiled now and its artefact kept.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, EngineError> {
        let sha256 = format!("{:x}", Sha256::digest(bytes));
        self.compile_known(&sha256, bytes)
    }

    /// [`Engine::compile`] of `bytes` whose SHA-256 (hex) is `sha256`,
    /// known ahead: the bytes are read only if they must be compiled.
    pub fn compile_known(&self, sha256: &str, bytes: &[u8]) -> Result<Component, EngineError> {
        self.compile_lazily(sha256, || Ok(Cow::Borrowed(bytes)))
    }

    /// [`Engine::compile_known`] of bytes that `bytes` gives (unpacking them,
    /// say) only if they must be compiled.
    pub fn compile_lazily<'a>(
        &self,
        sha256: &str,
        bytes: impl FnOnce() -> Result<Cow<'a, [u8]>, String>,
    ) -> Result<Component, EngineError> {
        cache::compile(&self.engine, sha256, bytes, &self.cache_dir, &self.shipped)
            .map_err(EngineError::Compile)
    }

    /// The component in `file`, as [`Engine::compile`] gives it.
    pub fn load(&self, file: &Path) -> Result<Component, EngineError> {
        self.compile(&read(file)?)
    }

    /// The component in `file`, whose SHA-256 (hex) is `sha256`, known
    /// ahead (an image stored by digest): the file is read only if it must
    /// be compiled.
    pub fn load_known(&self, sha256: &str, file: &Path) -> Result<Component, EngineError> {
        self.compile_lazily(sha256, || {
            read(file).map(Cow::Owned).map_err(|e| e.to_string())
        })
    }

    /// The artefact of `bytes` compiled by this engine, and its name: what
    /// [`Shipped::bundle`] ships for it.
    pub fn precompile(&self, bytes: &[u8]) -> Result<(String, Vec<u8>), EngineError> {
        let name = cache::artefact_name(&self.engine, &format!("{:x}", Sha256::digest(bytes)));
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        Ok((name, compiled))
    }

    /// How many ticks make at least `time` (one at the least): an epoch
    /// deadline for a call that may run that long.
    pub fn ticks(time: Duration) -> u64 {
        let ticks = time.as_nanos().div_ceil(TICK.as_nanos()).max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

/// The bytes of `file`.
fn read(file: &Path) -> Result<Vec<u8>, EngineError> {
    std::fs::read(file)
        .map_err(|e| EngineError::Compile(format!("reading {}: {e}", file.display())))
}

/// The instance pool for `instances` component instances, each a component
/// of a few core instances (the program and its adapter shims) with one
/// memory of up to 4 GiB (wasm32's most) and tables big enough for the
/// interpreters other languages bring.
fn pool(instances: u32) -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(6))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(6))
        .total_stacks(instances)
        .max_memory_size(4 << 30)
        .table_elements(100_000)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_tables_per_module(4)
        .max_core_instances_per_component(32);
    InstanceAllocationStrategy::Pooling(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_never_reach_zero() {
        assert_eq!(Engine::ticks(Duration::ZERO), 1);
        assert_eq!(Engine::ticks(Duration::from_millis(1)), 1);
        assert_eq!(Engine::ticks(TICK), 1);
        assert_eq!(Engine::ticks(TICK + Duration::from_nanos(1)), 2);
        assert_eq!(Engine::ticks(Duration::from_secs(10)), 1000);
        assert_eq!(Engine::ticks(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_shipped_artefact_fills_a_fresh_cache_for_pooled_and_unpooled_engines() {
        // The empty component, `(component)`, in binary.
        const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";
        let dir = tempfile::tempdir().unwrap();
        let pooled = Settings {
            instances: 4,
            ..Settings::at(&dir.path().join("pooled"))
        };
        let (name, artefact) = Engine::start(&pooled).unwrap().precompile(EMPTY).unwrap();
        let bundle = dir.path().join("bundle");
        Shipped::bundle(Path::new("/bin/true"), &[(name.clone(), artefact)], &bundle).unwrap();
        let sha256 = format!("{:x}", Sha256::digest(EMPTY));
        for instances in [0, 4] {
            let cache = dir.path().join(format!("fresh-{instances}"));
            let engine = Engine::start(&Settings {
                instances,
                shipped: Shipped::in_file(&bundle).unwrap(),
                ..Settings::at(&cache)
            })
            .unwrap();
            // Bytes that do not compile: the shipped artefact is what loads.
            engine.compile_known(&sha256, b"not wasm").unwrap();
            assert!(cache.join(&name).exists());
        }
    }
}

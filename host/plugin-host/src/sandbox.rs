//! What every plugin call runs in: a store with WASI (no files, no network,
//! stderr kept to explain a failure), a memory limit, and a time limit per
//! call, whatever the plugin's world.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmkube_engine::MemoryLimit;

use crate::{Limits, PluginError};

/// A deadline, in ticks, that no call reaches (centuries of ticks):
/// between calls, nothing runs.
const NO_DEADLINE: u64 = 1 << 40;

/// How much of a plugin's stderr is kept to explain a failure.
const STDERR_KEPT: usize = 4096;

/// A plugin store's data: WASI, the limiter, and what the host keeps for
/// the plugin's world (`host`).
pub(crate) struct State<T> {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimit,
    stderr: MemoryOutputPipe,
    pub(crate) host: T,
}

impl<T: Send> WasiView for State<T> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<T> State<T> {
    /// The bytes of memory its instance holds.
    pub(crate) fn memory(&self) -> usize {
        self.limiter.used()
    }
}

/// A store for one plugin instance, within `limits`.
pub(crate) fn store<T: Send>(engine: &Engine, limits: Limits, host: T) -> Store<State<T>> {
    let stderr = MemoryOutputPipe::new(STDERR_KEPT);
    let state = State {
        wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
        table: ResourceTable::new(),
        limiter: MemoryLimit::new(Some(limits.memory)),
        stderr,
        host,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(NO_DEADLINE);
    store
}

/// Runs `f` on `store` within `limits`; a trap, a timeout or a refused
/// allocation becomes a [`PluginError::Call`] naming `plugin` and `call`,
/// with what the plugin wrote to stderr. A store that failed must not be
/// entered again.
pub(crate) fn bounded<T, R>(
    store: &mut Store<State<T>>,
    limits: Limits,
    plugin: &str,
    call: &'static str,
    f: impl FnOnce(&mut Store<State<T>>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    store.set_epoch_deadline(wasmkube_engine::Engine::ticks(limits.call_time).min(NO_DEADLINE));
    let result = f(store);
    store.set_epoch_deadline(NO_DEADLINE);
    result.map_err(|e| failure(store, limits, plugin, call, &e))
}

/// [`bounded`], for the async calls of a store whose host functions wait.
pub(crate) async fn bounded_async<T: Send, R>(
    store: &mut Store<State<T>>,
    limits: Limits,
    plugin: &str,
    call: &'static str,
    f: impl AsyncFnOnce(&mut Store<State<T>>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    store.set_epoch_deadline(wasmkube_engine::Engine::ticks(limits.call_time).min(NO_DEADLINE));
    let result = f(store).await;
    store.set_epoch_deadline(NO_DEADLINE);
    result.map_err(|e| failure(store, limits, plugin, call, &e))
}

/// The error of a call of `plugin` that failed with `e`: its time, its
/// memory, its trap or the host's refusal, and what it wrote to stderr.
fn failure<T>(
    store: &Store<State<T>>,
    limits: Limits,
    plugin: &str,
    call: &'static str,
    e: &wasmtime::Error,
) -> PluginError {
    let state = store.data();
    let mut message = if state.limiter.refused() {
        format!("wanted more than {} bytes of memory", limits.memory)
    } else {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("ran longer than {:?}", limits.call_time),
            // The trap, without the guest's backtrace.
            Some(trap) => trap.to_string(),
            None => e.root_cause().to_string(),
        }
    };
    let said = String::from_utf8_lossy(&state.stderr.contents())
        .trim()
        .to_owned();
    if !said.is_empty() {
        message = format!("{message} (stderr: {said})");
    }
    PluginError::Call {
        plugin: plugin.to_owned(),
        call,
        message,
    }
}

/// The interfaces of `prefix` (`wasmkube:scheduler/plugin`) that `component`
/// exports, with their versions.
pub(crate) fn exported_versions(
    engine: &Engine,
    component: &wasmtime::component::Component,
    prefix: &str,
) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Refuses a component that does not export `expected`.
pub(crate) fn check_version(
    engine: &Engine,
    component: &wasmtime::component::Component,
    plugin: &str,
    expected: &str,
) -> Result<(), PluginError> {
    let prefix = expected.split('@').next().unwrap_or(expected);
    let exported = exported_versions(engine, component, prefix);
    if exported.iter().any(|e| e == expected) {
        return Ok(());
    }
    Err(PluginError::Version {
        plugin: plugin.to_owned(),
        found: if exported.is_empty() {
            format!("no {prefix} interface")
        } else {
            exported.join(", ")
        },
        expected: expected.into(),
    })
}

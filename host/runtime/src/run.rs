//! One `wasi:cli/command` container, run to its end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::Image;
use crate::log::{LogFile, Rotation, Source};

/// A directory the container sees.
#[derive(Clone, Debug)]
pub struct Mount {
    /// Where it is on the node.
    pub host: PathBuf,
    /// Where the guest finds it (`/data`).
    pub guest: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Container {
    /// The component.
    pub image: Image,
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Directories the guest can reach; nothing else is.
    pub mounts: Vec<Mount>,
    /// The directory it starts in (`wasi:cli/environment.initial-cwd`, and `PWD`).
    pub working_dir: Option<String>,
    /// The log its stdout and stderr go to, a line each (see [`crate::log`]).
    pub log: PathBuf,
    /// When its log files rotate.
    pub rotation: Rotation,
    /// The most linear memory, in bytes, all its instances may hold.
    pub memory_limit: Option<usize>,
    /// The share of one CPU it may use, in thousandths (`500` for `500m`).
    pub cpu_millis: Option<u32>,
}

/// Asks a running container to stop.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Stops the container at its next tick.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the container was asked to stop.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It returned success.
    Completed,
    /// It failed: its exit code (1 when the guest could only say "failure") and why.
    Failed {
        /// The exit code.
        code: i32,
        /// What happened, for a person.
        reason: String,
    },
    /// It wanted more memory than its limit.
    OomKilled,
    /// It was stopped.
    Stopped,
}

impl Exit {
    /// The exit code Kubernetes reports for it.
    pub fn code(&self) -> i32 {
        match self {
            Exit::Completed => 0,
            Exit::Failed { code, .. } => *code,
            Exit::OomKilled => 137,
            Exit::Stopped => 143,
        }
    }
}

/// Refuses linear memory growth past a limit, and remembers that it did.
struct Limiter {
    limit: Option<usize>,
    used: usize,
    refused: bool,
}

impl ResourceLimiter for Limiter {
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

/// What a container's store holds.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn failed(code: i32, reason: impl Into<String>) -> Exit {
    Exit::Failed {
        code,
        reason: reason.into(),
    }
}

pub(crate) async fn run(
    engine: &wasmtime::Engine,
    component: &Component,
    container: &Container,
    stop: &Stop,
) -> Exit {
    let log = match LogFile::open(&container.log, container.rotation) {
        Ok(log) => log,
        Err(e) => return failed(128, format!("cannot open the log: {e}")),
    };
    let mut wasi = WasiCtx::builder();
    wasi.args(&container.args)
        .envs(&container.env)
        .stdout(log.stream(Source::Stdout))
        .stderr(log.stream(Source::Stderr));
    if let Some(dir) = &container.working_dir {
        wasi.initial_cwd(dir).env("PWD", dir);
    }
    for mount in &container.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        if let Err(e) = wasi.preopened_dir(&mount.host, &mount.guest, perms) {
            return failed(128, format!("cannot mount {}: {e}", mount.guest));
        }
    }
    let state = State {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            limit: container.memory_limit,
            used: 0,
            refused: false,
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Every tick the guest yields to the other tasks, or ends if asked to stop.
    // Under a CPU limit it also rests long enough for what it ran to be its
    // share: 10 ms run at 250m means 30 ms of rest.
    store.set_epoch_deadline(1);
    let stopping = stop.clone();
    let share = container
        .cpu_millis
        .filter(|m| *m < 1000)
        .map(|m| f64::from(m.max(1)) / 1000.0);
    let resumed = Arc::new(Mutex::new(Instant::now()));
    store.epoch_deadline_callback(move |_| {
        if stopping.is_set() {
            return Err(Trap::Interrupt.into());
        }
        let Some(share) = share else {
            return Ok(UpdateDeadline::Yield(1));
        };
        let ran = resumed.lock().expect("resumed lock").elapsed();
        let rest = ran.mul_f64(1.0 / share - 1.0);
        let resumed = resumed.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::time::sleep(rest).await;
                *resumed.lock().expect("resumed lock") = Instant::now();
            }),
        ))
    });
    let mut linker = Linker::new(engine);
    if let Err(e) = wasmtime_wasi::p2::add_to_linker_async(&mut linker) {
        return failed(128, format!("cannot link WASI: {e}"));
    }
    let pre = match linker.instantiate_pre(component).and_then(CommandPre::new) {
        Ok(pre) => pre,
        Err(e) => return failed(128, format!("not a wasi:cli command: {e}")),
    };
    let result = match pre.instantiate_async(&mut store).await {
        Ok(command) => command.wasi_cli_run().call_run(&mut store).await,
        Err(e) => Err(e),
    };
    if let Err(e) = log.finish() {
        tracing::warn!(log = %container.log.display(), error = %e, "writing the log");
    }
    match result {
        Ok(Ok(())) => Exit::Completed,
        Ok(Err(())) => failed(1, "the command returned failure"),
        Err(_) if store.data().limiter.refused => Exit::OomKilled,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Exit::Completed,
            Some(I32Exit(code)) => failed(*code, "exited"),
            None if stop.is_set() => Exit::Stopped,
            None => failed(
                1,
                match e.downcast_ref::<Trap>() {
                    Some(trap) => format!("trapped: {trap}"),
                    None => format!("{e:#}"),
                },
            ),
        },
    }
}

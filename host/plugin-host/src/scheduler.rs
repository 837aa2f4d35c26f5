//! A scheduler plugin: the world `wasmkube:scheduler/scheduler-plugin` of
//! `wit/scheduler`, called synchronously with every call bounded.

use std::collections::BTreeMap;
use std::path::Path;

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::sandbox::{self, State};
use crate::{Limits, PluginError, PluginHost};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/scheduler",
        world: "scheduler-plugin",
    });
}

use bindings::SchedulerPluginPre;
pub use bindings::wasmkube::scheduler::types::{Code, NodeChange, Rejection, Status};

/// The interface a scheduler plugin exports, with its version.
pub const WIT_PACKAGE: &str = "wasmkube:scheduler/plugin@0.1.0";

/// Node changes given to a plugin per call: each call is bounded in time, and
/// a plugin parses each node it is given.
const FEED_BATCH: usize = 256;

/// A call into the plugin's exports.
trait Call<T>:
    FnOnce(
    &bindings::exports::wasmkube::scheduler::plugin::Guest,
    &mut Store<State<()>>,
) -> wasmtime::Result<T>
{
}

impl<T, F> Call<T> for F where
    F: FnOnce(
        &bindings::exports::wasmkube::scheduler::plugin::Guest,
        &mut Store<State<()>>,
    ) -> wasmtime::Result<T>
{
}

/// A live instance and its store.
struct Live {
    store: Store<State<()>>,
    plugin: bindings::SchedulerPlugin,
}

/// A loaded scheduler plugin.
pub struct SchedulerPlugin {
    name: String,
    pre: SchedulerPluginPre<State<()>>,
    /// The host, whose engine's ticker bounds the calls while it lives.
    host: PluginHost,
    limits: Limits,
    args: String,
    /// The nodes as last given (Node, and pods by uid), to feed a fresh
    /// instance.
    nodes: BTreeMap<u32, (String, BTreeMap<String, String>)>,
    /// The instance; none after a failure, until the next call makes one.
    live: Option<Live>,
}

impl std::fmt::Debug for SchedulerPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerPlugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SchedulerPlugin {
    /// Loads the plugin in `file`, checks the interface version it was built
    /// for, and configures it with `args` (JSON).
    pub fn load(
        host: &PluginHost,
        file: &Path,
        args: &str,
        limits: Limits,
    ) -> Result<SchedulerPlugin, PluginError> {
        let component = host.component(file)?;
        SchedulerPlugin::new(host, &file.display().to_string(), &component, args, limits)
    }

    /// The plugin of a compiled `component` (called `plugin` until it gives
    /// its name): checks the interface version it was built for, and
    /// configures it with `args` (JSON).
    pub fn new(
        host: &PluginHost,
        plugin: &str,
        component: &Component,
        args: &str,
        limits: Limits,
    ) -> Result<SchedulerPlugin, PluginError> {
        let plugin = plugin.to_owned();
        let engine = host.engine();
        sandbox::check_version(engine, component, &plugin, WIT_PACKAGE)?;
        let mut linker = Linker::new(engine);
        let load = |message: String| PluginError::Load {
            plugin: plugin.clone(),
            message,
        };
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| load(e.to_string()))?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(SchedulerPluginPre::new)
            .map_err(|e| load(format!("{e:#}")))?;
        let mut loaded = SchedulerPlugin {
            name: plugin,
            pre,
            host: host.clone(),
            limits,
            args: args.to_owned(),
            nodes: BTreeMap::new(),
            live: None,
        };
        loaded.name = loaded.call("name", |p, s| p.call_name(s))?;
        Ok(loaded)
    }

    /// The plugin's name, as it gives it (or as it was renamed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names the plugin `name` in its errors from now on (for a plugin known
    /// by the object that declared it).
    pub fn rename(&mut self, name: &str) {
        name.clone_into(&mut self.name);
    }

    /// A fresh instance, configured and fed every node, each call bounded.
    fn start(&mut self) -> Result<(), PluginError> {
        let mut store = sandbox::store(self.host.engine(), self.limits, ());
        let plugin = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Call {
                plugin: self.name.clone(),
                call: "instantiate",
                message: format!("{e:#}"),
            })?;
        self.live = Some(Live { store, plugin });
        let args = self.args.clone();
        if let Err(message) = self.bounded("configure", |p, s| p.call_configure(s, &args))? {
            self.live = None;
            return Err(PluginError::Config {
                plugin: self.name.clone(),
                message,
            });
        }
        let mut all = Vec::new();
        for (id, (node, pods)) in &self.nodes {
            all.push(NodeChange::Set((*id, node.clone())));
            for (uid, pod) in pods {
                all.push(NodeChange::PodAdded((*id, uid.clone(), pod.clone())));
            }
        }
        self.feed(&all)
    }

    /// Runs one call, on a fresh instance if there is none.
    fn call<T>(&mut self, call: &'static str, f: impl Call<T>) -> Result<T, PluginError> {
        if self.live.is_none() {
            self.start()?;
        }
        self.bounded(call, f)
    }

    /// Runs one call on the live instance, bounded by the limits; a failure
    /// drops the instance.
    fn bounded<T>(&mut self, call: &'static str, f: impl Call<T>) -> Result<T, PluginError> {
        let Some(mut live) = self.live.take() else {
            return Err(PluginError::Call {
                plugin: self.name.clone(),
                call,
                message: "no instance".into(),
            });
        };
        let plugin = &live.plugin;
        let result = sandbox::bounded(&mut live.store, self.limits, &self.name, call, |store| {
            f(plugin.wasmkube_scheduler_plugin(), store)
        });
        if result.is_ok() {
            self.live = Some(live);
        }
        result
    }

    /// Tells the plugin what changed in the nodes.
    pub fn update_nodes(&mut self, changes: &[NodeChange]) -> Result<(), PluginError> {
        for change in changes {
            match change {
                NodeChange::Set((id, json)) => {
                    self.nodes.entry(*id).or_default().0 = json.clone();
                }
                NodeChange::Removed(id) => {
                    self.nodes.remove(id);
                }
                NodeChange::PodAdded((id, uid, json)) => {
                    if let Some((_, pods)) = self.nodes.get_mut(id) {
                        pods.insert(uid.clone(), json.clone());
                    }
                }
                NodeChange::PodRemoved((id, uid)) => {
                    if let Some((_, pods)) = self.nodes.get_mut(id) {
                        pods.remove(uid);
                    }
                }
            }
        }
        // A fresh instance is fed every node when it is made.
        if self.live.is_none() {
            return Ok(());
        }
        self.feed(changes)
    }

    /// Gives the live instance `changes`, a bounded batch per call.
    fn feed(&mut self, changes: &[NodeChange]) -> Result<(), PluginError> {
        for batch in changes.chunks(FEED_BATCH) {
            self.bounded("update-nodes", |p, s| p.call_update_nodes(s, batch))?;
        }
        Ok(())
    }

    /// Starts a cycle for the pod (its JSON).
    pub fn pre_filter(&mut self, pod: &str) -> Result<Status, PluginError> {
        self.call("pre-filter", |p, s| p.call_pre_filter(s, pod))
    }

    /// The nodes among `nodes` the pod does not fit, and why.
    pub fn filter(&mut self, nodes: &[u32]) -> Result<Vec<Rejection>, PluginError> {
        self.call("filter", |p, s| p.call_filter(s, nodes))
    }

    /// Reserves `node` for the cycle's pod.
    pub fn reserve(&mut self, node: u32) -> Result<Status, PluginError> {
        self.call("reserve", |p, s| p.call_reserve(s, node))
    }

    /// Undoes `reserve`.
    pub fn unreserve(&mut self, node: u32) -> Result<(), PluginError> {
        self.call("unreserve", |p, s| p.call_unreserve(s, node))
    }

    /// Whether the cycle's pod may be bound to `node`.
    pub fn permit(&mut self, node: u32) -> Result<Status, PluginError> {
        self.call("permit", |p, s| p.call_permit(s, node))
    }

    /// The plugin's scores of `nodes`, normalized to 0..=100; `Ok(None)` when it
    /// does not score.
    pub fn score(&mut self, nodes: &[u32]) -> Result<Option<Vec<i64>>, PluginError> {
        let scores = self.call("score", |p, s| p.call_score(s, nodes))?;
        match scores {
            Ok(scores) => self
                .call("normalize-score", |p, s| p.call_normalize_score(s, &scores))
                .map(Some),
            Err(status) if matches!(status.code, Code::Skip) => Ok(None),
            Err(status) => Err(PluginError::Call {
                plugin: self.name.clone(),
                call: "score",
                message: status.reason,
            }),
        }
    }
}

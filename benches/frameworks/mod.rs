//! The scheduler's default plugins two ways, for the benchmarks: as Wasm
//! components on the plugin host, and as the same crates compiled natively
//! behind the same `Extension` trait and the same SDK glue (the pod and the
//! nodes parsed from the same JSON), so the two differ only by Wasm.

use wasmkube_default_plugins::{
    NodeAffinity, NodeName, NodeResourcesBalancedAllocation, NodeResourcesFit, NodeUnschedulable,
    PodTopologySpread, TaintToleration,
};
use wasmkube_plugin_host::{
    Code, Limits, NodeChange, PluginError, PluginHost, Rejection, SchedulerPlugin, Status,
};
use wasmkube_scheduler::{Config, Extension, Framework, default_plugins};
use wasmkube_sdk::__private::types as sdk;
use wasmkube_sdk::{Plugin, points};

/// A plugin compiled natively, called through the SDK as the component is.
struct Native<P: Plugin>(wasmkube_sdk::Host<P>);

fn status(s: sdk::Status) -> Status {
    let code = match s.code {
        sdk::Code::Success => Code::Success,
        sdk::Code::Unschedulable => Code::Unschedulable,
        sdk::Code::UnschedulableAndUnresolvable => Code::UnschedulableAndUnresolvable,
        sdk::Code::Error => Code::Error,
        sdk::Code::Skip => Code::Skip,
    };
    Status {
        code,
        reason: s.reason,
    }
}

impl<P: Plugin + Send> Extension for Native<P> {
    fn name(&self) -> &str {
        P::NAME
    }
    fn update_nodes(&mut self, changes: &[NodeChange]) -> Result<(), PluginError> {
        let changes = changes.iter().map(|c| match c {
            NodeChange::Set((id, json)) => sdk::NodeChange::Set((*id, json.clone())),
            NodeChange::Removed(id) => sdk::NodeChange::Removed(*id),
            NodeChange::PodAdded((id, uid, json)) => {
                sdk::NodeChange::PodAdded((*id, uid.clone(), json.clone()))
            }
            NodeChange::PodRemoved((id, uid)) => sdk::NodeChange::PodRemoved((*id, uid.clone())),
        });
        self.0.update_nodes(changes.collect());
        Ok(())
    }
    fn pre_filter(&mut self, pod: &str) -> Result<Status, PluginError> {
        Ok(status(self.0.pre_filter(pod)))
    }
    fn filter(&mut self, nodes: &[u32]) -> Result<Vec<Rejection>, PluginError> {
        let rejected = self.0.filter(nodes.to_vec()).into_iter();
        Ok(rejected
            .map(|r| Rejection {
                node: r.node,
                status: status(r.status),
            })
            .collect())
    }
    fn score(&mut self, nodes: &[u32]) -> Result<Option<Vec<i64>>, PluginError> {
        match self.0.score(nodes.to_vec()) {
            Ok(scores) => Ok(Some(self.0.normalize(scores))),
            Err(_) => Ok(None),
        }
    }
    fn reserve(&mut self, node: u32) -> Result<Status, PluginError> {
        Ok(status(self.0.reserve(node)))
    }
    fn unreserve(&mut self, node: u32) -> Result<(), PluginError> {
        self.0.unreserve(node);
        Ok(())
    }
    fn permit(&mut self, node: u32) -> Result<Status, PluginError> {
        Ok(status(self.0.permit(node)))
    }
}

fn native<P: Plugin + Send>(points: wasmkube_sdk::Points<P>) -> Box<dyn Extension> {
    Box::new(Native(wasmkube_sdk::Host::new(points)))
}

/// A framework of the default profile's plan over `plugins` (by name).
pub fn framework(mut plugins: Vec<Box<dyn Extension>>, percentage: u32) -> Framework {
    let plan = Config::default().profiles[0].plan();
    let names = plan.plugins();
    plugins.sort_by_key(|p| names.iter().position(|n| n == p.name()));
    Framework::planned(&plan, plugins, percentage)
}

/// The default plugins compiled natively.
pub fn natives() -> Vec<Box<dyn Extension>> {
    vec![
        native(points!(NodeName: Filter)),
        native(points!(NodeUnschedulable: Filter)),
        native(points!(NodeAffinity: PreFilter, Filter, Score)),
        native(points!(TaintToleration: PreFilter, Filter, Score)),
        native(points!(NodeResourcesFit: PreFilter, Filter, Score)),
        native(points!(NodeResourcesBalancedAllocation: PreFilter, Score)),
        native(points!(PodTopologySpread: PreFilter, Filter, Score)),
    ]
}

/// The default plugins as the Wasm components the scheduler embeds.
pub fn wasms(host: &PluginHost) -> Vec<Box<dyn Extension>> {
    default_plugins()
        .map(|builtin| {
            let component = host.builtin(builtin).unwrap();
            let plugin =
                SchedulerPlugin::new(host, builtin.name, &component, "{}", Limits::default())
                    .unwrap();
            Box::new(plugin) as Box<dyn Extension>
        })
        .collect()
}

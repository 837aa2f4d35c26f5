//! The default scheduler plugins, as Kubernetes defines them: plain Rust over
//! the SDK's [`Plugin`](wasmkube_sdk::Plugin) trait, unit-tested natively. Each
//! is exported as a Wasm component by a crate of its own in `plugins/` (a
//! component exports one plugin); the scheduler embeds those components.
//!
//! | plugin | filter | score |
//! |---|---|---|
//! | [`NodeName`] | `spec.nodeName` | |
//! | [`NodeUnschedulable`] | `spec.unschedulable` nodes | |
//! | [`NodeAffinity`] | `nodeSelector`, required node affinity | preferred node affinity |
//! | [`TaintToleration`] | untolerated `NoSchedule`/`NoExecute` taints | fewer untolerated `PreferNoSchedule` taints |
//! | [`NodeResourcesFit`] | requests vs allocatable, pod count | LeastAllocated |
//! | [`NodeResourcesBalancedAllocation`] | | cpu and memory used evenly |
//! | [`PodTopologySpread`] | `DoNotSchedule` constraints | `ScheduleAnyway` constraints |

mod affinity;
mod name;
mod resources;
mod selectors;
mod taints;
mod topology;

pub use affinity::NodeAffinity;
pub use name::{NodeName, NodeUnschedulable};
pub use resources::{NodeResourcesBalancedAllocation, NodeResourcesFit};
pub use taints::TaintToleration;
pub use topology::PodTopologySpread;

#[cfg(test)]
mod testing {
    use wasmkube_sdk::{NodeInfo, Pod};

    /// A node from its JSON, with `pods` on it.
    pub fn node(json: serde_json::Value, pods: Vec<Pod>) -> NodeInfo {
        NodeInfo::new(serde_json::from_value(json).unwrap(), pods)
    }

    /// A pod from its JSON.
    pub fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }
}

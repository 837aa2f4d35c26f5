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
mod taints;
mod topology;

pub use affinity::NodeAffinity;
pub use name::{NodeName, NodeUnschedulable};
pub use resources::{NodeResourcesBalancedAllocation, NodeResourcesFit};
pub use taints::TaintToleration;
pub use topology::PodTopologySpread;

#[cfg(test)]
mod host_tests {
    //! The plugins through the SDK's host, as the scheduler calls them.

    use serde_json::json;
    use wasmkube_sdk::__private::types::{Code, NodeChange};
    use wasmkube_sdk::{Host, points};

    use crate::{NodeName, NodeResourcesFit};

    #[test]
    fn filter_only_plugins_filter_and_pods_come_and_go() {
        let node = |name: &str| {
            json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})
        };
        let changes = || {
            vec![
                NodeChange::Set((0, node("a").to_string())),
                NodeChange::Set((1, node("b").to_string())),
            ]
        };
        let pod = json!({"spec": {"nodeName": "b", "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "600m"}}}]}})
        .to_string();
        // NodeName has no pre-filter: it still filters.
        let mut names = Host::new(points!(NodeName: Filter));
        names.update_nodes(changes());
        assert!(matches!(names.pre_filter(&pod).code, Code::Success));
        let rejected = names.filter(vec![0, 1]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].node, 0);
        assert!(names.score(vec![0, 1]).is_err(), "it does not score");
        // A pod placed on a fills it for the next; gone, a fits again.
        let mut fit = Host::new(points!(NodeResourcesFit: PreFilter, Filter, Score));
        fit.update_nodes(changes());
        let filler = json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "600m"}}}]}});
        fit.update_nodes(vec![NodeChange::PodAdded((
            0,
            "f".into(),
            filler.to_string(),
        ))]);
        fit.pre_filter(&pod);
        let rejected = fit.filter(vec![0, 1]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].status.reason, "Insufficient cpu");
        fit.update_nodes(vec![NodeChange::PodRemoved((0, "f".into()))]);
        fit.pre_filter(&pod);
        assert!(fit.filter(vec![0, 1]).is_empty());
        // Without a reserve or permit, both pass.
        assert!(matches!(fit.reserve(0).code, Code::Success));
        assert!(matches!(fit.permit(0).code, Code::Success));
    }
}

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

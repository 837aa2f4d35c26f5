//! NodeResourcesFit (with LeastAllocated scoring) and
//! NodeResourcesBalancedAllocation.

use wasmkube_sdk::scheduling::resources::insufficient;
use wasmkube_sdk::{
    Filter, NodeInfo, Nodes, Plugin, Pod, PreFilter, Resources, Score, Status, requests,
};

/// A pod fits a node when its requests (cpu, memory, ephemeral storage,
/// scalar resources, one pod) fit in what the node's allocatable leaves after
/// the requests of the pods already there ("Insufficient cpu", "Too many
/// pods", one reason a line for each resource short); nodes score
/// by the LeastAllocated strategy (the share of cpu and memory left free once
/// the pod is placed, 0 to 100).
#[derive(Debug, Default)]
pub struct NodeResourcesFit {
    /// The current pod's requests, computed once per cycle.
    pod: Resources,
}

impl Plugin for NodeResourcesFit {
    const NAME: &'static str = "NodeResourcesFit";
}

impl PreFilter for NodeResourcesFit {
    fn pre_filter(&mut self, pod: &Pod, _nodes: Nodes<'_>) -> Status {
        self.pod = requests(pod);
        Status::success()
    }
}

impl Filter for NodeResourcesFit {
    fn filter(&mut self, _pod: &Pod, node: &NodeInfo) -> Status {
        let short = insufficient(&self.pod, &node.allocatable, &node.requested);
        if short.is_empty() {
            return Status::success();
        }
        let reasons: Vec<String> = short.into_iter().map(|s| s.reason).collect();
        Status::unschedulable(reasons.join("\n"))
    }
}

impl Score for NodeResourcesFit {
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        let (has, used) = (&node.allocatable, &node.requested);
        let free = |total: i64, taken: i64| {
            if total <= 0 {
                0
            } else {
                ((total - taken).max(0) * 100) / total
            }
        };
        let cpu = free(has.milli_cpu, used.milli_cpu + self.pod.milli_cpu);
        let memory = free(has.memory, used.memory + self.pod.memory);
        Some((cpu + memory) / 2)
    }
}

/// Nodes score higher when, with the pod placed, their cpu and memory are
/// used in more equal shares: 100 × (1 − the shares' standard deviation).
#[derive(Debug, Default)]
pub struct NodeResourcesBalancedAllocation {
    /// The current pod's requests, computed once per cycle.
    pod: Resources,
}

impl Plugin for NodeResourcesBalancedAllocation {
    const NAME: &'static str = "NodeResourcesBalancedAllocation";
}

impl PreFilter for NodeResourcesBalancedAllocation {
    fn pre_filter(&mut self, pod: &Pod, _nodes: Nodes<'_>) -> Status {
        self.pod = requests(pod);
        Status::success()
    }
}

impl Score for NodeResourcesBalancedAllocation {
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        let (has, used) = (&node.allocatable, &node.requested);
        let share = |total: i64, taken: i64| {
            if total <= 0 {
                1.0
            } else {
                (taken as f64 / total as f64).min(1.0)
            }
        };
        let cpu = share(has.milli_cpu, used.milli_cpu + self.pod.milli_cpu);
        let memory = share(has.memory, used.memory + self.pod.memory);
        // The standard deviation of two values is half their distance.
        let deviation = (cpu - memory).abs() / 2.0;
        Some(((1.0 - deviation) * 100.0) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    fn node(cpu: &str, memory: &str, pods: Vec<Pod>) -> NodeInfo {
        testing::node(
            json!({"metadata": {"name": "n"},
                   "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "3"}}}),
            pods,
        )
    }

    fn pod(cpu: &str, memory: &str) -> Pod {
        testing::pod(json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    #[test]
    fn pods_fit_what_is_left() {
        let mut plugin = NodeResourcesFit::default();
        let small = pod("500m", "1Gi");
        plugin.pre_filter(&small, Nodes::new(&[]));
        assert!(plugin.filter(&small, &node("1", "4Gi", vec![])).passes());
        let full = node("1", "1Gi", vec![pod("600m", "512Mi")]);
        let status = plugin.filter(&small, &full);
        assert_eq!(status.reason, "Insufficient cpu\nInsufficient memory");
        let crowded = node(
            "8",
            "8Gi",
            vec![pod("1m", "1"), pod("1m", "1"), pod("1m", "1")],
        );
        assert_eq!(plugin.filter(&small, &crowded).reason, "Too many pods");
        // Emptier nodes score higher.
        let empty = plugin.score(&small, &node("2", "4Gi", vec![])).unwrap();
        let busy = plugin
            .score(&small, &node("2", "4Gi", vec![pod("1", "2Gi")]))
            .unwrap();
        assert_eq!((empty, busy), (75, 25));
    }

    #[test]
    fn even_use_scores_higher() {
        let mut plugin = NodeResourcesBalancedAllocation::default();
        let p = pod("1", "1Gi");
        plugin.pre_filter(&p, Nodes::new(&[]));
        // 50% cpu and 25% memory against 25% and 25%.
        let uneven = plugin.score(&p, &node("2", "4Gi", vec![])).unwrap();
        let even = plugin.score(&p, &node("4", "4Gi", vec![])).unwrap();
        assert_eq!((uneven, even), (87, 100));
    }
}

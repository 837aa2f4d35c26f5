//! NodeResourcesFit, as Kubernetes has it: a pod fits a node when its requests
//! (cpu, memory, one pod) fit in what the node's allocatable leaves after the
//! requests of the pods already there ("Insufficient cpu", "Insufficient
//! memory", "Too many pods"); nodes score by the LeastAllocated strategy (the
//! share of cpu and memory left free once the pod is placed, 0 to 100).

use wasmkube_sdk::{NodeInfo, Plugin, Pod, Resources, Status, export, requests};

#[derive(Default)]
pub struct NodeResourcesFit {
    /// The current pod's requests, computed once per cycle.
    pod: Resources,
}

impl Plugin for NodeResourcesFit {
    const NAME: &'static str = "NodeResourcesFit";

    fn pre_filter(&mut self, pod: &Pod) -> Status {
        self.pod = requests(pod);
        Status::success()
    }

    fn filter(&mut self, _pod: &Pod, node: &NodeInfo) -> Status {
        let (has, used) = (node.allocatable, node.requested);
        let mut short = Vec::new();
        if used.pods + self.pod.pods > has.pods {
            short.push("Too many pods");
        }
        if self.pod.milli_cpu > 0 && used.milli_cpu + self.pod.milli_cpu > has.milli_cpu {
            short.push("Insufficient cpu");
        }
        if self.pod.memory > 0 && used.memory + self.pod.memory > has.memory {
            short.push("Insufficient memory");
        }
        if short.is_empty() {
            Status::success()
        } else {
            Status::unschedulable(short.join(", "))
        }
    }

    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        let (has, used) = (node.allocatable, node.requested);
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

export!(NodeResourcesFit);

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpu: &str, memory: &str, pods: Vec<Pod>) -> NodeInfo {
        let node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "3"}},
        }))
        .unwrap();
        NodeInfo::new(node, pods)
    }

    fn pod(cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        }))
        .unwrap()
    }

    #[test]
    fn pods_fit_what_is_left() {
        let mut plugin = NodeResourcesFit::default();
        let small = pod("500m", "1Gi");
        plugin.pre_filter(&small);
        assert!(plugin.filter(&small, &node("1", "4Gi", vec![])).passes());
        let full = node("1", "4Gi", vec![pod("600m", "1Gi")]);
        let status = plugin.filter(&small, &full);
        assert_eq!(status.reason, "Insufficient cpu");
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
        assert!(empty > busy, "{empty} <= {busy}");
        assert_eq!(wasmkube_sdk::quantity("250m", 1000.0), 250);
        assert_eq!(wasmkube_sdk::quantity("1Gi", 1.0), 1 << 30);
    }
}

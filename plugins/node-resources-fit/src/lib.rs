//! NodeResourcesFit, as Kubernetes has it: a pod fits a node when its requests
//! (cpu, memory, one pod) fit in what the node's allocatable leaves after the
//! requests of the pods already there ("Insufficient cpu", "Insufficient
//! memory", "Too many pods"); nodes score by the LeastAllocated strategy (the
//! share of cpu and memory left free once the pod is placed, 0 to 100).

use wasmkube_sdk::{NodeInfo, Plugin, Pod, Status, export};

/// What a pod asks for, or what a node has: thousandths of a cpu, bytes, pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

/// Parses a quantity (`250m`, `64Mi`, `2`) scaled by `scale` (1000 for cpu).
pub fn quantity(text: &str, scale: f64) -> i64 {
    let suffixes: [(&str, f64); 11] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64 * 1024.0),
        ("Gi", 1024f64 * 1024.0 * 1024.0),
        ("Ti", 1024f64 * 1024.0 * 1024.0 * 1024.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, unit) = suffixes
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((text, 1.0));
    number
        .trim()
        .parse::<f64>()
        .map_or(0, |n| (n * unit * scale).ceil() as i64)
}

/// The requests of a pod: the sum of its containers', or its largest init
/// container's when larger; one pod.
pub fn requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources {
            pods: 1,
            ..Resources::default()
        };
    };
    let of = |c: &wasmkube_sdk::Container| {
        let get = |name: &str, scale: f64| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(name))
                .map_or(0, |q| quantity(&q.0, scale))
        };
        (get("cpu", 1000.0), get("memory", 1.0))
    };
    let (mut cpu, mut memory) = spec
        .containers
        .iter()
        .map(of)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for (c, m) in spec.init_containers.iter().flatten().map(of) {
        cpu = cpu.max(c);
        memory = memory.max(m);
    }
    Resources {
        milli_cpu: cpu,
        memory,
        pods: 1,
    }
}

/// What the node can give pods.
pub fn allocatable(node: &NodeInfo) -> Resources {
    let list = node
        .node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref());
    let get = |name: &str, scale: f64| {
        list.and_then(|l| l.get(name))
            .map_or(0, |q| quantity(&q.0, scale))
    };
    Resources {
        milli_cpu: get("cpu", 1000.0),
        memory: get("memory", 1.0),
        pods: get("pods", 1.0),
    }
}

/// What the pods on the node request.
pub fn requested(node: &NodeInfo) -> Resources {
    node.pods
        .iter()
        .map(requests)
        .fold(Resources::default(), |a, b| Resources {
            milli_cpu: a.milli_cpu + b.milli_cpu,
            memory: a.memory + b.memory,
            pods: a.pods + b.pods,
        })
}

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
        let (has, used) = (allocatable(node), requested(node));
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
        let (has, used) = (allocatable(node), requested(node));
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
        NodeInfo {
            node: serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "3"}},
            }))
            .unwrap(),
            pods,
        }
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
        assert_eq!(quantity("250m", 1000.0), 250);
        assert_eq!(quantity("1Gi", 1.0), 1 << 30);
    }
}

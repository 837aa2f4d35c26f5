//! What a pod requests, what a node can give, and whether the pod fits what
//! the node has left: component-helpers' `PodRequests` and kube-scheduler's
//! NodeResourcesFit (`fitsRequest`), with its reasons ("Insufficient cpu",
//! "Too many pods").
//!
//! Not counted: pod-level `resources` (the PodLevelResources feature, off by
//! default in Kubernetes 1.33), the resources in a pod's status (in-place
//! resize), and the plugin's ignored extended resources.

use std::collections::BTreeMap;
use std::ops::{AddAssign, SubAssign};

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What a pod requests, or what a node has: the scheduler's `Resource`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Thousandths of a cpu.
    pub milli_cpu: i64,
    /// Bytes of memory.
    pub memory: i64,
    /// Bytes of ephemeral storage.
    pub ephemeral_storage: i64,
    /// Pods: a node's allowed number, a pod's one, the count of a node's pods.
    pub pods: i64,
    /// The scalar resources (extended resources such as `example.com/gpu`,
    /// `hugepages-*`, `attachable-volumes-*`, `*kubernetes.io/*`), in units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// A resource list (a node's allocatable, a container's requests) as the
    /// scheduler counts it: cpu in thousandths and the rest in units, each
    /// rounded up; names that are neither cpu, memory, ephemeral-storage,
    /// pods nor a scalar resource do not count, nor do quantities that do
    /// not parse.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut resources = Resources::default();
        for (name, quantity) in list {
            let text = &quantity.0;
            let value = || wasmkube_quantity::value(text).unwrap_or(0);
            match name.as_str() {
                "cpu" => resources.milli_cpu = wasmkube_quantity::milli_value(text).unwrap_or(0),
                "memory" => resources.memory = value(),
                "ephemeral-storage" => resources.ephemeral_storage = value(),
                "pods" => resources.pods = value(),
                scalar if is_scalar(scalar) => {
                    resources.scalar.insert(name.clone(), value());
                }
                _ => {}
            }
        }
        resources
    }

    /// Raises each resource to at least `other`'s.
    fn max(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    /// Each resource set to `op` of it and `other`'s.
    fn combine(&mut self, other: &Resources, op: fn(i64, i64) -> i64) {
        self.milli_cpu = op(self.milli_cpu, other.milli_cpu);
        self.memory = op(self.memory, other.memory);
        self.ephemeral_storage = op(self.ephemeral_storage, other.ephemeral_storage);
        self.pods = op(self.pods, other.pods);
        for (name, value) in &other.scalar {
            let mine = self.scalar.entry(name.clone()).or_default();
            *mine = op(*mine, *value);
        }
    }
}

impl AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_add);
    }
}

impl SubAssign<&Resources> for Resources {
    fn sub_assign(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_sub);
    }
}

/// Whether `name` is a scalar resource: extended (in a domain other than
/// `kubernetes.io`, not `requests.`), huge pages, attachable volumes or a
/// `kubernetes.io/` resource.
fn is_scalar(name: &str) -> bool {
    let native = name.contains("kubernetes.io/");
    let extended = name.contains('/') && !native && !name.starts_with("requests.");
    extended || native || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// What a pod requests, as the scheduler counts it: the sum of its
/// containers' and sidecars' (restartable init containers') requests, or,
/// where larger, what its init containers need while they run (each with
/// the sidecars started before it); plus its overhead; and one pod.
pub fn requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources {
            pods: 1,
            ..Resources::default()
        };
    };
    let of = |c: &Container| {
        let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        list.map(Resources::from_list).unwrap_or_default()
    };
    let mut total = Resources::default();
    for container in &spec.containers {
        total += &of(container);
    }
    let mut sidecars = Resources::default();
    let mut init = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let asks = of(container);
        if container.restart_policy.as_deref() == Some("Always") {
            total += &asks;
            sidecars += &asks;
            init.max(&sidecars);
        } else {
            let mut running = asks;
            running += &sidecars;
            init.max(&running);
        }
    }
    total.max(&init);
    if let Some(overhead) = &spec.overhead {
        total += &Resources::from_list(overhead);
    }
    total.pods = 1;
    total
}

/// What the node can give its pods: its allocatable.
pub fn allocatable(node: &Node) -> Resources {
    let list = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    list.map(Resources::from_list).unwrap_or_default()
}

/// A resource a pod does not fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insufficient {
    /// The resource (`pods`, `cpu`, `example.com/gpu`).
    pub resource: String,
    /// Why, as kube-scheduler says it: "Too many pods", "Insufficient cpu".
    pub reason: String,
}

/// The resources a pod requesting `request` does not fit in on a node with
/// `allocatable` whose pods request `requested`: one pod more than the node
/// allows, or a resource the pod requests more of than is left. In
/// NodeResourcesFit's order: pods, cpu, memory, ephemeral-storage, then the
/// scalar resources by name. Empty when it fits.
pub fn insufficient(
    request: &Resources,
    allocatable: &Resources,
    requested: &Resources,
) -> Vec<Insufficient> {
    let mut short = Vec::new();
    let mut lacks = |resource: &str, reason: String| {
        short.push(Insufficient {
            resource: resource.to_owned(),
            reason,
        })
    };
    if requested.pods.saturating_add(1) > allocatable.pods {
        lacks("pods", "Too many pods".to_owned());
    }
    let exceeds = |asks: i64, has: i64, used: i64| asks > 0 && asks > has.saturating_sub(used);
    for (resource, asks, has, used) in [
        (
            "cpu",
            request.milli_cpu,
            allocatable.milli_cpu,
            requested.milli_cpu,
        ),
        (
            "memory",
            request.memory,
            allocatable.memory,
            requested.memory,
        ),
        (
            "ephemeral-storage",
            request.ephemeral_storage,
            allocatable.ephemeral_storage,
            requested.ephemeral_storage,
        ),
    ] {
        if exceeds(asks, has, used) {
            lacks(resource, format!("Insufficient {resource}"));
        }
    }
    for (resource, asks) in &request.scalar {
        let has = allocatable.scalar.get(resource).copied().unwrap_or(0);
        let used = requested.scalar.get(resource).copied().unwrap_or(0);
        if exceeds(*asks, has, used) {
            lacks(resource, format!("Insufficient {resource}"));
        }
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"spec": spec})).unwrap()
    }

    fn container(requests: Value) -> Value {
        json!({"name": "c", "resources": {"requests": requests}})
    }

    fn sidecar(requests: Value) -> Value {
        json!({"name": "s", "restartPolicy": "Always", "resources": {"requests": requests}})
    }

    fn list(json: Value) -> Resources {
        Resources::from_list(&serde_json::from_value(json).unwrap())
    }

    fn reasons(request: &Resources, allocatable: &Resources, requested: &Resources) -> Vec<String> {
        let short = insufficient(request, allocatable, requested);
        short.into_iter().map(|i| i.reason).collect()
    }

    #[test]
    fn lists_count_what_the_scheduler_counts() {
        let r = list(
            json!({"cpu": "9m", "memory": "1.5Gi", "ephemeral-storage": "1G",
            "pods": "110", "example.com/gpu": "2", "hugepages-2Mi": "4Mi",
            "attachable-volumes-csi-x": "39", "kubernetes.io/batteries": "1",
            "requests.example.com/gpu": "5", "storage": "1Gi", "nvidia.com/gpu": "lots"}),
        );
        assert_eq!(r.milli_cpu, 9, "exact, not rounded through floats");
        assert_eq!(r.memory, 3 << 29);
        assert_eq!(r.ephemeral_storage, 1_000_000_000);
        assert_eq!(r.pods, 110);
        let scalar: Vec<(&str, i64)> = r.scalar.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            scalar,
            [
                ("attachable-volumes-csi-x", 39),
                ("example.com/gpu", 2),
                ("hugepages-2Mi", 4 << 20),
                ("kubernetes.io/batteries", 1),
                ("nvidia.com/gpu", 0),
            ]
        );
    }

    #[test]
    fn a_pod_requests_its_containers_or_its_largest_init_container() {
        let p = pod(
            json!({"containers": [container(json!({"cpu": "100m", "memory": "1Gi"})),
                                         container(json!({"cpu": "200m"}))],
            "initContainers": [container(json!({"cpu": "500m", "memory": "512Mi"})),
                               container(json!({"cpu": "1m", "memory": "2Gi"}))]}),
        );
        let r = requests(&p);
        assert_eq!(
            (r.milli_cpu, r.memory, r.pods),
            (500, 2 << 30, 1),
            "the max of each resource apart"
        );
        let bare = requests(&pod(json!({"containers": [{"name": "c"}]})));
        assert_eq!(
            bare,
            Resources {
                pods: 1,
                ..Resources::default()
            }
        );
        assert_eq!(requests(&Pod::default()).pods, 1);
    }

    #[test]
    fn sidecars_add_to_the_containers_and_to_later_init_containers() {
        // As the sidecar KEP's example: sidecars run beside the containers
        // and beside the init containers that come after them.
        let p = pod(json!({"containers": [container(json!({"cpu": "100m"}))],
            "initContainers": [
                container(json!({"cpu": "400m"})),
                sidecar(json!({"cpu": "200m"})),
                container(json!({"cpu": "250m"})),
                sidecar(json!({"cpu": "50m"}))]}));
        // Init: max(400, 200, 250 + 200, 250) = 450; running: 100 + 250 = 350.
        assert_eq!(requests(&p).milli_cpu, 450);
        let small_inits = pod(json!({"containers": [container(json!({"cpu": "1"}))],
            "initContainers": [sidecar(json!({"cpu": "100m"})), container(json!({"cpu": "500m"}))]}));
        assert_eq!(requests(&small_inits).milli_cpu, 1100);
    }

    #[test]
    fn overhead_is_added() {
        let p = pod(
            json!({"containers": [container(json!({"cpu": "1", "memory": "1Gi"}))],
            "initContainers": [container(json!({"cpu": "3"}))],
            "overhead": {"cpu": "250m", "memory": "120Mi"}}),
        );
        let r = requests(&p);
        assert_eq!((r.milli_cpu, r.memory), (3250, (1 << 30) + (120 << 20)));
    }

    #[test]
    fn fit_is_against_what_is_left() {
        let node = list(json!({"cpu": "10", "memory": "20", "pods": "32",
            "ephemeral-storage": "20", "example.com/aaa": "5"}));
        let used = list(json!({"cpu": "5", "memory": "19", "pods": "31",
            "ephemeral-storage": "2", "example.com/aaa": "2"}));
        let asks = |json: Value| {
            let mut r = list(json);
            r.pods = 1;
            r
        };
        assert!(reasons(&asks(json!({"cpu": "5", "memory": "1"})), &node, &used).is_empty());
        assert_eq!(
            reasons(&asks(json!({"cpu": "6", "memory": "2"})), &node, &used),
            ["Insufficient cpu", "Insufficient memory"]
        );
        assert_eq!(
            reasons(&asks(json!({"ephemeral-storage": "19"})), &node, &used),
            ["Insufficient ephemeral-storage"]
        );
        assert_eq!(
            reasons(&asks(json!({"example.com/aaa": "4"})), &node, &used),
            ["Insufficient example.com/aaa"]
        );
        assert_eq!(
            reasons(&asks(json!({"example.com/bbb": "1"})), &node, &used),
            ["Insufficient example.com/bbb"],
            "a resource the node does not have"
        );
        assert!(
            reasons(&asks(json!({"example.com/bbb": "0"})), &node, &used).is_empty(),
            "a request of nothing"
        );
        let full = list(json!({"cpu": "5", "memory": "19", "pods": "32"}));
        let short = insufficient(&asks(json!({"cpu": "6"})), &node, &full);
        assert_eq!(
            short,
            [
                Insufficient {
                    resource: "pods".into(),
                    reason: "Too many pods".into()
                },
                Insufficient {
                    resource: "cpu".into(),
                    reason: "Insufficient cpu".into()
                },
            ]
        );
        // A pod that requests nothing fits by pod count alone; even where
        // pods already take more than the node has.
        let over = list(json!({"cpu": "11", "memory": "21", "pods": "1"}));
        assert!(reasons(&asks(json!({})), &node, &over).is_empty());
        assert_eq!(
            reasons(
                &asks(json!({})),
                &Resources::default(),
                &Resources::default()
            ),
            ["Too many pods"],
            "a node that allows no pods"
        );
    }

    #[test]
    fn pods_come_and_go() {
        let mut used = Resources::default();
        let a = requests(&pod(
            json!({"containers": [container(json!({"cpu": "1", "example.com/gpu": "1"}))]}),
        ));
        let b = requests(&pod(
            json!({"containers": [container(json!({"memory": "1Gi"}))]}),
        ));
        used += &a;
        used += &b;
        assert_eq!((used.milli_cpu, used.memory, used.pods), (1000, 1 << 30, 2));
        assert_eq!(used.scalar["example.com/gpu"], 1);
        used -= &a;
        assert_eq!((used.milli_cpu, used.memory, used.pods), (0, 1 << 30, 1));
        assert_eq!(used.scalar["example.com/gpu"], 0);
        assert_eq!(allocatable(&Node::default()), Resources::default());
    }
}

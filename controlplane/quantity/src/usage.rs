//! What a ResourceQuota counts: some kinds by their own names, and what a
//! pod asks: for each of the requests and limits of cpu, memory and
//! ephemeral storage, the sum over its containers or the most one init
//! container asks, whichever is more; `cpu` and `memory` name its requests.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::parse;

/// Kinds of the core group a quota counts under their own names
/// (`secrets`), beside `count/secrets`.
pub const LEGACY_COUNTS: [&str; 6] = [
    "configmaps",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "services",
];

/// The usage of a pod of `spec` (its JSON), by the resource names a quota
/// limits (`requests.cpu`, `limits.memory`, `cpu`, …).
pub fn pod(spec: &Value) -> BTreeMap<String, f64> {
    let mut usage = BTreeMap::new();
    let list = |name: &str| spec[name].as_array().cloned().unwrap_or_default();
    let (containers, init) = (list("containers"), list("initContainers"));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory", "ephemeral-storage"] {
            let asked = |c: &Value| {
                c["resources"][kind][resource]
                    .as_str()
                    .and_then(parse)
                    .unwrap_or(0.0)
            };
            let sum: f64 = containers.iter().map(asked).sum();
            let total = sum.max(init.iter().map(asked).fold(0.0, f64::max));
            usage.insert(format!("{kind}.{resource}"), total);
            if kind == "requests" && resource != "ephemeral-storage" {
                usage.insert(resource.to_owned(), total);
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_pod_asks_the_sum_of_its_containers_or_its_largest_init_container() {
        let spec = json!({
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
            "containers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}},
                {"resources": {"requests": {"cpu": "700m"}}},
            ],
        });
        let usage = super::pod(&spec);
        assert_eq!(usage["requests.cpu"], 2.0);
        assert_eq!(usage["cpu"], 2.0);
        assert_eq!(usage["requests.memory"], 1_073_741_824.0);
        assert_eq!(usage["limits.memory"], 2_147_483_648.0);
        assert_eq!(usage["limits.cpu"], 0.0);
    }
}

//! LimitRanger: the LimitRanges of a pod's namespace give its containers
//! their default requests and limits, and bound what they ask, with
//! Kubernetes' messages (`maximum memory usage per Container is 256Mi, but
//! limit is 1Gi`).

use serde_json::{Map, Value, json};
use wasmkube_admission_sdk::{Cluster, Operation, Policy, Request, Verdict};
use wasmkube_quantity::parse;

/// The LimitRanges of one namespace a policy reads, at most.
const MAX_RANGES: u32 = 100;

/// The annotation saying what the policy set.
const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRanger admission policy.
#[derive(Debug)]
pub struct LimitRanger;

/// One item of a LimitRange, with Kubernetes' defaults: `default` from
/// `max`, `defaultRequest` from `default`, then from `min`.
struct Item {
    kind: String,
    min: Map<String, Value>,
    max: Map<String, Value>,
    ratio: Map<String, Value>,
    default: Map<String, Value>,
    default_request: Map<String, Value>,
}

impl Item {
    fn of(item: &Value) -> Item {
        let map = |field: &str| item[field].as_object().cloned().unwrap_or_default();
        let (min, max) = (map("min"), map("max"));
        let mut default = map("default");
        let mut default_request = map("defaultRequest");
        for (name, value) in &max {
            default.entry(name.clone()).or_insert(value.clone());
        }
        for (name, value) in default.iter().chain(&min) {
            default_request.entry(name.clone()).or_insert(value.clone());
        }
        Item {
            kind: item["type"].as_str().unwrap_or("").to_owned(),
            min,
            max,
            ratio: map("maxLimitRequestRatio"),
            default,
            default_request,
        }
    }
}

/// The items of the LimitRanges in the request's namespace.
fn items(request: &Request, cluster: &dyn Cluster) -> Result<Vec<Item>, Verdict> {
    let ranges = cluster
        .list("v1", "limitranges", &request.namespace, "", MAX_RANGES)
        .map_err(|e| Verdict::refuse(500, "InternalError", e))?;
    Ok(ranges
        .iter()
        .flat_map(|range| {
            range["spec"]["limits"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|item| Item::of(&item))
        .collect())
}

/// Whether the policy has a say: a pod created, in a namespace.
fn applies(request: &Request) -> bool {
    request.is("", "pods")
        && request.operation == Operation::Create
        && !request.namespace.is_empty()
}

impl Policy for LimitRanger {
    fn new(_settings: Value) -> Result<Self, String> {
        Ok(LimitRanger)
    }

    fn mutate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        if !applies(request) {
            return Verdict::allow();
        }
        let items = match items(request, cluster) {
            Ok(items) => items,
            Err(refused) => return refused,
        };
        let containers: Vec<&Item> = items.iter().filter(|i| i.kind == "Container").collect();
        if containers.is_empty() {
            return Verdict::allow();
        }
        let mut verdict = Verdict::allow();
        let mut said = Vec::new();
        for list in ["initContainers", "containers"] {
            let Some(Value::Array(all)) = request.field(&format!("/spec/{list}")) else {
                continue;
            };
            for (i, container) in all.iter().enumerate() {
                let mut resources = container["resources"].clone();
                if !resources.is_object() {
                    resources = json!({});
                }
                let name = container["name"].as_str().unwrap_or("");
                let mut set = |field: &str, defaults: &dyn Fn(&Item) -> &Map<String, Value>| {
                    let mut names = Vec::new();
                    for item in &containers {
                        for (resource, value) in defaults(item) {
                            if !resources[field].is_object() {
                                resources[field] = json!({});
                            }
                            let held = resources[field].as_object_mut().expect("an object");
                            if !held.contains_key(resource) {
                                held.insert(resource.clone(), value.clone());
                                names.push(resource.clone());
                            }
                        }
                    }
                    names
                };
                let requests = set("requests", &|item| &item.default_request);
                let limits = set("limits", &|item| &item.default);
                for (names, what) in [(requests, "request"), (limits, "limit")] {
                    if !names.is_empty() {
                        said.push(format!(
                            "{} {what} for {} {name}",
                            names.join(", "),
                            kind(list)
                        ));
                    }
                }
                if resources != container["resources"] {
                    let path = format!("/spec/{list}/{i}/resources");
                    verdict = verdict.patch("add", &path, Some(resources));
                }
            }
        }
        if said.is_empty() {
            return verdict;
        }
        let note = json!(format!("LimitRanger plugin set: {}", said.join("; ")));
        match request.field("/metadata/annotations") {
            Some(Value::Object(_)) => {
                let path = format!("/metadata/annotations/{}", ANNOTATION.replace('/', "~1"));
                verdict.patch("add", &path, Some(note))
            }
            _ => verdict.patch(
                "add",
                "/metadata/annotations",
                Some(json!({ANNOTATION: note})),
            ),
        }
    }

    fn validate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        if !applies(request) {
            return Verdict::allow();
        }
        let items = match items(request, cluster) {
            Ok(items) => items,
            Err(refused) => return refused,
        };
        let mut errors = Vec::new();
        let mut pod_requests = Map::new();
        let mut pod_limits = Map::new();
        for list in ["initContainers", "containers"] {
            let Some(Value::Array(all)) = request.field(&format!("/spec/{list}")) else {
                continue;
            };
            for container in &all {
                let requests = resource_list(&container["resources"]["requests"]);
                let limits = resource_list(&container["resources"]["limits"]);
                for item in items.iter().filter(|i| i.kind == "Container") {
                    check(item, "Container", &requests, &limits, &mut errors);
                }
                if list == "containers" {
                    add(&mut pod_requests, &requests);
                    add(&mut pod_limits, &limits);
                }
            }
        }
        for item in items.iter().filter(|i| i.kind == "Pod") {
            check(item, "Pod", &pod_requests, &pod_limits, &mut errors);
        }
        match errors.as_slice() {
            [] => Verdict::allow(),
            [one] => request.forbid(one),
            many => request.forbid(format!("[{}]", many.join(", "))),
        }
    }
}

/// How a message names a container of `list`.
fn kind(list: &str) -> &'static str {
    if list == "initContainers" {
        "init container"
    } else {
        "container"
    }
}

fn resource_list(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Adds `more` to the sums in `total`.
fn add(total: &mut Map<String, Value>, more: &Map<String, Value>) {
    for (name, value) in more {
        let sum = total.get(name).and_then(amount).unwrap_or(0.0) + amount(value).unwrap_or(0.0);
        total.insert(name.clone(), json!(sum));
    }
}

/// A quantity (a string as `250m`, or a number) as a number.
fn amount(value: &Value) -> Option<f64> {
    match value {
        Value::String(text) => parse(text),
        other => other.as_f64(),
    }
}

/// A quantity as a message shows it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What `item` (of `kind`, Container or Pod) finds wrong with `requests` and
/// `limits`, in Kubernetes' words.
fn check(
    item: &Item,
    kind: &str,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    errors: &mut Vec<String>,
) {
    for (name, min) in &item.min {
        let (request, limit) = (requests.get(name), limits.get(name));
        let min_value = amount(min).unwrap_or(0.0);
        let min = shown(min);
        match request {
            None => errors.push(format!(
                "minimum {name} usage per {kind} is {min}.  No request is specified"
            )),
            Some(r) if amount(r).unwrap_or(0.0) < min_value => errors.push(format!(
                "minimum {name} usage per {kind} is {min}, but request is {}",
                shown(r)
            )),
            Some(_) => {
                if let Some(l) = limit.filter(|l| amount(l).unwrap_or(0.0) < min_value) {
                    errors.push(format!(
                        "minimum {name} usage per {kind} is {min}, but limit is {}",
                        shown(l)
                    ));
                }
            }
        }
    }
    for (name, max) in &item.max {
        let (request, limit) = (requests.get(name), limits.get(name));
        let max_value = amount(max).unwrap_or(0.0);
        let max = shown(max);
        match limit {
            None => errors.push(format!(
                "maximum {name} usage per {kind} is {max}.  No limit is specified"
            )),
            Some(l) if amount(l).unwrap_or(0.0) > max_value => errors.push(format!(
                "maximum {name} usage per {kind} is {max}, but limit is {}",
                shown(l)
            )),
            Some(_) => {
                if let Some(r) = request.filter(|r| amount(r).unwrap_or(0.0) > max_value) {
                    errors.push(format!(
                        "maximum {name} usage per {kind} is {max}, but request is {}",
                        shown(r)
                    ));
                }
            }
        }
    }
    for (name, ratio) in &item.ratio {
        let request = requests.get(name).and_then(amount).filter(|r| *r > 0.0);
        let limit = limits.get(name).and_then(amount).filter(|l| *l > 0.0);
        let most = amount(ratio).unwrap_or(0.0);
        let ratio = shown(ratio);
        match (request, limit) {
            (None, _) => errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"
            )),
            (_, None) => errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"
            )),
            (Some(request), Some(limit)) if limit / request > most => errors.push(format!(
                "{name} max limit to request ratio per {kind} is {ratio}, but provided ratio is {:.6}",
                limit / request
            )),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, pod_in_shop};

    fn range() -> Objects {
        Objects(vec![(
            "limitranges",
            "shop",
            json!({"metadata": {"name": "limits"}, "spec": {"limits": [{
                "type": "Container",
                "max": {"memory": "256Mi"},
                "min": {"cpu": "50m"},
                "defaultRequest": {"cpu": "100m"},
            }]}}),
        )])
    }

    fn pod(resources: Value) -> Request {
        let containers = json!([{"name": "app", "image": "x", "resources": resources}]);
        pod_in_shop(json!({ "containers": containers }))
    }

    #[test]
    fn containers_get_the_defaults_they_lack_and_a_note() {
        let verdict = LimitRanger.mutate(&pod(json!({"requests": {"cpu": "200m"}})), &range());
        assert!(verdict.allowed);
        assert_eq!(
            verdict.patch,
            [
                json!({"op": "add", "path": "/spec/containers/0/resources", "value": {
                    "requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}}),
                json!({"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION:
                    "LimitRanger plugin set: memory request for container app; memory limit for container app"}}),
            ]
        );
        // Nothing to set: no patch.
        let full = json!({"requests": {"cpu": "1", "memory": "1Mi"}, "limits": {"memory": "1Mi"}});
        assert!(LimitRanger.mutate(&pod(full), &range()).patch.is_empty());
    }

    #[test]
    fn requests_and_limits_outside_the_range_are_refused_in_kubernetes_words() {
        let refused = LimitRanger.validate(
            &pod(json!({"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}})),
            &range(),
        );
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: maximum memory usage per Container is 256Mi, but limit is 1Gi"
        );
        let both = LimitRanger.validate(&pod(json!({"requests": {"cpu": "10m"}})), &range());
        assert_eq!(
            both.status.unwrap().message,
            "pods \"p\" is forbidden: [minimum cpu usage per Container is 50m, but request is 10m, maximum memory usage per Container is 256Mi.  No limit is specified]"
        );
        let fits = json!({"requests": {"cpu": "100m"}, "limits": {"memory": "128Mi"}});
        assert!(LimitRanger.validate(&pod(fits), &range()).allowed);
    }

    #[test]
    fn a_ratio_bounds_limits_against_requests() {
        let ranges = Objects(vec![(
            "limitranges",
            "shop",
            json!({"metadata": {"name": "r"}, "spec": {"limits": [
                {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}}),
        )]);
        let over = pod(json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}}));
        assert_eq!(
            LimitRanger.validate(&over, &ranges).status.unwrap().message,
            "pods \"p\" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"
        );
    }
}

//! ResourceQuota: a write that would take a namespace past one of its
//! ResourceQuotas is refused, in Kubernetes' words (`exceeded quota: compute,
//! requested: requests.cpu=600m, used: requests.cpu=500m, limited:
//! requests.cpu=1`). What is used is what the quota controller last counted
//! in the quota's status; a quota it has not counted yet refuses what it
//! limits, as Kubernetes' does.
//!
//! Counted: objects (`pods`, `services`, `configmaps`, `secrets`,
//! `persistentvolumeclaims`, `replicationcontrollers`, `resourcequotas`,
//! `services.nodeports`, `services.loadbalancers`, `count/<resource>[.<group>]`)
//! and what pods ask (`requests.cpu` or `cpu`, `requests.memory` or
//! `memory`, `limits.cpu`, `limits.memory`, and the same of
//! `ephemeral-storage`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use wasmkube_admission_sdk::{Cluster, Operation, Policy, Request, Verdict};
use wasmkube_quantity::usage::LEGACY_COUNTS;
use wasmkube_quantity::{format, parse};

/// The quotas of one namespace a policy reads, at most.
const MAX_QUOTAS: u32 = 100;

/// The ResourceQuota admission policy.
#[derive(Debug)]
pub struct ResourceQuota;

/// What creating the object of `request` adds to each resource a quota may
/// limit.
pub fn usage(request: &Request) -> BTreeMap<String, f64> {
    let mut usage = BTreeMap::new();
    let (group, _, plural) = &request.resource;
    let count = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    usage.insert(count, 1.0);
    if group.is_empty() && (LEGACY_COUNTS.contains(&plural.as_str()) || plural == "pods") {
        usage.insert(plural.clone(), 1.0);
    }
    if request.is("", "services") {
        let kind = request.field("/spec/type");
        let ports = request
            .field("/spec/ports")
            .and_then(|p| p.as_array().map(Vec::len));
        match kind.as_ref().and_then(Value::as_str) {
            Some("NodePort") => {
                usage.insert("services.nodeports".into(), ports.unwrap_or(0) as f64);
            }
            Some("LoadBalancer") => {
                usage.insert("services.loadbalancers".into(), 1.0);
                usage.insert("services.nodeports".into(), ports.unwrap_or(0) as f64);
            }
            _ => {}
        }
    }
    if request.is("", "pods") {
        let spec = request.field("/spec").unwrap_or(Value::Null);
        for (name, value) in wasmkube_quantity::usage::pod(&spec) {
            usage.insert(name, value);
        }
    }
    usage
}

/// The containers of `spec` that do not say `kind.resource` (`limits.cpu`).
fn unspecified(spec: &Value, limited: &str) -> Vec<String> {
    let Some((kind, resource)) = limited.split_once('.') else {
        return Vec::new();
    };
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().cloned().unwrap_or_default())
        .filter(|c| c["resources"][kind][resource].is_null())
        .map(|c| c["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// `a=1,b=2`, by resource name.
fn listed(values: &[(&String, String)]) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|(name, v)| format!("{name}={v}"))
        .collect();
    parts.join(",")
}

impl Policy for ResourceQuota {
    fn new(_settings: Value) -> Result<Self, String> {
        Ok(ResourceQuota)
    }

    fn validate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        if request.operation != Operation::Create
            || request.namespace.is_empty()
            || !request.sub_resource.is_empty()
        {
            return Verdict::allow();
        }
        let quotas = match cluster.list("v1", "resourcequotas", &request.namespace, "", MAX_QUOTAS)
        {
            Ok(quotas) => quotas,
            Err(e) => return Verdict::refuse(500, "InternalError", e),
        };
        if quotas.is_empty() {
            return Verdict::allow();
        }
        let usage = usage(request);
        let spec = request.field("/spec").unwrap_or(Value::Null);
        for quota in &quotas {
            let name = quota["metadata"]["name"].as_str().unwrap_or("");
            let limits = quota["spec"]["hard"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let concerned: Vec<&String> =
                limits.keys().filter(|r| usage.contains_key(*r)).collect();
            if concerned.is_empty() {
                continue;
            }
            let hard = quota["status"]["hard"].as_object();
            let used = quota["status"]["used"].as_object();
            let (Some(hard), Some(used)) = (hard, used) else {
                let names: Vec<&str> = concerned.iter().map(|s| s.as_str()).collect();
                return request.forbid(format!(
                    "status unknown for quota: {name}, resources: {}",
                    names.join(",")
                ));
            };
            if request.is("", "pods") {
                let mut missing = Vec::new();
                for limited in concerned
                    .iter()
                    .filter(|r| r.contains('.') && !r.starts_with("count/"))
                {
                    let containers = unspecified(&spec, limited);
                    if !containers.is_empty() {
                        missing.push(format!("{limited} for: {}", containers.join(",")));
                    }
                }
                if !missing.is_empty() {
                    return request.forbid(format!(
                        "failed quota: {name}: must specify {}",
                        missing.join("; ")
                    ));
                }
            }
            if let Some(refused) = exceeded(request, name, &concerned, &usage, hard, used) {
                return refused;
            }
        }
        Verdict::allow()
    }
}

/// The refusal, if `usage` takes the quota `name` past its `hard` limits.
fn exceeded(
    request: &Request,
    name: &str,
    concerned: &[&String],
    usage: &BTreeMap<String, f64>,
    hard: &Map<String, Value>,
    used: &Map<String, Value>,
) -> Option<Verdict> {
    let amount =
        |map: &Map<String, Value>, r: &str| map.get(r).and_then(Value::as_str).and_then(parse);
    let mut requested = Vec::new();
    let mut were = Vec::new();
    let mut limited = Vec::new();
    for resource in concerned {
        let asked = usage[resource.as_str()];
        let already = amount(used, resource).unwrap_or(0.0);
        let Some(most) = amount(hard, resource) else {
            continue;
        };
        if asked > 0.0 && already + asked > most + 1e-9 {
            requested.push((*resource, format(resource, asked)));
            were.push((*resource, format(resource, already)));
            limited.push((*resource, format(resource, most)));
        }
    }
    (!requested.is_empty()).then(|| {
        request.forbid(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            listed(&requested),
            listed(&were),
            listed(&limited)
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, pod_in_shop};

    fn quota(status: Value) -> Objects {
        Objects(vec![(
            "resourcequotas",
            "shop",
            json!({"metadata": {"name": "compute"},
                "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}},
                "status": status}),
        )])
    }

    fn pod(cpu: &str, memory: Option<&str>) -> Request {
        let mut resources = json!({"requests": {"cpu": cpu}});
        if let Some(memory) = memory {
            resources["limits"] = json!({"memory": memory});
        }
        let containers = json!([{"name": "app", "image": "x", "resources": resources}]);
        pod_in_shop(json!({ "containers": containers }))
    }

    fn counted(pods: &str, cpu: &str, memory: &str) -> Value {
        json!({"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"},
            "used": {"pods": pods, "requests.cpu": cpu, "limits.memory": memory}})
    }

    #[test]
    fn a_pod_past_the_quota_is_refused_in_kubernetes_words() {
        let fits = ResourceQuota.validate(
            &pod("500m", Some("512Mi")),
            &quota(counted("1", "500m", "512Mi")),
        );
        assert!(fits.allowed, "{fits:?}");
        let refused = ResourceQuota.validate(
            &pod("600m", Some("512Mi")),
            &quota(counted("1", "500m", "512Mi")),
        );
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        let full =
            ResourceQuota.validate(&pod("1500m", Some("1Gi")), &quota(counted("2", "0", "0")));
        assert_eq!(
            full.status.unwrap().message,
            "pods \"p\" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=1500m, used: pods=2,requests.cpu=0, limited: pods=2,requests.cpu=1"
        );
    }

    #[test]
    fn limits_a_quota_tracks_must_be_given_and_the_quota_counted() {
        let unlimited = ResourceQuota.validate(&pod("100m", None), &quota(counted("0", "0", "0")));
        assert_eq!(
            unlimited.status.unwrap().message,
            "pods \"p\" is forbidden: failed quota: compute: must specify limits.memory for: app"
        );
        let uncounted = ResourceQuota.validate(&pod("100m", Some("1Mi")), &quota(Value::Null));
        assert_eq!(
            uncounted.status.unwrap().message,
            "pods \"p\" is forbidden: status unknown for quota: compute, resources: limits.memory,pods,requests.cpu"
        );
    }
}

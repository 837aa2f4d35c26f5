//! What is done to a pod through its subresources `binding` (the scheduler puts
//! it on a node) and `eviction` (it goes, unless a disruption budget forbids it),
//! as Kubernetes' pod storage does it.

use axum::response::Response;
use serde_json::{Value, json};
use wasmkube_store::{Error as StoreError, ListOptions};
use wasmkube_types::registry::by_kind;
use wasmkube_types::selector::labels::Selector;

use crate::admission::Operation;
use crate::error::{
    ApiError, ApiResult, FieldError, Status, StatusCause, StatusDetails, respond_status,
};
use crate::objects::{deleting, labels, name, now};
use crate::rest::{Request, check_preconditions, decode_stored, encode};

impl Request<'_> {
    /// Binds the pod `pod` to the node a Binding names, once admitted.
    pub(crate) async fn bind(&self, pod: &str, binding: Value) -> ApiResult<Response> {
        let pods = self.target.resource;
        let kind = pods
            .subresource("binding")
            .ok_or_else(ApiError::no_such_path)?;
        let valid = |binding: &Value| {
            if binding["target"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                return Ok(());
            }
            let errors = [FieldError::required("target.name", "")];
            Err(ApiError::invalid_of(kind.group, kind.kind, pod, &errors))
        };
        let binding = self
            .admit(Operation::Create, Some(binding), None, valid)
            .await?
            .unwrap_or_default();
        let node = binding["target"]["name"].as_str().unwrap_or("").to_owned();
        let uid = binding["metadata"]["uid"]
            .as_str()
            .filter(|u| !u.is_empty());
        self.modify(pod, |object| {
            // A binding for a pod that was deleted and made again is refused.
            if let Some(uid) = uid {
                let preconditions = json!({"preconditions": {"uid": uid}});
                check_preconditions(pods, pod, object, &preconditions)?;
            }
            if let Some(current) = object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    pods,
                    pod,
                    &format!("pod {pod} is already assigned to node {current:?}"),
                ));
            }
            if deleting(object) {
                return Err(ApiError::conflict(
                    pods,
                    pod,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            object["spec"]["nodeName"] = json!(node);
            set_condition(object, "PodScheduled", "True");
            Ok(())
        })
        .await?;
        Ok(respond_status(&Status::success(201)))
    }

    /// Evicts the pod `pod`, once admitted, unless its disruption budget forbids
    /// it. The budget's `disruptionsAllowed` is taken by compare-and-swap (the pod
    /// noted in its `disruptedPods`, so the disruption controller counts it gone
    /// until it is) before the pod is deleted: evictions at once never take more
    /// than the budget allows.
    pub(crate) async fn evict(&self, pod: &str, eviction: Value) -> ApiResult<Response> {
        let (object, _) = self.read(pod).await?;
        let eviction = self
            .admit(Operation::Create, Some(eviction), None, |_| Ok(()))
            .await?
            .unwrap_or_default();
        // As in Kubernetes: a pod that is not running, or already going, takes
        // nothing from a budget.
        let phase = object["status"]["phase"].as_str().unwrap_or("Pending");
        if !deleting(&object) && !matches!(phase, "Pending" | "Succeeded" | "Failed") {
            self.take_disruption(pod, &object).await?;
        }
        let options = match eviction.get("deleteOptions") {
            Some(o) if o.is_object() => o.clone(),
            _ => json!({}),
        };
        self.delete(pod, &options).await?;
        Ok(respond_status(&Status::success(201)))
    }

    /// Takes one disruption from the budget that selects `object`, if one does.
    async fn take_disruption(&self, pod: &str, object: &Value) -> ApiResult<()> {
        let budgets = by_kind("policy", "v1", "PodDisruptionBudget").expect("budgets are served");
        let prefix = budgets
            .storage_collection(self.target.namespace.as_deref())
            .expect("budgets are stored");
        let pod_labels = labels(object);
        for _ in 0..EVICTION_ATTEMPTS {
            let listed = self
                .server
                .store
                .list(&prefix, &ListOptions::default())
                .await?;
            let mut selecting = listed.items.into_iter().filter_map(|kv| {
                let budget = decode_stored(&kv).ok()?;
                let selector = serde_json::from_value(budget["spec"]["selector"].clone())
                    .ok()
                    .and_then(|s| Selector::from_label_selector(&s).ok())?;
                selector.matches(&pod_labels).then_some((kv, budget))
            });
            let Some((kv, mut budget)) = selecting.next() else {
                return Ok(());
            };
            if selecting.next().is_some() {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            let status = &budget["status"];
            let name = name(&budget).unwrap_or("").to_owned();
            if status["observedGeneration"].as_i64().unwrap_or(0)
                < budget["metadata"]["generation"].as_i64().unwrap_or(0)
            {
                return Err(refused(format!(
                    "The disruption budget {name} is still being processed by the server."
                )));
            }
            let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
            if allowed < 0 {
                return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
            }
            if allowed == 0 {
                return Err(refused(format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    status["desiredHealthy"].as_i64().unwrap_or(0),
                    status["currentHealthy"].as_i64().unwrap_or(0),
                )));
            }
            budget["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if !budget["status"]["disruptedPods"].is_object() {
                budget["status"]["disruptedPods"] = json!({});
            }
            budget["status"]["disruptedPods"][pod] = json!(now());
            let value = encode(&mut budget);
            match self
                .server
                .store
                .update(&kv.key, value, kv.mod_revision, None)
                .await
            {
                Ok(_) => return Ok(()),
                // Another eviction (or the controller) came first: look again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(refused(
            "The disruption budget changed under too many evictions at once; try again".into(),
        ))
    }
}

/// How many times an eviction reads its budget again after losing a race for it.
const EVICTION_ATTEMPTS: usize = 20;

/// An eviction a budget refuses: 429, so that `kubectl drain` tries again.
fn refused(cause: String) -> ApiError {
    let cause = StatusCause {
        reason: "DisruptionBudget".into(),
        message: cause,
        ..StatusCause::default()
    };
    let message = "Cannot evict pod as it would violate the pod's disruption budget.";
    ApiError::new(429, "TooManyRequests", message).with_details(StatusDetails {
        causes: vec![cause],
        ..StatusDetails::default()
    })
}

/// Sets a condition of an object's status, with the time of the change.
fn set_condition(object: &mut Value, kind: &str, status: &str) {
    let condition =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("an array");
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(existing) => *existing = condition,
        None => list.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::testing::TestServer;

    const MERGE: (&str, &str) = ("content-type", "application/merge-patch+json");

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_evictions_take_no_more_than_the_budget_allows() {
        let server = TestServer::start().await;
        let pods = "/api/v1/namespaces/default/pods";
        for n in 0..20 {
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{n}"), "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "app.wasm"}]},
            });
            let (status, _, body) = server.call("POST", pods, pod).await;
            assert_eq!(status, 201, "{body}");
            let running = json!({"status": {"phase": "Running"}});
            let path = format!("{pods}/web-{n}/status");
            let (status, _, body) = server.call_with("PATCH", &path, &[MERGE], running).await;
            assert_eq!(status, 200, "{body}");
        }
        let budgets = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
        let budget = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 19, "selector": {"matchLabels": {"app": "web"}}},
        });
        let (status, _, body) = server.call("POST", budgets, budget).await;
        assert_eq!(status, 201, "{body}");
        let computed = json!({"status": {"currentHealthy": 20, "desiredHealthy": 19,
            "expectedPods": 20, "disruptionsAllowed": 1, "observedGeneration": 1}});
        let path = format!("{budgets}/web/status");
        let (status, _, body) = server.call_with("PATCH", &path, &[MERGE], computed).await;
        assert_eq!(status, 200, "{body}");

        let evictions = (0..20).map(|n| {
            let eviction = json!({
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": format!("web-{n}")},
            });
            let path = format!("{pods}/web-{n}/eviction");
            let server = &server;
            async move { server.call("POST", &path, eviction).await }
        });
        let answers = futures::future::join_all(evictions).await;
        let through: Vec<&Value> = answers
            .iter()
            .filter(|(status, _, _)| *status == 201)
            .map(|(_, _, body)| body)
            .collect();
        assert_eq!(through.len(), 1, "{answers:?}");
        for (status, _, body) in answers.iter().filter(|(status, _, _)| *status != 201) {
            assert_eq!(*status, 429, "{body}");
            assert_eq!(body["details"]["causes"][0]["reason"], "DisruptionBudget");
        }
        let (_, _, budget) = server
            .call("GET", &format!("{budgets}/web"), Value::Null)
            .await;
        assert_eq!(budget["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            budget["status"]["disruptedPods"].as_object().unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_uid_in_a_write_or_a_binding_is_a_precondition() {
        let server = TestServer::start().await;
        let pods = "/api/v1/namespaces/default/pods";
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "app.wasm"}]},
        });
        let (_, _, created) = server.call("POST", pods, pod).await;
        let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
        let labels = |uid: &str| json!({"metadata": {"uid": uid, "labels": {"a": "b"}}});
        let (status, _, body) = server
            .call_with("PATCH", &format!("{pods}/p"), &[MERGE], labels("other"))
            .await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("UID in precondition: other")
        );
        let (status, _, body) = server
            .call_with("PATCH", &format!("{pods}/p"), &[MERGE], labels(&uid))
            .await;
        assert_eq!(status, 200, "{body}");
        let binding = |uid: &str| {
            json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "p", "uid": uid},
                "target": {"kind": "Node", "name": "n1"}})
        };
        let path = format!("{pods}/p/binding");
        let (status, _, body) = server.call("POST", &path, binding("other")).await;
        assert_eq!(status, 409, "{body}");
        let (status, _, body) = server.call("POST", &path, binding(&uid)).await;
        assert_eq!(status, 201, "{body}");
    }
}

//! What is done to a pod through its subresources `binding` (the scheduler puts
//! it on a node) and `eviction` (it goes, unless a disruption budget forbids it),
//! as Kubernetes' pod storage does it.

use axum::response::Response;
use serde_json::{Value, json};
use wasmkube_types::registry::by_kind;
use wasmkube_types::selector::labels::Selector;

use crate::admission::Operation;
use crate::error::{
    ApiError, ApiResult, FieldError, Status, StatusCause, StatusDetails, respond_status,
};
use crate::objects::{deleting, labels, name, now};
use crate::rest::Request;

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
        self.modify(pod, |object| {
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

    /// Evicts the pod `pod`, once admitted, unless a disruption budget forbids it.
    pub(crate) async fn evict(&self, pod: &str, eviction: Value) -> ApiResult<Response> {
        let (object, _) = self.read(pod).await?;
        let eviction = self
            .admit(Operation::Create, Some(eviction), None, |_| Ok(()))
            .await?
            .unwrap_or_default();
        let budgets = by_kind("policy", "v1", "PodDisruptionBudget").expect("budgets are served");
        let prefix = budgets
            .storage_collection(self.target.namespace.as_deref())
            .expect("budgets are stored");
        let pod_labels = labels(&object);
        for budget in self.server.objects(&prefix).await? {
            let selector = serde_json::from_value(budget["spec"]["selector"].clone())
                .ok()
                .and_then(|s| Selector::from_label_selector(&s).ok());
            if selector.is_some_and(|s| s.matches(&pod_labels))
                && budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1
            {
                let cause = StatusCause {
                    reason: "DisruptionBudget".into(),
                    message: format!(
                        "The disruption budget {} needs {} healthy pods and has {} currently",
                        name(&budget).unwrap_or(""),
                        budget["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                        budget["status"]["currentHealthy"].as_i64().unwrap_or(0),
                    ),
                    ..StatusCause::default()
                };
                let message = "Cannot evict pod as it would violate the pod's disruption budget.";
                return Err(ApiError::new(429, "TooManyRequests", message).with_details(
                    StatusDetails {
                        causes: vec![cause],
                        ..StatusDetails::default()
                    },
                ));
            }
        }
        let options = match eviction.get("deleteOptions") {
            Some(o) if o.is_object() => o.clone(),
            _ => json!({}),
        };
        self.delete(pod, &options).await?;
        Ok(respond_status(&Status::success(201)))
    }
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

//! `pods/log`: a container's log, read from the agent of the pod's node
//! ([`agents`]) and streamed back, as Kubernetes proxies it from the kubelet.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::agents;
use crate::error::{ApiError, ApiResult};
use crate::objects::meta_str;
use crate::rest::Request;

/// The query parameters the agent understands, passed on as they are.
const PASSED: &[&str] = &[
    "follow",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
    "timestamps",
    "previous",
];

/// The container to read: the one named, or the pod's only one.
fn container(pod: &Value, name: &str, asked: Option<&String>) -> ApiResult<String> {
    let names_of = |list: &str| -> Vec<&str> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    };
    let names = names_of("containers");
    let init = names_of("initContainers");
    match (asked, names.as_slice()) {
        (Some(asked), _) if names.contains(&asked.as_str()) || init.contains(&asked.as_str()) => {
            Ok(asked.clone())
        }
        (Some(asked), _) => Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        ))),
        (None, [only]) => Ok((*only).to_owned()),
        (None, many) => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            many.join(" ")
        ))),
    }
}

/// Answers `GET …/pods/<name>/log`.
pub(crate) async fn serve(request: &Request<'_>, name: &str) -> ApiResult<Response> {
    let (pod, _) = request.read(name).await?;
    let container = container(&pod, name, request.params.get("container"))?;
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let namespace = meta_str(&pod, "namespace").unwrap_or("default");
    let query: Vec<String> = PASSED
        .iter()
        .filter_map(|p| Some(format!("{p}={}", request.params.get(*p)?)))
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        })
        .collect();
    let path = format!(
        "/containerLogs/{namespace}/{name}/{container}?{}",
        query.join("&")
    );
    let mut agent = agents::connect(request.server, node).await?;
    let response = agent.send(agent.request(&Method::GET, &path)).await?;
    if response.status() != StatusCode::OK {
        return Err(agent.refusal(response).await);
    }
    let body = Body::new(response.into_body());
    Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

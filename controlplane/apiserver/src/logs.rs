//! `pods/log`: a container's log, read from the agent of the pod's node and
//! streamed back, as Kubernetes proxies it from the kubelet. The node says where
//! its agent listens: its InternalIP address and `daemonEndpoints.kubeletEndpoint`.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use wasmkube_types::registry::by_kind;

use crate::ApiServer;
use crate::error::{ApiError, ApiResult};
use crate::objects::meta_str;
use crate::rest::{Request, decode_stored};

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

/// Where the agent of `node` listens.
pub(crate) async fn agent_of(server: &ApiServer, node: &str) -> ApiResult<String> {
    let nodes = by_kind("", "v1", "Node").expect("nodes are served");
    let key = nodes.storage_key(None, node).expect("nodes are stored");
    let kv = server
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(nodes, node))?;
    let node_object = decode_stored(&kv)?;
    let status = &node_object["status"];
    let address = status["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str());
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64();
    match (address, port) {
        (Some(address), Some(port)) if port > 0 => Ok(format!("{address}:{port}")),
        _ => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node} does not say where its agent listens"),
        )),
    }
}

/// The agent of `node` said no: its status and its words.
pub(crate) async fn refusal(
    node: &str,
    response: hyper::Response<hyper::body::Incoming>,
) -> ApiError {
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => {
            let message = String::from_utf8_lossy(&body.to_bytes()).into_owned();
            ApiError::new(status.as_u16(), "BadRequest", message)
        }
        Err(e) => ApiError::new(
            503,
            "ServiceUnavailable",
            format!("the agent of node {node}: {e}"),
        ),
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
    let agent = agent_of(request.server, node).await?;
    let namespace = meta_str(&pod, "namespace").unwrap_or("default");
    let query: Vec<String> = PASSED
        .iter()
        .filter_map(|p| Some(format!("{p}={}", request.params.get(*p)?)))
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        })
        .collect();
    let uri = format!(
        "http://{agent}/containerLogs/{namespace}/{name}/{container}?{}",
        query.join("&")
    );
    let uri = uri
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid log request: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("the agent of node {node}: {e}"),
        )
    };
    let response = client.get(uri).await.map_err(|e| unreachable(&e))?;
    if response.status() != StatusCode::OK {
        return Err(refusal(node, response).await);
    }
    let body = Body::new(response.into_body());
    Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

//! `pods/portforward`: the client's upgrade request (the WebSocket that
//! kubectl 1.31+ opens, SPDY tunneled in it) is passed to the agent of the
//! pod's node ([`agents`]), and once the agent switches protocols the two connections
//! are joined, as Kubernetes proxies it to the kubelet. The agent speaks the
//! forwarding protocol; the API server only carries bytes.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use wasmkube_types::registry::by_kind;

use crate::access::Attributes;
use crate::error::{ApiError, ApiResult};
use crate::path::Target;
use crate::rest::decode_stored;
use crate::{ApiServer, agents};

/// The headers of an upgrade that go on to the agent.
const PASSED: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Answers `…/namespaces/<namespace>/pods/<name>/portforward`.
pub(crate) async fn serve(
    State(server): State<ApiServer>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    match forward(&server, &namespace, &name, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn forward(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    request: Request,
) -> ApiResult<Response> {
    let pods = by_kind("", "v1", "Pod").expect("pods are served");
    let (parts, body) = request.into_parts();
    let user = crate::pipeline::user_of(&parts)?;
    let target = Target {
        resource: pods,
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        subresource: Some("portforward".to_owned()),
    };
    let attributes = Attributes::of_target(&user, &parts.method, parts.uri.path(), &target, false);
    server.authorize(&attributes).await?;
    let mut request = Request::from_parts(parts, body);
    let key = pods
        .storage_key(Some(namespace), name)
        .expect("pods are stored");
    let kv = server
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    let pod = decode_stored(&kv)?;
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    if pod["status"]["phase"] != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to forward to pod {name}: it is not running"
        )));
    }
    let mut agent = agents::connect(server, node).await?;
    let mut upstream = agent.request(
        request.method(),
        &format!("/portForward/{namespace}/{name}"),
    );
    for (header, value) in request.headers() {
        if PASSED.contains(&header.as_str()) {
            upstream = upstream.header(header, value);
        }
    }
    let mut answer = agent.send(upstream).await?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent.refusal(answer).await);
    }
    let from_client = hyper::upgrade::on(&mut request);
    let from_agent = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (Ok(client), Ok(agent)) = tokio::join!(from_client, from_agent) else {
            return;
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (header, value) in answer.headers() {
        response.headers_mut().insert(header, value.clone());
    }
    response
        .headers_mut()
        .entry(header::CONNECTION)
        .or_insert(HeaderValue::from_static("Upgrade"));
    Ok(response)
}

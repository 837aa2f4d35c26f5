//! Reaching the agent of a node: through a connection the agent keeps open
//! to the server when it has one ([`crate::tunnels`]: agents behind NAT),
//! else as Kubernetes' API server reaches kubelets, at the node's InternalIP
//! address and `daemonEndpoints.kubeletEndpoint` port. With a client for
//! agents ([`Config::kubelet_client`](crate::Config)), over TLS: the agent's
//! certificate is verified for that address and the server presents its
//! own; without one (tests), in the clear.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use wasmkube_types::registry::by_kind;

use crate::ApiServer;
use crate::error::{ApiError, ApiResult};
use crate::rest::decode_stored;

/// How long connecting to an agent (and its TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 connection to the agent of a node, with upgrades.
pub(crate) struct AgentConnection {
    node: String,
    /// `address:port`, the agent's Host.
    authority: String,
    sender: SendRequest<Empty<Bytes>>,
}

impl AgentConnection {
    /// A request for `path` (with its query) on the agent.
    pub(crate) fn request(
        &self,
        method: &hyper::Method,
        path: &str,
    ) -> hyper::http::request::Builder {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
    }

    /// Sends `request` to the agent; its answer, whatever its status.
    pub(crate) async fn send(
        &mut self,
        request: hyper::http::request::Builder,
    ) -> ApiResult<hyper::Response<Incoming>> {
        let request = request
            .body(Empty::new())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let node = &self.node;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(node, &e))
    }

    /// The agent said no: its status and its words.
    pub(crate) async fn refusal(&self, response: hyper::Response<Incoming>) -> ApiError {
        let status = response.status();
        match response.into_body().collect().await {
            Ok(body) => {
                let message = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                ApiError::new(status.as_u16(), "BadRequest", message)
            }
            Err(e) => unreachable(&self.node, &e),
        }
    }
}

/// Opens a connection to the agent of `node`: over TLS when the server has a
/// client for agents, in the clear otherwise.
pub(crate) async fn connect(server: &ApiServer, node: &str) -> ApiResult<AgentConnection> {
    if let Some(tunnel) = server.tunnels.take(node).await {
        // The agent dialed the server, whose certificate it verified, with a
        // client certificate naming the node: the connection is already
        // secured both ways.
        return handshake(node, node.to_owned(), tunnel.into_inner()).await;
    }
    let (host, port) = agent_of(server, node).await?;
    let authority = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    };
    let connecting = async {
        let stream = TcpStream::connect(&authority).await?;
        let Some(tls) = &server.kubelet_client else {
            return Ok(Either::Left(stream));
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await?;
        Ok::<_, std::io::Error>(Either::Right(stream))
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(unreachable(node, &e)),
        Err(_) => {
            let waited = format!("no connection after {}s", CONNECT_TIMEOUT.as_secs());
            return Err(unreachable(node, &waited));
        }
    };
    handshake(node, authority, TokioIo::new(stream)).await
}

/// An HTTP/1.1 connection to the agent of `node` over `io`.
async fn handshake<T>(node: &str, authority: String, io: T) -> ApiResult<AgentConnection>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|e: hyper::Error| unreachable(node, &e))?;
    tokio::spawn(connection.with_upgrades());
    Ok(AgentConnection {
        node: node.to_owned(),
        authority,
        sender,
    })
}

/// Where the agent of `node` listens: its InternalIP address and its port.
async fn agent_of(server: &ApiServer, node: &str) -> ApiResult<(String, u64)> {
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
        (Some(address), Some(port)) if port > 0 => Ok((address.to_owned(), port)),
        _ => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node} does not say where its agent listens"),
        )),
    }
}

/// The agent of `node` cannot be reached, or broke off.
fn unreachable(node: &str, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!("the agent of node {node}: {e}"),
    )
}

//! Agents that dial home: a node's agent keeps connections open to the API
//! server, so the server reaches the agent (logs, port-forward) through one
//! of them instead of dialing the node, which may be behind NAT or a
//! firewall with no inbound port, as k3s' remotedialer and KubeEdge's
//! tunnel spare edge nodes.
//!
//! The agent asks `GET` [`CONNECT_PATH`] with `Upgrade:` [`PROTOCOL`], its
//! client certificate naming it (`system:node:<name>` in `system:nodes`:
//! a node parks connections for itself only). The server switches
//! protocols and parks the connection, idle. To reach the agent it takes
//! one and speaks HTTP/1.1 to it (with upgrades), as over a connection it
//! opened itself: the agent serves its endpoint on it, and opens another
//! to take its place. A parked connection is watched while it waits: one
//! the agent or the network closed is dropped, never handed out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Notify, oneshot};

use crate::ApiServer;
use crate::access::UserInfo;
use crate::error::ApiError;

pub use wasmkube_types::{TUNNEL_PATH as CONNECT_PATH, TUNNEL_PROTOCOL as PROTOCOL};
/// The most connections one node may park: what a node can make the
/// server hold.
const MOST_PARKED: usize = 8;
/// How long a request waits for a connection of a node whose agent dials
/// home but has none idle (all taken a moment ago, their replacements on
/// the way).
const WAIT: Duration = Duration::from_secs(5);
/// How recently a node must have parked or used a connection for a
/// request to wait for one rather than dial the node.
const RECENT: Duration = Duration::from_secs(30);

/// A connection from an agent.
pub(crate) type Tunnel = TokioIo<Upgraded>;

/// The parked connection of a waiting task: ask it for the connection.
type Parked = oneshot::Sender<oneshot::Sender<Tunnel>>;

/// The connections agents parked, by node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tunnels {
    nodes: Arc<Mutex<HashMap<String, Node>>>,
    parked: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Node {
    idle: VecDeque<Parked>,
    /// When a connection of it was last parked or taken.
    active: Option<Instant>,
}

impl Tunnels {
    /// Parks `tunnel` of `node` until it is taken or closes.
    fn park(&self, node: &str, mut tunnel: Tunnel) {
        let (ask, asked) = oneshot::channel::<oneshot::Sender<Tunnel>>();
        {
            let mut nodes = self.nodes.lock().expect("tunnels lock");
            let parked = nodes.entry(node.to_owned()).or_default();
            parked.idle.push_back(ask);
            parked.active = Some(Instant::now());
            // Past the bound, the oldest goes: its task ends, closing it.
            while parked.idle.len() > MOST_PARKED {
                parked.idle.pop_front();
            }
        }
        self.parked.notify_waiters();
        tokio::spawn(async move {
            let mut byte = [0u8; 1];
            tokio::select! {
                asked = asked => {
                    if let Ok(give) = asked {
                        let _ = give.send(tunnel);
                    }
                }
                // An agent sends nothing before it is asked: a read that
                // ends is the connection closing (or a broken peer).
                _ = tunnel.read(&mut byte) => {}
            }
        });
    }

    /// An idle connection of `node`'s agent; waits a little for one if the
    /// agent dials home but has none idle right now. None if it does not.
    pub(crate) async fn take(&self, node: &str) -> Option<Tunnel> {
        let deadline = Instant::now() + WAIT;
        loop {
            let parked = self.parked.notified();
            tokio::pin!(parked);
            parked.as_mut().enable();
            let next = {
                let mut nodes = self.nodes.lock().expect("tunnels lock");
                let entry = nodes.get_mut(node)?;
                match entry.idle.pop_front() {
                    Some(ask) => {
                        entry.active = Some(Instant::now());
                        Some(ask)
                    }
                    None if entry.active.is_some_and(|at| at.elapsed() < RECENT) => None,
                    None => return None,
                }
            };
            match next {
                Some(ask) => {
                    let (give, given) = oneshot::channel();
                    // A task whose connection closed has ended: try the next.
                    if ask.send(give).is_ok()
                        && let Ok(tunnel) = given.await
                    {
                        return Some(tunnel);
                    }
                }
                None => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    if tokio::time::timeout(left, parked).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// Answers [`CONNECT_PATH`]: a node's agent parks a connection.
pub(crate) async fn connect(State(server): State<ApiServer>, mut request: Request) -> Response {
    let Some(user) = request.extensions().get::<UserInfo>().cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let node = user
        .name
        .strip_prefix("system:node:")
        .filter(|_| user.groups.iter().any(|g| g == "system:nodes"))
        .filter(|node| !node.is_empty());
    let Some(node) = node.map(str::to_owned) else {
        return ApiError::new(
            403,
            "Forbidden",
            format!(
                "User \"{}\" cannot dial home: only a node's agent can (as system:node:NAME in \
                 group system:nodes)",
                user.name
            ),
        )
        .into_response();
    };
    let upgrade = request.headers().get(header::UPGRADE);
    if upgrade.is_none_or(|u| !u.as_bytes().eq_ignore_ascii_case(PROTOCOL.as_bytes())) {
        return ApiError::bad_request(format!("expected Upgrade: {PROTOCOL}")).into_response();
    }
    let upgrading = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(upgraded) => server.tunnels.park(&node, TokioIo::new(upgraded)),
            Err(e) => tracing::debug!(%node, error = %e, "a connection home broke off"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    response
}

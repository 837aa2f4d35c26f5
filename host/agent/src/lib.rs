//! The node agent: a kubelet for WebAssembly. It registers its Node, renews its
//! Lease, and runs the pods bound to it as Wasm components on the node's
//! [`Runtime`], reporting their status through the API.
//!
//! Level-triggered: a watch of the node's pods feeds one worker per pod, which
//! reads the pod it is given and drives its containers toward it; a lost event
//! costs nothing but the next one. Deleting a pod stops its containers within the
//! grace period, then the agent removes the object.

mod logs;
mod node;
mod pod;
mod prepare;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use wasmkube_runtime::Runtime;

pub use node::POD_CAPACITY;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The API server refused or could not be reached.
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] wasmkube_runtime::RuntimeError),
}

/// One node's agent.
#[derive(Clone)]
pub struct Agent {
    client: Client,
    node: String,
    runtime: Arc<Runtime>,
    /// Where pods keep their logs and volumes.
    pods_dir: PathBuf,
    /// The containers running now, as `uid/name`.
    running: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent for node `node`, keeping images, compiled components and pod data
    /// under `data_dir`.
    pub fn new(
        client: Client,
        node: &str,
        data_dir: &std::path::Path,
    ) -> Result<Agent, AgentError> {
        let pods_dir = data_dir.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(wasmkube_runtime::RuntimeError::from)?;
        Ok(Agent {
            client,
            node: node.to_owned(),
            runtime: Arc::new(Runtime::new(data_dir)?),
            pods_dir,
            running: Arc::default(),
        })
    }

    /// Whether the container `uid/name` is running.
    fn is_running(&self, key: &str) -> bool {
        self.running.lock().expect("running lock").contains(key)
    }

    /// Marks the container `uid/name` running or not.
    fn set_running(&self, key: String, running: bool) {
        let mut set = self.running.lock().expect("running lock");
        if running {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    /// Registers the node (its agent endpoint: `listener`), serves the endpoint,
    /// and runs the node's pods until `closing` turns true.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        mut closing: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let endpoint = listener
            .local_addr()
            .map_err(wasmkube_runtime::RuntimeError::from)?;
        node::register(&self.client, &self.node, endpoint).await?;
        let router = logs::router(self.clone());
        let mut serving = closing.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = serving.wait_for(|closed| *closed).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "serving the agent endpoint");
            }
        });
        tokio::spawn(node::renew_lease(
            self.client.clone(),
            self.node.clone(),
            closing.clone(),
        ));
        let pods: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut events = watcher(pods, config)
            .default_backoff()
            .touched_objects()
            .boxed();
        let mut workers: HashMap<String, watch::Sender<Pod>> = HashMap::new();
        loop {
            let pod = tokio::select! {
                _ = closing.wait_for(|closed| *closed) => return Ok(()),
                event = events.next() => match event {
                    Some(Ok(pod)) => pod,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching pods");
                        continue;
                    }
                    None => return Ok(()),
                },
            };
            let Some(uid) = pod.uid() else { continue };
            workers.retain(|_, worker| !worker.is_closed());
            match workers.get(&uid) {
                Some(worker) => {
                    worker.send_replace(pod);
                }
                None => {
                    let (sender, receiver) = watch::channel(pod);
                    workers.insert(uid, sender);
                    tokio::spawn(pod::Worker::new(self.clone(), receiver).run());
                }
            }
        }
    }
}
